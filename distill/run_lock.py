"""The run folder's lock: one writer at a time, or many Slurm array tasks together, never both.

Why: two ``distill run`` processes on one folder used to interleave freely - each loaded the
manifest, each began (and so reset) the same stages, and each overwrote the other's bookkeeping.
Every process that changes a run folder now holds ``RUN_DIR/.lock`` with ``fcntl.flock``:

- ``distill run`` and the main process of an ``accelerate launch`` of the train stage hold it
  EXCLUSIVE: nobody else may change the folder meanwhile;
- the array tasks of ``distill teacher sample --shard K/N`` hold it SHARED: they run side by side by
  design (each commits only its own chunks), but not beside a ``distill run``.

A second process is refused at once with a one-line :class:`~distill.errors.UserError` (exit 2)
naming the holder's pid, host and command, read from the lock file.  Why ``flock`` rather than a
"pid file": the kernel drops the lock when its holder dies, SIGKILL and power loss included, so a
stale lock of a dead process is simply taken over and a left-behind lock file never blocks a later
run.  The file is never deleted (deleting a flock'd file lets two processes lock two different
files); it is a dot-file at the top of the run folder, outside every stage's folder, so nothing
reads it as a stage output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from distill.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_READ_TRIES = 10  # a refused process waits up to ~0.5 s for a new holder to write its record


@contextlib.contextmanager
def run_lock(run_dir: Path, exclusive: bool = True, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created if missing) for the ``with`` block; yields the lock file's path.

    Raises a :class:`UserError` at once, without waiting, when another process holds it in a conflicting
    mode.  ``command`` is what the record names (default: this process's command line).  On a file system
    without ``flock`` (some network mounts) the run goes on unlocked, with a warning.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    # O_APPEND: shared holders add their records side by side, each in one whole write
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        locked = _acquire(fd, path, run_dir, exclusive)
        record = holder_record(exclusive, command)
        if locked:
            if exclusive:
                os.ftruncate(fd, 0)  # nobody else holds it: earlier records are of gone processes
            _append(fd, record)
        try:
            yield path
        finally:
            if locked:
                _release(fd, record["token"], exclusive)
    finally:
        os.close(fd)  # closing the descriptor releases the lock (so does the kernel if we die)


def holder_record(exclusive: bool, command: str | None = None) -> dict[str, Any]:
    """What a refused process is told about a holder: pid, host, command, mode and since when."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": (command or _command_line())[:500],
            "mode": "exclusive" if exclusive else "shared", "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "token": uuid.uuid4().hex}


def read_holders(path: Path) -> list[dict[str, Any]]:
    """The records of the processes holding a lock file now, oldest first: records released or left by a
    dead process of this host are left out (a dead process of another host cannot be told apart)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records, released = [], set()
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a torn line (a network file system without atomic appends)
        if isinstance(item, dict) and "released" in item:
            released.add(item["released"])
        elif isinstance(item, dict) and isinstance(item.get("pid"), int):
            records.append(item)
    return [r for r in records if r.get("token") not in released and not _dead_here(r)]


def read_holder(path: Path) -> dict[str, Any] | None:
    """The newest holder's record in a lock file, or None when nobody holds it."""
    holders = read_holders(path)
    return holders[-1] if holders else None


def _acquire(fd: int, path: Path, run_dir: Path, exclusive: bool) -> bool:
    """True when locked; False when the file system cannot lock (the run goes on, with a warning)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        log.warning("cannot lock %s on this platform: make sure no other process uses the run folder", run_dir)
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(_refusal(path, run_dir)) from None
    except OSError as exc:  # ENOLCK, EOPNOTSUPP...: a mount without flock support
        log.warning("cannot lock %s (%s): make sure no other process uses the run folder", path, exc)
        return False
    return True


def _release(fd: int, token: str, exclusive: bool) -> None:
    """Leave no record of ours behind: an exclusive holder empties the file; a shared one marks its record
    released (other array tasks may still hold the lock: their records stay; the next exclusive holder
    empties the file).  Why not "the last one out empties it": finding out means taking the lock
    exclusively for a moment, and an array task starting in that moment would be refused."""
    if exclusive:
        os.ftruncate(fd, 0)
    else:
        _append(fd, {"released": token})


def _refusal(path: Path, run_dir: Path) -> str:
    """The one-line message for a refused process, naming the holder when its record can be read."""
    holders: list[dict[str, Any]] = []
    for _ in range(_READ_TRIES):  # a holder writes its record just after locking: give it a moment
        holders = read_holders(path)
        if holders:
            break
        time.sleep(0.05)
    if not holders:
        return f"{run_dir} is in use by another process (it holds {path}); wait for it or stop it"
    holder = holders[-1]
    host = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host')}"
    more, them = (f" and {len(holders) - 1} more", "them") if len(holders) > 1 else ("", "it")
    return (f"{run_dir} is in use by pid {holder['pid']}{host} ({holder.get('command', '?')}) "
            f"since {holder.get('since', '?')}{more}; wait for {them} or stop {them}")


def _dead_here(holder: dict[str, Any]) -> bool:
    """A record of a process of this host that no longer exists (it was SIGKILLed, or the machine rebooted)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def _append(fd: int, item: dict[str, Any]) -> None:
    """One whole line in one write (appends of a few hundred bytes are not interleaved on a local disk)."""
    os.write(fd, (json.dumps(item) + "\n").encode("utf-8"))


def _command_line() -> str:
    """This process's command as the user typed it: ``distill run ...`` rather than ``.../distill/cli.py run ...``."""
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0])
    if first.name == "cli.py" and first.parent.name == "distill":
        argv[0] = "distill"
    elif first.name == "train_entry.py":
        argv[0] = "distill.students.train_entry"
    else:
        argv[0] = first.name or argv[0]
    return shlex.join(argv)
