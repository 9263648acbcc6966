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
    _write_model_folder(model, tokenizer, tmp)
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


def sharding_label(trainer) -> str:
    """How the weights are spread over the processes, for the start-of-training log line (the sharded
    tests read it: a config that silently fell back to plain data parallelism would still train)."""
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = trainer.accelerator.state.deepspeed_plugin
        return f"DeepSpeed ZeRO-{plugin.zero_stage}"
    if getattr(trainer, "is_fsdp_enabled", False):
        plugin = trainer.accelerator.state.fsdp_plugin
        return f"FSDP{getattr(plugin, 'fsdp_version', 1)} ({plugin.state_dict_type.name})"
    return "data parallel" if trainer.args.world_size > 1 else "one process"


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
            _write_model_folder(merged, tokenizer, tmp)
        else:
            _write_model_folder(model, tokenizer, tmp, state_dict=_without_tied_copies(state_dict, model))
        shutil.rmtree(model_dir, ignore_errors=True)
        tmp.rename(model_dir)


def _write_model_folder(model: Any, tokenizer: Any, folder: Path, state_dict: dict | None = None) -> None:
    """The student's folder: weights, tokenizer, and a generation config that stops where the student
    learned to stop (see :func:`student_generation_config`)."""
    model.generation_config = student_generation_config(model, tokenizer)
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(folder), state_dict=state_dict)
    tokenizer.save_pretrained(str(folder))


def end_of_turn_token(tokenizer: Any) -> str | None:
    """The special token the chat template closes an assistant turn with (``<|im_end|>``, ``<|eot_id|>``,
    ``<｜end▁of▁sentence｜>``), read from the template itself: the first special token its rendering puts
    after an assistant message; else the one the template's family is known to use."""
    from distill.students.templates import END_OF_TURN, detect_family

    marker = "\u2063distill-end-of-turn-probe\u2063"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as exc:  # noqa: BLE001 -- no template, or one that needs other roles: use the family
        log.debug("cannot render the chat template (%s); using the family's end-of-turn token", exc)
        rendered = ""
    if marker in rendered:
        after = rendered.split(marker, 1)[1].lstrip(" ")
        specials = sorted(tokenizer.all_special_tokens + [str(t) for t in tokenizer.added_tokens_decoder.values()],
                          key=len, reverse=True)
        for token in specials:
            if token and after.startswith(token):
                return token
    family_token = END_OF_TURN.get(detect_family(tokenizer) or "")
    return family_token if family_token in tokenizer.get_vocab() else None


def student_generation_config(model: Any, tokenizer: Any) -> Any:
    """The model's generation config with EOS = the chat template's end-of-turn token, the tokenizer's EOS
    and the base's EOS ids (in that order), and the tokenizer's pad token (distinct from the end-of-turn
    token: the trainer's ``ensure_distinct_pad``; it may equal the base's end-of-document EOS, as in
    Qwen2.5-Instruct's own generation config, which is harmless: padding follows a finished sequence).

    A trained student inherits the base's ``generation_config.json``, whose EOS is often the base's
    end-of-document token (Qwen2.5-Math: ``<|endoftext|>``, Llama-3.1-8B: ``<|end_of_text|>``); the
    student learned to end its turn with the template's end-of-turn token instead, so a plain
    ``generate()`` on the pushed model would run on past the answer to ``max_new_tokens``.
    """
    import copy

    from transformers import GenerationConfig

    config = copy.deepcopy(getattr(model, "generation_config", None) or GenerationConfig())
    old = config.eos_token_id
    old_ids = old if isinstance(old, list) else [] if old is None else [old]
    end = end_of_turn_token(tokenizer)
    candidates = [tokenizer.convert_tokens_to_ids(end) if end else None, tokenizer.eos_token_id, *old_ids]
    eos_ids = list(dict.fromkeys(i for i in candidates if isinstance(i, int) and i >= 0))
    config.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    if tokenizer.pad_token_id is not None:  # the trainer made it differ from the end-of-turn token
        config.pad_token_id = tokenizer.pad_token_id
    if config.bos_token_id is None and tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    return config


def _without_tied_copies(state_dict: dict, model: Any) -> dict:
    """``state_dict`` without the second copy of each weight the model ties (the LM head of tied embeddings).

    A gathered FSDP state dict holds each tied name as its own tensor, so ``save_pretrained`` (which
    drops aliases by shared storage) would write the embedding matrix twice; it then reloads equal but
    the file is larger by a vocabulary-sized matrix and the export sees an extra ``lm_head.weight``.
    """
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    drop = {name for names in groups.values() if len(names) > 1 for name in names[1:] if names[0] in state_dict}
    return {k: v for k, v in state_dict.items() if k not in drop}


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
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:  # not weight.shape (ZeRO-3: empty)
        base.resize_token_embeddings(len(tokenizer))
    if settings.rope:
        from distill.students.rope import apply_rope

        apply_rope(base, **settings.rope)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
