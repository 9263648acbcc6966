"""Experiment tracking: the loss through transformers' own ``report_to`` integrations, and beside it, in the
same tracker run, the run config, the filter funnel and the eval results.

Why this module and not only ``report_to``: the Trainer's callbacks log what the Trainer knows (loss,
learning rate, its arguments); the run config, the funnel and the eval results are the pipeline's.  They
are written with each tracker's own library into the run the Trainer's callback opened: TensorBoard's
``SummaryWriter`` into the same log directory, W&B/MLflow/trackio into the run whose id is recorded in
``train/tracking/runs.json`` when training starts, so the eval stage, a later process, resumes it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.store import write_json_atomic

log = logging.getLogger(__name__)

# the importable module each tracker needs: TensorBoard's package itself, because the run's config, funnel and
# eval results are written through torch.utils.tensorboard, which imports it (tensorboardX alone, which
# transformers' own callback accepts, would pass this check and fail at step 0)
_MODULES = {"tensorboard": ("tensorboard",), "wandb": ("wandb",), "trackio": ("trackio",), "mlflow": ("mlflow",)}
RUNS_FILE = "runs.json"


def tracking_dir(train_dir: Path) -> Path:
    """Where a train stage's tracker files live: TensorBoard's events and the tracker runs' ids."""
    return Path(train_dir) / "tracking"


def check_trackers(report_to: list[str]) -> None:
    """A tracker that is not installed is a one-line error before anything is spent, not a crash at step 0."""
    for name in report_to:
        if not any(importlib.util.find_spec(module) for module in _MODULES[name]):
            raise UserError(f"student.report_to: {name} is not installed; pip install {name}, or drop it "
                            "from student.report_to")


def point_trackers(trainer: Any, train_dir: Path) -> None:
    """Send the Trainer's TensorBoard events to ``train/tracking/tensorboard`` (transformers 5 dropped
    ``logging_dir``; its callback reads ``logging_dir`` when training begins)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(tracking_dir(train_dir) / "tensorboard")


def tracking_callback(report_to: list[str], train_dir: Path, run_config: dict[str, Any],
                      funnel: dict[str, int]) -> Any:
    """A TrainerCallback that, when training begins on the main process, logs the run config and the filter
    funnel to every tracker and records each tracker run's id (after the integrations opened them: the
    Trainer calls its report_to callbacks before the ones it is given)."""
    from transformers import TrainerCallback

    class _Tracking(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                runs = {name: _LOGGERS[name].begin(train_dir, run_config, funnel) for name in report_to}
                write_json_atomic(tracking_dir(train_dir) / RUNS_FILE, runs)

    return _Tracking()


def log_eval_results(train_dir: Path, scalars: dict[str, float], step: int) -> list[str]:
    """Log eval results (tag -> value) at ``step`` into the tracker runs the train stage recorded; returns the
    trackers written to (none when the train stage tracked nothing)."""
    path = tracking_dir(train_dir) / RUNS_FILE
    if not path.is_file() or not scalars:
        return []
    runs = json.loads(path.read_text())
    for name, run in runs.items():
        _LOGGERS[name].log(train_dir, run, scalars, step)
    return list(runs)


def run_config_text(run_config: dict[str, Any]) -> str:
    import yaml

    return "```yaml\n" + yaml.safe_dump(run_config, sort_keys=False) + "```"


class _TensorBoard:
    @staticmethod
    def _writer(train_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(tracking_dir(train_dir) / "tensorboard"))

    def begin(self, train_dir: Path, run_config: dict[str, Any], funnel: dict[str, int]) -> dict[str, Any]:
        writer = self._writer(train_dir)
        try:
            writer.add_text("distill/run_config", run_config_text(run_config), 0)
            for reason, count in funnel.items():
                writer.add_scalar(f"funnel/{reason}", count, 0)
        finally:
            writer.close()
        return {"log_dir": str(tracking_dir(train_dir) / "tensorboard")}

    def log(self, train_dir: Path, run: dict[str, Any], scalars: dict[str, float], step: int) -> None:
        writer = self._writer(train_dir)
        try:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
        finally:
            writer.close()


class _Wandb:
    def begin(self, train_dir: Path, run_config: dict[str, Any], funnel: dict[str, int]) -> dict[str, Any]:
        import wandb

        run = wandb.run  # opened by transformers' WandbCallback
        run.config.update({"distill": run_config}, allow_val_change=True)
        run.summary.update({f"funnel/{k}": v for k, v in funnel.items()})
        return {"id": run.id, "project": run.project, "entity": run.entity}

    def log(self, train_dir: Path, run: dict[str, Any], scalars: dict[str, float], step: int) -> None:
        import wandb

        resumed = wandb.init(id=run["id"], project=run["project"], entity=run.get("entity"), resume="allow")
        try:
            resumed.log({**scalars, "train/global_step": step})
        finally:
            resumed.finish()


class _MLflow:
    def begin(self, train_dir: Path, run_config: dict[str, Any], funnel: dict[str, int]) -> dict[str, Any]:
        import mlflow

        active = mlflow.active_run()  # opened by transformers' MLflowCallback
        mlflow.log_dict(run_config, "distill/run_config.json")
        mlflow.log_metrics({f"funnel/{k}": float(v) for k, v in funnel.items()}, step=0)
        return {"run_id": active.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}

    def log(self, train_dir: Path, run: dict[str, Any], scalars: dict[str, float], step: int) -> None:
        import mlflow

        mlflow.set_tracking_uri(run["tracking_uri"])
        with mlflow.start_run(run_id=run["run_id"]):
            mlflow.log_metrics(scalars, step=step)


class _Trackio:
    def begin(self, train_dir: Path, run_config: dict[str, Any], funnel: dict[str, int]) -> dict[str, Any]:
        import trackio

        run = trackio.context_vars.current_run.get()  # opened by transformers' TrackioCallback
        trackio.log({f"funnel/{k}": v for k, v in funnel.items()})
        return {"project": run.project, "name": run.name}

    def log(self, train_dir: Path, run: dict[str, Any], scalars: dict[str, float], step: int) -> None:
        import trackio

        trackio.init(project=run["project"], name=run["name"], resume="allow")
        try:
            trackio.log(scalars, step=step)
        finally:
            trackio.finish()


_LOGGERS: dict[str, Any] = {"tensorboard": _TensorBoard(), "wandb": _Wandb(), "mlflow": _MLflow(),
                            "trackio": _Trackio()}
