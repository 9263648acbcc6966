"""``distill plan``: the arithmetic agrees with published facts (within 20%) and says what would fit."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from distill.config import load_config
from distill.students.plan import (MODELS, TrainSetup, fit_advice, layer_activation_bytes,
                           model_activation_bytes, model_shape, plan_run, teacher_gpus, teacher_weight_bytes,
                           train_memory)
from tests.conftest import REPO

GB = 1e9
RECIPES = sorted((REPO / "configs").glob("r1-distill-*.yaml"))


def setup(**kw) -> TrainSetup:
    base = dict(method="full", parallelism="zero3", gpus_per_node=8, nodes=1, gpu_memory_gb=80,
                cpu_memory_gb_per_node=2000, max_length=32768, micro_batch=1, gradient_checkpointing=True,
                fused_cross_entropy=False)
    return TrainSetup(**{**base, **kw})


def close(value: float, expected: float, tolerance: float = 0.2) -> bool:
    return abs(value - expected) <= tolerance * expected


@pytest.mark.parametrize("model, published", [
    ("Qwen/Qwen2.5-Math-1.5B", 1.54e9),   # model card: 1,543,714,304 parameters (safetensors metadata)
    ("Qwen/Qwen2.5-Math-7B", 7.61e9),     # Qwen2.5-7B model card: "Number of Parameters: 7.61B"
    ("meta-llama/Llama-3.1-8B", 8.03e9),  # model card / safetensors metadata: 8,030,261,248
    ("Qwen/Qwen2.5-14B", 14.7e9),         # model card: "Number of Parameters: 14.7B"
    ("Qwen/Qwen2.5-32B", 32.5e9),         # model card: "Number of Parameters: 32.5B"
    ("meta-llama/Llama-3.3-70B-Instruct", 70.6e9),  # safetensors metadata: 70,553,706,496
    ("deepseek-ai/DeepSeek-R1", 671e9),   # DeepSeek-V3/R1 report: 671B total parameters
])
def test_parameter_counts_match_published_model_cards(model, published):
    """The shape table reproduces each model card's parameter count (to 2%; the table is the configs)."""
    assert close(model_shape(model).parameters(), published, 0.02)


def test_r1_activates_37b_parameters_per_token():
    """DeepSeek-V3 technical report (arXiv:2412.19437): 671B total, 37B activated per token."""
    assert close(model_shape("deepseek-ai/DeepSeek-R1").compute_parameters(), 37e9, 0.05)


def test_mixed_precision_adam_is_16_bytes_per_parameter():
    """ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054, section 3.1 and Figure 1): mixed-precision Adam
    keeps 2 + 2 + 12 = 16 bytes per parameter, 120 GB for a 7.5B model under data parallelism, and
    ZeRO-3 over 64 GPUs brings that to 1.9 GB per GPU."""
    shape = MODELS["qwen/qwen2.5-math-7b"]  # 7.6B, close to the paper's 7.5B example
    n = shape.parameters()
    ddp = train_memory(shape, setup(parallelism="ddp"))
    assert (ddp.weights_gb + ddp.gradients_gb + ddp.optimizer_gb) * GB == pytest.approx(16 * n)
    assert close(ddp.weights_gb + ddp.gradients_gb + ddp.optimizer_gb, 120)
    z3 = train_memory(shape, setup(parallelism="zero3", nodes=8))  # 64 GPUs
    assert close(z3.weights_gb + z3.gradients_gb + z3.optimizer_gb, 1.9)


def test_activation_formula_reduces_to_korthikanti_for_a_gpt_layer():
    """Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
    arXiv:2205.05198, eq. 1): one GPT layer saves s*b*h*(34 + 5*a*s/h) bytes in 16-bit, e.g. 2.87 GB
    for GPT-3 175B (h 12288, a 96) at s 2048, b 1; full recomputation keeps only 2*s*b*h per layer."""
    h, a, s, b = 12288, 96, 2048, 1
    ours = layer_activation_bytes(h, q_dim=h, kv_dim=h, intermediate=4 * h, heads=a, s=s, b=b,
                                  gated_mlp=False, dropout=True, flash=False)
    assert ours == s * b * h * (34 + 5 * a * s / h)
    assert close(ours / GB, 2.87, 0.01)
    shape = MODELS["qwen/qwen2.5-math-7b"]
    stored = model_activation_bytes(shape, s, b, checkpointing=True)
    recomputed_layer = model_activation_bytes(shape, s, b, checkpointing=False) / shape.num_layers
    assert stored == pytest.approx(shape.num_layers * 2 * s * b * shape.hidden_size + recomputed_layer)


def test_7b_full_zero3_fits_8x80gb_at_32k_with_checkpointing():
    """Open-R1 trained OpenR1-Distill-7B (Qwen2.5-Math-7B, full fine-tuning) on one node of 8 H100 80GB
    with DeepSpeed ZeRO-3 at max_length 32768, per-device batch 2, gradient checkpointing and Liger
    kernels (huggingface/open-r1 README and recipes/OpenR1-Distill-7B/sft/config_distill.yaml)."""
    shape = model_shape("Qwen/Qwen2.5-Math-7B")
    recipe = setup(micro_batch=2, fused_cross_entropy=True)
    memory = train_memory(shape, recipe)
    assert memory.fits, memory
    without = train_memory(shape, replace(recipe, gradient_checkpointing=False))
    assert not without.fits and without.activations_gb > 5 * memory.activations_gb
    assert any("gradient_checkpointing: true" in line for line in fit_advice(shape, replace(
        recipe, gradient_checkpointing=False)))


def test_full_logits_at_32k_cost_about_50gb_for_a_qwen_vocabulary():
    """bf16 logits + fp32 copy + fp32 log-softmax = 10 bytes x 32768 tokens x 152064 vocabulary (~50 GB),
    the reason Open-R1 used Liger's fused linear cross-entropy at 32k."""
    shape = model_shape("Qwen/Qwen2.5-Math-7B")
    memory = train_memory(shape, setup())
    assert close(memory.logits_gb, 10 * 32768 * 152064 / GB, 0.01)
    assert not memory.fits
    advice = fit_advice(shape, setup())
    assert any("fused linear-cross-entropy" in line for line in advice)
    assert any("max_length: 16384" in line for line in advice)


def test_70b_full_fine_tuning_does_not_fit_8x80gb_without_offload():
    """Full fine-tuning of a 70B model needs 16 bytes x 70.6B = 1.13 TB of model states (ZeRO paper's
    accounting): 141 GB per GPU even sharded over 8 GPUs, more than an 80 GB GPU holds; offloading the
    states to host RAM (ZeRO-Infinity/Offload, as Sky-T1 did for 32B on 8 H100s) is what fits one node."""
    shape = model_shape("meta-llama/Llama-3.3-70B-Instruct")
    for parallelism in ("ddp", "zero3", "fsdp"):
        assert not train_memory(shape, setup(parallelism=parallelism, fused_cross_entropy=True)).fits
    zero3 = train_memory(shape, setup(fused_cross_entropy=True))
    assert close(zero3.weights_gb + zero3.gradients_gb + zero3.optimizer_gb, 141)
    advice = fit_advice(shape, setup(fused_cross_entropy=True))
    assert any("zero3_offload" in line for line in advice), advice
    assert any("more GPUs" in line for line in advice), advice
    assert any("lora" in line for line in advice), advice
    offload = train_memory(shape, setup(parallelism="zero3_offload", fused_cross_entropy=True))
    assert offload.fits and close(offload.cpu_gb_per_node, 18 * 70.55, 0.05)


def test_32b_on_one_8x80gb_node_needs_offload():
    """Sky-T1-32B-Preview (NovaSky blog, Jan 2025): full fine-tuning of Qwen2.5-32B on 8 H100s used
    DeepSpeed ZeRO-3 offload. (Its context length is not stated there; 16k is assumed here.)"""
    shape = model_shape("Qwen/Qwen2.5-32B")
    assert not train_memory(shape, setup(max_length=16384)).fits
    assert train_memory(shape, setup(max_length=16384, parallelism="zero3_offload")).fits


def test_lora_and_qlora_shrink_the_model_states():
    shape = model_shape("Qwen/Qwen2.5-Math-7B")
    full = train_memory(shape, setup(parallelism="ddp"))
    lora = train_memory(shape, setup(parallelism="ddp", method="lora"))
    qlora = train_memory(shape, setup(parallelism="ddp", method="qlora"))
    def states(m):
        return m.weights_gb + m.gradients_gb + m.optimizer_gb

    assert states(qlora) < states(lora) < states(full) / 7
    assert close(lora.weights_gb, 2 * shape.parameters() / GB, 0.05)  # frozen bf16 base
    # QLoRA (Dettmers et al. 2023, arXiv:2305.14314): NF4 with double quantisation costs ~4.127 bits per
    # weight, which is how a 65B model is fine-tuned on one 48 GB GPU; our 70B base stays under that too.
    big = train_memory(model_shape("meta-llama/Llama-3.3-70B-Instruct"), setup(parallelism="ddp", method="qlora"))
    assert 30 < big.weights_gb < 48
    assert lora.trainable_parameters < 0.01 * shape.parameters()


def test_r1_teacher_needs_one_8xh200_node_or_two_8xh100_nodes():
    """DeepSeek-R1 ships FP8 weights, ~700 GB (the Hub checkpoint is 163 shards, ~690 GB); vLLM's
    DeepSeek-R1 guides serve it with TP 8 on one 8xH200 node, or across two 8xH100 nodes."""
    shape = model_shape("deepseek-ai/DeepSeek-R1")
    weights = shape.parameters() * teacher_weight_bytes(shape, "auto", None) / GB
    assert close(weights, 700, 0.2)
    need = weights + 32 * 34816 * shape.kv_cache_bytes_per_token() / GB
    assert teacher_gpus(need, 141 * 0.9, 8) == (8, 1)
    assert teacher_gpus(need, 80 * 0.9, 8) == (16, 2)


def test_mla_caches_one_latent_per_layer():
    """DeepSeek-V2 (arXiv:2405.04434) MLA caches (d_c + d_h^R) = 512 + 64 values per token and layer."""
    assert model_shape("deepseek-ai/DeepSeek-R1").kv_cache_bytes_per_token() == (512 + 64) * 61 * 2
    llama = model_shape("meta-llama/Llama-3.1-8B")
    assert llama.kv_cache_bytes_per_token() == 2 * 32 * 8 * 128 * 2  # 128 KiB/token, GQA with 8 kv heads


def test_teacher_on_too_few_gpus_is_flagged():
    config = load_config(REPO / "configs" / "r1-distill-qwen-7b.yaml",
                         ["plan.teacher.gpu_memory_gb=80", "plan.teacher.gpu=H100-80GB"])
    teacher = plan_run(config).teacher
    assert teacher.gpus_needed == 16 and teacher.nodes_needed == 2 and not teacher.fits_configured
    assert "too few: needs 16" in plan_run(config).render()


def test_time_and_cost_follow_the_stated_throughput():
    config = load_config(REPO / "configs" / "r1-distill-qwen-7b.yaml",
                         ["plan.train.tokens_per_second_per_gpu=5000", "plan.train.usd_per_gpu_hour=2"])
    student = plan_run(config).student
    data = student.dataset
    assert data.traces == 100000 * 4 and data.kept_examples == 280000
    expected = data.tokens_per_epoch * 5 / 5000 / 3600
    assert student.gpu_hours == pytest.approx(expected)
    assert student.wall_hours == pytest.approx(expected / 8) and student.cost_usd == pytest.approx(2 * expected)
    assert data.steps == -(-data.kept_examples // 128) * 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_fits_its_stated_hardware(path):
    result = plan_run(load_config(path))
    assert result.student is not None and result.student.memory.fits, result.render()
    assert result.teacher is not None and result.teacher.fits_configured, result.render()
    assert (REPO / result.student.accelerate_config).is_file()


def test_six_recipes_cover_the_r1_distill_students():
    students = {load_config(p).student.model for p in RECIPES}
    assert students == {"Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B",
                        "Qwen/Qwen2.5-14B", "Qwen/Qwen2.5-32B", "meta-llama/Llama-3.3-70B-Instruct"}


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    files = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))
    assert {f.stem for f in files} >= {"ddp", "zero3", "zero3-offload", "fsdp2", "multinode-zero3"}
    for f in files:
        cfg = load_config_from_file(str(f))
        assert cfg.mixed_precision == "bf16", f


def test_quickstart_plans_without_a_gpu_model():
    result = plan_run(load_config(REPO / "configs" / "quickstart.yaml"))
    assert result.student.model == "toy student" and result.teacher is None
    assert "toy" in " ".join(result.notes)


def test_unknown_model_is_a_note_not_a_crash(tmp_path):
    config = load_config(REPO / "configs" / "r1-distill-qwen-7b.yaml", ["student.model=some-org/unknown-9b"])
    result = plan_run(config)
    assert result.student is None and "no built-in shape" in result.notes[0]
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
        "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936, "tie_word_embeddings": True}))
    assert model_shape(str(folder)).parameters() == MODELS["qwen/qwen2.5-math-1.5b"].parameters()


def test_plan_cli_prints_the_table_and_json(capsys):
    from distill.cli import main

    path = str(REPO / "configs" / "r1-distill-llama-70b.yaml")
    assert main(["plan", path]) == 0
    out = capsys.readouterr().out
    assert "per-GPU memory" in out and "zero3_offload" in out and "fits" in out and "teacher" in out
    assert main(["plan", path, "--set", "plan.train.parallelism=zero3", "--set", "plan.train.gpu_memory_gb=80"]) == 0
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "would fit:" in out
    assert main(["plan", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["student"]["memory"]["fits"] is True and data["teacher"]["gpus_needed"] == 8


def test_plan_needs_no_torch():
    code = ("import sys; from distill.cli import main; main(['plan', 'configs/r1-distill-qwen-7b.yaml']);"
            "print('HEAVY', [m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "HEAVY []" in out.stdout, out.stderr


@pytest.mark.parametrize("h, heads, kv, inter, s", [(512, 8, 2, 1536, 512), (1024, 16, 4, 2816, 1024)])
def test_activation_model_matches_what_a_transformers_layer_saves(h, heads, kv, inter, s):
    """Count the bytes a real Qwen2 decoder layer (bf16, SDPA's flash kernel) saves for backward, through
    autograd's saved-tensor hooks, and compare with the formula the plan uses (within 10%)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                      num_hidden_layers=1, vocab_size=256)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).train()
    params = {p.data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    hidden = torch.randn(1, s, h, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(s)[None]
    rotary = model.model.rotary_emb(hidden, positions)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.layers[0](hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary)
    predicted = layer_activation_bytes(h, h, kv * (h // heads), inter, heads, s, 1, norm_bytes=6)
    assert close(sum(saved.values()), predicted, 0.1), (sum(saved.values()), predicted)


def test_adaptive_sampling_is_planned_between_its_target_and_its_maximum():
    path = REPO / "configs" / "r1-distill-qwen-7b.yaml"
    fixed = plan_run(load_config(path))
    adaptive = plan_run(load_config(path, ["teacher.sampling.mode=adaptive", "teacher.sampling.target_per_problem=2",
                                           "teacher.sampling.max_per_problem=8"]))
    assert fixed.teacher.traces == 100000 * 4 and fixed.teacher.traces_min is None
    assert fixed.student.dataset.traces_min is None
    teacher, data = adaptive.teacher, adaptive.student.dataset
    assert (teacher.traces, teacher.traces_min) == (100000 * 8, 100000 * 2) == (data.traces, data.traces_min)
    assert teacher.generated_tokens == pytest.approx(2 * fixed.teacher.generated_tokens)  # sized for the most
    assert teacher.cost_usd == pytest.approx(2 * fixed.teacher.cost_usd)
    text = adaptive.render()
    assert "800,000 traces (adaptive sampling: at most max_per_problem" in text and "200,000)" in text
    low = f"${teacher.cost_usd / 4:,.0f}"
    assert "adaptive sampling: sized for max_per_problem" in text and low in text
    assert "adaptive" not in fixed.render()
