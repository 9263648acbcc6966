"""The knobs of one SFT run, and how they come from the ``student`` section of a run config.

``distill.students.trainer`` re-exports both names; the settings live apart so the pipeline,
the pre-flight check and ``train_entry`` can build them without importing the trainer's code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainSettings:
    """The knobs of one SFT run (a subset of ``trl.SFTConfig`` with safe defaults)."""

    method: str = "full"  # full | lora | qlora
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"  # cosine | cosine_with_min_lr | linear | constant | constant_with_warmup
    min_lr_rate: float = 0.1  # cosine_with_min_lr: the floor as a share of the peak lr (Open-R1: 0.1)
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 4096
    packing: bool = False  # TRL's BFD packing: padding-free rows, attention kept inside each sequence
    padding_free: bool = False  # no packing, but each batch concatenated without pad tokens
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32 (see distill.students.precision)
    use_liger_kernel: bool = False  # applied only when liger_kernel is installed and a CUDA GPU is used
    attention: str = "auto"  # auto | flash_attention_2 | sdpa | eager (see distill.students.precision.choose_attention)
    rope: dict[str, Any] | None = None  # {theta, max_position_embeddings, scaling} (see distill.students.rope)
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    max_nonfinite_steps: int = 3
    chat_template: str = "auto"  # auto | tokenizer | chatml | llama3 | r1_distill (see distill.students.templates)
    data_order: str = "random"  # random (seeded) | sequential; the same seed gives the same order on resume
    report_to: list[str] = field(default_factory=list)  # transformers' trackers: tensorboard | wandb | trackio | mlflow


def train_settings_from_config(student: Any) -> TrainSettings:
    """The trainer's settings from the ``student`` config section: every TrainSettings field the section
    has, by name, so a new training knob needs no copy line here."""
    section = student.model_dump()
    values = {f.name: section[f.name] for f in dataclasses.fields(TrainSettings) if f.name in section}
    values["lora_target_modules"] = list(values["lora_target_modules"])
    values["report_to"] = list(values.get("report_to") or [])
    return TrainSettings(**values)
