"""What a rehearsal found, one row per stage: what ran, what was substituted, what would fail at full scale.

Rows are plain data (:class:`StageRehearsal`) so the API hands them back as they are and the CLI
renders them with rich (:func:`rehearsal_table`); nothing here prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

# The least width the table is rendered at (a pipe or a log reports 80 columns, too narrow for it).
TABLE_WIDTH = 200


@dataclass
class StageRehearsal:
    """One stage of a rehearsal.

    ``ran``: what ran, in one line (the stage's own summary, or "skipped: why"); ``substituted``: each
    change the rehearsal made for this stage as ``"path: old -> new (why)"``; ``full_scale_problems``: what
    the static checks say would fail with the real shapes and settings, each with its reason; ``ok``: the
    stage ran (or was rightly skipped) and no full-scale problem was found for it.
    """

    stage: str
    ran: str
    substituted: list[str] = field(default_factory=list)
    full_scale_problems: list[str] = field(default_factory=list)
    ok: bool = True
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def all_ok(rows: Iterable[StageRehearsal]) -> bool:
    return all(row.ok for row in rows)


def plain_rows(rows: Iterable[StageRehearsal]) -> list[dict[str, Any]]:
    """The rows as dicts (JSON-ready), for the API and ``rehearsal.json``."""
    return [row.to_dict() for row in rows]


def rehearsal_table(rows: Iterable[StageRehearsal], title: str = "rehearsal") -> Any:
    """A rich Table: stage, ok, what ran, what was substituted, what would fail at full scale and why.

    Meant for a console at least :data:`TABLE_WIDTH` wide; the full-scale column takes room only when
    some stage has a problem, so the substitutions (the longest lines) keep most of the width.
    """
    from rich.table import Table

    rows = list(rows)
    problems = any(row.full_scale_problems for row in rows)
    table = Table(title=title, title_justify="left", show_lines=True)
    for col, kwargs in (("stage", {"no_wrap": True}), ("ok", {"no_wrap": True}), ("ran", {"ratio": 3}),
                        ("substituted", {"ratio": 5}),
                        ("would fail at full scale", {"ratio": 4 if problems else 1})):
        table.add_column(col, overflow="fold", **kwargs)
    for row in rows:
        secs = f" ({row.seconds:.0f}s)" if row.seconds is not None else ""
        table.add_row(row.stage, "ok" if row.ok else "FAILED", row.ran + secs,
                      "\n".join(f"- {s}" for s in row.substituted) or "-",
                      "\n".join(f"- {p}" for p in row.full_scale_problems) or "-")
    return table
