"""The eval protocol: truncated samples count as wrong and are reported; what changes a number is recorded."""

from __future__ import annotations

from distill.records import Problem
from eval.protocol import DEEPSEEK_PROTOCOL, HARNESS_VERSION, evaluate, protocol_record
from teachers.sampler import Completion, SamplingParams


class Scripted:
    """Returns fixed completions per problem (a stand-in for a model; the scoring path is the real one)."""

    name = "scripted"

    def __init__(self, by_problem):
        self.by_problem = by_problem

    def count_tokens(self, text):
        return len(text.split())

    def close(self):
        pass

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
