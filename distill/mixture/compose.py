"""Drawing the training set to the configured composition, and recording the composition reached.

Each source's usable traces are put in one seeded order of their own (sorted by key, then shuffled with
``random.Random("SEED:NAME")``) and the draw takes a prefix of that order.  So the draw is reproducible, a
source's draw depends on nothing but its own traces and target, and a larger share takes a superset of a
smaller one.  ``mix_by: tokens`` measures in completion tokens (what the student learns to write): the prefix
stops where the next trace would take the source farther from its target than leaving it out, so a source is
off its target by at most half a trace.

With shares, the training set is the largest the shares allow (every source supplies its share exactly,
within one trace of rounding), capped by ``total``; with counts, each source gives its count or all it has,
and a shortfall is recorded, never hidden.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Sequence

from distill.errors import UserError

if TYPE_CHECKING:
    from distill.config import MixtureConfig
    from distill.records import Trace


def measure(trace: "Trace", mix_by: str) -> int:
    return 1 if mix_by == "traces" else int(trace.completion_tokens)


def seeded_order(traces: Sequence["Trace"], seed: int, name: str) -> list["Trace"]:
    """A source's traces in its own reproducible order (independent of every other source)."""
    ordered = sorted(traces, key=lambda t: t.key)
    random.Random(f"{seed}:{name}").shuffle(ordered)
    return ordered


def largest_remainder(total: int, shares: Sequence[float]) -> list[int]:
    """Whole parts of ``total`` in proportion to ``shares`` that sum to ``total`` (Hamilton's method)."""
    exact = [total * s for s in shares]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def targets(mixture: "MixtureConfig", available: dict[str, int]) -> dict[str, int]:
    """Each source's target in traces or tokens: its count, or its share of the largest set all shares allow."""
    if not mixture.by_share:
        return {s.name: int(s.count) for s in mixture.sources}
    empty = [s.name for s in mixture.sources if available[s.name] == 0]
    if empty:
        raise UserError(f"mixture: source(s) {', '.join(empty)} kept no traces after the filter (see "
                        "filter/funnel.json), so no training set has the configured shares; fix the source or "
                        "remove it from mixture.sources")
    largest = min(available[s.name] / float(s.share) for s in mixture.sources)
    total = math.floor(largest + 1e-9) if mixture.total is None else min(mixture.total, math.floor(largest + 1e-9))
    parts = largest_remainder(total, [float(s.share) for s in mixture.sources])
    return {s.name: min(part, available[s.name]) for s, part in zip(mixture.sources, parts)}


def take(ordered: Sequence["Trace"], target: int, mix_by: str) -> list["Trace"]:
    """The prefix of ``ordered`` nearest ``target`` (in traces: exactly ``target`` or all there are)."""
    if mix_by == "traces":
        return list(ordered[:target])
    drawn, reached = [], 0
    for trace in ordered:
        size = measure(trace, mix_by)
        if reached >= target or abs(reached + size - target) >= abs(reached - target):
            break
        drawn.append(trace)
        reached += size
    return drawn


def draw(pools: dict[str, list["Trace"]], mixture: "MixtureConfig",
         ) -> tuple[dict[str, list["Trace"]], dict[str, int]]:
    """The training set per source, and each source's target: ``pools`` holds each source's usable traces
    (kept, or unverified for a general source)."""
    available = {name: sum(measure(t, mixture.mix_by) for t in pool) for name, pool in pools.items()}
    goal = targets(mixture, available)
    drawn = {s.name: take(seeded_order(pools[s.name], mixture.seed, s.name), goal[s.name], mixture.mix_by)
             for s in mixture.sources}
    return drawn, goal


def composition(mixture: "MixtureConfig", pools: dict[str, list["Trace"]], drawn: dict[str, list["Trace"]],
                goal: dict[str, int], teachers: dict[str, str]) -> dict[str, Any]:
    """The composition reached: per source and per kind, traces, tokens and shares of each (composition.json,
    the manifest, the report and the model card)."""
    total_traces = sum(len(d) for d in drawn.values())
    total_tokens = sum(t.completion_tokens for d in drawn.values() for t in d)
    rows, kinds = [], {}
    for s in mixture.sources:
        traces, tokens = len(drawn[s.name]), sum(t.completion_tokens for t in drawn[s.name])
        reached = traces if mixture.mix_by == "traces" else tokens
        row = {"name": s.name, "kind": s.kind, "verified": s.kind != "general", "teacher": teachers.get(s.name, ""),
               "configured": {"share": s.share} if s.share is not None else {"count": s.count},
               "target": goal.get(s.name), "available_traces": len(pools[s.name]),
               "available_tokens": sum(t.completion_tokens for t in pools[s.name]),
               "traces": traces, "tokens": tokens, "share_traces": _share(traces, total_traces),
               "share_tokens": _share(tokens, total_tokens)}
        if s.count is not None and reached < s.count:
            row["short_by"] = s.count - reached
        rows.append(row)
        kind = kinds.setdefault(s.kind, {"traces": 0, "tokens": 0})
        kind["traces"] += traces
        kind["tokens"] += tokens
    for kind in kinds.values():
        kind.update(share_traces=_share(kind["traces"], total_traces),
                    share_tokens=_share(kind["tokens"], total_tokens))
    unverified = sum(r["traces"] for r in rows if not r["verified"])
    return {"mix_by": mixture.mix_by, "seed": mixture.seed, "traces": total_traces, "tokens": total_tokens,
            "verified_traces": total_traces - unverified, "unverified_traces": unverified,
            "sources": rows, "kinds": kinds}


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0
