"""A memory cgroup per sandbox run, so the memory limit holds for the whole process tree.

Why: ``RLIMIT_AS`` is per process, so a program with ``nproc`` processes may use
``nproc x memory_mb`` (16 x 512 MB = 8 GB per sandbox, times the sandboxes running at
once), and tmpfs pages (its ``/tmp``, ``/dev/shm``) count against no rlimit at all.  A
cgroup's limit covers every process of the run and the tmpfs pages it writes.

Creating cgroups needs root and a writable memory controller: cgroup v2 (a
``/sys/fs/cgroup`` whose ``cgroup.controllers`` lists ``memory``) or the v1 memory
hierarchy (``/sys/fs/cgroup/memory``).  Where neither is available, :func:`controller`
says why and the sandbox keeps to its rlimits (the bound is then
``nproc x memory_mb`` per sandbox).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_FS = Path("/sys/fs/cgroup")
PARENT = "distill-sandbox"
_counter = itertools.count()
_lock = threading.Lock()
_found: tuple[Controller | None, str] | None = None


@dataclass(frozen=True)
class Controller:
    """Where this process makes its per-run memory cgroups, and in which cgroup version."""

    parent: Path
    version: int  # 1 or 2


def controller() -> tuple[Controller | None, str]:
    """(the controller, '') when per-run memory cgroups work here, else (None, why not); found once per process."""
    global _found
    with _lock:
        if _found is None:
            _found = _find()
            if _found[0] is None:
                log.info("sandbox: no memory cgroup (%s); memory is limited per process only", _found[1])
        return _found


def _find() -> tuple[Controller | None, str]:
    if os.geteuid() != 0:
        return None, "not root"
    v2 = CGROUP_FS / "cgroup.controllers"
    try:
        if v2.is_file() and "memory" in v2.read_text().split():
            parent = CGROUP_FS / PARENT
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text("+memory")  # its children get memory.max
            return Controller(parent, 2), ""
        v1 = CGROUP_FS / "memory"
        if (v1 / "memory.limit_in_bytes").is_file():
            parent = v1 / PARENT
            parent.mkdir(exist_ok=True)
            return Controller(parent, 1), ""
    except OSError as exc:
        return None, f"cannot create a memory cgroup: {exc}"
    return None, "no memory cgroup controller mounted"


class RunCgroup:
    """One run's cgroup: created with its limit, joined by the run's first process, removed afterwards."""

    def __init__(self, ctl: Controller, limit_bytes: int) -> None:
        self.ctl = ctl
        self.path = ctl.parent / f"run-{os.getpid()}-{next(_counter)}"
        self.path.mkdir()
        try:
            if ctl.version == 2:
                (self.path / "memory.max").write_text(str(limit_bytes))
                _try_write(self.path / "memory.swap.max", "0")
            else:
                (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                _try_write(self.path / "memory.memsw.limit_in_bytes", str(limit_bytes))  # no swapping instead
        except OSError:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the limit."""
        name = "memory.events" if self.ctl.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """rmdir once its processes are gone (the pid namespace's last ones may take a moment to be reaped)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        log.warning("sandbox cgroup %s could not be removed (processes left in it)", self.path)


def _try_write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:  # swap accounting is off: nothing to limit
        pass
