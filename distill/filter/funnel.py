"""What the filter did, for people: the funnel summary (funnel.json) and its PNG plots.

The filter's rejections decide what the student learns, so the stage writes, beside
kept/rejected traces, counts and tokens per reason and per source, the sandbox's
outcomes for code, the pass-rate spread and the judge's counts, plus ``funnel.png``
and ``lengths.png`` (kept versus rejected completion lengths).  The charts are the
ones ``distill report`` draws (distill.publish.report), so the two always look alike.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Mapping

from distill.filter.traces import FilterResult
from distill.store import write_bytes_atomic

log = logging.getLogger(__name__)


def funnel_summary(result: FilterResult, sources: Mapping[str, str]) -> dict[str, Any]:
    """funnel.json: the funnel and tokens per reason, both also per problem source, and per-part details."""
    by_source: dict[str, Counter] = defaultdict(Counter)
    tokens_by_source: dict[str, Counter] = defaultdict(Counter)
    for t, v in zip(result.traces, result.verdicts):
        source = sources.get(t.problem_id) or "unknown"
        by_source[source][v.reason] += 1
        tokens_by_source[source][v.reason] += t.completion_tokens
    rates = list(result.pass_rates.values())
    summary: dict[str, Any] = {
        "funnel": result.funnel,
        "completion_tokens": result.tokens,
        "by_source": {s: {"total": sum(c.values()), **dict(c)} for s, c in sorted(by_source.items())},
        "completion_tokens_by_source": {s: dict(c) for s, c in sorted(tokens_by_source.items())},
        "pass_rate": {"problems": len(rates), "never_solved": sum(r == 0 for r in rates),
                      "always_solved": sum(r == 1 for r in rates)},
    }
    if result.details:
        summary["sandbox_outcomes"] = dict(Counter(d.split(":", 1)[0] for d in result.details.values()))
    if result.judge_stats:
        summary["judge"] = result.judge_stats
    return summary


def write_filter_plots(result: FilterResult, folder: Path, max_tokens: int | None = None) -> list[Path]:
    """funnel.png and lengths.png in ``folder``; [] with a warning without matplotlib."""
    try:
        import matplotlib  # noqa: F401 - drawn through matplotlib.figure.Figure, whose PNGs use Agg
    except ImportError:
        log.warning("filter plots skipped: matplotlib is not installed")
        return []
    from distill.publish.charts import funnel_chart, length_chart

    kept = [t.completion_tokens for t, v in zip(result.traces, result.verdicts) if v.ok]
    rejected = [t.completion_tokens for t, v in zip(result.traces, result.verdicts) if not v.ok]
    written = []
    charts = {"funnel.png": lambda: funnel_chart(result.funnel)}
    if kept or rejected:
        charts["lengths.png"] = lambda: length_chart(kept, rejected, [], max_tokens)
    for name, draw in charts.items():
        try:
            png = draw()
        except Exception as exc:  # noqa: BLE001 - a chart failing must not lose the filtered traces
            log.warning("filter plot %s failed: %s", name, exc, exc_info=True)
            continue
        path = folder / name
        write_bytes_atomic(path, png)
        written.append(path)
    return written
