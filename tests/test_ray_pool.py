"""Data-parallel sampling on a local Ray cluster: a worker SIGKILLed mid-chunk, and the job is still exactly once.

The chunk-slowing sampler below is a local stand-in for an engine (Ray workers
import it by module path, as they import a real backend): what is under test is
the pool's scheduling, re-queueing and the driver-only commits, with real Ray
actors and a real SIGKILL of a worker process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from distill.problems import generate_arithmetic
from distill.records import read_jsonl
from distill.shards import ShardStore
from distill.teachers.sampler import Completion, SamplingParams

ray = pytest.importorskip("ray", reason="ray is in the dev extra")


class SlowEchoSampler:
    """Answers every prompt correctly after ``delay_s``; marks ``inside-<pid>`` while it is inside a chunk."""

    def __init__(self, backend: str, model: str, delay_s: float = 0.3, marker_dir: str = ""):
        self.name = f"{backend}:{model}"
        self.delay_s = delay_s
        self.marker = Path(marker_dir) / f"inside-{os.getpid()}" if marker_dir else None

    def generate(self, prompts, params: SamplingParams):
        if self.marker:
            self.marker.write_text(str(os.getpid()))
        time.sleep(self.delay_s)
        out = []
        for prompt in prompts:
            a, b = prompt[-1]["content"].split("?")[0].removeprefix("What is ").split(" + ")
            text = f"<think>{a}+{b}</think> The answer is \\boxed{{{int(a) + int(b)}}}."
            out.append([Completion(text=text, finish_reason="stop", prompt_tokens=9, completion_tokens=12)
                        for _ in range(params.n)])
        if self.marker:
            self.marker.unlink()
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def make_slow_sampler(backend: str, model: str, **options):
    return SlowEchoSampler(backend, model, **options)


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_two_workers_finish_exactly_once_after_one_is_killed_mid_chunk(local_ray, tmp_path):
    from distill.teachers.ray_pool import RayPool, WorkerSpec
    from distill.teachers.service import pending_chunks

    markers = tmp_path / "markers"
    markers.mkdir()
    spec = WorkerSpec("stand-in", "echo", {"delay_s": 0.4, "marker_dir": str(markers)},
                      factory="tests.test_ray_pool:make_slow_sampler")
    pool = RayPool(spec, workers=2)
    pids_before = set(pool.worker_pids())
    problems = generate_arithmetic(24, 0, 1, 2, "p")
    store = ShardStore(tmp_path / "shards")
    chunks, todo, _ = pending_chunks(problems, store, 2)
    commits: list[int] = []
    killed: list[int] = []

    def commit(index, traces):
        commits.append(index)
        store.commit(index, traces)

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            inside = list(markers.glob("inside-*"))
            if len(commits) >= 3 and inside:
                pid = int(inside[0].name.split("-")[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        info = pool.run(chunks, todo, SamplingParams(n=2, temperature=0.6), commit)
        pids_after = set(pool.worker_pids())
    finally:
        pool.close()
    thread.join(5)
    assert killed and killed[0] in pids_before, "no worker was killed"
    assert killed[0] not in pids_after and len(pids_after) == 2  # a replacement took its place
    assert info["requeued_chunks"] >= 1 and info["replaced_workers"] == 1
    assert sorted(commits) == list(range(len(chunks)))  # every chunk committed once, by the driver
    rows = [r for p in store.paths() for r in read_jsonl(p)]
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24 * 2
    assert set(keys) == {(p.id, s) for p in problems for s in range(2)}


@pytest.mark.slow
def test_a_chunk_that_keeps_killing_workers_stops_the_job(local_ray, tmp_path):
    from distill.teachers.ray_pool import RayPool, WorkerSpec

    spec = WorkerSpec("stand-in", "echo", {}, factory="tests.test_ray_pool:make_suicidal_sampler")
    pool = RayPool(spec, workers=1, max_chunk_attempts=2)
    problems = generate_arithmetic(2, 0, 1, 1, "p")
    try:
        with pytest.raises(RuntimeError, match="chunk 0 failed 2 times"):
            pool.run([problems], [0], SamplingParams(n=1), lambda i, t: None)
    finally:
        pool.close()


class _Suicidal(SlowEchoSampler):
    def generate(self, prompts, params):
        os.kill(os.getpid(), signal.SIGKILL)


def make_suicidal_sampler(backend: str, model: str, **options):
    return _Suicidal(backend, model, delay_s=0)


@pytest.mark.slow
def test_pipeline_samples_on_ray_workers_with_the_toy_teacher(tiny_config):
    """teacher.scale_out.backend=ray: two actors each load the configured (transformers) teacher."""
    from distill.pipeline import run

    config = tiny_config(teacher__scale_out={"backend": "ray", "workers": 2}, teacher__shard_size=6)
    run(config, until="sample")
    rows = ShardStore(config.run_dir / "sample" / "shards").read_all()
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24 * 2
    import json

    counts = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert counts["shards"] == 4 and counts["sampled_traces"] == 48 and counts["completion_tokens"] > 0
    assert not ray.is_initialized()  # the pool shut down the cluster it started


@pytest.mark.slow
def test_ray_workers_each_own_their_endpoints_of_an_http_teacher(tmp_path):
    """teacher.backend=openai on Ray: worker w gets endpoints[w::workers]; the manifest prices the job."""
    import json

    from distill.config import config_from_dict
    from distill.pipeline import run
    from tests.fault_server import FaultServer

    with FaultServer(default="ok_reasoning_content") as a, FaultServer(default="ok_reasoning_content") as b:
        config = config_from_dict({
            "name": "ray-http", "output_dir": str(tmp_path),
            "problems": {"train_size": 8, "heldout_size": 2, "max_digits": 1},
            "teacher": {"model": "deepseek-reasoner", "backend": "openai", "samples_per_problem": 2,
                        "shard_size": 2, "scale_out": {"backend": "ray", "workers": 2},
                        "openai": {"endpoints": [a.url, b.url], "backoff_base_s": 0.01}}})
        run(config, until="sample")
        served = (len(a.requests), len(b.requests))
    assert sum(served) == 16 and min(served) > 0
    counts = json.loads((tmp_path / "ray-http" / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert counts["traces"] == 16 and counts["failures"] == {} and counts["cost_usd"] > 0


def test_worker_specs_split_endpoints_between_workers():
    from distill.config import config_from_dict
    from distill.teachers.scale_out import ray_worker_specs

    teacher = config_from_dict({"name": "x", "teacher": {
        "model": "m", "backend": "openai", "scale_out": {"backend": "ray", "workers": 2},
        "openai": {"endpoints": ["http://a/v1", "http://b/v1", "http://c/v1"]}}}).teacher
    specs = ray_worker_specs(teacher, "m")
    assert [s.options["endpoints"] for s in specs] == [["http://a/v1", "http://c/v1"], ["http://b/v1"]]
    teacher.openai.endpoints = ["http://a/v1"]
    assert [s.options["endpoints"] for s in ray_worker_specs(teacher, "m")] == [["http://a/v1"]] * 2


def test_worker_specs_share_max_concurrency_instead_of_multiplying_it():
    from distill.config import config_from_dict
    from distill.teachers.scale_out import ray_worker_specs

    def limits(workers: int, endpoints: int, max_concurrency: int) -> list[int]:
        teacher = config_from_dict({"name": "x", "teacher": {
            "model": "m", "backend": "openai", "scale_out": {"backend": "ray", "workers": workers},
            "openai": {"endpoints": [f"http://e{i}/v1" for i in range(endpoints)],
                       "max_concurrency": max_concurrency}}}).teacher
        specs = ray_worker_specs(teacher, "m")
        assert len(specs) == workers
        return [s.options["max_concurrency"] for s in specs]

    assert limits(8, 1, 64) == [8] * 8  # one DeepSeek API endpoint, 8 workers: 64 in flight in all, not 512
    assert limits(3, 1, 64) == [22, 21, 21]
    assert limits(4, 1, 2) == [1, 1, 1, 1]  # every worker can still send
    assert limits(2, 3, 64) == [43, 21]  # split endpoints: by the endpoints each worker drives (2 and 1)
    assert limits(2, 2, 64) == [32, 32] and limits(1, 1, 64) == [64]
