"""A run report a person reads: ``report.html`` (one self-contained file) and ``report.md`` (PNGs beside it).

Why this exists beside ``report.json`` and ``distill show``: those answer "what were
the numbers"; this answers "does the run look right" - the filter funnel, how long
kept and rejected traces were, whether the loss came down, the eval table next to
DeepSeek's published R1-Distill numbers, export sizes and where the time went - in a
file that opens offline and can be attached to an issue or a pull request.

Design rules:

* Every section is built on its own from the files the stages left behind.  A
  missing input is shown as "not run" and an unreadable one as "unreadable"; a
  partial run (``--until filter``, a crash, a copy of half a folder) still gets a
  report.  Building a report never runs a stage.
* ``report.html`` embeds its charts as base64 PNG data URIs and carries its CSS
  inline, so it is one file with no external requests.  Its one inline script only
  marks ``<body data-images-ok>`` after load, which the headless-browser test reads.
* This is a core module: it must not import the ``teachers``, ``students`` or
  ``eval`` packages.  matplotlib is imported lazily (and used through
  ``matplotlib.figure.Figure`` with the Agg renderer, never pyplot, so a notebook's
  backend is left alone); without it the report is written with tables only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill.config import STAGES
from distill.errors import UserError
from distill.records import read_jsonl
from distill.store import write_bytes_atomic

log = logging.getLogger(__name__)

__all__ = [
    "PUBLISHED_R1_DISTILL",
    "PUBLISHED_SOURCE",
    "Chart",
    "Note",
    "ReportFiles",
    "RunReport",
    "Section",
    "Table",
    "build_report",
    "canonical_benchmark",
    "published_model_for",
    "render_html",
    "render_markdown",
    "write_report",
]

NOT_RUN = "not run"

# --------------------------------------------------------------------------- published numbers

PUBLISHED_SOURCE = ("DeepSeek-AI 2025, \"DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via "
                    "Reinforcement Learning\", arXiv:2501.12948, Table 5")
PUBLISHED_PROTOCOL = "pass@1 averaged over k = 4-64 samples, temperature 0.6, top-p 0.95, up to 32,768 generated tokens"

# DeepSeek-R1 paper, Table 5 (distilled models).  Percent.  "AIME 2024 cons@64" is the only
# consensus number the paper reports; CodeForces ratings are left out (no benchmark here
# produces one).
PUBLISHED_R1_DISTILL: dict[str, dict[str, Any]] = {
    "DeepSeek-R1-Distill-Qwen-1.5B": {"base": "Qwen2.5-Math-1.5B", "AIME 2024": 28.9, "AIME 2024 cons@64": 52.7,
                                      "MATH-500": 83.9, "GPQA Diamond": 33.8, "LiveCodeBench": 16.9},
    "DeepSeek-R1-Distill-Qwen-7B": {"base": "Qwen2.5-Math-7B", "AIME 2024": 55.5, "AIME 2024 cons@64": 83.3,
                                    "MATH-500": 92.8, "GPQA Diamond": 49.1, "LiveCodeBench": 37.6},
    "DeepSeek-R1-Distill-Qwen-14B": {"base": "Qwen2.5-14B", "AIME 2024": 69.7, "AIME 2024 cons@64": 80.0,
                                     "MATH-500": 93.9, "GPQA Diamond": 59.1, "LiveCodeBench": 53.1},
    "DeepSeek-R1-Distill-Qwen-32B": {"base": "Qwen2.5-32B", "AIME 2024": 72.6, "AIME 2024 cons@64": 83.3,
                                     "MATH-500": 94.3, "GPQA Diamond": 62.1, "LiveCodeBench": 57.2},
    "DeepSeek-R1-Distill-Llama-8B": {"base": "Llama-3.1-8B", "AIME 2024": 50.4, "AIME 2024 cons@64": 80.0,
                                     "MATH-500": 89.1, "GPQA Diamond": 49.0, "LiveCodeBench": 39.6},
    "DeepSeek-R1-Distill-Llama-70B": {"base": "Llama-3.3-70B-Instruct", "AIME 2024": 70.0,
                                      "AIME 2024 cons@64": 86.7, "MATH-500": 94.5, "GPQA Diamond": 65.2,
                                      "LiveCodeBench": 57.5},
}
PUBLISHED_BENCHMARKS = ("AIME 2024", "MATH-500", "GPQA Diamond", "LiveCodeBench")

_BENCHMARK_ALIASES = (  # (substring of the squashed name, canonical name); first match wins
    ("aime2024", "AIME 2024"), ("aime24", "AIME 2024"),
    ("math500", "MATH-500"),
    ("gpqadiamond", "GPQA Diamond"), ("gpqa", "GPQA Diamond"),
    ("livecodebench", "LiveCodeBench"), ("lcb", "LiveCodeBench"),
)


def canonical_benchmark(name: str) -> str | None:
    """The Table 5 benchmark a held-out set's name refers to, or None.

    Why fuzzy: the benchmark is named after the held-out file (``math500.jsonl`` ->
    ``math500``, ``aime_2024`` ...), so spelling varies; ``heldout`` (the arithmetic
    quickstart) matches nothing and gets no published number.
    """
    squashed = re.sub(r"[^a-z0-9]", "", (name or "").lower())
    for needle, canonical in _BENCHMARK_ALIASES:
        if needle in squashed:
            return canonical
    return None


def published_model_for(student_model: str) -> str | None:
    """The R1-Distill model whose published numbers a student from ``student_model`` compares to.

    Matched on family and size (Qwen2.5 1.5B/7B/14B/32B, Llama 8B/70B), since that is
    what the comparison is about; the report names DeepSeek's exact base beside it
    when the run used a different variant (say Qwen2.5-7B-Instruct instead of -Math-7B).
    """
    name = (student_model or "").lower()
    if "r1-distill" in name:
        for published in PUBLISHED_R1_DISTILL:
            if published.lower().split("/")[-1] in name:
                return published
    size = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z0-9])", name)
    if not size:
        return None
    s = size.group(1)
    if "qwen" in name and s in ("1.5", "7", "14", "32"):
        return f"DeepSeek-R1-Distill-Qwen-{s}B"
    if "llama" in name and s in ("8", "70"):
        return f"DeepSeek-R1-Distill-Llama-{s}B"
    return None


# --------------------------------------------------------------------------- the report's data model


@dataclass
class Note:
    text: str
    kind: str = "info"  # info | warn


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: set[int] = field(default_factory=set)  # column indexes aligned right


@dataclass
class Chart:
    name: str  # file stem of the PNG written beside report.md
    alt: str
    png: bytes


@dataclass
class Section:
    key: str
    title: str
    status: str = "ok"  # ok | partial | not run | unreadable
    blocks: list[Note | Table | Chart] = field(default_factory=list)

    def note(self, text: str, kind: str = "info") -> None:
        self.blocks.append(Note(text, kind))

    @property
    def charts(self) -> list[Chart]:
        return [b for b in self.blocks if isinstance(b, Chart)]


@dataclass
class RunReport:
    name: str
    run_dir: Path
    generated: str
    meta: list[tuple[str, str]]
    sections: list[Section]

    @property
    def charts(self) -> list[Chart]:
        return [c for s in self.sections for c in s.charts]

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    images: list[Path]


# --------------------------------------------------------------------------- reading the run folder


class _Run:
    """Lazy, forgiving access to one run folder's files."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.manifest: dict[str, Any] = _load_json(run_dir / "manifest.json")
        self.stages: dict[str, Any] = self.manifest.get("stages") or {}
        self._config: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config.yaml as plain data (not validated: an old run must still report)."""
        if self._config is None:
            self._config = {}
            path = self.dir / "config.yaml"
            if path.is_file():
                try:
                    import yaml

                    self._config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                except Exception as exc:  # noqa: BLE001 - a broken config.yaml must not stop the report
                    log.warning("report: cannot read %s: %s", path, exc)
        return self._config

    def cfg(self, *keys: str, default: Any = None) -> Any:
        node: Any = self.config
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return node

    def status(self, stage: str) -> str:
        return str(self.stages.get(stage, {}).get("status") or NOT_RUN)

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _stage_note(run: _Run, section: Section, stage: str) -> None:
    """Say so when the files shown come from a stage that is not ``done`` (a crash, a run in progress)."""
    status = run.status(stage)
    if status != "done":
        section.status = "partial"
        section.note(f"stage {stage} is '{status}': what is shown here may be incomplete or stale.", "warn")


# --------------------------------------------------------------------------- formatting


def _fmt_int(n: Any) -> str:
    return f"{int(n):,}" if isinstance(n, (int, float)) and not isinstance(n, bool) else "–"


def _fmt_pct(x: Any, digits: int = 1) -> str:
    return f"{100 * float(x):.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def _fmt_seconds(s: Any) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool):
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _fmt_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _length_row(label: str, values: list[int]) -> list[str]:
    v = sorted(values)
    if not v:
        return [label, "0", "–", "–", "–", "–"]
    return [label, _fmt_int(len(v)), f"{sum(v) / len(v):.1f}", f"{_quantile(v, 0.5):.0f}", f"{_quantile(v, 0.9):.0f}",
            _fmt_int(v[-1])]


# --------------------------------------------------------------------------- charts

KEPT, REJECTED, NEUTRAL, ACCENT, PUBLISHED = "#2e7d32", "#c62828", "#78909c", "#1565c0", "#212121"


def _plotting_available() -> bool:
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


def _chart(section: Section, name: str, alt: str, draw: Callable[[], bytes]) -> None:
    """Add a chart to ``section``, or a note saying why there is none (no matplotlib, a plotting error)."""
    if not _plotting_available():
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
    labels = list(seconds)
    fig, ax = _figure(8, 0.5 + 0.4 * len(labels))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, [seconds[k] for k in labels], color=NEUTRAL)
    ax.set_yticks(y, labels)
    top = max(list(seconds.values()) + [1e-9])
    for yi, k in zip(y, labels):
        ax.text(seconds[k], yi, " " + _fmt_seconds(seconds[k]), va="center", fontsize=9)
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("seconds (last time each stage ran)")
    ax.set_title("time per stage")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def budget_chart(model: str, points: list[dict[str, Any]]) -> bytes:
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


# --------------------------------------------------------------------------- sections


def _overview(run: _Run) -> Section:
    sec = Section("overview", "Run")
    m = run.manifest
    versions = m.get("versions") or {}
    rows = [
        ["teacher", str(run.cfg("teacher", "model", default="–"))
         + (f" ({run.cfg('teacher', 'backend')})" if run.cfg("teacher", "backend") else "")],
        ["student base", str(run.cfg("student", "model", default="–"))
         + (f" ({run.cfg('student', 'method')})" if run.cfg("student", "method") else "")],
        ["problems", f"{run.cfg('problems', 'source')}: {_fmt_int(run.cfg('problems', 'train_size'))} train, "
                     f"{_fmt_int(run.cfg('problems', 'heldout_size'))} held out" if run.cfg("problems") else "–"],
        ["created / updated", f"{m.get('created', '–')} / {m.get('updated', '–')}"],
        ["git commit", str(m.get("git_commit") or "–")],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "–"],
    ]
    sec.blocks.append(Table(["", ""], rows))
    return sec


def _stages(run: _Run) -> Section:
    sec = Section("stages", "Stages and time")
    rows, seconds = [], {}
    for stage in STAGES:
        e = run.stages.get(stage) or {}
        status = str(e.get("status") or NOT_RUN)
        text = str(e.get("summary") or "")
        if status == "failed" and e.get("error"):
            text = f"error: {e['error']}"
        rows.append([stage, status, _fmt_seconds(e.get("seconds")), text])
        if isinstance(e.get("seconds"), (int, float)):
            seconds[stage] = float(e["seconds"])
    extra = [s for s in run.stages if s not in STAGES]
    for stage in extra:
        e = run.stages[stage] or {}
        rows.append([stage, str(e.get("status")), _fmt_seconds(e.get("seconds")), str(e.get("summary") or "")])
    if not run.stages:
        sec.status = NOT_RUN
        sec.note("no stage has run in this folder yet.")
    sec.blocks.append(Table(["stage", "status", "time", "summary"], rows, numeric={2}))
    if seconds:
        total = sum(seconds.values())
        sec.note(f"total {_fmt_seconds(total)} over {len(seconds)} stage(s); a stage skipped as up to date keeps "
                 "the time of the run that produced it.")
        _chart(sec, "stage_seconds", "seconds per stage", lambda: seconds_chart(seconds))
    return sec


def _not_run(sec: Section, why: str) -> Section:
    """Mark a section whose stage has not produced its input; the report says so instead of failing."""
    sec.status = NOT_RUN
    sec.note(why)
    return sec


def _funnel(run: _Run) -> Section:
    sec = Section("funnel", "Filter funnel")
    path = run.path("filter", "funnel.json")
    if not path.is_file():
        return _not_run(sec, "the filter stage has not run (no filter/funnel.json).")
    data = _load_json(path)
    funnel: dict[str, int] = dict(data.get("funnel") or {})
    tokens: dict[str, int] = dict(data.get("completion_tokens") or {})
    _stage_note(run, sec, "filter")
    total = funnel.get("total") or 0
    rows = []
    for reason, count in funnel.items():
        share = f"{100 * count / total:.1f}%" if total else "–"
        tok = sum(tokens.values()) if reason == "total" and tokens else tokens.get(reason)
        rows.append([reason, _fmt_int(count), share, _fmt_int(tok) if tok is not None else "–"])
    _chart(sec, "funnel", "filter funnel", lambda: funnel_chart(funnel))
    sec.blocks.append(Table(["verdict", "traces", "share", "completion tokens"], rows, numeric={1, 2, 3}))
    kept = funnel.get("kept", 0)
    sec.note(f"kept {kept:,} of {total:,} traces ({100 * kept / total:.1f}%)." if total else "no traces were filtered.")
    return sec


def _lengths(run: _Run) -> Section:
    sec = Section("lengths", "Trace lengths")
    shards = sorted(run.path("sample", "shards").glob("*.jsonl")) if run.path("sample", "shards").is_dir() else []
    if not shards:
        return _not_run(sec, "the sample stage has not run (no sample/shards/*.jsonl).")
    _stage_note(run, sec, "sample")
    tokens: dict[tuple[str, int], int] = {}
    for shard in shards:
        for row in read_jsonl(shard):
            tokens[(row.get("problem_id"), row.get("sample_index"))] = int(row.get("completion_tokens") or 0)
    verdict_path = run.path("filter", "verdicts.jsonl")
    reasons: dict[tuple[str, int], str] = {}
    if verdict_path.is_file():
        for v in read_jsonl(verdict_path):
            reason = v.get("reason") or ("kept" if v.get("ok") else "rejected")
            reasons[(v.get("problem_id"), v.get("sample_index"))] = str(reason)
    else:
        sec.note("the filter stage has not run: every trace is shown as 'not filtered yet'.")
    kept, rejected, unfiltered = [], [], []
    by_reason: dict[str, list[int]] = {}
    for key, n in tokens.items():
        reason = reasons.get(key)
        if reason is None:
            unfiltered.append(n)
        elif reason == "kept":
            kept.append(n)
        else:
            rejected.append(n)
            by_reason.setdefault(reason, []).append(n)
    max_tokens = run.cfg("teacher", "max_tokens")
    max_tokens = max_tokens if isinstance(max_tokens, int) else None
    _chart(sec, "trace_lengths", "completion tokens, kept vs rejected",
           lambda: length_chart(kept, rejected, unfiltered, max_tokens))
    rows = [_length_row("all traces", list(tokens.values()))]
    if reasons:
        rows += [_length_row("kept", kept), _length_row("rejected", rejected)]
        rows += [_length_row(f"rejected: {r}", v) for r, v in sorted(by_reason.items())]
    if unfiltered and reasons:
        rows.append(_length_row("no verdict", unfiltered))
    sec.blocks.append(Table(["traces", "count", "mean", "median", "p90", "max"], rows, numeric={1, 2, 3, 4, 5},
                            caption="completion tokens per trace (reasoning + answer)"))
    if max_tokens:
        sec.note(f"the teacher's max_tokens is {max_tokens:,}: a trace that reached it was cut off (truncated).")
    return sec


def _loss(run: _Run) -> Section:
    sec = Section("loss", "Training loss")
    path = run.path("train", "losses.json")
    if not path.is_file():
        return _not_run(sec, "the train stage has not run (no train/losses.json).")
    _stage_note(run, sec, "train")
    data = _load_json(path)
    losses = [(float(s), float(v)) for s, v in (data.get("losses") or []) if v is not None and math.isfinite(float(v))]
    if not losses:
        sec.status = "partial"
        sec.note("training logged no loss (too few steps for one logging interval).")
        return sec
    _chart(sec, "loss", "training loss", lambda: loss_chart(losses))
    counts = (run.stages.get("train") or {}).get("counts") or {}
    rows = [["steps", _fmt_int(data.get("steps", losses[-1][0]))],
            ["training examples", _fmt_int(counts.get("examples"))],
            ["first logged loss", f"{losses[0][1]:.4f} (step {losses[0][0]:.0f})"],
            ["final logged loss", f"{losses[-1][1]:.4f} (step {losses[-1][0]:.0f})"],
            ["lowest logged loss", f"{min(v for _, v in losses):.4f}"]]
    if counts.get("resumed_from"):
        rows.append(["resumed from", str(counts["resumed_from"])])
    sec.blocks.append(Table(["", ""], rows))
    return sec


def _eval_rows(run: _Run) -> tuple[list[dict[str, Any]], str | None]:
    """(rows, why partial) from eval/results.json, or from the per-model files a crashed eval left."""
    path = run.path("eval", "results.json")
    grid = run.path("eval", "benchmarks.json")  # model -> benchmark -> summary, every benchmark evaluated
    partial = None
    if grid.is_file() and path.is_file():
        results = _load_json(grid)
    elif path.is_file():
        results = _load_json(path)
    else:
        results = {}
        for f in sorted(run.path("eval").glob("*.json")) if run.path("eval").is_dir() else []:
            if f.name in ("results.json", "budget_sweep.json"):
                continue
            try:
                data = _load_json(f)
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


def _eval(run: _Run) -> Section:
    sec = Section("eval", "Evaluation")
    rows, partial = _eval_rows(run)
    if not rows:
        return _not_run(sec, "the eval stage has not run (no eval/results.json).")
    _stage_note(run, sec, "eval")
    if partial:
        sec.status = "partial"
        sec.note(partial, "warn")
    student_model = str(run.cfg("student", "model", default="") or "")
    published = published_model_for(student_model)
    benches = sorted({r["benchmark"] for r in rows})
    matched = {b: canonical_benchmark(b) for b in benches}
    multi = len(benches) > 1
    ks = {int((r.get("params") or {}).get("n") or 0) for r in rows}
    k_text = f"{ks.pop()}" if len(ks) == 1 else "k"
    table_rows, chart_rows = [], []
    show_published = published is not None and any(matched.values())
    for r in rows:
        n = (int((r.get("params") or {}).get("n") or 0)
             or max(1, int(r.get("samples", 0)) // max(1, int(r.get("problems", 1)))))
        canonical = matched.get(r["benchmark"])
        is_student = r["model"].startswith("student") and r["model"] != "student_base"
        pub = PUBLISHED_R1_DISTILL[published].get(canonical) if (show_published and is_student and canonical) else None
        pub_cons = (PUBLISHED_R1_DISTILL[published].get(f"{canonical} cons@64")
                    if (show_published and is_student and canonical) else None)
        row = [r["model"], r["benchmark"] + (f" ({canonical})" if canonical and canonical != r["benchmark"] else ""),
               _fmt_pct(r.get("pass_at_1")),
               f"{_fmt_pct(r.get('ci95_low'))}–{_fmt_pct(r.get('ci95_high'))}",
               _fmt_pct(r.get("cons_at_k")),
               f"{_fmt_int(r.get('problems'))} × {n}",
               _fmt_int(r.get("truncated"))]
        if show_published:
            row += [f"{pub:.1f}" if pub is not None else "–", f"{pub_cons:.1f}" if pub_cons is not None else "–"]
        table_rows.append(row)
        chart_rows.append({**r, "label": f"{r['model']} · {r['benchmark']}" if multi else r["model"],
                           "published": pub})
    headers = ["model", "benchmark", "pass@1", "95% CI", f"cons@{k_text}", "problems × k", "truncated"]
    if show_published:
        headers += [f"{published} pass@1 (published)", "cons@64 (published)"]
    _chart(sec, "eval", "pass@1 per model", lambda: eval_chart(chart_rows))
    sec.blocks.append(Table(headers, table_rows, numeric=set(range(2, len(headers)))))
    params = next((r.get("params") for r in rows if r.get("params")), {}) or {}
    if params:
        sec.note("protocol: pass@1 is the mean over k={n} samples per problem at temperature {t}, top-p {p}, "
                 "max {m} tokens; the interval is a 95% CI over problems; cons@k is majority vote over the k "
                 "samples; a truncated sample counts as wrong.".format(
                     n=params.get("n", "?"), t=params.get("temperature", "?"), p=params.get("top_p", "?"),
                     m=_fmt_int(params.get("max_tokens"))))
    _delta_table(run, sec)
    _published_notes(sec, student_model, published, matched)
    return sec


def _delta_table(run: _Run, sec: Section) -> None:
    """The quantised artifacts against the fp32 student, per benchmark (eval/deltas.json)."""
    path = run.path("eval", "deltas.json")
    if not path.is_file():
        return
    rows = []
    for label, per in (_load_json(path) or {}).items():
        for bench, d in per.items():
            rows.append([label, bench, _fmt_pct(d.get("pass_at_1")), _fmt_pct(d.get("student")),
                         f"{100 * d['delta']:+.1f}" if isinstance(d.get("delta"), (int, float)) else "–"])
    if rows:
        sec.blocks.append(Table(["artifact", "benchmark", "pass@1", "fp32 student pass@1", "delta (points)"], rows,
                                numeric={2, 3, 4}, caption="each quantised export, run in its own consumer "
                                "(transformers for bitsandbytes, llama.cpp for GGUF), against the fp32 student"))


def _published_notes(sec: Section, student_model: str, published: str | None, matched: dict[str, str | None]) -> None:
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


def _export(run: _Run) -> Section:
    sec = Section("export", "Export sizes")
    path = run.path("export", "export.json")
    if not path.is_file():
        return _not_run(sec, "the export stage has not run (no export/export.json).")
    _stage_note(run, sec, "export")
    data = _load_json(path) or {}
    rows = []
    for fmt, info in data.items():
        if not isinstance(info, dict):
            continue
        size, full = info.get("size_bytes"), info.get("full_size_bytes")
        sizes_known = isinstance(size, (int, float)) and isinstance(full, (int, float)) and size
        ratio = f"{full / size:.2f}×" if sizes_known else "–"
        detail = []
        if "qtype" in info:
            detail.append(f"type {info['qtype']}")
        if "tensors" in info:
            detail.append(f"{info['tensors']} tensors")
        if "top1_agreement" in info:
            detail.append(f"top-1 agreement with fp32 {100 * info['top1_agreement']:.1f}%")
        if "max_abs_logit_diff" in info:
            detail.append(f"max |Δlogit| {info['max_abs_logit_diff']:.3f}")
        cpp = info.get("llama_cpp_check")
        if isinstance(cpp, dict):  # the GGUF run in llama.cpp against the fp32 model
            detail.append(f"llama.cpp: tokens identical, top-1 agreement {100 * cpp.get('top1_agreement', 0):.1f}%, "
                          f"relative Δlogit {cpp.get('relative_logit_diff', float('nan')):.3f}")
        if info.get("fallback_reason"):
            detail.append(str(info["fallback_reason"]))
        name = Path(str(info.get("path", ""))).name or fmt
        rows.append([fmt, name, _fmt_bytes(size), _fmt_bytes(full), ratio, ", ".join(detail) or "–"])
    if not rows:
        sec.note("nothing was exported (export.nf4 and export.gguf are off).")
        return sec
    sec.blocks.append(Table(["format", "file", "size", "fp32 size", "smaller by", "check"], rows, numeric={2, 3, 4}))
    return sec


def _budget(run: _Run) -> Section:
    sec = Section("budget", "Accuracy vs thinking budget")
    path = run.path("eval", "budget_sweep.json")
    if not path.is_file():
        return _not_run(sec, "the thinking-budget sweep has not run (no eval/budget_sweep.json).")
    data = _load_json(path) or {}
    points = [p for p in data.get("points") or [] if isinstance(p, dict) and "budget" in p and "pass_at_1" in p]
    model = str(data.get("model", "?"))
    if not points:
        sec.status = "partial"
        sec.note("eval/budget_sweep.json has no points.")
        return sec
    _chart(sec, "budget_sweep", f"pass@1 vs thinking budget ({model})", lambda: budget_chart(model, points))
    rows = [[_fmt_int(p["budget"]), _fmt_pct(p["pass_at_1"]),
             f"{p['mean_tokens']:.1f}" if isinstance(p.get("mean_tokens"), (int, float)) else "–"]
            for p in sorted(points, key=lambda p: p["budget"])]
    sec.blocks.append(Table(["budget (tokens)", "pass@1", "mean tokens"], rows, numeric={0, 1, 2},
                            caption=f"model: {model}"))
    effort = data.get("reasoning_effort") or {}
    levels = [lvl for lvl in ("low", "medium", "high") if isinstance(effort.get(lvl), (int, float))]
    if levels:
        fractions = effort.get("fractions") or {}
        sec.note("reasoning_effort budgets (eval/reasoning_effort.json; each the smallest budget whose pass@1 "
                 "reaches its share of the best): " + ", ".join(
                     f"{lvl} {_fmt_int(effort[lvl])} tokens"
                     + (f" ({100 * fractions[lvl]:.0f}%)" if isinstance(fractions.get(lvl), (int, float)) else "")
                     for lvl in levels) + (f". {effort['note']}" if effort.get("note") else ""))
    forced = sum(int(p.get("forced") or 0) for p in points)
    if forced:
        sec.note(f"{forced:,} samples over all budgets hit their cap: their thinking was cut, </think> appended and "
                 "the answer generated after it, then scored like any other.")
    return sec


SECTION_BUILDERS: list[tuple[str, str, Callable[[_Run], Section]]] = [
    ("overview", "Run", _overview),
    ("stages", "Stages and time", _stages),
    ("funnel", "Filter funnel", _funnel),
    ("lengths", "Trace lengths", _lengths),
    ("loss", "Training loss", _loss),
    ("eval", "Evaluation", _eval),
    ("export", "Export sizes", _export),
    ("budget", "Accuracy vs thinking budget", _budget),
]


def build_report(run_dir: str | os.PathLike[str]) -> RunReport:
    """Read a run folder into a :class:`RunReport` (sections of notes, tables and charts).

    Raises UserError only when ``run_dir`` is not a run folder at all (no manifest.json);
    anything missing or unreadable inside one becomes that section's status.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise UserError(f"not a run folder (no manifest.json): {run_dir}")
    try:
        run = _Run(run_dir)
    except ValueError as exc:
        raise UserError(f"{run_dir / 'manifest.json'}: not valid JSON ({exc})") from None
    sections = []
    for key, title, builder in SECTION_BUILDERS:
        try:
            sections.append(builder(run))
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not cost the whole report
            log.warning("report: section %s of %s failed: %s", key, run_dir, exc, exc_info=True)
            sec = Section(key, title, "unreadable")
            sec.note(f"could not read this part of the run: {type(exc).__name__}: {exc}", "warn")
            sections.append(sec)
    name = str(run.cfg("name", default=run_dir.name) or run_dir.name)
    meta = [("run", name), ("folder", str(run_dir.resolve()))]
    return RunReport(name, run_dir, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), meta, sections)


# --------------------------------------------------------------------------- rendering

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f23;margin:0;background:#f6f7f9}
main{max-width:960px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;padding-top:8px;border-top:1px solid #e3e6ea}
.meta{color:#57606a;font-size:13px;margin:0 0 12px}
nav{font-size:13px;margin:8px 0 0}nav a{margin-right:12px;color:#1565c0;text-decoration:none}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:10px;padding:1px 9px;margin-left:8px;
vertical-align:middle}
.b-ok{background:#e6f4ea;color:#1e6b34}.b-partial{background:#fff4e0;color:#8a5300}
.b-notrun{background:#eceff1;color:#455a64}.b-unreadable{background:#fdecea;color:#a31515}
p.note{margin:6px 0;color:#333}p.warn{color:#8a5300}
table{border-collapse:collapse;margin:10px 0;font-size:13.5px}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
caption{caption-side:bottom;text-align:left;color:#57606a;font-size:12px;padding-top:4px}
img{display:block;max-width:100%;height:auto;margin:10px 0}
"""

# Marks <body data-images-ok="true|false" data-images="N"> once the page has loaded; a headless
# browser reads it back with --dump-dom to check that every embedded chart decoded.
_SCRIPT = """window.addEventListener("load",function(){var i=Array.prototype.slice.call(document.images);
var ok=i.every(function(m){return m.complete&&m.naturalWidth>0;});
document.body.setAttribute("data-images-ok",ok?"true":"false");
document.body.setAttribute("data-images",String(i.length));});"""


def _badge(status: str) -> str:
    cls = {"ok": "b-ok", "partial": "b-partial", NOT_RUN: "b-notrun"}.get(status, "b-unreadable")
    return f'<span class="badge {cls}">{html.escape(status)}</span>'


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f'<th{" class=num" if i in t.numeric else ""}>{e(h)}</th>' for i, h in enumerate(t.headers))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in t.numeric else ""}>{e(str(c))}</td>'
                                   for i, c in enumerate(row)) + "</tr>" for row in t.rows)
    caption = f"<caption>{e(t.caption)}</caption>" if t.caption else ""
    header = f"<thead><tr>{head}</tr></thead>" if any(t.headers) else ""
    return f"<table>{caption}{header}<tbody>{body}</tbody></table>"


def render_html(report: RunReport) -> str:
    """One self-contained HTML page: inline CSS, charts as data URIs, no external references."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>distill run report: {e(report.name)}</title>", f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Run report: {e(report.name)}</h1>",
        f'<p class="meta">{e(str(report.meta[1][1]))} · generated {e(report.generated)} by distill report</p>',
        "<nav>" + "".join(f'<a href="#{s.key}">{e(s.title)}</a>' for s in report.sections) + "</nav>",
    ]
    for s in report.sections:
        parts.append(f'<section id="{e(s.key)}"><h2>{e(s.title)}{_badge(s.status)}</h2>')
        for b in s.blocks:
            if isinstance(b, Note):
                parts.append(f'<p class="note{" warn" if b.kind == "warn" else ""}">{e(b.text)}</p>')
            elif isinstance(b, Table):
                parts.append(_html_table(b))
            elif isinstance(b, Chart):
                data = base64.b64encode(b.png).decode("ascii")
                parts.append(f'<img alt="{e(b.alt)}" src="data:image/png;base64,{data}">')
        parts.append("</section>")
    parts.append(f"</main><script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    headers = [h or " " for h in t.headers]
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"*{_md_cell(t.caption)}*"]
    return "\n".join(lines)


def render_markdown(report: RunReport) -> str:
    """Markdown with the charts as ``![alt](name.png)``: the PNGs are written beside the file."""
    out = [f"# Run report: {report.name}", "", f"{report.meta[1][1]} · generated {report.generated} by distill report",
           ""]
    for s in report.sections:
        out += [f"## {s.title}", "", f"*status: {s.status}*", ""]
        for b in s.blocks:
            if isinstance(b, Note):
                out += [("> " if b.kind == "warn" else "") + b.text, ""]
            elif isinstance(b, Table):
                out += [_md_table(b), ""]
            elif isinstance(b, Chart):
                out += [f"![{b.alt}]({b.name}.png)", ""]
    return "\n".join(out)


def write_report(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> ReportFiles:
    """Write ``report.html``, ``report.md`` and the charts' PNGs into ``out_dir`` (default ``RUN_DIR/report``)."""
    report = build_report(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for chart in report.charts:
        path = out / f"{chart.name}.png"
        write_bytes_atomic(path, chart.png)
        images.append(path)
    md, page = out / "report.md", out / "report.html"
    write_bytes_atomic(md, render_markdown(report).encode("utf-8"))
    write_bytes_atomic(page, render_html(report).encode("utf-8"))
    log.info("report for %s written to %s (%d charts)", run_dir, out, len(images))
    return ReportFiles(page, md, images)
