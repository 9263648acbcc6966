"""Verdicts made while sampling, kept beside the trace store so nothing verifies a trace twice.

Online verification (:mod:`distill.teachers.online_verify`) judges each committed trace chunk with the
filter's own checks and the one verifier, and writes the chunk's verdicts here as one file:

    verdicts/<chunk>.<checks>.jsonl   one line per line of trace chunk ``<chunk>`` (same order), written
                                      atomically and fsync'd (``write_bytes_atomic``) after the chunk commits

``<checks>`` is :func:`checks_version`: the verifier's version (its code, timeout and sandbox limits) and
the filter's trace-level quality settings, so a changed setting makes new verdicts beside the old ones.
One file per (chunk, checks) written whole or not at all: a SIGKILL leaves a chunk with no verdict file,
which the next run verifies (never a torn or doubled verdict).  Each line keeps the trace's key, the
verifier's own version and a digest of the reference it was checked against, so the filter stage reuses
the verifier's check of a trace (by trace key and verifier version, against the same reference) even
when its quality settings have changed since.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

from distill.store import write_bytes_atomic

# Bump when the verifier's verdicts change (distill/filter/verify.py and what it calls): old verdicts are
# then never reused, by the rounds or by the filter.
VERIFIER_CODE_VERSION = "1"
QUALITY_KEYS = ("reject_truncated", "require_closed_think", "min_reasoning_tokens", "min_completion_tokens",
                "max_completion_tokens", "reject_conflicting_answers", "repetition_ngram", "max_repeated_fraction",
                "tail_loop_repeats", "max_foreign_script")


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def verifier_version(filter_cfg: Any) -> str:
    """What decides the verifier's check of an answer: its code, its timeout and the sandbox's limits
    (not where bwrap lives or how many sandboxes run at once)."""
    sandbox = filter_cfg.sandbox.model_dump(mode="json")
    for operational in ("bwrap", "workers"):
        sandbox.pop(operational, None)
    return _digest({"code": VERIFIER_CODE_VERSION, "timeout": filter_cfg.verify_timeout_s, "sandbox": sandbox})


def checks_version(filter_cfg: Any) -> str:
    """The verifier's version and the filter's trace-level checks: what decides "verified" for the rounds."""
    return _digest({"verifier": verifier_version(filter_cfg),
                    "quality": {k: getattr(filter_cfg, k) for k in QUALITY_KEYS}})


def reference_digest(kind: str, reference: Any) -> str:
    """The answer a trace was checked against: an edited reference makes its verdict stale."""
    return _digest([kind, reference])


class VerdictStore:
    """The ``verdicts/`` folder of a trace store (see the module docstring)."""

    def __init__(self, store_folder: Path):
        self.folder = Path(store_folder) / "verdicts"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, chunk: str, checks: str) -> Path:
        return self.folder / f"{chunk}.{checks}.jsonl"

    def has(self, chunk: str, checks: str) -> bool:
        return self.path(chunk, checks).is_file()

    def write(self, chunk: str, checks: str, rows: list[dict[str, Any]]) -> None:
        """The verdicts of every line of trace chunk ``chunk``, in line order, at once (atomic and fsync'd)."""
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        write_bytes_atomic(self.path(chunk, checks), data)

    def chunks(self, checks: str) -> set[str]:
        """The trace chunks that have verdicts under ``checks``."""
        suffix = f".{checks}.jsonl"
        return {p.name[: -len(suffix)] for p in self.folder.glob(f"*{suffix}")}

    def load(self, checks: str, chunks: set[str] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        """(chunk, line) -> verdict, for every chunk (or those in ``chunks``) verified under ``checks``."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for chunk in sorted(self.chunks(checks) if chunks is None else chunks & self.chunks(checks)):
            for line, row in enumerate(self._rows(self.path(chunk, checks))):
                out[(chunk, line)] = row
        return out

    def verifier_checks(self, verifier: str) -> dict[tuple[str, int], dict[str, Any]]:
        """(chunk, line) -> verdict holding a verifier check made by ``verifier``, under any quality settings."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for path in sorted(self.folder.glob("*.jsonl")):
            chunk = path.name.split(".", 1)[0]
            for line, row in enumerate(self._rows(path)):
                if row.get("verifier") == verifier and row.get("status") is not None:
                    out.setdefault((chunk, line), row)
        return out

    @staticmethod
    def _rows(path: Path) -> Iterator[dict[str, Any]]:
        with open(path, encoding="utf-8") as fh:
            for text in fh:
                if text.strip():
                    yield json.loads(text)


def checks_for_view(sample_dir: Path, filter_cfg: Any, traces: list[Any]) -> dict[tuple[str, int], Any]:
    """The verifier's checks made while sampling for the run's view (``sample/store_refs.json``), by
    (problem id, sample index): only those made by this verifier version against the trace's reference."""
    from distill.filter.verify import Check

    refs_path = Path(sample_dir) / "store_refs.json"
    if not refs_path.is_file():
        return {}
    refs = json.loads(refs_path.read_text(encoding="utf-8"))
    verdicts_dir = Path(refs["store"]) / "verdicts"
    if not verdicts_dir.is_dir():
        return {}
    made = VerdictStore(Path(refs["store"])).verifier_checks(verifier_version(filter_cfg))
    where = {(row[0], row[1]): (row[3], row[4]) for row in refs["rows"]}
    out: dict[tuple[str, int], Any] = {}
    for trace in traces:
        row = made.get(where.get(trace.key, ("", -1)))
        if row is not None and row.get("ref") == reference_digest(trace.kind, trace.reference):
            out[trace.key] = Check(row["status"] == "correct", row.get("extracted") or "", row["status"],
                                   row.get("detail") or "")
    return out
