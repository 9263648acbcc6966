"""Static full-scale checks: what a recipe asks of the real models, checked against their real configs.

A run that asks vLLM for tensor parallelism its heads cannot split, for more positions than the model
has, for a generation that leaves no room for the prompt, for bf16 on GPUs without it, for an
accelerate config that transformers refuses beside the student section, or for a GGUF export the
writer cannot make, fails hours or days in -- on the cluster.  These checks read the models'
``config.json`` (a local folder's, else the published one, ``distill.students.arch_configs``) and the
shipped accelerate config the plan names, and return one line per problem naming the config path and
the fix.  ``distill validate`` and the pipeline's up-front checks (``distill.runner.check_all``) run them.
A model with no known config (``toy``, an API model) is not checked.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.errors import ConfigError

if TYPE_CHECKING:
    from distill.config import RunConfig

log = logging.getLogger(__name__)

# The least a served context must keep for the prompt and chat template beside max_tokens.
MIN_PROMPT_TOKENS = 512
# GPUs without bf16 (compute capability below 8.0), matched against plan.*.gpu labels.
NO_BF16_GPU = re.compile(r"\b(V100|T4|P100|P40|P4|K80|M60|TITAN ?V|RTX ?20\d\d|QUADRO ?RTX|GTX)\b", re.IGNORECASE)
REPO_ROOT = Path(__file__).resolve().parent.parent


def scale_errors(config: "RunConfig") -> list[str]:
    """Every full-scale problem of this config, one line each (empty when there is none)."""
    found = [*_teacher_serving_errors(config), *_eval_serving_errors(config), *_dtype_errors(config),
             *_accelerate_errors(config), *_gguf_errors(config)]
    return list(dict.fromkeys(found))  # the teacher's own serving problems are the eval's too: once


def check_scale(config: "RunConfig") -> None:
    """Raise ConfigError with the first full-scale problem (and how many more there are)."""
    errors = scale_errors(config)
    if errors:
        more = f" (and {len(errors) - 1} more full-scale problem(s))" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more)


def served_model_errors(where: str, model: str, cfg: dict[str, Any], options: dict[str, Any],
                        max_tokens: tuple[str, int] | None = None) -> list[str]:
    """Problems of serving ``model`` (its config.json ``cfg``) on vLLM with ``options`` (config path ``where``);
    ``max_tokens`` is (its config path, value) when the generation must fit the context as set."""
    from distill.students.arch_configs import max_positions, tensor_parallel_problem, valid_tensor_parallel_sizes

    out = []
    tp = int(options.get("tensor_parallel_size") or 1)
    why = tensor_parallel_problem(cfg, tp)
    if why:
        fits = ", ".join(str(n) for n in valid_tensor_parallel_sizes(cfg, max(tp, 8)))
        out.append(f"{where}.tensor_parallel_size: {tp} cannot split {model}: {why}; use one of {fits}")
    pp = int(options.get("pipeline_parallel_size") or 1)
    if pp > int(cfg.get("num_hidden_layers") or pp):
        out.append(f"{where}.pipeline_parallel_size: {pp} stages for {model}'s {cfg['num_hidden_layers']} layers; "
                   "use at most one stage per layer")
    positions = max_positions(cfg)
    length = options.get("max_model_len")
    if length and int(length) > positions:
        out.append(f"{where}.max_model_len: {length} exceeds {model}'s {positions} positions (after RoPE "
                   f"scaling); set it to at most {positions}, or extend the model's RoPE first")
    context = int(length or positions)
    if max_tokens is not None and max_tokens[1] + MIN_PROMPT_TOKENS > context:
        out.append(f"{max_tokens[0]}: {max_tokens[1]} leaves no room for the prompt in the {context}-token context "
                   f"{where} serves {model} with; lower it to at most {context - MIN_PROMPT_TOKENS} or raise "
                   f"{where}.max_model_len")
    return out


def _teacher_serving_errors(config: "RunConfig") -> list[str]:
    """The teacher as vLLM serves it: in process (backend vllm) or behind `distill teacher serve`."""
    from distill.students.arch_configs import model_config

    t = config.teacher
    if t.kind != "model" or t.model == "toy" or t.backend not in ("vllm", "openai"):
        return []
    cfg = model_config(t.model)
    if cfg is None:
        return []
    return served_model_errors("teacher.vllm", t.model, cfg, t.vllm.model_dump(), ("teacher.max_tokens", t.max_tokens))


def _eval_serving_errors(config: "RunConfig") -> list[str]:
    """Each model the eval serves on vLLM, with the options eval resolves for it (eval.serving or derived)."""
    from distill.eval.models import ARTIFACT_BACKENDS, eval_model_config, serving_options

    ev = config.eval
    if ev.backend != "vllm":
        return []
    out = []
    longest = max([b.max_tokens or ev.max_tokens for b in ev.benchmarks] + [ev.max_tokens])
    for label in [*ev.models, *ev.extra_models]:
        if ARTIFACT_BACKENDS.get(label, "vllm") != "vllm":
            continue
        cfg = eval_model_config(config, label)
        if cfg is None:
            continue
        serving = serving_options(config, label, cfg)
        where = "teacher.vllm" if label == "teacher" and label not in ev.serving else f"eval.serving.{label}"
        # a derived context is cut to the model and max_tokens to it at eval time; set values must fit as set
        fixed_length = label == "teacher" or "max_model_len" in serving.explicit
        tokens = ("eval.max_tokens", longest) if fixed_length else None
        out += served_model_errors(where, _name(config, label), cfg, serving.vllm, tokens)
    return out


def _name(config: "RunConfig", label: str) -> str:
    if label == "teacher":
        return config.teacher.model
    if label in config.eval.extra_models:
        return config.eval.extra_models[label]
    return f"{config.student.model} ({label})"


def _dtype_errors(config: "RunConfig") -> list[str]:
    """bf16 asked of GPUs the plan says have none (compute capability below 8.0)."""
    out = []
    train_gpu, serve_gpu = config.plan.train.gpu, config.plan.teacher.gpu
    if config.student.dtype == "bf16" and NO_BF16_GPU.search(train_gpu):
        out.append(f"student.dtype: bf16 on {train_gpu} (plan.train.gpu), which has no bf16; use fp16 or auto "
                   "(auto picks fp16 there)")
    if config.teacher.dtype == "bfloat16" and config.teacher.backend == "vllm" and NO_BF16_GPU.search(serve_gpu):
        out.append(f"teacher.dtype: bfloat16 on {serve_gpu} (plan.teacher.gpu), which has no bf16; use float16")
    for label, serving in config.eval.serving.items():
        if serving.dtype == "bfloat16" and NO_BF16_GPU.search(serve_gpu):
            out.append(f"eval.serving.{label}.dtype: bfloat16 on {serve_gpu} (plan.teacher.gpu), which has no "
                       "bf16; use float16 or auto")
    accel = _accelerate_config(config)
    if accel and accel[1].get("mixed_precision") == "bf16" and NO_BF16_GPU.search(train_gpu):
        out.append(f"{accel[0]}: mixed_precision bf16 on {train_gpu} (plan.train.gpu), which has no bf16; use "
                   "fp16 there")
    return out


def _accelerate_config(config: "RunConfig") -> tuple[str, dict[str, Any]] | None:
    """(path, contents) of the shipped accelerate config plan.train.parallelism names, when it can be found."""
    import yaml

    from distill.students.plan import accelerate_config_for, train_setup

    name = accelerate_config_for(train_setup(config))
    for path in (Path.cwd() / name, REPO_ROOT / name):
        if path.is_file():
            return name, yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    log.debug("accelerate config %s not found here; not checked", name)
    return None


def _accelerate_errors(config: "RunConfig") -> list[str]:
    """Options of the plan's accelerate config that conflict with the student section."""
    accel = _accelerate_config(config)
    if accel is None or config.student.model == "toy":
        return []
    return accelerate_conflicts(config, *accel)


def accelerate_conflicts(config: "RunConfig", path: str, doc: dict[str, Any]) -> list[str]:
    """Options of one accelerate config (``doc``, read from ``path``) that conflict with the student section."""
    fsdp = doc.get("fsdp_config") or {}
    out = []
    if doc.get("distributed_type") == "FSDP" and fsdp.get("fsdp_activation_checkpointing") \
            and config.student.gradient_checkpointing:
        out.append(f"student.gradient_checkpointing: true conflicts with {path} (plan.train.parallelism "
                   f"{config.plan.train.parallelism}) fsdp_activation_checkpointing: true, which transformers "
                   "refuses; set student.gradient_checkpointing: false (FSDP checkpoints the layers itself) or "
                   "fsdp_activation_checkpointing: false")
    return out


def _gguf_errors(config: "RunConfig") -> list[str]:
    """A GGUF export the writer cannot make for the student's architecture or RoPE type."""
    if not config.export.gguf and config.export.gguf_4bit is None:
        return []
    from distill.eval.models import eval_model_config

    cfg = eval_model_config(config, "student")
    if cfg is None:
        return []
    try:
        from distill.students.export.gguf_support import gguf_unsupported_reason
    except ImportError:  # an install without the GGUF writer's module: the export stage says so itself
        return []
    reason = gguf_unsupported_reason(cfg)
    if not reason:
        return []
    return [f"export.gguf: {config.student.model} cannot be exported to GGUF: {reason}; set export.gguf: false "
            "and export.gguf_4bit: null, or export with llama.cpp's own converter"]
