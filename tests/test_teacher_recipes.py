"""Every teacher recipe in configs/teachers/ validates, keeps DeepSeek's sampling defaults and builds its server."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from distill.config import load_config
from teachers.serve import server_command
from tests.conftest import REPO, run_cli

RECIPES = sorted((REPO / "configs" / "teachers").glob("*.yaml"))


def test_the_expected_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"deepseek-r1-vllm-8xh200", "deepseek-r1-vllm-2x8xh100", "deepseek-r1-sglang", "deepseek-r1-api",
            "deepseek-r1-0528-vllm", "r1-distill-qwen-7b-vllm", "r1-distill-qwen-32b-vllm"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_deepseek_sampling_defaults(recipe: Path):
    out = run_cli("validate", str(recipe))
    assert out.returncode == 0, out.stderr
    t = load_config(recipe).teacher
    assert (t.temperature, t.top_p, t.max_tokens) == (0.6, 0.95, 32768)
    if recipe.stem != "deepseek-r1-api":  # every self-hosted recipe can start its server
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
    api = teacher("deepseek-r1-api")
    assert api.model == "deepseek-reasoner" and api.openai.endpoints == ["https://api.deepseek.com"]
    assert api.openai.api_key_env == "DEEPSEEK_API_KEY"
    assert teacher("r1-distill-qwen-7b-vllm").scale_out.backend == "ray"
