"""The filter stage of a mixture: one screening for all sources, each source verified by its kind, then the draw.

* Duplicates are found over every source's problems together, in config order, so a problem two sources
  share is kept once (in the first source) and the other copy is ``duplicate_problem``.
* Every source is decontaminated against every eval set the run knows: the held-out set, each file in
  ``filter.decontaminate_against``, and each ``eval.benchmarks`` entry with a ``file``.
* Math, code and multiple-choice traces go through the filter as in a single-source run (the verifier picks
  by each trace's kind, which is its source's).  A ``general`` source has no reference to verify against:
  its traces get the structural and quality checks only, and those that pass are ``unverified`` -- usable
  for the draw, counted apart, never counted as verified.
* The draw (:mod:`distill.mixture.compose`) then takes the training set; usable traces left out are
  ``not_drawn``, so the funnel still adds up to every trace.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

from distill.mixture.compose import composition, draw
from distill.mixture.sampling import PROBLEMS_FILE
from distill.mixture.sources import source_of, teacher_label
from distill.records import Problem, Trace, Verdict, read_jsonl, read_records
from distill.shards import ShardStore
from distill.stage import Context, StageOutcome
from distill.store import files_sha256, write_json_atomic

UNVERIFIED = "unverified"
NOT_DRAWN = "not_drawn"
COMPOSITION_FILE = "composition.json"


def mixture_problems(ctx: Context) -> list[Problem]:
    """Every source's problems as the sample stage wrote them (``sample/problems.jsonl``), in config order."""
    fields = set(Problem.__dataclass_fields__)
    return [Problem(**{k: v for k, v in row.items() if k in fields})
            for row in read_jsonl(ctx.store.stage_dir("sample") / PROBLEMS_FILE, strict=True)]


def eval_sets(ctx: Context) -> dict[str, Sequence[Problem]]:
    """Every eval set a mixture is decontaminated against, by name."""
    from distill.problems import heldout_name, load_jsonl_problems

    cfg = ctx.config
    sets: dict[str, Sequence[Problem]] = {}
    if cfg.filter.decontaminate_heldout:
        sets[heldout_name(cfg.problems)] = ctx.problems()[1]
    for path in cfg.filter.decontaminate_against:
        sets[path.stem] = load_jsonl_problems(path)
    for bench in cfg.eval.benchmarks:
        if bench.file is not None:
            sets.setdefault(bench.name, load_jsonl_problems(bench.file, kind=bench.kind))
    return sets


def draw_settings(config: Any) -> dict[str, Any]:
    """What the filter's output depends on in a mixture besides the filter section: the draw (each source's
    kind, share or count; mix_by, total, seed) and the eval files screened against, by content."""
    from distill.store import content_hashes

    m = config.mixture
    return {"mix_by": m.mix_by, "total": m.total, "seed": m.seed,
            "sources": [{"name": s.name, "kind": s.kind, "share": s.share, "count": s.count} for s in m.sources],
            "eval_files": content_hashes([b.file for b in config.eval.benchmarks if b.file is not None])}


def filter_unverified(traces: list[Trace], cfg: Any, problem_reasons: dict[str, str]) -> list[Verdict]:
    """Verdicts for a general source: problem-level, structural and reasoning-quality checks, no verifier
    (there is no reference answer); what passes is ``unverified``, then ``filter.max_per_problem`` applies."""
    from distill.filter.traces import _select_per_problem, reasoning_quality_reason, structural_reason

    verdicts = []
    for t in traces:
        reason = problem_reasons.get(t.problem_id) or structural_reason(t, cfg) or reasoning_quality_reason(t, cfg)
        verdicts.append(Verdict(t.problem_id, t.sample_index, reason is None, reason or UNVERIFIED))
    _select_per_problem(traces, verdicts, cfg)  # the same quota rule as verified traces (first/shortest/random)
    return verdicts


def run_mixture_filter(ctx: Context, write_outputs: Callable[..., None],
                       make_judge: Callable[[Context], Any]) -> StageOutcome:
    """The filter stage for a mixture; ``write_outputs`` and ``make_judge`` are the stage's own (kept.jsonl,
    verdicts, rejections, matches, funnel.json and plots; the LLM judge)."""
    from distill.filter.dedup import screen_problems
    from distill.filter.traces import filter_traces

    cfg = ctx.config
    problems = mixture_problems(ctx)
    f = cfg.filter
    screening = screen_problems(problems, eval_sets(ctx), dedup=f.dedup_problems,
                                near_threshold=f.near_duplicate_threshold, ngram=f.decontam_ngram,
                                min_overlap=f.decontam_min_overlap, fuzzy_threshold=f.decontam_fuzzy_threshold)
    traces = read_records(ShardStore(ctx.store.stage_dir("sample") / "shards").paths(), Trace)
    checked = [t for t in traces if t.kind != "general"]
    general = sorted((t for t in traces if t.kind == "general"), key=lambda t: t.key)
    judge = make_judge(ctx) if f.judge.enabled and checked else None
    try:
        result = filter_traces(checked, f, screening.reasons, llm_judge=judge)
    finally:
        if judge is not None:
            judge.sampler.close()
    result = _with_unverified(result, general, filter_unverified(general, f, screening.reasons))
    comp = _draw_into(result, cfg, ctx)
    write_outputs(ctx, result, screening, {p.id: source_of(p.id) for p in problems})
    write_json_atomic(ctx.out("filter") / COMPOSITION_FILE, comp)
    return _outcome(ctx, result, screening, comp)


def _with_unverified(result: Any, general: list[Trace], verdicts: list[Verdict]) -> Any:
    """The verified result with the general traces' verdicts merged in, in trace-key order."""
    pairs = sorted(list(zip(result.traces, result.verdicts)) + list(zip(general, verdicts)), key=lambda p: p[0].key)
    result.traces = [t for t, _ in pairs]
    result.verdicts = [v for _, v in pairs]
    return result


def _draw_into(result: Any, cfg: Any, ctx: Context) -> dict[str, Any]:
    """Draw the training set from the usable traces; the rest of them become ``not_drawn``; recount."""
    mixture = cfg.mixture
    pools: dict[str, list[Trace]] = {s.name: [] for s in mixture.sources}
    for t, v in zip(result.traces, result.verdicts):
        if v.ok:
            pools[source_of(t.problem_id)].append(t)
    drawn, goal = draw(pools, mixture)
    chosen = {t.key for d in drawn.values() for t in d}
    for t, v in zip(result.traces, result.verdicts):
        if v.ok and t.key not in chosen:
            v.ok, v.reason = False, NOT_DRAWN
    result.kept = [t for t, v in zip(result.traces, result.verdicts) if v.ok]
    _recount(result)
    teachers = {s.name: teacher_label(cfg, s) for s in mixture.sources}
    return composition(mixture, pools, drawn, goal, teachers)


def _recount(result: Any) -> None:
    from distill.filter.traces import REASONS

    order = [r for r in REASONS if r != "kept"] + [NOT_DRAWN, UNVERIFIED, "kept"]
    funnel: Counter[str] = Counter(v.reason for v in result.verdicts)
    tokens: Counter[str] = Counter()
    for t, v in zip(result.traces, result.verdicts):
        tokens[v.reason] += t.completion_tokens
    result.funnel = {"total": len(result.traces), **{r: funnel[r] for r in order if funnel.get(r)}}
    result.tokens = dict(tokens)


def _outcome(ctx: Context, result: Any, screening: Any, comp: dict[str, Any]) -> StageOutcome:
    cross = sum(source_of(d.problem_id) != source_of(d.duplicate_of) for d in screening.duplicates)
    counts = {"funnel": result.funnel, "contaminated_problems": len({m.train_id for m in screening.contamination}),
              "duplicate_problems": len(screening.duplicates), "cross_source_duplicates": cross,
              "composition": comp}
    parts = ", ".join(f"{r['name']} {r['traces']} ({100 * r['share_traces']:.1f}%)" for r in comp["sources"])
    short = [f"{r['name']} short by {r['short_by']}" for r in comp["sources"] if r.get("short_by")]
    summary = (f"drew {comp['traces']} of {result.funnel['total']} traces for the mixture: {parts}"
               f" ({comp['unverified_traces']} unverified)" + (f"; {', '.join(short)}" if short else ""))
    return StageOutcome(counts, summary, output_hash=files_sha256([ctx.out("filter") / "kept.jsonl",
                                                                   ctx.out("filter") / COMPOSITION_FILE]))
