"""Supervised fine-tuning through TRL's SFTTrainer, resumable after a crash.

Training examples are conversational prompt/completion pairs, so TRL masks the
prompt and trains only the assistant turn -- reasoning, answer and the
end-of-turn (EOS) token -- rendered by the tokenizer's own chat template.
"""

from __future__ import annotations

import contextlib
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
    remedies: Callable[[], list[str]] | None = None,
) -> TrainResult:
    """Fine-tune and save the final model (merged if LoRA) to ``output_dir/model``.

    Checkpoints go to ``output_dir/checkpoints``; if one is complete there, training
    resumes from it, so a killed run repeats at most ``save_steps`` steps. Under
    ``accelerate launch`` every process runs this; only the main one writes the model.
    Running out of memory raises :class:`TrainingOutOfMemoryError` listing ``remedies()``
    (the pipeline passes ``distill plan``'s advice) instead of a bare CUDA traceback.
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

    step = _StepTracker()
    try:
        trainer = build_trainer(model_or_path, tokenizer, examples, checkpoint_dir, settings,
                                callbacks=[_Relay(), guard.callback(), step.callback()])
        log.info("training with world_size %d (processes), %s precision, %d examples",
                 trainer.args.world_size, _precision_label(trainer.args), len(examples))
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
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
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
        report_to="none",
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
    return "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32"


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


class _StepTracker:
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


def _save_final(trainer, tokenizer, model_dir: Path, model_or_path: Any = None,
                settings: TrainSettings | None = None) -> None:
    """Save the final model, with LoRA adapters merged into the base so every consumer can load it.

    The adapters alone are kept next to it (``adapter/``). A QLoRA base is 4-bit: merging into it
    would round the (small) LoRA update away when the weights are re-quantised, so the adapters
    are merged into the base reloaded in the compute precision instead (the export stage makes
    the 4-bit variant of the merged student).
    """
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        adapter_dir = model_dir.with_name("adapter")
        shutil.rmtree(adapter_dir, ignore_errors=True)
        model.save_pretrained(str(adapter_dir))
        if getattr(model.base_model.model, "is_loaded_in_4bit", False) and isinstance(model_or_path, (str, Path)):
            model = _merge_into_full_precision(model_or_path, adapter_dir, tokenizer, settings or TrainSettings())
        else:
            model = model.merge_and_unload()
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)


def save_final_model(trainer, tokenizer, model_dir: Path, model_or_path: Any = None,
                     settings: TrainSettings | None = None) -> None:
    """Write the trained model to ``model_dir``; every process of the run calls this.

    With one process or DDP the main process holds the whole model and saves it alone; with
    sharded weights (ZeRO-3, FSDP) every process takes part in gathering them.
    """
    if _parameters_sharded(trainer):
        _save_final_sharded(trainer, tokenizer, model_dir, model_or_path, settings)
    elif trainer.is_world_process_zero():
        _save_final(trainer, tokenizer, model_dir, model_or_path, settings)
    trainer.accelerator.wait_for_everyone()


def _parameters_sharded(trainer) -> bool:
    """Whether each process holds only a shard of the weights (ZeRO-3 or FSDP), not a full replica."""
    return bool(getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False))


def _save_final_sharded(trainer, tokenizer, model_dir: Path, model_or_path: Any = None,
                        settings: TrainSettings | None = None) -> None:
    """The final save when the weights are sharded (ZeRO-3, FSDP2); every process must call it.

    On the main process ``trainer.model`` holds only its shard (ZeRO-3: empty placeholders), so
    saving it directly would write empty or partial tensors, and gathering the full weights is a
    collective that hangs if the main process does it alone. So every process gathers through
    accelerate (whatever FSDP ``state_dict_type`` the checkpoints use); the main process writes.
    LoRA adapters are merged into the base reloaded from disk, as the in-memory base is sharded too.
    """
    main = trainer.is_world_process_zero()
    state_dict = trainer.accelerator.get_state_dict(trainer.deepspeed if trainer.is_deepspeed_enabled
                                                    else trainer.model)
    if main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        tmp = model_dir.with_name(model_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if hasattr(model, "merge_and_unload"):
            if not isinstance(model_or_path, (str, Path)):
                raise ValueError("a sharded LoRA run needs the base model as a path, to merge the adapters into")
            adapter_dir = model_dir.with_name("adapter")
            shutil.rmtree(adapter_dir, ignore_errors=True)
            model.save_pretrained(str(adapter_dir), state_dict=state_dict)  # PEFT keeps the adapter keys
            with _zero3_loading_off():  # the main process reloads the base alone: no collective zero.Init
                merged = _merge_into_full_precision(model_or_path, adapter_dir, tokenizer, settings or TrainSettings())
            merged.save_pretrained(str(tmp))
        else:
            model.save_pretrained(str(tmp), state_dict=state_dict)
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(model_dir, ignore_errors=True)
        tmp.rename(model_dir)


@contextlib.contextmanager
def _zero3_loading_off():
    """Load models whole for a while under ZeRO-3: transformers partitions ``from_pretrained`` with
    ``deepspeed.zero.Init`` (a collective) while the training arguments' DeepSpeed config is alive."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def _merge_into_full_precision(base_path: Any, adapter_dir: Path, tokenizer: Any, settings: TrainSettings):
    """The base reloaded unquantised (same embedding size and RoPE as in training) with the adapters merged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distill.students.precision import resolve_precision

    precision = resolve_precision(settings.dtype, "lora")
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=precision.torch_dtype("load"))
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))
    if settings.rope:
        from distill.students.rope import apply_rope

        apply_rope(base, **settings.rope)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
