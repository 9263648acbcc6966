"""The published ``config.json`` of every model the shipped recipes name, and a model's config by id or folder.

Static checks (``distill validate``), the planner and ``distill rehearse`` need the real
architecture of a base or teacher -- head counts for tensor parallelism, positions and RoPE
scaling for ``max_model_len``, the RoPE type for GGUF export, tied embeddings, biases, BOS/EOS --
before anything is downloaded. ``arch_configs.json`` (package data) holds the published files'
values for the six R1-Distill bases, the R1-Distill models and DeepSeek-R1/-0528; a local folder's
own ``config.json`` always wins. ``max_positions`` reads positions the way vLLM derives
``max_model_len`` from a config (after YaRN/linear RoPE extension).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["published_config", "model_config", "known_models", "max_positions", "rope_scaling", "head_dim",
           "attention_heads", "qkv_bias", "tensor_parallel_problem", "valid_tensor_parallel_sizes", "with_rope_changes"]

_DATA = Path(__file__).with_name("arch_configs.json")


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    doc = json.loads(_DATA.read_text(encoding="utf-8"))
    models = {name.lower(): cfg for name, cfg in doc["models"].items()}
    aliases = {alias.lower(): target.lower() for alias, target in doc["aliases"].items()}
    return models, aliases


def known_models() -> list[str]:
    """The model ids (as published, with their case) that have a stored config."""
    return list(json.loads(_DATA.read_text(encoding="utf-8"))["models"])


def published_config(model: str) -> dict[str, Any] | None:
    """The published config.json of a Hub id (case-insensitive, aliases followed); None when unknown.

    Returns a copy: callers may edit it (shrink layers, raise theta) without touching the table.
    """
    models, aliases = _table()
    key = model.strip().lower()
    key = aliases.get(key, key)
    cfg = models.get(key)
    return copy.deepcopy(cfg) if cfg is not None else None


def model_config(model_or_path: str) -> dict[str, Any] | None:
    """A local folder's config.json when ``model_or_path`` is one, else the published config; None if neither."""
    folder = Path(model_or_path).expanduser()
    config_file = folder / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text(encoding="utf-8"))
    if folder.is_file() and folder.name == "config.json":
        return json.loads(folder.read_text(encoding="utf-8"))
    return published_config(model_or_path)


def rope_scaling(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The RoPE scaling rule, from ``rope_scaling`` (transformers 4) or ``rope_parameters`` (transformers 5).

    The rule's type is returned under ``rope_type`` whichever key the file used (``type`` in
    DeepSeek's files); ``None`` when the model uses plain RoPE.
    """
    rule = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if not isinstance(rule, dict):
        return None
    kind = rule.get("rope_type") or rule.get("type") or "default"
    if kind == "default":
        return None
    return {**rule, "rope_type": kind}


def max_positions(cfg: dict[str, Any]) -> int:
    """The longest sequence the model supports, after RoPE extension (how vLLM derives ``max_model_len``).

    YaRN stretches ``original_max_position_embeddings`` by ``factor``; linear and dynamic NTK
    stretch ``max_position_embeddings``; ``llama3`` and ``longrope`` already declare the extended
    length in ``max_position_embeddings``.
    """
    positions = int(cfg.get("max_position_embeddings") or 2048)
    rule = rope_scaling(cfg)
    if not rule or "factor" not in rule:
        return positions
    kind, factor = rule["rope_type"], float(rule["factor"])
    if kind == "yarn":
        original = int(rule.get("original_max_position_embeddings") or positions)
        return max(positions, int(original * factor))
    if kind in ("linear", "dynamic"):
        return int(positions * factor)
    return positions


def attention_heads(cfg: dict[str, Any]) -> tuple[int, int]:
    """(query heads, key/value heads); KV heads default to the query heads (no GQA)."""
    heads = int(cfg["num_attention_heads"])
    return heads, int(cfg.get("num_key_value_heads") or heads)


def head_dim(cfg: dict[str, Any]) -> int:
    """Per-head width: ``head_dim`` when set, the MLA query width for DeepSeek-V3, else hidden / heads."""
    if cfg.get("head_dim"):
        return int(cfg["head_dim"])
    if cfg.get("qk_nope_head_dim") is not None:
        return int(cfg["qk_nope_head_dim"]) + int(cfg.get("qk_rope_head_dim") or 0)
    return int(cfg["hidden_size"]) // int(cfg["num_attention_heads"])


def qkv_bias(cfg: dict[str, Any]) -> bool:
    """Whether q/k/v projections carry a bias: always for Qwen2, else the config's ``attention_bias``."""
    return cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias", False))


def tensor_parallel_problem(cfg: dict[str, Any], tp: int) -> str | None:
    """Why vLLM cannot split this model ``tp`` ways, or None when it can.

    vLLM shards whole query heads, and whole KV heads (or replicates them when ``tp`` is a multiple
    of their count); its column-parallel MLP needs the intermediate width divisible by ``tp`` too.
    """
    if tp <= 1:
        return None
    heads, kv_heads = attention_heads(cfg)
    if heads % tp:
        return f"its {heads} attention heads are not divisible by {tp}"
    if kv_heads % tp and tp % kv_heads:
        return f"its {kv_heads} KV heads neither divide nor are divisible by {tp}"
    width = cfg.get("moe_intermediate_size") or cfg.get("intermediate_size")
    if width and int(width) % tp:
        return f"its MLP width {width} is not divisible by {tp}"
    return None


def valid_tensor_parallel_sizes(cfg: dict[str, Any], up_to: int) -> list[int]:
    """Every tensor-parallel size from 1 to ``up_to`` that vLLM can split this model into."""
    return [tp for tp in range(1, max(1, up_to) + 1) if tensor_parallel_problem(cfg, tp) is None]


def with_rope_changes(cfg: dict[str, Any], theta: float | None = None, max_position_embeddings: int | None = None,
                      scaling: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config a student is saved with after ``student.rope`` (as ``distill.students.rope.apply_rope`` sets it)."""
    out = copy.deepcopy(cfg)
    if theta is not None:
        out["rope_theta"] = float(theta)
    if scaling:
        rule = {"rope_type": scaling["type"], "factor": float(scaling["factor"])}
        if scaling["type"] in ("yarn", "dynamic"):
            rule["original_max_position_embeddings"] = int(scaling.get("original_max_position_embeddings")
                                                           or out.get("max_position_embeddings") or 2048)
        out["rope_scaling"] = rule
    if max_position_embeddings is not None:
        out["max_position_embeddings"] = int(max_position_embeddings)
    return out
