"""The ``student`` and ``export`` sections of the run config (the train and export stages).

Import these from ``distill.config``; this module only keeps that file short.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from distill.config_base import Strict, TinyModelConfig


class RopeScalingConfig(Strict):
    """A RoPE scaling rule (transformers' ``rope_parameters``): stretch positions beyond the trained ones."""

    type: Literal["linear", "dynamic", "yarn"] = "yarn"
    factor: float = Field(..., gt=1)
    original_max_position_embeddings: Optional[int] = Field(None, ge=16, description="default: the base's")


class RopeConfig(Strict):
    """Long-context extension applied to the base's config before training and saved with the student.

    Qwen2.5-Math bases were pretrained with 4096 positions at rope_theta 10000; Open-R1 raised the
    theta to 300000 and declared 32768 positions before SFT at 32k (open-r1/Qwen2.5-Math-7B-RoPE-300k).
    """

    theta: Optional[float] = Field(None, gt=0, description="new RoPE base frequency (rope_theta)")
    max_position_embeddings: Optional[int] = Field(None, ge=16, description="positions declared in config.json")
    scaling: Optional[RopeScalingConfig] = None


class StudentConfig(Strict):
    model: str = Field("toy", min_length=1, description="'toy' or a base model folder / Hub id")
    toy: TinyModelConfig = TinyModelConfig(hidden_size=64, num_layers=3, num_heads=2, num_kv_heads=1,
                                           intermediate_size=256)
    method: Literal["full", "lora", "qlora"] = "full"
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1)
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler: Literal["cosine", "cosine_with_min_lr", "linear", "constant", "constant_with_warmup"] = "cosine"
    min_lr_rate: float = Field(0.1, gt=0, lt=1, description="cosine_with_min_lr: floor as a share of the peak lr")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping (Open-R1's 7B recipe: 0.2)")
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(32768, ge=16)
    packing: bool = Field(False, description="pack sequences into max_length rows (BFD; attention stays "
                                             "inside each sequence)")
    padding_free: bool = Field(False, description="concatenate each batch without pad tokens (position_ids "
                                                  "mark the sequences); implied by packing")
    gradient_checkpointing: bool = False
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 mixed precision on a CUDA GPU that supports it, fp32 on CPU")
    use_liger_kernel: bool = Field(False, description="Liger's fused kernels, when installed and on a CUDA GPU")
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto", description="auto: FlashAttention-2 on a GPU when flash-attn is installed, else SDPA")
    rope: Optional[RopeConfig] = Field(None, description="raise rope_theta / positions for long-context SFT")
    save_steps: int = Field(100, ge=1)
    logging_steps: int = Field(10, ge=1, description="log the loss every N optimiser steps (the train stage's "
                                                      "first and final loss come from these logs)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1, description=(
        "projections that get adapters; add gate_proj, up_proj, down_proj to adapt the MLPs too"))
    seed: int = 0
    chat_template: Literal["auto", "tokenizer", "chatml", "llama3", "r1_distill"] = Field(
        "auto", description="auto keeps the tokenizer's template unless it drops the <think> block "
                            "(stock R1-Distill), then uses a training variant; see `distill check-template`")
    report_to: list[Literal["tensorboard", "wandb", "trackio", "mlflow"]] = Field(
        [], description="experiment trackers (transformers' own report_to integrations, each needs its package): "
                        "the loss, the run config, the filter funnel and the eval results in one tracker run; "
                        "TensorBoard's event files go to train/tracking/tensorboard")
    push_checkpoints: bool = Field(
        False, description="push each saved checkpoint to hub.repo_id as branch step-<N> while training runs "
                           "(in a background thread; the same idempotent, retried push as the final one)")

    @model_validator(mode="after")
    def _check_trackers(self) -> "StudentConfig":
        if len(set(self.report_to)) != len(self.report_to):
            raise ValueError("report_to names a tracker twice")
        return self


class ExportConfig(Strict):
    nf4: bool = True
    int8: bool = Field(False, description="also a bitsandbytes 8-bit (LLM.int8) export, evaluated as student_8bit")
    gguf: bool = True
    gguf_type: Literal["f32", "f16", "q8_0"] = "q8_0"
    gguf_4bit: Optional[Literal["q4_k_m", "q4_0"]] = Field(
        "q4_k_m", description="a 4-bit GGUF too (student_gguf): Q4_K_M via llama.cpp's quantizer when "
                              "llama-cpp-python is installed, else Q4_0 via gguf; null for none")
    fidelity: Literal["enforce", "report"] = Field(
        "enforce", description="enforce: an export whose logits stray past its bar (nf4/int8 top-1 agreement, "
                               "GGUF relative logit gap in llama.cpp) fails the stage; report: the same figures "
                               "are measured, logged and recorded in the manifest, not held to the bar (random-"
                               "weight models: `distill rehearse`). Tokenization must match either way")
