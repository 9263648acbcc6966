"""How one sandboxed run ended: the result records and the rules that classify an exit.

Every run ends in one outcome: ``pass``, ``wrong_answer``, ``TLE`` (wall or CPU limit),
``MLE`` (MemoryError under the address-space limit, or the memory cgroup's OOM kill),
``OLE`` (output or file size over its cap), ``runtime_error``, ``blocked`` (the sandbox
refused something: network, a read-only file system, a process limit, a permission),
and ``error_infra`` when the sandbox itself could not start -- never a pass or a fail.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from distill.config import SandboxConfig

OUTCOMES = ("pass", "wrong_answer", "TLE", "MLE", "OLE", "runtime_error", "blocked", "error_infra")


@dataclass(frozen=True)
class RunResult:
    """One sandboxed process: its outcome before comparing output (``ok`` means it exited 0)."""

    outcome: str  # ok | TLE | MLE | OLE | runtime_error | blocked | error_infra
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    detail: str = ""


@dataclass(frozen=True)
class CodeResult:
    """The verdict on a program against a whole test suite: the first failing case decides."""

    outcome: str  # one of OUTCOMES
    passed: int
    total: int
    detail: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "pass"


# An exception that means "the sandbox said no", not "the program is wrong".
_BLOCKED_RE = re.compile(
    r"^(?:PermissionError|BlockingIOError|ConnectionRefusedError|socket\.gaierror|OSError: \[Errno (?:1|11|13|30|99|101)\]"
    r"|\w*Error: \[Errno (?:1|11|13|30|99|101|111)\])")
# CPython ignores SIGXFSZ, so a write past RLIMIT_FSIZE raises EFBIG (27); a full /tmp or /dev/shm raises ENOSPC (28).
_FILE_LIMIT_RE = re.compile(r"^\w*Error: \[Errno (?:27|28)\]")
_EXC_LINE_RE = re.compile(r"^[\w.]+(?:Error|Exception|Exit)\b.*$|^[\w.]+: .*$", re.MULTILINE)


def classify_run(cfg: SandboxConfig, returncode: int | None, out: bytes, err: bytes, status: bytes,
                 killed_for: str | None, wall: float, oom_kills: int = 0) -> RunResult:
    """The outcome of one finished (or killed) sandbox process, from its exit, output and bwrap's status.

    ``killed_for`` is why the parent killed it (TLE, OLE) or None; ``oom_kills`` counts the processes
    its memory cgroup killed.  A setup failure of bwrap or prlimit is ``error_infra``, never the program's.
    """
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    started = b'"child-pid"' in status
    exit_code = status_exit_code(status)
    code = exit_code if exit_code is not None else returncode

    def result(outcome: str, detail: str = "") -> RunResult:
        return RunResult(outcome, code, stdout, stderr, wall, detail)

    if not started and killed_for is None:
        line = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {returncode}"
        return result("error_infra", f"sandbox failed to start: {line}")
    if killed_for is None and setup_failed(exit_code, returncode, stdout, stderr):
        return result("error_infra", f"sandbox failed to set up: {stderr.strip().splitlines()[0][:300]}")
    if killed_for == "OLE":
        return result("OLE", f"output over {cfg.max_output_bytes} bytes")
    if killed_for == "TLE":
        return result("TLE", f"killed after {wall:.2f}s of wall clock")
    if oom_kills:
        return result("MLE", f"over the sandbox's {cfg.memory_mb} MB: {oom_kills} process(es) killed")
    if code == 128 + signal.SIGXCPU:
        return result("TLE", "CPU time limit")
    if code == 128 + signal.SIGXFSZ:
        return result("OLE", "file size limit")
    if code == 0:
        return result("ok")
    last = last_exception(stderr)
    if "MemoryError" in last or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
        return result("MLE", last or "out of memory")
    if _FILE_LIMIT_RE.match(last):
        return result("OLE", f"file size limit: {last}")
    if _BLOCKED_RE.match(last):
        return result("blocked", last)
    if code is not None and code > 128:
        return result("runtime_error", f"killed by signal {code - 128}")
    return result("runtime_error", last or f"exit code {code}")


def status_exit_code(status: bytes) -> int | None:
    """The program's exit code from bwrap's JSON status, None when bwrap wrote none (it failed or was killed)."""
    m = re.search(rb'"exit-code"\s*:\s*(-?\d+)', status)
    return int(m.group(1)) if m else None


def setup_failed(exit_code: int | None, returncode: int | None, stdout: str, stderr: str) -> bool:
    """Did bwrap or prlimit fail before the program started (after bwrap had reported its child)?

    bwrap dies with exit 1 and a ``bwrap: `` message and, unlike a program that ran,
    writes no exit code to its status fd; prlimit that cannot exec the interpreter
    exits 126/127 with ``prlimit: failed to execute``.
    """
    if stdout:
        return False
    if exit_code is None and returncode == 1 and stderr.startswith("bwrap: "):
        return True
    return exit_code in (126, 127) and stderr.startswith("prlimit: failed to execute")


def last_exception(stderr: str) -> str:
    """The final ``SomeError: message`` line of a traceback, '' when there is none."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines[-20:]):
        if _EXC_LINE_RE.match(line) and not line.startswith(("File ", "Traceback")):
            return line[:300]
    return lines[-1][:300] if lines else ""
