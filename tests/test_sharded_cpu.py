"""Sharded training on CPU through the recipes' own accelerate configs: DeepSpeed ZeRO-3 and FSDP2.

`configs/accelerate/zero3.yaml` and `fsdp2.yaml` are adapted to two CPU processes by
`distill.students.train_launch.cpu_launch` (the code path a rehearsal uses: fp32 instead of bf16, one
machine of 2 processes, DeepSpeed's CPU accelerator over gloo); everything else -- ZeRO stage 3 with
`zero3_init_flag` and the 16-bit consolidated save, FSDP version 2 with sharded checkpoints and
`cpu_ram_efficient_loading` -- runs as shipped. The student is Qwen2.5-Math-1.5B's shape shrunk to
2 layers (12 query heads, 2 KV heads, the full 151,936-token tied vocabulary, QKV biases): 2 processes
x batch 2 must train exactly like 1 process x batch 4, and the saved model (gathered from the shards)
must reload equal to the 1-process one.

The first ZeRO-3 launch on a machine JIT-builds DeepSpeed's small shared-memory op (a minute or two,
cached in ~/.cache/torch_extensions).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from distill.students.train_launch import cpu_launch, launch_command, load_accelerate_config
from tests.conftest import REPO, toy_sft_data

SETTINGS = {"max_steps": 3, "logging_steps": 1, "learning_rate": 1e-3, "save_steps": 2, "max_length": 256}
ACCELERATE = REPO / "configs" / "accelerate"
SHARDING = {"zero3": "DeepSpeed ZeRO-3", "fsdp2": "FSDP2 (SHARDED_STATE_DICT)"}


def qwen25_math_15b_shaped(folder, tokenizer) -> None:
    """Qwen2.5-Math-1.5B's configuration (distill plan's known shape) at 2 layers and head_dim 8."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from distill.students.plan_shapes import model_shape

    shape = model_shape("Qwen/Qwen2.5-Math-1.5B")
    head_dim = 8
    config = Qwen2Config(vocab_size=shape.vocab_size, hidden_size=shape.num_heads * head_dim, num_hidden_layers=2,
                         num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
                         intermediate_size=2 * shape.num_heads * head_dim,
                         max_position_embeddings=shape.max_position_embeddings,
                         tie_word_embeddings=shape.tie_word_embeddings, rope_theta=10000.0,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded")
    tokenizer, examples = toy_sft_data(32, 3, 1, 2, "s")
    qwen25_math_15b_shaped(folder / "base", tokenizer)
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    return folder


def entry_args(workdir, name: str, batch_size: int) -> list[str]:
    return ["--examples", str(workdir / "examples.jsonl"), "--base", str(workdir / "base"),
            "--output", str(workdir / name), "--settings", json.dumps({**SETTINGS, "batch_size": batch_size})]


def run(cmd: list[str], env: dict[str, str]) -> str:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONPATH": str(REPO), **env}
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def one_process(workdir):
    log = run([sys.executable, "-m", "distill.students.train_entry", *entry_args(workdir, "one", 4)], {})
    assert "world_size 1 (processes), one process" in log
    return workdir / "one"


def reload(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["zero3", "fsdp2"])
def test_two_sharded_cpu_processes_save_the_model_one_process_trains(workdir, one_process, recipe, tmp_path):
    if recipe == "zero3" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (pip install -e .[dev])")
    launch = cpu_launch(load_accelerate_config(ACCELERATE / f"{recipe}.yaml"), num_processes=2)
    config_file = launch.write(tmp_path / f"{recipe}-cpu.yaml")
    log = run(launch_command(config_file, entry_args(workdir, recipe, 2)), launch.env)

    # both processes trained as one sharded group (not a silent fallback to full replicas)
    assert log.count("world_size 2 (processes)") == 2 and SHARDING[recipe] in log, log[-3000:]
    two = json.loads((workdir / recipe / "losses.json").read_text())["losses"]
    one = json.loads((one_process / "losses.json").read_text())["losses"]
    assert [s for s, _ in two] == [s for s, _ in one] == [1, 2, 3]
    for (step, a), (_, b) in zip(two, one):
        assert a == pytest.approx(b, rel=1e-4), (step, two, one)

    # the final model is whole (gathered from the shards), consolidated in one safetensors file, and the
    # tied LM head is not written twice
    from safetensors import safe_open

    with safe_open(str(workdir / recipe / "model" / "model.safetensors"), "pt") as saved:
        keys = set(saved.keys())
        assert saved.get_slice("model.embed_tokens.weight").get_shape() == [151936, 96]
    assert "lm_head.weight" not in keys
    sharded, single, base = reload(workdir / recipe / "model"), reload(one_process / "model"), reload(workdir / "base")
    assert set(sharded) == set(single)
    for name, value in sharded.items():
        assert value.shape == base[name].shape, name
        assert torch.allclose(value, single[name], atol=1e-4, rtol=0), name
    assert any(not torch.equal(sharded[n], base[n]) for n in base)  # the trained weights, not the base's
    assert (workdir / recipe / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()


def test_the_cpu_launch_keeps_the_sharding_and_replaces_only_what_needs_a_gpu():
    zero3 = cpu_launch(load_accelerate_config(ACCELERATE / "zero3.yaml"), num_processes=2, port=29555)
    assert zero3.config["distributed_type"] == "DEEPSPEED"
    assert zero3.config["deepspeed_config"]["zero_stage"] == 3
    assert zero3.config["deepspeed_config"]["zero3_init_flag"] is True
    assert zero3.config["deepspeed_config"]["zero3_save_16bit_model"] is True
    assert zero3.config["mixed_precision"] == "no" and zero3.config["num_processes"] == 2
    assert zero3.env["DS_ACCELERATOR"] == "cpu" and zero3.env["OMP_NUM_THREADS"] == "1"
    assert any(s.startswith("mixed_precision: bf16 -> no") for s in zero3.substitutions)

    fsdp = cpu_launch(load_accelerate_config(ACCELERATE / "fsdp2.yaml"), num_processes=2, port=29556)
    assert fsdp.config["distributed_type"] == "FSDP"
    assert fsdp.config["fsdp_config"] == load_accelerate_config(ACCELERATE / "fsdp2.yaml")["fsdp_config"]
    assert "DS_ACCELERATOR" not in fsdp.env

    multinode = cpu_launch(load_accelerate_config(ACCELERATE / "multinode-zero3.yaml"), num_processes=2, port=1)
    assert multinode.config["num_machines"] == 1 and "main_process_ip" not in multinode.config
    assert any("main_process_ip" in s for s in multinode.substitutions)


def test_fsdp2_config_leaves_activation_checkpointing_to_the_recipes_gradient_checkpointing():
    """transformers refuses fsdp_activation_checkpointing together with gradient_checkpointing, and every
    recipe sets student.gradient_checkpointing: true."""
    import yaml

    fsdp = load_accelerate_config(ACCELERATE / "fsdp2.yaml")
    assert fsdp["fsdp_config"]["fsdp_activation_checkpointing"] is False
    for recipe in sorted(REPO.glob("configs/r1-distill-*.yaml")):
        assert yaml.safe_load(recipe.read_text())["student"]["gradient_checkpointing"] is True, recipe
