"""The sample stage's rounds path: the scout's screen, then fixed or adaptive teacher sampling, then the
run's view and ``sample/adaptive.json`` (the problems done, open and unsolved).

Taken by :func:`distill.teachers.stage.sample_chunks` when ``teacher.sampling.mode`` is ``adaptive`` or a
scout is set; ``fixed`` without a scout stays today's path (:mod:`distill.teachers.keyed_sampling`).  A
Slurm array task (``select``) runs the rounds of the problems it owns and writes no view; the ``distill
run`` after the tasks replays every problem's rounds from the store and verdicts and writes it.
"""

from __future__ import annotations

from typing import Any, Sequence

from distill.records import Problem
from distill.stage import Context
from distill.store import write_json_atomic

UNSOLVED_IN_MANIFEST = 200  # the full list is in sample/adaptive.json


def uses_rounds(teacher: Any) -> bool:
    return teacher.kind == "model" and (teacher.sampling.mode == "adaptive" or teacher.sampling.scout is not None)


def sampling_output_settings(config: Any, teacher_settings: dict[str, Any]) -> dict[str, Any]:
    """The sample fingerprint's view of ``teacher.sampling``: absent at its default (runs made before it keep
    their fingerprints), without operational keys, and with adaptive mode the filter checks that decide
    which problems get more samples."""
    from distill.teachers.verdict_store import checks_version

    section = dict(teacher_settings.pop("sampling", None) or {})
    section.pop("verify_workers", None)
    if section.get("mode", "fixed") == "fixed":
        for key in ("target_per_problem", "max_per_problem", "rounds"):
            section.pop(key, None)
    if section.get("scout") is None:
        section.pop("scout", None)
    if section and section != {"mode": "fixed"}:
        teacher_settings["sampling"] = section
        teacher_settings["sampling"]["checks"] = checks_version(config.filter)
    return teacher_settings


def sample_with_rounds(ctx: Context, model_path: str, owned: Sequence[Problem], train: Sequence[Problem],
                       write_view: bool) -> dict[str, Any]:
    """Scout, then the teacher for ``owned``; with ``write_view`` (every problem owned) the run's view."""
    from distill.teachers.keyed_sampling import write_run_view

    t = ctx.config.teacher
    info: dict[str, Any] = {"sampling_mode": t.sampling.mode}
    decisions: dict[str, str] = {}
    if t.sampling.scout is not None:
        from distill.teachers.scout import scout_screen

        decisions, scout_info = scout_screen(ctx, owned)
        info.update(scout_info)

    def sample() -> dict[str, Any]:
        if t.sampling.mode == "adaptive":
            from distill.teachers.adaptive import sample_adaptive, teacher_schedules

            return sample_adaptive(ctx, model_path, owned, teacher_schedules(ctx.config, owned, decisions))
        return _fixed_after_scout(ctx, model_path, owned, decisions)

    summary = sample()
    counts = summary.pop("counts")
    info.update({k: v for k, v in summary.items() if k != "unsolved"})
    if "unsolved" in summary:
        info["unsolved"] = summary["unsolved"][:UNSOLVED_IN_MANIFEST]
        info["unsolved_listed"] = f"{min(len(summary['unsolved']), UNSOLVED_IN_MANIFEST)} of {len(summary['unsolved'])}"
    if write_view:
        info.update(write_run_view(ctx, model_path, train, counts, resample=sample))
        info["expected_traces"] = sum(counts.get(p.id, 0) for p in train)
        write_json_atomic(ctx.out("sample") / "adaptive.json",
                          {"mode": t.sampling.mode, "sampling": t.sampling.model_dump(mode="json"),
                           "unsolved": summary.get("unsolved", []), "samples_per_problem": counts,
                           "scout": {k: v for k, v in info.items() if k.startswith("scout_")}})
    return info


def _fixed_after_scout(ctx: Context, model_path: str, owned: Sequence[Problem],
                       decisions: dict[str, str]) -> dict[str, Any]:
    """Fixed sampling with a scout: ``samples_per_problem`` each, but none or one for what the scout solves."""
    from distill.teachers.keyed_sampling import sample_missing

    t = ctx.config.teacher
    counts = {p.id: {"skip": 0, "one_teacher_sample": 1}.get(decisions.get(p.id, ""), t.samples_per_problem)
              for p in owned}
    totals = {"reused_traces": 0, "sampled_traces": 0}
    for n in sorted(set(counts.values()) - {0}):
        got = sample_missing(ctx, model_path, [p for p in owned if counts[p.id] == n], samples=n)
        totals = {k: totals[k] + got[k] for k in totals}
    return {**totals, "problems_skipped": sum(n == 0 for n in counts.values()), "counts": counts}


def rounds_figures(counts: dict[str, Any]) -> dict[str, Any]:
    """What the teacher's spend bought, for the manifest: verified traces per 1k output tokens, output tokens
    and dollars per verified trace (over the run's view, reused traces included)."""
    verified, tokens, cost = counts.get("verified_traces"), counts.get("completion_tokens") or 0, counts.get("cost_usd")
    if not verified:
        return {"verified_per_1k_tokens": 0.0 if verified == 0 else None}
    return {"verified_per_1k_tokens": round(1000 * verified / tokens, 4) if tokens else None,
            "tokens_per_verified": round(tokens / verified, 1),
            "usd_per_verified": round(cost / verified, 8) if cost is not None else None}
