"""Sampling against the keyed trace store: plan the keys a run needs, sample only the missing ones, and
write the run's view of its traces (``sample/shards``) from the store.

The view is what the filter, the report and the Python API read, as before; it is derived data (the store
holds every paid trace), so it is rewritten whole on every run of the stage.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from distill.records import Problem, Trace, read_jsonl, to_dict
from distill.shards import ShardStore, plan_shards
from distill.stage import Context
from distill.teachers.models import price_table, teacher_output_settings, teacher_sampler
from distill.teachers.prompts import build_prompt
from distill.teachers.trace_store import DamagedChunk, TraceStore, prompt_digest, sample_key, trace_key

log = logging.getLogger(__name__)
STORE_FIELDS = ("trace_key", "max_tokens")  # stored with each trace, left out of the run's view


def trace_store(ctx: Context) -> TraceStore:
    t = ctx.config.teacher
    return TraceStore(Path(t.store) if t.store else ctx.config.run_dir / "trace_store")


def key_identity(config: Any, model_path: str) -> dict[str, Any]:
    """What decides a trace's content besides its prompt and sample index: the teacher (model, engine,
    dtype, quantisation, output-deciding API options) and the sampling settings; nothing operational."""
    t = config.teacher
    model: Any = t.model
    if t.model == "toy":
        model = {"toy": {k: v for k, v in t.toy.model_dump(mode="json").items() if k != "cache_dir"}}
    who: dict[str, Any] = {"model": model, "backend": t.backend, "dtype": t.dtype,
                           "temperature": t.temperature, "top_p": t.top_p, "seed": t.seed}
    if t.backend == "vllm" and t.vllm.quantization:
        who["quantization"] = t.vllm.quantization
    if t.backend == "openai":
        who["openai"] = teacher_output_settings(config).get("openai", {})
    return who


def sampling_budget(config: Any) -> int:
    """The token budget a stored trace must satisfy: the retry's when truncated samples get one."""
    t = config.teacher
    return max(t.max_tokens, t.retry_truncated.max_tokens) if t.retry_truncated.enabled else t.max_tokens


def plan_missing(store: TraceStore, identity: dict[str, Any], problems: Sequence[Problem], samples: int,
                 budget: int) -> tuple[list[tuple[Problem, tuple[int, ...]]], int]:
    """(problem, the sample indices it lacks) for every problem missing any, and how many are present."""
    missing: list[tuple[Problem, tuple[int, ...]]] = []
    present = 0
    planned: set[bytes] = set()  # two problems with one prompt share its keys: sampled once
    for problem in problems:
        digest = prompt_digest(identity, build_prompt(problem))
        if digest in planned:
            present += samples
            continue
        planned.add(digest)
        lacking = tuple(i for i in range(samples) if store.lookup(sample_key(digest, i), budget) is None)
        present += samples - len(lacking)
        if lacking:
            missing.append((problem, lacking))
    return missing, present


def sample_missing(ctx: Context, model_path: str, problems: Sequence[Problem],
                   samples: int | None = None) -> dict[str, Any]:
    """Sample exactly the (problem, sample) keys of ``problems`` that the store cannot serve (``samples`` of
    each, default ``teacher.samples_per_problem``), and commit them to the store chunk by chunk; returns
    what was reused and what was new."""
    t = ctx.config.teacher
    store = trace_store(ctx)
    store.recover()
    identity = key_identity(ctx.config, model_path)
    if not store.entries():
        adopt_earlier_traces(ctx, store, identity, model_path)
    samples = t.samples_per_problem if samples is None else samples
    missing, present = plan_missing(store, identity, problems, samples, sampling_budget(ctx.config))
    todo = sum(len(indices) for _, indices in missing)
    log.info("trace store %s: %d traces reused, %d to sample", store.folder, present, todo)
    if todo:
        _sample_groups(ctx, model_path, store, identity, missing, present)
    return {"reused_traces": present, "sampled_traces": todo, "store": str(store.folder)}


def adopt_earlier_traces(ctx: Context, store: TraceStore, identity: dict[str, Any], model_path: str) -> int:
    """Traces a run folder holds from before the store (``versions/sample/*/shards``), committed to the empty
    store under their keys, so upgrading never pays for them twice.  Only traces of this teacher at this
    temperature and top-p are taken, and never failures; the old folders stay as they were."""
    t = ctx.config.teacher
    names = {model_path, t.openai.served_model or model_path}  # an API sampler names traces by its served model
    adopted: list[dict[str, Any]] = []
    for shard in sorted((ctx.config.run_dir / "versions" / "sample").glob("*/shards/shard-*.jsonl")):
        for row in read_jsonl(shard):
            sampling = row.get("sampling") or {}
            if (row.get("teacher") not in names or row.get("finish_reason") == "error"
                    or sampling.get("temperature") != t.temperature or sampling.get("top_p") != t.top_p):
                continue
            adopted.append({**row, "trace_key": trace_key(identity, row["prompt"], row["sample_index"]),
                            "max_tokens": int(sampling.get("max_tokens") or 0)})
    unique = list({r["trace_key"]: r for r in adopted}.values())
    if unique:
        store.commit(unique)
        log.info("trace store %s: adopted %d traces sampled before the store existed", store.folder, len(unique))
    return len(unique)


def _sample_groups(ctx: Context, model_path: str, store: TraceStore, identity: dict[str, Any],
                   missing: list[tuple[Problem, tuple[int, ...]]], present: int) -> None:
    """Problems lacking the same sample indices are sampled together (``n`` = how many they lack), in chunks
    of ``teacher.shard_size`` problems, here or on Ray workers."""
    from distill.progress import SamplingMeter
    from distill.teachers.sampling_types import SamplingParams

    t = ctx.config.teacher
    groups: dict[tuple[int, ...], list[Problem]] = {}
    for problem, indices in missing:
        groups.setdefault(indices, []).append(problem)
    total = present + sum(len(indices) for _, indices in missing)
    task = ctx.reporter.task("sampling teacher traces", total)
    task.advance(present)
    meter = SamplingMeter(total, present, price_table(ctx.config))
    # one engine for every group (loading a model per group of missing indices would repeat the load)
    sampler = None if t.scale_out.backend == "ray" else teacher_sampler(ctx, model_path)
    try:
        for indices, group in groups.items():
            # every sample of every problem (a fresh run): the run's own seed, so the chunks are seeded as they
            # always were and a fresh run samples what it sampled before the store; a top-up its own seed
            seed = t.seed if indices == tuple(range(t.samples_per_problem)) else \
                int.from_bytes(hashlib.sha256(f"{t.seed}:{indices}".encode()).digest()[:4], "little")
            params = SamplingParams(n=len(indices), temperature=t.temperature, top_p=t.top_p,
                                    max_tokens=t.max_tokens, seed=seed)
            commit = _committer(store, identity, indices, lambda n, stats: task.advance(n, **meter.add(stats)))
            _sample_chunks(ctx, model_path, sampler, plan_shards(group, t.shard_size), params, commit)
        stats = getattr(sampler, "stats", None)  # an API sampler's own bill: cache hits, off-peak discount
        if stats is not None and getattr(sampler, "price_table", None) is not None:
            ctx.cache["billed_usd_this_run"] = stats.cost_usd
    finally:
        task.close()
        if sampler is not None:
            sampler.close()


def _committer(store: TraceStore, identity: dict[str, Any], indices: tuple[int, ...],
               on_chunk: Callable[[int, dict], None]) -> Callable[[int, list[Trace]], None]:
    """Commit one sampled chunk to the store, each trace under its key (sample ``j`` of the call is the
    problem's ``indices[j]``)."""
    from distill.teachers.service import shard_stats

    def commit(_chunk_index: int, traces: list[Trace]) -> None:
        records = []
        for trace in traces:
            trace.sample_index = indices[trace.sample_index]
            record = to_dict(trace)
            record["trace_key"] = trace_key(identity, trace.prompt, trace.sample_index)
            record["max_tokens"] = int(trace.sampling.get("max_tokens") or 0)
            records.append(record)
        store.commit(records)
        on_chunk(len(traces), shard_stats(traces))

    return commit


def _sample_chunks(ctx: Context, model_path: str, sampler: Any, chunks: list[list[Problem]], params: Any,
                   commit: Callable[[int, list[Trace]], None]) -> None:
    """The chunks through ``sampler`` in this process, or as tasks on Ray workers (``sampler`` None)."""
    t = ctx.config.teacher
    retry = t.retry_truncated.max_tokens if t.retry_truncated.enabled else None
    if sampler is None:
        from distill.teachers.scale_out import run_on_ray

        run_on_ray(t, model_path, chunks, params, retry, commit)
        return
    from distill.teachers.service import sample_chunk

    for index, chunk in enumerate(chunks):
        commit(index, sample_chunk(index, chunk, sampler, params, retry))


def write_run_view(ctx: Context, model_path: str, problems: Sequence[Problem],
                   counts: dict[str, int] | None = None, resample: Callable[[], Any] | None = None) -> dict[str, Any]:
    """The run's traces, read from the store (each chunk checked against its index), written as
    ``sample/shards`` in problem order, ``teacher.shard_size`` problems a shard; a damaged chunk is set
    aside and its keys sampled again (by ``resample``: adaptive sampling replays its rounds).

    ``counts`` is how many samples each problem holds (adaptive rounds, a scout's screen); default
    ``teacher.samples_per_problem`` each.  ``sample/store_refs.json`` says where each trace lives in the
    store, so the filter finds the verdicts made while sampling."""
    t = ctx.config.teacher
    wanted = counts if counts is not None else {p.id: t.samples_per_problem for p in problems}
    for _attempt in range(3):
        store = trace_store(ctx)
        try:
            rows, where = _view_rows(store, key_identity(ctx.config, model_path), problems, wanted,
                                     sampling_budget(ctx.config))
            break
        except DamagedChunk:
            (resample or (lambda: sample_missing(ctx, model_path, problems)))()
    else:
        raise RuntimeError(f"trace store {store.folder}: chunks keep failing their checks; see its damaged/ folder")
    shards = ShardStore(ctx.out("sample") / "shards")
    for stale in shards.paths():
        stale.unlink()
    start = 0
    for index in range(0, len(problems), t.shard_size):
        size = sum(wanted.get(p.id, 0) for p in problems[index: index + t.shard_size])
        if size:
            shards.commit(len(shards.paths()), rows[start: start + size])
        start += size
    _write_store_refs(ctx, store, where)
    info: dict[str, Any] = {"shards": len(shards.paths()), "expected_traces": len(rows)}
    if "billed_usd_this_run" in ctx.cache:
        info["billed_usd_this_run"] = round(ctx.cache["billed_usd_this_run"], 8)
    return info


def _view_rows(store: TraceStore, identity: dict[str, Any], problems: Sequence[Problem], samples: dict[str, int],
               budget: int) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """One record per (problem, sample): the stored trace that serves it, else its latest failure; and
    [problem id, sample index, trace key, chunk, line] for each."""
    wanted, owners = [], []
    for problem in problems:
        prompt = build_prompt(problem)
        for i in range(samples.get(problem.id, 0)):
            owners.append(problem)
            key = trace_key(identity, prompt, i)
            entry = store.lookup(key, budget) or (store.entries().get(key) or [None])[-1]
            if entry is None:
                raise RuntimeError(f"trace store {store.folder} has no trace for problem {problem.id} sample {i}")
            wanted.append(entry)
    records = dict(((e.chunk, e.line), r) for e, r in store.read(wanted))
    # a trace is keyed by its prompt: the problem's id, reference and kind are this run's (an edited answer
    # or a renamed id reuses the trace and checks it against the new reference)
    rows = [{**{k: v for k, v in records[(e.chunk, e.line)].items() if k not in STORE_FIELDS},
             "problem_id": p.id, "reference": p.answer, "kind": p.kind} for e, p in zip(wanted, owners)]
    where = [[r["problem_id"], r["sample_index"], records[(e.chunk, e.line)].get("trace_key"), e.chunk, e.line]
             for r, e in zip(rows, wanted)]
    return rows, where


def _write_store_refs(ctx: Context, store: TraceStore, where: list[list[Any]]) -> None:
    """``sample/store_refs.json``: each view trace's key and place in the store, with the verdict made while
    sampling under this run's filter checks (``ok``, or None when none was made: fixed sampling)."""
    from distill.store import write_json_atomic
    from distill.teachers.verdict_store import VerdictStore, checks_version

    checks = checks_version(ctx.config.filter)
    known = VerdictStore(store.folder).load(checks, {row[3] for row in where})
    rows = [[*row, known[(row[3], row[4])]["ok"] if (row[3], row[4]) in known else None] for row in where]
    write_json_atomic(ctx.out("sample") / "store_refs.json",
                      {"store": str(store.folder), "checks": checks,
                       "columns": ["problem_id", "sample_index", "trace_key", "chunk", "line", "ok"], "rows": rows})
