"""The report's checkpoints section: pass@1 against the training step of each evaluated checkpoint
(``eval.on_checkpoints``), and which checkpoints went to the Hub as revisions (``student.push_checkpoints``).

Read straight from the train stage's folder (``train/checkpoint_eval/step-<N>/result.json``, written by
each evaluation process, and ``train/checkpoint_pushes.json``), not from the eval stage's summary: a Slurm
job that finished after the run shows up the next time ``distill report`` runs.
"""

from __future__ import annotations

from distill.publish.charts import add_chart, checkpoint_chart
from distill.publish.formatting import fmt_int, fmt_pct
from distill.publish.report_model import Section, Table
from distill.publish.run_folder import RunFolder, load_json

__all__ = ["checkpoints_section"]


def _step(name: str) -> int:
    return int(name.split("-", 1)[1])


def checkpoints_section(run: RunFolder) -> Section | None:
    """pass@1 vs step (a chart and a table, one column per benchmark) and the checkpoint revisions pushed;
    None for a run that evaluated and pushed no checkpoint (most runs), as the composition section does."""
    sec = Section("checkpoints", "Checkpoints during training")
    folder = run.path("train", "checkpoint_eval")
    results = {}
    if folder.is_dir():
        for result in folder.glob("step-*/result.json"):
            results[_step(result.parent.name)] = load_json(result)
    pushes_file = run.path("train", "checkpoint_pushes.json")
    pushes = (load_json(pushes_file).get("pushes") or {}) if pushes_file.is_file() else {}
    if not results and not pushes:
        return None
    if results:
        _results_blocks(sec, results, folder)
    if pushes:
        repo = load_json(pushes_file).get("repo_id", "?")
        rows = [[fmt_int(p["step"]), str(p["revision"]), str(p.get("commit") or "–") if "error" not in p
                 else f"failed: {p['error']}"] for p in sorted(pushes.values(), key=lambda p: p["step"])]
        sec.blocks.append(Table(["step", "revision", "commit"], rows, numeric={0}, caption=f"pushed to {repo}"))
    return sec


def _results_blocks(sec: Section, results: dict[int, dict], folder) -> None:
    benches = list(dict.fromkeys(b for r in results.values() for b in r.get("benchmarks") or {}))
    curves = {b: [(step, r["benchmarks"][b]["pass_at_1"]) for step, r in results.items()
                  if b in (r.get("benchmarks") or {})] for b in benches}
    add_chart(sec, "checkpoint_pass_at_1", "pass@1 vs training step", lambda: checkpoint_chart(curves))
    rows = []
    for step in sorted(results):
        per = results[step].get("benchmarks") or {}
        rows.append([fmt_int(step)] + [fmt_pct(per[b]["pass_at_1"]) if b in per else "–" for b in benches])
    sec.blocks.append(Table(["step", *[f"pass@1 % {b}" for b in benches]], rows, numeric=set(range(len(benches) + 1)),
                            caption="each checkpoint evaluated with the eval section's benchmarks and protocol"))
    started = {_step(p.name) for p in folder.glob("step-*") if (p / "launch.json").is_file()}
    waiting = sorted(started - set(results))
    if waiting:
        sec.status = "partial"
        sec.note(f"checkpoints without a result yet (running, queued or failed; see their eval.log): "
                 f"{', '.join(map(str, waiting))}.", "warn")
