"""student.push_checkpoints: each saved checkpoint pushed as branch step-<N> while training runs, through the
final push's Hub code, against the local Hub stand-in (tests/hub_standin.py; the real huggingface_hub client)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_standin import HubStandIn, point_client_at  # noqa: E402

TOKEN = "hf_testsecret123"
REPO = "me/tiny-student"


@pytest.fixture
def standin(monkeypatch):
    from distill.publish import hub

    monkeypatch.setattr(hub, "_sleep", lambda seconds: None)  # retries without waiting
    with HubStandIn(tokens=(TOKEN,)) as server:
        point_client_at(monkeypatch, server)
        yield server


def _train_with_pushes(tmp_path: Path, steps: int = 6, save_steps: int = 2):
    from distill.students.checkpoint_push import CheckpointPusher, handoff_callback
    from distill.students.trainer import TrainSettings, train_sft
    from tests.conftest import toy_sft_data, write_sft_workdir
    from transformers import AutoTokenizer

    work = write_sft_workdir(tmp_path / "work", 16)
    _, examples = toy_sft_data(16, 3, 1, 2, "t")
    out = tmp_path / "train"
    pusher = CheckpointPusher(REPO, TOKEN, True, out)
    settings = TrainSettings(max_steps=steps, save_steps=save_steps, save_total_limit=1, batch_size=4,
                             max_length=128, learning_rate=1e-3, logging_steps=1)
    result = train_sft(str(work / "base"), AutoTokenizer.from_pretrained(work / "base"), examples, out, settings,
                       callbacks=[handoff_callback([pusher])])
    return out, result


def test_each_saved_checkpoint_is_a_revision_and_the_token_is_never_written(standin, tmp_path):
    standin.inject(503, "/commit/", times=1)  # the first commit fails once: retried, not lost
    out, result = _train_with_pushes(tmp_path)
    branches = set(standin.repo(REPO).branches)
    assert {"step-2", "step-4", "step-6"} <= branches
    for step in (2, 4, 6):
        files = standin.files(REPO, revision=f"step-{step}")
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
        assert not any(name.startswith(("optimizer", "scheduler", "rng_state")) for name in files)
    # the last checkpoint's weights are the final model's (no optimizer step after the last save)
    assert standin.files(REPO, revision="step-6")["model.safetensors"] == \
        (out / "checkpoints" / "checkpoint-6" / "model.safetensors").read_bytes()
    record = json.loads((out / "checkpoint_pushes.json").read_text())
    assert sorted(p["step"] for p in record["pushes"].values()) == [2, 4, 6]
    assert all("error" not in p and p["commit"] for p in record["pushes"].values())
    assert not (out / "checkpoint_push").exists() or not any((out / "checkpoint_push").iterdir())
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []


def test_pushing_a_checkpoint_again_sends_nothing(standin, tmp_path):
    from distill.students.checkpoint_push import CheckpointPusher

    out, _ = _train_with_pushes(tmp_path, steps=2, save_steps=2)
    commits = standin.commit_count(REPO, revision="step-2")
    again = CheckpointPusher(REPO, TOKEN, True, out)
    again.saved(2, out / "checkpoints" / "checkpoint-2")
    again.finish()
    assert standin.commit_count(REPO, revision="step-2") == commits  # idempotent: no empty commit
    assert again.results["step-2"]["uploaded"] == 0


def test_a_failed_push_is_recorded_scrubbed_and_training_goes_on(standin, tmp_path):
    standin.inject(401, "/api/repos/create", times=10, message=f"bad token {TOKEN}")
    out, result = _train_with_pushes(tmp_path, steps=4, save_steps=2)
    assert result.steps == 4 and (out / "model" / "model.safetensors").is_file()
    record = json.loads((out / "checkpoint_pushes.json").read_text())["pushes"]
    assert set(record) == {"step-2", "step-4"} and all("error" in p for p in record.values())
    assert all(TOKEN not in p["error"] for p in record.values())


def test_push_checkpoints_without_a_repo_is_one_line_before_anything_runs(tiny_config):
    from distill.errors import UserError
    from distill.pipeline import run

    config = tiny_config(student__push_checkpoints=True)
    with pytest.raises(UserError, match=r"student.push_checkpoints: set hub.repo_id"):
        run(config)
    assert not (config.run_dir / "manifest.json").exists()
