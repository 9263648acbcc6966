"""Known model shapes for ``distill plan``: the six R1-Distill bases and R1 itself, or a local ``config.json``.

The numbers are those of each model's published ``config.json`` that memory and FLOPs
depend on, read from the stored copies in ``students/arch_configs.py``; nothing is downloaded.
``distill.students.plan`` re-exports every name here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distill.students.arch_configs import published_config, qkv_bias


@dataclass(frozen=True)
class MoE:
    """DeepSeek-V3-style mixture of experts (R1 shares V3's architecture)."""

    routed_experts: int
    shared_experts: int
    experts_per_token: int
    expert_intermediate: int
    first_dense_layers: int


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention: low-rank q and a compressed, cached kv latent."""

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a model's published ``config.json`` that memory and FLOPs depend on."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    max_position_embeddings: int = 131072
    native_dtype: str = "bfloat16"  # of the released checkpoint: R1 ships FP8 weights
    moe: MoE | None = None
    mla: MLA | None = None
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def q_dim(self) -> int:
        """Width of all query heads together (what attention FLOPs and activations scale with)."""
        return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim if self.mla else self.head_dim)

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def embedding_parameters(self) -> int:
        """Input embedding plus the output head (one matrix when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def attention_parameters(self) -> int:
        h, mla = self.hidden_size, self.mla
        if mla:
            qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
            return (h * mla.q_lora_rank + mla.q_lora_rank + mla.q_lora_rank * self.num_heads * qk
                    + h * (mla.kv_lora_rank + mla.qk_rope_head_dim) + mla.kv_lora_rank
                    + mla.kv_lora_rank * self.num_heads * (mla.qk_nope_head_dim + mla.v_head_dim)
                    + self.num_heads * mla.v_head_dim * h)
        bias = self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0
        return 2 * h * self.q_dim + 2 * h * self.kv_dim + bias

    def mlp_parameters(self, layer: int) -> int:
        h, moe = self.hidden_size, self.moe
        if moe is None or layer < moe.first_dense_layers:
            return 3 * h * self.intermediate_size
        experts = (moe.routed_experts + moe.shared_experts) * 3 * h * moe.expert_intermediate
        return experts + moe.routed_experts * h  # + router

    def layer_parameters(self, layer: int) -> int:
        return self.attention_parameters() + self.mlp_parameters(layer) + 2 * self.hidden_size

    def parameters(self) -> int:
        layers = sum(self.layer_parameters(i) for i in range(self.num_layers))
        return layers + self.embedding_parameters() + self.hidden_size

    def largest_unit_parameters(self) -> int:
        """The biggest block ZeRO-3/FSDP gathers at once: a decoder layer or the (un)embedding."""
        return max(max(self.layer_parameters(i) for i in range(self.num_layers)),
                   self.vocab_size * self.hidden_size)

    def compute_parameters(self) -> int:
        """Parameters in matmuls per token (the embedding lookup is free; MoE counts active experts)."""
        total = self.parameters() - (0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size)
        if self.moe:
            inactive = (self.moe.routed_experts - self.moe.experts_per_token) * 3 * self.hidden_size \
                * self.moe.expert_intermediate
            total -= inactive * (self.num_layers - self.moe.first_dense_layers)
        return total

    def kv_cache_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV cache per token: MLA caches one latent per layer, GQA a K and a V per kv head."""
        if self.mla:
            return self.num_layers * (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim) * dtype_bytes
        return 2 * self.num_layers * self.kv_dim * dtype_bytes


class UnknownModelError(ValueError):
    """No shape for a model id: not in the table and not a local folder with a config.json."""


def model_shape(model: str) -> ModelShape:
    """The shape of a Hub id from the built-in table, or of a local folder from its config.json."""
    folder = Path(model)
    if (folder / "config.json").is_file():
        return shape_from_config(json.loads((folder / "config.json").read_text()), name=model)
    key = model.lower()
    key = ALIASES.get(key, key)
    if key in MODELS:
        return MODELS[key]
    published = _published_shape(model)
    if published is not None:  # e.g. an R1-Distill model: its own config (1.5B is untied, unlike its base)
        return published
    known = ", ".join(m.name for m in MODELS.values())
    raise UnknownModelError(f"no built-in shape for {model!r} (known: {known}); point the config at a local "
                            "folder with its config.json")


def shape_from_config(cfg: dict[str, Any], name: str = "model") -> ModelShape:
    """A shape from a transformers ``config.json``: dense Llama/Qwen2-style, or DeepSeek-V3 MoE with MLA."""
    moe = mla = None
    if cfg.get("n_routed_experts"):
        moe = MoE(routed_experts=cfg["n_routed_experts"], shared_experts=cfg.get("n_shared_experts", 0),
                  experts_per_token=cfg["num_experts_per_tok"], expert_intermediate=cfg["moe_intermediate_size"],
                  first_dense_layers=cfg.get("first_k_dense_replace", 0))
    if cfg.get("kv_lora_rank"):
        mla = MLA(q_lora_rank=cfg["q_lora_rank"], kv_lora_rank=cfg["kv_lora_rank"],
                  qk_nope_head_dim=cfg["qk_nope_head_dim"], qk_rope_head_dim=cfg["qk_rope_head_dim"],
                  v_head_dim=cfg["v_head_dim"])
    quant = (cfg.get("quantization_config") or {}).get("quant_method")
    return ModelShape(
        name=name, hidden_size=cfg["hidden_size"], num_layers=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"], num_kv_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
        intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)), qkv_bias=qkv_bias(cfg),
        max_position_embeddings=cfg.get("max_position_embeddings", 131072),
        native_dtype="fp8" if quant == "fp8" else "bfloat16", moe=moe, mla=mla, source=f"{name}/config.json")


_HF = "published config.json at huggingface.co/"
_TABLE_MODELS = ("Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-14B",
                 "Qwen/Qwen2.5-32B", "meta-llama/Llama-3.3-70B-Instruct", "deepseek-ai/DeepSeek-R1")


def _published_shape(model: str) -> ModelShape | None:
    """The shape of a model whose published config.json ``students/arch_configs.json`` holds."""
    cfg = published_config(model)
    if cfg is None:
        return None
    shape = shape_from_config(cfg, name=model)
    note = " (the multi-token-prediction layer, unused by vLLM, left out)" if cfg.get("num_nextn_predict_layers") else ""
    return replace(shape, source=_HF + model + note)


def _built_in_models() -> dict[str, ModelShape]:
    models = {}
    for name in _TABLE_MODELS:
        shape = _published_shape(name)
        if shape is None:
            raise RuntimeError(f"{name} is missing from students/arch_configs.json")
        models[name.lower()] = shape
    return models


# The six R1-Distill bases and R1, derived from their published config.json (students/arch_configs.py).
MODELS: dict[str, ModelShape] = _built_in_models()
ALIASES = {  # ids without a stored config of their own, and the model whose shape they share
    "meta-llama/meta-llama-3.1-8b": "meta-llama/llama-3.1-8b",
    "deepseek-ai/deepseek-v3": "deepseek-ai/deepseek-r1",
    "deepseek-ai/deepseek-r1-0528": "deepseek-ai/deepseek-r1",
}
