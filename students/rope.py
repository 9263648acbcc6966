"""Long-context extension of a base model's RoPE before SFT, recorded in the model's own config.

R1 traces run to 32k tokens, but Qwen2.5-Math bases were pretrained with 4096 positions
at ``rope_theta`` 10000: trained at 32k as released, positions past 4k are out of the
distribution the model knows. Open-R1 (OpenR1-Distill-7B) raised ``rope_theta`` to 300000
and declared 32768 positions on an otherwise unchanged Qwen2.5-Math-7B
(``open-r1/Qwen2.5-Math-7B-RoPE-300k``) and let SFT adapt the weights to it -- "adjusted base
frequency", as Qwen itself did when it stretched Qwen2.5 from 4k to 32k. A YaRN/linear/
dynamic scaling rule can be set instead of or on top of a new theta.

The change is made on ``model.config`` (so ``save_pretrained`` writes it into the student's
``config.json`` and every consumer -- vLLM, GGUF export, eval -- serves the theta the model
was trained at) and the rotary-embedding modules are rebuilt from it, because they cache
their inverse frequencies when the model is built.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def rope_parameters(config: Any) -> dict[str, Any]:
    """The config's RoPE parameters in transformers 5's ``rope_parameters`` form."""
    params = getattr(config, "rope_parameters", None)
    if params:
        return dict(params)
    return {"rope_type": "default", "rope_theta": float(getattr(config, "rope_theta", 10000.0))}


def apply_rope(model: Any, theta: float | None = None, max_position_embeddings: int | None = None,
               scaling: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set a new RoPE theta / positions / scaling rule on ``model`` in place; returns the new parameters."""
    config = model.config
    params = rope_parameters(config)
    original_positions = config.max_position_embeddings
    if theta is not None:
        params["rope_theta"] = float(theta)
    if scaling:
        params = {"rope_theta": params["rope_theta"], "rope_type": scaling["type"], "factor": float(scaling["factor"])}
        if scaling["type"] in ("yarn", "dynamic"):
            params["original_max_position_embeddings"] = int(
                scaling.get("original_max_position_embeddings") or original_positions)
    if max_position_embeddings is not None:
        config.max_position_embeddings = int(max_position_embeddings)
    config.rope_parameters = params
    rebuilt = _rebuild_rotary_embeddings(model)
    log.info("RoPE set to %s, max_position_embeddings %d -> %d (%d rotary module(s) rebuilt)", params,
             original_positions, config.max_position_embeddings, rebuilt)
    return params


def _rebuild_rotary_embeddings(model: Any) -> int:
    """Replace every rotary-embedding module with one built from the (changed) config."""
    replaced = 0
    for name, module in list(model.named_modules()):
        if not type(module).__name__.endswith("RotaryEmbedding") or not hasattr(module, "inv_freq"):
            continue
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        fresh = type(module)(config=module.config).to(module.inv_freq.device)
        setattr(parent, name.rsplit(".", 1)[-1], fresh)
        replaced += 1
    if not replaced:
        raise ValueError(f"{type(model).__name__} has no rotary embedding module to rebuild; RoPE settings "
                         "cannot be applied to this architecture")
    return replaced
