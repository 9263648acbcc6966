"""Checkpoints evaluated as they are saved, beside training (``eval.on_checkpoints``): pass@1 against step.

The train stage hands each saved checkpoint (every ``every``-th) to :class:`CheckpointEvaluator`, which
snapshots its model files (hard links, so the Trainer may delete the checkpoint) into
``train/checkpoint_eval/step-<N>/model`` and starts ``python -m distill.eval.checkpoint_run`` on it: a local
process of its own (``launcher: process``) or a Slurm job from ``slurm_template`` (``launcher: slurm``, the
job gets CONFIG, MODEL, STEP and OUT in its environment).  Training never waits for either.  That process
runs the eval stage's own code (:func:`distill.eval.stage.evaluate_model`: the same benchmarks, protocol and
samplers) and writes ``result.json`` (benchmark -> summary) beside the snapshot, then deletes the snapshot.

The eval stage collects the results keyed by step (:func:`collect_results`: it waits for local processes
still running; a Slurm job still queued is listed as pending, and ``distill report`` shows it once done).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.store import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

CHECKPOINT_EVAL_DIR = "checkpoint_eval"
RESULT, FAILED, LAUNCH = "result.json", "failed.json", "launch.json"


def checkpoint_eval_dir(train_dir: Path) -> Path:
    return Path(train_dir) / CHECKPOINT_EVAL_DIR


class CheckpointEvaluator:
    """Starts one evaluation per ``every``-th saved checkpoint; ``saved`` returns as soon as it is started."""

    def __init__(self, config: Any, train_dir: Path):
        from distill.config import dump_config

        self.settings = config.eval.on_checkpoints
        self.root = checkpoint_eval_dir(train_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path = self.root / "config.yaml"  # the child reads the run's config as this process has it
        write_bytes_atomic(self.config_path, dump_config(config).encode("utf-8"))  # every rank of a launch writes it
        self.saves = 0
        self.processes: list[subprocess.Popen] = []

    def saved(self, step: int, checkpoint: Path) -> None:
        from distill.students.checkpoint_push import snapshot_model

        self.saves += 1
        out = self.root / f"step-{step}"
        if self.saves % self.settings.every or (out / RESULT).is_file():
            return
        model = snapshot_model(checkpoint, out / "model")
        if model is None:
            return
        for stale in (FAILED, LAUNCH):
            (out / stale).unlink(missing_ok=True)
        command = [sys.executable, "-m", "distill.eval.checkpoint_run", "--config", str(self.config_path),
                   "--model", str(model), "--step", str(step), "--out", str(out)]
        if self.settings.launcher == "slurm":
            launch = _submit_slurm(self.settings.slurm_template, {"CONFIG": str(self.config_path), "MODEL": str(model),
                                                                  "STEP": str(step), "OUT": str(out)})
        else:
            with open(out / "eval.log", "ab") as logfile:
                process = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
            self.processes.append(process)
            launch = {"launcher": "process", "pid": process.pid}
        write_json_atomic(out / LAUNCH, {**launch, "step": step})
        log.info("checkpoint at step %d: evaluation started (%s)", step, launch)

    def finish(self) -> None:
        """Nothing to wait for: the eval stage collects the results (training is done, evaluations go on)."""
        return None


def protocol_key(config: Any) -> dict[str, Any]:
    """The eval settings a checkpoint's result was made with (which models the stage evaluates aside): a result
    made under other settings is not comparable with the stage's own, and is left out as stale."""
    section = config.section("eval")
    for key in ("models", "extra_models", "on_checkpoints", "max_verifier_failure_share", "budget_sweep"):
        section.pop(key, None)
    return section


def check_checkpoint_eval(config: Any) -> None:
    """``eval.on_checkpoints`` that cannot work is a one-line error before training starts."""
    settings = config.eval.on_checkpoints
    if not settings.enabled:
        return
    if config.eval.backend == "openai":
        raise UserError("eval.on_checkpoints: checkpoints are local folders; set eval.backend to transformers or "
                        "vllm, or turn eval.on_checkpoints off")
    if settings.launcher == "slurm":
        if not Path(settings.slurm_template).is_file():
            raise UserError(f"eval.on_checkpoints.slurm_template: file not found: {settings.slurm_template} (e.g. "
                            "configs/launchers/eval-checkpoint.sbatch)")
        if shutil.which("sbatch") is None:
            raise UserError("eval.on_checkpoints.launcher is slurm but sbatch is not on PATH here; run on a Slurm "
                            "login node or use launcher: process")


def finish_checkpoint_evals(ctx: Any, grid: dict[str, Any], primary: str) -> dict[str, Any]:
    """After the eval stage: the checkpoints' results keyed by step (``eval/checkpoints.json``), and every eval
    result logged into the train stage's tracker runs (``student.report_to``): the models at the final step,
    each checkpoint at its own.  Returns the stage's counts for them."""
    from distill.students.tracking import log_eval_results

    train_dir = ctx.store.stage_dir("train")
    counts: dict[str, Any] = {}
    collected = collect_results(train_dir) if checkpoint_eval_dir(train_dir).is_dir() else None
    if collected:
        current = json.loads(json.dumps(protocol_key(ctx.config)))
        stale = [step for step in collected["steps"] if _result_protocol(train_dir, step) != current]
        for step in stale:
            del collected["steps"][step]
        collected["stale"] = stale
    if collected and any(collected.values()):
        write_json_atomic(ctx.out("eval") / "checkpoints.json", collected)
        counts["checkpoints"] = {str(step): per.get(primary, {}).get("pass_at_1")
                                 for step, per in collected["steps"].items()}
        counts["checkpoints_pending"], counts["checkpoints_failed"] = collected["pending"], collected["failed"]
    if not ctx.config.student.report_to:
        return counts
    final_step = int(ctx.store.entry("train").get("counts", {}).get("steps") or 0)
    log_eval_results(train_dir, {f"eval/{bench}/{label}/pass_at_1": float(s["pass_at_1"])
                                 for label, per in grid.items() for bench, s in per.items()}, final_step)
    for step, per in (collected or {}).get("steps", {}).items():
        log_eval_results(train_dir, {f"checkpoint_eval/{bench}/pass_at_1": float(s["pass_at_1"])
                                     for bench, s in per.items()}, int(step))
    return counts


def _result_protocol(train_dir: Path, step: int) -> Any:
    return json.loads((checkpoint_eval_dir(train_dir) / f"step-{step}" / RESULT).read_text()).get("protocol")


def _submit_slurm(template: Path, job: dict[str, str]) -> dict[str, Any]:
    """``sbatch`` the template with the evaluation (CONFIG, MODEL, STEP, OUT) in its environment; the job id."""
    env = {**os.environ, **job, "DISTILL_PYTHON": sys.executable}
    done = subprocess.run(["sbatch", "--parsable", f"--job-name=distill-eval-step-{job['STEP']}",
                           f"--output={Path(job['OUT']) / 'eval.log'}", "--export=ALL", str(template)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UserError(f"eval.on_checkpoints: sbatch {template} failed: {done.stderr.strip() or done.stdout.strip()}")
    return {"launcher": "slurm", "job_id": done.stdout.strip().split(";")[0]}


def collect_results(train_dir: Path, wait: bool = True, poll_s: float = 0.5) -> dict[str, Any]:
    """``{"steps": {step: benchmark -> summary}, "pending": [...], "failed": {step: error}}`` for every
    checkpoint evaluation started; with ``wait``, first waits for local evaluation processes still running."""
    root = checkpoint_eval_dir(train_dir)
    out: dict[str, Any] = {"steps": {}, "pending": [], "failed": {}}
    for folder in sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(folder.name.split("-")[1])
        launch = json.loads((folder / LAUNCH).read_text()) if (folder / LAUNCH).is_file() else {}
        while wait and launch.get("launcher") == "process" and not _finished(folder) and _alive(launch["pid"]):
            time.sleep(poll_s)
        if (folder / RESULT).is_file():
            out["steps"][step] = json.loads((folder / RESULT).read_text())["benchmarks"]
        elif (folder / FAILED).is_file():
            out["failed"][step] = json.loads((folder / FAILED).read_text())["error"]
        elif launch.get("launcher") == "slurm":
            out["pending"].append(step)
        elif launch:
            out["failed"][step] = f"the evaluation process ended without a result (see {folder / 'eval.log'})"
    return out


def _finished(folder: Path) -> bool:
    return (folder / RESULT).is_file() or (folder / FAILED).is_file()


def _alive(pid: int) -> bool:
    """Whether the process still runs (a child of this process that exited is reaped, not taken for alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:  # not our child: ask the kernel whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
