"""What stops a training run early, and what it then says: non-finite losses and running out of memory.

Both turn a failure deep inside the Trainer into one readable error: a loss that diverged stops
before it is checkpointed, and an out-of-memory error lists configurations that would fit.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

from distill.students.train_settings import TrainSettings

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Loss or gradient norm stayed NaN/inf for several steps in a row."""


class NonFiniteGuard:
    """Counts logged steps whose loss or gradient norm is NaN/inf and stops training after ``limit`` in a row."""

    def __init__(self, limit: int):
        self.limit = limit
        self.streak = 0
        self.tripped = False
        self.step = 0

    def callback(self):
        from transformers import TrainerCallback

        guard = self

        class _Guard(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if not logs:
                    return
                values = [logs.get("loss"), logs.get("grad_norm")]
                bad = any(v is not None and is_number(v) and not math.isfinite(float(v)) for v in values)
                guard.streak = guard.streak + 1 if bad else 0
                if bad:  # never checkpoint diverged weights: the last good checkpoint must stay the newest
                    control.should_save = False
                if guard.streak >= guard.limit:
                    guard.tripped = True
                    guard.step = state.global_step
                    control.should_training_stop = True
                    control.should_save = False

        return _Guard()

    def message(self, last_good: Path | None) -> str:
        where = f"; last good checkpoint kept at {last_good}" if last_good else ""
        return (
            f"training stopped at step {self.step}: loss or gradient norm was not finite for "
            f"{self.limit} logged steps in a row (try a lower learning_rate){where}"
        )


def is_number(value: Any) -> bool:
    """A real number in the Trainer's logs (not a bool, not a string such as a learning-rate schedule name)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TrainingOutOfMemoryError(RuntimeError):
    """The GPU (or host) ran out of memory; the message lists configurations that would fit."""


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "CUDA" in str(exc))


def default_remedies(settings: TrainSettings) -> list[str]:
    """Changes that cut memory, for when no plan of the model is available."""
    out = []
    if not settings.gradient_checkpointing:
        out.append("student.gradient_checkpointing: true")
    if settings.batch_size > 1:
        out.append(f"student.batch_size: 1 (and grad_accum x{settings.batch_size})")
    if settings.method == "full":
        out += ["student.method: lora", "student.method: qlora"]
    elif settings.method == "lora":
        out.append("student.method: qlora")
    out += ["more GPUs with sharded states (configs/accelerate/zero3.yaml), or CPU offload "
            "(configs/accelerate/zero3-offload.yaml)",
            f"student.max_length: {max(1024, settings.max_length // 2)}"]
    if not settings.use_liger_kernel:
        out.append("student.use_liger_kernel: true (fused loss, no full logits; GPU with liger-kernel)")
    return out


def oom_message(exc: BaseException, step: int, settings: TrainSettings,
                remedies: Callable[[], list[str]] | None) -> str:
    """One readable message: where memory ran out, and what would fit instead."""
    where = "while loading the model" if step < 0 else ("at the first step" if step == 0 else f"at step {step}")
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    try:
        advice = remedies() if remedies else []
    except Exception as err:  # noqa: BLE001 -- advice is best effort; the OOM is the news
        log.warning("could not compute the plan's remedies: %s", err)
        advice = []
    source = "what `distill plan` says would fit" if advice else "ways to need less memory"
    advice = advice or default_remedies(settings)
    lines = [f"out of memory {where} (max_length {settings.max_length}, batch_size {settings.batch_size}, "
             f"method {settings.method}): {detail}", f"{source}:"] + [f"  - {a}" for a in advice]
    lines.append("see `distill plan CONFIG` for the per-GPU memory breakdown")
    return "\n".join(lines)


class StepTracker:
    """The last step the trainer began (-1 before training starts), for the out-of-memory message."""

    def __init__(self):
        self.step = -1

    def callback(self):
        from transformers import TrainerCallback

        tracker = self

        class _Track(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                tracker.step = state.global_step

            def on_step_begin(self, args, state, control, **kwargs):
                tracker.step = state.global_step

        return _Track()
