"""The pipeline: the six stages in order, each skipped when its fingerprint is unchanged.

    sample  -> distill.teachers.stage    the teacher writes chain-of-thought traces
    filter  -> distill.filter.stage      only verified-correct, complete, clean traces are kept
    train   -> distill.students.stage    the student is fine-tuned on them
    export  -> distill.students.export.stage  4-bit exports (bitsandbytes nf4, GGUF), checked in their consumers
    eval    -> distill.eval.stage        DeepSeek's protocol on every model and benchmark
    push    -> distill.publish.stage     the Hub upload with an honest model card

Every stage runs through the one runner (:mod:`distill.runner`), whether ``distill run`` runs them
all, ``accelerate launch`` runs the train stage in several processes, or a Slurm array task samples
its share.  This module imports no stage package at module level, so ``distill --help`` stays light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from distill.config import STAGES, RunConfig, dump_config
from distill.errors import UserError
from distill.input_checks import check_inputs
from distill.progress import NullReporter, Reporter
from distill.run_lock import run_lock
from distill.runner import Launch, check_all, fingerprints, needed_stages, run_in_launch, run_stage
from distill.run_summary import build_summary
from distill.stage import Context
from distill.store import RunStore, write_json_atomic

log = logging.getLogger(__name__)


def run(config: RunConfig, until: str | None = None, force: list[str] | None = None,
        reporter: Reporter | None = None, *, static_checks: bool = True) -> dict[str, Any]:
    """Run the pipeline up to ``until`` (inclusive); ``force`` re-runs the named stages and those after them.

    ``static_checks=False`` runs the stages even when a stage's static check or a full-scale check
    (:mod:`distill.scale_checks`) refuses the config; the files it names are still checked.  Only
    ``distill rehearse`` wants that: it lists those refusals itself, then shows what each stage does at run time.
    Returns the run summary (also written to ``report.json`` in the run folder).
    """
    for name in [until, *(force or [])]:
        if name is not None and name not in STAGES:
            raise UserError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    if static_checks:
        check_all(config)  # every input checked before the first expensive step
    else:
        check_inputs(config)
    with run_lock(config.run_dir, exclusive=True):  # a second `distill run` here is refused, not interleaved
        return _run_locked(config, until, force, reporter)


def _run_locked(config: RunConfig, until: str | None, force: list[str] | None,
                reporter: Reporter | None) -> dict[str, Any]:
    """The run, with the run folder held: the manifest is read only once nobody else can change it."""
    store = RunStore(config.run_dir)
    (config.run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    store.record_environment()
    handler = _attach_log(config.run_dir / "logs" / "run.log")
    try:
        forced_from = min((STAGES.index(s) for s in force or []), default=len(STAGES))
        last = STAGES.index(until) if until else len(STAGES) - 1
        ctx = Context(config, store, reporter or NullReporter())
        needed = needed_stages(config, STAGES[last])  # an eval of the teacher alone trains nothing
        for i, stage in enumerate(STAGES[: last + 1]):  # fingerprints again after each stage: its output counts
            if stage in needed:
                run_stage(ctx, stage, fingerprints(config, store), forced=i >= forced_from)
        summary = build_summary(config.name, store)
        write_json_atomic(config.run_dir / "report.json", summary)
        return summary
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def sample_partition(config: RunConfig, shard_index: int = 0, num_shards: int = 1,
                     reporter: Reporter | None = None) -> dict[str, Any]:
    """Sample the chunks ``i % num_shards == shard_index`` of a run's sample stage (one Slurm array task).

    Many such processes may run at once on a shared run folder: each commits only its own chunks,
    atomically, and none deletes anything; they share the folder's lock, which a ``distill run`` needs
    alone.  The stage is left ``running`` with this config's fingerprint, so a later ``distill run``
    resumes it, finds every chunk committed and only checks and summarises.
    """
    if not 0 <= shard_index < num_shards:
        raise UserError(f"--shard {shard_index}/{num_shards}: the index must be in 0..{num_shards - 1}")
    check_all(config)  # every input checked before this task spends anything
    with run_lock(config.run_dir, exclusive=False):  # beside other array tasks, never beside a `distill run`
        info = run_in_launch(config, "sample", Launch(partition=(shard_index, num_shards)), reporter)
    if info.get("already_done"):
        return {"shards": info.get("shards"), "sampled_shards": 0, "already_done": True}
    return info


def _attach_log(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler
