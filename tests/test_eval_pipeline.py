"""The eval stage end to end: every model (4-bit artifacts included) on every benchmark, deltas, table, sweep."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA


@pytest.mark.slow
def test_eval_stage_models_benchmarks_deltas_and_budget_sweep(tiny_config, tmp_path):
    pytest.importorskip("llama_cpp")
    from distill.pipeline import run
    from distill.publish.report import build_report, render_markdown

    user = tmp_path / "mine.jsonl"
    user.write_text("".join(json.dumps({"id": f"u{i}", "problem": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n"
                            for i in range(3)))
    benchmarks = [{"name": "heldout"}, {"name": "mine", "file": str(user), "k": 1}]
    aime = (SHARED_DATA / "eval" / "aime2024.jsonl").is_file()
    if aime:
        benchmarks.append({"name": "aime2024", "limit": 2, "k": 1, "max_tokens": 16})
    cfg = tiny_config(
        eval__models=["student", "student_4bit", "student_gguf", "student_8bit"],
        eval__benchmarks=benchmarks,
        eval__data_dir=str(SHARED_DATA / "eval"),
        eval__budget_sweep={"budgets": [4, 48], "model": "student", "answer_tokens": 8},
        export__int8=True,
    )
    report = run(cfg)
    out = cfg.run_dir / "eval"

    export = json.loads((cfg.run_dir / "export" / "export.json").read_text())
    assert export["gguf_4bit"]["qtype"] == "q4_k_m" and export["gguf_4bit"]["fallback_reason"]  # 64-wide rows
    assert export["gguf_4bit"]["llama_cpp_check"]["tokenization_identical"]
    assert export["gguf"]["llama_cpp_check"]["relative_logit_diff"] <= 0.02  # the f32 GGUF, checked in llama.cpp

    grid = json.loads((out / "benchmarks.json").read_text())
    names = ["heldout", "mine"] + (["aime2024"] if aime else [])
    assert set(grid) == {"student", "student_4bit", "student_gguf", "student_8bit"}
    for label, per in grid.items():
        assert list(per) == names
        proto = per["heldout"]["protocol"]
        assert proto["k"] == 2 and proto["max_tokens"] == 48 and proto["truncated_count_as_wrong"]
        assert proto["engine"] == {"student_gguf": "llamacpp"}.get(label, "transformers")
        assert "torch" in proto["versions"] and proto["harness"].startswith("distill-eval")
        assert per["mine"]["problems"] == 3 and per["mine"]["protocol"]["k"] == 1
        assert per["mine"]["protocol"]["benchmark"]["user_file"]
    if aime:
        assert grid["student"]["aime2024"]["protocol"]["benchmark"]["version"] == "1"
        assert grid["student"]["aime2024"]["problems"] == 2

    results = json.loads((out / "results.json").read_text())  # the primary benchmark, flat as before
    assert results["student"]["benchmark"] == "heldout" and results["student"] == grid["student"]["heldout"]
    deltas = json.loads((out / "deltas.json").read_text())
    for label in ("student_4bit", "student_gguf", "student_8bit"):
        d = deltas[label]["heldout"]
        assert d["delta"] == pytest.approx(d["pass_at_1"] - grid["student"]["heldout"]["pass_at_1"])
    assert report["eval_deltas"] == deltas
    table = (out / "table.md").read_text()
    assert "| student_gguf |" in table and "heldout pass@1" in table
    if aime:
        assert "AIME 2024" in table and "DeepSeek-R1-Distill-Qwen-1.5B (published)" in table

    sweep = json.loads((out / "budget_sweep.json").read_text())
    assert [p["budget"] for p in sweep["points"]] == [4, 48]
    assert sweep["points"][0]["max_thinking_tokens"] <= 4 and sweep["points"][0]["forced"] > 0
    assert (out / "budget_sweep.png").is_file()
    effort = json.loads((out / "reasoning_effort.json").read_text())
    assert set(effort["max_thinking_tokens"]) == {"low", "medium", "high"}
    built = build_report(cfg.run_dir)
    sections = {s.key: s for s in built.sections}
    assert sections["budget"].status == "ok" and sections["budget"].charts
    md = render_markdown(built)
    assert "delta (points)" in md and "| student_gguf | heldout |" in md and "| student_8bit | mine |" in md
    assert "llama.cpp: tokens identical" in md and "multiple of 256" in md  # export section
    assert "reasoning_effort budgets" in md and "hit their cap" in md  # budget section
