"""Static full-scale checks (distill/scale_checks.py): each defect of issue 12 stays caught, with real model configs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from distill.config import load_config
from distill.errors import ConfigError
from distill.runner import check_all
from distill.scale_checks import accelerate_conflicts, scale_errors, served_model_errors
from distill.students.arch_configs import published_config
from tests.conftest import REPO

RECIPES = sorted(p.stem for p in (REPO / "configs").glob("r1-distill-*.yaml"))
TEACHERS = sorted(p.stem for p in (REPO / "configs" / "teachers").glob("*.yaml"))
# What eval served every model with before issue 12: the teacher's vLLM settings.
TEACHER_SETTINGS = ["tensor_parallel_size=8", "max_model_len=34816"]


def recipe(name: str, *overrides: str):
    return load_config(REPO / "configs" / f"{name}.yaml", list(overrides))


def as_teacher_served(label: str) -> list[str]:
    return [f"eval.serving.{label}.{kv}" for kv in TEACHER_SETTINGS]


@pytest.mark.parametrize("name", ["r1-distill-qwen-1.5b", "r1-distill-qwen-7b"])
def test_students_served_with_the_teachers_settings_are_caught(name):
    """Defect 1: TP 8 cannot split 12 (1.5B) or 28 (7B) heads; 34,816 positions exceed the students' 32,768."""
    errors = scale_errors(recipe(name, *as_teacher_served("student"), *as_teacher_served("student_base")))
    heads = 12 if "1.5b" in name else 28
    assert any(e.startswith("eval.serving.student.tensor_parallel_size: 8 cannot split")
               and f"its {heads} attention heads are not divisible by 8" in e for e in errors)
    assert any(e.startswith("eval.serving.student.max_model_len: 34816 exceeds") and "32768 positions" in e
               for e in errors)  # the student after student.rope: 32k
    assert any(e.startswith("eval.serving.student_base.max_model_len: 34816 exceeds") and "4096 positions" in e
               for e in errors)  # the released base: 4k


def test_max_tokens_that_leave_no_room_for_the_prompt_are_caught():
    """Defect 1: max_tokens 32,768 in a 32,768-token context leaves no room for the prompt."""
    errors = scale_errors(recipe("r1-distill-qwen-1.5b", "eval.serving.student.max_model_len=32768"))
    assert errors == ["eval.max_tokens: 32768 leaves no room for the prompt in the 32768-token context "
                      "eval.serving.student serves Qwen/Qwen2.5-Math-1.5B (student) with; lower it to at most 32256 "
                      "or raise eval.serving.student.max_model_len"]
    teacher = scale_errors(recipe("r1-distill-qwen-7b", "teacher.max_tokens=34816"))
    assert any(e.startswith("teacher.max_tokens: 34816 leaves no room") for e in teacher)


def test_llama3_rope_gguf_export_is_checked_with_the_writers_own_verdict():
    """Defect 2: both Llama recipes export GGUF; the check asks the GGUF writer (gguf_support) about llama3 RoPE."""
    from distill.students.export.gguf_support import gguf_unsupported_reason

    for name in ("r1-distill-llama-8b", "r1-distill-llama-70b"):
        config = recipe(name)
        cfg = published_config(config.student.model)
        assert cfg["rope_scaling"]["rope_type"] == "llama3"
        reason = gguf_unsupported_reason(cfg)
        gguf_lines = [e for e in scale_errors(config) if e.startswith("export.gguf:")]
        assert gguf_lines == ([f"export.gguf: {config.student.model} cannot be exported to GGUF: {reason}; set "
                               "export.gguf: false and export.gguf_4bit: null, or export with llama.cpp's own "
                               "converter"] if reason else [])
        assert not [e for e in scale_errors(recipe(name, "export.gguf=false", "export.gguf_4bit=null"))
                    if e.startswith("export.gguf:")]


def test_an_architecture_the_gguf_writer_refuses_is_caught(tmp_path, monkeypatch):
    """A student whose config the writer refuses (DeepSeek-V3's MoE/MLA here) stops at validate, not at export."""
    import json

    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(published_config("deepseek-ai/DeepSeek-R1")))
    errors = scale_errors(recipe("r1-distill-qwen-7b", f"student.model={folder}"))
    assert any(e.startswith(f"export.gguf: {folder} cannot be exported to GGUF: ") for e in errors)


def test_fsdp_activation_checkpointing_beside_gradient_checkpointing_is_caught():
    """Defect 4: an FSDP config that checkpoints activations, with student.gradient_checkpointing: true."""
    doc = {"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2, "fsdp_activation_checkpointing": True}}
    config = recipe("r1-distill-qwen-14b", "plan.train.parallelism=fsdp")
    assert config.student.gradient_checkpointing
    [line] = accelerate_conflicts(config, "configs/accelerate/fsdp2.yaml", doc)
    assert line.startswith("student.gradient_checkpointing: true conflicts with configs/accelerate/fsdp2.yaml")
    assert "set student.gradient_checkpointing: false" in line
    off = recipe("r1-distill-qwen-14b", "plan.train.parallelism=fsdp", "student.gradient_checkpointing=false")
    assert accelerate_conflicts(off, "configs/accelerate/fsdp2.yaml", doc) == []
    no_fsdp_ckpt = {**doc, "fsdp_config": {"fsdp_version": 2, "fsdp_activation_checkpointing": False}}
    assert accelerate_conflicts(config, "configs/accelerate/fsdp2.yaml", no_fsdp_ckpt) == []


def test_the_shipped_fsdp2_config_is_read_from_the_plan():
    """The check reads the accelerate config plan.train.parallelism names, whatever it says today."""
    import yaml

    config = recipe("r1-distill-qwen-14b", "plan.train.parallelism=fsdp")
    doc = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp2.yaml").read_text())
    expected = accelerate_conflicts(config, "configs/accelerate/fsdp2.yaml", doc)
    assert [e for e in scale_errors(config) if "fsdp_activation_checkpointing" in e] == expected


def test_bf16_on_gpus_without_it_is_caught():
    errors = scale_errors(recipe("r1-distill-qwen-7b", "student.dtype=bf16", "plan.train.gpu=V100-32GB",
                                 "plan.teacher.gpu=T4-16GB", "teacher.dtype=bfloat16",
                                 "eval.serving.student.dtype=bfloat16"))
    assert any(e.startswith("student.dtype: bf16 on V100-32GB") for e in errors)
    assert any(e.startswith("teacher.dtype: bfloat16 on T4-16GB") for e in errors)
    assert any(e.startswith("eval.serving.student.dtype: bfloat16 on T4-16GB") for e in errors)
    assert not [e for e in scale_errors(recipe("r1-distill-qwen-7b", "student.dtype=bf16")) if "dtype" in e]


def test_teacher_parallelism_against_the_real_heads():
    """R1 has 128 heads (TP 8 and 16 split them); a distill teacher at TP 16 with 40 heads does not split."""
    assert served_model_errors("teacher.vllm", "R1", published_config("deepseek-ai/DeepSeek-R1"),
                               {"tensor_parallel_size": 16, "max_model_len": 163840}) == []
    errors = scale_errors(recipe("r1-distill-qwen-7b", "teacher.model=deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                                 "teacher.vllm.tensor_parallel_size=16", "teacher.vllm.max_model_len=200000"))
    assert any(e.startswith("teacher.vllm.tensor_parallel_size: 16 cannot split") and "40 attention heads" in e
               for e in errors)
    assert any(e.startswith("teacher.vllm.max_model_len: 200000 exceeds") and "131072 positions" in e
               for e in errors)


def test_pipeline_parallel_beyond_the_layers_is_caught():
    [line] = served_model_errors("teacher.vllm", "m", published_config("Qwen/Qwen2.5-Math-1.5B"),
                                 {"pipeline_parallel_size": 29})
    assert line.startswith("teacher.vllm.pipeline_parallel_size: 29 stages for m's 28 layers")


@pytest.mark.parametrize("name", RECIPES + [f"teachers/{t}" for t in TEACHERS])
def test_the_shipped_recipes_pass_the_up_front_checks(name, tmp_path):
    """check_all (validate and every run) finds no full-scale problem in a shipped recipe."""
    config = recipe(name, f"output_dir={tmp_path}")
    assert scale_errors(config) == []
    check_all(config, missing_ok=True)


def test_the_up_front_checks_raise_the_first_full_scale_problem(tmp_path):
    """check_all raises the first full-scale problem as a one-line ConfigError."""
    config = recipe("r1-distill-qwen-1.5b", "eval.serving.student.tensor_parallel_size=8", f"output_dir={tmp_path}")
    errors = scale_errors(config)
    assert errors and errors[0].startswith("eval.serving.student.tensor_parallel_size")
    with pytest.raises(ConfigError) as caught:
        check_all(config, missing_ok=True)
    assert str(caught.value).startswith(errors[0]) and "\n" not in str(caught.value)


def test_validate_exits_2_with_one_line_naming_the_path_and_fix(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "distill.cli", "validate", str(REPO / "configs" / "r1-distill-qwen-1.5b.yaml"),
         "--set", "eval.serving.student.tensor_parallel_size=8", "--set", f"output_dir={tmp_path}"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 2, run.stderr
    message = " ".join(run.stderr.split())
    assert "eval.serving.student.tensor_parallel_size: 8 cannot split Qwen/Qwen2.5-Math-1.5B" in message
    assert "Traceback" not in run.stderr
