"""SIGKILL a sampling job at ten random points, resuming after each: exactly once, nothing torn.

The job is the real command (`distill run CONFIG --until sample`) with the toy
teacher and one problem per chunk, so a kill can land anywhere: while the
process starts, while a chunk is being sampled, or while one is being written.
Chunks are committed to the run's trace store; the run's view (sample/shards) is
written from it at the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run_cli, tiny_config_dict, write_yaml

KILLS = 10
TRAIN = 44  # 44 one-problem chunks (with 6 held out: every distinct 1-digit sum pair allowed)


def _committed(chunks) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in chunks.glob("*.jsonl")} if chunks.is_dir() else {}


@pytest.mark.slow
def test_sigkill_at_ten_random_points_then_resume_is_exactly_once(tmp_path, teacher_cache):
    from distill.config import config_from_dict
    from distill.teachers.models import teacher_model

    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["problems"]["train_size"] = TRAIN
    raw["teacher"].update(shard_size=1, batch_size=4)
    config = write_yaml(tmp_path / "run.yaml", raw)
    teacher_model(config_from_dict(raw))  # the cached toy teacher, trained before the clock starts
    shards = tmp_path / "runs" / "tiny" / "sample" / "shards"
    chunks = tmp_path / "runs" / "tiny" / "trace_store" / "chunks"
    rng = random.Random(20260501)
    seen: dict[str, bytes] = {}
    kills = 0
    while kills < KILLS:
        before = len(_committed(chunks))
        proc = subprocess.Popen([sys.executable, "-m", "distill.cli", "run", str(config), "--until", "sample"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        # a random point in the work: after this run has committed 0-2 chunks, plus 0-0.3 s
        wait_for, delay = rng.randint(0, 2), rng.uniform(0.0, 0.3)
        deadline = time.time() + 90
        while proc.poll() is None and len(_committed(chunks)) < before + wait_for and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        assert proc.poll() is None, "the job finished before it could be killed; give it more chunks"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        now = _committed(chunks)
        for name, data in seen.items():  # a committed chunk is never rewritten or removed
            assert now.get(name) == data, f"{name} changed after it was committed"
        seen = now
    assert len(seen) < TRAIN, "every chunk was done before the last kill"
    done = run_cli("run", str(config), "--until", "sample")
    assert done.returncode == 0, done.stderr + done.stdout
    rows = []
    for path in sorted(shards.glob("shard-*.jsonl")):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        rows.extend(json.loads(line) for line in text.splitlines())  # zero torn records: every line parses
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == TRAIN * 2  # zero duplicates
    assert set(keys) == {(f"train-{i:05d}", s) for i in range(TRAIN) for s in range(2)}
    for name, data in seen.items():
        assert (chunks / name).read_bytes() == data
    stored = [json.loads(line) for path in sorted(chunks.glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert len({r["trace_key"] for r in stored}) == len(stored) == TRAIN * 2  # every sample paid for once
    counts = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())["stages"]["sample"]["counts"]
    reused = sum(len(data.decode().splitlines()) for data in seen.values())
    assert counts["traces"] == TRAIN * 2 and counts["reused_traces"] == reused
    assert counts["sampled_traces"] == TRAIN * 2 - reused
