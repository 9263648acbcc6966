"""Render a :class:`~distill.publish.report_model.RunReport` to HTML and Markdown from Jinja2 templates.

The templates live in ``distill/publish/templates`` (package data, so they load
from an installed wheel): ``report.html.j2`` autoescapes every string of the run,
and ``report.md.j2`` draws its tables with the project's one Markdown-table
helper, :func:`distill.publish.tables.markdown_table`.
"""

from __future__ import annotations

import base64

from distill.publish.report_model import NOT_RUN, Chart, Note, RunReport, Table
from distill.publish.tables import escape_cell, markdown_table
from distill.publish.templating import render

__all__ = ["render_html", "render_markdown"]

_BADGE_CLASSES = {"ok": "b-ok", "partial": "b-partial", NOT_RUN: "b-notrun"}


def _kind(block: Note | Table | Chart) -> str:
    """The template's switch on a block's type (Jinja has no isinstance)."""
    if isinstance(block, Note):
        return "note"
    return "table" if isinstance(block, Table) else "chart"


def _badge_class(status: str) -> str:
    return _BADGE_CLASSES.get(status, "b-unreadable")


def _data_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


def _md_table(table: Table) -> str:
    """A report table in Markdown; an empty header becomes a space so the header row stays a row."""
    text = markdown_table([h or " " for h in table.headers], table.rows, numeric=table.numeric)
    return text + (f"\n\n*{escape_cell(table.caption)}*" if table.caption else "")


def render_html(report: RunReport) -> str:
    """One self-contained HTML page: inline CSS, charts as data URIs, no external references."""
    return render("report.html.j2", report=report, kind=_kind, badge_class=_badge_class, data_uri=_data_uri)


def render_markdown(report: RunReport) -> str:
    """Markdown with the charts as ``![alt](name.png)``: the PNGs are written beside the file."""
    return render("report.md.j2", report=report, kind=_kind, md_table=_md_table)
