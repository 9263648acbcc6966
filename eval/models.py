"""The models an eval evaluates and the sampler each runs in: the teacher and the student as configured,
the quantised artifacts in their own consumers (transformers for nf4, llama.cpp for the GGUF)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.stage import Context

log = logging.getLogger(__name__)

# The quantised artifacts, the backend that runs each in its consumer, and the export switch behind it.
ARTIFACT_BACKENDS = {"student_4bit": "transformers", "student_8bit": "transformers", "student_gguf": "llamacpp"}
# tokens of chat-template text around a prompt (role markers, BOS, a prefilled <think>)
GGUF_TEMPLATE_ALLOWANCE = 256


def _artifact_enabled(config: Any, label: str) -> bool:
    export = config.export
    return {"student_4bit": export.nf4, "student_8bit": export.int8,
            "student_gguf": export.gguf_4bit is not None}.get(label, True)


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
    """(sampler, backend, dtype) for one model: quantised artifacts run in their own consumer."""
    from distill.teachers.models import config_sampler

    cfg = ctx.config.eval
    backend = ARTIFACT_BACKENDS.get(label, cfg.backend)
    dtype = ctx.config.teacher.dtype if label == "teacher" else "float32"
    # served_model names the teacher; other models are asked for by their path
    openai = {**ctx.config.teacher.openai.model_dump(), **({} if label == "teacher" else {"served_model": None})}
    if backend == "llamacpp":
        from distill.teachers.sampler import make_sampler

        n_ctx = gguf_context_size([p for _, loaded in benches for p in loaded.problems], _longest_generation(cfg))
        return make_sampler("llamacpp", path, n_ctx=n_ctx), backend, f"gguf:{Path(path).stem}"
    sampler = config_sampler(backend, path, cfg.batch_size, dtype, ctx.config.teacher.vllm.model_dump(), openai)
    return sampler, backend, dtype
