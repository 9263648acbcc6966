"""The run's summary (``report.json``, what ``distill run`` prints and ``distill show`` reads): pass@1 per
model, the filter funnel and seconds per stage, read from the stages' output files."""

from __future__ import annotations

import json
from typing import Any

from distill.store import RunStore

SAMPLING_FIELDS = ("sampling_mode", "verified_traces", "verified_per_1k_tokens", "tokens_per_verified",
                   "usd_per_verified", "problems_done", "problems_open", "problems_unsolved", "completion_tokens")
EVAL_FIELDS = ("pass_at_1", "ci95_low", "ci95_high", "cons_at_k", "problems", "samples", "truncated")


def build_summary(name: str, store: RunStore) -> dict[str, Any]:
    stages = store.manifest.get("stages", {})
    report: dict[str, Any] = {"name": name, "run_dir": str(store.run_dir)}
    results_path = store.stage_dir("eval") / "results.json"
    if results_path.is_file() and stages.get("eval", {}).get("status") == "done":
        results = json.loads(results_path.read_text())
        report["pass_at_1"] = {k: round(v["pass_at_1"], 4) for k, v in results.items()}
        report["eval"] = {k: {**{f: v[f] for f in EVAL_FIELDS}, "failed": v.get("failed", 0),
                              "verifier_failed": v.get("verifier_failed", 0)}
                          for k, v in results.items()}
        report["eval_protocol"] = next(iter(results.values()))["params"] if results else {}
        deltas_path = store.stage_dir("eval") / "deltas.json"
        if deltas_path.is_file():
            report["eval_deltas"] = json.loads(deltas_path.read_text())
    sample_counts = stages.get("sample", {}).get("counts") or {}
    if "verified_traces" in sample_counts:  # adaptive sampling: what the teacher's spend bought
        report["sampling"] = {k: sample_counts.get(k) for k in SAMPLING_FIELDS if k in sample_counts}
    funnel_path = store.stage_dir("filter") / "funnel.json"
    if funnel_path.is_file():
        report["funnel"] = json.loads(funnel_path.read_text())["funnel"]
    composition_path = store.stage_dir("filter") / "composition.json"  # a mixture's training set as drawn
    if composition_path.is_file():
        report["composition"] = json.loads(composition_path.read_text())
    report["stages"] = {s: {"status": e.get("status"), "seconds": e.get("seconds"), "summary": e.get("summary")}
                        for s, e in stages.items()}
    return report
