"""The Ray pool on a local cluster: a worker whose sampler raised, or that hangs, is replaced, not trusted again.

Issue 14 ("Records, cards and errors"): a worker whose sampler raised went back
to the idle pool (a sampler that raised may be broken: a CUDA error, a wedged
engine), and the driver waited on Ray with no timeout, so one hung worker
stalled the job forever.  The stand-in samplers below break or hang on cue (a
flag file, taken by the first worker that sees it), so the first worker fails
and its replacement -- a fresh actor, a fresh sampler -- finishes the chunk.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from distill.problems import generate_arithmetic
from distill.teachers.sampler import SamplingParams
from tests.test_ray_pool import SlowEchoSampler

ray = pytest.importorskip("ray", reason="ray is in the dev extra")


def _take(flag: str) -> bool:
    """True for exactly one caller: whoever removes the flag file first."""
    try:
        os.unlink(flag)
        return True
    except FileNotFoundError:
        return False


class _BreaksOnce(SlowEchoSampler):
    """Raises on the first chunk any worker sees, and stays broken afterwards (as a wedged engine does)."""

    def __init__(self, backend: str, model: str, flag: str = ""):
        super().__init__(backend, model, delay_s=0.0)
        self.flag, self.broken = flag, False

    def generate(self, prompts, params):
        if self.broken or _take(self.flag):
            self.broken = True
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().generate(prompts, params)


class _HangsOnce(SlowEchoSampler):
    """Never returns from the first chunk any worker sees (a deadlocked engine); others answer at once."""

    def __init__(self, backend: str, model: str, flag: str = ""):
        super().__init__(backend, model, delay_s=0.0)
        self.flag = flag

    def generate(self, prompts, params):
        if _take(self.flag):
            time.sleep(3600)
        return super().generate(prompts, params)


def make_breaks_once(backend: str, model: str, **options):
    return _BreaksOnce(backend, model, **options)


def make_hangs_once(backend: str, model: str, **options):
    return _HangsOnce(backend, model, **options)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _flag(tmp_path: Path) -> str:
    flag = tmp_path / "flag"
    flag.write_text("x")
    return str(flag)


def _run_bounded(pool, chunks, seconds: float) -> tuple[dict | None, list[int], BaseException | None]:
    """``pool.run`` on a thread, so a pool that waits forever fails this test instead of hanging it."""
    commits: list[int] = []
    out: dict = {}

    def target():
        try:
            out["info"] = pool.run(chunks, list(range(len(chunks))), SamplingParams(n=1),
                                   lambda i, t: commits.append(i))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"pool.run still waiting after {seconds:.0f}s: a hung worker was not noticed"
    return out.get("info"), commits, out.get("error")


def test_a_worker_whose_sampler_raised_is_replaced_and_its_chunk_redone(local_ray, tmp_path):
    from distill.teachers.ray_pool import RayPool, WorkerSpec

    spec = WorkerSpec("stand-in", "echo", {"flag": _flag(tmp_path)},
                      factory="tests.test_ray_pool_truth:make_breaks_once")
    pool = RayPool(spec, workers=1, max_chunk_attempts=2)
    first = pool.worker_pids()
    try:
        info, commits, error = _run_bounded(pool, [generate_arithmetic(2, 0, 1, 1, "p")], 90)
        after = pool.worker_pids()
    finally:
        pool.close()
    assert error is None, f"the broken worker was given the chunk again: {error}"
    assert commits == [0] and info["replaced_workers"] == 1 and info["requeued_chunks"] == 1
    assert after != first  # a fresh actor, not the one whose sampler raised


def test_a_hung_worker_is_noticed_replaced_and_its_chunk_redone(local_ray, tmp_path):
    from distill.teachers.ray_pool import RayPool, WorkerSpec

    spec = WorkerSpec("stand-in", "echo", {"flag": _flag(tmp_path)},
                      factory="tests.test_ray_pool_truth:make_hangs_once")
    pool = RayPool(spec, workers=1, max_chunk_attempts=2, chunk_timeout_s=10.0)  # start-up included
    try:
        info, commits, error = _run_bounded(pool, [generate_arithmetic(2, 0, 1, 1, "p")], 90)
    finally:
        pool.close()
    assert error is None
    assert commits == [0] and info["replaced_workers"] == 1 and info["requeued_chunks"] == 1


def test_a_chunk_that_keeps_hanging_stops_the_job_after_max_chunk_attempts(local_ray, tmp_path):
    from distill.teachers.ray_pool import RayPool, WorkerSpec

    spec = WorkerSpec("stand-in", "echo", {"delay_s": 3600.0}, factory="tests.test_ray_pool:make_slow_sampler")
    pool = RayPool(spec, workers=1, max_chunk_attempts=2, chunk_timeout_s=3.0)
    try:
        info, commits, error = _run_bounded(pool, [generate_arithmetic(2, 0, 1, 1, "p")], 90)
    finally:
        pool.close()
    assert commits == [] and isinstance(error, RuntimeError)
    assert "chunk 0 failed 2 times" in str(error) and "chunk_timeout_s" in str(error)


def test_scale_out_config_has_the_chunk_timeout():
    from distill.config import config_from_dict

    teacher = config_from_dict({"name": "x", "teacher": {"scale_out": {"backend": "ray",
                                                                        "chunk_timeout_s": 900}}}).teacher
    assert teacher.scale_out.chunk_timeout_s == 900
    with pytest.raises(Exception):
        config_from_dict({"name": "x", "teacher": {"scale_out": {"chunk_timeout_s": 0}}})
