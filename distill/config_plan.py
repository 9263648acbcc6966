"""The ``plan`` section of the run config: the clusters and assumptions `distill plan` sizes a run for.

Import these from ``distill.config``; this module only keeps that file short.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from distill.config_base import Strict


class TrainResources(Strict):
    """The training cluster `distill plan` sizes the student run for (nothing else reads it)."""

    gpu: str = Field("H100-80GB", description="a label for the tables")
    gpus_per_node: int = Field(8, ge=1)
    nodes: int = Field(1, ge=1)
    gpu_memory_gb: float = Field(80, gt=0, description="per GPU, GB = 1e9 bytes")
    cpu_memory_gb_per_node: float = Field(2000, gt=0, description="host RAM, used by CPU offload")
    parallelism: Literal["ddp", "zero3", "zero3_offload", "fsdp"] = "zero3"
    fused_cross_entropy: bool = Field(
        True, description="the loss is computed in chunks without the full logits, as TRL's SFTTrainer (which distill "
                          "trains with) does by default; false plans for a trainer that materialises them")
    tokens_per_second_per_gpu: Optional[float] = Field(
        None, gt=0, description="measured training throughput; unset: derived from mfu and peak_tflops")
    mfu: float = Field(0.35, gt=0, le=1, description="model FLOPs utilisation assumed when throughput is unset")
    peak_tflops: float = Field(989, gt=0, description="dense BF16 peak per GPU (H100 SXM: 989)")
    usd_per_gpu_hour: float = Field(2.5, ge=0)


class TeacherResources(Strict):
    """The inference cluster `distill plan` sizes the teacher for (nothing else reads it)."""

    gpu: str = Field("H200-141GB", description="a label for the tables")
    gpus_per_node: int = Field(8, ge=1)
    gpu_memory_gb: float = Field(141, gt=0, description="per GPU, GB = 1e9 bytes")
    min_concurrent_sequences: int = Field(32, ge=1, description="KV cache to reserve: this many full-length "
                                                               "sequences at teacher.max_tokens")
    tokens_per_second: float = Field(2500, gt=0, description="generated tokens/s of one engine (one TP x PP group)")
    replicas: int = Field(1, ge=1, description="engines running side by side")
    usd_per_gpu_hour: float = Field(3.5, ge=0)


class PlanConfig(Strict):
    """Assumptions for `distill plan`: hardware, throughput, prices and trace lengths."""

    train: TrainResources = TrainResources()
    teacher: TeacherResources = TeacherResources()
    avg_prompt_tokens: int = Field(150, ge=1)
    avg_completion_tokens: int = Field(6000, ge=1, description="teacher tokens per trace (reasoning + answer)")
    keep_rate: float = Field(0.7, gt=0, le=1, description="share of traces the filter is expected to keep")
