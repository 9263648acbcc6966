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

Where the parts live: the data model in :mod:`~distill.publish.report_model`, the
section builders in :mod:`~distill.publish.sections` and
:mod:`~distill.publish.eval_section`, the charts in :mod:`~distill.publish.charts`,
DeepSeek's published numbers in :mod:`~distill.publish.published` and the HTML /
Markdown rendering (Jinja2 templates) in :mod:`~distill.publish.render`.  This
module builds and writes the report; the names it used to define are re-exported.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

from distill.errors import UserError
from distill.publish.checkpoint_section import checkpoints_section
from distill.publish.charts import budget_chart, eval_chart, funnel_chart, length_chart, loss_chart, seconds_chart
from distill.publish.composition import composition_section
from distill.publish.eval_section import eval_section
from distill.publish.published import (PUBLISHED_BENCHMARKS, PUBLISHED_PROTOCOL, PUBLISHED_R1_DISTILL,
                                       PUBLISHED_SOURCE, canonical_benchmark, published_model_for)
from distill.publish.render import render_html, render_markdown
from distill.publish.report_model import NOT_RUN, Chart, Note, ReportFiles, RunReport, Section, Table
from distill.publish.run_folder import RunFolder
from distill.publish.coverage_section import coverage_section
from distill.publish.sections import (budget_section, export_section, funnel_section, lengths_section, loss_section,
                                      overview_section, stages_section)
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
    # defined here before the split, now re-exported from their modules (distill.filter.funnel imports
    # funnel_chart and length_chart from here)
    "NOT_RUN",
    "PUBLISHED_BENCHMARKS",
    "PUBLISHED_PROTOCOL",
    "budget_chart",
    "eval_chart",
    "funnel_chart",
    "length_chart",
    "loss_chart",
    "seconds_chart",
]

SECTION_BUILDERS: list[tuple[str, str, Callable[[RunFolder], Section | None]]] = [
    ("overview", "Run", overview_section),
    ("stages", "Stages and time", stages_section),
    ("funnel", "Filter funnel", funnel_section),
    ("coverage", "Coverage vs teacher tokens", coverage_section),
    ("composition", "Training-set composition", composition_section),  # a mixture run only (None otherwise)
    ("lengths", "Trace lengths", lengths_section),
    ("loss", "Training loss", loss_section),
    ("checkpoints", "Checkpoints during training", checkpoints_section),
    ("eval", "Evaluation", eval_section),
    ("export", "Export sizes", export_section),
    ("budget", "Accuracy vs thinking budget", budget_section),
]


def _build_section(run: RunFolder, key: str, title: str,
                   builder: Callable[[RunFolder], Section | None]) -> Section | None:
    """``builder(run)``, or an "unreadable" section saying why: one bad file must not cost the whole report."""
    try:
        return builder(run)
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not cost the whole report
        log.warning("report: section %s of %s failed: %s", key, run.dir, exc, exc_info=True)
        sec = Section(key, title, "unreadable")
        sec.note(f"could not read this part of the run: {type(exc).__name__}: {exc}", "warn")
        return sec


def build_report(run_dir: str | os.PathLike[str]) -> RunReport:
    """Read a run folder into a :class:`RunReport` (sections of notes, tables and charts).

    Raises UserError only when ``run_dir`` is not a run folder at all (no manifest.json);
    anything missing or unreadable inside one becomes that section's status.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise UserError(f"not a run folder (no manifest.json): {run_dir}")
    try:
        run = RunFolder(run_dir)
    except ValueError as exc:
        raise UserError(f"{run_dir / 'manifest.json'}: not valid JSON ({exc})") from None
    built = [_build_section(run, key, title, builder) for key, title, builder in SECTION_BUILDERS]
    sections = [s for s in built if s is not None]  # a builder returns None where its part does not apply
    name = str(run.cfg("name", default=run_dir.name) or run_dir.name)
    meta = [("run", name), ("folder", str(run_dir.resolve()))]
    return RunReport(name, run_dir, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), meta, sections)


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
