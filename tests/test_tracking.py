"""student.report_to: the loss through transformers' own TensorBoard integration, and beside it the run config,
the filter funnel and the eval results, read back with TensorBoard's own reader (EventAccumulator)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from distill.errors import UserError

pytest.importorskip("tensorboard")


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, dict] = {"scalars": {}, "text": {}}
    for events_file in sorted(log_dir.glob("events.out.tfevents.*")):  # one file per writer
        acc = EventAccumulator(str(events_file), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags["scalars"].setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        for tag in acc.Tags()["tensors"]:
            tags["text"][tag] = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)]
    return tags


def test_tensorboard_holds_the_loss_the_config_the_funnel_and_the_eval_results(tiny_config):
    from distill.pipeline import run

    config = tiny_config(student__report_to=["tensorboard"], student__max_steps=20, export__nf4=False, export__gguf=False,
                         eval__models=["student"])
    summary = run(config, until="eval")
    log_dir = config.run_dir / "train" / "tracking" / "tensorboard"
    tags = _events(log_dir)
    scalars = tags["scalars"]

    losses = json.loads((config.run_dir / "train" / "losses.json").read_text())
    logged = dict(scalars["train/loss"])
    assert logged and all(logged[step] == pytest.approx(loss, rel=1e-5) for step, loss in losses["losses"])

    funnel = json.loads((config.run_dir / "filter" / "funnel.json").read_text())["funnel"]
    logged_funnel = {tag[len("funnel/"):]: points for tag, points in scalars.items() if tag.startswith("funnel/")}
    assert logged_funnel == {k: [(0, float(v))] for k, v in funnel.items()}

    [eval_tag] = [t for t in scalars if t.startswith("eval/") and t.endswith("/student/pass_at_1")]
    [(step, value)] = scalars[eval_tag]
    assert step == losses["steps"] and value == pytest.approx(summary["pass_at_1"]["student"], abs=5e-5)  # the summary keeps 4 decimals

    [config_text] = tags["text"]["distill/run_config/text_summary"]
    assert "report_to:" in config_text and f"name: {config.name}" in config_text


def test_turning_tracking_on_retrains_nothing(tiny_config):
    from distill.runner import fingerprints

    before, after = fingerprints(tiny_config()), fingerprints(tiny_config(student__report_to=["tensorboard"]))
    assert before["train"] == after["train"] and before["eval"] == after["eval"]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_that_is_not_installed_is_one_line_before_anything_runs(tiny_config):
    from distill.pipeline import run

    config = tiny_config(student__report_to=["wandb"])
    with pytest.raises(UserError, match=r"student.report_to: wandb is not installed; pip install wandb"):
        run(config)
    assert not (config.run_dir / "manifest.json").exists()
