"""The run report's data model: sections of notes, tables and charts, independent of any output format.

Why separate from building and rendering: the section builders fill these
objects from a run folder, and the HTML and Markdown renderers read them; neither
side needs to know about the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NOT_RUN", "Chart", "Note", "ReportFiles", "RunReport", "Section", "Table"]

NOT_RUN = "not run"


@dataclass
class Note:
    """A sentence under a section heading; ``kind="warn"`` is shown highlighted."""

    text: str
    kind: str = "info"  # info | warn


@dataclass
class Table:
    """Rows of already formatted cells; ``numeric`` columns are right-aligned in both formats."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: set[int] = field(default_factory=set)  # column indexes aligned right


@dataclass
class Chart:
    """A PNG: embedded as a data URI in the HTML, written beside ``report.md`` as ``<name>.png``."""

    name: str  # file stem of the PNG written beside report.md
    alt: str
    png: bytes


@dataclass
class Section:
    """One part of the report, built on its own; ``status`` says whether its inputs were there."""

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
    """Everything a report shows about one run folder, in reading order."""

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
    """Where :func:`distill.publish.report.write_report` put the report."""

    html: Path
    markdown: Path
    images: list[Path]
