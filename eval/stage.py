"""The eval stage: every configured model on every configured benchmark under one protocol (DeepSeek's:
pass@1 over k samples at T=0.6, top-p 0.95), the 4-bit deltas, and the optional thinking-budget sweep.

Files: ``results.json`` (model -> summary on the primary benchmark), ``benchmarks.json`` (model ->
benchmark -> summary), ``table.md`` (the R1-Distill layout with DeepSeek's published numbers),
``deltas.json`` and, with ``eval.budget_sweep``, the sweep's JSON/PNG and ``reasoning_effort.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.problems import heldout_name
from distill.records import write_jsonl_atomic
from distill.stage import Context, StageBase, StageOutcome
from distill.store import content_hashes, write_json_atomic

log = logging.getLogger(__name__)


class EvalStage(StageBase):
    name = "eval"
    section = "eval"
    version = "3"  # 3: per-model serving options, max_tokens fitted to the context, disabled exports recorded as skipped
    upstream = ("sample", "train", "export")

    def upstream_for(self, config: Any) -> tuple[str, ...]:
        """Only an eval of the trained student or its exports needs the stages before it; the teacher, the
        student's base and ``extra_models`` are evaluated as they are, with nothing sampled or trained."""
        return self.upstream if set(config.eval.models) & TRAINED_MODELS else ()

    def fingerprint_input(self, config: Any) -> dict[str, Any]:
        """The eval section, less the failure threshold (it passes or fails a result, never changes one) and
        the checkpoint evaluations (they run beside training), the code sandbox's limits once they differ from
        the defaults (they decide code verdicts), and the benchmark files' contents; without upstream stages,
        what they would have brought (the problems, the teacher, the student's base)."""
        from distill.config import SandboxConfig

        section = config.section("eval")
        section.pop("max_verifier_failure_share", None)
        section.pop("on_checkpoints", None)
        if not section["extra_models"]:  # absent unless set, so runs made before the key keep their fingerprints
            section.pop("extra_models")
        out: dict[str, Any] = {"eval": section}
        if not self.upstream_for(config):
            out["models_as_configured"] = _standalone_inputs(config)
        where = {"bwrap", "workers"}  # where bwrap lives and how many run at once change no verdict
        sandbox = config.filter.sandbox.model_dump(mode="json", exclude=where)
        if sandbox != SandboxConfig().model_dump(mode="json", exclude=where):
            out["sandbox"] = sandbox
        files = content_hashes([b.file for b in config.eval.benchmarks])
        if files:  # benchmark files by content: an edited file re-runs the eval
            out["benchmark_files"] = files
        return out

    def check(self, config: Any) -> None:
        check_benchmarks(config)
        check_extra_models(config)
        from distill.eval.checkpoints import check_checkpoint_eval

        check_checkpoint_eval(config)

    def run(self, ctx: Context) -> StageOutcome:
        from distill.eval.models import disabled_artifacts, eval_models
        from distill.eval.table import deltas

        benches = eval_benchmarks(ctx)
        primary = benches[0][1].name
        models = {**eval_models(ctx), **ctx.config.eval.extra_models}
        grid, skipped = _evaluate_all(ctx, models, benches)
        skipped = {**disabled_artifacts(ctx.config), **skipped}
        results = {label: per[primary] for label, per in grid.items() if primary in per}
        delta = deltas(grid)
        _write_results(ctx, grid, results, delta, skipped, primary)
        counts: dict[str, Any] = {"pass_at_1": {k: v["pass_at_1"] for k, v in results.items()},
                                  "benchmarks": [loaded.name for _, loaded in benches], "deltas": delta,
                                  "skipped": skipped}
        if ctx.config.eval.budget_sweep is not None:
            counts["budget_sweep"] = _budget_sweep(ctx, benches, models)
        if self.upstream_for(ctx.config):  # a trained student: its checkpoints' results, and the trackers
            from distill.eval.checkpoints import finish_checkpoint_evals

            counts.update(finish_checkpoint_evals(ctx, grid, primary))
        table = ", ".join(f"{k} {v['pass_at_1']:.2f}" for k, v in results.items())
        delta_text = "; ".join(f"{label} {d[primary]['delta']:+.2f} vs student" for label, d in delta.items()
                               if primary in d)
        return StageOutcome(counts, f"pass@1: {table}" + (f" ({delta_text})" if delta_text else ""))


EVAL = EvalStage()
TRAINED_MODELS = {"student", "student_4bit", "student_8bit", "student_gguf"}


def _standalone_inputs(config: Any) -> dict[str, Any]:
    """What decides the models and problems of an eval that runs without the stages before it: the problem
    set (its files by content), the teacher as its traces would key it, and the student's base."""
    from distill.teachers.models import teacher_output_settings

    p = config.problems
    out: dict[str, Any] = {"problems": config.section("problems"),
                           "problem_files": content_hashes([p.train_path, p.heldout_path] if p.source == "jsonl" else [])}
    if "teacher" in config.eval.models:
        out["teacher"] = teacher_output_settings(config)
    if "student_base" in config.eval.models:
        out["student_base"] = {"model": config.student.model, "toy": config.section("student")["toy"],
                               "seed": config.student.seed}
    return out


def check_extra_models(config: Any) -> None:
    """A local folder named in ``eval.extra_models`` must exist (a Hub id is tried as given)."""
    from distill.input_checks import looks_like_local_path

    for label, value in config.eval.extra_models.items():
        if looks_like_local_path(value) and not Path(value).expanduser().exists():
            raise UserError(f"eval.extra_models.{label}: no such folder {value!r}; give a saved model or checkpoint "
                            "folder, or a Hub id such as deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")


def check_benchmarks(config: Any) -> None:
    """Raise UserError for an eval benchmark that is neither ``heldout``, registered, nor given a file."""
    from distill.eval.benchmarks import REGISTRY

    for b in config.eval.benchmarks:
        if b.name != "heldout" and b.file is None and b.name not in REGISTRY:
            raise UserError(f"eval.benchmarks: unknown benchmark {b.name!r}; registered: heldout, "
                            f"{', '.join(REGISTRY)} (or give a file: for your own)")


def eval_benchmarks(ctx: Context) -> list[tuple[Any, Any]]:
    """(config, loaded problems) per configured benchmark; ``heldout`` is the run's own held-out set."""
    from distill.eval.benchmarks import LoadedBenchmark, load_benchmark

    cfg = ctx.config.eval
    out: list[tuple[Any, Any]] = []
    for b in cfg.benchmarks:
        if b.name == "heldout" and b.file is None:
            _, heldout = ctx.problems()
            p = ctx.config.problems
            name = heldout_name(p)
            loaded = LoadedBenchmark(name, "run", "math", name, heldout[: b.limit] if b.limit else heldout,
                                     {"source": "the run's held-out problems", "problems_config": p.source})
        else:
            loaded = load_benchmark(b.name, source=b.source, data_dir=cfg.data_dir, file=b.file, kind=b.kind,
                                    limit=b.limit, seed=cfg.seed, revision=b.revision, window=b.window)
        if not loaded.problems:
            raise UserError(f"eval: benchmark {b.name} has no problems")
        if loaded.name in {lb.name for _, lb in out}:
            raise UserError(f"eval: two benchmarks are both named {loaded.name!r} (the held-out set is named after "
                            "its file); drop one from eval.benchmarks")
        out.append((b, loaded))
    return out


def bench_params(cfg: Any, bench_cfg: Any) -> Any:
    """The sampling parameters of one benchmark: k from the protocol (``deepseek``: the benchmark's own)."""
    from distill.eval.benchmarks import REGISTRY
    from distill.teachers.sampler import SamplingParams

    k = bench_cfg.k
    if k == "deepseek":
        registered = REGISTRY.get(bench_cfg.name)
        k = registered.protocol_k if registered else cfg.samples_per_problem
    return SamplingParams(n=k or cfg.samples_per_problem, temperature=cfg.temperature, top_p=cfg.top_p,
                          max_tokens=bench_cfg.max_tokens or cfg.max_tokens, seed=cfg.seed)


def _evaluate_all(ctx: Context, models: dict[str, str],
                  benches: list[tuple[Any, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """model -> benchmark -> summary, reusing a resumed run's finished files; models whose optional engine is
    missing (llama-cpp-python) are skipped with the reason, the rest evaluated."""
    from distill.eval.models import eval_sampler

    grid: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for label, path in models.items():
        grid[label] = {}
        todo = []
        for bench_cfg, loaded in benches:
            done_file = ctx.out("eval") / "by_benchmark" / loaded.name / f"{label}.json"
            if ctx.resumable and done_file.is_file():
                grid[label][loaded.name] = json.loads(done_file.read_text())
            else:
                todo.append((bench_cfg, loaded, done_file))
        if not todo:
            continue
        try:
            sampler, backend, dtype = eval_sampler(ctx, label, path, benches)
        except ImportError as exc:
            log.warning("eval: %s skipped: %s", label, exc)
            skipped[label] = str(exc)
            del grid[label]
            continue
        try:
            for bench_cfg, loaded, done_file in todo:
                grid[label][loaded.name] = _evaluate_one(ctx, sampler, (backend, dtype), label, path,
                                                         (bench_cfg, loaded), done_file)
        finally:
            sampler.close()
    return grid, skipped


def evaluate_model(ctx: Context, label: str, path: str, benches: list[tuple[Any, Any]], out_dir: Path) -> dict[str, Any]:
    """One model on every benchmark, as the stage evaluates each of its models (benchmark -> summary; files in
    ``out_dir/<benchmark>/``): the entry the checkpoint evaluator (distill.eval.checkpoints) runs."""
    from distill.eval.models import eval_sampler

    sampler, backend, dtype = eval_sampler(ctx, label, path, benches)
    try:
        return {loaded.name: _evaluate_one(ctx, sampler, (backend, dtype), label, path, (bench_cfg, loaded),
                                           Path(out_dir) / loaded.name / f"{label}.json")
                for bench_cfg, loaded in benches}
    finally:
        sampler.close()


def _evaluate_one(ctx: Context, sampler: Any, engine: tuple[str, str], label: str, path: str,
                  bench: tuple[Any, Any], done_file: Any) -> dict[str, Any]:
    """One model on one benchmark: its samples and its summary, each written atomically."""
    from distill.eval.protocol import evaluate, protocol_record

    from distill.eval.models import clamp_max_tokens

    bench_cfg, loaded = bench
    # a model served with a shorter context than max_tokens + its prompts generates what fits (recorded)
    params = clamp_max_tokens(ctx.config, label, path, bench_params(ctx.config.eval, bench_cfg), loaded.problems)
    task = ctx.reporter.task(f"evaluating {label} on {loaded.name}", len(loaded.problems) * params.n)
    try:
        result = evaluate(sampler, loaded.problems, params, label, loaded.name, on_progress=task.advance,
                          sandbox=ctx.config.filter.sandbox)
    finally:
        task.close()
    summary = {**result.summary(), "path": path,
               "protocol": protocol_record(params, backend=engine[0], dtype=engine[1], benchmark=loaded.describe())}
    samples_file = done_file.with_name(f"samples-{label}.jsonl")
    write_jsonl_atomic(samples_file, result.samples)
    check_verifier_failures(summary, ctx.config.eval.max_verifier_failure_share, samples_file)
    write_json_atomic(done_file, summary)
    return summary


def check_verifier_failures(summary: dict[str, Any], limit: float, samples_file: Any) -> None:
    """Raise UserError when the verifier could not judge more than ``limit`` of one result's samples.

    Those samples are left out of pass@1, so past a few of them the number describes whichever
    problems the verifier happened to manage (on a machine without bubblewrap, none of
    LiveCodeBench): no score at all is truer.  The result is not recorded as finished, so a
    resumed run evaluates it again once the cause is fixed.
    """
    samples, unjudged = int(summary.get("samples") or 0), int(summary.get("verifier_failed") or 0)
    if not samples or unjudged / samples <= limit:
        return
    causes = summary.get("verifier_failure_causes") or {}
    cause = next(iter(causes), "unknown")
    hint = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) or point filter.sandbox.bwrap at it"
            if "sandbox" in cause or "bwrap" in cause else "see the cause; math-verify needs its worker processes")
    raise UserError(
        f"eval: {summary.get('model')} on {summary.get('benchmark')}: the verifier could not judge {unjudged} of "
        f"{samples} samples ({unjudged / samples:.0%}), over eval.max_verifier_failure_share ({limit:.0%}); "
        f"cause: {cause}" + (f" (and {len(causes) - 1} other causes)" if len(causes) > 1 else "")
        + f". Fix it ({hint}) and run again; the samples, each with its verifier status, are in {samples_file}")


def _write_results(ctx: Context, grid: dict[str, Any], results: dict[str, Any], delta: dict[str, Any],
                   skipped: dict[str, str], primary: str) -> None:
    from distill.eval.table import r1_distill_table

    out = ctx.out("eval")
    for label, summary in results.items():  # the primary benchmark's files where they always were
        write_json_atomic(out / f"{label}.json", summary)
        src = out / "by_benchmark" / primary / f"samples-{label}.jsonl"
        if src.is_file():
            shutil.copyfile(src, out / f"samples-{label}.jsonl")
    write_json_atomic(out / "results.json", results)
    write_json_atomic(out / "benchmarks.json", grid)
    write_json_atomic(out / "deltas.json", delta)
    (out / "table.md").write_text(r1_distill_table(grid, ctx.config.student.model), encoding="utf-8")
    if skipped:
        write_json_atomic(out / "skipped.json", skipped)


def _budget_sweep(ctx: Context, benches: list[tuple[Any, Any]], models: dict[str, str]) -> dict[str, Any]:
    """Run the thinking-budget sweep on one model and benchmark; returns the derived reasoning_effort budgets.
    ``models`` is the stage's label -> path, so the model folders are found once per stage."""
    from distill.eval.budget import budget_sweep, write_sweep
    from distill.eval.models import eval_sampler
    from distill.eval.protocol import protocol_record

    cfg = ctx.config.eval
    sweep_cfg = cfg.budget_sweep
    out = ctx.out("eval")
    done = out / "budget_sweep.json"
    if ctx.resumable and done.is_file():
        return json.loads(done.read_text())["reasoning_effort"]
    if sweep_cfg.model not in models:
        raise UserError(f"eval.budget_sweep.model {sweep_cfg.model!r} is not evaluated in this run "
                        f"(eval.models: {', '.join(models)})")
    bench_cfg, loaded = next(((b, lb) for b, lb in benches if b.name == (sweep_cfg.benchmark or benches[0][0].name)))
    params = bench_params(cfg, bench_cfg)
    if sweep_cfg.samples_per_problem:
        params = dataclasses.replace(params, n=sweep_cfg.samples_per_problem)
    sampler, backend, dtype = eval_sampler(ctx, sweep_cfg.model, models[sweep_cfg.model], benches)
    task = ctx.reporter.task(f"thinking-budget sweep ({sweep_cfg.model})", len(sweep_cfg.budgets))
    try:
        sweep = budget_sweep(sampler, loaded.problems, params, sweep_cfg.budgets, sweep_cfg.model, loaded.name,
                             sweep_cfg.answer_tokens, sweep_cfg.answer_prefix, dict(sweep_cfg.effort_fractions))
    finally:
        task.close()
        sampler.close()
    sweep["protocol"] = protocol_record(params, backend=backend, dtype=dtype, benchmark=loaded.describe())
    write_sweep(sweep, out)
    return sweep["reasoning_effort"]
