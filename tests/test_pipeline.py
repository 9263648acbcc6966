"""The spine end to end on a tiny config: stages run, skip, re-run from a changed stage, resume."""

from __future__ import annotations

import json
import time

import pytest

from distill.config import STAGES
from distill.errors import UserError
from distill.pipeline import run
from distill.runner import fingerprints
from distill.records import read_jsonl


def stage_starts(config):
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    return {s: e.get("started") for s, e in manifest["stages"].items()}


def test_full_tiny_run_writes_every_stage(tiny_config):
    config = tiny_config()
    report = run(config)
    run_dir = config.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s for s in STAGES if manifest["stages"][s]["status"] == "done"] == list(STAGES[:-1])
    assert manifest["stages"]["push"]["status"] == "incomplete"  # no token: written locally, uploaded later
    assert manifest["versions"]["torch"] and "transformers" in manifest["versions"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "logs" / "run.log").is_file()
    assert set(report["pass_at_1"]) == {"teacher", "student_base", "student", "student_4bit"}
    assert report["funnel"]["total"] == 24 * 2
    assert set(report["stages"]) == set(STAGES)
    traces = [r for p in sorted((run_dir / "sample" / "shards").glob("*.jsonl")) for r in read_jsonl(p)]
    assert sorted((t["problem_id"], t["sample_index"]) for t in traces) == sorted(
        (f"train-{i:05d}", s) for i in range(24) for s in range(2))
    assert (run_dir / "export" / "nf4" / "config.json").is_file()
    assert list((run_dir / "export" / "gguf").glob("*.gguf"))
    upload = run_dir / "push" / "upload"
    assert (upload / "README.md").is_file() or any(upload.rglob("README.md"))
    # the traces are a dataset `datasets` can read
    from datasets import load_dataset

    ds = load_dataset("json", data_files=[str(p) for p in sorted((run_dir / "sample" / "shards").glob("*.jsonl"))],
                      split="train")
    assert len(ds) == 48 and {"reasoning", "answer_text", "finish_reason"} <= set(ds.column_names)


def test_rerun_skips_and_filter_change_reruns_only_downstream(tiny_config):
    config = tiny_config()
    run(config)
    before = stage_starts(config)
    run(config)
    assert stage_starts(config) == before  # nothing re-ran

    changed = tiny_config(filter__max_per_problem=1)
    run(changed)
    after = stage_starts(changed)
    assert after["sample"] == before["sample"]
    for stage in ("filter", "train", "export", "eval", "push"):
        assert after[stage] != before[stage], stage


def test_fingerprints_chain_downstream_only(tiny_config):
    a = fingerprints(tiny_config())
    b = fingerprints(tiny_config(export__gguf_type="f16"))
    assert [s for s in STAGES if a[s] != b[s]] == ["export", "eval", "push"]
    c = fingerprints(tiny_config(teacher__toy__cache_dir="/elsewhere"))
    assert a == c  # where the teacher is cached does not change what it produces


def test_until_and_force(tiny_config):
    config = tiny_config()
    run(config, until="filter")
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"sample", "filter"}
    first = stage_starts(config)
    time.sleep(1.1)
    run(config, until="filter", force=["filter"])
    second = stage_starts(config)
    assert second["sample"] == first["sample"] and second["filter"] != first["filter"]
    with pytest.raises(UserError, match="unknown stage 'bogus'"):
        run(config, until="bogus")


def test_empty_jsonl_problem_set_is_a_user_error(tiny_config, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    held = tmp_path / "held.jsonl"
    held.write_text('{"id": "h1", "problem": "What is 1 + 1?", "answer": "2"}\n')
    config = tiny_config(problems__source="jsonl", problems__train_path=str(empty), problems__heldout_path=str(held))
    with pytest.raises(UserError, match="training problem set is empty"):
        run(config)
    assert not (config.run_dir / "manifest.json").exists()  # found before any stage began
