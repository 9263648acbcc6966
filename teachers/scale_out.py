"""Sampling scaled out on Ray: chunks as tasks on workers that each build the configured sampler, and how
the teacher's endpoints and concurrency bound are shared among those workers."""

from __future__ import annotations

from typing import Any, Callable

from distill.records import Trace
from distill.teachers.models import sampler_options


def run_on_ray(teacher: Any, path: str, chunks: list, params: Any, retry: int | None,
               commit: Callable[[int, list[Trace]], None]) -> dict[str, Any]:
    """The chunks as Ray tasks; only this process commits, once per chunk."""
    from distill.teachers.ray_pool import RayPool

    so = teacher.scale_out
    pool = RayPool(ray_worker_specs(teacher, path), workers=so.workers, address=so.address,
                   cpus_per_worker=so.cpus_per_worker, gpus_per_worker=so.gpus_per_worker,
                   max_chunk_attempts=so.max_chunk_attempts, chunk_timeout_s=so.chunk_timeout_s)
    committed: set[int] = set()

    def commit_once(index: int, traces: list[Trace]) -> None:
        if index not in committed:  # idempotent by chunk: a re-queued chunk's late answer is dropped
            committed.add(index)
            commit(index, traces)

    try:
        return pool.run(chunks, list(range(len(chunks))), params, commit_once, retry)
    finally:
        pool.close()


def ray_worker_specs(t: Any, path: str) -> list[Any]:
    """One spec per Ray worker: the teacher's sampler, and for an HTTP teacher with enough endpoints,
    worker ``w`` owns ``endpoints[w::workers]`` (so each server is driven by one client).

    ``openai.max_concurrency`` is the whole job's bound on requests in flight, not each worker's: the
    workers share it (each at least 1), by the endpoints they own when those are split, evenly when
    every worker drives every endpoint; otherwise N workers would send N times the limit (429 storms).
    """
    from distill.teachers.backends.openai_http import even_shares
    from distill.teachers.ray_pool import WorkerSpec

    options = sampler_options(t.backend, t.batch_size, t.dtype, t.vllm.model_dump(), t.openai.model_dump())
    workers = t.scale_out.workers
    if t.backend != "openai":
        return [WorkerSpec(t.backend, path, options)] * workers
    endpoints, limit = t.openai.endpoints, t.openai.max_concurrency
    if len(endpoints) >= workers:
        per_endpoint = even_shares(limit, len(endpoints))
        return [WorkerSpec(t.backend, path, {**options, "endpoints": endpoints[w::workers],
                                             "max_concurrency": max(1, sum(per_endpoint[w::workers]))})
                for w in range(workers)]
    return [WorkerSpec(t.backend, path, {**options, "max_concurrency": max(1, share)})
            for share in even_shares(limit, workers)]
