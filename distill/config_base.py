"""The shared base of the run config's section models (``distill.config`` re-exports them).

Kept apart from ``distill/config.py`` so each stage's section module can subclass ``Strict``
and share ``TinyModelConfig`` without importing the top-level ``RunConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """A config section that rejects unknown keys (typos become errors) and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelConfig(Strict):
    """Shape of a tiny model built from Qwen2Config or LlamaConfig (toy teacher, toy student)."""

    architecture: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = Field(96, ge=8)
    num_layers: int = Field(3, ge=1)
    num_heads: int = Field(3, ge=1, description="vLLM's CPU attention needs head_dim (hidden/heads) of 32, 64, ...")
    num_kv_heads: int = Field(1, ge=1)
    intermediate_size: int = Field(384, ge=8)

    @model_validator(mode="after")
    def _check(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be divisible by num_kv_heads")
        return self
