"""Per-GPU training memory and FLOPs of one setup: the arithmetic behind ``distill plan``.

The estimates follow two standard accountings:

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

from dataclasses import dataclass

from distill.students.plan_shapes import ModelShape

GB = 1e9
CUDA_OVERHEAD_GB = 2.5  # CUDA context, cuBLAS workspaces, NCCL buffers
USABLE_FRACTION = 0.95  # allocator fragmentation: plan to fill at most 95% of a GPU
LOGIT_BYTES = 10  # bf16 logits + fp32 upcast + fp32 log-softmax kept for backward
HF_RMSNORM_BYTES = 6  # transformers' RMSNorm keeps an fp32 copy of its input and the bf16 normalised tensor
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # distill.students.trainer.TrainSettings default
PARALLELISMS = ("ddp", "zero3", "zero3_offload", "fsdp")


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


# ----------------------------------------------------------------------------- time and cost


def train_flops_per_token(shape: ModelShape, context: int, method: str = "full") -> float:
    """Model FLOPs per trained token: 6N for full training (4N when frozen weights need no weight
    gradients, LoRA), plus causal attention, 2*L*s*q_dim forward, x3 for training."""
    matmul = (6.0 if method == "full" else 4.0) * shape.compute_parameters()
    attention = 3 * 2.0 * shape.num_layers * context * shape.q_dim
    return matmul + attention
