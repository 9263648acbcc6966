"""configs/quickstart-mixture.yaml end to end, as a user runs it (the real CLI, the shipped config, made
smaller): the toy teacher's arithmetic, the shared long-CoT traces as a published dataset and a small general
set, trained on the configured composition, with the composition in the manifest, report.json, the run
report and the model card."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import REPO, SHARED_DATA, run_cli


def _shrunk(tmp_path) -> dict:
    """The shipped config with the small toy teacher of the tests and a few training steps."""
    raw = yaml.safe_load((REPO / "configs" / "quickstart-mixture.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    raw["problems"].update(train_size=40, heldout_size=10, min_digits=1, max_digits=1)
    raw["teacher"]["toy"] = {"model": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                                       "intermediate_size": 128},
                             "train_problems": 40, "train_steps": 300, "learning_rate": 5e-3, "batch_size": 16,
                             "cache_dir": str(tmp_path / "teacher")}
    raw["teacher"].update(max_tokens=48, shard_size=20)
    raw["student"].update(max_steps=8, save_steps=4, batch_size=8, max_length=256)
    raw["export"].update(nf4=False, gguf=False)
    raw["eval"].update(models=["student"], samples_per_problem=1, max_tokens=48, budget_sweep=None)
    arith, skyt1, general = raw["mixture"]["sources"]
    arith["problems"].update(size=40, max_digits=1)
    arith["count"] = 30
    return raw


@pytest.mark.slow
def test_quickstart_mixture_trains_on_the_configured_composition_and_reports_it(tmp_path):
    if not (SHARED_DATA / "traces" / "skyt1_math_correct5k_27b_amc23.jsonl").is_file():
        pytest.skip("shared data traces are absent")
    raw = _shrunk(tmp_path)
    config = tmp_path / "quickstart-mixture.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = run_cli("run", str(config), timeout=900)  # from the repository root: the config's paths are relative
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "quickstart-mixture"

    comp = json.loads((run_dir / "filter" / "composition.json").read_text())
    by_name = {r["name"]: r for r in comp["sources"]}
    for source in raw["mixture"]["sources"]:
        row = by_name[source["name"]]
        assert row["traces"] == min(source["count"], row["available_traces"]), row
        assert row["traces"] == source["count"] or row["short_by"] == source["count"] - row["traces"]
    assert by_name["skyt1"]["traces"] == 4 and by_name["general"]["traces"] == 24  # the shared data's yield
    assert comp["unverified_traces"] == 24 and comp["kinds"]["general"]["traces"] == 24
    kept = [json.loads(line) for line in (run_dir / "filter" / "kept.jsonl").read_text().splitlines()]
    assert len(kept) == comp["traces"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["counts"]["examples"] == comp["traces"]  # trained on the drawn set
    assert manifest["stages"]["filter"]["counts"]["composition"] == comp
    assert json.loads((run_dir / "report.json").read_text())["composition"] == comp

    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Training-set composition" in md
    assert "| skyt1 | math | dataset:../shared/data/traces/skyt1_math_correct5k_27b_amc23.jsonl |" in md
    assert "| general | general (unverified) |" in md
    cards = [p for p in run_dir.rglob("README.md") if "Training-set composition" in p.read_text()]
    assert cards, "the model card states the composition"
    assert "24 traces from general sources were not verified" in cards[0].read_text()
