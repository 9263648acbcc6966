"""Supervised fine-tuning through TRL's SFTTrainer, resumable after a crash.

Training examples are conversational prompt/completion pairs, so TRL masks the
prompt and trains only the assistant turn -- reasoning, answer and the
end-of-turn (EOS) token -- rendered by the tokenizer's own chat template.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainSettings:
    """The knobs of one SFT run (a subset of ``trl.SFTConfig`` with safe defaults)."""

    method: str = "full"  # full | lora | qlora
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 4096
    packing: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    max_nonfinite_steps: int = 3
    chat_template: str = "auto"  # auto | tokenizer | chatml | llama3 | r1_distill (see students.templates)


@dataclass
class TrainResult:
    model_dir: Path
    steps: int
    losses: list[tuple[int, float]]
    resumed_from: str | None
    train_examples: int


def latest_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` whose trainer state was written (the Trainer writes it last)."""
    if not checkpoint_dir.is_dir():
        return None
    candidates = []
    for child in checkpoint_dir.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            candidates.append((int(match.group(1)), child))
    for _, path in sorted(candidates, reverse=True):
        state = path / "trainer_state.json"
        try:
            json.loads(state.read_text())
        except (OSError, ValueError):
            log.warning("ignoring incomplete checkpoint %s", path)
            continue
        return path
    return None


def to_training_example(prompt: list[dict[str, str]], reasoning: str, answer: str) -> dict[str, Any]:
    """One conversational prompt/completion pair; the assistant turn keeps the think block."""
    content = f"<think>\n{reasoning.strip()}\n</think>\n\n{answer.strip()}"
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": content}]}


def train_sft(
    model_or_path: Any,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    output_dir: Path,
    settings: TrainSettings,
    on_log: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fine-tune and save the final model (merged if LoRA) to ``output_dir/model``.

    Checkpoints go to ``output_dir/checkpoints``; if one is complete there, training
    resumes from it, so a killed run repeats at most ``save_steps`` steps.
    """
    from transformers import TrainerCallback

    if not examples:
        raise ValueError("no training examples")
    checkpoint_dir = output_dir / "checkpoints"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resume = latest_complete_checkpoint(checkpoint_dir)
    guard = _NonFiniteGuard(settings.max_nonfinite_steps)

    class _Relay(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if on_log and logs:
                on_log(state.global_step, state.max_steps, {k: float(v) for k, v in logs.items() if _is_num(v)})

    trainer = build_trainer(model_or_path, tokenizer, examples, checkpoint_dir, settings,
                            callbacks=[_Relay(), guard.callback()])
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if guard.tripped:
        raise NonFiniteLossError(guard.message(latest_complete_checkpoint(checkpoint_dir)))

    model_dir = output_dir / "model"
    _save_final(trainer, tokenizer, model_dir)
    # The trainer state carries the loss history from before a resume too.
    losses = [(e["step"], float(e["loss"])) for e in trainer.state.log_history if "loss" in e and "step" in e]
    return TrainResult(
        model_dir=model_dir,
        steps=trainer.state.global_step,
        losses=losses,
        resumed_from=str(resume) if resume else None,
        train_examples=len(examples),
    )


def build_trainer(model_or_path: Any, tokenizer: Any, examples: list[dict[str, Any]], checkpoint_dir: Path,
                  settings: TrainSettings, callbacks: list | None = None):
    """An ``SFTTrainer`` over conversational prompt/completion examples (prompt masked from the loss)."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    from students.templates import apply_training_template

    # The template may change EOS to the end-of-turn token, so it goes before the pad check.
    apply_training_template(tokenizer, settings.chat_template)
    ensure_distinct_pad(tokenizer)
    model = _load_model(model_or_path, settings)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    steps_per_epoch = math.ceil(len(examples) / (settings.batch_size * settings.grad_accum))
    total_steps = settings.max_steps if settings.max_steps > 0 else math.ceil(steps_per_epoch * settings.epochs)
    args = SFTConfig(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=int(settings.warmup_ratio * total_steps),
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length,
        packing=settings.packing,
        gradient_checkpointing=settings.gradient_checkpointing,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
        eos_token=tokenizer.eos_token,
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=_peft_config(settings),
        callbacks=callbacks or [],
    )
    for noisy in (PrinterCallback, ProgressCallback):  # library code never prints; logs go to callbacks
        trainer.remove_callback(noisy)
    return trainer


PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|endoftext|>", "<|fim_pad|>", "<pad>", "<|pad|>")


def ensure_distinct_pad(tokenizer: Any) -> None:
    """Make the pad token differ from EOS: with pad = eos the collator masks EOS and students never stop.

    Uses a reserved pad token when the vocabulary has one (Llama 3.1's
    ``<|finetune_right_pad_id|>``, Qwen's ``<|endoftext|>``), else adds ``<|pad|>``.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    for candidate in PAD_CANDIDATES:
        if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            log.info("pad token set to %s (distinct from eos %s)", candidate, tokenizer.eos_token)
            return
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    log.info("added pad token <|pad|> (distinct from eos %s)", tokenizer.eos_token)


class NonFiniteLossError(RuntimeError):
    """Loss or gradient norm stayed NaN/inf for several steps in a row."""


class _NonFiniteGuard:
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
                bad = any(v is not None and _is_num(v) and not math.isfinite(float(v)) for v in values)
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


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _load_model(model_or_path: Any, settings: TrainSettings):
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if settings.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    return AutoModelForCausalLM.from_pretrained(str(model_or_path), **kwargs)


def _peft_config(settings: TrainSettings):
    if settings.method == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def _save_final(trainer, tokenizer, model_dir: Path) -> None:
    """Save the final model, merging LoRA adapters into the base so every consumer can load it."""
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
