"""The filter stage: keep only complete, well-formed, verified-correct traces.

Each trace gets exactly one verdict: ``kept`` or the first rejection reason in
the order below, so the funnel adds up to the number of traces.  The order puts
problem-level reasons first (a contaminated problem's traces are out whatever
they say), then the cheap structural and quality checks, and the verifier last,
so math-verify only sees traces that could still be kept.

Code traces run against their tests in the bubblewrap sandbox (distill.filter.sandbox);
the sandbox's outcome (TLE, wrong_answer, ...) is kept per trace in
``FilterResult.details``.  Two optional steps follow the verifier: an LLM judge
(distill.filter.judge) for the traces the rules could not decide, and the pass-rate band,
which drops problems the teacher always or never solves (they teach little).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from distill.config import FilterConfig
from distill.filter.quality import (conflicting_boxes, foreign_script_fraction, has_final_answer, is_looping, prompt_text,
                             repetition)
from distill.records import Trace, Verdict
from distill.filter.verify import Check, verify_answer, verify_batch

REASONS = (
    "contaminated",
    "duplicate_problem",
    "sampling_error",
    "truncated",
    "unclosed_think",
    "empty_reasoning",
    "too_short",
    "too_long",
    "no_answer",
    "conflicting_answers",
    "language_mixing",
    "repetition",
    "error_infra",
    "judge_undecided",
    "wrong",
    "outside_pass_rate_band",
    "over_quota",
    "kept",
)


@dataclass
class FilterResult:
    verdicts: list[Verdict]
    kept: list[Trace]
    funnel: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    traces: list[Trace] = field(default_factory=list)  # sorted like ``verdicts``
    details: dict[tuple[str, int], str] = field(default_factory=dict)  # code: the sandbox's outcome and test
    pass_rates: dict[str, float] = field(default_factory=dict)  # problem id -> share of its traces correct
    audit: list[dict[str, Any]] = field(default_factory=list)  # rule-versus-judge disagreements
    judge_stats: dict[str, int] = field(default_factory=dict)

    def rejected(self) -> list[tuple[Trace, Verdict]]:
        """(trace, verdict) for every trace not kept, in trace order."""
        return [(t, v) for t, v in zip(self.traces, self.verdicts) if not v.ok]


def structural_reason(trace: Trace, cfg: FilterConfig) -> str | None:
    """How the generation ended and how long it is: the checks that need only the trace's fields."""
    if trace.finish_reason == "error":
        return "sampling_error"
    if cfg.reject_truncated and trace.finish_reason == "length":
        return "truncated"
    if cfg.require_closed_think and not trace.think_closed:
        return "unclosed_think"
    if trace.reasoning_tokens < cfg.min_reasoning_tokens or (cfg.min_reasoning_tokens and not trace.reasoning.strip()):
        return "empty_reasoning"
    if trace.completion_tokens < cfg.min_completion_tokens:
        return "too_short"
    if cfg.max_completion_tokens is not None and trace.completion_tokens > cfg.max_completion_tokens:
        return "too_long"
    return None


def quality_reason(trace: Trace, cfg: FilterConfig) -> str | None:
    """The answer's format and the reasoning's quality (distill.filter.quality), cheapest first."""
    if not has_final_answer(trace.kind, trace.answer_text):
        return "no_answer"
    return reasoning_quality_reason(trace, cfg)


def reasoning_quality_reason(trace: Trace, cfg: FilterConfig) -> str | None:
    """The quality checks after the answer's format: what a judge's "correct" for an unboxed answer cannot excuse.

    The reasoning and the final answer are checked each on its own: the student copies
    both, and a short answer's loop or switch of language would vanish in a long reasoning.
    """
    prompt = prompt_text(trace.prompt)
    if cfg.reject_conflicting_answers and trace.kind == "math" and conflicting_boxes(trace.answer_text, prompt):
        return "conflicting_answers"
    parts = (trace.reasoning, trace.answer_text)
    if cfg.max_foreign_script is not None and \
            any(foreign_script_fraction(prompt, part) > cfg.max_foreign_script for part in parts):
        return "language_mixing"
    if cfg.max_repeated_fraction is not None or cfg.tail_loop_repeats is not None:
        n = cfg.repetition_ngram
        if any(is_looping(repetition(part, n), n, cfg.max_repeated_fraction, cfg.tail_loop_repeats) for part in parts):
            return "repetition"
    return None


def precheck(trace: Trace, cfg: FilterConfig, problem_reason: str | None = None) -> str | None:
    """The first rejection reason that needs no verifier, or None if the trace goes on to verification."""
    return problem_reason or structural_reason(trace, cfg) or quality_reason(trace, cfg)


def verdict_from_check(trace: Trace, check: Check) -> Verdict:
    """Turn the verifier's Check into a verdict (no_answer here means the verifier could not read one either)."""
    reason = {"correct": "kept", "no_answer": "no_answer", "error_infra": "error_infra"}.get(check.status, "wrong")
    return Verdict(trace.problem_id, trace.sample_index, reason == "kept", reason, check.extracted)


def judge(trace: Trace, cfg: FilterConfig, problem_reason: str | None = None) -> Verdict:
    """The verdict on one trace before per-problem selection."""
    reason = precheck(trace, cfg, problem_reason)
    if reason is not None:
        return Verdict(trace.problem_id, trace.sample_index, False, reason)
    check = verify_answer(trace.kind, trace.answer_text, trace.reference, cfg.verify_timeout_s,
                          sandbox=cfg.sandbox)
    return verdict_from_check(trace, check)


def filter_traces(traces: Iterable[Trace], cfg: FilterConfig,
                  problem_reasons: Mapping[str, str] | None = None, llm_judge: Any = None,
                  known_checks: Mapping[tuple[str, int], Check] | None = None) -> FilterResult:
    """Judge every trace, verifying the survivors of the cheap checks in one batch across worker processes.

    ``problem_reasons`` maps problem ids to a problem-level rejection (``contaminated``,
    ``duplicate_problem``) from :func:`distill.filter.dedup.screen_problems`.  ``llm_judge`` (a
    :class:`distill.filter.judge.LLMJudge`, built by the pipeline when ``filter.judge.enabled``)
    decides the traces whose status is in ``filter.judge.on``.  ``known_checks`` are the verifier's checks
    made while sampling (by trace key; distill.teachers.verdict_store): those traces are not verified again.
    """
    traces = sorted(traces, key=lambda t: t.key)
    problem_reasons = problem_reasons or {}
    known_checks = known_checks or {}
    reasons = [precheck(t, cfg, problem_reasons.get(t.problem_id)) for t in traces]
    todo = [i for i, r in enumerate(reasons) if r is None]
    fresh = iter(verify_batch([(traces[i].kind, traces[i].answer_text, traces[i].reference) for i in todo
                               if traces[i].key not in known_checks], cfg.verify_timeout_s, sandbox=cfg.sandbox))
    checks = [known_checks[traces[i].key] if traces[i].key in known_checks else next(fresh) for i in todo]
    verdicts = [Verdict(t.problem_id, t.sample_index, False, r) if r is not None else None
                for t, r in zip(traces, reasons)]
    details: dict[tuple[str, int], str] = {}
    for i, check in zip(todo, checks):
        verdicts[i] = verdict_from_check(traces[i], check)
        if traces[i].kind == "code" and check.extracted:
            details[traces[i].key] = f"{check.extracted}: {check.detail}" if check.detail else check.extracted
    final: list[Verdict] = verdicts  # type: ignore[assignment]  # every slot is filled by now
    audit: list[dict[str, Any]] = []
    judge_stats: dict[str, int] = {}
    if llm_judge is not None:
        from distill.filter.judge import apply_judge

        audit, judge_stats = apply_judge(llm_judge, traces, final, set(todo), cfg.judge,
                                         recheck=lambda trace: reasoning_quality_reason(trace, cfg))
    pass_rates = problem_pass_rates(traces, final)
    _apply_pass_rate_band(final, pass_rates, cfg.pass_rate_band)
    _select_per_problem(traces, final, cfg)
    funnel = Counter(v.reason for v in final)
    tokens: Counter[str] = Counter()
    for t, v in zip(traces, final):
        tokens[v.reason] += t.completion_tokens
    kept = [t for t, v in zip(traces, final) if v.ok]
    ordered = {r: funnel.get(r, 0) for r in REASONS if funnel.get(r, 0)}
    return FilterResult(final, kept, {"total": len(traces), **ordered}, dict(tokens), traces, details, pass_rates,
                        audit, judge_stats)


# Verdicts that say nothing about how hard a problem is: the traces never got a fair hearing.
_NO_SIGNAL = {"contaminated", "duplicate_problem", "sampling_error", "error_infra", "judge_undecided"}


def problem_pass_rates(traces: list[Trace], verdicts: list[Verdict]) -> dict[str, float]:
    """Per problem, the share of its traces found correct (before quotas), ignoring infrastructure failures.

    A truncated or looping trace counts as unsolved: within the sampling budget the
    teacher did not produce a usable solution.
    """
    solved: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    for t, v in zip(traces, verdicts):
        if v.reason in _NO_SIGNAL:
            continue
        tried[t.problem_id] += 1
        solved[t.problem_id] += v.ok
    return {pid: solved[pid] / n for pid, n in tried.items()}


def _apply_pass_rate_band(verdicts: list[Verdict], pass_rates: Mapping[str, float],
                          band: tuple[float, float] | None) -> None:
    """Reject the kept traces of problems solved too often or too rarely (``[low, high]``, inclusive)."""
    if band is None:
        return
    low, high = band
    for v in verdicts:
        rate = pass_rates.get(v.problem_id)
        if v.ok and rate is not None and not low <= rate <= high:
            v.ok = False
            v.reason = "outside_pass_rate_band"


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
