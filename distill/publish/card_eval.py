"""The evaluation part of the model card: ``model-index`` entries, the score table, the protocol, the noise.

Why its own module: every benchmark the run evaluated reaches ``model-index``
(through huggingface_hub's :class:`~huggingface_hub.EvalResult`) with the
protocol that produced it in the metric's ``args`` (k samples per problem,
temperature, top-p, max tokens), and the body states the same protocol in words
and per benchmark, so a reader can tell how each number was made.

A benchmark's protocol is its entry in ``CardInfo.benchmark_protocols`` over
the run-wide ``CardInfo.eval_protocol`` (where ``k`` may also be spelled ``n``,
and problem counts ``n_problems``/``num_problems``/``problems``, an int or a
dict per benchmark).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from distill.errors import UserError
from distill.publish.card_format import card_table, pct, settings_table

if TYPE_CHECKING:
    from distill.publish.card import CardInfo

__all__ = ["benchmarks", "check_scores", "eval_caveats", "evaluation_section", "model_index_results",
           "student_label"]

# The settings of one benchmark's protocol, in the order the card shows them.
_SAMPLING_KEYS = ("k", "temperature", "top_p", "max_tokens")
_PROBLEM_KEYS = ("n_problems", "num_problems", "problems")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "benchmark"


def _dataset_types(benches: list[str]) -> dict[str, str]:
    """Benchmark name -> model-index ``dataset.type``: its slug, made unique.

    Why unique: huggingface_hub merges results that share a task and dataset type,
    so "AIME 2024" and "aime-2024" would otherwise become one entry.
    """
    types: dict[str, str] = {}
    for bench in benches:
        slug, n = _slug(bench), 2
        while slug in types.values():
            slug, n = f"{_slug(bench)}-{n}", n + 1
        types[bench] = slug
    return types


def check_scores(results: dict[str, dict[str, float]]) -> None:
    """Refuse a score that is not a 0..1 fraction: a percent or a NaN would publish a wrong number."""
    for label, scores in results.items():
        for bench, value in scores.items():
            if value is None or not isinstance(value, (int, float)) or math.isnan(float(value)):
                raise UserError(f"eval_results[{label!r}][{bench!r}] is not a number: {value!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise UserError(
                    f"eval_results[{label!r}][{bench!r}] = {value!r} is outside 0..1 "
                    "(pass@1 must be a fraction, not a percent)"
                )


def student_label(info: "CardInfo") -> str | None:
    """Which row of ``eval_results`` is the model this card describes."""
    for cand in (info.model_name, info.repo_id, "student"):
        if cand and cand in info.eval_results:
            return cand
    students = [label for label in info.eval_results if "student" in label.lower()]
    if len(students) == 1:
        return students[0]
    if len(info.eval_results) == 1:
        return next(iter(info.eval_results))
    return None


def benchmarks(results: dict[str, dict[str, float]]) -> list[str]:
    """Every benchmark of any row, in first-seen order."""
    seen: dict[str, None] = {}
    for scores in results.values():
        for bench in scores:
            seen.setdefault(bench, None)
    return list(seen)


def _count(value: Any, bench: str) -> int | None:
    if isinstance(value, dict):
        value = value.get(bench)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _setting(own: dict[str, Any], shared: dict[str, Any], key: str) -> Any:
    """A benchmark's own value of ``key`` over the run-wide one (``k`` may be recorded as ``n``)."""
    for src in (own, shared):
        for name in (key, "n") if key == "k" else (key,):
            if src.get(name) is not None:
                return src[name]
    return None


def bench_protocol(info: "CardInfo", bench: str) -> dict[str, Any]:
    """``problems``, ``k``, ``temperature``, ``top_p``, ``max_tokens`` of one benchmark (None where unknown)."""
    shared, own = info.eval_protocol, info.benchmark_protocols.get(bench, {})
    problems = next((n for src in (own, shared) for key in _PROBLEM_KEYS
                     if (n := _count(src.get(key), bench)) is not None), None)
    return {"problems": problems, **{key: _setting(own, shared, key) for key in _SAMPLING_KEYS}}


def model_index_results(info: "CardInfo", student: str | None) -> list | None:
    """The student's score on every benchmark as :class:`huggingface_hub.EvalResult`, each with its
    protocol (k and the sampling settings) as the metric's ``args``; None without a student row.

    Only the student's scores: the Hub attributes every ``model-index`` entry to this repo.
    """
    from huggingface_hub import EvalResult

    if student is None or not info.eval_results.get(student):
        return None
    scores = info.eval_results[student]
    results = []
    for bench, slug in _dataset_types(list(scores)).items():
        protocol = bench_protocol(info, bench)
        args = {key: protocol[key] for key in _SAMPLING_KEYS if protocol[key] is not None}
        results.append(EvalResult(task_type="text-generation", dataset_type=slug, dataset_name=bench,
                                  metric_type="pass@1", metric_value=pct(scores[bench]), metric_name="pass@1",
                                  metric_args=args or None))
    return results


def _common(protocols: list[dict[str, Any]], key: str) -> Any:
    """The value of ``key`` when every benchmark has the same known one, else None."""
    values = {repr(p[key]) for p in protocols}
    return protocols[0][key] if protocols and len(values) == 1 and protocols[0][key] is not None else None


def _protocol_sentence(protocols: list[dict[str, Any]]) -> str:
    """What pass@1 is, in words, with every setting all benchmarks share (the others are in the table)."""
    k = _common(protocols, "k")
    per = (f"k={k} times (k samples per problem)" if k is not None
           else "k times (k samples per problem, per benchmark below)")
    shared = [f"{key}={value}" for key in _SAMPLING_KEYS[1:] if (value := _common(protocols, key)) is not None]
    sampling = f"; sampling with {', '.join(shared)}" if shared else ""
    return (f"**Protocol.** Each problem was sampled {per}{sampling}. pass@1 is the mean over the k samples "
            "of each problem of whether the sample's final answer is correct, averaged over the problems; a "
            "sample cut off at max_tokens counts as wrong.\n")


def _protocol_part(info: "CardInfo", benches: list[str]) -> list[str]:
    """The protocol sentence, the per-benchmark settings table, then any other recorded settings."""
    protocols = [bench_protocol(info, bench) for bench in benches]
    rows = [[bench, p["problems"], *(p[key] for key in _SAMPLING_KEYS)] for bench, p in zip(benches, protocols)]
    out = [_protocol_sentence(protocols),
           card_table(["Benchmark", "Problems", "k (samples per problem)", "temperature", "top_p", "max_tokens"],
                      rows) + "\n"]
    other = {key: value for key, value in info.eval_protocol.items()
             if key not in (*_SAMPLING_KEYS, *_PROBLEM_KEYS, "n")}
    if other:
        out.append(settings_table(["Setting", "Value"], other) + "\n")
    return out


def evaluation_section(info: "CardInfo", student: str | None, benches: list[str]) -> list[str]:
    """Every row of ``eval_results`` (the student marked) by benchmark, in percent, then the protocol."""
    if not info.eval_results:
        return ["## Evaluation\n", "No evaluation results were recorded for this model.\n"]
    table_rows = []
    for label, scores in info.eval_results.items():
        shown = f"**{label}** (this model)" if label == student else label
        table_rows.append([shown] + [f"{pct(scores[b]):.2f}" if b in scores else "–" for b in benches])
    out = ["## Evaluation\n", "pass@1 in percent.\n\n" + card_table(["Model"] + benches, table_rows) + "\n"]
    return out + _protocol_part(info, benches)


def eval_caveats(info: "CardInfo", student: str | None, benches: list[str]) -> list[str]:
    """How much one problem moves each score, and that the harness is our own."""
    lines: list[str] = []
    scores = info.eval_results.get(student or "", {})
    for bench in benches:
        n = bench_protocol(info, bench)["problems"]
        if n is None:
            continue
        p = float(scores.get(bench, 0.5))
        half = 100.0 * 1.96 * math.sqrt(max(p * (1.0 - p), 1e-12) / n)
        lines.append(
            f"- {bench} has only {n} problems: one problem moves pass@1 by {100.0 / n:.1f} points, "
            f"and the 95% interval on this model's score is roughly ±{half:.1f} points."
        )
    if lines:
        lines.append("- Differences between rows smaller than those intervals are noise, not evidence.")
    else:
        lines.append(
            "- The number of problems per benchmark was not recorded; on small benchmarks (AIME has 30 "
            "problems) a single problem moves pass@1 by several points, so small differences are noise."
        )
    lines.append(
        "- Scores come from this project's own harness and answer checker with the protocol above; they "
        "are not directly comparable with numbers reported elsewhere under other prompts or settings."
    )
    return lines
