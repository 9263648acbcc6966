"""The results of ``distill plan`` and their plain-text tables (what the CLI prints).

``distill.students.plan`` fills these dataclasses; ``PlanResult.to_dict`` is the JSON form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distill.students.plan_memory import TrainMemory


@dataclass
class DatasetPlan:
    """The data side of the student run: traces, kept examples, tokens and optimizer steps."""

    traces: int
    kept_examples: int
    tokens_per_example: int
    tokens_per_epoch: float
    epochs: float
    sequences_per_epoch: int
    global_batch: int
    steps: int
    traces_min: int | None = None  # adaptive sampling: the fewest traces (target_per_problem each); else None


@dataclass
class StudentPlan:
    """The student's training: per-GPU memory, what would fit instead, time and cost."""

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
    """The teacher's sampling: GPUs to hold weights and KV cache, time and cost."""

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
    traces_min: int | None = None  # adaptive sampling: the fewest traces; the figures above are for ``traces``


@dataclass
class PlanResult:
    """Both plans of one run config, plus notes on what could not be planned."""

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
        f"  data: {_traces(d.traces, d.traces_min)} -> {d.kept_examples:,} kept x {d.tokens_per_example:,} "
        "tokens = "
        f"{d.tokens_per_epoch / 1e9:.2f} B tokens/epoch; {d.epochs:.3g} epochs; global batch {d.global_batch} "
        f"-> {d.steps:,} steps",
        f"  time: {p.tokens_per_second_per_gpu:,.0f} tokens/s/GPU ({p.throughput_basis}) -> {p.gpu_hours:,.0f} "
        f"GPU-hours, {p.wall_hours:,.1f} h on {su['gpus_per_node'] * su['nodes']} GPUs, ${p.cost_usd:,.0f}",
    ]
    return lines


def _traces(most: int, fewest: int | None) -> str:
    """``N traces``, or for adaptive sampling the upper bound the plan is sized for and the lower one."""
    if fewest is None:
        return f"{most:,} traces"
    return (f"{most:,} traces (adaptive sampling: at most max_per_problem per problem, the figures here; at least "
            f"target_per_problem, {fewest:,})")


def _teacher_lines(t: TeacherPlan) -> list[str]:
    verdict = "ok" if t.fits_configured else f"too few: needs {t.gpus_needed}"
    fewest = [] if t.traces_min is None else [
        f"  adaptive sampling: sized for max_per_problem samples per problem (no problem verified early); at "
        f"target_per_problem ({t.traces_min:,} traces, every sample verified) "
        f"{t.generated_tokens * t.traces_min / max(1, t.traces) / 1e9:.2f} B tokens, "
        f"${t.cost_usd * t.traces_min / max(1, t.traces):,.0f}"]
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
    ] + fewest
