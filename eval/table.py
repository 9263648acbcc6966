"""The results table in the layout of DeepSeek's R1-Distill table (model x benchmark), and 4-bit deltas.

The published numbers are the ones :mod:`distill.publish.published` carries (DeepSeek-R1
paper, Table 5); they are shown beside ours only in a column whose benchmark
matches one of theirs (:func:`distill.publish.published.canonical_benchmark`).
Both imports are leaf modules of the publish package (no report, no matplotlib),
and the table itself is drawn by the project's one Markdown-table helper.
"""

from __future__ import annotations

from typing import Any

from distill.publish.published import (PUBLISHED_R1_DISTILL, PUBLISHED_SOURCE, canonical_benchmark,
                                      published_model_for)
from distill.publish.tables import markdown_table
from distill.eval.benchmarks import DEEPSEEK_LCB_WINDOW

Grid = dict[str, dict[str, dict[str, Any]]]  # model label -> benchmark -> summary

# the artifacts compared against the fp32 student, and what each is
ARTIFACTS = {"student_4bit": "bitsandbytes NF4", "student_gguf": "GGUF 4-bit in llama.cpp",
             "student_8bit": "bitsandbytes int8"}


def deltas(grid: Grid, reference: str = "student") -> dict[str, dict[str, dict[str, float]]]:
    """pass@1 of each quantised artifact minus the fp32 student's, per benchmark both were evaluated on."""
    ref = grid.get(reference) or {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label in ARTIFACTS:
        for bench, summary in (grid.get(label) or {}).items():
            if bench in ref:
                a, b = summary["pass_at_1"], ref[bench]["pass_at_1"]
                out.setdefault(label, {})[bench] = {"pass_at_1": a, reference: b, "delta": a - b}
    return out


def _columns(grid: Grid) -> list[tuple[str, str | None]]:
    benches: list[str] = []
    for per_bench in grid.values():
        for b in per_bench:
            if b not in benches:
                benches.append(b)
    return [(b, canonical_benchmark(b)) for b in benches]


def _comparable(grid: Grid, bench: str, canon: str | None) -> bool:
    """Whether DeepSeek's number for ``canon`` is over the same problems as this column.

    LiveCodeBench is a moving set: DeepSeek's numbers are for the problems dated
    2024-08-01 .. 2025-01-31, so a column over another window (or of unknown
    window, such as a user's file) gets no published number beside it.
    """
    if canon is None:
        return False
    if canon != "LiveCodeBench":
        return True
    windows = {((s.get("protocol") or {}).get("benchmark") or {}).get("window")
               for per_bench in grid.values() for b, s in per_bench.items() if b == bench}
    return windows == {DEEPSEEK_LCB_WINDOW}


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}" if isinstance(x, (int, float)) else "–"


def _headers(cols: list[tuple[str, str | None]]) -> list[str]:
    headers = ["model"]
    for bench, canon in cols:
        label = f"{bench} ({canon})" if canon and canon != bench else bench
        headers.append(f"{label} pass@1")
        if canon == "AIME 2024":
            headers.append(f"{label} cons@k")
    return headers


def _run_row(model: str, per_bench: dict[str, Any], cols: list[tuple[str, str | None]]) -> list[str]:
    """One model of this run: pass@1 with its 95% CI, and cons@k under AIME 2024."""
    cells = [model]
    for bench, canon in cols:
        s = per_bench.get(bench) or {}
        ci = f" ({_pct(s['ci95_low'])}–{_pct(s['ci95_high'])})" if "ci95_low" in s else ""
        cells.append(_pct(s.get("pass_at_1")) + ci)
        if canon == "AIME 2024":
            k = (s.get("params") or {}).get("n")
            cells.append(_pct(s.get("cons_at_k")) + (f" (k={k})" if k else ""))
    return cells


def _published_rows(cols: list[tuple[str, str | None]], other_window: list[str],
                    compared: str | None) -> list[list[str]]:
    """DeepSeek's rows; "–" where they reported nothing or over other problems (another LCB window)."""
    rows = []
    for name, numbers in PUBLISHED_R1_DISTILL.items():
        mark = " ← compare" if name == compared else ""
        cells = [f"{name} (published){mark}"]
        for bench, canon in cols:
            shown = canon in numbers and bench not in other_window
            cells.append(f"{numbers[canon]:.1f}" if shown else "–")
            if canon == "AIME 2024":
                cells.append(f"{numbers['AIME 2024 cons@64']:.1f} (k=64)")
        rows.append(cells)
    return rows


def r1_distill_table(grid: Grid, student_model: str) -> str:
    """Markdown: one row per model of this run, then DeepSeek's published rows; pass@1 (and cons@k) in %.

    A benchmark DeepSeek also reported gets their number under the same column;
    the others show "–" in the published rows.  cons@k columns are added for
    AIME 2024, the one benchmark DeepSeek reports a consensus number for (k=64).
    """
    cols = _columns(grid)
    other_window = [b for b, canon in cols if canon and not _comparable(grid, b, canon)]
    headers = _headers(cols)
    rows = [_run_row(model, per_bench, cols) for model, per_bench in grid.items()]
    notes: list[str] = []
    if any(canon for _, canon in cols):
        rows += _published_rows(cols, other_window, published_model_for(student_model))
        notes += ["", f"Published rows: {PUBLISHED_SOURCE}."]
        for bench in other_window:
            notes.append(f"No published number beside {bench}: DeepSeek's LiveCodeBench problems are those dated "
                         f"{DEEPSEEK_LCB_WINDOW}, and this column's window differs.")
    else:
        notes += ["", "No column matches a benchmark of DeepSeek's R1-Distill table, so no published rows."]
    notes += _method_notes(grid)
    table = markdown_table(headers, rows, numeric=range(1, len(headers)))
    return "\n".join([table, *notes]) + "\n"


CI_METHODS = {"t": "Student's t distribution over the per-problem means",
              "bootstrap": "a seeded percentile bootstrap over the per-problem means"}


def _method_notes(grid: Grid) -> list[str]:
    """How the numbers were made: the interval's method (from the summaries), truncation, unjudged samples."""
    summaries = [s for per_bench in grid.values() for s in per_bench.values()]
    methods = sorted({s.get("ci_method") or "z" for s in summaries})
    how = "; ".join(CI_METHODS.get(m, "a normal (z) approximation, from an older harness") for m in methods)
    notes = [f"pass@1 in %, mean over k samples per problem, its 95% interval over problems in brackets "
             f"({how}); truncated samples count as wrong."]
    unjudged = [f"{model} on {bench}: {s['verifier_failed']} of {s.get('samples', '?')}"
                for model, per_bench in grid.items() for bench, s in per_bench.items() if s.get("verifier_failed")]
    if unjudged:
        notes.append("Samples the verifier could not judge (no sandbox, math-verify timeouts) are left out of "
                     "pass@1 and cons@k: " + "; ".join(unjudged) + ".")
    return notes
