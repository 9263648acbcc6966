"""Eval serves each model as itself (eval/models.py serving_options), resolved from the real configs of all six bases."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from distill.config import load_config
from distill.errors import UserError
from distill.eval.models import (PROMPT_ROOM_TOKENS, clamp_max_tokens, eval_model_config, eval_sampler,
                                 gguf_context_size, runtime_dtype, serving_options)
from distill.problems import Problem
from distill.students.arch_configs import max_positions, published_config, tensor_parallel_problem
from distill.teachers.sampling_types import SamplingParams
from tests.conftest import REPO

# recipe -> (base positions, student positions after student.rope, student TP on the plan's H200s)
EXPECTED = {
    "r1-distill-qwen-1.5b": (4096, 32768, 1),
    "r1-distill-qwen-7b": (4096, 32768, 1),
    "r1-distill-llama-8b": (131072, 131072, 1),
    "r1-distill-qwen-14b": (131072, 131072, 1),
    "r1-distill-qwen-32b": (131072, 131072, 1),
    "r1-distill-llama-70b": (131072, 131072, 4),
}


def recipe(name: str, *overrides: str):
    return load_config(REPO / "configs" / f"{name}.yaml", list(overrides))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_student_is_served_as_itself_not_as_the_teacher(name):
    config = recipe(name)
    base_positions, student_positions, tp = EXPECTED[name]
    base = published_config(config.student.model)
    assert max_positions(eval_model_config(config, "student_base")) == base_positions
    assert max_positions(eval_model_config(config, "student")) == student_positions
    assert eval_model_config(config, "student_base") == base  # the released base, as published

    teacher = serving_options(config, "teacher", eval_model_config(config, "teacher"))
    assert teacher.vllm == config.teacher.vllm.model_dump() and teacher.dtype == config.teacher.dtype
    wanted = config.eval.max_tokens + PROMPT_ROOM_TOKENS
    for label, positions in (("student_base", base_positions), ("student", student_positions)):
        serving = serving_options(config, label, eval_model_config(config, label))
        assert serving.vllm["tensor_parallel_size"] == tp
        assert tensor_parallel_problem(base, serving.vllm["tensor_parallel_size"]) is None
        assert serving.vllm["pipeline_parallel_size"] == 1 and serving.vllm["quantization"] is None
        assert serving.vllm["max_model_len"] == min(positions, wanted)
        assert serving.dtype == "auto" and serving.explicit == frozenset()
    # the teacher's TP 8 could not have served the small Qwen students at all
    if base["num_attention_heads"] % 8:
        assert tensor_parallel_problem(base, config.teacher.vllm.tensor_parallel_size)


def test_eval_serving_overrides_the_derived_options():
    config = recipe("r1-distill-qwen-1.5b", "eval.serving.student.tensor_parallel_size=2",
                    "eval.serving.student.dtype=float16", "eval.serving.teacher.max_model_len=40000")
    student = serving_options(config, "student", eval_model_config(config, "student"))
    assert student.vllm["tensor_parallel_size"] == 2 and student.dtype == "float16"
    assert student.vllm["max_model_len"] == 32768  # still derived
    assert student.explicit == {"tensor_parallel_size", "dtype"}
    teacher = serving_options(config, "teacher", eval_model_config(config, "teacher"))
    assert teacher.vllm["max_model_len"] == 40000 and teacher.vllm["tensor_parallel_size"] == 8


def test_a_serving_label_must_be_a_model():
    with pytest.raises(Exception, match="serving names 'studnet'"):
        recipe("r1-distill-qwen-1.5b", "eval.serving.studnet.tensor_parallel_size=1")


def test_auto_dtype_is_float32_on_this_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    assert runtime_dtype("auto", "vllm") == "float32"
    assert runtime_dtype("auto", "transformers") == "float32"
    assert runtime_dtype("bfloat16", "vllm") == "bfloat16"


def _problems() -> list[Problem]:
    return [Problem(id=f"p{i}", problem="What is " + "1 + " * 40 * i + "1?", answer="1") for i in range(1, 4)]


def test_max_tokens_is_cut_to_what_the_served_context_leaves(tmp_path):
    """The released Qwen2.5-Math-1.5B base has 4,096 positions: it cannot generate 32,768 tokens after a prompt."""
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(published_config("Qwen/Qwen2.5-Math-1.5B")))
    config = recipe("r1-distill-qwen-1.5b")
    params = SamplingParams(n=1, temperature=0.6, top_p=0.95, max_tokens=32768, seed=0)
    problems = _problems()
    cut = clamp_max_tokens(config, "student_base", str(folder), params, problems)
    assert cut.max_tokens == 4096 - gguf_context_size(problems, 0) and cut.n == 1
    small = SamplingParams(n=1, temperature=0.6, top_p=0.95, max_tokens=1000, seed=0)
    assert clamp_max_tokens(config, "student_base", str(folder), small, problems) is small
    assert clamp_max_tokens(recipe("r1-distill-qwen-1.5b", "eval.backend=transformers"), "student_base",
                            str(folder), params, problems) is params  # only vLLM refuses an overlong request
    tight = recipe("r1-distill-qwen-1.5b", "eval.serving.student_base.max_model_len=64")
    with pytest.raises(UserError, match="eval.serving.student_base.max_model_len: 64 tokens leave no room"):
        clamp_max_tokens(tight, "student_base", str(folder), params, problems)


def test_eval_sampler_builds_the_engine_with_the_students_own_options(tmp_path, monkeypatch):
    """What reaches the engine for the student: its TP, its context, a concrete dtype, the path as the model."""
    import distill.teachers.models as teacher_models

    folder = tmp_path / "model"
    folder.mkdir()
    cfg = published_config("Qwen/Qwen2.5-Math-1.5B")
    cfg["max_position_embeddings"] = 32768  # as the train stage saves it after student.rope
    (folder / "config.json").write_text(json.dumps(cfg))
    built = {}
    monkeypatch.setattr(teacher_models, "config_sampler",
                        lambda backend, path, batch, dtype, vllm, openai: built.update(
                            backend=backend, path=path, dtype=dtype, vllm=vllm, openai=openai) or "sampler")
    ctx = SimpleNamespace(config=recipe("r1-distill-qwen-1.5b"))
    sampler, backend, dtype = eval_sampler(ctx, "student", str(folder), [])
    assert (sampler, backend) == ("sampler", "vllm") and built["path"] == str(folder)
    assert built["vllm"]["tensor_parallel_size"] == 1 and built["vllm"]["max_model_len"] == 32768
    assert dtype == built["dtype"] == runtime_dtype("auto", "vllm") and dtype != "auto"
    assert built["openai"]["served_model"] is None
