"""The sample stage of a mixture: every source sampled (or imported) on its own, then one view of them all.

Each source runs through the sample stage's own code (``sample_chunks``, passed in by the stage so this
package never imports a stage module) with its own context: a model teacher samples only the keys the trace
store lacks, a trace dataset is imported.  The run's view (``sample/shards``) is then every source's view in
config order, and ``sample/problems.jsonl`` lists every source's problems (ids ``name/...``) for the filter.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Callable

from distill.mixture.sources import source_contexts, teacher_label
from distill.records import to_dict, write_jsonl_atomic
from distill.shards import ShardStore
from distill.stage import Context, StageOutcome
from distill.store import content_hashes, files_sha256

log = logging.getLogger(__name__)
PROBLEMS_FILE = "problems.jsonl"


def sample_mixture(ctx: Context, sample_chunks: Callable[..., dict[str, Any]],
                   totals: Callable[..., dict[str, Any]]) -> StageOutcome:
    """Sample every source, check each one's traces, and write the run's view; ``totals`` is the stage's
    ``sampling_totals`` (tokens, truncations, failures, cost)."""
    contexts = source_contexts(ctx)  # every source's problems first: a bad source stops before any sampling
    select = None
    if ctx.partition is not None:
        k, n = ctx.partition
        select = lambda i: i % n == k  # noqa: E731 - a Slurm array task owns problems i % n == k of each source
    infos = {source.name: sample_chunks(sub, select=select) for source, sub in contexts}
    if ctx.partition is not None:
        sampled = sum(i.get("sampled_traces", i.get("sampled_shards", 0)) for i in infos.values())
        return StageOutcome({"sources": {k: _public(v) for k, v in infos.items()}},
                            f"shard {ctx.partition[0]}/{ctx.partition[1]}: {sampled} sampled", final=False)
    per_source, all_rows = {}, []
    for source, sub in contexts:
        rows = ShardStore(sub.out("sample") / "shards").read_all()
        _check_source(source.name, sub, rows, infos[source.name])
        price = _price(sub)
        per_source[source.name] = {"kind": source.kind, "teacher": teacher_label(ctx.config, source),
                                   "problems": len(sub.problems()[0]), "traces": len(rows),
                                   **totals(rows, price), **_public(infos[source.name])}
        all_rows.extend(rows)
    _write_view(ctx, contexts)
    return _outcome(ctx, per_source, all_rows, totals)


def _public(info: dict[str, Any]) -> dict[str, Any]:
    """A source's sampling info for the manifest (the teacher named by :func:`teacher_label` instead)."""
    return {k: v for k, v in info.items() if k not in ("teacher", "traces")}


def _price(sub: Context) -> Any:
    from distill.teachers.models import price_table

    return price_table(sub.config)


def _check_source(name: str, sub: Context, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """Every expected trace of a source in its view exactly once (as the stage checks a single source)."""
    t = sub.config.teacher
    train, _ = sub.problems()
    keys = {(r["problem_id"], r["sample_index"]) for r in rows}
    expected = len(train) * t.samples_per_problem if t.kind == "model" else info["traces"]
    if info.get("expected_traces") is not None:  # adaptive rounds: what each problem's rounds left it
        expected = info["expected_traces"]
    if len(keys) != len(rows) or len(rows) != expected:
        raise RuntimeError(f"mixture source {name}: {len(rows)} traces ({len(keys)} unique), expected {expected}")


def _write_view(ctx: Context, contexts: list) -> None:
    """``sample/shards``: every source's view chunks in config order; ``sample/problems.jsonl``: their problems."""
    shards = ShardStore(ctx.out("sample") / "shards")
    for stale in shards.paths():
        stale.unlink()
    index = 0
    for _source, sub in contexts:
        for path in ShardStore(sub.out("sample") / "shards").paths():
            shards.commit(index, (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                                  if line.strip()))
            index += 1
    write_jsonl_atomic(ctx.out("sample") / PROBLEMS_FILE,
                       ({**to_dict(p), "mixture_source": source.name}
                        for source, sub in contexts for p in sub.problems()[0]))


def _outcome(ctx: Context, per_source: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
             totals: Callable[..., dict[str, Any]]) -> StageOutcome:
    """The manifest's totals and per-source counts; more failed samples than a model source's
    ``max_failure_share`` leave the stage undone (the next run samples only those again)."""
    summed = totals(rows)
    costs = [s["cost_usd"] for s in per_source.values() if s.get("cost_usd") is not None]
    summed["cost_usd"] = round(sum(costs), 8) if costs else None
    counts = {"problems": sum(s["problems"] for s in per_source.values()), "traces": len(rows), **summed,
              "teacher": "mixture", "sources": per_source}
    failed_sources = [name for name, s in per_source.items()
                      if sum(s["failures"].values()) > _failure_share(ctx, name) * s["traces"]]
    failed = sum(summed["failures"].values())
    if failed_sources:
        return StageOutcome(counts, f"{failed} of {len(rows)} samples failed (sources: {', '.join(failed_sources)}); "
                                    "fix the cause and run again: only the failed samples are sampled again",
                            final=False)
    shares = ", ".join(f"{name} {s['traces']}" for name, s in per_source.items())
    return StageOutcome(counts, f"{len(rows)} traces from {len(per_source)} sources ({shares}; "
                                f"{summed['truncated']} truncated, {failed} failed)", output_hash=_output_hash(ctx))


def _failure_share(ctx: Context, name: str) -> float:
    source = next(s for s in ctx.config.mixture.sources if s.name == name)
    teacher = source.resolved_teacher(ctx.config.teacher)
    return teacher.max_failure_share if teacher.kind == "model" else float("inf")


def _output_hash(ctx: Context) -> str:
    """What the stages after sampling read of it: the traces, every source's problems, and the problems they
    are screened and evaluated against (the held-out file by content, the problems section)."""
    p = ctx.config.problems
    held = content_hashes([p.heldout_path] if p.source == "jsonl" else [])
    extra = json.dumps({"problems": ctx.config.section("problems"), "heldout": held}, sort_keys=True, default=str)
    out = ctx.out("sample")
    traces = files_sha256(ShardStore(out / "shards").paths() + [out / PROBLEMS_FILE])
    return hashlib.sha256((traces + extra).encode()).hexdigest()
