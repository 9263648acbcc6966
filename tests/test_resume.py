"""SIGKILL in the middle of sampling or training, then the same command again: nothing lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.records import read_jsonl
from tests.conftest import REPO, tiny_config_dict, write_sft_workdir, write_yaml


def start_run(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distill.cli", "run", str(config), *extra], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 240) -> bool:
    """SIGKILL ``proc`` as soon as ``condition()`` holds; False if it finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("condition never held")


def finish(config: Path, *extra: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(config), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout


@pytest.mark.slow
def test_sigkill_during_sampling_then_resume(tmp_path, teacher_cache):
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["teacher"]["shard_size"] = 2  # 12 shards
    raw["teacher"]["batch_size"] = 4
    config = write_yaml(tmp_path / "run.yaml", raw)
    shards = tmp_path / "runs" / "tiny" / "sample" / "shards"
    chunks = tmp_path / "runs" / "tiny" / "trace_store" / "chunks"  # committed here as sampled
    killed = kill_when(start_run(config, "--until", "sample"),
                       lambda: chunks.is_dir() and len(list(chunks.glob("*.jsonl"))) >= 3)
    assert killed, "sampling finished before it could be killed; make it slower"
    committed_before = {p.name: p.read_bytes() for p in chunks.glob("*.jsonl")}
    finish(config, "--until", "sample")
    rows = [r for p in sorted(shards.glob("shard-*.jsonl")) for r in read_jsonl(p)]
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24 * 2
    assert set(keys) == {(f"train-{i:05d}", s) for i in range(24) for s in range(2)}
    for name, data in committed_before.items():  # committed work was kept, not redone
        assert (chunks / name).read_bytes() == data
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    reused = sum(len(data.splitlines()) for data in committed_before.values())
    assert manifest["stages"]["sample"]["counts"]["reused_traces"] >= reused >= 3 * 2 * 2


@pytest.mark.slow
def test_sigkill_during_training_then_resume(tmp_path, teacher_cache):
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["student"].update(max_steps=40, save_steps=5, batch_size=2)
    config = write_yaml(tmp_path / "run.yaml", raw)
    finish(config, "--until", "filter")
    checkpoints = tmp_path / "runs" / "tiny" / "train" / "checkpoints"
    killed = kill_when(start_run(config, "--until", "train"),
                       lambda: (checkpoints / "checkpoint-10" / "trainer_state.json").is_file())
    assert killed
    finish(config, "--until", "train")
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    counts = manifest["stages"]["train"]["counts"]
    assert manifest["stages"]["train"]["status"] == "done"
    assert counts["steps"] == 40
    assert counts["resumed_from"] and int(counts["resumed_from"].rsplit("-", 1)[1]) >= 10
    assert (tmp_path / "runs" / "tiny" / "train" / "model" / "model.safetensors").is_file()


def _entry(workdir: Path, out: str, settings: dict) -> list:
    return [sys.executable, "-m", "distill.students.train_entry", "--examples", str(workdir / "examples.jsonl"),
            "--base", str(workdir / "base"), "--output", str(workdir / out), "--settings", json.dumps(settings)]


@pytest.mark.slow
def test_losses_after_a_sigkill_and_resume_match_an_uninterrupted_run(tmp_path):
    """Resume restores weights, optimizer, scheduler, RNG and the data position: the losses after the
    resume point equal the uninterrupted run's (CPU, fp32, the same seeded data order, across an epoch)."""
    write_sft_workdir(tmp_path, 40)
    # 40 examples / batch 4 = 10 steps an epoch: 30 steps cross two epoch boundaries
    settings = {"max_steps": 30, "batch_size": 4, "logging_steps": 1, "learning_rate": 2e-3, "save_steps": 5,
                "save_total_limit": 10, "max_length": 256, "warmup_ratio": 0.1}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(_entry(tmp_path, "straight", settings), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    straight = dict(json.loads((tmp_path / "straight" / "losses.json").read_text())["losses"])

    checkpoints = tmp_path / "killed" / "checkpoints"
    proc = subprocess.Popen(_entry(tmp_path, "killed", settings), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    assert kill_when(proc, lambda: (checkpoints / "checkpoint-10" / "trainer_state.json").is_file()), \
        "training finished before it could be killed"
    assert not (tmp_path / "killed" / "model").exists()
    resumed_run = subprocess.run(_entry(tmp_path, "killed", settings), cwd=REPO, env=env, capture_output=True,
                                 text=True, timeout=300)
    assert resumed_run.returncode == 0, resumed_run.stderr[-2000:]
    result = json.loads((tmp_path / "killed" / "losses.json").read_text())
    resumed_at = int(result["resumed_from"].rsplit("-", 1)[1])
    assert 10 <= resumed_at < 30
    resumed = dict(result["losses"])
    after = [step for step in straight if step > resumed_at]
    assert after and all(step in resumed for step in after)
    for step in after:
        assert resumed[step] == pytest.approx(straight[step], abs=1e-4), (step, resumed[step], straight[step])
