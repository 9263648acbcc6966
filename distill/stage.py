"""What a stage is: the contract every stage package fulfils, and the context it runs in.

Each stage lives in its own package with one entry point, ``stage.py``, which defines an
object satisfying :class:`Stage`: sample in ``distill.teachers.stage``, filter in
``distill.filter.stage``, train in ``distill.students.stage`` and export in
``distill.students.export.stage``, eval in
``distill.eval.stage``, push in ``distill.publish.stage``.  The core (this module, the
runner, the pipeline) names them only in :data:`STAGE_HOMES` and imports them lazily, so
``distill --help`` and config checks stay free of torch and vLLM, and no stage imports the
pipeline.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from distill.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from distill.config import RunConfig
    from distill.records import Problem
    from distill.store import RunStore

# stage name -> the module defining it and the attribute holding its Stage object, in run order
STAGE_HOMES: dict[str, tuple[str, str]] = {
    "sample": ("distill.teachers.stage", "SAMPLE"),
    "filter": ("distill.filter.stage", "FILTER"),
    "train": ("distill.students.stage", "TRAIN"),
    "export": ("distill.students.export.stage", "EXPORT"),
    "eval": ("distill.eval.stage", "EVAL"),
    "push": ("distill.publish.stage", "PUSH"),
}


@dataclass
class Context:
    """One run's shared state while its stages run: the config, the run folder, progress, and a per-run cache
    (problems read once, the teacher's folder found once) so stages never recompute each other's inputs."""

    config: "RunConfig"
    store: "RunStore"
    reporter: Reporter = field(default_factory=NullReporter)
    resumable: bool = False
    partition: tuple[int, int] | None = None  # (k, n): a Slurm array task owns the chunks i % n == k
    cache: dict[str, Any] = field(default_factory=dict)

    def out(self, stage: str) -> Path:
        return self.store.stage_dir(stage)

    def problems(self) -> tuple[list["Problem"], list["Problem"]]:
        """The run's (train, held-out) problems, built or read once per run and shared by the stages."""
        if "problems" not in self.cache:
            from distill.problems import problem_sets

            train, heldout = problem_sets(self.config)
            if self.config.teacher.kind == "dataset":  # published traces bring their own training problems
                from distill.teachers.backends.trace_dataset import load_trace_dataset

                train, self.cache["dataset_traces"] = load_trace_dataset(self.config.teacher.dataset.model_dump())
            self.cache["problems"] = (train, heldout)
        return self.cache["problems"]


@dataclass
class StageOutcome:
    """What a stage reports: counts for the manifest, and one line for people.  ``final`` is False when the
    stage's work is not all done (one Slurm array task's share; failed samples to retry; a push without a
    token): it is recorded ``incomplete``, not ``done``, so the next run does it again.  ``blocking``: the
    stages after it cannot run on it (failed samples), so the run stops there with the summary as error.
    ``output_hash`` stands for the stage in the fingerprints of the stages after it: a re-run that writes
    the same output (a batch-size change re-reads every trace from the store) re-runs nothing downstream."""

    counts: dict[str, Any]
    summary: str
    final: bool = True
    blocking: bool = True
    output_hash: str | None = None  # the content of what the stage wrote, when cheap to hash (traces, kept set)


class Stage(Protocol):
    """A pipeline stage: its name, the config section it reads, what its output depends on, and how to run it.

    ``upstream_for(config)`` is the part of ``upstream`` a config needs (the runner runs, fingerprints and
    requires only those).  ``fingerprint_input`` returns the config values that change the stage's output (operational settings
    such as batch sizes and endpoints left out); the runner hashes it with ``version`` (bump it when the
    code changes what the stage writes) and the upstream stages' fingerprints.  ``check`` runs before any
    stage of the run starts (a misspelt benchmark must fail before hours of sampling); ``prepare`` runs
    once, in the main process, before every process of a multi-process launch runs ``run``.
    """

    name: str
    section: str
    version: str
    upstream: tuple[str, ...]

    def upstream_for(self, config: "RunConfig") -> tuple[str, ...]: ...

    def fingerprint_input(self, config: "RunConfig") -> dict[str, Any]: ...

    def check(self, config: "RunConfig") -> None: ...

    def prepare(self, ctx: Context) -> None: ...

    def run(self, ctx: Context) -> StageOutcome: ...


class StageBase:
    """Defaults for the optional parts of :class:`Stage` (no static check, nothing to prepare)."""

    name = ""
    section = ""
    version = "1"
    upstream: tuple[str, ...] = ()

    def upstream_for(self, config: "RunConfig") -> tuple[str, ...]:
        """The upstream stages this config needs (``upstream`` unless a stage narrows it: an eval of the
        teacher alone needs no trained student, so nothing is sampled, filtered or trained for it)."""
        return self.upstream

    def fingerprint_input(self, config: "RunConfig") -> dict[str, Any]:
        return {self.section: config.section(self.section)}

    def check(self, config: "RunConfig") -> None:
        return None

    def prepare(self, ctx: Context) -> None:
        return None

    def __repr__(self) -> str:
        return f"<stage {self.name} v{self.version}>"


def get_stage(name: str) -> Stage:
    """The Stage object for ``name`` (its package imported on first use)."""
    module, attribute = STAGE_HOMES[name]
    return getattr(importlib.import_module(module), attribute)
