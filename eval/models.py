"""The models an eval evaluates and the sampler each runs in: the teacher as configured, every student
served as itself (its own context, parallelism and dtype; ``eval.serving``), the quantised artifacts in
their own consumers (transformers for nf4, llama.cpp for the GGUF)."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.stage import Context
from distill.students.arch_configs import max_positions, model_config, valid_tensor_parallel_sizes, with_rope_changes

log = logging.getLogger(__name__)

# The quantised artifacts, the backend that runs each in its consumer, and the export switch behind it.
ARTIFACT_BACKENDS = {"student_4bit": "transformers", "student_8bit": "transformers", "student_gguf": "llamacpp"}
# tokens of chat-template text around a prompt (role markers, BOS, a prefilled <think>)
GGUF_TEMPLATE_ALLOWANCE = 256
# tokens a served context keeps for the prompt by default (the recipes' teacher: 34,816 = 32,768 + 2,048)
PROMPT_ROOM_TOKENS = 2048
# share of one GPU the weights may take when eval picks a tensor-parallel size (the rest: KV cache, activations)
WEIGHT_SHARE = 0.5


# The export setting that makes each quantised artifact (off: false or null).
ARTIFACT_SWITCHES = {"student_4bit": "nf4", "student_8bit": "int8", "student_gguf": "gguf_4bit"}


def _artifact_enabled(config: Any, label: str) -> bool:
    switch = ARTIFACT_SWITCHES.get(label)
    return switch is None or getattr(config.export, switch) not in (False, None)


def disabled_artifacts(config: Any) -> dict[str, str]:
    """Models ``eval.models`` names whose export is switched off, with why: recorded as skipped, so an eval
    table without them says so instead of leaving them out in silence."""
    return {label: f"not exported (export.{ARTIFACT_SWITCHES[label]} is off)" for label in config.eval.models
            if not _artifact_enabled(config, label)}


def _gguf_4bit_path(ctx: Context) -> str:
    info = json.loads((ctx.store.stage_dir("export") / "export.json").read_text()).get("gguf_4bit") or {}
    if not info.get("path"):
        raise UserError("eval: student_gguf needs the export stage's 4-bit GGUF (export.gguf_4bit)")
    return str(info["path"])


def eval_models(ctx: Context) -> dict[str, str]:
    """Label -> model folder (or GGUF file) for every model the eval config names that exists in this run."""
    from distill.students.stage import student_base
    from distill.teachers.models import teacher_path

    available = {
        "teacher": lambda: teacher_path(ctx),
        "student_base": lambda: student_base(ctx),
        "student": lambda: str(ctx.store.stage_dir("train") / "model"),
        "student_4bit": lambda: str(ctx.store.stage_dir("export") / "nf4"),
        "student_8bit": lambda: str(ctx.store.stage_dir("export") / "int8"),
        "student_gguf": lambda: _gguf_4bit_path(ctx),
    }
    models = {}
    for label in ctx.config.eval.models:
        if not _artifact_enabled(ctx.config, label):
            continue
        if label == "teacher" and ctx.config.teacher.kind == "dataset":
            log.info("eval: teacher.kind is 'dataset' (published traces); there is no teacher model to evaluate")
            continue
        models[label] = available[label]()
    return models


def gguf_context_size(problems: list[Any], max_generation: int) -> int:
    """llama.cpp's ``n_ctx`` for an eval: the longest prompt plus the longest generation.

    Why not the model's trained length: its KV cache can be tens of GB.  Why not a fixed
    margin: a prompt longer than it would leave less than ``max_tokens`` to generate.
    A prompt's token count is bounded by its UTF-8 byte count (a byte-level BPE token
    covers at least one byte), so the bound needs no tokenizer.
    """
    from distill.problems import build_prompt

    longest = max((len(m["content"].encode("utf-8")) for p in problems for m in build_prompt(p)), default=0)
    return longest + GGUF_TEMPLATE_ALLOWANCE + max_generation


def _longest_generation(cfg: Any) -> int:
    """The most tokens any eval of this config generates: the benchmarks' budgets, or a budget-sweep
    continuation (up to the budget, the forced </think>, the answer)."""
    longest = max([b.max_tokens or cfg.max_tokens for b in cfg.benchmarks] + [cfg.max_tokens])
    if cfg.budget_sweep is not None:
        sweep = cfg.budget_sweep
        longest = max(longest, max(sweep.budgets) + sweep.answer_tokens + 16
                      + len(sweep.answer_prefix.encode("utf-8")))
    return longest


def eval_sampler(ctx: Context, label: str, path: str, benches: list[tuple[Any, Any]]) -> tuple[Any, str, str]:
    """(sampler, backend, dtype) for one model: quantised artifacts run in their own consumer, every other
    model with its own serving options (:func:`serving_options`), not the teacher's."""
    from distill.teachers.models import config_sampler

    cfg = ctx.config.eval
    backend = ARTIFACT_BACKENDS.get(label, cfg.backend)
    # served_model names the teacher; other models are asked for by their path
    openai = {**ctx.config.teacher.openai.model_dump(), **({} if label == "teacher" else {"served_model": None})}
    if backend == "llamacpp":
        from distill.teachers.sampler import make_sampler

        n_ctx = gguf_context_size([p for _, loaded in benches for p in loaded.problems], _longest_generation(cfg))
        return make_sampler("llamacpp", path, n_ctx=n_ctx), backend, f"gguf:{Path(path).stem}"
    serving = serving_options(ctx.config, label, model_config(path))
    dtype = runtime_dtype(serving.dtype, backend, keep_auto=label == "teacher")
    sampler = config_sampler(backend, path, cfg.batch_size, dtype, serving.vllm, openai)
    return sampler, backend, dtype


@dataclass(frozen=True)
class Serving:
    """One model's resolved vLLM options for eval, and which of them the config set explicitly."""

    label: str
    vllm: dict[str, Any]
    dtype: str
    explicit: frozenset[str]
    model_config: dict[str, Any] | None


def eval_model_config(config: Any, label: str) -> dict[str, Any] | None:
    """The config.json a label will be served with, before the run exists: the teacher's, the base's, the
    base's after student.rope for the trained student and its exports, an extra model's own."""
    if label in config.eval.extra_models:
        return model_config(config.eval.extra_models[label])
    if label == "teacher":
        return None if config.teacher.model == "toy" else model_config(config.teacher.model)
    base = None if config.student.model == "toy" else model_config(config.student.model)
    if base is None or label == "student_base" or config.student.rope is None:
        return base
    rope = config.student.rope
    return with_rope_changes(base, rope.theta, rope.max_position_embeddings,
                             rope.scaling.model_dump() if rope.scaling else None)


def serving_options(config: Any, label: str, model_cfg: dict[str, Any] | None) -> Serving:
    """The vLLM options eval serves ``label`` with: eval.serving[label] over defaults from the model itself.

    The teacher keeps teacher.vllm and teacher.dtype.  Any other model gets its own context (its
    positions after RoPE extension, capped at what the eval can use), the smallest tensor-parallel
    size that splits its heads and fits its weights on one of plan.teacher's GPUs, and dtype auto.
    """
    teacher_vllm = config.teacher.vllm.model_dump()
    if label == "teacher":
        options, dtype = dict(teacher_vllm), config.teacher.dtype
    else:
        options = {**teacher_vllm, "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "quantization": None,
                   "max_model_len": None}
        dtype = "auto"
        if model_cfg is not None:
            options["tensor_parallel_size"] = default_tensor_parallel(model_cfg, config.plan.teacher)
            options["max_model_len"] = min(max_positions(model_cfg),
                                           _longest_generation(config.eval) + PROMPT_ROOM_TOKENS)
    set_here = config.eval.serving[label].model_dump(exclude_none=True) if label in config.eval.serving else {}
    explicit = frozenset(set_here)
    dtype = set_here.pop("dtype", dtype)
    options.update(set_here)
    return Serving(label, options, dtype, explicit, model_cfg)


def default_tensor_parallel(model_cfg: dict[str, Any], gpus: Any) -> int:
    """The smallest tensor-parallel size vLLM can split the model into whose bf16 weights take at most
    WEIGHT_SHARE of one GPU of ``gpus`` (plan.teacher), leaving the rest for the KV cache."""
    from distill.students.plan_shapes import shape_from_config

    weight_bytes = shape_from_config(model_cfg).parameters() * 2
    sizes = valid_tensor_parallel_sizes(model_cfg, gpus.gpus_per_node)
    for tp in sizes:
        if weight_bytes / tp <= WEIGHT_SHARE * gpus.gpu_memory_gb * 1e9:
            return tp
    return sizes[-1]


def runtime_dtype(dtype: str, backend: str, keep_auto: bool = False) -> str:
    """A concrete dtype for ``auto`` on this machine: bf16 on a GPU with bf16, fp16 on one without, float32 on
    CPU.  vLLM keeps the teacher's ``auto`` (its checkpoint's own, FP8 for R1) on a GPU."""
    if dtype != "auto":
        return dtype
    try:
        import torch
    except ImportError:
        return "auto"
    if not torch.cuda.is_available():
        return "float32"
    if keep_auto and backend == "vllm":
        return "auto"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def clamp_max_tokens(config: Any, label: str, path: str, params: Any, problems: list[Any]) -> Any:
    """``params`` with max_tokens cut to what the served context leaves after the longest prompt (vLLM only).

    vLLM refuses a request whose prompt plus max_tokens exceeds max_model_len; a student_base of
    4,096 positions cannot generate DeepSeek's 32,768 tokens.  The cut is logged and, being in
    ``params``, recorded in the result's protocol.
    """
    if ARTIFACT_BACKENDS.get(label, config.eval.backend) != "vllm":
        return params
    context = serving_options(config, label, model_config(path)).vllm.get("max_model_len")
    if not context:
        return params
    room = gguf_context_size(problems, 0)
    allowed = context - room
    if allowed < 1:
        raise UserError(f"eval.serving.{label}.max_model_len: {context} tokens leave no room to generate after "
                        f"the longest prompt (about {room} tokens); raise it or use shorter prompts")
    if params.max_tokens <= allowed:
        return params
    log.warning("eval: %s serves %d tokens of context; max_tokens %d cut to %d after the longest prompt (%d)",
                label, context, params.max_tokens, allowed, room)
    return dataclasses.replace(params, max_tokens=allowed)
