"""Launching one sandboxed process: the bwrap command line with its limits, reading its output, killing it.

Each run is a fresh ``bwrap`` process with no network (every namespace unshared), a
read-only view of ``/usr`` (and the interpreter's prefix) only, a private tmpfs as its
working folder, an empty environment, an unprivileged uid, and rlimits (``prlimit``) on
CPU, address space, processes, file size and open files.  The parent reads at most
``max_output_bytes`` of output and kills the process group at the wall-clock limit.
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Sequence

from distill.config import SandboxConfig

log = logging.getLogger(__name__)

NOBODY = 65534
# bwrap and the interpreter take ~50 ms to start; the wall clock allows this on top of the time limit.
STARTUP_GRACE_S = 0.5
STDERR_KEEP = 8192


def _python_binds(python: str) -> list[str]:
    """Read-only binds that make ``python`` usable inside the sandbox besides ``/usr``."""
    real = os.path.realpath(python)
    if real.startswith("/usr/"):
        return []
    prefix = os.path.dirname(os.path.dirname(real))  # <prefix>/bin/python3.x -> <prefix>
    return ["--ro-bind", prefix, prefix]


def default_python() -> str:
    """The interpreter run inside the sandbox: the system one under /usr (readable by nobody), else this one."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def bwrap_command(cfg: SandboxConfig, python: str, box: str, argv: Sequence[str], status_fd: int) -> list[str]:
    """The bwrap + prlimit command line running ``/box/main.py`` (``box``, read-only) under ``cfg``'s limits."""
    cpu = max(1, math.ceil(cfg.time_limit_s))
    binds = ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin", "sbin"):
        target = os.readlink(f"/{name}") if os.path.islink(f"/{name}") else None
        if target is not None:
            binds += ["--symlink", target, f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            binds += ["--ro-bind", f"/{name}", f"/{name}"]
    return [
        cfg.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        "--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox",
        *binds, "--proc", "/proc",
        # /dev is a tmpfs of bwrap's at the kernel's default size (half the RAM, not counted by RLIMIT_AS):
        # read-only, its device nodes still work; /dev/shm (semaphores) gets a capped tmpfs of its own
        "--dev", "/dev", "--remount-ro", "/dev", "--size", str(cfg.tmpfs_mb * 1024 * 1024), "--tmpfs", "/dev/shm",
        "--size", str(cfg.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp", "--chdir", "/tmp",
        *_python_binds(python),  # after the /tmp tmpfs, which would hide an interpreter under /tmp
        "--ro-bind", box, "/box", "--remount-ro", "/", "--json-status-fd", str(status_fd),
        "--", "prlimit", f"--cpu={cpu}:{cpu + 1}", f"--as={cfg.memory_mb * 1024 * 1024}",
        f"--nproc={cfg.nproc}", f"--fsize={cfg.max_file_mb * 1024 * 1024}", f"--nofile={cfg.nofile}",
        "--core=0", "--", python, "-I", "/box/main.py", *argv,
    ]


def collect_output(proc: subprocess.Popen, status_r: int, deadline: float, cap: int):
    """Read stdout (capped at ``cap`` bytes), the stderr tail and bwrap's status until exit, the deadline or the cap.

    Returns (stdout, stderr tail, status, killed_for), ``killed_for`` being TLE, OLE or None.
    """
    out, err_tail, err_total, status = bytearray(), bytearray(), 0, bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    sel.register(status_r, selectors.EVENT_READ, "status")
    killed_for = None
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                killed_for = "TLE"
                break
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
                fd = key.fd if key.data == "status" else key.fileobj.fileno()
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.data == "out":
                    out += chunk
                elif key.data == "err":
                    err_total += len(chunk)
                    err_tail = (err_tail + chunk)[-STDERR_KEEP:]
                else:
                    status += chunk
            if len(out) > cap or err_total > cap:
                killed_for = "OLE"
                break
    finally:
        sel.close()
    if killed_for is None:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed_for = "TLE"
    return bytes(out[: cap + 1]), bytes(err_tail), bytes(status), killed_for


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL bwrap's process group (bwrap's death tears down the sandbox's pid namespace) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        log.error("sandbox process %d did not exit after SIGKILL", proc.pid)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
