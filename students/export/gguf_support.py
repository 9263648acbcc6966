"""Which Hugging Face checkpoints our GGUF export can convert: the one place that decides (and says why not).

The writer (:func:`distill.students.export.gguf_tensors.read_gguf_target`)
refuses through :func:`gguf_unsupported_reason`, and ``distill validate`` calls
the same function on the base model's ``config.json`` before any training, so a
recipe that would stop at export after days of training fails in seconds.
Pure ``dict`` logic: no torch, no ``gguf`` import, cheap to call from checks.
"""

from __future__ import annotations

from typing import Any

# HF architecture -> gguf.MODEL_ARCH member name (llama.cpp arch string via gguf.MODEL_ARCH_NAMES)
GGUF_ARCHES: dict[str, str] = {
    "Qwen2ForCausalLM": "QWEN2",
    "LlamaForCausalLM": "LLAMA",
}

# rope types the writer converts, per llama.cpp arch: "default" is plain rope; "llama3" (Llama-3.1/3.3) is
# written as llama.cpp's converter does it -- a ``rope_freqs`` tensor of per-dimension frequency factors and
# no rope-scaling keys -- which only the llama arch reads.  Others (yarn, linear, dynamic, longrope) are
# refused rather than exported wrongly.
SUPPORTED_ROPE_TYPES: dict[str, frozenset[str]] = {
    "QWEN2": frozenset({"default"}),
    "LLAMA": frozenset({"default", "llama3"}),
}

# config.json keys the writer reads without a default; a config lacking one cannot be converted.
_REQUIRED_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")


def rope_parameters(hf_config: dict[str, Any]) -> dict[str, Any]:
    """The rope settings of a config.json, old (``rope_theta`` + ``rope_scaling``) or transformers-5
    (``rope_parameters``) layout, as one dict with ``rope_type`` always set (``"default"`` when unscaled)."""
    params = dict(hf_config.get("rope_parameters") or {})
    scaling = hf_config.get("rope_scaling") or {}
    merged = {**scaling, **params}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    merged["rope_type"] = rope_type
    if "rope_theta" not in merged and hf_config.get("rope_theta") is not None:
        merged["rope_theta"] = hf_config["rope_theta"]
    return merged


def gguf_arch(hf_config: dict[str, Any]) -> str | None:
    """The ``gguf.MODEL_ARCH`` member name for a config's architecture, or None when not supported."""
    return next((GGUF_ARCHES[a] for a in hf_config.get("architectures") or [] if a in GGUF_ARCHES), None)


def gguf_unsupported_reason(hf_config: dict[str, Any]) -> str | None:
    """None when our GGUF export converts a model with this ``config.json``, else a one-line reason.

    Checked: not already quantised (an nf4 export holds packed uint8), a
    supported architecture, a rope type the writer converts for that
    architecture (with the keys that rope type needs), and the hyper-parameters
    the writer reads.
    """
    if hf_config.get("quantization_config"):
        return "the checkpoint is already quantised; export GGUF from the full-precision (fp32/bf16) checkpoint"
    arch = gguf_arch(hf_config)
    if arch is None:
        return (f"GGUF export supports {sorted(GGUF_ARCHES)}, not {hf_config.get('architectures') or []}")
    rope = rope_parameters(hf_config)
    rope_type = rope["rope_type"]
    if rope_type not in SUPPORTED_ROPE_TYPES[arch]:
        supported = ", ".join(sorted(SUPPORTED_ROPE_TYPES[arch]))
        return f"rope type {rope_type!r} is not supported by the GGUF export for {arch.lower()} (supported: {supported})"
    if rope_type == "llama3":
        missing = [k for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
                   if rope.get(k) is None]
        if missing:
            return f"llama3 rope scaling lacks {', '.join(missing)}"
    missing = [k for k in _REQUIRED_KEYS if hf_config.get(k) is None]
    if missing:
        return f"config.json lacks {', '.join(missing)}"
    return None
