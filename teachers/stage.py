"""The sample stage: the teacher writes traces for the run's training problems (or a published trace
dataset is imported), committed chunk by chunk so a killed run resumes without losing or duplicating one."""

from __future__ import annotations

from typing import Any, Callable

from distill.errors import UserError
from distill.shards import ShardStore
from distill.stage import Context, StageBase, StageOutcome
from distill.teachers.models import OPENAI_OUTPUT_KEYS, teacher_for_sampling, teacher_sampler


class SampleStage(StageBase):
    name = "sample"
    section = "teacher"
    version = "1"
    upstream = ()

    def fingerprint_input(self, config: Any) -> dict[str, Any]:
        return {"problems": config.section("problems"), "teacher": _teacher_output_settings(config)}

    def run(self, ctx: Context) -> StageOutcome:
        if ctx.partition is not None:
            k, n = ctx.partition
            info = sample_chunks(ctx, select=lambda i: i % n == k)
            info.pop("traces", None)
            return StageOutcome(info, f"shard {k}/{n}: {info.get('sampled_shards', 0)} chunk(s) sampled", final=False)
        return _check_and_summarise(ctx, sample_chunks(ctx))


SAMPLE = SampleStage()


def _teacher_output_settings(config: Any) -> dict[str, Any]:
    """Only what changes the traces: another backend's options, and where/how fast an HTTP teacher is reached
    (endpoints, concurrency, retries, prices, scale-out, the server's options), do not."""
    teacher = config.section("teacher")
    teacher["toy"].pop("cache_dir", None)
    if teacher["model"] != "toy":
        teacher.pop("toy")
    for backend in ("vllm", "openai"):
        if teacher["backend"] != backend or teacher["kind"] == "dataset":
            teacher.pop(backend)
    for operational in ("scale_out", "serve"):
        teacher.pop(operational)
    if teacher["kind"] != "dataset":  # defaults leave the fingerprints of runs made before these keys alone
        teacher.pop("dataset")
        teacher.pop("kind")
    if not teacher["retry_truncated"]["enabled"]:
        teacher.pop("retry_truncated")
    if "openai" in teacher:
        # effort_max_tokens only once set, so runs made before the key keep their fingerprints
        teacher["openai"] = {k: teacher["openai"][k] for k in OPENAI_OUTPUT_KEYS if k in teacher["openai"]
                             and (k != "effort_max_tokens" or teacher["openai"][k] is not None)}
        if teacher["openai"].get("effort_max_tokens") is not None:  # by value, whether mapping or file
            teacher["openai"]["effort_max_tokens"] = _resolved_effort_caps(teacher["openai"]["effort_max_tokens"])
    return teacher


def _resolved_effort_caps(spec: Any) -> dict[str, int]:
    """The caps per level: a budget-sweep file counts by its contents, not its path."""
    from distill.teachers.backends.openai_http import effort_caps

    try:
        return effort_caps(spec)
    except ValueError as exc:
        raise UserError(f"teacher.openai.effort_max_tokens: {exc}") from None


def _check_and_summarise(ctx: Context, info: dict[str, Any]) -> StageOutcome:
    """Every expected trace committed exactly once, then the manifest's totals."""
    t = ctx.config.teacher
    train, _ = ctx.problems()
    rows = ShardStore(ctx.out("sample") / "shards").read_all()
    keys = {(r["problem_id"], r["sample_index"]) for r in rows}
    expected = len(train) * t.samples_per_problem if t.kind == "model" else info.pop("traces")
    if len(keys) != len(rows) or len(rows) != expected:
        raise RuntimeError(f"sampling committed {len(rows)} traces ({len(keys)} unique), expected {expected}")
    totals = sampling_totals(rows, price_table(ctx.config))
    counts = {"problems": len(train) if t.kind == "model" else len({k[0] for k in keys}), "traces": len(rows),
              **totals, "teacher": info.pop("teacher"), **info}
    return StageOutcome(counts, f"{len(rows)} traces from {counts['problems']} problems "
                                f"({totals['truncated']} truncated, {sum(totals['failures'].values())} failed)")


def sample_chunks(ctx: Context, select: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Sample (or, for a trace dataset, import) every chunk not yet committed that ``select`` picks.

    ``select`` lets a Slurm array task own the chunks ``i % n == k`` (``distill teacher sample --shard k/n``);
    every process commits through the same ShardStore, so the union is exactly the whole job.
    """
    from distill.teachers.service import pending_chunks

    t = ctx.config.teacher
    shards = ShardStore(ctx.out("sample") / "shards")
    train, _ = ctx.problems()
    if t.kind == "dataset":
        from distill.teachers.backends.trace_dataset import commit_dataset_chunks

        info = commit_dataset_chunks(ctx.cache["dataset_traces"], train, shards, t.shard_size, select)
        return {**info, "teacher": f"dataset:{t.dataset.path}"}
    path = teacher_for_sampling(ctx)
    chunks, todo, done = pending_chunks(train, shards, t.shard_size, select)
    total = sum(len(chunks[i]) for i in (todo if select else range(len(chunks)))) * t.samples_per_problem
    already = 0 if select else sum(len(chunks[i]) for i in done) * t.samples_per_problem
    task = ctx.reporter.task("sampling teacher traces", total)
    task.advance(already)
    from distill.progress import SamplingMeter

    meter = SamplingMeter(total, already, price_table(ctx.config))

    def on_chunk(n: int, stats: dict) -> None:
        task.advance(n, **meter.add(stats))

    try:
        info = _sample_pending(ctx, path, (chunks, todo, done), shards, on_chunk, select)
    finally:
        task.close()
    return {"shards": len(chunks), "resumed_shards": len(done), "teacher": path, **info}


def _sample_pending(ctx: Context, path: str, pending: tuple, shards: ShardStore,
                    on_chunk: Callable[[int, dict], None], select: Callable[[int], bool] | None) -> dict[str, Any]:
    """The pending chunks sampled here, or as tasks on Ray workers when ``teacher.scale_out`` says so."""
    from distill.teachers.sampler import SamplingParams
    from distill.teachers.service import run_sharded

    t = ctx.config.teacher
    params = SamplingParams(n=t.samples_per_problem, temperature=t.temperature, top_p=t.top_p,
                            max_tokens=t.max_tokens, seed=t.seed)
    retry = t.retry_truncated.max_tokens if t.retry_truncated.enabled else None
    if t.scale_out.backend == "ray":
        from distill.teachers.scale_out import sample_on_ray

        chunks, todo, _ = pending
        return sample_on_ray(t, path, chunks, todo, params, shards, retry, on_chunk)
    train, _ = ctx.problems()
    sampler = teacher_sampler(ctx, path)
    try:
        info = run_sharded(train, sampler, params, shards, t.shard_size, on_shard=on_chunk, select=select,
                           retry_max_tokens=retry, pending=pending)
        stats = getattr(sampler, "stats", None)  # an API sampler's own bill: cache hits, off-peak discount
        if stats is not None and getattr(sampler, "price_table", None) is not None:
            info["billed_usd_this_run"] = round(stats.cost_usd, 8)
        return info
    finally:
        sampler.close()


def price_table(config: Any) -> Any:
    """The teacher's price table when it is a priced API (teachers/pricing.py), else None."""
    t = config.teacher
    if t.kind != "model" or t.backend != "openai":
        return None
    from distill.teachers.pricing import table_from_options

    prices = t.openai.prices.model_dump() if t.openai.prices else None
    return table_from_options(prices, t.openai.served_model or t.model)


def sampling_totals(rows: list[dict[str, Any]], price: Any = None) -> dict[str, Any]:
    """What the manifest records for a sampling job: tokens, truncations, failures by reason and cost."""
    failures: dict[str, int] = {}
    for r in rows:
        if r["finish_reason"] == "error":
            reason = (r.get("error") or "unknown").split(":", 1)[0].strip() or "unknown"
            failures[reason] = failures.get(reason, 0) + 1
    totals: dict[str, Any] = {
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "retried_truncated": sum(bool((r.get("sampling") or {}).get("retry_of_truncated")) for r in rows),
        "failures": failures,
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in rows),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in rows),
        "reasoning_tokens": sum(r.get("reasoning_tokens", 0) for r in rows),
        "cost_usd": None,
    }
    if price is not None:
        from distill.teachers.pricing import cost

        totals["cost_usd"] = round(cost(totals["prompt_tokens"], totals["completion_tokens"], price), 8)
    return totals
