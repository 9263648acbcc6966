"""Wall time and peak memory per stage of the quickstart, measured on this machine.

Each stage runs in its own ``distill run CONFIG --until STAGE`` process (earlier
stages are skipped as up to date), so its peak resident memory is that process's
own.  Use ``--fresh-teacher`` to include training the toy teacher (what a user's
first run pays).

    python bench/quickstart.py [--config configs/quickstart.yaml] [--fresh-teacher]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

STAGES = ("sample", "filter", "train", "export", "eval", "push")
REPO = Path(__file__).resolve().parent.parent


def run_stage(config: str, out_dir: str, stage: str, env: dict) -> tuple[float, int, int]:
    cmd = [sys.executable, "-m", "distill.cli", "run", config, "--until", stage, "--set", f"output_dir={out_dir}"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss + sum(c.memory_info().rss for c in handle.children(True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - started, peak, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--fresh-teacher", action="store_true", help="train the toy teacher from scratch")
    args = parser.parse_args()
    env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="distill-bench-")
    if args.fresh_teacher:
        env["DISTILL_CACHE"] = os.path.join(tmp, "cache")
    out_dir = os.path.join(tmp, "runs")
    rows = []
    total = 0.0
    for stage in STAGES:
        wall, peak, _ = run_stage(args.config, out_dir, stage, env)
        total += wall
        rows.append((stage, wall, peak))
    name = next(Path(out_dir).iterdir()).name
    manifest = json.loads((Path(out_dir) / name / "manifest.json").read_text())
    report = json.loads((Path(out_dir) / name / "report.json").read_text())
    print(f"{'stage':8s} {'process s':>10s} {'stage s':>9s} {'peak RSS MiB':>13s}")
    for stage, wall, peak in rows:
        print(f"{stage:8s} {wall:10.1f} {manifest['stages'][stage]['seconds']:9.1f} {peak / 2**20:13.0f}")
    print(f"{'total':8s} {total:10.1f}")
    print("pass@1:", ", ".join(f"{k} {v:.3f}" for k, v in report.get("pass_at_1", {}).items()))


if __name__ == "__main__":
    main()
