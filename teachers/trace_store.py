"""The keyed trace store: every paid teacher trace, kept under a key made of what decides its content.

A trace's key hashes the teacher (model, backend, dtype and quantisation where they change outputs), the
prompt as sent, and the sampling parameters that change outputs (temperature, top-p, the run's seed, the
sample index, reasoning effort and other output-deciding API options).  Operational settings (batch
size, concurrency, memory share, parallelism, endpoints, retries, timeouts, scale-out) are not in it,
and neither is the token budget: a trace that ended on its own under a budget is the same trace under a
larger one; a truncated one is kept with the budget that cut it, so raising ``max_tokens`` re-samples
only the truncated ones.  Failed samples are stored with their reason but never reused.

Layout (``teacher.store``, default ``RUN_DIR/trace_store``; several runs may share one):

    chunks/<id>.jsonl   committed atomically; one full trace record per line, with its ``trace_key``
                        (``datasets.load_dataset("json", data_files=".../chunks/*.jsonl")`` reads them)
    index/<id>.tsv      written after its chunk: a header with the chunk's byte size, line count and
                        SHA-256, then ``key  line  finish_reason  max_tokens  completion_tokens`` per trace
    damaged/            chunks whose contents do not match their index, set aside (never deleted)

Why not a database: the chunks must stay plain JSONL that ``datasets`` and people can read, every commit
must be atomic across processes on a shared file system (Slurm array tasks, Ray drivers), and a lookup
over a million traces must take seconds: a per-chunk TSV index read into a dict does all three.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from distill.store import write_bytes_atomic

log = logging.getLogger(__name__)

INDEX_VERSION = "1"


def prompt_digest(identity: dict[str, Any], prompt: list[dict[str, str]]) -> bytes:
    """What a problem's keys share: the teacher and its output-deciding sampling settings (``identity``, see
    ``keyed_sampling.key_identity``) and the prompt as sent; hashed once per problem, not once per sample."""
    payload = json.dumps({"who": identity, "prompt": prompt}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).digest()


def sample_key(digest: bytes, sample_index: int) -> str:
    return hashlib.sha256(digest + sample_index.to_bytes(4, "little")).hexdigest()[:32]


def trace_key(identity: dict[str, Any], prompt: list[dict[str, str]], sample_index: int) -> str:
    """The key of one (teacher, prompt, sampling settings, sample index) trace."""
    return sample_key(prompt_digest(identity, prompt), sample_index)


@dataclass(frozen=True)
class Entry:
    """Where one stored trace lives, and what the planner needs to know about it without reading it."""

    chunk: str
    line: int
    finish_reason: str
    max_tokens: int
    completion_tokens: int

    def serves(self, max_tokens: int) -> bool:
        """Would sampling this key under ``max_tokens`` give this trace?  A trace that stopped on its own
        within the budget would; a truncated one only under the very budget that cut it; a failure never."""
        if self.finish_reason == "stop":  # within its own budget, or a count estimated over it (send_n splits)
            return self.max_tokens <= max_tokens or self.completion_tokens <= max_tokens
        if self.finish_reason == "length":
            return self.max_tokens == max_tokens
        return False


class TraceStore:
    """A folder of committed trace chunks with an index (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        for sub in ("chunks", "index"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, list[Entry]] | None = None
        self._sizes: dict[str, int] = {}

    # ------------------------------------------------------------------ lookups
    def entries(self) -> dict[str, list[Entry]]:
        """key -> every stored trace of it (oldest first), read from the index once per store object."""
        if self._entries is None:
            self._entries = {}
            for path in sorted((self.folder / "index").glob("*.tsv")):
                self._load_index(path)
        return self._entries

    def lookup(self, key: str, max_tokens: int) -> Entry | None:
        """The newest stored trace that serves ``key`` under ``max_tokens``, or None (sample it)."""
        for entry in reversed(self.entries().get(key, [])):
            if entry.serves(max_tokens):
                return entry
        return None

    def _load_index(self, path: Path) -> None:
        chunk = path.stem
        with open(path, encoding="utf-8") as fh:
            header = json.loads(fh.readline())
            chunk_path = self.chunk_path(chunk)
            if not chunk_path.is_file() or chunk_path.stat().st_size != header["bytes"]:
                self._set_aside(chunk, "chunk missing or its size differs from its index", forget=False)
                return
            self._sizes[chunk] = header["bytes"]
            entries = self._entries
            for row in fh:
                key, line, finish, budget, tokens = row.rstrip("\n").split("\t")
                entries.setdefault(key, []).append(Entry(chunk, int(line), finish, int(budget), int(tokens)))

    # ------------------------------------------------------------------ commits
    def chunk_path(self, chunk: str) -> Path:
        return self.folder / "chunks" / f"{chunk}.jsonl"

    def commit(self, records: list[dict[str, Any]]) -> str:
        """Write one chunk of trace records (each with ``trace_key`` and ``max_tokens``), then its index;
        a crash between the two leaves a chunk that :meth:`recover` indexes.  Returns the chunk id."""
        chunk = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{os.urandom(4).hex()}"
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        write_bytes_atomic(self.chunk_path(chunk), data)
        self._write_index(chunk, records, data)
        return chunk

    def _write_index(self, chunk: str, records: list[dict[str, Any]], data: bytes) -> None:
        header = {"version": INDEX_VERSION, "bytes": len(data), "lines": len(records),
                  "sha256": hashlib.sha256(data).hexdigest()}
        rows = [json.dumps(header)] + [
            f"{r['trace_key']}\t{i}\t{r['finish_reason']}\t{int(r.get('max_tokens') or 0)}\t"
            f"{int(r.get('completion_tokens') or 0)}" for i, r in enumerate(records)]
        write_bytes_atomic(self.folder / "index" / f"{chunk}.tsv", ("\n".join(rows) + "\n").encode("utf-8"))
        if self._entries is not None:
            self._sizes[chunk] = len(data)
            for i, r in enumerate(records):
                self._entries.setdefault(r["trace_key"], []).append(
                    Entry(chunk, i, r["finish_reason"], int(r.get("max_tokens") or 0),
                          int(r.get("completion_tokens") or 0)))

    def recover(self) -> int:
        """Index the chunks a crash left without an index (committed, then killed before the index);
        returns how many.  Their records were paid for: they are kept, never re-sampled."""
        indexed = {p.stem for p in (self.folder / "index").glob("*.tsv")}
        recovered = 0
        for path in sorted((self.folder / "chunks").glob("*.jsonl")):
            if path.stem not in indexed:
                data = path.read_bytes()
                self._write_index(path.stem, [json.loads(line) for line in data.splitlines() if line.strip()], data)
                recovered += 1
        if recovered:
            self._entries = None
        return recovered

    # ------------------------------------------------------------------ reads
    def read(self, entries: Iterable[Entry]) -> Iterator[tuple[Entry, dict[str, Any]]]:
        """The records of ``entries``, each chunk read once and checked against its index's line count and
        SHA-256 first; a chunk that fails is set aside and :class:`DamagedChunk` raised (re-plan and
        sample its keys again)."""
        by_chunk: dict[str, list[Entry]] = {}
        for entry in entries:
            by_chunk.setdefault(entry.chunk, []).append(entry)
        for chunk, wanted in by_chunk.items():
            rows = self._verified_rows(chunk)
            for entry in wanted:
                yield entry, rows[entry.line]

    def _verified_rows(self, chunk: str) -> list[dict[str, Any]]:
        data = self.chunk_path(chunk).read_bytes()
        with open(self.folder / "index" / f"{chunk}.tsv", encoding="utf-8") as fh:
            header = json.loads(fh.readline())
        lines = [line for line in data.splitlines() if line.strip()]
        if hashlib.sha256(data).hexdigest() != header["sha256"] or len(lines) != header["lines"]:
            self._set_aside(chunk, "contents differ from the index (line count or SHA-256)")
            raise DamagedChunk(chunk)
        return [json.loads(line) for line in lines]

    def _set_aside(self, chunk: str, why: str, forget: bool = True) -> None:
        damaged = self.folder / "damaged"
        damaged.mkdir(exist_ok=True)
        for path in (self.chunk_path(chunk), self.folder / "index" / f"{chunk}.tsv"):
            try:
                os.replace(path, damaged / path.name)
            except FileNotFoundError:  # absent, or another process set it aside first
                pass
        log.warning("trace store %s: chunk %s set aside in damaged/ (%s); its traces will be sampled again",
                    self.folder, chunk, why)
        if forget:  # the index is read again on the next lookup, without this chunk
            self._entries = None


class DamagedChunk(RuntimeError):
    """A chunk's contents no longer match its index; it has been set aside."""
