"""The filter stage: keep only complete, well-formed, verified-correct traces.

Each trace gets exactly one verdict: ``kept`` or the first rejection reason in
the order below, so the funnel adds up to the number of traces.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from distill.config import FilterConfig
from distill.records import Trace, Verdict
from distill.verify import verify_answer

REASONS = (
    "sampling_error",
    "truncated",
    "unclosed_think",
    "empty_reasoning",
    "too_long",
    "no_answer",
    "error_infra",
    "wrong",
    "over_quota",
    "kept",
)


@dataclass
class FilterResult:
    verdicts: list[Verdict]
    kept: list[Trace]
    funnel: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)


def judge(trace: Trace, cfg: FilterConfig) -> Verdict:
    """The verdict on one trace before per-problem selection."""

    def reject(reason: str, extracted: str = "") -> Verdict:
        return Verdict(trace.problem_id, trace.sample_index, False, reason, extracted)

    if trace.finish_reason == "error":
        return reject("sampling_error")
    if cfg.reject_truncated and trace.finish_reason == "length":
        return reject("truncated")
    if cfg.require_closed_think and not trace.think_closed:
        return reject("unclosed_think")
    if trace.reasoning_tokens < cfg.min_reasoning_tokens or (cfg.min_reasoning_tokens and not trace.reasoning.strip()):
        return reject("empty_reasoning")
    if cfg.max_completion_tokens is not None and trace.completion_tokens > cfg.max_completion_tokens:
        return reject("too_long")
    check = verify_answer(trace.kind, trace.answer_text, trace.reference)
    if check.status == "no_answer":
        return reject("no_answer")
    if check.status == "error_infra":
        return reject("error_infra", check.extracted)
    if not check.correct:
        return reject("wrong", check.extracted)
    return Verdict(trace.problem_id, trace.sample_index, True, "kept", check.extracted)


def filter_traces(traces: Iterable[Trace], cfg: FilterConfig) -> FilterResult:
    traces = sorted(traces, key=lambda t: t.key)
    verdicts = [judge(t, cfg) for t in traces]
    _select_per_problem(traces, verdicts, cfg)
    funnel = Counter(v.reason for v in verdicts)
    tokens: Counter[str] = Counter()
    for t, v in zip(traces, verdicts):
        tokens[v.reason] += t.completion_tokens
    kept = [t for t, v in zip(traces, verdicts) if v.ok]
    ordered = {r: funnel.get(r, 0) for r in REASONS if funnel.get(r, 0)}
    return FilterResult(verdicts, kept, {"total": len(traces), **ordered}, dict(tokens))


def _select_per_problem(traces: list[Trace], verdicts: list[Verdict], cfg: FilterConfig) -> None:
    if cfg.max_per_problem is None:
        return
    by_problem: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(verdicts):
        if v.ok:
            by_problem[v.problem_id].append(i)
    rng = random.Random(cfg.seed)
    for indices in by_problem.values():
        if cfg.selection == "shortest":
            indices = sorted(indices, key=lambda i: (traces[i].completion_tokens, traces[i].sample_index))
        elif cfg.selection == "random":
            indices = sorted(indices)
            rng.shuffle(indices)
        for i in indices[cfg.max_per_problem :]:
            verdicts[i].ok = False
            verdicts[i].reason = "over_quota"
