"""Checkpoints and the final model: where a run resumes from, and how the trained student is written.

The final save merges LoRA adapters into the base so every consumer can load the student, and
gathers sharded weights (ZeRO-3, FSDP) with every process taking part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from distill.students.train_settings import TrainSettings

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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
