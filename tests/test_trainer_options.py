"""Trainer options: precision resolution, scheduler/clipping/packing wiring, RoPE extension, LoRA and
QLoRA students, and the out-of-memory message. All fp32 on CPU (bf16 compute is never run here)."""

from __future__ import annotations

import json

import pytest
import torch

from distill.students.models import TinyModelSpec, build_tiny_model
from distill.students.precision import PrecisionError, resolve_precision
from distill.students.trainer import TrainingOutOfMemoryError, TrainSettings, build_trainer, train_sft
from tests.conftest import REPO, toy_sft_data

# nf4 on CPU needs every linear layer's input width to be a multiple of 64
SMALL = dict(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128)


@pytest.fixture(scope="module")
def data():
    tokenizer, examples = toy_sft_data(64, 3, 1, 2, "t")
    return tokenizer, examples


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, data):
    """A tiny two-layer Qwen2 base, briefly pretrained and saved to disk (QLoRA quantises it while loading,
    so it must come from a path). Pretrained because LoRA cannot move a random model's frozen tied
    embeddings and norms, which is where most of a random model's loss sits."""
    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(**{**SMALL, "num_layers": 2}), tokenizer)
    out = tmp_path_factory.mktemp("base")
    result = train_sft(model, tokenizer, examples[32:], out, TrainSettings(
        max_steps=25, learning_rate=3e-3, batch_size=8, max_length=256, save_steps=1000))
    return result.model_dir


# ----------------------------------------------------------------------------- precision


def test_auto_precision_is_fp32_on_cpu_and_bf16_on_a_bf16_gpu():
    assert resolve_precision("auto", cuda=False, bf16_supported=False).name == "fp32"
    assert resolve_precision("auto").name == ("fp32" if not torch.cuda.is_available() else "bf16")
    gpu = resolve_precision("auto", "full", cuda=True, bf16_supported=True)
    assert (gpu.name, gpu.bf16, gpu.fp16, gpu.load_dtype) == ("bf16", True, False, "float32")  # fp32 masters
    lora = resolve_precision("auto", "lora", cuda=True, bf16_supported=True)
    assert lora.load_dtype == "bfloat16"  # a frozen base is held in the compute dtype
    old_gpu = resolve_precision("auto", cuda=True, bf16_supported=False)
    assert (old_gpu.name, old_gpu.fp16) == ("fp16", True)
    assert resolve_precision("fp32", cuda=True, bf16_supported=True).bf16 is False


def test_explicit_half_precision_without_a_gpu_is_refused():
    with pytest.raises(PrecisionError, match="bf16 needs a CUDA GPU"):
        resolve_precision("bf16", cuda=False, bf16_supported=False)
    with pytest.raises(PrecisionError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False, bf16_supported=False)
    with pytest.raises(PrecisionError, match="bf16 support"):
        resolve_precision("bf16", cuda=True, bf16_supported=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_bf16_on_cpu_fails_before_loading_anything(tmp_path, data):
    tokenizer, examples = data
    with pytest.raises(PrecisionError):
        build_trainer(str(tmp_path / "never-read"), tokenizer, examples[:2], tmp_path,
                      TrainSettings(dtype="bf16", max_steps=1))


def test_attention_kernel_choice():
    from distill.students.precision import choose_attention

    assert choose_attention("auto", "bf16", cuda=True, flash_installed=True) == "flash_attention_2"
    assert choose_attention("auto", "bf16", cuda=True, flash_installed=False) == "sdpa"
    assert choose_attention("auto", "fp32", cuda=True, flash_installed=True) == "sdpa"  # FA2 is half precision only
    assert choose_attention("auto", "fp32", cuda=False, flash_installed=True) == "sdpa"
    assert choose_attention("eager", "fp32", cuda=False, flash_installed=False) == "eager"
    with pytest.raises(PrecisionError, match="flash_attention_2 needs a CUDA GPU"):
        choose_attention("flash_attention_2", "fp32", cuda=False, flash_installed=False)


def test_student_dtype_and_options_are_config_keys(tiny_config):
    from distill.config import ConfigError

    cfg = tiny_config(student__dtype="fp32", student__lr_scheduler="cosine_with_min_lr", student__max_grad_norm=0.2,
                      student__rope={"theta": 300000, "max_position_embeddings": 32768})
    assert cfg.student.dtype == "fp32" and cfg.student.rope.theta == 300000
    with pytest.raises(ConfigError, match="student.dtype"):
        tiny_config(student__dtype="bfloat17")
    with pytest.raises(ConfigError, match="student.rope.scaling.factor"):
        tiny_config(student__rope={"scaling": {"type": "yarn", "factor": 0.5}})


def test_lora_targets_reach_the_trainer_and_the_plan():
    from distill.config import load_config
    from distill.students.trainer import train_settings_from_config
    from distill.students.plan import plan_run

    mlp_too = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    attention = load_config(REPO / "configs" / "r1-distill-qwen-7b.yaml", ["student.method=lora"])
    everything = load_config(REPO / "configs" / "r1-distill-qwen-7b.yaml",
                             ["student.method=lora", f"student.lora_target_modules=[{', '.join(mlp_too)}]",
                              "student.lora_dropout=0.05"])
    settings = train_settings_from_config(everything.student)
    assert settings.lora_target_modules == mlp_too and settings.lora_dropout == 0.05
    # Qwen2.5-7B, r 16: attention 16*(3584+3584 + 3584+512 + 3584+512 + 3584+3584)*28, MLP adds 3*16*(3584+18944)*28
    few = plan_run(attention).student.memory.trainable_parameters
    many = plan_run(everything).student.memory.trainable_parameters
    assert few == 16 * 28 * (2 * 3584 + 2 * (3584 + 512) + 2 * 3584)
    assert many - few == 3 * 16 * 28 * (3584 + 18944)


# ----------------------------------------------------------------------------- options reach TRL


def test_training_options_reach_sft_config(tmp_path, data):
    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(**SMALL), tokenizer)
    settings = TrainSettings(max_steps=10, learning_rate=1e-3, lr_scheduler="cosine_with_min_lr", min_lr_rate=0.1,
                             warmup_ratio=0.2, max_grad_norm=0.2, padding_free=True, gradient_checkpointing=True,
                             use_liger_kernel=True, batch_size=4, max_length=256)
    trainer = build_trainer(model, tokenizer, examples[:8], tmp_path, settings)
    args = trainer.args
    assert args.lr_scheduler_type == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert args.max_grad_norm == 0.2 and args.gradient_checkpointing
    assert args.warmup_steps == 0.2 and args.get_warmup_steps(10) == 2  # a share of the real steps
    assert args.padding_free and trainer.data_collator.padding_free
    assert args.bf16 is False and args.fp16 is False  # auto on CPU
    if not torch.cuda.is_available():
        assert args.use_liger_kernel is False  # skipped with a warning on CPU
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    lrs.append(trainer.lr_scheduler.get_last_lr()[0])
    assert lrs[0] == 0 and max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)  # decays to 10% of the peak, not to 0


def test_training_arguments_exist_before_the_model_is_loaded(tmp_path, data, monkeypatch):
    """ZeRO-3's zero3_init_flag: from_pretrained loads straight into shards only if the TrainingArguments
    (which create the DeepSpeed config it consults) already exist when the model is loaded."""
    import trl
    from transformers import AutoModelForCausalLM

    tokenizer, examples = data
    build_tiny_model(TinyModelSpec(**SMALL), tokenizer).save_pretrained(str(tmp_path / "base"))
    events = []

    class RecordingSFTConfig(trl.SFTConfig):
        def __post_init__(self):
            events.append("training arguments")
            super().__post_init__()

    load = AutoModelForCausalLM.from_pretrained

    def recording_load(*args, **kwargs):
        events.append("model loaded")
        return load(*args, **kwargs)

    monkeypatch.setattr(trl, "SFTConfig", RecordingSFTConfig)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording_load)
    trainer = build_trainer(str(tmp_path / "base"), tokenizer, examples[:2], tmp_path / "out",
                            TrainSettings(max_steps=1, max_length=256))
    assert isinstance(trainer.args, RecordingSFTConfig)
    assert events == ["training arguments", "model loaded"]


# ----------------------------------------------------------------------------- RoPE extension


def test_rope_extension_is_applied_and_recorded_in_config_json(tmp_path, data, base_dir):
    tokenizer, examples = data
    rope = {"theta": 300000.0, "max_position_embeddings": 8192, "scaling": None}
    result = train_sft(str(base_dir), tokenizer, examples[:8], tmp_path, TrainSettings(
        max_steps=2, learning_rate=1e-3, batch_size=4, max_length=256, save_steps=100, rope=rope))
    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["max_position_embeddings"] == 8192
    assert saved["rope_parameters"]["rope_theta"] == 300000.0
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    head_dim = SMALL["hidden_size"] // SMALL["num_heads"]
    expected = 1.0 / (300000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    assert torch.allclose(reloaded.model.rotary_emb.inv_freq, expected)  # the reloaded model uses the new theta


def test_rope_scaling_rule_rebuilds_the_rotary_embedding(data):
    from distill.students.rope import apply_rope

    tokenizer, _ = data
    model = build_tiny_model(TinyModelSpec(**SMALL), tokenizer)
    before = model.model.rotary_emb.inv_freq.clone()
    params = apply_rope(model, theta=20000.0, max_position_embeddings=8192,
                        scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048})
    assert params == {"rope_theta": 20000.0, "rope_type": "yarn", "factor": 4.0,
                      "original_max_position_embeddings": 2048}
    assert model.config.max_position_embeddings == 8192
    assert model.model.rotary_emb.rope_type == "yarn" and not torch.equal(model.model.rotary_emb.inv_freq, before)


def test_long_context_recipes_raise_rope_theta():
    from distill.config import load_config

    for name in ("r1-distill-qwen-1.5b", "r1-distill-qwen-7b"):
        st = load_config(REPO / "configs" / f"{name}.yaml").student
        assert st.rope and st.rope.theta == 300000 and st.rope.max_position_embeddings >= st.max_length


# ----------------------------------------------------------------------------- LoRA and QLoRA


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_lora_and_qlora_students_learn_and_the_merged_model_reloads(tmp_path, data, base_dir, method):
    from transformers import AutoModelForCausalLM

    tokenizer, examples = data
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    settings = TrainSettings(method=method, max_steps=40, learning_rate=5e-3, batch_size=8, max_length=256,
                             logging_steps=5, save_steps=100, lora_r=16, lora_alpha=32,
                             lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"])
    result = train_sft(str(base_dir), tokenizer, examples[:32], tmp_path, settings)
    losses = [loss for _, loss in result.losses]
    assert losses[-1] < losses[0] - 0.1 and losses == sorted(losses, reverse=True), result.losses

    from safetensors.torch import load_file

    adapter = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means it trained

    merged = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    assert getattr(merged.config, "quantization_config", None) is None  # merged in full precision
    assert not any("lora" in k for k in merged.state_dict())
    changed = [k for k, v in base.state_dict().items() if "proj.weight" in k and not torch.equal(v, merged.state_dict()[k])]
    assert len(changed) == 14  # every targeted projection of both layers carries the merged update
    # the merged student predicts the training completions better than the base did
    assert completion_loss(merged, tokenizer, examples[:8]) < completion_loss(base, tokenizer, examples[:8]) - 0.05


def completion_loss(model, tokenizer, examples) -> float:
    """Mean loss on the assistant turns (the prompt masked), as the trainer computes it."""
    losses = []
    for ex in examples:
        prompt = tokenizer.apply_chat_template(ex["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True,
                                             return_dict=True)["input_ids"]
        ids = torch.tensor([full])
        labels = ids.clone()
        labels[0, :len(prompt)] = -100
        with torch.no_grad():
            losses.append(float(model(input_ids=ids, labels=labels).loss))
    return sum(losses) / len(losses)


# ----------------------------------------------------------------------------- out of memory


def _oom_at_first_forward(model):
    def hook(module, inputs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)")

    model.model.layers[0].register_forward_pre_hook(hook)


def test_out_of_memory_at_the_first_step_lists_the_plans_remedies(tmp_path, data):
    from distill.config import load_config
    from distill.students.plan import oom_remedies

    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(**SMALL), tokenizer)
    _oom_at_first_forward(model)
    config = load_config(REPO / "configs" / "r1-distill-qwen-7b.yaml",
                         ["student.gradient_checkpointing=false"])
    with pytest.raises(TrainingOutOfMemoryError) as err:
        train_sft(model, tokenizer, examples[:8], tmp_path, TrainSettings(max_steps=2, batch_size=4, max_length=256),
                  remedies=lambda: oom_remedies(config))
    message = str(err.value)
    assert message.startswith("out of memory at the first step") and "Tried to allocate 20.00 GiB" in message
    assert "what `distill plan` says would fit" in message
    assert "student.gradient_checkpointing: true" in message and "GB/GPU" in message
    assert "distill plan CONFIG" in message


def test_out_of_memory_without_a_plan_gives_generic_remedies(tmp_path, data):
    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(**SMALL), tokenizer)
    _oom_at_first_forward(model)
    with pytest.raises(TrainingOutOfMemoryError) as err:
        train_sft(model, tokenizer, examples[:8], tmp_path, TrainSettings(max_steps=2, batch_size=4, max_length=256))
    message = str(err.value)
    assert "ways to need less memory" in message
    for remedy in ("student.gradient_checkpointing: true", "student.method: lora", "student.method: qlora",
                   "zero3-offload.yaml", "student.max_length: 1024", "student.batch_size: 1"):
        assert remedy in message


def test_host_memory_error_is_reported_the_same_way(tmp_path, data, monkeypatch):
    import trl

    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(**SMALL), tokenizer)

    def no_memory(self, *args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(trl.SFTTrainer, "train", no_memory)
    with pytest.raises(TrainingOutOfMemoryError, match="out of memory while loading the model .*MemoryError"):
        train_sft(model, tokenizer, examples[:8], tmp_path, TrainSettings(max_steps=2, batch_size=4, max_length=256))


# ----------------------------------------------------------------------------- through the pipeline


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of bf16")
def test_pipeline_applies_the_student_options_and_refuses_bf16_on_cpu(tmp_path, teacher_cache):
    from tests.conftest import run_cli, tiny_config_dict, write_yaml

    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["student"].update(max_steps=4, padding_free=True, lr_scheduler="cosine_with_min_lr", max_grad_norm=0.5,
                          rope={"theta": 50000, "max_position_embeddings": 4096})
    config = write_yaml(tmp_path / "run.yaml", raw)
    done = run_cli("run", str(config), "--until", "train")
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "runs" / "tiny" / "train" / "model" / "config.json").read_text())
    assert saved["rope_parameters"]["rope_theta"] == 50000 and saved["max_position_embeddings"] == 4096

    refused = run_cli("run", str(config), "--until", "train", "--set", "student.dtype=bf16")
    assert refused.returncode == 2, refused.stderr
    assert "student.dtype: bf16 needs a CUDA GPU" in refused.stderr and "Traceback" not in refused.stderr


def test_padding_free_truncation_drops_rows_whose_completion_is_cut_off(tmp_path, data):
    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(**SMALL), tokenizer)
    long_prompt = [{**examples[0]["prompt"][0], "content": " ".join([examples[0]["prompt"][0]["content"]] * 40)}]
    cut_off = {**examples[0], "prompt": long_prompt}  # its prompt alone fills max_length
    settings = TrainSettings(max_steps=1, padding_free=True, batch_size=2, max_length=96)
    trainer = build_trainer(model, tokenizer, [cut_off] + examples[1:5], tmp_path, settings)
    rows = trainer.train_dataset
    assert len(rows) == 4  # the cut-off row is gone, the others stay
    assert all(len(r["input_ids"]) <= 96 and any(label != -100 for label in r["labels"]) for r in rows)
