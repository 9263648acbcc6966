"""The run report's evaluation section: this run's pass@1 table and chart beside DeepSeek's published numbers.

Why its own module: besides the run's results it matches benchmarks and the
student's base to DeepSeek's R1-Distill table (:mod:`distill.publish.published`),
shows the quantised artifacts' deltas and the published reference rows.
"""

from __future__ import annotations

from typing import Any

from distill.publish.charts import add_chart, eval_chart
from distill.publish.formatting import fmt_int, fmt_pct
from distill.publish.published import (PUBLISHED_BENCHMARKS, PUBLISHED_PROTOCOL, PUBLISHED_R1_DISTILL, PUBLISHED_SOURCE,
                                       canonical_benchmark, published_model_for)
from distill.publish.report_model import Section, Table
from distill.publish.run_folder import RunFolder, load_json, stage_note
from distill.publish.sections import not_run

__all__ = ["eval_section"]


def eval_rows(run: RunFolder) -> tuple[list[dict[str, Any]], str | None]:
    """(rows, why partial) from eval/results.json, or from the per-model files a crashed eval left."""
    path = run.path("eval", "results.json")
    grid = run.path("eval", "benchmarks.json")  # model -> benchmark -> summary, every benchmark evaluated
    partial = None
    if grid.is_file() and path.is_file():
        results = load_json(grid)
    elif path.is_file():
        results = load_json(path)
    else:
        results = {}
        for f in sorted(run.path("eval").glob("*.json")) if run.path("eval").is_dir() else []:
            if f.name in ("results.json", "budget_sweep.json"):
                continue
            try:
                data = load_json(f)
            except ValueError:
                continue
            if isinstance(data, dict) and "pass_at_1" in data:
                results[f.stem] = data
        if results:
            partial = "eval/results.json is missing; showing the models whose evaluation finished."
    rows = []
    for label, value in results.items():
        if isinstance(value, dict) and "pass_at_1" in value:
            rows.append({"model": label, "benchmark": str(value.get("benchmark", "heldout")), **value})
        elif isinstance(value, dict):  # {model: {benchmark: summary}}
            for bench, summary in value.items():
                if isinstance(summary, dict) and "pass_at_1" in summary:
                    rows.append({**summary, "model": label, "benchmark": str(bench)})
    return rows, partial


def _is_student(model: str) -> bool:
    """The run's trained student and its exports (not ``student_base``): the rows DeepSeek's numbers sit beside."""
    return model.startswith("student") and model != "student_base"


def _published_pair(numbers: dict[str, Any] | None, model: str, canonical: str | None) -> tuple[Any, Any]:
    """DeepSeek's (pass@1, cons@64) beside one row, or Nones where there is nothing to compare."""
    if numbers is None or not canonical or not _is_student(model):
        return None, None
    return numbers.get(canonical), numbers.get(f"{canonical} cons@64")


def _result_row(r: dict[str, Any], canonical: str | None, published: tuple[Any, Any] | None) -> list[str]:
    """One row of the eval table; ``published`` is None when the table has no published columns."""
    n = (int((r.get("params") or {}).get("n") or 0)
         or max(1, int(r.get("samples", 0)) // max(1, int(r.get("problems", 1)))))
    row = [r["model"], r["benchmark"] + (f" ({canonical})" if canonical and canonical != r["benchmark"] else ""),
           fmt_pct(r.get("pass_at_1")),
           f"{fmt_pct(r.get('ci95_low'))}–{fmt_pct(r.get('ci95_high'))}",
           fmt_pct(r.get("cons_at_k")),
           f"{fmt_int(r.get('problems'))} × {n}",
           fmt_int(r.get("truncated"))]
    if published is not None:
        pub, pub_cons = published
        row += [f"{pub:.1f}" if pub is not None else "–", f"{pub_cons:.1f}" if pub_cons is not None else "–"]
    return row


# the summary's ci_method (distill.eval.scoring); summaries from before it have none and used z
_CI_METHODS = {"t": "Student's t distribution", "bootstrap": "a seeded percentile bootstrap"}


def _protocol_note(sec: Section, rows: list[dict[str, Any]]) -> None:
    params = next((r.get("params") for r in rows if r.get("params")), {}) or {}
    if params:
        methods = sorted({_CI_METHODS.get(r.get("ci_method") or "", "a normal (z) approximation") for r in rows})
        sec.note("protocol: pass@1 is the mean over k={n} samples per problem at temperature {t}, top-p {p}, "
                 "max {m} tokens; the interval is a 95% interval over problems ({ci} over the per-problem means); "
                 "cons@k is majority vote over the k samples, equivalent answers voting together; a truncated "
                 "sample counts as wrong.".format(
                     n=params.get("n", "?"), t=params.get("temperature", "?"), p=params.get("top_p", "?"),
                     m=fmt_int(params.get("max_tokens")), ci=" or ".join(methods)))
    unjudged = [f"{r['model']} on {r['benchmark']}: {fmt_int(r['verifier_failed'])} of {fmt_int(r.get('samples'))}"
                for r in rows if r.get("verifier_failed")]
    if unjudged:
        sec.note("samples the verifier could not judge (no sandbox, math-verify timeouts) are left out of pass@1 "
                 "and cons@k: " + "; ".join(unjudged) + ".", "warn")


def eval_section(run: RunFolder) -> Section:
    """pass@1 (CI, cons@k) per model and benchmark, a chart, the quantisation deltas and DeepSeek's numbers."""
    sec = Section("eval", "Evaluation")
    rows, partial = eval_rows(run)
    if not rows:
        return not_run(sec, "the eval stage has not run (no eval/results.json).")
    stage_note(run, sec, "eval")
    if partial:
        sec.status = "partial"
        sec.note(partial, "warn")
    student_model = str(run.cfg("student", "model", default="") or "")
    published = published_model_for(student_model)
    benches = sorted({r["benchmark"] for r in rows})
    matched = {b: canonical_benchmark(b) for b in benches}
    ks = {int((r.get("params") or {}).get("n") or 0) for r in rows}
    k_text = f"{ks.pop()}" if len(ks) == 1 else "k"
    show_published = published is not None and any(matched.values())
    numbers = PUBLISHED_R1_DISTILL[published] if show_published else None
    table_rows, chart_rows = [], []
    for r in rows:
        canonical = matched.get(r["benchmark"])
        pair = _published_pair(numbers, r["model"], canonical)
        table_rows.append(_result_row(r, canonical, pair if show_published else None))
        chart_rows.append({**r, "label": f"{r['model']} · {r['benchmark']}" if len(benches) > 1 else r["model"],
                           "published": pair[0]})
    headers = ["model", "benchmark", "pass@1", "95% CI", f"cons@{k_text}", "problems × k", "truncated"]
    if show_published:
        headers += [f"{published} pass@1 (published)", "cons@64 (published)"]
    add_chart(sec, "eval", "pass@1 per model", lambda: eval_chart(chart_rows))
    sec.blocks.append(Table(headers, table_rows, numeric=set(range(2, len(headers)))))
    _protocol_note(sec, rows)
    _delta_table(run, sec)
    _published_notes(sec, student_model, published, matched)
    return sec


def _delta_table(run: RunFolder, sec: Section) -> None:
    """The quantised artifacts against the fp32 student, per benchmark (eval/deltas.json)."""
    path = run.path("eval", "deltas.json")
    if not path.is_file():
        return
    rows = []
    for label, per in (load_json(path) or {}).items():
        for bench, d in per.items():
            rows.append([label, bench, fmt_pct(d.get("pass_at_1")), fmt_pct(d.get("student")),
                         f"{100 * d['delta']:+.1f}" if isinstance(d.get("delta"), (int, float)) else "–"])
    if rows:
        sec.blocks.append(Table(["artifact", "benchmark", "pass@1", "fp32 student pass@1", "delta (points)"], rows,
                                numeric={2, 3, 4}, caption="each quantised export, run in its own consumer "
                                "(transformers for bitsandbytes, llama.cpp for GGUF), against the fp32 student"))


def _published_notes(sec: Section, student_model: str, published: str | None,
                     matched: dict[str, str | None]) -> None:
    """Which published model the student compares to (and why), then DeepSeek's rows for the matched benchmarks."""
    hits = sorted({c for c in matched.values() if c})
    if not hits:
        sec.note(f"no published comparison: DeepSeek reported R1-Distill numbers on {', '.join(PUBLISHED_BENCHMARKS)}; "
                 f"this run's benchmark ({', '.join(matched)}) is none of them.")
        return
    if published is None:
        sec.note(f"student base '{student_model}' is not one of DeepSeek's R1-Distill bases, so no row is compared "
                 "directly; the published numbers for this run's benchmarks are below for reference.")
    else:
        base = PUBLISHED_R1_DISTILL[published]["base"]
        same = base.lower() in student_model.lower()
        sec.note(f"published column: {published} (distilled by DeepSeek from {base}"
                 + ("" if same else f"; this run's base is {student_model}") + "), beside the student rows.")
    rows = []
    for model, numbers in PUBLISHED_R1_DISTILL.items():
        rows.append([model, numbers["base"]] + [f"{numbers[b]:.1f}" for b in hits]
                    + ([f"{numbers['AIME 2024 cons@64']:.1f}"] if "AIME 2024" in hits else []))
    headers = ["model", "base"] + [f"{b} pass@1" for b in hits] + (["AIME 2024 cons@64"] if "AIME 2024" in hits else [])
    sec.blocks.append(Table(headers, rows, numeric=set(range(2, len(headers))),
                            caption=f"Published R1-Distill results (%): {PUBLISHED_SOURCE}. "
                                    f"Their protocol: {PUBLISHED_PROTOCOL}."))
