"""Exactly-once commits of work in shards.

Work is cut into numbered shards whose contents are fixed by the input alone
(problems ``i*S .. (i+1)*S``, all their samples).  A shard is committed by
writing its file atomically, so after a crash every shard is either fully there
or absent, and a resume redoes only the absent ones: no record is lost or
duplicated.  Any process (a Ray worker, a Slurm array task) can commit a shard.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

from distill.records import read_jsonl, write_jsonl_atomic

T = TypeVar("T")
SHARD_RE = re.compile(r"^shard-(\d{5})\.jsonl$")


def plan_shards(items: Sequence[T], shard_size: int) -> list[list[T]]:
    return [list(items[i : i + shard_size]) for i in range(0, len(items), shard_size)]


class ShardStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.jsonl"

    def committed(self) -> set[int]:
        return {int(m.group(1)) for p in self.folder.iterdir() if (m := SHARD_RE.match(p.name))}

    def commit(self, index: int, records: Iterable[Any]) -> int:
        return write_jsonl_atomic(self.path(index), records)

    def paths(self) -> list[Path]:
        return [self.path(i) for i in sorted(self.committed())]

    def read_all(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for path in self.paths():
            rows.extend(read_jsonl(path))
        return rows
