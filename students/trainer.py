"""Supervised fine-tuning through TRL's SFTTrainer, resumable after a crash.

Training examples are conversational prompt/completion pairs, so TRL masks the
prompt and trains only the assistant turn -- reasoning, answer and the
end-of-turn (EOS) token -- rendered by the tokenizer's own chat template.

This module builds the trainer and runs the loop; the settings (``train_settings``), the
early stops and their messages (``train_guards``) and checkpoints and the final save
(``train_save``) live beside it, and every name imported from here before stays importable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from distill.students.train_guards import (NonFiniteGuard, NonFiniteLossError, StepTracker,
                                           TrainingOutOfMemoryError, default_remedies, is_number,
                                           is_out_of_memory, oom_message)
from distill.students.train_save import CHECKPOINT_RE, latest_complete_checkpoint, save_final_model, sharding_label
from distill.students.train_settings import TrainSettings, train_settings_from_config

__all__ = [
    "TrainSettings", "train_settings_from_config", "TrainResult", "to_training_example", "train_sft",
    "build_trainer", "ensure_distinct_pad", "PAD_CANDIDATES", "TrainingOutOfMemoryError", "NonFiniteLossError",
    "is_out_of_memory", "default_remedies", "oom_message", "CHECKPOINT_RE", "latest_complete_checkpoint",
    "save_final_model",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run reports: where the model is, the steps and losses, and whether it resumed."""

    model_dir: Path
    steps: int
    losses: list[tuple[int, float]]
    resumed_from: str | None
    train_examples: int


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
    remedies: Callable[[], list[str]] | None = None,
    callbacks: list | None = None,
) -> TrainResult:
    """Fine-tune and save the final model (merged if LoRA) to ``output_dir/model``.

    Checkpoints go to ``output_dir/checkpoints``; if one is complete there, training
    resumes from it, so a killed run repeats at most ``save_steps`` steps. Under
    ``accelerate launch`` every process runs this; only the main one writes the model.
    Running out of memory raises :class:`TrainingOutOfMemoryError` listing ``remedies()``
    (the pipeline passes ``distill plan``'s advice) instead of a bare CUDA traceback.
    ``callbacks``: more TrainerCallbacks (tracking, checkpoint pushes and evaluations); the trackers of
    ``settings.report_to`` write under ``output_dir/tracking``.
    """
    from transformers import TrainerCallback

    if not examples:
        raise ValueError("no training examples")
    checkpoint_dir = output_dir / "checkpoints"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resume = latest_complete_checkpoint(checkpoint_dir)
    guard = NonFiniteGuard(settings.max_nonfinite_steps)

    class _Relay(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if on_log and logs:
                on_log(state.global_step, state.max_steps, {k: float(v) for k, v in logs.items() if is_number(v)})

    step = StepTracker()
    try:
        trainer = build_trainer(model_or_path, tokenizer, examples, checkpoint_dir, settings,
                                callbacks=[_Relay(), guard.callback(), step.callback(), *(callbacks or [])])
        if settings.report_to:
            from distill.students.tracking import point_trackers

            point_trackers(trainer, output_dir)
        log.info("training with world_size %d (processes), %s, %s precision, %d examples",
                 trainer.args.world_size, sharding_label(trainer), _precision_label(trainer.args), len(examples))
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except BaseException as exc:  # noqa: BLE001 -- only memory errors are translated, the rest re-raised
        if not is_out_of_memory(exc):
            raise
        raise TrainingOutOfMemoryError(oom_message(exc, step.step, settings, remedies)) from exc
    if guard.tripped:
        raise NonFiniteLossError(guard.message(latest_complete_checkpoint(checkpoint_dir)))

    model_dir = output_dir / "model"
    save_final_model(trainer, tokenizer, model_dir, model_or_path, settings)
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
    from trl import SFTTrainer

    from distill.students.precision import resolve_precision
    from distill.students.templates import apply_training_template

    precision = resolve_precision(settings.dtype, settings.method)  # before loading: a bad dtype fails fast
    attention = None  # a given module keeps its own kernel
    if isinstance(model_or_path, (str, Path)):
        from distill.students.precision import choose_attention

        attention = choose_attention(settings.attention, precision.name)  # likewise a kernel that cannot run
    # The template may change EOS to the end-of-turn token, so it goes before the pad check.
    apply_training_template(tokenizer, settings.chat_template)
    ensure_distinct_pad(tokenizer)
    args = _sft_config(settings, checkpoint_dir, precision, tokenizer)  # first: see _sft_config
    model = _load_model(model_or_path, settings, precision, attention)
    # num_embeddings, not weight.shape: under ZeRO-3 the weight is an empty placeholder (shape 0), which
    # would "resize" the vocabulary down to the tokenizer's length
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if settings.rope:
        from distill.students.rope import apply_rope

        apply_rope(model, **settings.rope)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and settings.max_length > positions:
        log.warning("max_length %d exceeds the model's %d positions: set student.rope (e.g. theta 300000, "
                    "max_position_embeddings %d) so long traces stay in the positions it knows",
                    settings.max_length, positions, settings.max_length)
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
    if settings.padding_free and not settings.packing:
        trainer.train_dataset = _truncate_rows(trainer.train_dataset, settings.max_length)
    if settings.method == "qlora" and precision.name == "fp32":
        # TRL casts QLoRA adapters to bf16 (the QLoRA paper's recipe for GPUs); in an fp32 run that
        # would put bf16 matmuls on the CPU, which are slow or crash, so keep the adapters in fp32.
        for param in trainer.model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
    return trainer


def _sft_config(settings: TrainSettings, checkpoint_dir: Path, precision: Any, tokenizer: Any):
    """TRL's SFTConfig (TrainingArguments) for these settings.

    Built before the model is loaded: under ``accelerate launch`` with ZeRO-3 the arguments create
    the DeepSpeed config that ``from_pretrained`` consults to load straight into shards
    (``zero3_init_flag``); a model loaded earlier is materialised whole on every process.
    """
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        lr_scheduler_kwargs=({"min_lr_rate": settings.min_lr_rate}
                             if settings.lr_scheduler == "cosine_with_min_lr" else None),
        # A float in [0, 1) is a share of the steps the Trainer really runs, which it alone knows: the
        # rows after packing, the world size and grad accumulation decide them, not len(examples).
        warmup_steps=_warmup_share(settings.warmup_ratio),
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        # TRL leaves truncation to the caller in padding-free mode without packing (see _truncate_rows)
        max_length=None if settings.padding_free and not settings.packing else settings.max_length,
        packing=settings.packing,
        packing_strategy="bfd",  # padding-free rows: position_ids restart per sequence, no cross-attention
        padding_free=settings.padding_free,
        gradient_checkpointing=settings.gradient_checkpointing,
        use_liger_kernel=_liger_usable(settings.use_liger_kernel),
        train_sampling_strategy=settings.data_order,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=list(settings.report_to) or "none",  # transformers' own integrations (students/tracking.py)
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter gets a gradient; True costs a graph walk per step
        use_cpu=not torch.cuda.is_available(),
        bf16=precision.bf16,
        fp16=precision.fp16,
        eos_token=tokenizer.eos_token,
        completion_only_loss=True,
        dataset_num_proc=None,
    )


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


def _load_model(model_or_path: Any, settings: TrainSettings, precision: Any, attention: str | None):
    """The model to train: a given module as is, or a path loaded in the precision's load dtype
    (fp32 master weights for full fine-tuning; the compute dtype, or nf4, for a frozen LoRA base)
    with the ``attention`` kernel build_trainer chose."""
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": precision.torch_dtype("load"), "attn_implementation": attention}
    if settings.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.torch_dtype("compute"),
        )
    return AutoModelForCausalLM.from_pretrained(str(model_or_path), **kwargs)


def _warmup_share(ratio: float) -> float:
    """The warmup as transformers' ``warmup_steps`` share (a float below 1 is a ratio of the total steps)."""
    if not 0 <= ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {ratio}")
    return float(ratio)


def _truncate_rows(dataset: Any, max_length: int):
    """Cut every token-aligned column of the tokenized rows to ``max_length``, as TRL does when it
    truncates (it does not in padding-free mode without packing), and, as TRL also does, drop the rows
    left with no label to learn (a prompt that fills ``max_length``): they would add steps but no loss."""

    def cut(row: dict[str, Any]) -> dict[str, Any]:
        n = len(row["input_ids"])
        return {k: v[:max_length] for k, v in row.items() if isinstance(v, list) and len(v) == n}

    return dataset.map(cut).filter(lambda row: any(label != -100 for label in row["labels"]))


def _liger_usable(requested: bool) -> bool:
    """Liger's Triton kernels need a CUDA GPU and the liger_kernel package; elsewhere the option is
    skipped with a warning rather than failing a run that would train correctly without it."""
    if not requested:
        return False
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None:
        log.warning("use_liger_kernel: skipped (needs a CUDA GPU and `pip install liger-kernel`)")
        return False
    return True


def _precision_label(args: Any) -> str:
    """The precision the Trainer really runs in, for the start-of-training log line."""
    return "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32"


def _peft_config(settings: TrainSettings):
    """The LoRA adapters TRL wraps the model in (None for full fine-tuning)."""
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
