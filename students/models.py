"""Build or load causal LMs: tiny ones from a config for the quickstart and tests, real ones by path or Hub id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TinyModelSpec:
    """Shape of a tiny model built from ``Qwen2Config`` or ``LlamaConfig``."""

    architecture: str = "qwen2"  # qwen2 | llama
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 2048


def tiny_config(spec: TinyModelSpec, tokenizer) -> Any:
    """A transformers config for ``spec`` whose special-token ids agree with ``tokenizer``."""
    from transformers import LlamaConfig, Qwen2Config

    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    if spec.architecture == "qwen2":
        return Qwen2Config(**common)
    if spec.architecture == "llama":
        return LlamaConfig(**common)
    raise ValueError(f"unknown tiny architecture {spec.architecture!r}")


def build_tiny_model(spec: TinyModelSpec, tokenizer, seed: int = 0):
    """A randomly initialised causal LM of shape ``spec`` (fp32: the CPU-safe dtype)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(spec, tokenizer), dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    return model


def save_tiny_model(folder, spec: TinyModelSpec, tokenizer, seed: int = 0) -> str:
    """Build a tiny model and save it with its tokenizer, as a model folder engines load; returns the folder."""
    model = build_tiny_model(spec, tokenizer, seed=seed)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
