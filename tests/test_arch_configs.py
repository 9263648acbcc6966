"""The stored published configs: every model the shipped recipes name, agreeing with the planner and tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from distill.students.arch_configs import (attention_heads, head_dim, known_models, max_positions, model_config,
                                           published_config, rope_scaling)
from distill.students.plan_shapes import ALIASES, MODELS, model_shape
from tests.conftest import REPO, SHARED_DATA

BASES = ["Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-14B",
         "Qwen/Qwen2.5-32B", "meta-llama/Llama-3.3-70B-Instruct"]


def _recipe_models() -> set[str]:
    names = set()
    for path in [*REPO.glob("configs/r1-distill-*.yaml"), *REPO.glob("configs/teachers/*.yaml")]:
        doc = yaml.safe_load(path.read_text())
        for section in ("teacher", "student"):
            model = (doc.get(section) or {}).get("model")
            if model and "/" in model:
                names.add(model)
    return names


@pytest.mark.parametrize("model", sorted(_recipe_models()))
def test_every_model_a_shipped_recipe_names_has_a_published_config(model):
    cfg = published_config(model)
    assert cfg is not None, f"{model} (named by a shipped recipe) has no stored config.json"
    assert cfg["architectures"] and cfg["model_type"] in ("qwen2", "llama", "deepseek_v3")


# Typed from the model cards' config.json (the planner's hand-written table before it was derived from
# arch_configs.json): hidden, layers, heads, KV heads, MLP width, vocabulary, tied, QKV bias, max positions.
CARD_SHAPES = {
    "qwen/qwen2.5-math-1.5b": (1536, 28, 12, 2, 8960, 151936, True, True, 4096),
    "qwen/qwen2.5-math-7b": (3584, 28, 28, 4, 18944, 152064, False, True, 4096),
    "meta-llama/llama-3.1-8b": (4096, 32, 32, 8, 14336, 128256, False, False, 131072),
    "qwen/qwen2.5-14b": (5120, 48, 40, 8, 13824, 152064, False, True, 131072),
    "qwen/qwen2.5-32b": (5120, 64, 40, 8, 27648, 152064, False, True, 131072),
    "meta-llama/llama-3.3-70b-instruct": (8192, 80, 64, 8, 28672, 128256, False, False, 131072),
    "deepseek-ai/deepseek-r1": (7168, 61, 128, 128, 18432, 129280, False, False, 163840),
}


def _card_fields(shape):
    return (shape.hidden_size, shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.intermediate_size,
            shape.vocab_size, shape.tie_word_embeddings, shape.qkv_bias, shape.max_position_embeddings)


def test_the_planner_shapes_are_the_published_configs():
    """plan_shapes derives its table from arch_configs.json; each entry (and each alias) must give the shape
    the model card states, typed independently above."""
    assert {m.lower() for m in BASES} | {"deepseek-ai/deepseek-r1"} == set(MODELS) == set(CARD_SHAPES)
    for key, shape in MODELS.items():
        assert _card_fields(shape) == CARD_SHAPES[key], key
    r1 = MODELS["deepseek-ai/deepseek-r1"]
    assert r1.native_dtype == "fp8" and r1.moe and r1.mla and r1.mla.kv_lora_rank == 512
    for alias, target in ALIASES.items():
        assert _card_fields(model_shape(alias)) == CARD_SHAPES[target], alias


def test_known_facts_of_the_published_files():
    """Values the model cards and reports state, checked independently of the table's own arithmetic."""
    r1 = published_config("deepseek-ai/DeepSeek-R1")
    assert r1["quantization_config"]["quant_method"] == "fp8" and r1["rope_scaling"]["type"] == "yarn"
    assert max_positions(r1) == 4096 * 40 == r1["max_position_embeddings"]  # YaRN x40 over 4k
    assert (r1["n_routed_experts"], r1["num_experts_per_tok"], r1["first_k_dense_replace"]) == (256, 8, 3)
    assert head_dim(r1) == 192 and attention_heads(r1) == (128, 128)
    math15 = published_config("Qwen/Qwen2.5-Math-1.5B")
    assert (max_positions(math15), math15["rope_theta"], math15["tie_word_embeddings"]) == (4096, 10000.0, True)
    assert attention_heads(math15) == (12, 2)  # TP 8 cannot split 12 heads: the eval defect of issue 12
    assert published_config("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")["tie_word_embeddings"] is False
    for llama in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.3-70B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"):
        rule = rope_scaling(published_config(llama))
        assert rule == {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                        "original_max_position_embeddings": 8192, "rope_type": "llama3"}
        assert max_positions(published_config(llama)) == 131072
    assert published_config("DEEPSEEK-AI/deepseek-v3") == r1  # case-insensitive, aliases followed
    assert published_config("some-org/unknown") is None


def test_a_local_folder_wins_over_the_published_config(tmp_path):
    cfg = published_config("Qwen/Qwen2.5-Math-7B")
    cfg["max_position_embeddings"] = 32768
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert model_config(str(tmp_path))["max_position_embeddings"] == 32768
    assert model_config("Qwen/Qwen2.5-Math-7B")["max_position_embeddings"] == 4096
    published_config("Qwen/Qwen2.5-Math-7B")["hidden_size"] = 1  # callers get copies
    assert published_config("Qwen/Qwen2.5-Math-7B")["hidden_size"] == 3584


def _special_ids(folder: Path) -> dict[str, int]:
    doc = json.loads((folder / "tokenizer_config.json").read_text())
    return {entry["content"]: int(i) for i, entry in doc["added_tokens_decoder"].items()}


@pytest.mark.skipif(not (SHARED_DATA / "tokenizers").is_dir(), reason="../shared/data/tokenizers absent")
def test_bos_eos_ids_agree_with_the_real_tokenizers():
    tok = SHARED_DATA / "tokenizers"
    llama = _special_ids(tok / "llama-3.1-instruct")
    assert published_config("meta-llama/Llama-3.1-8B")["bos_token_id"] == llama["<|begin_of_text|>"]
    assert published_config("meta-llama/Llama-3.1-8B")["eos_token_id"] == llama["<|end_of_text|>"]
    assert llama["<|eot_id|>"] in published_config("meta-llama/Llama-3.3-70B-Instruct")["eos_token_id"]
    qwen = _special_ids(tok / "qwen2.5-instruct")
    assert published_config("Qwen/Qwen2.5-Math-1.5B")["eos_token_id"] == qwen["<|endoftext|>"]
    distill = _special_ids(tok / "deepseek-r1-distill-qwen")
    assert published_config("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")["eos_token_id"] == \
        distill["<｜end▁of▁sentence｜>"]
    for model in known_models():
        cfg = published_config(model)
        table = llama if cfg["model_type"] == "llama" else distill if "Distill-Qwen" in model else qwen
        if cfg["model_type"] != "deepseek_v3":
            assert cfg["vocab_size"] >= max(table.values()) + 1, model
