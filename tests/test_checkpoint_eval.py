"""eval.on_checkpoints: saved checkpoints evaluated beside training (separate processes, or Slurm jobs from a
template) through the eval stage's code, results keyed by step; with student.push_checkpoints each one is also
a revision on the (stand-in) Hub, and the report shows pass@1 against step."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_standin import HubStandIn, point_client_at  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_testsecret123"


def _checkpoint_config(tmp_path: Path, **eval_extra):
    from distill.config import config_from_dict

    return config_from_dict({
        "name": "ckpt", "output_dir": str(tmp_path / "runs"),
        "problems": {"train_size": 4, "heldout_size": 3, "max_digits": 1},
        "eval": {"models": ["student"], "samples_per_problem": 1, "max_tokens": 8,
                 "on_checkpoints": {"enabled": True, **eval_extra}},
    })


def test_a_slurm_template_gets_the_checkpoint_and_its_result_is_keyed_by_step(tmp_path, monkeypatch):
    """The shipped template submitted through a stand-in sbatch that runs the job at once, as Slurm would later."""
    from distill.eval.checkpoints import CheckpointEvaluator, collect_results
    from tests.conftest import write_sft_workdir

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text('#!/bin/bash\necho "$@" > "$(dirname "$0")/args"\nbash "${@: -1}" >/dev/null 2>&1\n'
                      'echo "4242;cluster"\n')
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = _checkpoint_config(tmp_path, launcher="slurm",
                                slurm_template=str(REPO_ROOT / "configs/launchers/eval-checkpoint.sbatch"))
    from distill.eval.checkpoints import check_checkpoint_eval

    check_checkpoint_eval(config)
    checkpoint = write_sft_workdir(tmp_path / "work", 4) / "base"
    evaluator = CheckpointEvaluator(config, tmp_path / "train")
    evaluator.saved(7, checkpoint)
    launch = json.loads((tmp_path / "train" / "checkpoint_eval" / "step-7" / "launch.json").read_text())
    assert launch == {"launcher": "slurm", "job_id": "4242", "step": 7}
    assert "--job-name=distill-eval-step-7" in (bin_dir / "args").read_text()
    collected = collect_results(tmp_path / "train")
    [(step, per_bench)] = collected["steps"].items()
    assert step == 7 and [summary["problems"] for summary in per_bench.values()] == [3]
    assert not (tmp_path / "train" / "checkpoint_eval" / "step-7" / "model").exists()  # the snapshot is let go
    assert checkpoint.is_dir()  # the checkpoint itself is never touched


def test_a_slurm_launcher_without_its_template_is_one_line(tmp_path):
    from distill.errors import UserError
    from distill.eval.checkpoints import check_checkpoint_eval

    config = _checkpoint_config(tmp_path, launcher="slurm", slurm_template=str(tmp_path / "missing.sbatch"))
    with pytest.raises(UserError, match="eval.on_checkpoints.slurm_template: file not found"):
        check_checkpoint_eval(config)


@pytest.mark.slow
def test_quickstart_pushes_every_checkpoint_and_reports_pass_at_1_against_step(tmp_path, monkeypatch):
    """The quickstart's toy run, smaller: three checkpoints pushed as revisions and evaluated in their own
    processes while training runs; the report's checkpoints section has the curve and a row per step."""
    from distill.config import config_from_dict
    from distill.pipeline import run
    from distill.publish import hub
    from distill.publish.report import build_report, write_report

    raw = yaml.safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    raw["problems"].update(train_size=60, heldout_size=8)
    raw["student"].update(max_steps=30, save_steps=10, batch_size=8, push_checkpoints=True,
                          report_to=["tensorboard"])
    raw["export"].update(nf4=False, gguf=False)
    raw["eval"].update(models=["student"], samples_per_problem=1, budget_sweep=None,
                       on_checkpoints={"enabled": True, "every": 1, "launcher": "process"})
    raw["hub"]["repo_id"] = "me/quickstart-student"
    config = config_from_dict(raw)
    monkeypatch.setattr(hub, "_sleep", lambda seconds: None)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with HubStandIn(tokens=(TOKEN,)) as standin:
        point_client_at(monkeypatch, standin)
        run(config, until="eval")
        branches = set(standin.repo("me/quickstart-student").branches)
    assert {"step-10", "step-20", "step-30"} <= branches

    checkpoints = json.loads((config.run_dir / "eval" / "checkpoints.json").read_text())
    assert sorted(int(s) for s in checkpoints["steps"]) == [10, 20, 30] and not checkpoints["failed"]
    final = json.loads((config.run_dir / "eval" / "results.json").read_text())["student"]["pass_at_1"]
    primary = next(iter(checkpoints["steps"]["30"]))
    assert checkpoints["steps"]["30"][primary]["pass_at_1"] == pytest.approx(final)  # the last save is the model

    section = build_report(config.run_dir).section("checkpoints")
    assert section.status == "ok" and [c.name for c in section.charts] == ["checkpoint_pass_at_1"]
    [table, pushes] = [b for b in section.blocks if hasattr(b, "rows")]
    assert [row[0] for row in table.rows] == ["10", "20", "30"]
    assert [row[1] for row in pushes.rows] == ["step-10", "step-20", "step-30"]
    files = write_report(config.run_dir)
    assert "pass@1 vs step" in files.markdown.read_text() or "checkpoint_pass_at_1" in files.markdown.read_text()
    leaked = [p for p in config.run_dir.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []
