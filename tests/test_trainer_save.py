"""The final save under sharded training (ZeRO-3, FSDP2): gathering the full weights is a collective,
so every process must take part, and the main process writes the full-shaped model (LoRA merged into the
base reloaded from disk).

A real sharded run needs DeepSpeed or FSDP2 across processes; here the trainer's accelerator is a
stand-in that records who gathers and returns the full state dict the real one would, while the
models, PEFT merge and files are real. Real 2-process ZeRO-3 and FSDP2 launches on CPU are in
test_sharded_cpu.py; the 2-process DDP test in test_ddp.py covers plain data parallelism.
"""

from __future__ import annotations

import pytest
import torch

from distill.problems import final_answer_text, generate_arithmetic
from distill.students.models import TinyModelSpec, build_tiny_model
from distill.students.toy_tokenizer import build_toy_tokenizer
from distill.students.trainer import TrainSettings, save_final_model

SPEC = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)


class FakeAccelerator:
    def __init__(self, full_state_dict):
        self.full_state_dict = full_state_dict
        self.gathered = 0
        self.barriers = 0

    def get_state_dict(self, model, unwrap=True):
        self.gathered += 1
        return dict(self.full_state_dict)  # a fresh dict per gather, as accelerate's (save_pretrained edits it)

    def unwrap_model(self, model, keep_torch_compile=True):
        return model

    def wait_for_everyone(self):
        self.barriers += 1


class FakeTrainer:
    """What save_final_model reads of a transformers Trainer on one rank of a launched run."""

    def __init__(self, model, full_state_dict, rank: int, sharding: str | None):
        self.model = model
        self.deepspeed = model if sharding == "zero3" else None
        self.is_deepspeed_enabled = sharding == "zero3"
        self.is_fsdp_enabled = sharding == "fsdp2"
        self.accelerator = FakeAccelerator(full_state_dict)
        self.rank = rank

    def is_world_process_zero(self):
        return self.rank == 0


@pytest.fixture(scope="module")
def tokenizer():
    problems = generate_arithmetic(8, 3, 1, 2, "s")
    return build_toy_tokenizer([f"{p.problem} {p.solution} {final_answer_text(p.answer)}" for p in problems])


@pytest.mark.parametrize("sharding", ["zero3", "fsdp2"])
def test_every_rank_gathers_and_only_the_main_one_writes_the_full_model(tmp_path, tokenizer, sharding):
    trained = build_tiny_model(SPEC, tokenizer, seed=1)
    full = {k: v.clone() for k, v in trained.state_dict().items()}  # as gathered: each tied name its own tensor
    assert "lm_head.weight" in full and trained.config.tie_word_embeddings
    shard = build_tiny_model(SPEC, tokenizer, seed=2)  # what a rank holds: not the trained weights
    for name, param in shard.named_parameters():  # ZeRO-3 placeholders are empty
        param.data = torch.empty(0)

    other = FakeTrainer(shard, full, rank=1, sharding=sharding)
    save_final_model(other, tokenizer, tmp_path / "r1" / "model")
    assert other.accelerator.gathered == 1 and other.accelerator.barriers >= 1
    assert not (tmp_path / "r1").exists()  # only the main process writes

    main = FakeTrainer(shard, full, rank=0, sharding=sharding)
    save_final_model(main, tokenizer, tmp_path / "r0" / "model")
    assert main.accelerator.gathered == 1
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(str(tmp_path / "r0" / "model"))
    for name, value in saved.state_dict().items():
        assert torch.equal(value, full[name]), name
    from safetensors import safe_open

    with safe_open(str(tmp_path / "r0" / "model" / "model.safetensors"), "pt") as written:
        assert "lm_head.weight" not in written.keys()  # the tied LM head is not written a second time


def test_ddp_ranks_do_not_gather_and_the_main_one_saves_its_replica(tmp_path, tokenizer):
    model = build_tiny_model(SPEC, tokenizer, seed=1)
    other = FakeTrainer(model, None, rank=1, sharding=None)
    save_final_model(other, tokenizer, tmp_path / "r1" / "model")
    assert other.accelerator.gathered == 0 and not (tmp_path / "r1").exists()
    main = FakeTrainer(model, None, rank=0, sharding=None)
    save_final_model(main, tokenizer, tmp_path / "r0" / "model")
    assert (tmp_path / "r0" / "model" / "model.safetensors").is_file()


def test_sharded_lora_merges_the_gathered_adapters_into_the_base_from_disk(tmp_path, tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = tmp_path / "base"
    build_tiny_model(SPEC, tokenizer, seed=1).save_pretrained(str(base_dir))
    settings = TrainSettings(method="lora", lora_r=4, lora_alpha=8)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir)),
                                LoraConfig(r=4, lora_alpha=8, target_modules=settings.lora_target_modules,
                                           task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():  # "trained" adapters: lora_B is zero at init
        if "lora_" in name:
            param.data = torch.randn_like(param) * 0.1
    full = {k: v.clone() for k, v in peft_model.state_dict().items()}
    expected = {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}

    shard = get_peft_model(build_tiny_model(SPEC, tokenizer, seed=2),  # the main rank's shard: not these weights
                           LoraConfig(r=4, lora_alpha=8, target_modules=settings.lora_target_modules,
                                      task_type="CAUSAL_LM"))
    trainer = FakeTrainer(shard, full, rank=0, sharding="zero3")
    save_final_model(trainer, tokenizer, tmp_path / "run" / "model", str(base_dir), settings)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run" / "model")).state_dict()
    assert set(merged) == set(expected)
    for name, value in merged.items():
        assert torch.allclose(value, expected[name], atol=1e-6), name
