"""Data-parallel sampling on Ray: workers own engines (or endpoint samplers), chunks are tasks.

Each worker is a Ray actor that builds its own sampler from a picklable
:class:`WorkerSpec` (a vLLM engine on its GPUs, a transformers model, or an HTTP
client for its share of endpoints).  The driver hands out one chunk at a time
per worker and is the only process that commits: a chunk's traces travel back
to the driver, which writes them through :class:`distill.shards.ShardStore`.
So output stays exactly-once even when workers die:

* a worker that dies mid-chunk (node lost, OOM-killed, SIGKILL) loses only that
  chunk's in-flight work; the chunk goes back to the queue and another worker
  (or a fresh replacement actor) samples it again, with the same chunk seed;
* a worker whose sampler *raised* is replaced too, not sent back to the idle
  pool: a sampler that raised (a CUDA error, a wedged engine) may be broken, and
  a broken worker handed the next chunk would fail every chunk it gets;
* a worker that *hangs* (a deadlocked engine, a stopped process) is noticed: the
  driver never waits on Ray without a timeout, and a chunk with no result after
  ``chunk_timeout_s`` marks its worker as hung, so it is killed and replaced;
* a chunk is committed once, by index, and never re-sent after it is committed;
* a chunk that keeps killing, breaking or hanging its workers stops the job
  after ``max_chunk_attempts`` rather than looping forever.

We re-queue explicitly instead of leaning on Ray's ``max_task_retries``: a
retried actor task goes back to the *same* (restarting) actor, while explicit
re-queueing lets any live worker pick the chunk up at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from distill.records import Problem, Trace
from distill.teachers.sampling_types import SamplingParams

log = logging.getLogger(__name__)

CommitFn = Callable[[int, list[Trace]], None]

# A chunk with no result after this long is presumed hung.  Generous by default: the first chunk on a
# worker includes building its engine (loading R1 takes tens of minutes), and a chunk of an HTTP teacher
# may wait out rate limits; set teacher.scale_out.chunk_timeout_s from a chunk's measured time.
DEFAULT_CHUNK_TIMEOUT_S = 6 * 3600.0
POLL_S = 10.0  # the longest the driver blocks in ray.wait before it checks for overdue chunks
GET_TIMEOUT_S = 300.0  # fetching a finished chunk's rows (from another node) must not hang the driver either


@dataclass
class _Task:
    """A chunk in flight: its index, the worker sampling it, and when it was handed out."""

    index: int
    actor: Any
    started: float


@dataclass
class WorkerSpec:
    """What a worker needs to build its sampler, inside its own process."""

    backend: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    factory: str = "distill.teachers.sampler:make_sampler"  # "module:callable(backend, model, **options)"

    def build(self) -> Any:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)(self.backend, self.model, **self.options)


class SamplingWorker:
    """The actor body: one sampler for the actor's life, one chunk per call."""

    def __init__(self, spec: WorkerSpec):
        self.sampler = spec.build()

    def pid(self) -> int:
        return os.getpid()

    def sample(self, index: int, problems: list[dict], params: dict, retry_max_tokens: int | None) -> list[dict]:
        from distill.records import to_dict
        from distill.teachers.service import sample_chunk

        traces = sample_chunk(index, [Problem.from_dict(p) for p in problems], self.sampler,
                              SamplingParams(**params), retry_max_tokens)
        return [to_dict(t) for t in traces]


class RayPool:
    """A fixed number of sampling actors on a Ray cluster (a local one, or one joined by address)."""

    def __init__(self, spec: WorkerSpec | Sequence[WorkerSpec], workers: int = 2, address: str = "local",
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, max_chunk_attempts: int = 3,
                 env_vars: dict[str, str] | None = None, chunk_timeout_s: float = DEFAULT_CHUNK_TIMEOUT_S):
        """``spec`` is one spec for every worker, or one per worker (e.g. each its own endpoints);
        ``chunk_timeout_s`` is how long a chunk may go without a result before its worker counts as hung."""
        import ray

        self.specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * workers
        workers = len(self.specs)
        self.max_chunk_attempts = max_chunk_attempts
        self.chunk_timeout_s = float(chunk_timeout_s)
        # Engines bring their own threading; a CPU worker gets its share of cores, not all of them.
        self.env_vars = {"OMP_NUM_THREADS": str(max(1, int(cpus_per_worker))), "TOKENIZERS_PARALLELISM": "false",
                         **(env_vars or {})}
        self._started_ray = False
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=max(1, int(workers * cpus_per_worker + 0.999)), include_dashboard=False,
                         log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
            self._started_ray = True
        self._actor_cls = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0)(
            SamplingWorker).options(runtime_env={"env_vars": self.env_vars})
        self.actors = [self._actor_cls.remote(s) for s in self.specs]
        self.replaced = 0

    def worker_pids(self) -> list[int]:
        """Each worker's process id (waits for the workers to start, at most ``chunk_timeout_s``)."""
        import ray

        return ray.get([a.pid.remote() for a in self.actors], timeout=self.chunk_timeout_s)

    def run(self, chunks: Sequence[Sequence[Problem]], todo: Sequence[int], params: SamplingParams,
            commit: CommitFn, retry_max_tokens: int | None = None) -> dict[str, int]:
        """Sample chunks ``todo`` (indices into ``chunks``); ``commit`` is called on the driver, once per chunk.

        A chunk whose worker died, raised or hung goes back to the queue and its
        worker is replaced by a fresh one; only a worker that answered is reused.
        """
        import ray
        from ray.exceptions import RayError

        pending = deque(todo)
        attempts: dict[int, int] = {}
        idle = deque(self.actors)
        in_flight: dict[Any, _Task] = {}
        committed = 0
        param_dict = asdict(params)
        while pending or in_flight:
            while pending and idle:
                actor, index = idle.popleft(), pending.popleft()
                payload = [asdict(p) for p in chunks[index]]
                ref = actor.sample.remote(index, payload, param_dict, retry_max_tokens)
                in_flight[ref] = _Task(index, actor, time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=min(POLL_S, self.chunk_timeout_s / 4))
            if not ready:
                for ref in self._overdue(in_flight):
                    task = in_flight.pop(ref)
                    reason = f"no result within chunk_timeout_s={self.chunk_timeout_s:g}s: the worker is presumed hung"
                    self._requeue(task.index, reason, attempts, pending)
                    idle.append(self._replace(task.actor))
                continue
            task = in_flight.pop(ready[0])
            try:
                rows = ray.get(ready[0], timeout=GET_TIMEOUT_S)
            except RayError as exc:  # died, raised (RayTaskError) or could not be fetched: never trusted again
                self._requeue(task.index, _short(exc), attempts, pending)
                idle.append(self._replace(task.actor))
                continue
            commit(task.index, [Trace.from_dict(r) for r in rows])
            committed += 1
            idle.append(task.actor)
        return {"sampled_shards": committed, "requeued_chunks": sum(attempts.values()),
                "replaced_workers": self.replaced}

    def _overdue(self, in_flight: dict[Any, _Task]) -> list[Any]:
        """The liveness check: chunks in flight longer than ``chunk_timeout_s``.

        Why a deadline and not a ping: an actor runs one call at a time, so a busy
        worker cannot answer a ping until its chunk is done, hung or not; and a
        worker that died is already reported by Ray as a failed result.
        """
        now = time.monotonic()
        return [ref for ref, task in in_flight.items() if now - task.started > self.chunk_timeout_s]

    def _requeue(self, index: int, reason: str, attempts: dict[int, int], pending: deque) -> None:
        """Put a lost chunk back at the front of the queue, or stop the job after ``max_chunk_attempts``."""
        attempts[index] = attempts.get(index, 0) + 1
        if attempts[index] >= self.max_chunk_attempts:
            raise RuntimeError(f"chunk {index} failed {attempts[index]} times on Ray workers; last: {reason}")
        log.warning("chunk %d lost (%s); worker replaced, chunk re-queued, attempt %d of %d", index, reason,
                    attempts[index] + 1, self.max_chunk_attempts)
        pending.appendleft(index)

    def _replace(self, dead: Any) -> Any:
        import ray

        try:
            ray.kill(dead, no_restart=True)
        except Exception:  # already gone
            pass
        slot = next(i for i, a in enumerate(self.actors) if a is dead)
        fresh = self._actor_cls.remote(self.specs[slot])  # the replacement owns what the dead worker owned
        self.actors[slot] = fresh
        self.replaced += 1
        return fresh

    def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.actors = []
        if self._started_ray:
            ray.shutdown()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
