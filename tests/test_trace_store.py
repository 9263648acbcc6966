"""Never lose a paid trace: the keyed trace store, non-destructive stage versions, and a run folder that
survives config edits, more samples, more problems, a torn manifest and a failing endpoint.

The teacher is counted at the sampler: every prompt x sample it is asked for is a paid trace."""

from __future__ import annotations

import json

import pytest

from distill.pipeline import run
from distill.runner import fingerprints


def stored(config) -> list[dict]:
    chunks = config.run_dir / "trace_store" / "chunks"
    return [json.loads(line) for p in sorted(chunks.glob("*.jsonl")) for line in p.read_text().splitlines()]


def view(config) -> set[tuple[str, int]]:
    rows = [json.loads(line) for p in sorted((config.run_dir / "sample" / "shards").glob("*.jsonl"))
            for line in p.read_text().splitlines()]
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys))
    return set(keys)


def expected(train: int, samples: int) -> set[tuple[str, int]]:
    return {(f"train-{i:05d}", s) for i in range(train) for s in range(samples)}


def _problem_file(path, count: int):
    rows = [{"id": f"train-{i:05d}", "problem": f"What is {i // 10} + {i % 10}?", "answer": str(i // 10 + i % 10)}
            for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_config_edits_more_samples_more_problems_and_a_torn_manifest_sample_only_missing_keys(
        tiny_config, tmp_path, counted):
    train = _problem_file(tmp_path / "train.jsonl", 24)
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"id": "h", "problem": "What is 99 + 99?", "answer": "198"}) + "\n")

    def config(**overrides):
        return tiny_config(problems__source="jsonl", problems__train_path=str(train),
                           problems__heldout_path=str(held), problems__train_size=1000, **overrides)

    run(config(), until="sample")
    assert sum(counted.values()) == 24 * 2 and view(config()) == expected(24, 2)

    counted.clear()  # an operational change: nothing sampled, the stage is not even re-run
    run(config(teacher__batch_size=7, teacher__shard_size=3), until="sample")
    assert sum(counted.values()) == 0

    counted.clear()  # one more sample per problem: only the new sample index
    run(config(teacher__samples_per_problem=3), until="sample")
    assert sum(counted.values()) == 24 and set(counted.values()) == {1}
    assert view(config(teacher__samples_per_problem=3)) == expected(24, 3)

    counted.clear()  # 100 more problems: only theirs
    _problem_file(train, 124)
    run(config(teacher__samples_per_problem=3), until="sample")
    assert sum(counted.values()) == 100 * 3 and set(counted.values()) == {3}
    assert view(config(teacher__samples_per_problem=3)) == expected(124, 3)

    counted.clear()  # a torn manifest: rebuilt from the stage folders, nothing sampled again
    (config().run_dir / "manifest.json").write_text('{"stages": {"sample": {"stat')
    run(config(teacher__samples_per_problem=3), until="sample")
    assert sum(counted.values()) == 0
    keys = [r["trace_key"] for r in stored(config())]
    assert len(keys) == len(set(keys)) == 124 * 3  # nothing paid for twice

    counted.clear()  # a larger budget: only the truncated samples are sampled again
    rows = [json.loads(line) for p in sorted((config().run_dir / "sample" / "shards").glob("*.jsonl"))
            for line in p.read_text().splitlines()]
    truncated = sum(r["finish_reason"] == "length" for r in rows)
    run(config(teacher__samples_per_problem=3, teacher__max_tokens=64), until="sample")
    assert sum(counted.values()) == truncated

    import datasets  # the store is plain JSONL chunks that `datasets` reads as they are

    ds = datasets.load_dataset("json", data_files=str(config().run_dir / "trace_store" / "chunks" / "*.jsonl"),
                               split="train")
    assert ds.num_rows == 124 * 3 + truncated and "trace_key" in ds.column_names


def test_operational_settings_do_not_change_the_sample_fingerprint(tiny_config):
    base = fingerprints(tiny_config())["sample"]
    for change in ({"teacher__batch_size": 3}, {"teacher__shard_size": 2}, {"teacher__max_failure_share": 0.5},
                   {"teacher__vllm": {"gpu_memory_utilization": 0.5, "tensor_parallel_size": 8}},
                   {"teacher__store": "/elsewhere"}):
        assert fingerprints(tiny_config(**change))["sample"] == base, change
    assert fingerprints(tiny_config(teacher__temperature=0.7))["sample"] != base


def test_going_back_to_an_earlier_config_reuses_its_outputs_and_gc_removes_only_unused_versions(tiny_config):
    from distill.run_gc import unused_versions
    from tests.conftest import run_cli

    first, second = tiny_config(), tiny_config(filter__max_per_problem=1)
    run(first, until="filter")
    kept_first = (first.run_dir / "filter" / "kept.jsonl").read_bytes()
    run(second, until="filter")
    record = json.loads((first.run_dir / "manifest.json").read_text())["stages"]["filter"]
    run(first, until="filter")  # back to the first config: its finished filter output is current again
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["filter"]["fingerprint"] != record["fingerprint"]
    assert (first.run_dir / "filter" / "kept.jsonl").read_bytes() == kept_first
    unused = unused_versions(first.run_dir)
    assert [u.stage for u in unused] == ["filter"]  # the second config's filter output, nothing else
    asked = run_cli("gc", str(first.run_dir))  # no terminal to answer: lists, deletes nothing, exit 2
    assert asked.returncode == 2 and "--yes" in asked.stderr and unused_versions(first.run_dir) == unused
    done = run_cli("gc", str(first.run_dir), "--yes")
    assert done.returncode == 0 and "deleted 1 unused stage version" in done.stdout
    assert unused_versions(first.run_dir) == [] and (first.run_dir / "filter" / "kept.jsonl").is_file()
    assert (first.run_dir / "trace_store" / "chunks").is_dir()  # paid traces are never gc's to remove


def test_an_edited_problem_file_resamples_only_the_changed_problems(tiny_config, tmp_path, counted):
    rows = [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 7)]
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    held.write_text(json.dumps({"id": "h", "problem": "What is 9 + 9?", "answer": "18"}) + "\n")
    config = tiny_config(problems__source="jsonl", problems__train_path=str(train),
                         problems__heldout_path=str(held))
    run(config, until="sample")
    before = fingerprints(config)
    counted.clear()
    rows[2]["problem"] = "What is 3 + 4?"
    rows[2]["answer"] = "7"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))  # same path, new content
    assert fingerprints(config)["sample"] != before["sample"]
    run(config, until="sample")
    assert dict(counted) == {next(iter(counted)): 2} and "3 + 4" in next(iter(counted))


def test_a_new_verifier_version_reruns_filter_but_not_sample(tiny_config, monkeypatch):
    from distill.filter.stage import FILTER

    config = tiny_config()
    before = fingerprints(config)
    monkeypatch.setattr(type(FILTER), "version", "999")
    after = fingerprints(config)
    assert after["sample"] == before["sample"] and after["filter"] != before["filter"]
    assert after["train"] != before["train"]  # downstream of the filter, until the filter output says otherwise


def test_failed_samples_leave_the_stage_undone_and_only_they_are_sampled_again(tmp_path):
    from distill.config import config_from_dict
    from distill.errors import StageError
    from tests.fault_server import FaultServer

    with FaultServer(default="401") as server:
        server.script(*["ok"] * 6)  # the first six requests (one per sample) succeed, the rest are refused
        config = config_from_dict({
            "name": "http", "output_dir": str(tmp_path),
            "problems": {"train_size": 6, "heldout_size": 2, "max_digits": 1},
            "teacher": {"model": "deepseek-reasoner", "backend": "openai", "samples_per_problem": 2,
                        "shard_size": 3, "openai": {"endpoints": [server.url], "backoff_base_s": 0.01,
                                                    "max_concurrency": 1}},
        })
        with pytest.raises(StageError, match="6 of 12 samples failed"):
            run(config, until="sample")
        entry = json.loads((tmp_path / "http" / "manifest.json").read_text())["stages"]["sample"]
        assert entry["status"] == "incomplete" and sum(entry["counts"]["failures"].values()) == 6
        sent = len(server.requests)
        server.state.default = "ok"  # the endpoint is healthy again
        run(config, until="sample")
        assert len(server.requests) - sent == 6  # the six failed samples, nothing else
        entry = json.loads((tmp_path / "http" / "manifest.json").read_text())["stages"]["sample"]
        assert entry["status"] == "done" and entry["counts"]["failures"] == {}


def test_two_input_files_of_one_name_count_apart(tmp_path):
    from distill.store import content_hashes

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "test.jsonl").write_text("1\n")
    (tmp_path / "b" / "test.jsonl").write_text("2\n")
    before = content_hashes([tmp_path / "a" / "test.jsonl", tmp_path / "b" / "test.jsonl"])
    (tmp_path / "b" / "test.jsonl").write_text("3\n")
    assert len(before) == 2 and content_hashes([tmp_path / "a" / "test.jsonl", tmp_path / "b" / "test.jsonl"]) != before


def test_which_stored_trace_serves_which_budget():
    from distill.teachers.trace_store import Entry

    assert Entry("c", 0, "stop", 1000, 400).serves(1000) and Entry("c", 0, "stop", 1000, 400).serves(500)
    assert Entry("c", 0, "stop", 1000, 1001).serves(1000)  # an estimated count over its own budget
    assert not Entry("c", 0, "stop", 4000, 3000).serves(1000)  # it might not have finished under 1000
    assert Entry("c", 0, "length", 1000, 1000).serves(1000) and not Entry("c", 0, "length", 1000, 1000).serves(2000)
    assert not Entry("c", 0, "error", 1000, 0).serves(1000)


def test_a_forced_stage_starts_fresh_and_sets_the_old_version_aside(tmp_path):
    from distill.store import RunStore

    store = RunStore(tmp_path / "run")
    assert store.begin("train", "fp1") is False
    (store.stage_dir("train") / "checkpoint").write_text("half done")
    store.fail("train", "boom", 1.0)
    assert store.begin("train", "fp1") is True  # a failed attempt resumes
    assert store.begin("train", "fp1", forced=True) is False  # --force: fresh, the attempt kept beside it
    assert not (store.stage_dir("train") / "checkpoint").exists()
    aside = [p for p in (tmp_path / "run" / "versions" / "train").iterdir() if p.name.startswith("fp1.replaced-")]
    assert len(aside) == 1 and (aside[0] / "checkpoint").read_text() == "half done"


def test_an_edited_heldout_file_reruns_the_filter(tiny_config, tmp_path):
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    _problem_file(train, 6)
    held.write_text(json.dumps({"id": "h", "problem": "What is 9 + 9?", "answer": "18"}) + "\n")
    config = tiny_config(problems__source="jsonl", problems__train_path=str(train), problems__heldout_path=str(held))
    run(config, until="filter")
    before = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["filter"]["fingerprint"]
    held.write_text(json.dumps({"id": "h", "problem": "What is 0 + 1?", "answer": "1"}) + "\n")
    run(config, until="filter")  # the traces are the same; the filter decontaminates against a new set
    assert json.loads((config.run_dir / "manifest.json").read_text())["stages"]["filter"]["fingerprint"] != before
