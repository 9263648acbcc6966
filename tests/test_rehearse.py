"""`distill rehearse`'s pieces, fast: tiny models keep every architectural field of the real configs, the
offline tokenizers, and the CPU substitutions listed as `path: old -> new (why)`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import load_config
from distill.errors import UserError
from distill.rehearse.report import StageRehearsal, plain_rows, rehearsal_table
from distill.rehearse.shrink import MAX_HIDDEN, MIN_HEAD_DIM, shrunk_fields, tiny_config
from distill.rehearse.substitute import Substitutions, cpu_settings, full_scale_problems

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPES = sorted((ROOT / "configs").glob("r1-distill-*.yaml"))
needs_shared = pytest.mark.skipif(not (SHARED / "tokenizers").is_dir(), reason="../shared/data is not here")


def _student_models() -> list[str]:
    return [load_config(path).student.model for path in RECIPES]


def test_there_are_six_student_recipes():
    assert len(RECIPES) == 6


@pytest.mark.parametrize("model", _student_models() + ["deepseek-ai/DeepSeek-R1"])
def test_tiny_config_keeps_every_architectural_field(model):
    from distill.rehearse.models import real_config

    real = real_config(model)
    tiny = tiny_config(real)
    changed = {k for k in real if k in tiny and tiny[k] != real[k]} | (set(real) - set(tiny))
    assert changed <= set(shrunk_fields(real)), f"{model}: changed {changed - set(shrunk_fields(real))}"
    for key in ("model_type", "architectures", "num_attention_heads", "num_key_value_heads", "vocab_size",
                "max_position_embeddings", "rope_theta", "rope_scaling", "tie_word_embeddings"):
        assert tiny.get(key) == real.get(key), key
    assert tiny["num_hidden_layers"] == 2 and tiny["torch_dtype"] == "float32"
    if real["model_type"] == "deepseek_v3":
        assert tiny["kv_lora_rank"] == real["kv_lora_rank"] and tiny["qk_rope_head_dim"] == real["qk_rope_head_dim"]
        assert tiny["n_routed_experts"] % tiny["n_group"] == 0 and tiny["topk_group"] <= tiny["n_group"]
        assert tiny["first_k_dense_replace"] == 1  # one dense and one MoE layer both run
        assert "quantization_config" not in tiny  # FP8 storage is not architecture
    else:
        head_dim = tiny.get("head_dim") or tiny["hidden_size"] // tiny["num_attention_heads"]
        assert head_dim == MIN_HEAD_DIM  # every head kept, each 32 wide
        if real["model_type"] == "llama":  # an explicit head_dim: the width stops at MAX_HIDDEN
            assert tiny["hidden_size"] == min(real["num_attention_heads"] * MIN_HEAD_DIM, MAX_HIDDEN)
        else:
            assert tiny["hidden_size"] == real["num_attention_heads"] * MIN_HEAD_DIM
        assert tiny["intermediate_size"] < real["intermediate_size"]


def test_tiny_config_refuses_a_head_dim_vllm_cpu_cannot_run():
    from distill.rehearse.models import real_config

    with pytest.raises(ValueError, match="head_dim 16"):
        tiny_config(real_config("Qwen/Qwen2.5-Math-1.5B"), head_dim=16)


@needs_shared
def test_tiny_model_folder_loads_with_the_real_rope_ties_and_tokenizer(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    from distill.rehearse.models import real_config, tokenizer_choice
    from distill.rehearse.shrink import tiny_model_dir

    model = "Qwen/Qwen2.5-Math-1.5B"
    real = real_config(model)
    folder = tiny_model_dir(real, tokenizer_choice(model), tmp_path / "tiny")
    loaded = AutoConfig.from_pretrained(folder)
    assert loaded.model_type == "qwen2" and loaded.tie_word_embeddings is True
    assert loaded.num_attention_heads == 12 and loaded.num_key_value_heads == 2
    assert loaded.rope_parameters["rope_theta"] == real["rope_theta"] and loaded.max_position_embeddings == 4096
    assert loaded.vocab_size == real["vocab_size"]
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == "<|endoftext|>"  # the base's own EOS, not the Instruct tokenizer's <|im_end|>
    assert tok.chat_template
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == real["eos_token_id"]
    mtime = (folder / "model.safetensors").stat().st_mtime
    assert tiny_model_dir(real, tokenizer_choice(model), tmp_path / "tiny") == folder  # reused, not rebuilt
    assert (folder / "model.safetensors").stat().st_mtime == mtime


@needs_shared
def test_tokenizer_choices_say_what_differs():
    from distill.rehearse.models import tokenizer_choice

    r1 = tokenizer_choice("deepseek-ai/DeepSeek-R1")
    assert r1.folder.name == "deepseek-r1-distill-qwen" and "129,280" in r1.substitution
    assert tokenizer_choice("meta-llama/Llama-3.1-8B").overrides == {"eos_token": "<|end_of_text|>",
                                                                       "add_bos_token": True}
    assert tokenizer_choice("meta-llama/Llama-3.3-70B-Instruct").overrides == {"add_bos_token": True}
    assert tokenizer_choice("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B").substitution == ""
    with pytest.raises(UserError, match="no offline tokenizer"):
        tokenizer_choice("mistralai/Mistral-7B-v0.1")


@needs_shared
def test_substitutions_are_listed_and_the_real_config_is_untouched(tmp_path):
    real = load_config(ROOT / "configs" / "r1-distill-llama-70b.yaml")
    before = real.model_dump(mode="json")
    subs = Substitutions(real.model_dump(mode="json"))
    cpu_settings(subs, real, tmp_path, SHARED)
    lines = [item.line() for item in subs.items]
    assert any(line.startswith("teacher.vllm.tensor_parallel_size: 8 -> 1 (") for line in lines)
    assert any(line.startswith("student.dtype: auto -> fp32 (") for line in lines)
    assert any(line.startswith("student.max_length: 32768 -> 512 (") for line in lines)
    assert any(line.startswith("eval.benchmarks[2]: gpqa_diamond -> left out (") for line in lines)
    assert any(line.startswith("problems.train_path: data/prompts_train.jsonl -> ") for line in lines)
    rehearsal = subs.config("r1-distill-llama-70b.yaml")
    assert rehearsal.output_dir == tmp_path / "runs"
    assert rehearsal.teacher.vllm.tensor_parallel_size == 1 and rehearsal.eval.max_tokens == 48
    assert [b.name for b in rehearsal.eval.benchmarks] == ["heldout", "aime2024"]
    assert all(b.k == 1 for b in rehearsal.eval.benchmarks if b.k is not None)
    assert real.model_dump(mode="json") == before
    stages = subs.by_stage()
    assert any("tensor_parallel_size" in line for line in stages["sample"])
    assert any("student.dtype" in line for line in stages["train"])


def test_a_failing_static_check_is_listed_under_its_stage(monkeypatch):
    from distill.stage import get_stage

    real = load_config(ROOT / "configs" / "r1-distill-qwen-1.5b.yaml")
    export = get_stage("export")

    def refuse(config):
        raise UserError("export.gguf: made-up refusal; set export.gguf=false")

    monkeypatch.setattr(export, "check", refuse)
    problems = full_scale_problems(real)
    assert "export.gguf: made-up refusal; set export.gguf=false" in problems["export"]


def test_rows_render_as_a_table_and_as_plain_rows():
    from rich.console import Console

    rows = [StageRehearsal("train", "2 steps", ["student.dtype: auto -> fp32 (CPU)"], [], True, 3.0),
            StageRehearsal("export", "FAILED: gguf refused llama3 RoPE", [], ["export.gguf: llama3"], False)]
    console = Console(record=True, width=160)
    console.print(rehearsal_table(rows))
    text = console.export_text()
    assert "FAILED" in text and "student.dtype: auto -> fp32" in text and "export.gguf: llama3" in text
    assert plain_rows(rows)[1] == {"stage": "export", "ran": "FAILED: gguf refused llama3 RoPE", "substituted": [],
                                   "full_scale_problems": ["export.gguf: llama3"], "ok": False, "seconds": None}


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from distill.cli import main

    assert main(["rehearse", str(tmp_path / "nope.yaml")]) == 2
    assert main(["rehearse", str(ROOT / "configs" / "r1-distill-qwen-1.5b.yaml"), "--until", "bake"]) == 2
    err = capsys.readouterr().err
    assert "config file not found" in err and "unknown stage 'bake'" in err and "Traceback" not in err


def test_workdir_inside_the_real_run_folder_is_refused(tmp_path):
    from distill.rehearse import rehearse

    config = ROOT / "configs" / "r1-distill-qwen-1.5b.yaml"
    with pytest.raises(UserError, match="inside the real run folder"):
        rehearse(config, workdir=Path("runs") / "r1-distill-qwen-1.5b" / "x")


# ----------------------------------------------------------------- full-scale problems, all of them

SCALE_OVERRIDES = ["eval.serving.student.tensor_parallel_size=8", "eval.serving.student.max_model_len=65536",
                   "teacher.vllm.max_model_len=200000"]


def test_every_full_scale_problem_of_the_real_config_is_listed_under_its_stage():
    real = load_config(ROOT / "configs" / "r1-distill-qwen-1.5b.yaml", SCALE_OVERRIDES)
    problems = full_scale_problems(real)
    assert any(p.startswith("teacher.vllm.max_model_len: 200000 exceeds deepseek-ai/DeepSeek-R1's 163840")
               for p in problems["sample"])
    assert any(p.startswith("eval.serving.student.tensor_parallel_size: 8 cannot split") and "12 attention heads"
               in p for p in problems["eval"])
    assert any(p.startswith("eval.serving.student.max_model_len: 65536 exceeds") for p in problems["eval"])
    assert not problems["train"] and not problems["export"]
    for recipe in RECIPES:  # the shipped recipes fit
        assert not any(full_scale_problems(load_config(recipe)).values()), recipe.name


def test_problem_lines_go_to_the_stage_of_their_config_path():
    from distill.rehearse.substitute import problem_stage

    assert problem_stage("student.gradient_checkpointing: true conflicts with ...") == "train"
    assert problem_stage("configs/accelerate/zero3.yaml: mixed_precision bf16 on V100 ...") == "train"
    assert problem_stage("export.gguf: cannot") == "export"
    assert problem_stage("eval.max_tokens: 32768 leaves no room") == "eval"
    assert problem_stage("teacher.max_tokens: 32768 leaves no room") == "sample"


def test_validate_prints_every_full_scale_problem(capsys):
    from distill.cli import main

    args = ["validate", str(ROOT / "configs" / "r1-distill-qwen-1.5b.yaml")]
    assert main(args + [x for o in SCALE_OVERRIDES for x in ("--set", o)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "teacher.vllm.max_model_len" in err[0] and "tensor_parallel_size" in err[1] and "65536" in err[2]


# ----------------------------------------------------------------- substitutions: fidelity, loss logging

@needs_shared
def test_rehearsal_reports_export_fidelity_and_logs_every_step(tmp_path):
    real = load_config(ROOT / "configs" / "r1-distill-qwen-1.5b.yaml")
    assert real.export.fidelity == "enforce" and real.student.logging_steps == 10
    subs = Substitutions(real.model_dump(mode="json"))
    cpu_settings(subs, real, tmp_path, SHARED)
    lines = subs.by_stage()
    assert "export.fidelity: enforce -> report (random weights: agreement measured, not held to the bar)" \
        in lines["export"]
    assert any(line.startswith("student.logging_steps: 10 -> 1 (") for line in lines["train"])
    rehearsal = subs.config("r1-distill-qwen-1.5b.yaml")
    assert rehearsal.export.fidelity == "report" and rehearsal.student.logging_steps == 1
    from distill.students.train_settings import train_settings_from_config

    assert train_settings_from_config(rehearsal.student).logging_steps == 1


def test_rehearsal_runs_the_pipeline_through_its_public_entry_point(tiny_config, monkeypatch):
    """A stage whose static check refuses the config still runs in a rehearsal pass (the refusal is listed
    separately); `distill run` itself still refuses it."""
    from distill import pipeline
    from distill.rehearse.student import run_pass
    from distill.stage import get_stage

    config = tiny_config()
    monkeypatch.setattr(get_stage("filter"), "check", lambda cfg: (_ for _ in ()).throw(
        UserError("filter.x: refused at full scale")))
    with pytest.raises(UserError, match="refused at full scale"):
        pipeline.run(config, until="sample")
    stages, reason = run_pass(config, "sample")
    assert reason is None and stages["sample"]["status"] == "done"


# ----------------------------------------------------------------- export.fidelity: report

@pytest.fixture(scope="module")
def random_student(tmp_path_factory):
    from distill.students.models import TinyModelSpec, build_tiny_model
    from distill.students.toy_tokenizer import build_toy_tokenizer

    tokenizer = build_toy_tokenizer([f"What is {a} + {b}? The answer is {a + b}." for a in range(30) for b in range(9)])
    folder = tmp_path_factory.mktemp("random-student")
    model = build_tiny_model(TinyModelSpec(architecture="llama", hidden_size=64, num_layers=1, num_heads=2,
                                           num_kv_heads=1, intermediate_size=128), tokenizer, seed=3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_nf4_fidelity_report_measures_without_failing(random_student, tmp_path):
    pytest.importorskip("bitsandbytes")
    from distill.students.export import ExportError, export_nf4

    with pytest.raises(ExportError, match="agrees with the fp32 model"):
        export_nf4(random_student, tmp_path / "a", min_top1_agreement=1.01)
    info = export_nf4(random_student, tmp_path / "b", min_top1_agreement=1.01, enforce=False)
    assert info["below_bar"] is True and info["fidelity_enforced"] is False
    assert 0 <= info["top1_agreement"] <= 1 and info["positions"] > 0 and (tmp_path / "b" / "config.json").is_file()


def test_gguf_fidelity_report_measures_without_failing(random_student, tmp_path):
    pytest.importorskip("llama_cpp")
    from distill.students.export import ExportError, export_gguf, gguf_logits_check

    gguf_file = Path(export_gguf(random_student, tmp_path / "m.gguf", "q4_0")["path"])
    with pytest.raises(ExportError, match="differ from the fp32 model"):
        gguf_logits_check(gguf_file, random_student, tolerance=1e-9)
    info = gguf_logits_check(gguf_file, random_student, tolerance=1e-9, enforce=False)
    assert info["over_tolerance"] is True and info["fidelity_enforced"] is False
    assert info["relative_logit_diff"] > 1e-9 and info["tokenization_identical"] is True


def test_export_stage_records_report_figures(random_student, tiny_config, monkeypatch, tmp_path):
    """The export stage honours export.fidelity: report -- the nf4 bar and the llama.cpp tolerance are measured
    and written to export.json, and a figure below its bar does not fail the stage."""
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("llama_cpp")
    import shutil

    from distill.progress import NullReporter
    from distill.stage import Context, get_stage
    from distill.store import RunStore
    from distill.students.export import bnb, checks

    config = tiny_config(export={"nf4": True, "gguf": True, "gguf_type": "q8_0", "gguf_4bit": None,
                                 "fidelity": "report"})
    store = RunStore(config.run_dir)
    shutil.copytree(random_student, store.stage_dir("train") / "model")
    monkeypatch.setitem(checks.GGUF_LOGIT_TOLERANCE, "q8_0", 1e-9)
    monkeypatch.setattr(bnb.export_nf4, "__kwdefaults__", {**bnb.export_nf4.__kwdefaults__,
                                                           "min_top1_agreement": 1.01})
    outcome = get_stage("export").run(Context(config, store, NullReporter()))
    written = json.loads((config.run_dir / "export" / "export.json").read_text())
    assert written["nf4"]["below_bar"] is True and written["nf4"]["fidelity_enforced"] is False
    assert written["gguf"]["llama_cpp_check"]["over_tolerance"] is True
    assert outcome.counts["gguf"]["llama_cpp_check"]["tolerance"] == 1e-9


def test_cli_table_is_wide_in_a_pipe(monkeypatch, capsys):
    """stdout is not a terminal here (rich would say 80 columns); the table is still rendered TABLE_WIDTH wide."""
    import distill.rehearse as rehearse_module
    from distill.cli import main
    from distill.rehearse import TABLE_WIDTH

    line = "student.max_length: 32768 -> 512 (short rehearsal traces)"
    rows = [StageRehearsal("train", "2 steps on 4 traces, loss 12.090 -> 12.027", [line] * 3, [], True, 78.0)]
    monkeypatch.setattr(rehearse_module, "rehearse", lambda *a, **k: rows)
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["rehearse", str(ROOT / "configs" / "r1-distill-qwen-1.5b.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert 80 < max(len(x) for x in out) <= TABLE_WIDTH  # not squeezed into the pipe's 80 columns
    assert sum(line in x for x in out) == 3 and any("loss 12.090 -> 12.027" in x for x in out)


@needs_shared
def test_llama_stand_in_tokenizer_adds_bos_like_metas(tmp_path):
    """Meta's Llama-3 tokenizer encodes "hi" as [<|begin_of_text|>, hi]; the tiny model's tokenizer must too, or a
    rehearsal cannot see an export that drops the BOS (the GGUF's add_bos_token is read from what it does)."""
    from transformers import AutoTokenizer

    from distill.rehearse.models import tokenizer_choice
    from distill.rehearse.shrink import load_tokenizer

    tok = load_tokenizer(tokenizer_choice("meta-llama/Llama-3.1-8B"))
    assert tok.encode("hi")[0] == tok.convert_tokens_to_ids("<|begin_of_text|>") == 128000
    assert tok.encode("hi", add_special_tokens=False)[0] != 128000 and tok.eos_token == "<|end_of_text|>"
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).encode("hi")[0] == 128000


def test_tiny_folder_names_carry_the_shrink_key():
    """A changed shrink (or tokenizer) is a new model path, so the runner's fingerprints see it."""
    import inspect

    from distill.rehearse.shrink import DEFAULT_SHRINK, tiny_model_dir

    params = inspect.signature(tiny_model_dir).parameters
    assert {k: params[k].default for k in DEFAULT_SHRINK} == DEFAULT_SHRINK


def test_a_teacher_recipe_goes_to_the_teacher_rehearsal(monkeypatch, tmp_path):
    """``distill rehearse configs/teachers/X.yaml`` (the public entry) hands the loaded config to the teacher
    rehearsal, which makes its own checks and substitutions; ``--until sample`` drops the filter row."""
    import distill.rehearse.teacher as teacher

    calls = []

    def fake(config, workdir, *, origin=None):
        calls.append((config.teacher.model, workdir, origin))
        return [StageRehearsal("serve", "dry run"), StageRehearsal("sample", "sampled"),
                StageRehearsal("filter", "filtered")]

    monkeypatch.setattr(teacher, "rehearse_teacher", fake)
    from distill.rehearse import rehearse

    recipe = ROOT / "configs" / "teachers" / "r1-distill-qwen-7b-vllm.yaml"
    assert [r.stage for r in rehearse(recipe, workdir=tmp_path)] == ["serve", "sample", "filter"]
    assert [r.stage for r in rehearse(recipe, until="sample", workdir=tmp_path)] == ["serve", "sample"]
    assert calls[0] == ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", tmp_path.resolve(), str(recipe))
