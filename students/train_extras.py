"""What rides along the train stage beside the training loop: the experiment trackers (``student.report_to``),
the checkpoint pushes (``student.push_checkpoints``) and the checkpoint evaluations (``eval.on_checkpoints``).

Each is a TrainerCallback handed to :func:`distill.students.trainer.train_sft`; none makes the loop wait
(pushes run in a background thread, evaluations in their own processes or Slurm jobs).  Their settings are
operational: they change no trained weight, so the train stage's fingerprint leaves them out
(:data:`OPERATIONAL_KEYS`) and turning one on re-trains nothing.
"""

from __future__ import annotations

import json
from typing import Any

from distill.errors import UserError

OPERATIONAL_KEYS = ("report_to", "push_checkpoints")


def check_train_extras(config: Any) -> None:
    """A tracker that is not installed, or checkpoint pushes with nowhere to go: one line before anything runs."""
    from distill.students.tracking import check_trackers

    check_trackers(config.student.report_to)
    if config.student.push_checkpoints and not config.hub.repo_id:
        raise UserError("student.push_checkpoints: set hub.repo_id (the checkpoints go to its step-<N> branches), "
                        "or turn student.push_checkpoints off")


def train_callbacks(ctx: Any) -> list[Any]:
    """The callbacks this config asks for; a missing Hub token for checkpoint pushes is refused here, before
    the first step, not at the first save."""
    cfg = ctx.config
    train_dir = ctx.out("train")
    callbacks: list[Any] = []
    if cfg.student.report_to:
        from distill.students.tracking import tracking_callback

        funnel_file = ctx.store.stage_dir("filter") / "funnel.json"
        funnel = json.loads(funnel_file.read_text()).get("funnel", {}) if funnel_file.is_file() else {}
        callbacks.append(tracking_callback(cfg.student.report_to, train_dir, cfg.model_dump(mode="json"), funnel))
    consumers: list[Any] = []
    if cfg.student.push_checkpoints:
        from distill.publish import hub
        from distill.students.checkpoint_push import CheckpointPusher

        token = hub.resolve_token(cfg.hub.token_env)
        if not token:
            raise UserError(f"student.push_checkpoints: no Hub token in ${cfg.hub.token_env} or the Hub login; set "
                            "it, or turn student.push_checkpoints off")
        consumers.append(CheckpointPusher(cfg.hub.repo_id, token, cfg.hub.private, train_dir))
    if cfg.eval.on_checkpoints.enabled:
        from distill.eval.checkpoints import CheckpointEvaluator

        consumers.append(CheckpointEvaluator(cfg, train_dir))
    if consumers:
        from distill.students.checkpoint_push import handoff_callback

        callbacks.append(handoff_callback(consumers))
    return callbacks
