"""The accelerate-launchable train entry point's guards (in process, nothing trained): a finished train
stage is left alone on relaunch, and bad ``--settings`` is a one-line error with exit code 2."""

from __future__ import annotations

import json
import logging

from tests.conftest import tiny_config_dict, write_yaml


def test_relaunching_a_finished_train_stage_keeps_the_model(tmp_path, teacher_cache, caplog):
    from distill.config import load_config
    from distill.runner import fingerprints
    from distill.store import RunStore
    from distill.students.train_entry import main

    config_path = write_yaml(tmp_path / "run.yaml", tiny_config_dict(tmp_path, teacher_cache))
    config = load_config(config_path, [])
    fps = fingerprints(config)
    store = RunStore(config.run_dir)
    for stage in ("sample", "filter", "train"):  # as after `distill run --until train`
        store.begin(stage, fps[stage])
        store.finish(stage, {}, 1.0, f"{stage} summary")
    trained = store.stage_dir("train") / "model" / "model.safetensors"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"trained weights")

    with caplog.at_level(logging.INFO):
        assert main(["--config", str(config_path)]) == 0
    assert trained.read_bytes() == b"trained weights"
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done"
    assert "stage train skipped" in caplog.text


def test_unknown_settings_field_is_a_one_line_error_with_exit_code_2(tmp_path, caplog):
    from distill.students.train_entry import main

    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"prompt": [{"role": "user", "content": "1+1"}],
                                    "completion": [{"role": "assistant", "content": "2"}]}) + "\n")
    common = ["--examples", str(examples), "--base", str(tmp_path / "never-read"), "--output", str(tmp_path / "o")]
    assert main([*common, "--settings", '{"max_steps": 2, "bogus": 1}']) == 2
    assert "--settings: unknown field(s) bogus" in caplog.text
    assert main([*common, "--settings", "{not json"]) == 2
    assert "--settings: not valid JSON" in caplog.text
