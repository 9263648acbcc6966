"""GGUF export of the real recipe architectures, shrunk: loaded in llama.cpp with the real tokenizers.

Two students the shipped recipes train, built from their published config.json at 2 layers and a head
dimension of 8 (head counts, KV heads, vocabulary, RoPE, tied/untied embeddings and biases kept):

* Llama-3.1-8B: 32 heads / 8 KV heads, ``llama3`` rope scaling, theta 500000, untied, vocab 128256,
  the real Llama-3.1 tokenizer (which prepends ``<|begin_of_text|>``);
* Qwen2.5-Math-1.5B: 12 heads / 2 KV heads, tied embeddings, q/k/v biases, vocab 151936, the real
  Qwen2.5 tokenizer (no BOS).

Each GGUF must tokenize a mixed text (English, Chinese, LaTeX, code, emoji) exactly like the HF tokenizer,
with and without special tokens, and give logits within the f32 tolerance of transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from tests.conftest import SHARED_DATA  # noqa: E402

TOKENIZERS = SHARED_DATA / "tokenizers"
HEAD_DIM = 8

MIXED_TEXT = (
    "Prove that $\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}$ for n = 12345.\n"
    "证明：对所有正整数 n，等式成立。答案是 78。\n"
    "```python\ndef total(n: int) -> int:\n    return n * (n + 1) // 2  # 🙂🚀\n```\n"
    "naïve café — 東京 ✓ \t  trailing  "
)


def _tokenizer(name: str):
    folder = TOKENIZERS / name
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip(f"{folder} is absent (../shared not here)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if name.startswith("llama"):
        # The released tokenizer.json prepends <|begin_of_text|> (a TemplateProcessing post-processor);
        # the shared folder keeps only tokenizer.model, whose conversion does not record it.
        tok.add_bos_token = True
    return tok


def _shrunk_model(base: str, tokenizer_name: str, folder: Path) -> Path:
    """The published config of ``base`` at 2 layers and HEAD_DIM, random weights, saved with the real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from distill.students.arch_configs import published_config

    tokenizer = _tokenizer(tokenizer_name)
    cfg = published_config(base)
    cfg.update(num_hidden_layers=2, hidden_size=cfg["num_attention_heads"] * HEAD_DIM, intermediate_size=64)
    cfg.pop("torch_dtype", None)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # the default init leaves biases at zero and norms at one: make both matter
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(1.0, 0.1)
            elif name.endswith(".bias"):
                param.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama31(tmp_path_factory):
    return _shrunk_model("meta-llama/Llama-3.1-8B", "llama-3.1-instruct", tmp_path_factory.mktemp("llama31"))


@pytest.fixture(scope="module")
def qwen_math(tmp_path_factory):
    return _shrunk_model("Qwen/Qwen2.5-Math-1.5B", "qwen2.5-instruct", tmp_path_factory.mktemp("qwen-math"))


def _field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _check_in_llama_cpp(model_dir: Path, gguf_path: Path) -> dict:
    from transformers import AutoTokenizer

    from distill.students.export import GGUF_LOGIT_TOLERANCE, gguf_logits_check

    chat = AutoTokenizer.from_pretrained(str(model_dir)).apply_chat_template(
        [{"role": "user", "content": MIXED_TEXT}], tokenize=False, add_generation_prompt=True)
    report = gguf_logits_check(gguf_path, model_dir, texts=[MIXED_TEXT, chat], prompts=[MIXED_TEXT],
                               tolerance=GGUF_LOGIT_TOLERANCE["f32"], n_ctx=1024)
    assert report["tokenization_identical"] and report["texts_checked"] == 2
    assert report["top1_agreement"] == 1.0
    return report


@pytest.mark.slow
def test_llama31_shape_with_llama3_rope_and_bos(llama31, tmp_path):
    import gguf
    import torch
    from transformers import AutoConfig

    from distill.students.export import export_gguf
    from distill.students.export.gguf_support import gguf_unsupported_reason

    config = json.loads((llama31 / "config.json").read_text())
    assert gguf_unsupported_reason(config) is None
    info = export_gguf(llama31, tmp_path / "llama31.gguf", "f32")
    assert info["rope_type"] == "llama3" and info["add_bos_token"] is True and info["tokenizer_pre"] == "llama-bpe"
    reader = gguf.GGUFReader(info["path"])
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.bos_token_id") == 128000
    assert _field(reader, "llama.attention.head_count") == 32 and _field(reader, "llama.attention.head_count_kv") == 8
    assert _field(reader, "llama.rope.freq_base") == 500000.0 and len(_field(reader, "tokenizer.ggml.tokens")) == 128256
    assert "output.weight" in {t.name for t in reader.tensors}  # untied
    # llama.cpp divides each rope frequency by its rope_freqs factor: that must give transformers' inv_freq
    factors = np.asarray(next(t for t in reader.tensors if t.name == "rope_freqs.weight").data, dtype=np.float64)
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_config = AutoConfig.from_pretrained(str(llama31))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, torch.device("cpu"))
    base = 1.0 / (500000.0 ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM))
    np.testing.assert_allclose(base / factors, scaled.double().numpy(), rtol=1e-5)
    assert factors.min() == 1.0 and factors.max() == 8.0 and len(set(factors.round(4))) == 3  # all three bands
    del reader
    _check_in_llama_cpp(llama31, Path(info["path"]))


@pytest.mark.slow
def test_qwen25_math_shape_tied_with_bias_and_no_bos(qwen_math, tmp_path):
    import gguf

    from distill.students.export import export_gguf

    info = export_gguf(qwen_math, tmp_path / "qwen.gguf", "f32")
    assert info["rope_type"] == "default" and info["add_bos_token"] is False and info["tokenizer_pre"] == "qwen2"
    reader = gguf.GGUFReader(info["path"])
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and "blk.0.attn_q.bias" in names  # tied; qkv bias
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert _field(reader, "qwen2.attention.head_count") == 12 and _field(reader, "qwen2.attention.head_count_kv") == 2
    assert len(_field(reader, "tokenizer.ggml.tokens")) == 151936
    del reader
    _check_in_llama_cpp(qwen_math, Path(info["path"]))


def test_support_reasons_are_one_line():
    from distill.students.arch_configs import published_config
    from distill.students.export.gguf_support import gguf_unsupported_reason

    for base in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.3-70B-Instruct", "Qwen/Qwen2.5-Math-1.5B",
                 "Qwen/Qwen2.5-32B", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"):
        assert gguf_unsupported_reason(published_config(base)) is None, base
    yarn = published_config("Qwen/Qwen2.5-Math-7B")
    yarn["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    reason = gguf_unsupported_reason(yarn)
    assert reason and "yarn" in reason and "\n" not in reason
    broken = published_config("meta-llama/Llama-3.1-8B")
    del broken["rope_scaling"]["low_freq_factor"]
    assert "low_freq_factor" in gguf_unsupported_reason(broken)
    r1 = published_config("deepseek-ai/DeepSeek-R1")
    assert "already quantised" in gguf_unsupported_reason(r1)  # R1 ships FP8 weights
    r1.pop("quantization_config")
    assert "DeepseekV3" in gguf_unsupported_reason(r1)
