"""GGUF round trip in real llama.cpp (llama-cpp-python, portable build): tokens exact, logits within tolerance.

Also llama.cpp's own Q4_K_M quantizer (with its fallback on rows narrower than 256)
and the llamacpp Sampler backend that evaluates a GGUF under the eval protocol.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from distill.students.export import (  # noqa: E402
    GGUF_LOGIT_TOLERANCE,
    ExportError,
    export_gguf,
    export_gguf_4bit,
    gguf_logits_check,
)
from distill.students.export.llamacpp import _quantize_with_llama_cpp  # noqa: E402
from distill.students.toy_tokenizer import build_toy_tokenizer  # noqa: E402
from test_export import _corpus, _save_tiny  # noqa: E402

from distill.teachers.sampler import SamplingParams, make_sampler  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return build_toy_tokenizer(_corpus())


@pytest.fixture(scope="module")
def model_dirs(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("cpp-models")
    dirs = {arch: _save_tiny(tokenizer, root / arch, arch) for arch in ("qwen2", "llama")}
    dirs["wide"] = _save_tiny(tokenizer, root / "wide", "qwen2", hidden=256)  # rows of 256: real k-quants
    return dirs


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("qtype", ["f32", "f16", "q8_0", "q4_0"])
def test_gguf_matches_transformers_in_llama_cpp(model_dirs, tmp_path, arch, qtype):
    path = Path(export_gguf(model_dirs[arch], tmp_path / f"{arch}-{qtype}.gguf", qtype)["path"])
    report = gguf_logits_check(path, model_dirs[arch], tolerance=GGUF_LOGIT_TOLERANCE[qtype])
    assert report["tokenization_identical"] and report["texts_checked"] == 4
    assert report["relative_logit_diff"] <= GGUF_LOGIT_TOLERANCE[qtype]
    if qtype in ("f32", "f16"):
        assert report["top1_agreement"] == 1.0 and report["max_abs_logit_diff"] < 5e-3
    if qtype == "q8_0":
        assert report["top1_agreement"] >= 0.9


def test_logit_tolerance_is_enforced(model_dirs, tmp_path):
    path = Path(export_gguf(model_dirs["qwen2"], tmp_path / "q4.gguf", "q4_0")["path"])
    with pytest.raises(ExportError, match="differ from the fp32 model"):
        gguf_logits_check(path, model_dirs["qwen2"], tolerance=1e-6)


def test_a_gguf_failing_the_llama_cpp_check_is_never_published(model_dirs, tmp_path):
    """export_gguf and the Q4_K_M quantizer check the file before renaming it into place."""
    with pytest.raises(ExportError, match="differ from the fp32 model"):
        export_gguf(model_dirs["qwen2"], tmp_path / "q4.gguf", "q4_0", llama_cpp_tolerance=1e-6)
    with pytest.raises(ExportError, match="differ from the fp32 model"):
        _quantize_with_llama_cpp(model_dirs["qwen2"], tmp_path / "k.gguf", llama_cpp_tolerance=1e-6)
    assert not list(tmp_path.rglob("*.gguf")) and not list(tmp_path.rglob(".*"))  # nothing left behind
    info = export_gguf(model_dirs["qwen2"], tmp_path / "ok.gguf", "f32", llama_cpp_tolerance=GGUF_LOGIT_TOLERANCE["f32"])
    assert info["llama_cpp_check"]["tokenization_identical"] and Path(info["path"]).is_file()


def test_gguf_of_another_model_fails_the_check(model_dirs, tmp_path):
    other = Path(export_gguf(model_dirs["llama"], tmp_path / "llama.gguf", "f32")["path"])
    with pytest.raises(ExportError):
        gguf_logits_check(other, model_dirs["qwen2"], tolerance=GGUF_LOGIT_TOLERANCE["f32"])


def test_q4_k_m_narrow_rows_fall_back_with_a_reason(model_dirs, tmp_path):
    info = export_gguf_4bit(model_dirs["qwen2"], tmp_path / "gguf")
    assert info["qtype"] == "q4_k_m" and info["quantizer"].startswith("llama.cpp")
    assert Path(info["path"]).name == "model-q4_k_m.gguf" and Path(info["path"]).is_file()
    assert info["fallback_tensors"] and "multiple of 256" in info["fallback_reason"] and "[64]" in info["fallback_reason"]
    assert set(info["tensor_types"].values()) & {"Q5_0", "Q8_0"}
    check = info["llama_cpp_check"]
    assert check["tokenization_identical"] and check["relative_logit_diff"] <= GGUF_LOGIT_TOLERANCE["q4_k_m"]
    assert info["size_bytes"] < info["full_size_bytes"]
    assert not list((tmp_path / "gguf").glob(".*"))  # no staging leftovers


def test_q4_k_m_on_rows_of_256_is_really_4_bit(model_dirs, tmp_path):
    info = export_gguf_4bit(model_dirs["wide"], tmp_path / "gguf")
    assert not info["fallback_tensors"] and info["fallback_reason"] is None
    assert "Q4_K" in set(info["tensor_types"].values()) and info["fraction_4bit"] > 0.5
    assert info["llama_cpp_check"]["relative_logit_diff"] <= GGUF_LOGIT_TOLERANCE["q4_k_m"]


def test_q4_0_fallback_without_llama_cpp(model_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr("distill.students.export.llamacpp.llama_cpp_available", lambda: False)
    info = export_gguf_4bit(model_dirs["qwen2"], tmp_path / "gguf")
    assert info["qtype"] == "q4_0" and "not installed" in info["fallback_reason"]
    assert "llama_cpp_check" not in info and info["fraction_4bit"] > 0.9


def test_llamacpp_sampler_matches_transformers_greedy(model_dirs, tmp_path):
    path = export_gguf(model_dirs["qwen2"], tmp_path / "m.gguf", "f32")["path"]
    prompts = [[{"role": "user", "content": "What is 12 + 7?"}], [{"role": "user", "content": "Compute 3 * 4."}]]
    greedy = SamplingParams(n=2, temperature=0, max_tokens=12)
    cpp = make_sampler("llamacpp", path, n_threads=1)
    hf = make_sampler("transformers", str(model_dirs["qwen2"]))
    try:
        assert cpp.render(prompts[0]) == hf.tokenizer.apply_chat_template(prompts[0], tokenize=False,
                                                                          add_generation_prompt=True)
        a, b = cpp.generate(prompts, greedy), hf.generate(prompts, greedy)
        assert [[c.text for c in row] for row in a] == [[c.text for c in row] for row in b]
        assert all(len(row) == 2 and row[0].completion_tokens == 12 and row[0].finish_reason == "length" for row in a)
        sampled = cpp.generate(prompts[:1], SamplingParams(n=3, temperature=0.6, max_tokens=8, seed=5))
        again = cpp.generate(prompts[:1], SamplingParams(n=3, temperature=0.6, max_tokens=8, seed=5))
        assert [c.text for c in sampled[0]] == [c.text for c in again[0]]  # seeded per sample
        cont = [*prompts[0], {"role": "assistant", "content": "<think>\nok\n</think>\n\n"}]
        assert cpp.render(cont).endswith("<|im_start|>assistant\n<think>\nok\n</think>\n\n")
        assert cpp.count_tokens("What is 12 + 7?") == hf.count_tokens("What is 12 + 7?")
    finally:
        cpp.close()
        hf.close()


def test_llamacpp_context_never_shrinks_max_tokens(model_dirs, tmp_path):
    """A prompt that leaves less than max_tokens of n_ctx fails visibly; the eval's n_ctx always leaves it."""
    from distill.eval.models import gguf_context_size
    from distill.problems import build_prompt
    from distill.records import Problem

    path = export_gguf(model_dirs["qwen2"], tmp_path / "m.gguf", "f32")["path"]
    problem = Problem("long", "What is 12 + 7? Compute 3 * 4. " * 30, "19")
    prompt = build_prompt(problem)
    probe = make_sampler("llamacpp", path, n_threads=1, n_ctx=1024)
    prompt_len = len(probe.tokenize(probe.render(prompt)))
    probe.close()
    tight = make_sampler("llamacpp", path, n_threads=1, n_ctx=prompt_len + 4)
    # llama.cpp may round n_ctx up; ask for 4 tokens more than the room it really left
    params = SamplingParams(n=2, temperature=0, max_tokens=tight.n_ctx - prompt_len + 4)
    try:
        row = tight.generate([prompt], params)[0]
    finally:
        tight.close()
    assert [c.finish_reason for c in row] == ["error", "error"]  # not "length": the budget was never given
    assert "context too small" in row[0].error and f"max_tokens={params.max_tokens}" in row[0].error
    n_ctx = gguf_context_size([problem], params.max_tokens)
    assert n_ctx - prompt_len >= params.max_tokens
    sized = make_sampler("llamacpp", path, n_threads=1, n_ctx=n_ctx)
    try:
        row = sized.generate([prompt], params)[0]
    finally:
        sized.close()
    assert row[0].finish_reason in ("stop", "length") and row[0].completion_tokens >= 1
    assert row[0].finish_reason == "stop" or row[0].completion_tokens == params.max_tokens
