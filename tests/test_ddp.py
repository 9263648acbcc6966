"""Two-process data parallelism through `accelerate launch` on CPU (gloo) trains exactly like one process
with the same global batch: 2 processes x batch 2 vs 1 process x batch 4, same seed and data order, fp32.

`--multi_gpu --num_processes 2` is what starts two real processes on a machine without GPUs
(`--cpu --num_processes 2` silently runs one); the test checks the trainer saw world_size 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, write_sft_workdir

SETTINGS = {"max_steps": 6, "logging_steps": 1, "learning_rate": 1e-3, "save_steps": 1000, "max_length": 256}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return write_sft_workdir(tmp_path_factory.mktemp("ddp"), 48)


def train(workdir, name: str, batch_size: int, launcher: list[str]) -> tuple[list, str]:
    settings = json.dumps({**SETTINGS, "batch_size": batch_size})
    cmd = [*launcher, "-m", "distill.students.train_entry", "--examples", str(workdir / "examples.jsonl"),
           "--base", str(workdir / "base"), "--output", str(workdir / name), "--settings", settings]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((workdir / name / "losses.json").read_text())["losses"], proc.stderr


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(workdir):
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two, log_two = train(workdir, "two", 2, accelerate)
    one, log_one = train(workdir, "one", 4, [sys.executable])
    assert log_two.count("world_size 2") == 2  # both processes trained, as one group of two
    assert "world_size 1" in log_one
    assert [s for s, _ in two] == [s for s, _ in one] == list(range(1, 7))
    for (step, a), (_, b) in zip(two, one):
        assert a == pytest.approx(b, rel=1e-3), (step, two, one)
    assert two[-1][1] < two[0][1]
    # the main process saved the whole trained model: it reloads and equals the one-process weights
    from transformers import AutoModelForCausalLM

    two_model, one_model = (AutoModelForCausalLM.from_pretrained(str(workdir / name / "model")).state_dict()
                            for name in ("two", "one"))
    assert set(two_model) == set(one_model)
    base = AutoModelForCausalLM.from_pretrained(str(workdir / "base")).state_dict()
    for name, value in two_model.items():
        assert value.shape == base[name].shape, name
        assert torch.allclose(value, one_model[name], atol=1e-4, rtol=1e-3), name
    assert any(not torch.equal(two_model[n], base[n]) for n in base)  # and it is the trained one


@pytest.mark.slow
def test_accelerate_launch_runs_the_train_stage_of_a_config(tmp_path, teacher_cache):
    """The documented multi-GPU flow: `distill run --until filter`, the train stage under `accelerate launch`
    (2 processes), then `distill run` finds train done and goes on."""
    from tests.conftest import run_cli, tiny_config_dict, write_yaml

    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["student"].update(max_steps=4, batch_size=2, save_steps=2)
    config = write_yaml(tmp_path / "run.yaml", raw)
    assert run_cli("run", str(config), "--until", "filter").returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    launch = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                             "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                             "-m", "distill.students.train_entry", "--config", str(config)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert launch.stderr.count("world_size 2") == 2
    run_dir = tmp_path / "runs" / "tiny"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done" and manifest["stages"]["train"]["counts"]["steps"] == 4
    assert (run_dir / "train" / "model" / "model.safetensors").is_file()
    after = run_cli("run", str(config), "--until", "train")
    assert after.returncode == 0, after.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["seconds"] > 0  # the launched run's entry, not redone
    assert "stage train skipped" in (run_dir / "logs" / "run.log").read_text()
