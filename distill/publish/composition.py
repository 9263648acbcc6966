"""The training set's composition (``filter/composition.json`` of a mixture run) for the report and the card.

Why one module for both: the report and the model card must state the same composition, the one the draw
actually reached (per source and per kind: traces, tokens and the share of each), beside what was configured,
and say plainly how much of it no verifier checked.  A run without a mixture has no composition section.
"""

from __future__ import annotations

from typing import Any

from distill.publish.formatting import fmt_int
from distill.publish.report_model import Section, Table
from distill.publish.run_folder import RunFolder, load_json, stage_note

__all__ = ["composition_notes", "composition_rows", "composition_section", "COMPOSITION_HEADERS"]

COMPOSITION_HEADERS = ["source", "kind", "teacher", "configured", "traces", "share of traces", "tokens",
                       "share of tokens"]


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if isinstance(value, (int, float)) else "–"


def _configured(row: dict[str, Any], mix_by: str) -> str:
    configured = row.get("configured") or {}
    if "share" in configured:
        return f"{_pct(configured['share'])} of {mix_by}"
    if "count" in configured:
        return f"{fmt_int(configured['count'])} {mix_by}"
    return "–"


def composition_rows(comp: dict[str, Any]) -> list[list[str]]:
    """One row per source, then one per kind, then the total (cells already formatted)."""
    mix_by = str(comp.get("mix_by", "traces"))
    rows = []
    for r in comp.get("sources") or []:
        kind = str(r.get("kind", "?")) + ("" if r.get("verified") else " (unverified)")
        rows.append([str(r.get("name")), kind, str(r.get("teacher") or "–"), _configured(r, mix_by),
                     fmt_int(r.get("traces")), _pct(r.get("share_traces")), fmt_int(r.get("tokens")),
                     _pct(r.get("share_tokens"))])
    for kind, k in sorted((comp.get("kinds") or {}).items()):
        rows.append([f"all {kind}", kind, "", "", fmt_int(k.get("traces")), _pct(k.get("share_traces")),
                     fmt_int(k.get("tokens")), _pct(k.get("share_tokens"))])
    rows.append(["total", "", "", "", fmt_int(comp.get("traces")), _pct(1.0 if comp.get("traces") else 0),
                 fmt_int(comp.get("tokens")), _pct(1.0 if comp.get("tokens") else 0)])
    return rows


def composition_notes(comp: dict[str, Any]) -> list[str]:
    """What a reader must know besides the table: unverified traces, and sources short of their count."""
    notes = [f"drawn by {comp.get('mix_by', 'traces')} with seed {comp.get('seed', 0)}; tokens are completion "
             "tokens (reasoning + answer)."]
    unverified = int(comp.get("unverified_traces") or 0)
    if unverified:
        notes.append(f"{unverified:,} of {int(comp.get('traces') or 0):,} training traces come from general "
                     "sources: no verifier checked them (structure and quality checks only).")
    for r in comp.get("sources") or []:
        if r.get("short_by"):
            notes.append(f"source {r.get('name')} had fewer usable traces than its count: short by "
                         f"{fmt_int(r['short_by'])} {comp.get('mix_by', 'traces')}.")
    return notes


def composition_section(run: RunFolder) -> Section | None:
    """The composition the training set reached (filter/composition.json); None for a run without a mixture."""
    path = run.path("filter", "composition.json")
    if not path.is_file() and not run.cfg("mixture"):
        return None
    sec = Section("composition", "Training-set composition")
    if not path.is_file():
        sec.status = "not run"
        sec.note("the filter stage has not drawn the mixture yet (no filter/composition.json).")
        return sec
    stage_note(run, sec, "filter")
    comp = load_json(path) or {}
    sec.blocks.append(Table(COMPOSITION_HEADERS, composition_rows(comp), numeric={4, 5, 6, 7},
                            caption="the composition reached, per source and per kind"))
    for note in composition_notes(comp):
        sec.note(note, "warn" if "short by" in note else "info")
    return sec
