"""Tests for students/export/: NF4 (bitsandbytes) and GGUF exports of tiny Qwen2 / Llama students."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from distill.students.export import (  # noqa: E402
    ExportError,
    export_gguf,
    export_nf4,
    supported_gguf_qtypes,
    write_ollama_modelfile,
)
from distill.students.export.gguf_tokenizer import _detect_tokenizer_pre, _merges_as_strings  # noqa: E402
from distill.students.models import TinyModelSpec, build_tiny_model  # noqa: E402
from distill.students.toy_tokenizer import QWEN2_PRETOKENIZE_REGEX, build_toy_tokenizer  # noqa: E402

T = gguf.GGMLQuantizationType
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 256


def _corpus() -> list[str]:
    words = (
        "first second then finally total difference product quotient remainder apples oranges train leaves "
        "station minutes hours distance speed check verify multiply subtract divide carry answer result"
    ).split()
    lines = [f"Let me {w} the {v}: {w}s and {v}s." for w in words for v in words[::3]]
    for a in range(3, 40, 3):
        for b in range(2, 30, 4):
            lines.append(f"What is {a} + {b}? Please reason step by step. {a} + {b} = {a + b}. The answer is {a + b}.")
            lines.append(f"Compute {a} * {b}. First, {a} times {b} is {a * b}, so the result is {a * b}.")
    return lines


@pytest.fixture(scope="module")
def tokenizer():
    return build_toy_tokenizer(_corpus())


def _save_tiny(tokenizer, directory: Path, arch: str, hidden: int = HIDDEN, extra_vocab: int = 0) -> Path:
    spec = TinyModelSpec(
        architecture=arch,
        hidden_size=hidden,
        num_layers=LAYERS,
        num_heads=HEADS,
        num_kv_heads=KV_HEADS,
        intermediate_size=FFN,
    )
    model = build_tiny_model(spec, tokenizer, seed=1)
    if arch == "qwen2":
        # Random init leaves the q/k/v biases at zero; make them non-trivial so their export is tested.
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.1)
    if extra_vocab:
        model.resize_token_embeddings(len(tokenizer) + extra_vocab)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dirs(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {arch: _save_tiny(tokenizer, root / arch, arch) for arch in ("qwen2", "llama")}


def _hf_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for file in model_dir.glob("*.safetensors"):
        out.update(load_file(str(file)))
    return out


def _field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _tensor(reader, name):
    matches = [t for t in reader.tensors if t.name == name]
    assert len(matches) == 1, name
    return matches[0]


def _dequant(tensor) -> np.ndarray:
    return gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)


def _reference_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Row-by-row restatement of convert_hf_to_gguf's LlamaModel.permute.

    Within each head HF stores rope pairs as (i, i + d/2); GGML wants them
    adjacent, so GGUF row h*d + 2*i + j is HF row h*d + j*(d/2) + i.
    """
    d = w.shape[0] // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for i in range(d // 2):
            for j in range(2):
                out[h * d + 2 * i + j] = w[h * d + j * (d // 2) + i]
    return out


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------
# NF4


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_nf4_export_reloads_and_reports(model_dirs, tokenizer, tmp_path, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / f"{arch}-nf4"
    result = export_nf4(model_dirs[arch], out, check_prompts=["What is 12 + 7? Please reason step by step."])

    assert Path(result["path"]) == out and out.is_dir()
    assert _leftovers(tmp_path) == []
    full = sum(p.stat().st_size for p in model_dirs[arch].glob("*.safetensors"))
    assert result["full_size_bytes"] == full
    assert result["size_bytes"] == sum(p.stat().st_size for p in out.glob("*.safetensors"))
    assert 0 < result["size_bytes"] < 0.5 * full
    assert 0.5 <= result["top1_agreement"] <= 1.0
    assert 0.0 < result["max_abs_logit_diff"] < 5.0  # 4-bit changes the logits, but not wildly
    assert math.isfinite(result["max_abs_logit_diff"])
    assert result["positions"] == len(tokenizer.encode("What is 12 + 7? Please reason step by step."))

    config = json.loads((out / "config.json").read_text())
    qc = config["quantization_config"]
    assert qc["quant_method"] == "bitsandbytes" and qc["load_in_4bit"] and qc["bnb_4bit_quant_type"] == "nf4"

    reloaded = AutoModelForCausalLM.from_pretrained(str(out), device_map="cpu")
    n_4bit = sum(type(m).__name__ == "Linear4bit" for m in reloaded.modules())
    assert n_4bit == result["quantized_linear_layers"] == LAYERS * 7
    tok = AutoTokenizer.from_pretrained(str(out))
    text = "<|im_start|>user\n<think>9 + 10</think><|im_end|>"
    assert tok.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
    assert tok.chat_template == tokenizer.chat_template


def test_int8_export_reloads_close_to_fp32(model_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    from distill.students.export import export_int8

    out = tmp_path / "int8"
    result = export_int8(model_dirs["qwen2"], out)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["load_in_8bit"] and result["bits"] == 8
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), device_map="cpu")
    assert sum(type(m).__name__ == "Linear8bitLt" for m in reloaded.modules()) == result["quantized_linear_layers"]
    assert result["top1_agreement"] >= 0.9 and result["max_abs_logit_diff"] < 0.1
    assert 0 < result["size_bytes"] < 0.5 * result["full_size_bytes"]


def test_nf4_below_tolerance_raises_and_keeps_previous_export(model_dirs, tmp_path):
    out = tmp_path / "nf4"
    out.mkdir()
    (out / "marker").write_text("previous export")
    with pytest.raises(ExportError, match="agrees with the fp32 model"):
        export_nf4(model_dirs["qwen2"], out, min_top1_agreement=1.01)
    assert sorted(p.name for p in out.iterdir()) == ["marker"]
    assert _leftovers(tmp_path) == []

    # A passing export then replaces the old directory as a whole.
    export_nf4(model_dirs["qwen2"], out, min_top1_agreement=0.0)
    assert not (out / "marker").exists() and (out / "config.json").is_file()
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------
# GGUF


def _expected_names(arch: str) -> set[str]:
    names = {"token_embd.weight", "output_norm.weight"}
    for i in range(LAYERS):
        for t in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_norm"):
            names.add(f"blk.{i}.{t}.weight")
        for t in ("ffn_gate", "ffn_up", "ffn_down", "ffn_norm"):
            names.add(f"blk.{i}.{t}.weight")
        if arch == "qwen2":
            names |= {f"blk.{i}.attn_q.bias", f"blk.{i}.attn_k.bias", f"blk.{i}.attn_v.bias"}
    return names


@pytest.mark.parametrize("qtype", ["f32", "q8_0"])
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_gguf_export_reads_back(model_dirs, tokenizer, tmp_path, arch, qtype):
    model_dir = model_dirs[arch]
    out = tmp_path / f"{arch}-{qtype}.gguf"
    result = export_gguf(model_dir, out, qtype=qtype)

    assert result["arch"] == arch and result["qtype"] == qtype and Path(result["path"]) == out
    assert result["size_bytes"] == out.stat().st_size
    assert result["full_size_bytes"] == sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    if qtype == "q8_0":
        assert result["size_bytes"] < 0.5 * result["full_size_bytes"]
    assert _leftovers(tmp_path) == []

    reader = gguf.GGUFReader(str(out))
    # --- hyper-parameters
    assert _field(reader, "general.architecture") == arch
    expected_ftype = {"f32": gguf.LlamaFileType.ALL_F32, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]
    assert _field(reader, "general.file_type") == expected_ftype
    assert _field(reader, f"{arch}.block_count") == LAYERS
    assert _field(reader, f"{arch}.embedding_length") == HIDDEN
    assert _field(reader, f"{arch}.feed_forward_length") == FFN
    assert _field(reader, f"{arch}.context_length") == 2048
    assert _field(reader, f"{arch}.attention.head_count") == HEADS
    assert _field(reader, f"{arch}.attention.head_count_kv") == KV_HEADS
    assert _field(reader, f"{arch}.rope.freq_base") == pytest.approx(10000.0)
    assert _field(reader, f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)

    # --- tensors: names, count, no output.weight for tied embeddings, types
    names = {t.name for t in reader.tensors}
    assert names == _expected_names(arch)
    assert "output.weight" not in names
    assert result["tensors"] == len(reader.tensors) == len(names)
    for t in reader.tensors:
        if len(t.shape) == 1:
            assert t.tensor_type == T.F32, t.name
        else:
            assert t.tensor_type == (T.F32 if qtype == "f32" else T.Q8_0), t.name

    # --- token embedding: exact for f32, within half a Q8_0 step otherwise
    vocab = len(tokenizer)
    emb = _tensor(reader, "token_embd.weight")
    assert list(emb.shape) == [HIDDEN, vocab]  # GGML order: ne0 = row length
    original = _hf_tensors(model_dir)["model.embed_tokens.weight"]
    restored = _dequant(emb).reshape(original.shape)
    if qtype == "f32":
        np.testing.assert_array_equal(restored, original)
    else:
        step = np.abs(original).max() / 127.0
        assert np.abs(restored - original).max() <= step
        assert not np.array_equal(restored, original)
    norm = _tensor(reader, "output_norm.weight")
    np.testing.assert_array_equal(_dequant(norm), _hf_tensors(model_dir)["model.norm.weight"])

    # --- tokenizer metadata
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "qwen2"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert tokens == tokenizer.convert_ids_to_tokens(list(range(vocab)))
    types = _field(reader, "tokenizer.ggml.token_type")
    expected_types = [int(gguf.TokenType.NORMAL)] * vocab
    for tok in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        expected_types[tokenizer.convert_tokens_to_ids(tok)] = int(gguf.TokenType.CONTROL)
    for tok in ("<think>", "</think>"):
        expected_types[tokenizer.convert_tokens_to_ids(tok)] = int(gguf.TokenType.USER_DEFINED)
    assert types == expected_types
    tj = json.loads((model_dir / "tokenizer.json").read_text())
    expected_merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    assert len(expected_merges) > 100
    assert _field(reader, "tokenizer.ggml.merges") == expected_merges
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert _field(reader, "tokenizer.ggml.padding_token_id") == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert _field(reader, "tokenizer.ggml.bos_token_id") is None  # the toy tokenizer has no BOS
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    template = _field(reader, "tokenizer.chat_template")
    assert template == tokenizer.chat_template and "<|im_start|>" in template


def test_gguf_llama_q_k_are_permuted_and_qwen2_is_not(model_dirs, tmp_path):
    llama = gguf.GGUFReader(str(export_gguf(model_dirs["llama"], tmp_path / "llama.gguf", qtype="f32")["path"]))
    hf = _hf_tensors(model_dirs["llama"])
    for i in range(LAYERS):
        q = hf[f"model.layers.{i}.self_attn.q_proj.weight"]
        k = hf[f"model.layers.{i}.self_attn.k_proj.weight"]
        v = hf[f"model.layers.{i}.self_attn.v_proj.weight"]
        got_q = _dequant(_tensor(llama, f"blk.{i}.attn_q.weight")).reshape(q.shape)
        got_k = _dequant(_tensor(llama, f"blk.{i}.attn_k.weight")).reshape(k.shape)
        got_v = _dequant(_tensor(llama, f"blk.{i}.attn_v.weight")).reshape(v.shape)
        np.testing.assert_array_equal(got_q, _reference_permute(q, HEADS))
        np.testing.assert_array_equal(got_k, _reference_permute(k, KV_HEADS))
        np.testing.assert_array_equal(got_v, v)
        assert not np.array_equal(got_q, q)  # the permutation really moved rows

    qwen = gguf.GGUFReader(str(export_gguf(model_dirs["qwen2"], tmp_path / "qwen2.gguf", qtype="f32")["path"]))
    hf = _hf_tensors(model_dirs["qwen2"])
    for i in range(LAYERS):
        for proj, name in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")):
            w = hf[f"model.layers.{i}.self_attn.{proj}.weight"]
            b = hf[f"model.layers.{i}.self_attn.{proj}.bias"]
            np.testing.assert_array_equal(_dequant(_tensor(qwen, f"blk.{i}.{name}.weight")).reshape(w.shape), w)
            np.testing.assert_array_equal(_dequant(_tensor(qwen, f"blk.{i}.{name}.bias")), b)
            assert np.abs(b).max() > 0


def test_gguf_q4_0_and_f16(model_dirs, tmp_path):
    assert {"f32", "f16", "q8_0", "q4_0"} <= set(supported_gguf_qtypes())
    original = _hf_tensors(model_dirs["qwen2"])["model.embed_tokens.weight"]
    sizes = {}
    for qtype, ggml_type, tol in (("f16", T.F16, 1e-3), ("q4_0", T.Q4_0, 1 / 8)):
        result = export_gguf(model_dirs["qwen2"], tmp_path / f"{qtype}.gguf", qtype=qtype)
        sizes[qtype] = result["size_bytes"]
        reader = gguf.GGUFReader(result["path"])
        emb = _tensor(reader, "token_embd.weight")
        assert emb.tensor_type == ggml_type
        assert _tensor(reader, "blk.0.ffn_down.weight").tensor_type == ggml_type
        assert _tensor(reader, "blk.0.attn_norm.weight").tensor_type == T.F32
        err = np.abs(_dequant(emb).reshape(original.shape) - original).max()
        assert 0 < err <= tol * np.abs(original).max()
    assert sizes["q4_0"] < sizes["f16"]


def test_gguf_falls_back_when_rows_not_divisible_by_block(tokenizer, tmp_path):
    # hidden 48: rows of length 48 cannot be Q8_0 (block 32) -> F16; ffn_down rows are 256 -> Q8_0.
    model_dir = _save_tiny(tokenizer, tmp_path / "odd", "llama", hidden=48)
    result = export_gguf(model_dir, tmp_path / "odd.gguf", qtype="q8_0")
    reader = gguf.GGUFReader(result["path"])
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["token_embd.weight"] == T.F16
    assert types["blk.0.attn_q.weight"] == T.F16
    assert types["blk.0.ffn_gate.weight"] == T.F16
    assert types["blk.0.ffn_down.weight"] == T.Q8_0
    assert types["blk.0.attn_norm.weight"] == T.F32
    assert result["tensor_types"]["blk.1.ffn_down.weight"] == "Q8_0"


def test_gguf_pads_tokens_when_config_vocab_is_larger(tokenizer, tmp_path):
    model_dir = _save_tiny(tokenizer, tmp_path / "padded", "qwen2", extra_vocab=6)
    n = len(tokenizer)
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == n + 6
    reader = gguf.GGUFReader(export_gguf(model_dir, tmp_path / "padded.gguf", qtype="f32")["path"])
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == n + 6
    assert tokens[n:] == [f"[PAD{i}]" for i in range(n, n + 6)]
    assert types[n:] == [int(gguf.TokenType.UNUSED)] * 6
    assert list(_tensor(reader, "token_embd.weight").shape) == [HIDDEN, n + 6]


def test_gguf_writes_output_weight_when_embeddings_are_untied(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from distill.students.models import tiny_config

    config = tiny_config(
        TinyModelSpec(architecture="llama", hidden_size=HIDDEN, num_layers=1, intermediate_size=FFN), tokenizer
    )
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model_dir = tmp_path / "untied"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    reader = gguf.GGUFReader(export_gguf(model_dir, tmp_path / "untied.gguf", qtype="f32")["path"])
    lm_head = _hf_tensors(model_dir)["lm_head.weight"]
    got = _dequant(_tensor(reader, "output.weight")).reshape(lm_head.shape)
    np.testing.assert_array_equal(got, lm_head)
    assert not np.array_equal(got, _dequant(_tensor(reader, "token_embd.weight")).reshape(lm_head.shape))


def test_gguf_rejects_unsupported_arch_and_qtype(model_dirs, tmp_path):
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ExportError, match="GPT2LMHeadModel"):
        export_gguf(gpt2, tmp_path / "gpt2.gguf")
    quantised = {"architectures": ["Qwen2ForCausalLM"], "quantization_config": {"quant_method": "bitsandbytes"}}
    (gpt2 / "config.json").write_text(json.dumps(quantised))
    with pytest.raises(ExportError, match="already quantised"):
        export_gguf(gpt2, tmp_path / "gpt2.gguf")
    with pytest.raises(ExportError, match="qtype"):
        export_gguf(model_dirs["qwen2"], tmp_path / "x.gguf", qtype="q5_k")
    assert not (tmp_path / "gpt2.gguf").exists() and not (tmp_path / "x.gguf").exists()
    assert _leftovers(tmp_path) == []


def test_merges_both_formats_and_pre_tokenizer_detection():
    assert _merges_as_strings(["Ġ t", "h e"]) == ["Ġ t", "h e"]
    assert _merges_as_strings([["Ġ", "t"], ["h", "e"]]) == ["Ġ t", "h e"]
    assert _merges_as_strings([["a b", "c"]]) == ["a\u0120b c"]  # literal spaces encoded like convert_hf_to_gguf

    def split(regex):
        split_node = {"type": "Split", "pattern": {"Regex": regex}}
        return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split_node]}}

    assert _detect_tokenizer_pre(split(QWEN2_PRETOKENIZE_REGEX)) == "qwen2"
    llama3 = QWEN2_PRETOKENIZE_REGEX.replace(r"\p{N}|", r"\p{N}{1,3}|")
    assert _detect_tokenizer_pre(split(llama3)) == "llama-bpe"
    assert _detect_tokenizer_pre(split("xyz")) == "qwen2"  # unknown: default


def test_ollama_modelfile(tmp_path):
    gguf_path = tmp_path / "student.gguf"
    gguf_path.write_bytes(b"GGUF")
    modelfile = write_ollama_modelfile(gguf_path, tmp_path / "Modelfile")
    text = modelfile.read_text()
    lines = text.splitlines()
    assert lines[0] == "FROM ./student.gguf"
    assert 'TEMPLATE """' in text and "<|im_start|>{{ .Role }}" in text and "<|im_start|>assistant" in text
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert "PARAMETER temperature 0.6" in lines and "PARAMETER top_p 0.95" in lines

    stops = ["</s>", "<|im_end|>"]
    other = write_ollama_modelfile(gguf_path, tmp_path / "sub" / "Modelfile", "{{ .Prompt }}", stop=stops)
    text = other.read_text()
    assert text.splitlines()[0] == f"FROM {gguf_path.resolve()}"
    assert 'TEMPLATE """{{ .Prompt }}"""' in text
    assert 'PARAMETER stop "</s>"' in text and 'PARAMETER stop "<|im_end|>"' in text


def test_gguf_logits_check_with_llama_cpp(model_dirs, tmp_path):
    pytest.importorskip("llama_cpp")
    from distill.students.export import gguf_logits_check

    path = export_gguf(model_dirs["qwen2"], tmp_path / "qwen2.gguf", qtype="f32")["path"]
    texts = ["What is 12 + 7? Please reason step by step.", "<|im_start|>user\nhi<|im_end|>\n<think>"]
    report = gguf_logits_check(Path(path), model_dirs["qwen2"], texts)
    assert report["tokenization_identical"]
    assert report["max_abs_logit_diff"] < 1e-2
    assert report["top1_agreement"] == 1.0
