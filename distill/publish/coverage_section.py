"""The report's coverage section: problems with at least one verified trace against the teacher's output tokens.

Why a curve and not one number: it shows what each further thousand teacher tokens bought.  The traces are
taken in sample-index order (a problem's first sample, then its second...; the order adaptive rounds spend
in), each adding its output tokens; a problem counts as covered from its first verified trace.  "Verified"
is the verdict made while sampling (``sample/store_refs.json``) or else the filter's (``filter/verdicts.jsonl``:
kept, or dropped only by a quota or the pass-rate band).  Shown for runs sampled in rounds (adaptive, or a
scout's screen).  A core module: reads files only, imports no stage package.
"""

from __future__ import annotations

from typing import Any

from distill.publish.charts import ACCENT, add_chart
from distill.publish.formatting import fmt_int
from distill.publish.report_model import Section, Table
from distill.publish.run_folder import RunFolder, load_json, stage_note
from distill.records import read_jsonl

VERIFIED_REASONS = {"kept", "over_quota", "outside_pass_rate_band"}
UNSOLVED_SHOWN = 20


def _verdicts(run: RunFolder) -> dict[tuple[str, int], bool] | None:
    refs = run.path("sample", "store_refs.json")
    if refs.is_file():
        data = load_json(refs)
        made = {(r[0], r[1]): r[5] for r in data.get("rows") or [] if len(r) > 5 and r[5] is not None}
        if made:
            return made
    path = run.path("filter", "verdicts.jsonl")
    if not path.is_file():
        return None
    return {(v["problem_id"], v["sample_index"]): v.get("reason") in VERIFIED_REASONS for v in read_jsonl(path)}


def coverage_curve(traces: list[tuple[str, int, int]], ok: dict[tuple[str, int], bool]) -> list[tuple[int, int]]:
    """(cumulative output tokens, problems covered) after each trace, in sample-index order."""
    points, tokens, covered = [(0, 0)], 0, set()
    for pid, index, n in sorted(traces, key=lambda t: t[1]):
        tokens += n
        if ok.get((pid, index)):
            covered.add(pid)
        points.append((tokens, len(covered)))
    return points


def _chart(points: list[tuple[int, int]], problems: int) -> bytes:
    from distill.publish.charts import _figure, _png

    fig, ax = _figure(8, 3.4)
    ax.plot([p[0] for p in points], [p[1] for p in points], color=ACCENT)
    ax.axhline(problems, color="#78909c", linestyle=":", linewidth=1)
    ax.set_xlabel("teacher output tokens")
    ax.set_ylabel("problems with a verified trace")
    ax.set_title("coverage vs teacher tokens")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def coverage_section(run: RunFolder) -> Section | None:
    """None for a run without verdicts made while sampling (fixed sampling): its filter funnel says it all."""
    if not _sampled_in_rounds(run):
        return None
    sec = Section("coverage", "Coverage vs teacher tokens")
    shards = sorted(run.path("sample", "shards").glob("*.jsonl")) if run.path("sample", "shards").is_dir() else []
    if not shards:
        sec.status = "not run"
        sec.note("the sample stage has not run (no sample/shards/*.jsonl).")
        return sec
    stage_note(run, sec, "sample")
    traces = [(r["problem_id"], r["sample_index"], int(r.get("completion_tokens") or 0))
              for shard in shards for r in read_jsonl(shard)]
    ok = _verdicts(run)
    if ok is None:
        sec.status = "partial"
        sec.note("no verdicts yet (adaptive sampling or the filter makes them).")
        return sec
    counts: dict[str, Any] = (run.stages.get("sample") or {}).get("counts") or {}
    problems = int(counts.get("problems") or len({t[0] for t in traces}))
    points = coverage_curve(traces, ok)
    tokens, covered = points[-1]
    verified = sum(bool(ok.get((t[0], t[1]))) for t in traces)
    mode = str(run.cfg("teacher", "sampling", "mode", default="fixed") or "fixed")
    rows = [["sampling", _mode_text(run, mode)],
            ["problems covered", f"{fmt_int(covered)} of {fmt_int(problems)} ({100 * covered / max(1, problems):.1f}%)"],
            ["teacher output tokens", fmt_int(tokens)],
            ["tokens per covered problem", f"{tokens / covered:.1f}" if covered else "–"],
            ["verified traces per 1k tokens", f"{1000 * verified / tokens:.2f}" if tokens else "–"]]
    if "problems_done" in counts:
        rows.append(["problems done / open / unsolved",
                     f"{counts['problems_done']} / {counts['problems_open']} / {counts['problems_unsolved']}"])
    if counts.get("usd_per_verified") is not None:
        rows.append(["spend per verified trace", f"${counts['usd_per_verified']:.4f}"])
    sec.blocks.append(Table(["", ""], rows))
    add_chart(sec, "coverage", "coverage vs teacher tokens", lambda: _chart(points, problems))
    unsolved = _unsolved(run, counts)
    if unsolved:
        shown = ", ".join(unsolved[:UNSOLVED_SHOWN]) + (" …" if len(unsolved) > UNSOLVED_SHOWN else "")
        sec.note(f"{len(unsolved)} unsolved (no verified trace within max_per_problem; all in "
                 f"sample/adaptive.json): {shown}")
    return sec


def _sampled_in_rounds(run: RunFolder) -> bool:
    s = run.cfg("teacher", "sampling", default={}) or {}
    return s.get("mode") == "adaptive" or bool(s.get("scout")) or run.path("sample", "adaptive.json").is_file()


def _mode_text(run: RunFolder, mode: str) -> str:
    if mode != "adaptive":
        return f"fixed, {run.cfg('teacher', 'samples_per_problem', default='?')} per problem"
    s = run.cfg("teacher", "sampling", default={}) or {}
    return (f"adaptive, target {s.get('target_per_problem')} verified, at most {s.get('max_per_problem')} per "
            f"problem, verified online")


def _unsolved(run: RunFolder, counts: dict[str, Any]) -> list[str]:
    path = run.path("sample", "adaptive.json")
    if path.is_file():
        return list(load_json(path).get("unsolved") or [])
    return list(counts.get("unsolved") or [])
