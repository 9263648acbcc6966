"""The project's one Markdown-table helper (run report, eval table, model card).

Every Markdown table the toolkit writes goes through :func:`markdown_table`, so
escaping and layout are decided in one place: cells are turned into text by the
caller's ``cell`` function (default :class:`str`), then ``|`` is escaped and
newlines become spaces so a value can never break the table's row structure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from distill.publish.templating import render


def escape_cell(text: str) -> str:
    """``text`` made safe inside one Markdown table cell: pipes escaped, newlines folded to spaces."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]], *, numeric: Collection[int] = (),
                   cell: Callable[[Any], str] = str) -> str:
    """A Markdown table, no trailing newline: a header row, an alignment row, one row per entry of ``rows``.

    ``numeric`` holds the indexes of right-aligned columns (``---:``; the others
    are ``---``).  ``cell`` turns a header or a value into text before escaping;
    pass a formatter (floats, ``None``) there rather than pre-escaped strings, or
    the pipes would be escaped twice.
    """
    def text(value: Any) -> str:
        return escape_cell(cell(value))

    return render("table.md.j2",
                  headers=[text(h) for h in headers],
                  aligns=["---:" if i in numeric else "---" for i in range(len(headers))],
                  rows=[[text(c) for c in row] for row in rows]).rstrip("\n")
