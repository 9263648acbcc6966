"""What a teacher rehearsal's traces must look like where they land: the keyed trace store and the run's view.

A tiny random-weight teacher writes noise, but the code around it is the real one, and some of what it
must do can be checked on noise:

* every (problem, sample) has exactly one trace in the run's view, and the store holds each of them;
* no sample failed (an HTTP error, a refused request);
* the reasoning is captured: the generation starts inside the think block (the prompt ends in
  ``<think>``, or the server's ``deepseek_r1`` parser puts what precedes ``</think>`` in
  ``reasoning_content``), so every trace has reasoning; a trace that stops or is cut off before
  ``</think>`` keeps that text as reasoning with no answer, and is never filed as an answer;
* ``think_closed`` agrees with the answer: closed exactly when there is answer text after the block;
* the filter's funnel accounts for every trace, and an unclosed or truncated trace is never kept.

Each check that fails raises :class:`TraceCheckFailed` naming how many traces broke it and one example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class TraceCheckFailed(RuntimeError):
    """A trace property the real run relies on does not hold."""


def check_traces(rcfg: Any, served: bool) -> str:
    """Check the run's view and the trace store; return one line of what was found."""
    from distill.teachers.trace_store import TraceStore

    t = rcfg.teacher
    rows = run_view(rcfg.run_dir)
    expected = rcfg.problems.train_size * t.samples_per_problem
    _require(len(rows) == expected and len({(r["problem_id"], r["sample_index"]) for r in rows}) == expected,
             f"{len(rows)} traces in the run's view, expected {expected} (one per problem and sample)", rows[:1])
    store = TraceStore(Path(t.store) if t.store else rcfg.run_dir / "trace_store")
    stored = [record for _entry, record in store.read(e for es in store.entries().values() for e in es)]
    _require(len(stored) >= expected, f"the trace store holds {len(stored)} traces, expected {expected}", stored[:1])
    for where, traces in (("run view", rows), ("trace store", stored)):
        _check_each(where, traces)
    closed = sum(bool(r["think_closed"]) for r in rows)
    truncated = sum(r["finish_reason"] == "length" for r in rows)
    retried = sum(bool((r.get("sampling") or {}).get("retry_of_truncated")) for r in rows)
    if t.retry_truncated.enabled:
        unretried = [r for r in rows if r["finish_reason"] == "length"
                     and not (r.get("sampling") or {}).get("retry_of_truncated")]
        _require(not unretried, f"{len(unretried)} truncated traces were not retried at "
                 "teacher.retry_truncated.max_tokens", unretried)
    how = "reasoning_content from the server's parser" if served else "the prefilled think block"
    return (f"checked: {len(rows)} traces in the run's view and {len(stored)} in the trace store, all with "
            f"reasoning ({how}); {closed} closed </think>, {truncated} truncated{f' ({retried} after one retry)' if retried else ''}; think_closed agrees with the "
            "answer on every one")


def _check_each(where: str, traces: list[dict[str, Any]]) -> None:
    failed = [t for t in traces if t["finish_reason"] == "error"]
    _require(not failed, f"{len(failed)} sample(s) failed in the {where}: {failed[0].get('error') if failed else ''}",
             failed)
    empty = [t for t in traces if not (t.get("reasoning") or "").strip()]
    _require(not empty, f"{len(empty)} of {len(traces)} traces in the {where} have no reasoning: the thinking "
             "was not captured (an engine that does not know its prompt opened <think> files the thinking as the "
             "answer)", empty)
    inconsistent = [t for t in traces if bool(t["think_closed"]) != bool((t.get("answer_text") or "").strip())]
    _require(not inconsistent, f"{len(inconsistent)} traces in the {where} have think_closed disagreeing with "
             "their answer (closed needs answer text after </think>; unclosed must have none)", inconsistent)


def check_filter(rcfg: Any) -> str:
    """The funnel counts every trace; no unclosed or truncated trace is kept."""
    from distill.records import read_jsonl

    funnel = json.loads((rcfg.run_dir / "filter" / "funnel.json").read_text(encoding="utf-8"))["funnel"]
    total = len(run_view(rcfg.run_dir))
    _require(funnel.get("total") == total, f"the filter's funnel counts {funnel.get('total')} traces of {total}",
             [funnel])
    kept = list(read_jsonl(rcfg.run_dir / "filter" / "kept.jsonl"))
    bad = [k for k in kept if not k.get("think_closed") or k.get("finish_reason") != "stop"]
    _require(not bad, f"the filter kept {len(bad)} unclosed or truncated trace(s)", bad)
    reasons = ", ".join(f"{k} {v}" for k, v in funnel.items() if k not in ("total", "kept"))
    return f"checked: funnel counts all {total} traces ({reasons or 'none rejected'}), kept {funnel.get('kept', 0)}"


def run_view(run_dir: Path) -> list[dict[str, Any]]:
    """The run's traces as the later stages read them (``sample/shards``)."""
    from distill.shards import ShardStore

    return ShardStore(Path(run_dir) / "sample" / "shards").read_all()


def _require(ok: bool, message: str, examples: list[Any]) -> None:
    if ok:
        return
    example = examples[0] if examples else None
    if isinstance(example, dict):
        example = {k: (str(v)[:80] if isinstance(v, str) else v) for k, v in example.items()
                   if k in ("problem_id", "sample_index", "finish_reason", "think_closed", "reasoning",
                            "answer_text", "error", "total", "kept")}
    raise TraceCheckFailed(f"{message}; e.g. {example}" if example is not None else message)
