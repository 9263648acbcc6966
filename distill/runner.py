"""The one stage runner: skips, begins, resumes, runs, finishes and records every stage, however it is launched.

Three launches share it: ``distill run`` (one process, every stage in order), ``accelerate
launch -m distill.students.train_entry`` (the train stage in several processes: only the main
one changes the manifest, the others wait for it), and ``distill teacher sample --shard K/N``
(one Slurm array task: it joins the sample stage without resetting it, does its share, and leaves
the stage running for ``distill run`` to finish).  Before this module each launch had its own copy
of the bookkeeping, and they had drifted apart.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from distill.errors import StageError, UserError
from distill.input_checks import check_inputs
from distill.progress import NullReporter, Reporter
from distill.stage import STAGE_HOMES, Context, Stage, StageOutcome, get_stage
from distill.store import RunStore, fingerprint

if TYPE_CHECKING:
    from distill.config import RunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    """How this process takes part in a stage.

    ``main``: this process owns the manifest (always, except the non-zero ranks of a multi-process
    launch); ``barrier``: waits for every process of the launch (after the main one has begun the
    stage); ``partition``: ``(k, n)`` for one Slurm array task of the sample stage.
    """

    main: bool = True
    barrier: Callable[[], None] = lambda: None
    partition: tuple[int, int] | None = None


ALONE = Launch()


def fingerprints(config: "RunConfig", store: RunStore | None = None) -> dict[str, str]:
    """Every stage's fingerprint: its output-deciding config (input files by content), its code version, and
    for each upstream stage its output hash once it finished with its current fingerprint, else its
    fingerprint (so a downstream fingerprint is final once its upstream stages have run)."""
    fps: dict[str, str] = {}
    for name in STAGE_HOMES:
        stage = get_stage(name)
        fps[name] = fingerprint(name, stage.version, stage.fingerprint_input(config),
                                [_upstream_identity(store, u, fps[u]) for u in stage.upstream_for(config)])
    return fps


def needed_stages(config: "RunConfig", target: str) -> set[str]:
    """``target`` and every stage it needs for this config, transitively (an eval of the teacher alone needs
    none: ``distill run --until eval`` then samples, filters and trains nothing)."""
    needed, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(get_stage(name).upstream_for(config))
    return needed


def _upstream_identity(store: RunStore | None, name: str, fp: str) -> str:
    entry = store.entry(name) if store is not None else {}
    if entry.get("status") == "done" and entry.get("fingerprint") == fp and entry.get("output_hash"):
        return entry["output_hash"]
    return fp


def check_all(config: "RunConfig", missing_ok: bool = False) -> list[str]:
    """Every stage's static checks, then the files and folders the config names (distill.input_checks),
    before the first expensive step of a run.  Returns what is missing here when ``missing_ok``
    (``distill validate``); otherwise anything missing is an error."""
    from distill.scale_checks import check_scale

    for name in STAGE_HOMES:
        get_stage(name).check(config)
    check_scale(config)  # the real models' shapes against the recipe's serving, precision, launch and export
    return check_inputs(config, missing_ok)


def run_stage(ctx: Context, name: str, fps: dict[str, str], forced: bool = False,
              launch: Launch = ALONE) -> StageOutcome | None:
    """Run one stage in this process as ``launch`` says; None when it was skipped (already done)."""
    stage, store, fp = get_stage(name), ctx.store, fps[name]
    if not forced and store.is_done(name, fp):
        ctx.reporter.stage_finished(name, store.entry(name).get("summary", ""), 0.0, skipped=True)
        log.info("stage %s skipped (fingerprint %s unchanged)", name, fp)
        return None
    _require_upstream(ctx, stage, fps)
    _begin(ctx, stage, fp, forced, launch)
    started = time.perf_counter()
    try:
        outcome = stage.run(ctx)
    except BaseException as exc:
        _record_failure(ctx, name, exc, time.perf_counter() - started, launch)
        error = _as_stage_error(ctx, name, exc)
        if error is exc:
            raise
        raise error from exc
    seconds = time.perf_counter() - started
    if launch.main and launch.partition is None:
        store.finish(name, outcome.counts, seconds, outcome.summary,
                     status="done" if outcome.final else "incomplete", output_hash=outcome.output_hash)
    ctx.reporter.stage_finished(name, outcome.summary, seconds, skipped=False)
    log.info("stage %s %s in %.1fs: %s", name, "done" if outcome.final else "incomplete", seconds, outcome.summary)
    if not outcome.final and outcome.blocking and launch.partition is None:
        run_dir = store.run_dir
        raise StageError(name, f"incomplete: {outcome.summary}", str(run_dir), str(run_dir / "logs" / "run.log"))
    return outcome


def run_in_launch(config: "RunConfig", stage: str, launch: Launch,
                  reporter: Reporter | None = None) -> dict[str, Any]:
    """One stage of a config in this process, as one of the processes of ``launch`` (an accelerate launch of
    the train stage, a Slurm array task of the sample stage); its upstream stages must be done already.
    Returns the stage's counts (the finished stage's recorded ones when it was already done)."""
    store = RunStore(config.run_dir)
    ctx = Context(config, store, reporter or NullReporter(), partition=launch.partition)
    fps = fingerprints(config, store)
    for upstream in get_stage(stage).upstream_for(config):  # an earlier version of an upstream stage may become current
        store.is_done(upstream, fps[upstream])
    outcome = run_stage(ctx, stage, fingerprints(config, store), launch=launch)
    if outcome is None:
        return {**store.entry(stage).get("counts", {}), "already_done": True,
                "summary": store.entry(stage).get("summary", "")}
    return {**outcome.counts, "summary": outcome.summary}


def _require_upstream(ctx: Context, stage: Stage, fps: dict[str, str]) -> None:
    """A stage runs only on finished inputs: in ``distill run`` they were just run; a launch of one stage
    (accelerate, a Slurm task) must find them done for this config."""
    for upstream in stage.upstream_for(ctx.config):
        if not ctx.store.is_done(upstream, fps[upstream]):
            raise UserError(f"stage {upstream} of {ctx.config.run_dir} is not done for this config: run "
                            f"`distill run CONFIG --until {upstream}` first")


def _begin(ctx: Context, stage: Stage, fp: str, forced: bool, launch: Launch) -> None:
    store = ctx.store
    if launch.partition is not None:
        _join(ctx, stage.name, fp)
        return
    ctx.reporter.stage_started(stage.name)
    if launch.main:
        ctx.resumable = store.begin(stage.name, fp, forced=forced)
        stage.prepare(ctx)
    launch.barrier()  # the other processes start once the main one has begun (and prepared) the stage
    if not launch.main:
        ctx.resumable = True
    log.info("stage %s started (fingerprint %s%s)", stage.name, fp, ", resuming" if ctx.resumable else "")


def _join(ctx: Context, name: str, fp: str) -> None:
    """One of many concurrent array tasks: refuse another config's output, register the stage once, delete
    nothing (each task commits only its own chunks, atomically)."""
    store, entry = ctx.store, ctx.store.entry(name)
    if entry.get("status") == "running" and entry.get("fingerprint") != fp:
        raise UserError(f"{ctx.config.run_dir} is sampling for a different config; finish or stop that job first, "
                        "or use another run name")
    if entry.get("fingerprint") != fp:
        from distill.config import dump_config

        (ctx.config.run_dir / "config.yaml").write_text(dump_config(ctx.config), encoding="utf-8")
    store.attach(name, fp, register=entry.get("fingerprint") != fp)
    ctx.resumable = True


def _record_failure(ctx: Context, name: str, exc: BaseException, seconds: float, launch: Launch) -> None:
    if not launch.main or launch.partition is not None:
        return  # the manifest is the main process's; an array task leaves the stage to the others
    if isinstance(exc, KeyboardInterrupt):
        ctx.store.fail(name, "interrupted", seconds)
    elif isinstance(exc, UserError):
        ctx.store.fail(name, str(exc), seconds)
    elif isinstance(exc, Exception):
        log.error("stage %s failed:\n%s", name, traceback.format_exc())
        ctx.store.fail(name, f"{type(exc).__name__}: {exc}", seconds)


def _as_stage_error(ctx: Context, name: str, exc: BaseException) -> BaseException:
    """User errors and interrupts pass through as they are; any other failure says which stage and where the log is."""
    if isinstance(exc, (UserError, KeyboardInterrupt)) or not isinstance(exc, Exception):
        return exc
    run_dir = ctx.store.run_dir
    return StageError(name, f"{type(exc).__name__}: {exc}", str(run_dir), str(run_dir / "logs" / "run.log"))
