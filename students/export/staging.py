"""Atomic publishing of exports: build beside the destination, check, and only then rename into place.

A crash or a failed read-back check must never leave a half-written or broken
artefact at the final path, because a later stage (or a user) would happily
load it.  Every exporter therefore writes into :func:`staging_dir` -- a hidden
sibling of the destination, on the same filesystem so the final rename is
atomic -- and publishes with ``os.replace`` (one file) or
:func:`replace_dir_atomic` (a whole folder).  Single small files that need no
check before publishing go through :func:`distill.store.write_bytes_atomic`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from distill.students.export.errors import ExportError


def weights_size(directory: Path) -> int:
    """Bytes of the safetensors weight files in ``directory`` (the part quantisation shrinks)."""
    return sum(p.stat().st_size for p in Path(directory).glob("*.safetensors"))


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A fresh hidden directory beside ``final`` to build an export in; always removed on exit.

    Whatever was published out of it (renamed to ``final``) survives; anything
    left behind -- after a failure, or intermediate files -- is deleted.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir_atomic(staging: Path, out_dir: Path) -> None:
    """Move a finished staging directory to ``out_dir``, replacing an older export there.

    ``out_dir`` is never a mix of old and new files: the old export is renamed
    aside, the new one renamed in, and only then is the old one deleted (it is
    put back if the second rename fails).
    """
    backup: Path | None = None
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir} exists and is not a directory")
        backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        backup.rmdir()
        os.replace(out_dir, backup)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if backup is not None:
            os.replace(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
