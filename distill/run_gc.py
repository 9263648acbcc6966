"""``distill gc RUN_DIR``: the one command that removes stage outputs from a run folder.

Stages never delete each other's outputs: a changed config writes a new version of a stage beside
the old ones (``versions/<stage>/<fingerprint>/``), so going back to an earlier config is free.  Those
versions cost disk; this lists the ones no stage link points to (and the ones a forced re-run set
aside), says how much they hold, and deletes them only when told to.  The trace store is never
touched: paid teacher traces are removed by hand, if ever.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from distill.store import RunStore


@dataclass(frozen=True)
class Unused:
    stage: str
    folder: Path
    size_bytes: int


def unused_versions(run_dir: Path) -> list[Unused]:
    """The version folders of ``run_dir`` that no stage currently uses."""
    store = RunStore.open_existing(run_dir)
    unused = []
    for stage, folders in store.versions().items():
        link = store.stage_dir(stage)
        current = link.resolve() if link.is_symlink() else None
        for folder in folders:
            if folder.resolve() != current:
                unused.append(Unused(stage, folder, _size(folder)))
    return unused


def remove(unused: list[Unused]) -> int:
    """Delete ``unused``; returns the bytes freed."""
    freed = 0
    for item in unused:
        shutil.rmtree(item.folder)
        freed += item.size_bytes
    return freed


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total
