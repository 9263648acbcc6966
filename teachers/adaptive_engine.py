"""The samplers as the adaptive loop sees them: problems and the sample indices they lack in, chunks of
traces out; the teacher (in this process or on Ray workers) and the scout, each opened on first use.

One engine for the whole run (loading a model per round would repeat the load), opened only when a key is
missing (a rerun whose keys are all stored loads nothing).  With ``teacher.scale_out.backend: ray`` the Ray
workers are built once and each batch goes to them as chunks in parallel.  Each chunk is seeded by (its
sampler's seed, its sample indices, its number among the chunks of those indices), so a problem's rounds
never share a seed and a chunk lost to a SIGKILL is sampled again with the seed it had.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from distill.records import Problem, Trace
from distill.shards import plan_shards
from distill.stage import Context


@dataclass(frozen=True)
class EngineSettings:
    """What every request of one sampler shares."""

    label: str  # "teacher" or "scout", for logs
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    shard_size: int
    retry_max_tokens: int | None = None
    workers: int = 1  # chunks handed over at once (Ray workers)


class SamplingEngine:
    """``sample(indices, problems, on_chunk)``: ``len(indices)`` samples of each problem, chunk by chunk."""

    def __init__(self, settings: EngineSettings, open_sampler: Callable[[], Any], ray: bool = False):
        """``open_sampler`` builds the sampler (or, with ``ray``, the :class:`RayPool`) on first use."""
        self.settings = settings
        self._open, self._ray = open_sampler, ray
        self._backend: Any = None
        self.serial: dict[tuple[int, ...], int] = {}

    @property
    def parallel(self) -> int:
        return self.settings.workers

    def sample(self, indices: tuple[int, ...], problems: Sequence[Problem],
               on_chunk: Callable[[list[Trace]], None]) -> None:
        from distill.teachers.sampling_types import SamplingParams

        s = self.settings
        seed = int.from_bytes(hashlib.sha256(f"{s.seed}:rounds:{indices}".encode()).digest()[:4], "little")
        params = SamplingParams(n=len(indices), temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                seed=seed)
        chunks: dict[int, list[Problem]] = {}
        for chunk in plan_shards(list(problems), s.shard_size):
            number = self.serial.get(indices, 0)
            self.serial[indices] = number + 1
            chunks[number] = chunk
        if self._backend is None:
            self._backend = self._open()
        if self._ray:
            committed: set[int] = set()

            def commit_once(index: int, traces: list[Trace]) -> None:
                if index not in committed:  # a re-queued chunk's late answer is dropped
                    committed.add(index)
                    on_chunk(traces)

            self._backend.run(chunks, list(chunks), params, commit_once, s.retry_max_tokens)
            return
        from distill.teachers.service import sample_chunk

        for number, chunk in chunks.items():
            on_chunk(sample_chunk(number, chunk, self._backend, params, s.retry_max_tokens))

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def teacher_engine(ctx: Context, model_path: str) -> SamplingEngine:
    """The run's teacher: its sampler here, or its Ray workers."""
    t = ctx.config.teacher
    ray = t.scale_out.backend == "ray"
    settings = EngineSettings("teacher", t.temperature, t.top_p, t.max_tokens, t.seed, t.shard_size,
                              t.retry_truncated.max_tokens if t.retry_truncated.enabled else None,
                              t.scale_out.workers if ray else 1)

    def open_teacher() -> Any:
        if not ray:
            from distill.teachers.models import teacher_sampler

            return teacher_sampler(ctx, model_path)
        from distill.teachers.ray_pool import RayPool
        from distill.teachers.scale_out import ray_worker_specs

        so = t.scale_out
        return RayPool(ray_worker_specs(t, model_path), workers=so.workers, address=so.address,
                       cpus_per_worker=so.cpus_per_worker, gpus_per_worker=so.gpus_per_worker,
                       max_chunk_attempts=so.max_chunk_attempts, chunk_timeout_s=so.chunk_timeout_s)

    return SamplingEngine(settings, open_teacher, ray)


def scout_engine(ctx: Context) -> SamplingEngine:
    """The scout (``teacher.sampling.scout``): any sampler backend, in this process."""
    sc, t = ctx.config.teacher.sampling.scout, ctx.config.teacher
    settings = EngineSettings("scout", sc.temperature, sc.top_p, sc.max_tokens, sc.seed, t.shard_size)

    def open_scout() -> Any:
        from distill.teachers.models import config_sampler

        return config_sampler(sc.backend, sc.model, sc.batch_size, sc.dtype, None, sc.openai.model_dump())

    return SamplingEngine(settings, open_scout)
