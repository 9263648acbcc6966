"""The filter stage: reads the sampled traces, screens problems (duplicates, contamination), verifies and
checks every trace, and writes what it kept, what it rejected and why."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.problems import heldout_name, load_jsonl_problems
from distill.records import Trace, read_records, to_dict, write_jsonl_atomic
from distill.shards import ShardStore
from distill.stage import Context, StageBase, StageOutcome
from distill.store import files_sha256, write_json_atomic

# Enters the fingerprint only when the run has code problems, so math-only runs keep theirs: bump it when the
# sandbox's verdicts change (before "bwrap-1", every code trace was error_infra).
CODE_VERIFIER = "bwrap-1"


class FilterStage(StageBase):
    name = "filter"
    section = "filter"
    version = "3"  # 3: reuses verdicts made while sampling; mixtures: per-kind checks, cross-source dedup, the composition draw
    upstream = ("sample",)

    def fingerprint_input(self, config: Any) -> dict[str, Any]:
        fp = {"filter": _filter_output_settings(config)}
        if config.mixture is not None:  # the draw: shares, counts, mix_by, seed, and the eval files screened
            from distill.mixture.filtering import draw_settings

            fp["mixture"] = draw_settings(config)
        return fp

    def run(self, ctx: Context) -> StageOutcome:
        from distill.filter.dedup import screen_run
        from distill.filter.traces import filter_traces

        cfg = ctx.config
        if cfg.mixture is not None:  # all sources screened together, each verified by its kind, then drawn
            from distill.mixture.filtering import run_mixture_filter

            return run_mixture_filter(ctx, _write_outputs, _llm_judge)
        traces = read_records(ShardStore(ctx.store.stage_dir("sample") / "shards").paths(), Trace)
        train, heldout = ctx.problems()
        screening = screen_run(train, {heldout_name(cfg.problems): heldout}, cfg.filter)
        llm_judge = _llm_judge(ctx) if cfg.filter.judge.enabled else None
        from distill.teachers.verdict_store import checks_for_view

        known = checks_for_view(ctx.store.stage_dir("sample"), cfg.filter, traces)  # made while sampling
        try:
            result = filter_traces(traces, cfg.filter, screening.reasons, llm_judge=llm_judge, known_checks=known)
        finally:
            if llm_judge is not None:
                llm_judge.sampler.close()
        _write_outputs(ctx, result, screening, {p.id: p.source for p in train})
        kept = result.funnel.get("kept", 0)
        rejected = ", ".join(f"{k} {v}" for k, v in result.funnel.items() if k not in ("total", "kept"))
        counts = {"funnel": result.funnel,
                  "contaminated_problems": len({m.train_id for m in screening.contamination}),
                  "duplicate_problems": len(screening.duplicates), "reused_verdicts": len(known)}
        return StageOutcome(counts, f"kept {kept} of {result.funnel['total']} traces"
                                    + (f" (rejected: {rejected})" if rejected else ""),
                            output_hash=files_sha256([ctx.out("filter") / "kept.jsonl"]))


FILTER = FilterStage()


def _write_outputs(ctx: Context, result: Any, screening: Any, sources: dict[str, str]) -> None:
    from distill.filter.funnel import funnel_summary, write_filter_plots

    out = ctx.out("filter")
    write_jsonl_atomic(out / "kept.jsonl", result.kept)
    write_jsonl_atomic(out / "verdicts.jsonl", result.verdicts)
    write_jsonl_atomic(out / "rejected.jsonl", ({**to_dict(t), "reason": v.reason, "extracted": v.extracted,
                                                 **({"detail": result.details[t.key]} if t.key in result.details
                                                    else {})}
                                                for t, v in result.rejected()))
    write_jsonl_atomic(out / "contamination.jsonl", (m.as_dict() for m in screening.contamination))
    write_jsonl_atomic(out / "duplicates.jsonl", (d.as_dict() for d in screening.duplicates))
    if ctx.config.filter.judge.enabled:
        write_jsonl_atomic(out / "judge_audit.jsonl", result.audit)
    write_json_atomic(out / "funnel.json", funnel_summary(result, sources))
    write_filter_plots(result, out, ctx.config.teacher.max_tokens)


def _llm_judge(ctx: Context) -> Any:
    """The filter's LLM judge: a Sampler for filter.judge.model ('teacher': the run's teacher, same backend)."""
    from distill.filter.judge import LLMJudge
    from distill.teachers.models import config_sampler, teacher_path, teacher_sampler
    from distill.teachers.sampler import SamplingParams

    cfg, j = ctx.config, ctx.config.filter.judge
    if j.model == "teacher":
        sampler = teacher_sampler(ctx, teacher_path(ctx), j.batch_size)
    else:
        sampler = config_sampler(j.backend, j.model, j.batch_size, cfg.teacher.dtype, None, j.openai.model_dump())
    return LLMJudge(sampler, SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=j.max_tokens, seed=j.seed))


def _filter_output_settings(config: Any) -> dict[str, Any]:
    """The filter settings that change its output: not where bwrap lives or how many sandboxes run at once,
    and the sandbox/judge/band sections only once set, so runs made before them keep their fingerprints."""
    from distill.config import FilterConfig

    section = config.section("filter")
    for key in ("bwrap", "workers"):
        section["sandbox"].pop(key)
    default_sandbox = FilterConfig().model_dump(mode="json")["sandbox"]
    if section["sandbox"] == {k: v for k, v in default_sandbox.items() if k in section["sandbox"]}:
        section.pop("sandbox")
    if section["pass_rate_band"] is None:
        section.pop("pass_rate_band")
    if not section["judge"]["enabled"]:
        section.pop("judge")
    else:
        section["judge"] = _judge_output_settings(section["judge"])
    if _has_code_problems(config):
        section["code_verifier"] = CODE_VERIFIER
    return section


def _has_code_problems(config: Any) -> bool:
    """Does the run train on code problems (JSONL rows of kind 'code'; generated and published traces are math)?"""
    if config.mixture is not None:  # a source's kind is its problems' kind
        return any(source.kind == "code" for source in config.mixture.sources)
    p = config.problems
    if p.source != "jsonl" or p.train_path is None or config.teacher.kind == "dataset":
        return False
    try:
        stat = p.train_path.stat()
    except OSError:  # an unreadable file fails the input checks, with its own message
        return False
    return _file_has_code(str(p.train_path), p.train_size, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_has_code(path: str, limit: int, _size: int, _mtime_ns: int) -> bool:
    """Read once per process while the file is unchanged (size and mtime are in the cache key): the pipeline
    fingerprints every stage again after each one runs."""
    try:
        return any(problem.kind == "code" for problem in load_jsonl_problems(Path(path), limit=limit))
    except (UserError, OSError, ValueError):  # an unreadable file fails the input checks, with its own message
        return False


def _judge_output_settings(judge: dict[str, Any]) -> dict[str, Any]:
    """The judge settings that change verdicts: which model answers and how, not where it is reached, how fast,
    in what batches or at what price; with model 'teacher' the teacher's own settings (in the sample fingerprint,
    upstream) decide, so the judge's backend and openai options do not."""
    from distill.teachers.models import OPENAI_OUTPUT_KEYS

    judge.pop("batch_size")
    if judge["model"] == "teacher" or judge["backend"] != "openai":
        judge.pop("openai")
    else:
        judge["openai"] = {k: judge["openai"][k] for k in OPENAI_OUTPUT_KEYS if k in judge["openai"]}
    if judge["model"] == "teacher":
        judge.pop("backend")
    return judge
