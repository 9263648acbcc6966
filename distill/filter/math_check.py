"""The math-verify worker pool: each job in a separate process, under a hard wall-clock deadline.

Why worker processes: math-verify hands answers to sympy, and a model can box
anything -- ``9^{9^{9^{9}}}`` sends sympy after a power that never finishes,
``1000000!`` takes seconds, a megabyte of LaTeX stalls the parser.  An alarm in the
worker stops most such work at the timeout; work stuck inside one C call ignores
signals, so the final bound is a separate process that is killed when its time is
up.  :class:`VerifierPool` runs math-verify in such processes
(:mod:`distill.filter.math_worker`); a job past its timeout gets ``status="error_infra"``
(counted apart from wrong answers), and a worker that does not come back is killed
and replaced.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Sequence

from distill.filter.math_worker import worker_main

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
# The worker's own alarm stops Python-level work at the timeout and the worker lives on;
# past this much more, the job is stuck in C code (a huge integer power) and the worker is killed.
HARD_DEADLINE_GRACE_S = 0.25


class _Worker:
    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        self.started = time.monotonic()


class VerifierPool:
    """Worker processes running math-verify, each job under a hard wall-clock deadline.

    One job per worker at a time over a private pipe, so the parent always knows which
    job a stuck worker holds.  Two timeouts: the worker's alarm interrupts Python-level
    work at ``timeout_s`` (the worker survives, the job is ``error_infra``); a job still
    running ``HARD_DEADLINE_GRACE_S`` later is stuck in C code, so its worker is
    SIGKILLed and replaced while the others carry on.  ``soft_timeouts=False`` leaves
    only the kill.  Workers come from a forkserver that has math-verify imported, so a
    replacement starts in milliseconds (and warms up before it takes a job).  ``warm_up=True``
    has each first worker parse one answer of every common shape before its first job (about
    a second of CPU), which makes a run's first few hundred math-verify jobs some 40% cheaper;
    the process-wide pool that the filter and eval use does, replacements never do.
    """

    START_TIMEOUT_S = 120.0

    def __init__(self, workers: int = 1, memory_limit_mb: int | None = 4096, soft_timeouts: bool = True,
                 warm_up: bool = False) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.size = workers
        self.warm_up = warm_up
        self.memory_limit_mb = memory_limit_mb
        self.soft_timeouts = soft_timeouts
        self.pid = os.getpid()
        self.replaced = 0
        self._start_failures = 0
        self._ctx = _mp_context()
        self._workers: list[_Worker] = [self._spawn(warm_up) for _ in range(workers)]

    def _spawn(self, warm_up: bool) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=worker_main, args=(child, self.memory_limit_mb, warm_up), daemon=True,
                                    name="distill-verify")
        with _main_module_hidden():
            process.start()
        child.close()
        return _Worker(process, parent)

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a worker (stuck, dead or broken) and start its successor in its slot."""
        _kill(worker)
        self.replaced += 1
        fresh = self._spawn(warm_up=False)  # ready at once: the others carry the load, this one warms as it goes
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def run(self, jobs: Sequence[tuple[str, str]], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
        """Status (correct | wrong | error_infra) of each (extracted, reference) job, in order."""
        from multiprocessing.connection import wait

        results: list[str | None] = [None] * len(jobs)
        replaced_before = self.replaced
        queue = deque(range(len(jobs)))
        busy: dict[_Worker, tuple[int, float]] = {}  # worker -> (job, deadline)
        while queue or busy:
            self._dispatch(jobs, queue, busy, timeout_s)
            waiting = [w for w in self._workers if w in busy or not w.ready]
            now = time.monotonic()
            deadlines = [d for _, d in busy.values()] + [w.started + self.START_TIMEOUT_S for w in waiting]
            ready = wait([w.conn for w in waiting], timeout=max(0.0, min(deadlines, default=now) - now))
            by_conn = {w.conn: w for w in waiting}
            for conn in ready:
                self._receive(by_conn[conn], busy, results, queue)
            self._expire(busy, results)
        statuses = [r or "error_infra" for r in results]
        errors = statuses.count("error_infra")
        if errors:
            log.warning("%d of %d math-verify jobs timed out (%.1fs) or failed: error_infra; %d workers replaced",
                        errors, len(jobs), timeout_s, self.replaced - replaced_before)
        return statuses

    def _dispatch(self, jobs, queue: deque, busy: dict, timeout_s: float) -> None:
        for worker in list(self._workers):
            if not queue:
                return
            if not worker.ready or worker in busy:
                continue
            index = queue.popleft()
            try:
                worker.conn.send((index, *jobs[index], timeout_s if self.soft_timeouts else None))
            except (OSError, ValueError):  # the worker died between jobs: retry the job elsewhere
                queue.appendleft(index)
                self._replace(worker)
                continue
            busy[worker] = (index, time.monotonic() + timeout_s + HARD_DEADLINE_GRACE_S)

    def _receive(self, worker: _Worker, busy: dict, results: list, queue: deque) -> None:
        try:
            msg = worker.conn.recv()
        except (EOFError, OSError):  # died mid-job (OOM killer, a crash in C code) or while starting
            if not worker.ready:
                self._start_failures += 1
                if self._start_failures > 3:
                    raise RuntimeError("verifier workers die while starting (is math-verify installed?)")
            job = busy.pop(worker, None)
            if job is not None:
                results[job[0]] = "error_infra"
                log.warning("verifier worker %s died on job %d; replaced", worker.process.pid, job[0])
            self._replace(worker)
            return
        if msg[0] == "ready":
            worker.ready = True
            self._start_failures = 0
            return
        index, status = msg
        busy.pop(worker, None)
        results[index] = status

    def _expire(self, busy: dict, results: list) -> None:
        now = time.monotonic()
        for worker, (index, deadline) in list(busy.items()):
            if deadline <= now:
                busy.pop(worker)
                results[index] = "error_infra"
                log.debug("math-verify job %d passed its deadline; worker %s killed", index, worker.process.pid)
                self._replace(worker)
        for worker in list(self._workers):
            if not worker.ready and worker not in busy and now - worker.started > self.START_TIMEOUT_S:
                raise RuntimeError(f"verifier worker did not start within {self.START_TIMEOUT_S:.0f}s")

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            _kill(worker)
        self._workers = []

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _kill(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(timeout=5)
    worker.conn.close()


@contextmanager
def _main_module_hidden():
    """Start a worker without it re-importing the caller's ``__main__``.

    multiprocessing makes spawn/forkserver children import the parent's main script;
    that fails in scripts without an ``if __name__ == "__main__"`` guard and costs every
    worker the script's imports (torch, say).  The worker needs only :mod:`~distill.filter.math_worker`, so
    the main module's file and spec are hidden while the child's start data is taken.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _mp_context():
    """A forkserver context preloading math-verify (fast, fork-safe replacements); spawn where there is none."""
    import multiprocessing as mp

    try:
        ctx = mp.get_context("forkserver")
    except ValueError:
        return mp.get_context("spawn")
    ctx.set_forkserver_preload(["distill.filter.math_worker", "math_verify", "sympy"])
    return ctx


_shared: VerifierPool | None = None
_shared_lock = threading.Lock()


def default_workers() -> int:
    """Verifier processes when none are asked for: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _shared_pool(workers: int | None) -> VerifierPool:
    """The process-wide pool, created on first use (and again after a fork or a size change)."""
    global _shared
    size = workers or (_shared.size if _shared is not None else default_workers())
    if _shared is not None and (_shared.pid != os.getpid() or _shared.size != size):
        if _shared.pid == os.getpid():
            _shared.close()
        _shared = None
    if _shared is None:
        _shared = VerifierPool(size, warm_up=True)
    return _shared


def shutdown() -> None:
    """Stop the shared verifier workers (also done at interpreter exit)."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared.pid == os.getpid():
            _shared.close()
        _shared = None


atexit.register(shutdown)


def run_math_jobs(jobs: list[tuple[str, str]], timeout_s: float, workers: int | None,
                  pool: VerifierPool | None) -> list[str]:
    """Statuses of (extracted, reference) jobs from ``pool``, else from the process-wide pool of ``workers``."""
    if pool is not None:
        return pool.run(jobs, timeout_s)
    with _shared_lock:
        return _shared_pool(workers).run(jobs, timeout_s)
