"""``distill plan``: will this run fit, how long will it take, what will it cost -- before renting GPUs.

Everything is arithmetic on published model shapes (a built-in table, or a local
``config.json``); nothing is downloaded and torch is not imported.

This module sizes a validated run config; the pieces live beside it: the known model
shapes (``plan_shapes``), the memory and FLOPs arithmetic and its sources
(``plan_memory``), the what-would-fit search (``plan_advice``) and the result tables
(``plan_report``). Every name they define is importable from here.

Units: GB = 1e9 bytes throughout (GPU capacities in the config are GB too).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from distill.students.plan_advice import fit_advice
from distill.students.plan_memory import (CUDA_OVERHEAD_GB, GB, HF_RMSNORM_BYTES, LOGIT_BYTES, LORA_TARGETS,
                                          PARALLELISMS, USABLE_FRACTION, TrainMemory, TrainSetup,
                                          layer_activation_bytes, logits_bytes, lora_parameters,
                                          model_activation_bytes, train_flops_per_token, train_memory)
from distill.students.plan_report import DatasetPlan, PlanResult, StudentPlan, TeacherPlan
from distill.students.plan_shapes import (ALIASES, MLA, MODELS, ModelShape, MoE, UnknownModelError, model_shape,
                                          shape_from_config)

__all__ = [
    "plan_run", "train_setup", "dataset_plan", "trace_bounds", "oom_remedies", "accelerate_config_for",
    "teacher_weight_bytes", "teacher_gpus", "fit_advice", "CUDA_OVERHEAD_GB", "GB", "HF_RMSNORM_BYTES",
    "LOGIT_BYTES", "LORA_TARGETS",
    "PARALLELISMS", "USABLE_FRACTION", "TrainMemory", "TrainSetup", "layer_activation_bytes", "logits_bytes",
    "lora_parameters", "model_activation_bytes", "train_flops_per_token", "train_memory", "DatasetPlan",
    "PlanResult", "StudentPlan", "TeacherPlan", "ALIASES", "MLA", "MODELS", "ModelShape", "MoE",
    "UnknownModelError", "model_shape", "shape_from_config",
]


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


def trace_bounds(config: Any) -> tuple[int, int | None]:
    """(the teacher traces the plans are sized for, the fewest it may write; None when that is the same number).

    ``fixed`` sampling writes samples_per_problem per problem. ``adaptive`` (docs/adaptive.md) stops a problem
    once it has target_per_problem verified traces, so it writes between target_per_problem (every sample
    verified) and max_per_problem (none verified) per problem; the count depends on the teacher's pass rates,
    which a plan cannot know, so time, cost and memory are sized for the most and the fewest is reported beside.
    """
    t, problems = config.teacher, config.problems.train_size
    if t.sampling.mode == "adaptive":
        return problems * t.sampling.max_per_problem, problems * t.sampling.target_per_problem
    return problems * t.samples_per_problem, None


def dataset_plan(config: Any, world: int) -> DatasetPlan:
    """Traces the teacher writes, examples the filter keeps, tokens, sequences and optimizer steps."""
    st, plan = config.student, config.plan
    traces, traces_min = trace_bounds(config)
    kept = int(traces * plan.keep_rate)
    if config.filter.max_per_problem:
        kept = min(kept, config.problems.train_size * config.filter.max_per_problem)
    per_example = min(plan.avg_prompt_tokens + plan.avg_completion_tokens, st.max_length)
    tokens = float(kept) * per_example
    sequences = math.ceil(tokens / st.max_length) if st.packing else kept
    global_batch = st.batch_size * st.grad_accum * world
    steps = st.max_steps if st.max_steps > 0 else math.ceil(math.ceil(sequences / global_batch) * st.epochs)
    epochs = st.epochs if st.max_steps <= 0 else steps * global_batch / max(1, sequences)
    return DatasetPlan(traces, kept, per_example, tokens, epochs, sequences, global_batch, steps, traces_min)


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
    traces, traces_min = trace_bounds(config)
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
        cost_usd=hours * engine_gpus * res.replicas * res.usd_per_gpu_hour, gpu=res.gpu, traces_min=traces_min)
