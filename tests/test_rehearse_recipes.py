"""Every shipped student recipe rehearsed end to end on this CPU: tiny models of the real architectures,
the real tokenizers and templates, the real pipeline (sample, filter, train, export, eval, push)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPES = sorted((ROOT / "configs").glob("r1-distill-*.yaml"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED / "tokenizers").is_dir(), reason="../shared/data is not here")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One rehearsal folder for the six recipes, as a user rehearsing them all would pass one ``--workdir``:
    the tiny R1 teacher is built once and the teacher pass (the six share one teacher section) samples once."""
    return {"path": tmp_path_factory.mktemp("rehearsals"), "teacher_pass_ran": False}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_rehearses_on_cpu(recipe, workdir, tmp_path, monkeypatch):
    pytest.importorskip("vllm")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from distill.rehearse import plain_rows, rehearse

    folder = workdir["path"]
    rows = rehearse(recipe, workdir=folder)
    (tmp_path / "rows.json").write_text(json.dumps(plain_rows(rows), indent=1))
    by = {r.stage: r for r in rows}
    # the teacher pass sampled once in this folder; later recipes reuse its traces (same teacher section)
    assert ("reused" in by["sample"].ran) == workdir["teacher_pass_ran"], by["sample"].ran
    workdir["teacher_pass_ran"] = True
    try:
        _check_rows(recipe, rows, folder)
    finally:  # a recipe's student run and tiny base are GBs at real vocabulary; the shared teacher pass stays
        shutil.rmtree(folder / "runs" / recipe.stem, ignore_errors=True)
        for model in (folder / "models").glob("*"):
            if not model.name.startswith("deepseek-ai--DeepSeek-R1-"):
                shutil.rmtree(model, ignore_errors=True)


def _check_rows(recipe, rows, folder):
    assert [r.stage for r in rows] == ["sample", "filter", "train", "export", "eval", "push"]
    by = {r.stage: r for r in rows}
    # the tiny teacher is R1's architecture; the student's is the base's
    assert any("teacher.model: deepseek-ai/DeepSeek-R1 -> " in s and "deepseek_v3" in s for s in by["sample"].substituted)
    assert any(s.startswith("student.model: ") for s in by["train"].substituted)
    assert any("tensor_parallel_size: 8 -> 1" in s for s in by["sample"].substituted)
    # nothing written outside the rehearsal folder
    assert not (Path.cwd() / "runs" / recipe.stem / "rehearsal").exists()
    failed = {r.stage: (r.ran, r.full_scale_problems) for r in rows if not r.ok}
    assert not failed, f"{recipe.name}: {failed}"
    assert by["push"].ran.startswith("written") or "not uploaded" in by["push"].ran or "incomplete" in by["push"].ran
    assert os.path.isdir(folder / "runs" / recipe.stem / "train")
    stages = json.loads((folder / "runs" / recipe.stem / "manifest.json").read_text())["stages"]
    train = stages["train"]["counts"]
    assert math.isfinite(train["first_loss"]) and math.isfinite(train["final_loss"]), train
    # random weights: the export figures are measured and recorded, not held to the bars
    assert any(s.startswith("export.fidelity: enforce -> report") for s in by["export"].substituted)
    export = stages["export"]["counts"]
    assert export["nf4"]["fidelity_enforced"] is False and 0 <= export["nf4"]["top1_agreement"] <= 1
