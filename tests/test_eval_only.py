"""Evaluating a model without training one: the teacher behind an OpenAI-compatible endpoint (a real loopback
server, tests/fault_server.py), a saved model folder, with no sample, filter, train or export work done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import UserError
from tests.fault_server import FaultServer

# fault_server answers every prompt "... \boxed{5}": two of these four are right
FIVES = [{"id": "a", "problem": "What is 2 + 3?", "answer": "5"}, {"id": "b", "problem": "What is 1 + 4?", "answer": "5"},
         {"id": "c", "problem": "What is 2 + 2?", "answer": "4"}, {"id": "d", "problem": "What is 3 + 4?", "answer": "7"}]
BEFORE_EVAL = ("sample", "filter", "train", "export")


def _bench(tmp_path: Path) -> Path:
    path = tmp_path / "fives.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in FIVES))
    return path


def _teacher_eval_config(tmp_path: Path, url: str, **eval_overrides):
    from distill.config import config_from_dict

    return config_from_dict({
        "name": "teacher-only", "output_dir": str(tmp_path / "runs"),
        "problems": {"train_size": 8, "heldout_size": 2, "max_digits": 1},
        "teacher": {"model": "deepseek-reasoner", "backend": "openai",
                    "openai": {"endpoints": [url], "backoff_base_s": 0.01, "max_concurrency": 2}},
        "eval": {"backend": "openai", "models": ["teacher"], "samples_per_problem": 2, "max_tokens": 64,
                 "benchmarks": [{"name": "fives", "file": str(_bench(tmp_path))}], **eval_overrides},
    })


@pytest.fixture
def stage_runs(monkeypatch):
    """How often each stage before eval ran: counted at the stage objects the runner calls."""
    from distill.stage import get_stage

    counts = {name: 0 for name in BEFORE_EVAL}
    for name in BEFORE_EVAL:
        stage = get_stage(name)
        original = stage.run

        def counted(ctx, _name=name, _original=original):
            counts[_name] += 1
            return _original(ctx)

        monkeypatch.setattr(stage, "run", counted)
    return counts


def test_the_teacher_endpoint_alone_is_evaluated_with_nothing_sampled_or_trained(tmp_path, stage_runs):
    from distill.pipeline import run

    with FaultServer() as server:
        config = _teacher_eval_config(tmp_path, server.url)
        summary = run(config, until="eval")
        assert len(server.requests) == len(FIVES) * 2  # every request was the eval's, k=2 per problem
    assert stage_runs == {name: 0 for name in BEFORE_EVAL}
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"eval"} and manifest["stages"]["eval"]["status"] == "done"
    assert summary["pass_at_1"] == {"teacher": 0.5}
    assert not any((config.run_dir / name).exists() for name in BEFORE_EVAL)

    with FaultServer() as server:  # the same config again: eval is up to date, nothing is asked
        run(_teacher_eval_config(tmp_path, server.url), until="eval")
        assert server.requests == []
    assert stage_runs == {name: 0 for name in BEFORE_EVAL}


def test_a_changed_teacher_re_runs_the_eval_of_the_teacher(tmp_path):
    """Without the sample stage upstream, the teacher's identity is in the eval's own fingerprint."""
    from distill.config import config_from_dict
    from distill.runner import fingerprints

    config = _teacher_eval_config(tmp_path, "http://127.0.0.1:9")
    raw = config.model_dump(mode="json")
    raw["teacher"]["openai"]["served_model"] = "another-model"
    other = config_from_dict(raw)
    assert fingerprints(config)["eval"] != fingerprints(other)["eval"]
    raw["teacher"]["openai"]["served_model"] = None
    raw["teacher"]["openai"]["max_concurrency"] = 9  # how fast it is reached changes no answer
    assert fingerprints(config)["eval"] == fingerprints(config_from_dict(raw))["eval"]


def test_a_trained_student_still_needs_every_stage_before_eval(tiny_config):
    from distill.runner import needed_stages

    assert needed_stages(tiny_config(), "eval") == {"sample", "filter", "train", "export", "eval"}
    assert needed_stages(tiny_config(eval__models=["teacher", "student_base"]), "eval") == {"eval"}
    assert needed_stages(tiny_config(eval__models=["teacher"]), "push") >= {"train", "eval"}


def test_a_saved_model_folder_is_evaluated_as_it_is(tmp_path, stage_runs):
    """eval.extra_models names any folder (a saved checkpoint, a published model's download): no training."""
    from distill.config import config_from_dict
    from distill.pipeline import run
    from tests.conftest import write_sft_workdir

    base = write_sft_workdir(tmp_path / "work", 4) / "base"
    config = config_from_dict({
        "name": "folder-only", "output_dir": str(tmp_path / "runs"),
        "problems": {"train_size": 4, "heldout_size": 3, "max_digits": 1},
        "eval": {"models": [], "extra_models": {"my-checkpoint": str(base)}, "samples_per_problem": 1,
                 "max_tokens": 8},
    })
    summary = run(config, until="eval")
    assert stage_runs == {name: 0 for name in BEFORE_EVAL}
    assert set(summary["pass_at_1"]) == {"my-checkpoint"}
    result = json.loads((config.run_dir / "eval" / "my-checkpoint.json").read_text())
    assert result["problems"] == 3 and result["path"] == str(base)


def test_a_missing_model_folder_is_one_line_before_anything_runs(tmp_path):
    from distill.config import config_from_dict
    from distill.pipeline import run

    config = config_from_dict({"name": "x", "output_dir": str(tmp_path / "runs"),
                               "eval": {"models": [], "extra_models": {"ckpt": str(tmp_path / "nope")}}})
    with pytest.raises(UserError, match=r"eval.extra_models.ckpt: no such folder"):
        run(config, until="eval")
    assert not (config.run_dir / "manifest.json").exists()


@pytest.mark.parametrize("extra, message", [({"student": "x/y"}, "is a built-in model"),
                                            ({}, "nothing to evaluate")])
def test_extra_models_are_validated(tmp_path, extra, message):
    from distill.config import config_from_dict
    from distill.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match=message):
        config_from_dict({"name": "x", "eval": {"models": [], "extra_models": extra}})


def test_the_cli_evaluates_the_teacher_alone(tmp_path):
    """`distill run CONFIG --until eval` as a user types it, against the loopback endpoint."""
    from tests.conftest import run_cli, write_yaml

    with FaultServer() as server:
        config = _teacher_eval_config(tmp_path, server.url)
        path = write_yaml(tmp_path / "teacher.yaml", config.model_dump(mode="json"))
        done = run_cli("run", str(path), "--until", "eval", env={"OPENAI_API_KEY": "sk-test"})
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(server.requests) == len(FIVES) * 2
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"eval"}
