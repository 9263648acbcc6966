"""Cell and table formatting shared by the model card, its evaluation part and the dataset card.

Why its own module: :mod:`distill.publish.card` and :mod:`distill.publish.card_eval`
both write tables, and one place for the cell format (``%g`` floats, compact
JSON, "–" for nothing) keeps every card's tables alike without an import cycle.
"""

from __future__ import annotations

import json
from typing import Any

from distill.publish.tables import markdown_table

__all__ = ["card_table", "card_text", "pct", "settings_table"]


def _cell_text(value: Any) -> str:
    """One table cell's text (escaping is markdown_table's job): ``%g`` floats, compact JSON structures."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if value is None:
        return "–"
    return str(value)


def card_table(headers: list[str], rows: list[list[Any]]) -> str:
    """The project's markdown table with the cards' cell formatting."""
    return markdown_table(headers, rows, cell=_cell_text)


def settings_table(headers: list[str], settings: dict) -> str:
    """A two-column key/value table of ``settings``."""
    return card_table(headers, [[k, v] for k, v in settings.items()])


def pct(value: float) -> float:
    """A 0..1 fraction as a percent rounded to two decimals (the unit of the cards and ``model-index``)."""
    return round(100.0 * float(value), 2)


def card_text(card_class: type, meta_yaml: str, body: list[str]) -> str:
    """The README.md text: ``meta_yaml`` as the header, then the body sections, through ``card_class``.

    ``card_class`` is huggingface_hub's ModelCard or DatasetCard, which parses the
    header with its card-data class and writes it back in the Hub's format.  The
    body starts with an empty line after the closing ``---``, as the cards always have.
    """
    card = card_class("---\n" + meta_yaml + "\n---\n\n" + "\n".join(body))
    return str(card)
