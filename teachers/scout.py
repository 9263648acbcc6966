"""The scout screen: a cheaper model samples every problem first, and the config decides what the teacher
gives the problems the scout solved in every sample (``on_solved``: nothing, or one sample).

Difficulty selection before the expensive model, not after it: the scout's samples are keyed and kept in
the same trace store (under the scout's own identity, so they never serve a teacher key), verified online
like the teacher's, and a rerun reuses them; the screen is one round of ``scout.samples`` per problem
whose target is every sample (:func:`distill.teachers.adaptive.run_rounds`).
"""

from __future__ import annotations

from typing import Any, Sequence

from distill.records import Problem
from distill.stage import Context


def scout_identity(config: Any) -> dict[str, Any]:
    """What the scout's trace keys hash besides the prompt: the scout model and its sampling settings."""
    sc = config.teacher.sampling.scout
    who: dict[str, Any] = {"model": sc.model, "backend": sc.backend, "dtype": sc.dtype,
                           "temperature": sc.temperature, "top_p": sc.top_p, "seed": sc.seed}
    if sc.backend == "openai":
        from distill.teachers.models import OPENAI_OUTPUT_KEYS

        options = sc.openai.model_dump(mode="json")
        who["openai"] = {k: options[k] for k in OPENAI_OUTPUT_KEYS if options.get(k) not in (None, {}, False)}
    return {"scout": who}


def scout_screen(ctx: Context, problems: Sequence[Problem]) -> tuple[dict[str, str], dict[str, Any]]:
    """(problem id -> ``on_solved`` for each problem the scout solved in every sample, the manifest's figures)."""
    from distill.teachers.adaptive import Side, run_rounds
    from distill.teachers.adaptive_engine import scout_engine

    sc = ctx.config.teacher.sampling.scout
    side = Side(scout_identity(ctx.config), sc.max_tokens, sc.samples, scout_engine(ctx))
    summary = run_rounds(ctx, side, problems, {p.id: [sc.samples] for p in problems})
    unsolved = set(summary["unsolved"])
    solved = {p.id: sc.on_solved for p in problems if p.id not in unsolved}
    info = {"scout_model": sc.model, "scout_samples": sc.samples, "scout_solved_every_time": len(solved),
            "scout_sampled_traces": summary["sampled_traces"],
            "scout_completion_tokens": summary["new_completion_tokens"], "scout_on_solved": sc.on_solved}
    return solved, info
