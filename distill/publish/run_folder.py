"""Forgiving, read-only access to one run folder's files, for the run report.

Why forgiving: a report is wanted most when a run went wrong, so nothing here
validates the config or insists on a stage having finished; the section
builders decide what a missing or unreadable file means for their section.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from distill.publish.report_model import NOT_RUN, Section

log = logging.getLogger(__name__)

__all__ = ["RunFolder", "load_json", "stage_note"]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class RunFolder:
    """Lazy, forgiving access to one run folder's files."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.manifest: dict[str, Any] = load_json(run_dir / "manifest.json")
        self.stages: dict[str, Any] = self.manifest.get("stages") or {}
        self._config: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config.yaml as plain data (not validated: an old run must still report)."""
        if self._config is None:
            self._config = {}
            path = self.dir / "config.yaml"
            if path.is_file():
                try:
                    import yaml

                    self._config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                except Exception as exc:  # noqa: BLE001 - a broken config.yaml must not stop the report
                    log.warning("report: cannot read %s: %s", path, exc)
        return self._config

    def cfg(self, *keys: str, default: Any = None) -> Any:
        """The config value at ``keys`` (``cfg("student", "model")``), or ``default`` where any level is missing."""
        node: Any = self.config
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return node

    def status(self, stage: str) -> str:
        return str(self.stages.get(stage, {}).get("status") or NOT_RUN)

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)


def stage_note(run: RunFolder, section: Section, stage: str) -> None:
    """Say so when the files shown come from a stage that is not ``done`` (a crash, a run in progress)."""
    status = run.status(stage)
    if status != "done":
        section.status = "partial"
        section.note(f"stage {stage} is '{status}': what is shown here may be incomplete or stale.", "warn")
