"""Export fidelity on real pretrained weights (SmolLM2-135M-Instruct, the ``smollm2_dir`` fixture).

Agreement with the full-precision model means little on random weights, whose next-token choices are
near ties; a pretrained model has confident predictions that a broken export visibly changes.  SmolLM2 is a
Llama with tied embeddings, 9 heads / 3 KV heads (rope permutation with GQA) and its own tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_nf4_export_of_a_pretrained_model_keeps_its_predictions(smollm2_dir, tmp_path):
    from distill.students.export import export_nf4
    from distill.students.export.bnb import NF4_MIN_TOP1_AGREEMENT

    info = export_nf4(smollm2_dir, tmp_path / "nf4")
    assert info["top1_agreement"] >= NF4_MIN_TOP1_AGREEMENT and info["quantized_linear_layers"] == 30 * 7
    assert info["size_bytes"] < info["full_size_bytes"] / 3
    saved = json.loads((tmp_path / "nf4" / "config.json").read_text())
    assert saved["quantization_config"]["bnb_4bit_quant_type"] == "nf4"


@pytest.mark.parametrize("qtype,min_top1", [("f16", 0.98), ("q8_0", 0.9)])
def test_gguf_of_a_pretrained_model_agrees_in_llama_cpp(smollm2_dir, tmp_path, qtype, min_top1):
    pytest.importorskip("llama_cpp")
    from distill.students.export import GGUF_LOGIT_TOLERANCE, export_gguf

    info = export_gguf(smollm2_dir, tmp_path / f"smol-{qtype}.gguf", qtype,
                       llama_cpp_tolerance=GGUF_LOGIT_TOLERANCE[qtype])
    check = info["llama_cpp_check"]
    assert check["tokenization_identical"] and check["top1_agreement"] >= min_top1
    assert check["relative_logit_diff"] <= GGUF_LOGIT_TOLERANCE[qtype]
    assert info["arch"] == "llama" and info["add_bos_token"] is False  # SmolLM2 adds no BOS
    assert "output.weight" not in info["tensor_types"]  # tied
    assert Path(info["path"]).stat().st_size < info["full_size_bytes"]
