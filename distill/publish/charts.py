"""The run's charts as PNG bytes: filter funnel, trace lengths, loss, eval, time per stage, budget sweep.

Shared by the run report, the filter stage (its ``funnel.png`` / ``lengths.png``)
and the eval stage's budget sweep, so the same data always looks the same.  This
module imports nothing of the pipeline's stages.  matplotlib is imported lazily
and used through ``matplotlib.figure.Figure`` with the Agg renderer, never
pyplot, so a notebook's backend is left alone; without matplotlib a chart
function raises ImportError and :func:`add_chart` leaves a note instead.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Callable

from distill.publish.formatting import fmt_seconds
from distill.publish.report_model import Chart, Section

log = logging.getLogger(__name__)

__all__ = ["add_chart", "budget_chart", "checkpoint_chart", "eval_chart", "funnel_chart", "length_chart", "loss_chart",
           "plotting_available", "seconds_chart"]

KEPT, REJECTED, NEUTRAL, ACCENT, PUBLISHED = "#2e7d32", "#c62828", "#78909c", "#1565c0", "#212121"


def plotting_available() -> bool:
    """Whether matplotlib can be imported (it is an optional dependency)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 8.0, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def add_chart(section: Section, name: str, alt: str, draw: Callable[[], bytes]) -> None:
    """Add a chart to ``section``, or a note saying why there is none (no matplotlib, a plotting error)."""
    if not plotting_available():
        section.note(f"chart '{alt}' not drawn: matplotlib is not installed (pip install matplotlib).", "warn")
        return
    try:
        section.blocks.append(Chart(name, alt, draw()))
    except Exception as exc:  # noqa: BLE001 - a chart failing must not lose the rest of the report
        log.warning("report: chart %s failed: %s", name, exc, exc_info=True)
        section.note(f"chart '{alt}' could not be drawn: {type(exc).__name__}: {exc}", "warn")


def funnel_chart(funnel: dict[str, int]) -> bytes:
    """Horizontal bars: all traces, each rejection reason, and the traces kept."""
    total = funnel.get("total") or sum(v for k, v in funnel.items() if k != "total")
    labels = list(funnel)
    counts = [funnel[k] for k in labels]
    colors = [NEUTRAL if k == "total" else KEPT if k == "kept" else REJECTED for k in labels]
    fig, ax = _figure(8, 0.5 + 0.45 * len(labels))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, counts, color=colors)
    ax.set_yticks(y, labels)
    for yi, c in zip(y, counts):
        share = f" ({100 * c / total:.1f}%)" if total else ""
        ax.text(c, yi, f" {c:,}{share}", va="center", fontsize=9)
    ax.set_xlim(0, max(counts + [1]) * 1.25)
    ax.set_xlabel("traces")
    ax.set_title("filter funnel")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def length_chart(kept: list[int], rejected: list[int], unfiltered: list[int], max_tokens: int | None) -> bytes:
    """Overlaid histograms of completion tokens, kept vs rejected, on shared bins."""
    import numpy as np

    groups = [(f"kept ({len(kept):,})", kept, KEPT), (f"rejected ({len(rejected):,})", rejected, REJECTED),
              (f"not filtered yet ({len(unfiltered):,})", unfiltered, ACCENT)]
    groups = [g for g in groups if g[1]]
    everything = [x for _, values, _ in groups for x in values]
    lo, hi = min(everything), max(everything)
    span = max(hi - lo, 1)
    bins = np.linspace(lo, hi + 1, min(40, span + 1) + 1)
    fig, ax = _figure()
    for label, values, color in groups:
        ax.hist(values, bins=bins, color=color, alpha=0.45, label=label, histtype="stepfilled", edgecolor=color)
    if max_tokens and lo <= max_tokens <= hi * 1.2:
        ax.axvline(max_tokens, color=PUBLISHED, linestyle="--", linewidth=1, label=f"max_tokens {max_tokens:,}")
    ax.set_xlabel("completion tokens per trace")
    ax.set_ylabel("traces")
    ax.set_title("trace length, kept vs rejected")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def loss_chart(losses: list[tuple[float, float]]) -> bytes:
    """Training loss per optimizer step; a log axis once it falls by more than 20x."""
    steps = [s for s, _ in losses]
    values = [v for _, v in losses]
    fig, ax = _figure()
    ax.plot(steps, values, color=ACCENT, marker="." if len(steps) < 80 else None)
    positive = [v for v in values if v > 0]
    if positive and min(positive) > 0 and max(positive) / min(positive) > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")  # a distillation loss falls by orders of magnitude; log keeps the tail readable
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("student training loss")
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def eval_chart(rows: list[dict[str, Any]]) -> bytes:
    """pass@1 with its 95% interval per model (and benchmark), published numbers as markers."""
    labels = [r["label"] for r in rows]
    fig, ax = _figure(8, 0.6 + 0.5 * len(rows))
    y = list(range(len(rows)))[::-1]
    values = [100 * r["pass_at_1"] for r in rows]
    lows = [max(0.0, v - 100 * r.get("ci95_low", r["pass_at_1"])) for v, r in zip(values, rows)]
    highs = [max(0.0, 100 * r.get("ci95_high", r["pass_at_1"]) - v) for v, r in zip(values, rows)]
    ax.barh(y, values, xerr=[lows, highs], color=ACCENT, alpha=0.8, capsize=3, label="this run (95% CI)")
    pub = [(yi, r["published"]) for yi, r in zip(y, rows) if r.get("published") is not None]
    if pub:
        ax.scatter([p for _, p in pub], [yi for yi, _ in pub], marker="D", color=PUBLISHED, zorder=3,
                   label="DeepSeek R1-Distill (published)")
    for yi, v in zip(y, values):
        ax.text(v, yi + 0.28, f"{v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 105)
    ax.set_xlabel("pass@1 (%)")
    ax.set_title("evaluation")
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def seconds_chart(seconds: dict[str, float]) -> bytes:
    """Horizontal bars: seconds per stage, each labelled with its readable duration."""
    labels = list(seconds)
    fig, ax = _figure(8, 0.5 + 0.4 * len(labels))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, [seconds[k] for k in labels], color=NEUTRAL)
    ax.set_yticks(y, labels)
    top = max(list(seconds.values()) + [1e-9])
    for yi, k in zip(y, labels):
        ax.text(seconds[k], yi, " " + fmt_seconds(seconds[k]), va="center", fontsize=9)
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("seconds (last time each stage ran)")
    ax.set_title("time per stage")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def budget_chart(model: str, points: list[dict[str, Any]]) -> bytes:
    """pass@1 against the thinking budget (log2 axis over a wide sweep), mean tokens annotated."""
    pts = sorted(points, key=lambda p: p["budget"])
    xs = [p["budget"] for p in pts]
    ys = [100 * p["pass_at_1"] for p in pts]
    fig, ax = _figure()
    ax.plot(xs, ys, color=ACCENT, marker="o")
    if len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 8:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log", base=2)  # budgets are usually swept in doublings
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if len(xs) <= 12:
            ax.set_xticks(xs)
    for p, x, y in zip(pts, xs, ys):
        if isinstance(p.get("mean_tokens"), (int, float)):
            ax.annotate(f"{p['mean_tokens']:.0f} tok", (x, y), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=8)
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, max(ys + [1]) * 1.2)
    ax.set_title(f"accuracy vs thinking budget ({model})")
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def checkpoint_chart(curves: dict[str, list[tuple[int, float]]]) -> bytes:
    """pass@1 (%) against the training step of each evaluated checkpoint, one line per benchmark."""
    fig, ax = _figure()
    for bench, points in curves.items():
        points = sorted(points)
        ax.plot([s for s, _ in points], [100 * v for _, v in points], marker="o", label=bench)
    ax.set_xlabel("training step")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("pass@1 vs step (saved checkpoints)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)
