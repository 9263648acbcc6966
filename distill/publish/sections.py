"""The run report's sections, one builder per stage output: each reads its files and returns a Section.

Why each builder stands alone: a missing input makes its section "not run" (via
:func:`not_run`) and any exception is caught by :func:`distill.publish.report.build_report`
and shown as "unreadable", so one damaged file never costs the rest of the report.
The evaluation section, with DeepSeek's published numbers, is in
:mod:`distill.publish.eval_section`.
"""

from __future__ import annotations

import math
from pathlib import Path

from distill.config import STAGES
from distill.publish.charts import (add_chart, budget_chart, funnel_chart, length_chart, loss_chart,
                                    seconds_chart)
from distill.publish.formatting import fmt_bytes, fmt_int, fmt_pct, fmt_seconds, quantile
from distill.publish.report_model import NOT_RUN, Section, Table
from distill.publish.run_folder import RunFolder, load_json, stage_note
from distill.records import read_jsonl

__all__ = ["budget_section", "export_section", "funnel_section", "lengths_section", "loss_section", "not_run",
           "overview_section", "stages_section"]


def _length_row(label: str, values: list[int]) -> list[str]:
    """count, mean, median, p90 and max of one group of trace lengths."""
    v = sorted(values)
    if not v:
        return [label, "0", "–", "–", "–", "–"]
    return [label, fmt_int(len(v)), f"{sum(v) / len(v):.1f}", f"{quantile(v, 0.5):.0f}", f"{quantile(v, 0.9):.0f}",
            fmt_int(v[-1])]


def overview_section(run: RunFolder) -> Section:
    """What was distilled into what, from which problems, when and with which versions."""
    sec = Section("overview", "Run")
    m = run.manifest
    versions = m.get("versions") or {}
    rows = [
        ["teacher", str(run.cfg("teacher", "model", default="–"))
         + (f" ({run.cfg('teacher', 'backend')})" if run.cfg("teacher", "backend") else "")],
        ["student base", str(run.cfg("student", "model", default="–"))
         + (f" ({run.cfg('student', 'method')})" if run.cfg("student", "method") else "")],
        ["problems", f"{run.cfg('problems', 'source')}: {fmt_int(run.cfg('problems', 'train_size'))} train, "
                     f"{fmt_int(run.cfg('problems', 'heldout_size'))} held out" if run.cfg("problems") else "–"],
        ["created / updated", f"{m.get('created', '–')} / {m.get('updated', '–')}"],
        ["git commit", str(m.get("git_commit") or "–")],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "–"],
    ]
    sec.blocks.append(Table(["", ""], rows))
    return sec


def stages_section(run: RunFolder) -> Section:
    """Each stage's status, time and summary (a failed stage shows its error), and a chart of the seconds."""
    sec = Section("stages", "Stages and time")
    rows, seconds = [], {}
    for stage in STAGES:
        e = run.stages.get(stage) or {}
        status = str(e.get("status") or NOT_RUN)
        text = str(e.get("summary") or "")
        if status == "failed" and e.get("error"):
            text = f"error: {e['error']}"
        rows.append([stage, status, fmt_seconds(e.get("seconds")), text])
        if isinstance(e.get("seconds"), (int, float)):
            seconds[stage] = float(e["seconds"])
    extra = [s for s in run.stages if s not in STAGES]
    for stage in extra:
        e = run.stages[stage] or {}
        rows.append([stage, str(e.get("status")), fmt_seconds(e.get("seconds")), str(e.get("summary") or "")])
    if not run.stages:
        sec.status = NOT_RUN
        sec.note("no stage has run in this folder yet.")
    sec.blocks.append(Table(["stage", "status", "time", "summary"], rows, numeric={2}))
    if seconds:
        total = sum(seconds.values())
        sec.note(f"total {fmt_seconds(total)} over {len(seconds)} stage(s); a stage skipped as up to date keeps "
                 "the time of the run that produced it.")
        add_chart(sec, "stage_seconds", "seconds per stage", lambda: seconds_chart(seconds))
    return sec


def not_run(sec: Section, why: str) -> Section:
    """Mark a section whose stage has not produced its input; the report says so instead of failing."""
    sec.status = NOT_RUN
    sec.note(why)
    return sec


def funnel_section(run: RunFolder) -> Section:
    """How many traces each filter verdict took (filter/funnel.json), as a table and a chart."""
    sec = Section("funnel", "Filter funnel")
    path = run.path("filter", "funnel.json")
    if not path.is_file():
        return not_run(sec, "the filter stage has not run (no filter/funnel.json).")
    data = load_json(path)
    funnel: dict[str, int] = dict(data.get("funnel") or {})
    tokens: dict[str, int] = dict(data.get("completion_tokens") or {})
    stage_note(run, sec, "filter")
    total = funnel.get("total") or 0
    rows = []
    for reason, count in funnel.items():
        share = f"{100 * count / total:.1f}%" if total else "–"
        tok = sum(tokens.values()) if reason == "total" and tokens else tokens.get(reason)
        rows.append([reason, fmt_int(count), share, fmt_int(tok) if tok is not None else "–"])
    add_chart(sec, "funnel", "filter funnel", lambda: funnel_chart(funnel))
    sec.blocks.append(Table(["verdict", "traces", "share", "completion tokens"], rows, numeric={1, 2, 3}))
    kept = funnel.get("kept", 0)
    sec.note(f"kept {kept:,} of {total:,} traces ({100 * kept / total:.1f}%)." if total else "no traces were filtered.")
    return sec


def lengths_section(run: RunFolder) -> Section:
    """Completion-token lengths of kept vs rejected traces: long traces are what truncation and cost come from."""
    sec = Section("lengths", "Trace lengths")
    shards = sorted(run.path("sample", "shards").glob("*.jsonl")) if run.path("sample", "shards").is_dir() else []
    if not shards:
        return not_run(sec, "the sample stage has not run (no sample/shards/*.jsonl).")
    stage_note(run, sec, "sample")
    tokens: dict[tuple[str, int], int] = {}
    for shard in shards:
        for row in read_jsonl(shard):
            tokens[(row.get("problem_id"), row.get("sample_index"))] = int(row.get("completion_tokens") or 0)
    verdict_path = run.path("filter", "verdicts.jsonl")
    reasons: dict[tuple[str, int], str] = {}
    if verdict_path.is_file():
        for v in read_jsonl(verdict_path):
            reason = v.get("reason") or ("kept" if v.get("ok") else "rejected")
            reasons[(v.get("problem_id"), v.get("sample_index"))] = str(reason)
    else:
        sec.note("the filter stage has not run: every trace is shown as 'not filtered yet'.")
    kept, rejected, unfiltered = [], [], []
    by_reason: dict[str, list[int]] = {}
    for key, n in tokens.items():
        reason = reasons.get(key)
        if reason is None:
            unfiltered.append(n)
        elif reason == "kept":
            kept.append(n)
        else:
            rejected.append(n)
            by_reason.setdefault(reason, []).append(n)
    max_tokens = run.cfg("teacher", "max_tokens")
    max_tokens = max_tokens if isinstance(max_tokens, int) else None
    add_chart(sec, "trace_lengths", "completion tokens, kept vs rejected",
           lambda: length_chart(kept, rejected, unfiltered, max_tokens))
    rows = [_length_row("all traces", list(tokens.values()))]
    if reasons:
        rows += [_length_row("kept", kept), _length_row("rejected", rejected)]
        rows += [_length_row(f"rejected: {r}", v) for r, v in sorted(by_reason.items())]
    if unfiltered and reasons:
        rows.append(_length_row("no verdict", unfiltered))
    sec.blocks.append(Table(["traces", "count", "mean", "median", "p90", "max"], rows, numeric={1, 2, 3, 4, 5},
                            caption="completion tokens per trace (reasoning + answer)"))
    if max_tokens:
        sec.note(f"the teacher's max_tokens is {max_tokens:,}: a trace that reached it was cut off (truncated).")
    return sec


def loss_section(run: RunFolder) -> Section:
    """Whether the training loss came down (train/losses.json)."""
    sec = Section("loss", "Training loss")
    path = run.path("train", "losses.json")
    if not path.is_file():
        return not_run(sec, "the train stage has not run (no train/losses.json).")
    stage_note(run, sec, "train")
    data = load_json(path)
    losses = [(float(s), float(v)) for s, v in (data.get("losses") or []) if v is not None and math.isfinite(float(v))]
    if not losses:
        sec.status = "partial"
        sec.note("training logged no loss (too few steps for one logging interval).")
        return sec
    add_chart(sec, "loss", "training loss", lambda: loss_chart(losses))
    counts = (run.stages.get("train") or {}).get("counts") or {}
    rows = [["steps", fmt_int(data.get("steps", losses[-1][0]))],
            ["training examples", fmt_int(counts.get("examples"))],
            ["first logged loss", f"{losses[0][1]:.4f} (step {losses[0][0]:.0f})"],
            ["final logged loss", f"{losses[-1][1]:.4f} (step {losses[-1][0]:.0f})"],
            ["lowest logged loss", f"{min(v for _, v in losses):.4f}"]]
    if counts.get("resumed_from"):
        rows.append(["resumed from", str(counts["resumed_from"])])
    sec.blocks.append(Table(["", ""], rows))
    return sec


def export_section(run: RunFolder) -> Section:
    """Each exported file's size against fp32 and the check it passed (export/export.json)."""
    sec = Section("export", "Export sizes")
    path = run.path("export", "export.json")
    if not path.is_file():
        return not_run(sec, "the export stage has not run (no export/export.json).")
    stage_note(run, sec, "export")
    data = load_json(path) or {}
    rows = []
    for fmt, info in data.items():
        if not isinstance(info, dict):
            continue
        size, full = info.get("size_bytes"), info.get("full_size_bytes")
        sizes_known = isinstance(size, (int, float)) and isinstance(full, (int, float)) and size
        ratio = f"{full / size:.2f}×" if sizes_known else "–"
        detail = []
        if "qtype" in info:
            detail.append(f"type {info['qtype']}")
        if "tensors" in info:
            detail.append(f"{info['tensors']} tensors")
        if "top1_agreement" in info:
            detail.append(f"top-1 agreement with fp32 {100 * info['top1_agreement']:.1f}%")
        if "max_abs_logit_diff" in info:
            detail.append(f"max |Δlogit| {info['max_abs_logit_diff']:.3f}")
        cpp = info.get("llama_cpp_check")
        if isinstance(cpp, dict):  # the GGUF run in llama.cpp against the fp32 model
            detail.append(f"llama.cpp: tokens identical, top-1 agreement {100 * cpp.get('top1_agreement', 0):.1f}%, "
                          f"relative Δlogit {cpp.get('relative_logit_diff', float('nan')):.3f}")
        if info.get("fallback_reason"):
            detail.append(str(info["fallback_reason"]))
        name = Path(str(info.get("path", ""))).name or fmt
        rows.append([fmt, name, fmt_bytes(size), fmt_bytes(full), ratio, ", ".join(detail) or "–"])
    if not rows:
        sec.note("nothing was exported (export.nf4 and export.gguf are off).")
        return sec
    sec.blocks.append(Table(["format", "file", "size", "fp32 size", "smaller by", "check"], rows, numeric={2, 3, 4}))
    return sec


def budget_section(run: RunFolder) -> Section:
    """pass@1 against the thinking budget (eval/budget_sweep.json) and the reasoning_effort budgets read off it."""
    sec = Section("budget", "Accuracy vs thinking budget")
    path = run.path("eval", "budget_sweep.json")
    if not path.is_file():
        return not_run(sec, "the thinking-budget sweep has not run (no eval/budget_sweep.json).")
    data = load_json(path) or {}
    points = [p for p in data.get("points") or [] if isinstance(p, dict) and "budget" in p and "pass_at_1" in p]
    model = str(data.get("model", "?"))
    if not points:
        sec.status = "partial"
        sec.note("eval/budget_sweep.json has no points.")
        return sec
    add_chart(sec, "budget_sweep", f"pass@1 vs thinking budget ({model})", lambda: budget_chart(model, points))
    rows = [[fmt_int(p["budget"]), fmt_pct(p["pass_at_1"]),
             f"{p['mean_tokens']:.1f}" if isinstance(p.get("mean_tokens"), (int, float)) else "–"]
            for p in sorted(points, key=lambda p: p["budget"])]
    sec.blocks.append(Table(["budget (tokens)", "pass@1", "mean tokens"], rows, numeric={0, 1, 2},
                            caption=f"model: {model}"))
    effort = data.get("reasoning_effort") or {}
    levels = [lvl for lvl in ("low", "medium", "high") if isinstance(effort.get(lvl), (int, float))]
    if levels:
        fractions = effort.get("fractions") or {}
        sec.note("reasoning_effort budgets (eval/reasoning_effort.json; each the smallest budget whose pass@1 "
                 "reaches its share of the best): " + ", ".join(
                     f"{lvl} {fmt_int(effort[lvl])} tokens"
                     + (f" ({100 * fractions[lvl]:.0f}%)" if isinstance(fractions.get(lvl), (int, float)) else "")
                     for lvl in levels) + (f". {effort['note']}" if effort.get("note") else ""))
    forced = sum(int(p.get("forced") or 0) for p in points)
    if forced:
        sec.note(f"{forced:,} samples over all budgets hit their cap: their thinking was cut, </think> appended and "
                 "the answer generated after it, then scored like any other.")
    return sec
