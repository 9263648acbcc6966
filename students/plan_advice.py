"""What would fit instead: the changes ``distill plan`` (and the trainer's out-of-memory message) suggest.

Each alternative is one config change re-sized with :func:`train_memory`; single changes come
first, then pairs, so the advice names the smallest step that makes the run fit.
"""

from __future__ import annotations

from dataclasses import replace

from distill.students.plan_memory import TrainSetup, train_memory
from distill.students.plan_shapes import ModelShape


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
