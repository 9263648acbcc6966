"""Published traces as the teacher (teacher.kind: dataset): OpenR1-Math rows, prompt/response rows, Sky-T1 files.

The Hub is a local stand-in here: a folder in the Hub's parquet layout
(``data/train-00000-of-00001.parquet``), read through ``datasets.load_dataset``
exactly as a downloaded Hub dataset is.
"""

from __future__ import annotations

import json

import pytest

from distill.errors import UserError
from distill.teachers.backends.trace_dataset import load_rows, load_trace_dataset, to_records
from tests.conftest import SHARED_DATA, run_cli, tiny_config_dict, write_hub_parquet, write_yaml

OPENR1_ROWS = [
    {"problem": "What is 2 + 3?", "solution": "2+3=5", "answer": "5", "problem_type": "Algebra",
     "source": "olympiads", "uuid": "u-1",
     "generations": ["<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is \\boxed{5}.",
                     "<think>\n2 plus 3 is 6, I think"],
     "correctness_math_verify": [True, False], "finish_reasons": [None, "length"],
     "is_reasoning_complete": [True, False]},
    {"problem": "What is 4 + 4?", "solution": "", "answer": "8", "problem_type": "Algebra", "source": "amc",
     "uuid": "u-2", "generations": ["<think>4+4=8</think>\\boxed{8}"], "correctness_math_verify": [True],
     "finish_reasons": ["stop"], "is_reasoning_complete": [True]},
]


def test_openr1_rows_from_a_hub_layout_folder(tmp_path):
    folder = write_hub_parquet(tmp_path / "openr1", OPENR1_ROWS)
    problems, traces = load_trace_dataset({"path": str(folder), "split": "train"})
    assert [p.id for p in problems] == ["u-1", "u-2"]
    assert problems[0].answer == "5" and problems[0].source == "olympiads" and problems[0].solution == "2+3=5"
    first, truncated = traces["u-1"]
    assert (first.sample_index, truncated.sample_index) == (0, 1)
    assert first.reasoning == "2 plus 3 is 5." and first.answer_text == "The answer is \\boxed{5}."
    assert first.think_closed and first.finish_reason == "stop"  # unknown finish reason: closed think -> stop
    assert not truncated.think_closed and truncated.finish_reason == "length" and truncated.answer_text == ""
    assert first.sampling["published_correct"] is True and truncated.sampling["published_correct"] is False
    assert first.prompt[-1]["content"].startswith("What is 2 + 3?") and "\\boxed{}" in first.prompt[-1]["content"]
    assert first.reasoning_tokens > 0 and first.completion_tokens == first.reasoning_tokens + first.answer_tokens
    assert first.reference == "5" and [t.problem_id for t in traces["u-2"]] == ["u-2"]


def test_prompt_response_rows_with_reasoning_column_and_column_overrides(tmp_path):
    path = tmp_path / "traces.jsonl"
    rows = [{"q": "What is 1 + 1?", "gold": "2", "response": "The answer is \\boxed{2}.", "reasoning": "1 and 1"},
            {"q": "What is 1 + 1?", "gold": "2", "response": "<think>one plus one</think>\\boxed{2}"},
            {"q": "What is 3 + 1?", "gold": "4", "response": "\\boxed{4}"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems, traces = load_trace_dataset({"path": str(path), "columns": {"problem": "q", "answer": "gold"}})
    assert [p.problem for p in problems] == ["What is 1 + 1?", "What is 3 + 1?"]  # responses grouped by problem
    a, b = traces[problems[0].id]
    assert (a.reasoning, a.answer_text, a.sample_index) == ("1 and 1", "The answer is \\boxed{2}.", 0)
    assert (b.reasoning, b.answer_text, b.sample_index) == ("one plus one", "\\boxed{2}", 1)
    [direct] = traces[problems[1].id]
    assert direct.reasoning == "" and not direct.think_closed  # answered without thinking: the filter rejects it


def test_bad_dataset_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_rows(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="columns.problem: no column 'nope'"):
        to_records([{"problem": "x", "response": "y"}], {"problem": "nope"})
    with pytest.raises(UserError, match="no generations or response column"):
        to_records([{"problem": "x"}])
    with pytest.raises(UserError, match="unknown field"):
        to_records([{"problem": "x", "response": "y"}], {"promt": "x"})
    config = write_yaml(tmp_path / "c.yaml", {"name": "c", "teacher": {"kind": "dataset"}})
    out = run_cli("validate", str(config))
    assert out.returncode == 2 and "needs dataset.path" in out.stderr


def test_sky_t1_traces_from_shared_data():
    path = SHARED_DATA / "traces" / "skyt1_math_correct5k_27b_amc23.jsonl"
    if not path.is_file():
        pytest.skip("shared data traces are absent")
    rows = load_rows(str(path))
    problems, traces = load_trace_dataset({"path": str(path)})
    assert len(problems) == len(rows) == 40
    flat = [t for p in problems for t in traces[p.id]]
    assert sum(t.think_closed for t in flat) == sum(bool(r["thought_closed"]) for r in rows)
    assert all("<|begin_of_thought|>" not in t.reasoning and "<|end_of_solution|>" not in t.answer_text for t in flat)
    assert {t.sampling.get("published_correct") for t in flat} == {True, False}
    assert problems[0].answer == rows[0]["reference_answer"]


def _toy_rows(count: int) -> list[dict]:
    """OpenR1-style rows in the toy teacher's own worked-solution format, two generations each."""
    from distill.problems import addition_solution, generate_arithmetic

    rows = []
    for p in generate_arithmetic(count, 11, 1, 1, "ds"):
        a, b = (int(x) for x in p.problem.removeprefix("What is ").rstrip("?").split(" + "))
        right, _ = addition_solution(a, b)
        wrong, slipped = addition_solution(a, b, slip_column=0)
        rows.append({"problem": p.problem, "answer": p.answer, "uuid": p.id, "generations": [
            f"<think>\n{right}\n</think>\n\nThe answer is \\boxed{{{p.answer}}}.",
            f"<think>\n{wrong}\n</think>\n\nThe answer is \\boxed{{{slipped}}}."],
            "correctness_math_verify": [True, slipped == p.answer]})
    return rows


@pytest.mark.slow
def test_pipeline_distils_from_a_trace_dataset_through_filter_and_train(tmp_path, teacher_cache):
    folder = write_hub_parquet(tmp_path / "hub", _toy_rows(20))
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["teacher"].update(kind="dataset", dataset={"path": str(folder)}, shard_size=6)
    raw["filter"]["decontaminate_heldout"] = False
    config = write_yaml(tmp_path / "run.yaml", raw)
    out = run_cli("run", str(config), "--until", "train")
    assert out.returncode == 0, out.stderr + out.stdout
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    sample = manifest["stages"]["sample"]["counts"]
    assert sample["traces"] == 40 and sample["problems"] == 20 and sample["shards"] == 4
    assert sample["teacher"] == f"dataset:{folder}"
    funnel = manifest["stages"]["filter"]["counts"]["funnel"]
    assert funnel["total"] == 40 and funnel["kept"] == 20  # the right generation of each problem
    assert manifest["stages"]["train"]["status"] == "done" and manifest["stages"]["train"]["counts"]["examples"] == 20


def test_an_unreachable_hub_dataset_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="cannot load 'no-such-org/no-such-traces'"):
        load_rows("no-such-org/no-such-traces")


def test_a_dataset_teacher_has_no_model_to_evaluate(tiny_config, tmp_path):
    from distill.eval.models import eval_models
    from distill.stage import Context
    from distill.progress import NullReporter
    from distill.store import RunStore

    config = tiny_config(teacher__kind="dataset", teacher__dataset={"path": str(tmp_path / "t.jsonl")},
                         eval__models=["teacher"])
    assert eval_models(Context(config, RunStore(config.run_dir), NullReporter())) == {}


def test_dataset_chunks_commit_only_what_is_pending_and_refuse_a_foreign_folder(tmp_path):
    """Dataset traces are committed in sampling's chunks, through the same plan: resume skips committed
    chunks, and shards beyond the plan (another job's folder) are an error, not silently mixed in."""
    from distill.records import Problem, Trace
    from distill.shards import ShardStore
    from distill.teachers.backends.trace_dataset import commit_dataset_chunks

    problems = [Problem(id=f"p{i}", problem=f"q{i}", answer=str(i)) for i in range(5)]
    traces = {p.id: [Trace(p.id, 0, [], "r", p.answer, "stop", True)] for p in problems}
    store = ShardStore(tmp_path / "shards")
    store.commit(1, traces["p2"] + traces["p3"])
    out = commit_dataset_chunks(traces, problems, store, 2, select=lambda i: i != 2)
    assert out == {"shards": 3, "resumed_shards": 1, "sampled_shards": 1, "traces": 5, "teacher": "dataset"}
    assert store.committed() == {0, 1}
    store.commit(7, traces["p0"])
    with pytest.raises(RuntimeError, match="beyond the 3 planned"):
        commit_dataset_chunks(traces, problems, store, 2)
