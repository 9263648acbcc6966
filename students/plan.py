"""``distill plan``: will this run fit, how long will it take, what will it cost -- before renting GPUs.

Everything is arithmetic on published model shapes (a built-in table, or a local
``config.json``); nothing is downloaded and torch is not imported. The estimates
follow two standard accountings:

- model states (ZeRO, Rajbhandari et al. 2020, arXiv:1910.02054): mixed-precision
  AdamW holds 2 bytes of bf16 weights + 2 of bf16 gradients + 12 of fp32 optimizer
  state (master copy, m, v) per parameter -- 16 bytes; ZeRO-3 and FSDP full sharding
  divide all of it by the number of GPUs, CPU offload moves it to host RAM.
  (FSDP/DDP under autocast keep fp32 weights and gradients instead: 4 + 4 + 8, the
  same 16 bytes.)
- activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models", arXiv:2205.05198): ``s*b*h*(34 + 5*a*s/h)`` bytes per GPT layer
  in 16-bit. ``layer_activation_bytes`` counts the same saved tensors for the actual
  architecture -- SwiGLU MLP, grouped-query attention, no dropout, FlashAttention
  (no ``s x s`` scores) -- and reduces exactly to the paper's formula for a GPT layer.
  Full recomputation (gradient checkpointing) keeps only each layer's input,
  ``2*s*b*h``, plus one layer's activations while it is recomputed. Measured against
  the tensors a transformers Qwen2 layer saves for backward, this is within a few
  percent (tests/test_plan.py).

On top come the logits, which at 32k context dominate small models: HF's loss
keeps bf16 logits, an fp32 copy and the fp32 log-softmax (10 bytes x tokens x vocab)
unless a fused linear-cross-entropy kernel (Liger) computes the loss in chunks -- as
TRL 1.16's SFTTrainer, which distill's trainer uses, does by default (its fused LM head);
so ``plan.train.fused_cross_entropy`` defaults to true.

Units: GB = 1e9 bytes throughout (GPU capacities in the config are GB too).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

GB = 1e9
CUDA_OVERHEAD_GB = 2.5  # CUDA context, cuBLAS workspaces, NCCL buffers
USABLE_FRACTION = 0.95  # allocator fragmentation: plan to fill at most 95% of a GPU
LOGIT_BYTES = 10  # bf16 logits + fp32 upcast + fp32 log-softmax kept for backward
HF_RMSNORM_BYTES = 6  # transformers' RMSNorm keeps an fp32 copy of its input and the bf16 normalised tensor
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # distill.students.trainer.TrainSettings default
PARALLELISMS = ("ddp", "zero3", "zero3_offload", "fsdp")


# ----------------------------------------------------------------------------- model shapes


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


_HF = "published config.json at huggingface.co/"
MODELS: dict[str, ModelShape] = {
    "qwen/qwen2.5-math-1.5b": ModelShape("Qwen/Qwen2.5-Math-1.5B", 1536, 28, 12, 2, 8960, 151936, True, True,
                                         4096, source=_HF + "Qwen/Qwen2.5-Math-1.5B"),
    "qwen/qwen2.5-math-7b": ModelShape("Qwen/Qwen2.5-Math-7B", 3584, 28, 28, 4, 18944, 152064, False, True,
                                       4096, source=_HF + "Qwen/Qwen2.5-Math-7B"),
    "meta-llama/llama-3.1-8b": ModelShape("meta-llama/Llama-3.1-8B", 4096, 32, 32, 8, 14336, 128256,
                                          source=_HF + "meta-llama/Llama-3.1-8B"),
    "qwen/qwen2.5-14b": ModelShape("Qwen/Qwen2.5-14B", 5120, 48, 40, 8, 13824, 152064, False, True,
                                   131072, source=_HF + "Qwen/Qwen2.5-14B"),
    "qwen/qwen2.5-32b": ModelShape("Qwen/Qwen2.5-32B", 5120, 64, 40, 8, 27648, 152064, False, True,
                                   131072, source=_HF + "Qwen/Qwen2.5-32B"),
    "meta-llama/llama-3.3-70b-instruct": ModelShape("meta-llama/Llama-3.3-70B-Instruct", 8192, 80, 64, 8, 28672,
                                                    128256, source=_HF + "meta-llama/Llama-3.3-70B-Instruct"),
    "deepseek-ai/deepseek-r1": ModelShape(
        "deepseek-ai/DeepSeek-R1", 7168, 61, 128, 128, 18432, 129280, max_position_embeddings=163840,
        native_dtype="fp8", moe=MoE(256, 1, 8, 2048, 3), mla=MLA(1536, 512, 128, 64, 128),
        source=_HF + "deepseek-ai/DeepSeek-R1 (the multi-token-prediction layer, unused by vLLM, left out)"),
}
ALIASES = {
    "meta-llama/meta-llama-3.1-8b": "meta-llama/llama-3.1-8b",
    "open-r1/qwen2.5-math-7b-rope-300k": "qwen/qwen2.5-math-7b",
    "deepseek-ai/deepseek-v3": "deepseek-ai/deepseek-r1",
    "deepseek-ai/deepseek-r1-0528": "deepseek-ai/deepseek-r1",
    "deepseek-ai/deepseek-r1-distill-qwen-1.5b": "qwen/qwen2.5-math-1.5b",
    "deepseek-ai/deepseek-r1-distill-qwen-7b": "qwen/qwen2.5-math-7b",
    "deepseek-ai/deepseek-r1-distill-llama-8b": "meta-llama/llama-3.1-8b",
    "deepseek-ai/deepseek-r1-distill-qwen-14b": "qwen/qwen2.5-14b",
    "deepseek-ai/deepseek-r1-distill-qwen-32b": "qwen/qwen2.5-32b",
    "deepseek-ai/deepseek-r1-distill-llama-70b": "meta-llama/llama-3.3-70b-instruct",
}


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
    known = ", ".join(m.name for m in MODELS.values())
    raise UnknownModelError(f"no built-in shape for {model!r} (known: {known}); point the config at a local "
                            "folder with its config.json")


def shape_from_config(cfg: dict[str, Any], name: str = "model") -> ModelShape:
    """A shape from a transformers ``config.json`` of a dense Llama/Qwen2-style model."""
    return ModelShape(
        name=name, hidden_size=cfg["hidden_size"], num_layers=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"], num_kv_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
        intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias", False)),
        max_position_embeddings=cfg.get("max_position_embeddings", 131072), source=f"{name}/config.json")


# ----------------------------------------------------------------------------- activations


def layer_activation_bytes(h: int, q_dim: int, kv_dim: int, intermediate: int, heads: int, s: int, b: int,
                           gated_mlp: bool = True, dropout: bool = False, flash: bool = True,
                           norm_bytes: int = 2) -> float:
    """Bytes one transformer layer saves for backward in 16-bit (Korthikanti et al. 2022, section 4.1).

    Counted as in the paper, per ``s*b`` tokens: the attention block keeps its input
    (2h), Q and K for QK^T (2q + 2kv), V (2kv) and the output projection's input (2q),
    plus a dropout mask (h); without FlashAttention also the softmax output and its
    dropout (5*a*s, or 2*a*s without dropout). The MLP keeps its input (2h) and, for
    a GeLU MLP, the GeLU input and output (4I) plus a dropout mask (h); for SwiGLU the
    gate, up, activated gate and product (8I). Each of the two norms keeps
    ``norm_bytes`` per element: its 16-bit input (2) in the paper; HF's RMSNorm
    upcasts, keeping an fp32 input and the bf16 normalised tensor (6).
    For a GPT layer (q = kv = h, I = 4h, GeLU, dropout, no flash, 2-byte norms) this
    is the paper's ``s*b*h*(34 + 5*a*s/h)``.
    """
    attention = 2 * h + 4 * q_dim + 4 * kv_dim + (h if dropout else 0)
    scores = 0 if flash else (5 if dropout else 2) * heads * s
    mlp = 2 * h + (8 * intermediate if gated_mlp else 4 * intermediate) + (h if dropout else 0)
    return float(s) * b * (attention + scores + mlp + 2 * norm_bytes * h)


def model_activation_bytes(shape: ModelShape, s: int, b: int, checkpointing: bool) -> float:
    """Activations of all layers: every layer's saved tensors, or with full recomputation each layer's
    input (2sbh) plus one layer's saved tensors while it is recomputed."""
    inter = shape.moe.expert_intermediate * shape.moe.experts_per_token if shape.moe else shape.intermediate_size
    per_layer = layer_activation_bytes(shape.hidden_size, shape.q_dim, shape.kv_dim, inter, shape.num_heads, s, b,
                                       norm_bytes=HF_RMSNORM_BYTES)
    if checkpointing:
        return shape.num_layers * 2.0 * s * b * shape.hidden_size + per_layer
    return shape.num_layers * per_layer


def logits_bytes(shape: ModelShape, s: int, b: int, fused: bool) -> float:
    """The loss's view of the vocabulary: ~0 with a fused linear-CE kernel, else 10 bytes a logit."""
    return 0.0 if fused else float(LOGIT_BYTES) * s * b * shape.vocab_size


# ----------------------------------------------------------------------------- training memory


@dataclass(frozen=True)
class TrainSetup:
    """One training configuration to size: what ``distill plan`` varies to find one that fits."""

    method: str  # full | lora | qlora
    parallelism: str  # ddp | zero3 | zero3_offload | fsdp
    gpus_per_node: int
    nodes: int
    gpu_memory_gb: float
    cpu_memory_gb_per_node: float
    max_length: int
    micro_batch: int
    gradient_checkpointing: bool
    fused_cross_entropy: bool
    lora_r: int = 16
    lora_targets: tuple[str, ...] = LORA_TARGETS

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass
class TrainMemory:
    """Per-GPU memory (GB) of one setup; ``fits`` compares ``total_gb`` with the usable GPU memory."""

    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    buffers_gb: float
    activations_gb: float
    activations_checkpointed_gb: float
    activations_full_gb: float
    logits_gb: float
    overhead_gb: float
    total_gb: float
    usable_gb: float
    cpu_gb_per_node: float
    trainable_parameters: int
    fits_gpu: bool
    fits_cpu: bool

    @property
    def fits(self) -> bool:
        return self.fits_gpu and self.fits_cpu


def lora_parameters(shape: ModelShape, r: int, targets: tuple[str, ...] = LORA_TARGETS) -> int:
    """Trainable LoRA parameters: r * (in + out) per targeted projection per layer."""
    h = shape.hidden_size
    dims = {"q_proj": (h, shape.q_dim), "k_proj": (h, shape.kv_dim), "v_proj": (h, shape.kv_dim),
            "o_proj": (shape.q_dim, h), "gate_proj": (h, shape.intermediate_size),
            "up_proj": (h, shape.intermediate_size), "down_proj": (shape.intermediate_size, h)}
    return shape.num_layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets if t in dims)


def _state_bytes(shape: ModelShape, setup: TrainSetup) -> tuple[float, float, float, int]:
    """(weights, gradients, optimizer) bytes of the whole model before sharding, and trainable params."""
    n = shape.parameters()
    if setup.method == "full":
        return 2.0 * n, 2.0 * n, 12.0 * n, n
    trainable = lora_parameters(shape, setup.lora_r, setup.lora_targets)
    if setup.method == "lora":
        base = 2.0 * n
    else:  # qlora: nf4 linear weights (0.5 byte + ~0.016 of double-quantised scales); the rest stays bf16
        dense = n - shape.embedding_parameters() - 2 * shape.hidden_size * shape.num_layers
        base = 0.516 * dense + 2.0 * (n - dense)
    return base + 2.0 * trainable, 2.0 * trainable, 12.0 * trainable, trainable


def train_memory(shape: ModelShape, setup: TrainSetup) -> TrainMemory:
    """Per-GPU memory of ``setup``: model states split by the parallelism, activations, logits, buffers."""
    weights, grads, optim, trainable = _state_bytes(shape, setup)
    world = setup.world
    cpu = 0.0
    if setup.parallelism == "ddp":
        buffers = 2 * 25e6 * 2  # two gradient buckets in flight
    elif setup.parallelism in ("zero3", "fsdp"):
        weights, grads, optim = weights / world, grads / world, optim / world
        buffers = 2 * 2.0 * shape.largest_unit_parameters()  # the gathered block and the prefetched next one
    else:  # zero3_offload: parameters and optimizer live in host RAM (+ fp32 gradients there)
        cpu = (weights + 2 * grads + optim) * setup.gpus_per_node / world
        weights = grads = optim = 0.0
        buffers = 2 * 2.0 * shape.largest_unit_parameters() + 2 * 5e8 * 2  # + reduce buckets
    s, b = setup.max_length, setup.micro_batch
    act_ckpt = model_activation_bytes(shape, s, b, checkpointing=True)
    act_full = model_activation_bytes(shape, s, b, checkpointing=False)
    activations = act_ckpt if setup.gradient_checkpointing else act_full
    logits = logits_bytes(shape, s, b, setup.fused_cross_entropy)
    total = (weights + grads + optim + buffers + activations + logits) / GB + CUDA_OVERHEAD_GB
    usable = setup.gpu_memory_gb * USABLE_FRACTION
    return TrainMemory(
        weights_gb=weights / GB, gradients_gb=grads / GB, optimizer_gb=optim / GB, buffers_gb=buffers / GB,
        activations_gb=activations / GB, activations_checkpointed_gb=act_ckpt / GB,
        activations_full_gb=act_full / GB, logits_gb=logits / GB, overhead_gb=CUDA_OVERHEAD_GB, total_gb=total,
        usable_gb=usable, cpu_gb_per_node=cpu / GB, trainable_parameters=trainable, fits_gpu=total <= usable,
        fits_cpu=cpu / GB <= setup.cpu_memory_gb_per_node * 0.9)


def fit_advice(shape: ModelShape, setup: TrainSetup, limit: int = 8) -> list[str]:
    """What would fit instead: single changes first, then pairs, each with the per-GPU total it gives."""
    singles = _alternatives(shape, setup)
    found = [(label, mem) for _, label, alt in singles if alt and (mem := train_memory(shape, alt)).fits]
    if not found:
        for i, (_, label1, alt1) in enumerate(singles):
            for kind2, _, _ in singles[i + 1:]:
                combined = _apply(shape, alt1, kind2) if alt1 else None
                if combined and (mem := train_memory(shape, combined[1])).fits:
                    found.append((f"{label1} + {combined[0]}", mem))
    return [f"{label}: {mem.total_gb:.1f} GB/GPU" + (f", {mem.cpu_gb_per_node:.0f} GB host RAM per node"
                                                     if mem.cpu_gb_per_node else "")
            for label, mem in found[:limit]]


def _alternatives(shape: ModelShape, setup: TrainSetup) -> list[tuple[str, str, TrainSetup | None]]:
    """Every change worth trying as (kind, label, setup); setup is None where no such change fits alone
    (more GPUs, a shorter context), which can still fit combined with another change."""
    kinds = ["checkpointing", "fused", "zero3", "zero3_offload", "nodes", "batch", "lora", "qlora", "length"]
    alts = []
    for kind in kinds:
        change = _apply(shape, setup, kind)
        if change:
            alts.append((kind, *change))
        elif kind == "nodes" or (kind == "length" and setup.max_length > 1024):
            alts.append((kind, kind, None))
    return alts


def _apply(shape: ModelShape, setup: TrainSetup, kind: str) -> tuple[str, TrainSetup] | None:
    """The config change of ``kind`` applied to ``setup`` as (label, new setup), or None if it does not apply."""
    if kind == "checkpointing" and not setup.gradient_checkpointing:
        return "student.gradient_checkpointing: true", replace(setup, gradient_checkpointing=True)
    if kind == "fused" and not setup.fused_cross_entropy:
        return ("a fused linear-cross-entropy loss (Liger; plan.train.fused_cross_entropy)",
                replace(setup, fused_cross_entropy=True))
    if kind in ("zero3", "zero3_offload") and setup.parallelism != kind and \
            not (kind == "zero3" and setup.parallelism in ("fsdp", "zero3_offload")):
        return f"plan.train.parallelism: {kind}", replace(setup, parallelism=kind)
    if kind == "nodes":
        nodes = _nodes_needed(shape, setup)
        if nodes:
            sharded = "zero3" if setup.parallelism == "ddp" else setup.parallelism
            return (f"more GPUs: plan.train.nodes: {nodes} ({nodes * setup.gpus_per_node} GPUs, {sharded})",
                    replace(setup, nodes=nodes, parallelism=sharded))
    if kind == "batch" and setup.micro_batch > 1:
        return (f"student.batch_size: 1 (and grad_accum x{setup.micro_batch})", replace(setup, micro_batch=1))
    if kind in ("lora", "qlora") and (setup.method == "full" or (setup.method, kind) == ("lora", "qlora")):
        return f"student.method: {kind}", replace(setup, method=kind)
    if kind == "length":
        length = _longest_length(shape, setup)
        if length:
            return f"student.max_length: {length}", replace(setup, max_length=length)
    return None


def _nodes_needed(shape: ModelShape, setup: TrainSetup, max_nodes: int = 64) -> int | None:
    """The fewest nodes (> the current count) on which sharded training fits, if any does."""
    parallelism = "zero3" if setup.parallelism == "ddp" else setup.parallelism
    for nodes in range(setup.nodes + 1, max_nodes + 1):
        if train_memory(shape, replace(setup, nodes=nodes, parallelism=parallelism)).fits:
            return nodes
    return None


def _longest_length(shape: ModelShape, setup: TrainSetup) -> int | None:
    """The longest power-of-two max_length (>= 1024, < the current one) that fits."""
    length = 1 << (setup.max_length.bit_length() - 1)
    if length == setup.max_length:
        length //= 2
    while length >= 1024:
        if train_memory(shape, replace(setup, max_length=length)).fits:
            return length
        length //= 2
    return None


# ----------------------------------------------------------------------------- time and cost


def train_flops_per_token(shape: ModelShape, context: int, method: str = "full") -> float:
    """Model FLOPs per trained token: 6N for full training (4N when frozen weights need no weight
    gradients, LoRA), plus causal attention, 2*L*s*q_dim forward, x3 for training."""
    matmul = (6.0 if method == "full" else 4.0) * shape.compute_parameters()
    attention = 3 * 2.0 * shape.num_layers * context * shape.q_dim
    return matmul + attention


@dataclass
class DatasetPlan:
    traces: int
    kept_examples: int
    tokens_per_example: int
    tokens_per_epoch: float
    epochs: float
    sequences_per_epoch: int
    global_batch: int
    steps: int


@dataclass
class StudentPlan:
    model: str
    parameters: int
    method: str
    setup: dict[str, Any]
    memory: TrainMemory
    advice: list[str]
    dataset: DatasetPlan
    tokens_per_second_per_gpu: float
    throughput_basis: str
    gpu_hours: float
    wall_hours: float
    cost_usd: float
    accelerate_config: str
    gpu: str = "GPUs"


@dataclass
class TeacherPlan:
    model: str
    parameters: int
    weight_bytes_per_param: float
    weights_gb: float
    kv_bytes_per_token: int
    kv_reserve_gb: float
    gpus_needed: int
    nodes_needed: int
    layout: str
    configured_gpus: int
    kv_capacity_tokens: float
    fits_configured: bool
    traces: int
    generated_tokens: float
    hours: float
    gpu_hours: float
    cost_usd: float
    gpu: str = "GPUs"


@dataclass
class PlanResult:
    name: str
    student: StudentPlan | None
    teacher: TeacherPlan | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.student:
            out["student"]["memory"]["fits"] = self.student.memory.fits
        return out

    def render(self) -> str:
        """The plain-text tables the CLI prints."""
        lines = [f"plan for {self.name}  (GB = 1e9 bytes; estimates from published shapes, not measurements)", ""]
        if self.student:
            lines += _student_lines(self.student) + [""]
        if self.teacher:
            lines += _teacher_lines(self.teacher) + [""]
        if self.notes:
            lines += ["notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- the plan of a run config


def plan_run(config: Any) -> PlanResult:
    """Size the student training and the teacher sampling of a validated ``RunConfig``."""
    notes: list[str] = []
    student = _plan_student(config, notes)
    teacher = _plan_teacher(config, notes)
    return PlanResult(config.name, student, teacher, notes)


def _student_shape(config: Any) -> ModelShape:
    st = config.student
    if st.model != "toy":
        return model_shape(st.model)
    toy = st.toy
    vocab = config.teacher.toy.vocab_size + 3  # + the chat and think tokens the toy tokenizer adds
    return ModelShape("toy student", toy.hidden_size, toy.num_layers, toy.num_heads, toy.num_kv_heads,
                      toy.intermediate_size, vocab, tie_word_embeddings=True, qkv_bias=toy.architecture == "qwen2",
                      max_position_embeddings=2048, source="student.toy")


def train_setup(config: Any) -> TrainSetup:
    """The TrainSetup a run config describes (student section + plan.train)."""
    st, res = config.student, config.plan.train
    return TrainSetup(method=st.method, parallelism=res.parallelism, gpus_per_node=res.gpus_per_node,
                      nodes=res.nodes, gpu_memory_gb=res.gpu_memory_gb,
                      cpu_memory_gb_per_node=res.cpu_memory_gb_per_node, max_length=st.max_length,
                      micro_batch=st.batch_size, gradient_checkpointing=st.gradient_checkpointing,
                      fused_cross_entropy=res.fused_cross_entropy, lora_r=st.lora_r,
                      lora_targets=tuple(st.lora_target_modules))


def dataset_plan(config: Any, world: int) -> DatasetPlan:
    """Traces the teacher writes, examples the filter keeps, tokens, sequences and optimizer steps."""
    st, plan = config.student, config.plan
    traces = config.problems.train_size * config.teacher.samples_per_problem
    kept = int(traces * plan.keep_rate)
    if config.filter.max_per_problem:
        kept = min(kept, config.problems.train_size * config.filter.max_per_problem)
    per_example = min(plan.avg_prompt_tokens + plan.avg_completion_tokens, st.max_length)
    tokens = float(kept) * per_example
    sequences = math.ceil(tokens / st.max_length) if st.packing else kept
    global_batch = st.batch_size * st.grad_accum * world
    steps = st.max_steps if st.max_steps > 0 else math.ceil(math.ceil(sequences / global_batch) * st.epochs)
    epochs = st.epochs if st.max_steps <= 0 else steps * global_batch / max(1, sequences)
    return DatasetPlan(traces, kept, per_example, tokens, epochs, sequences, global_batch, steps)


def _plan_student(config: Any, notes: list[str]) -> StudentPlan | None:
    try:
        shape = _student_shape(config)
    except UnknownModelError as exc:
        notes.append(f"student: {exc}")
        return None
    setup = train_setup(config)
    memory = train_memory(shape, setup)
    advice = [] if memory.fits else fit_advice(shape, setup)
    data = dataset_plan(config, setup.world)
    res = config.plan.train
    if res.tokens_per_second_per_gpu:
        tps, basis = res.tokens_per_second_per_gpu, "plan.train.tokens_per_second_per_gpu"
    else:
        flops = train_flops_per_token(shape, data.tokens_per_example, setup.method)
        tps = res.mfu * res.peak_tflops * 1e12 / flops
        basis = f"MFU {res.mfu:.2f} of {res.peak_tflops:.0f} TFLOPS, {flops / 1e9:.1f} GFLOPs/token"
    gpu_hours = data.tokens_per_epoch * data.epochs / tps / 3600
    rope = config.student.rope
    positions = rope.max_position_embeddings if rope and rope.max_position_embeddings else shape.max_position_embeddings
    if config.student.max_length > positions:
        notes.append(f"student: {shape.name} was trained with {shape.max_position_embeddings} positions; at "
                     f"max_length {config.student.max_length} set student.rope (theta, max_position_embeddings) first (Open-R1 "
                     "trained OpenR1-Distill-7B from open-r1/Qwen2.5-Math-7B-RoPE-300k)")
    return StudentPlan(
        model=shape.name, parameters=shape.parameters(), method=setup.method, setup=asdict(setup), memory=memory,
        advice=advice, dataset=data, tokens_per_second_per_gpu=tps, throughput_basis=basis, gpu_hours=gpu_hours,
        wall_hours=gpu_hours / setup.world, cost_usd=gpu_hours * res.usd_per_gpu_hour,
        accelerate_config=accelerate_config_for(setup), gpu=res.gpu)


def oom_remedies(config: Any) -> list[str]:
    """What the plan says would fit, for the trainer's out-of-memory message.

    Unlike the plan's own advice (given only when the planned setup does not fit), this always
    lists the alternatives that fit: the run did not, whatever the estimate said. Empty when the
    student's shape is unknown (the trainer then gives generic remedies).
    """
    try:
        shape = _student_shape(config)
    except UnknownModelError:
        return []
    return fit_advice(shape, train_setup(config))


def accelerate_config_for(setup: TrainSetup) -> str:
    """The shipped accelerate config that launches this setup."""
    name = {"ddp": "ddp", "zero3": "zero3", "zero3_offload": "zero3-offload", "fsdp": "fsdp2"}[setup.parallelism]
    if setup.nodes > 1 and setup.parallelism == "zero3":
        name = "multinode-zero3"
    return f"configs/accelerate/{name}.yaml"


def teacher_weight_bytes(shape: ModelShape, dtype: str, quantization: str | None) -> float:
    """Bytes per parameter as served: FP8 checkpoints (R1) keep embeddings and head in BF16."""
    if (quantization and "fp8" in quantization.lower()) or (dtype == "auto" and shape.native_dtype == "fp8"):
        return 1.0 + shape.embedding_parameters() / shape.parameters()
    return {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "auto": 2.0}[dtype]


def teacher_gpus(need_gb: float, usable_per_gpu_gb: float, gpus_per_node: int) -> tuple[int, int]:
    """(GPUs, nodes): the smallest power of two whose memory holds ``need_gb`` (tensor parallel sizes are
    powers of two), filled up to whole nodes once it spans more than one."""
    gpus = 1
    while gpus * usable_per_gpu_gb < need_gb:
        gpus *= 2
        if gpus > 4096:
            break
    if gpus > gpus_per_node:
        nodes = math.ceil(gpus / gpus_per_node)
        return nodes * gpus_per_node, nodes
    return gpus, 1


def _plan_teacher(config: Any, notes: list[str]) -> TeacherPlan | None:
    t, res, plan = config.teacher, config.plan.teacher, config.plan
    if t.model == "toy" or t.backend not in ("vllm", "transformers"):
        notes.append(f"teacher: {t.model} via {t.backend} needs no GPU plan" if t.model == "toy" else
                     f"teacher: served over HTTP ({t.backend}); its cost comes from the provider's prices")
        return None
    try:
        shape = model_shape(t.model)
    except UnknownModelError as exc:
        notes.append(f"teacher: {exc}")
        return None
    per_param = teacher_weight_bytes(shape, t.dtype, t.vllm.quantization)
    weights = shape.parameters() * per_param / GB
    kv_token = shape.kv_cache_bytes_per_token()
    context = (t.vllm.max_model_len or (t.max_tokens + plan.avg_prompt_tokens))
    kv_reserve = res.min_concurrent_sequences * context * kv_token / GB
    usable = res.gpu_memory_gb * t.vllm.gpu_memory_utilization
    gpus, nodes = teacher_gpus(weights + kv_reserve, usable, res.gpus_per_node)
    configured = t.vllm.tensor_parallel_size * t.vllm.pipeline_parallel_size
    traces = config.problems.train_size * t.samples_per_problem
    tokens = float(traces) * plan.avg_completion_tokens
    hours = tokens / (res.tokens_per_second * res.replicas) / 3600
    engine_gpus = max(gpus, configured)
    kv_capacity = (engine_gpus * usable - weights) * GB / kv_token
    layout = (f"tensor_parallel_size {min(gpus, res.gpus_per_node)} x pipeline_parallel_size {nodes}"
              if nodes > 1 else f"tensor_parallel_size {gpus}")
    return TeacherPlan(
        model=shape.name, parameters=shape.parameters(), weight_bytes_per_param=per_param, weights_gb=weights,
        kv_bytes_per_token=kv_token, kv_reserve_gb=kv_reserve, gpus_needed=gpus, nodes_needed=nodes, layout=layout,
        configured_gpus=configured, kv_capacity_tokens=max(0.0, kv_capacity), fits_configured=configured >= gpus,
        traces=traces, generated_tokens=tokens, hours=hours, gpu_hours=hours * engine_gpus * res.replicas,
        cost_usd=hours * engine_gpus * res.replicas * res.usd_per_gpu_hour, gpu=res.gpu)


# ----------------------------------------------------------------------------- plain-text rendering


def _count(n: float) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _row(label: str, value: float, extra: str = "") -> str:
    return f"  {label:<38}{value:>9.2f}" + (f"   {extra}" if extra else "")


def _student_lines(p: StudentPlan) -> list[str]:
    m, su, d = p.memory, p.setup, p.dataset
    method = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA (nf4 base)"}[p.method]
    trainable = "" if p.method == "full" else f" ({m.trainable_parameters / 1e6:.1f} M trainable)"
    ckpt = "on" if su["gradient_checkpointing"] else "off"
    other = m.activations_full_gb if su["gradient_checkpointing"] else m.activations_checkpointed_gb
    verdict = "fits" if m.fits else ("does NOT fit" if not m.fits_gpu else "does NOT fit in host RAM")
    states = ("(bf16)", "(bf16)", "(fp32 master, m, v)") if p.method == "full" else \
        ("(frozen base + adapters)", "(adapters)", "(adapters, fp32 m, v)")
    if su["parallelism"] == "zero3_offload":
        states = ("(offloaded to host RAM)",) * 3
    lines = [
        f"student  {p.model}: {_count(p.parameters)} parameters, {method}{trainable}",
        f"         {su['parallelism']} on {su['nodes']} node(s) x {su['gpus_per_node']} {p.gpu} "
        f"({su['gpu_memory_gb']:.0f} GB each), max_length {su['max_length']}, micro-batch {su['micro_batch']}, "
        f"gradient checkpointing {ckpt}",
        f"  {'per-GPU memory':<38}{'GB':>9}",
        _row("weights " + states[0], m.weights_gb),
        _row("gradients " + states[1], m.gradients_gb),
        _row("optimizer " + states[2], m.optimizer_gb),
        _row("gathered layers / comm buckets", m.buffers_gb),
        _row(f"activations (checkpointing {ckpt})", m.activations_gb,
             f"checkpointing {'off' if ckpt == 'on' else 'on'}: {other:.2f}"),
        _row("logits in the loss" + (" (fused: none)" if su["fused_cross_entropy"] else " (fp32)"), m.logits_gb),
        _row("CUDA context, NCCL", m.overhead_gb),
        _row("total", m.total_gb, f"of {m.usable_gb:.1f} usable -> {verdict}"),
    ]
    if m.cpu_gb_per_node:
        lines.append(_row("host RAM per node (offloaded states)", m.cpu_gb_per_node,
                          f"of {su['cpu_memory_gb_per_node']:.0f}"))
    if not m.fits:
        lines += ["  would fit:"] + ([f"    - {a}" for a in p.advice] or
                                     ["    - nothing tried fits: a smaller model or bigger GPUs"])
    lines += [
        f"  launch: accelerate launch --config_file {p.accelerate_config}",
        f"  data: {d.traces:,} traces -> {d.kept_examples:,} kept x {d.tokens_per_example:,} tokens = "
        f"{d.tokens_per_epoch / 1e9:.2f} B tokens/epoch; {d.epochs:.3g} epochs; global batch {d.global_batch} "
        f"-> {d.steps:,} steps",
        f"  time: {p.tokens_per_second_per_gpu:,.0f} tokens/s/GPU ({p.throughput_basis}) -> {p.gpu_hours:,.0f} "
        f"GPU-hours, {p.wall_hours:,.1f} h on {su['gpus_per_node'] * su['nodes']} GPUs, ${p.cost_usd:,.0f}",
    ]
    return lines


def _teacher_lines(t: TeacherPlan) -> list[str]:
    verdict = "ok" if t.fits_configured else f"too few: needs {t.gpus_needed}"
    return [
        f"teacher  {t.model}: {t.parameters / 1e9:.0f} B parameters at {t.weight_bytes_per_param:.2f} bytes "
        f"= {t.weights_gb:,.0f} GB of weights",
        f"  KV cache {t.kv_bytes_per_token / 1e3:.1f} KB/token; reserve {t.kv_reserve_gb:,.0f} GB "
        "(plan.teacher.min_concurrent_sequences full-length sequences)",
        f"  needs {t.gpus_needed} x {t.gpu} ({t.nodes_needed} node(s)): {t.layout}; configured "
        f"{t.configured_gpus} (teacher.vllm tensor x pipeline parallel) -> {verdict}",
        f"  KV room with {max(t.gpus_needed, t.configured_gpus)} GPUs: {t.kv_capacity_tokens / 1e6:.1f} M tokens",
        f"  {t.traces:,} traces x {t.generated_tokens / max(1, t.traces):,.0f} tokens = "
        f"{t.generated_tokens / 1e9:.2f} B tokens -> {t.hours:,.1f} h, {t.gpu_hours:,.0f} GPU-hours, "
        f"${t.cost_usd:,.0f}",
    ]
