"""The sampling service: one retry for truncated samples, live progress figures, manifest totals, fingerprints."""

from __future__ import annotations

import json

import pytest

from distill.problems import generate_arithmetic
from distill.progress import SamplingMeter
from distill.teachers.pricing import DEEPSEEK_PRICES
from distill.teachers.sampler import Completion, SamplingParams
from distill.teachers.service import sample_problems, shard_stats
from tests.conftest import WordTokenSampler


class BudgetSampler(WordTokenSampler):
    """Finishes a prompt only when max_tokens reaches its need (the problem's first operand x 10 tokens)."""

    name = "budget"

    def __init__(self):
        self.calls: list[tuple[int, int, int]] = []  # (prompts, n, max_tokens)

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params.n, params.max_tokens))
        out = []
        for prompt in prompts:
            a = int(prompt[-1]["content"].removeprefix("What is ").split(" + ")[0])
            need = 10 * a
            if params.max_tokens >= need:
                c = Completion("<think>ok</think> \\boxed{0}", "stop", 5, need)
            else:
                c = Completion("<think>still going", "length", 5, params.max_tokens)
            out.append([c] * params.n)
        return out


def test_truncated_samples_get_one_retry_at_the_larger_budget_and_its_outcome_is_final():
    problems = [p for p in generate_arithmetic(40, 0, 1, 1, "p")][:12]
    sampler = BudgetSampler()
    params = SamplingParams(n=2, max_tokens=30, seed=5)
    traces = sample_problems(problems, sampler, params, retry_max_tokens=60)
    need = {p.id: 10 * int(p.problem.removeprefix("What is ").split(" + ")[0]) for p in problems}
    first_truncated = [p.id for p in problems if need[p.id] > 30]
    assert first_truncated and len(first_truncated) < len(problems)
    # one retry call per sample index, n=1, each prompt once per call
    assert sampler.calls == [(12, 2, 30), (len(first_truncated), 1, 60), (len(first_truncated), 1, 60)]
    for t in traces:
        if need[t.problem_id] <= 30:
            assert t.finish_reason == "stop" and "retry_of_truncated" not in t.sampling
            assert t.sampling["max_tokens"] == 30
        else:
            assert t.sampling["retry_of_truncated"] is True and t.sampling["max_tokens"] == 60
            assert t.finish_reason == ("stop" if need[t.problem_id] <= 60 else "length")  # final either way
    assert len(traces) == 24 and len({t.key for t in traces}) == 24


class PerRequestSeedSampler(WordTokenSampler):
    """Like vLLM, llama.cpp and seeded OpenAI servers: a prompt's text is fixed by (prompt, seed + choice),
    so the same prompt sent twice with one seed comes back the same. Always truncated at 30 tokens."""

    name = "per-request-seed"

    def __init__(self):
        self.seeds: list[int] = []

    def generate(self, prompts, params):
        self.seeds.append(params.seed)
        finish = "length" if params.max_tokens <= 30 else "stop"
        return [[Completion(f"<think>{p[-1]['content']} seed={params.seed + i}</think> \\boxed{{0}}", finish, 5, 9)
                 for i in range(params.n)] for p in prompts]


def test_truncated_samples_of_one_problem_are_retried_with_their_own_seeds():
    from distill.teachers.service import sample_chunk, shard_seed

    problems = generate_arithmetic(3, 0, 1, 1, "p")
    sampler = PerRequestSeedSampler()
    traces = sample_chunk(4, problems, sampler, SamplingParams(n=3, max_tokens=30, seed=5), retry_max_tokens=60)
    assert all(t.sampling["retry_of_truncated"] and t.finish_reason == "stop" for t in traces)
    for problem in problems:
        mine = [t for t in traces if t.problem_id == problem.id]
        assert len({t.reasoning for t in mine}) == 3  # not three copies of one retry
        assert len({t.seed for t in mine}) == 3  # each trace records the seed its retry used
    from distill.teachers.service import retry_seed

    chunk_seed = shard_seed(5, 4)
    retry_seeds = [retry_seed(chunk_seed, i) for i in range(3)]
    assert sampler.seeds == [chunk_seed, *retry_seeds] and chunk_seed not in retry_seeds
    assert all([t.seed for t in traces if t.problem_id == p.id] == retry_seeds for p in problems)
    # the same chunk sampled again (a resumed or reassigned shard) retries into the same texts
    again = sample_chunk(4, problems, PerRequestSeedSampler(), SamplingParams(n=3, max_tokens=30, seed=5), 60)
    assert [(t.reasoning, t.seed) for t in again] == [(t.reasoning, t.seed) for t in traces]


def test_without_retry_length_is_recorded_as_is():
    problems = generate_arithmetic(4, 1, 1, 1, "p")
    sampler = BudgetSampler()
    traces = sample_problems(problems, sampler, SamplingParams(n=1, max_tokens=1))
    assert len(sampler.calls) == 1
    assert {t.finish_reason for t in traces} == {"length"}


def test_meter_reports_rates_acceptance_spend_and_eta():
    now = [100.0]
    meter = SamplingMeter(total=100, done=20, price=DEEPSEEK_PRICES["deepseek-reasoner"], clock=lambda: now[0])
    now[0] += 10.0
    fields = meter.add({"traces": 20, "completion_tokens": 50_000, "prompt_tokens": 2_000, "accepted": 15,
                        "truncated": 2, "failed": 1})
    assert fields["traces/s"] == 2.0 and fields["tok/s"] == 5000.0
    assert fields["accept~"] == "75%" and fields["trunc"] == 2 and fields["failed"] == 1
    assert meter.eta_seconds() == 30.0  # 60 traces left at 2/s, resumed work not counted in the rate
    assert fields["spend"] == f"${(2_000 * 0.55 + 50_000 * 2.19) / 1e6:.2f}"
    assert SamplingMeter(total=10).fields()["spend"] is None


def test_chunk_stats_estimate_acceptance_with_the_verifier_quick_check():
    from distill.records import Trace

    def trace(answer, finish="stop", closed=True):
        return Trace("p", 0, [], "r", f"The answer is \\boxed{{{answer}}}.", finish, closed, completion_tokens=7,
                     reference="12")

    stats = shard_stats([trace("12"), trace("13"), trace("12", finish="length"), trace("12", closed=False)])
    assert stats == {"traces": 4, "completion_tokens": 28, "prompt_tokens": 0, "truncated": 1, "failed": 0,
                     "accepted": 1}


def test_manifest_totals_count_tokens_failures_by_reason_and_cost():
    from distill.teachers.stage import sampling_totals

    rows = [{"finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 100, "reasoning_tokens": 80},
            {"finish_reason": "error", "error": "http 429: slow down", "prompt_tokens": 0, "completion_tokens": 0},
            {"finish_reason": "error", "error": "timeout: read", "prompt_tokens": 0, "completion_tokens": 0},
            {"finish_reason": "error", "error": "http 429: again", "prompt_tokens": 0, "completion_tokens": 0},
            {"finish_reason": "length", "prompt_tokens": 10, "completion_tokens": 50, "reasoning_tokens": 50,
             "sampling": {"retry_of_truncated": True}}]
    totals = sampling_totals(rows, DEEPSEEK_PRICES["deepseek-reasoner"])
    assert totals["failures"] == {"http 429": 2, "timeout": 1}
    assert (totals["truncated"], totals["retried_truncated"]) == (1, 1)
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["reasoning_tokens"]) == (20, 150, 130)
    assert totals["cost_usd"] == pytest.approx((20 * 0.55 + 150 * 2.19) / 1e6)
    assert sampling_totals(rows)["cost_usd"] is None


def test_operational_teacher_keys_stay_out_of_the_sample_fingerprint(tiny_config):
    from distill.runner import fingerprints

    base = fingerprints(tiny_config())["sample"]
    assert fingerprints(tiny_config(teacher__scale_out={"backend": "ray", "workers": 8}))["sample"] == base
    assert fingerprints(tiny_config(teacher__serve={"port": 9000}))["sample"] == base
    assert fingerprints(tiny_config(teacher__retry_truncated={"enabled": True}))["sample"] != base


def test_effort_budgets_enter_the_sample_fingerprint_only_when_set(tiny_config, tmp_path):
    from distill.runner import fingerprints

    api = {"backend": "openai", "openai": {"reasoning_effort": "low", "endpoints": ["http://127.0.0.1:1/v1"]}}
    base = fingerprints(tiny_config(teacher__model="m", **{f"teacher__{k}": v for k, v in api.items()}))["sample"]
    moved = tiny_config(teacher__model="m", teacher__backend="openai",
                        teacher__openai={**api["openai"], "endpoints": ["http://10.0.0.1:8000/v1"]})
    assert fingerprints(moved)["sample"] == base  # where the server is does not change the traces
    capped = tiny_config(teacher__model="m", teacher__backend="openai",
                         teacher__openai={**api["openai"], "effort_max_tokens": {"low": 300}})
    assert fingerprints(capped)["sample"] != base
    # A sweep's file counts by its contents: a moved copy keeps the fingerprint, a re-run sweep changes it.
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps({"max_thinking_tokens": {"low": 236}, "answer_tokens": 64}))
    from_file = [fingerprints(tiny_config(teacher__model="m", teacher__backend="openai", teacher__openai={
        **api["openai"], "effort_max_tokens": str(tmp_path / name)}))["sample"] for name in ("a.json", "b.json")]
    assert from_file[0] == from_file[1] == fingerprints(capped)["sample"]  # 236 + 64 = 300, as the mapping
    (tmp_path / "b.json").write_text(json.dumps({"max_thinking_tokens": {"low": 1000}, "answer_tokens": 64}))
    assert fingerprints(tiny_config(teacher__model="m", teacher__backend="openai", teacher__openai={
        **api["openai"], "effort_max_tokens": str(tmp_path / "b.json")}))["sample"] != from_file[0]


@pytest.mark.slow
def test_pipeline_retries_truncated_toy_teacher_samples_and_records_totals(tiny_config):
    from distill.pipeline import run

    config = tiny_config(teacher__max_tokens=6, teacher__retry_truncated={"enabled": True, "max_tokens": 64})
    run(config, until="sample")
    counts = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert counts["traces"] == 48 and counts["retried_truncated"] > 0
    assert counts["truncated"] < counts["retried_truncated"]  # most retries finished inside the larger budget
    assert counts["completion_tokens"] > 48 * 6 and counts["failures"] == {} and counts["cost_usd"] is None
