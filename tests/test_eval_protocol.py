"""The eval protocol: truncated samples count as wrong and are reported; what changes a number is recorded."""

from __future__ import annotations

import pytest

from distill.records import Problem
from distill.eval.protocol import DEEPSEEK_PROTOCOL, HARNESS_VERSION, evaluate, protocol_record
from distill.teachers.sampler import Completion, SamplingParams
from tests.conftest import WordTokenSampler


class Scripted(WordTokenSampler):
    """Returns fixed completions per problem (a stand-in for a model; the scoring path is the real one)."""

    name = "scripted"

    def __init__(self, by_problem):
        self.by_problem = by_problem

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            key = prompt[0]["content"].split("?")[0]
            out.append([Completion(text, finish, completion_tokens=5) for text, finish in self.by_problem[key]])
        return out


def test_truncated_correct_answer_counts_wrong_and_is_reported():
    problems = [Problem("a", "What is 1 + 1?", "2"), Problem("b", "What is 2 + 2?", "4")]
    sampler = Scripted({
        "What is 1 + 1": [("<think>x</think>\\boxed{2}", "stop"), ("<think>x</think>\\boxed{2}", "length")],
        "What is 2 + 2": [("<think>x</think>\\boxed{5}", "stop"), ("<think>x</think>\\boxed{4}", "stop")],
    })
    result = evaluate(sampler, problems, SamplingParams(n=2), "m", "toy")
    assert result.score.truncated == 1
    assert result.score.pass_at_1 == 0.5  # (1/2 + 1/2) / 2: the truncated right answer is wrong
    rows = {(r["problem_id"], r["sample_index"]): r for r in result.samples}
    assert rows[("a", 1)]["finish_reason"] == "length" and not rows[("a", 1)]["correct"]
    assert rows[("a", 1)]["extracted"] == "2"  # it was read, then not counted
    assert {"reasoning_tokens", "answer_tokens", "think_closed"} <= set(rows[("a", 0)])


def test_truncated_and_failed_samples_do_not_vote_in_cons_at_k():
    """Three cut or failed samples agree on a wrong partial answer; the one finished sample is right."""
    problems = [Problem("a", "What is 1 + 1?", "2")]
    sampler = Scripted({"What is 1 + 1": [
        ("<think>x</think>\\boxed{2}", "stop"),
        ("<think>x</think>\\boxed{3}", "length"),
        ("<think>x</think>\\boxed{3}", "length"),
        ("<think>x</think>\\boxed{3}", "error"),
    ]})
    result = evaluate(sampler, problems, SamplingParams(n=4), "m", "toy")
    assert result.score.cons_at_k == 1.0  # only the finished sample votes
    assert (result.score.truncated, result.score.failed) == (2, 1)
    assert result.score.pass_at_1 == 0.25
    assert result.summary()["failed"] == 1  # in results.json beside truncated


def test_protocol_record_names_everything_that_changes_a_number():
    params = SamplingParams(n=64, temperature=0.6, top_p=0.95, max_tokens=32768, seed=3)
    rec = protocol_record(params, backend="vllm", dtype="bfloat16", benchmark={"name": "aime2024", "version": "1"})
    assert (rec["k"], rec["seed"], rec["max_tokens"], rec["dtype"], rec["engine"]) == (64, 3, 32768, "bfloat16", "vllm")
    assert rec["harness"] == HARNESS_VERSION and rec["benchmark"]["version"] == "1"
    assert rec["truncated_count_as_wrong"] and "torch" in rec["versions"] and "transformers" in rec["versions"]
    assert {k: rec[k] for k in DEEPSEEK_PROTOCOL} == DEEPSEEK_PROTOCOL


def test_eval_config_defaults_are_deepseeks_protocol():
    from distill.config import EvalConfig

    cfg = EvalConfig()
    assert (cfg.temperature, cfg.top_p, cfg.max_tokens) == tuple(DEEPSEEK_PROTOCOL.values())
    assert [b.name for b in cfg.benchmarks] == ["heldout"] and cfg.budget_sweep is None


def test_r1_distill_table_and_deltas():
    from distill.eval.table import deltas, r1_distill_table

    def summary(p, cons=0.5, k=64):
        return {"pass_at_1": p, "ci95_low": p - 0.1, "ci95_high": p + 0.1, "cons_at_k": cons, "params": {"n": k}}

    grid = {"student": {"aime2024": summary(0.30), "math500": summary(0.80, k=4), "mine": summary(0.5, k=1)},
            "student_4bit": {"aime2024": summary(0.25), "math500": summary(0.78, k=4)},
            "student_gguf": {"math500": summary(0.79, k=4)}}
    d = deltas(grid)
    assert d["student_4bit"]["aime2024"]["delta"] == pytest.approx(-0.05)
    assert set(d["student_gguf"]) == {"math500"} and "student_8bit" not in d
    md = r1_distill_table(grid, "Qwen/Qwen2.5-Math-1.5B")
    lines = md.splitlines()
    assert lines[0] == ("| model | aime2024 (AIME 2024) pass@1 | aime2024 (AIME 2024) cons@k | "
                        "math500 (MATH-500) pass@1 | mine pass@1 |")
    assert lines[2].startswith("| student | 30.0 (20.0–40.0) | 50.0 (k=64) | 80.0 (70.0–90.0) | 50.0")
    assert "| student_gguf | – | – | 79.0" in md
    published = next(ln for ln in lines if ln.startswith("| DeepSeek-R1-Distill-Qwen-1.5B (published) ← compare"))
    assert published.split(" | ")[1:4] == ["28.9", "52.7 (k=64)", "83.9"] and published.endswith("| – |")
    assert "Table 5" in md


def test_unknown_benchmark_fails_before_any_stage(tiny_config):
    from distill.errors import UserError
    from distill.pipeline import run

    cfg = tiny_config(eval__benchmarks=[{"name": "heldout"}, {"name": "aime2042"}])
    with pytest.raises(UserError, match="unknown benchmark 'aime2042'"):
        run(cfg)
    assert not (cfg.run_dir / "manifest.json").exists()
