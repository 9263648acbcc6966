"""Sequencing and I/O: runs the six stages in order, each skipped when its fingerprint is unchanged.

This is the only module (with the CLI) that imports teachers, students and eval,
and it does so inside functions, so ``distill --help`` and config checks stay light.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill.config import STAGES, FilterConfig, RunConfig, dump_config
from distill.errors import StageError, UserError
from distill.problems import generate_arithmetic, load_jsonl_problems
from distill.progress import NullReporter, Reporter
from distill.records import Problem, Trace, read_jsonl, read_records, write_jsonl_atomic
from distill.shards import ShardStore
from distill.store import RunStore, fingerprint, write_json_atomic

log = logging.getLogger(__name__)

# Bump a stage's version when its code changes what it produces.
STAGE_VERSIONS = {"sample": "1", "filter": "1", "train": "1", "export": "1", "eval": "1", "push": "1"}
# Enters the filter fingerprint only when the run has code problems, so math-only runs keep theirs: bump it when
# the sandbox's verdicts change (before "bwrap-1", every code trace was error_infra).
CODE_VERIFIER = "bwrap-1"
UPSTREAM = {
    "sample": [],
    "filter": ["sample"],
    "train": ["filter"],
    "export": ["train"],
    "eval": ["sample", "train", "export"],
    "push": ["filter", "train", "export", "eval"],
}


@dataclass
class Context:
    config: RunConfig
    store: RunStore
    reporter: Reporter
    resumable: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    def out(self, stage: str) -> Path:
        return self.store.stage_dir(stage)


@dataclass
class StageOutcome:
    counts: dict[str, Any]
    summary: str


OPENAI_OUTPUT_KEYS = ("served_model", "reasoning_effort", "send_n", "extra_body", "effort_max_tokens")


def stage_config(config: RunConfig, stage: str) -> dict[str, Any]:
    """The config values a stage's output depends on (its fingerprint input)."""
    teacher = config.section("teacher")
    teacher["toy"].pop("cache_dir", None)
    # Only what changes the traces: another backend's options, and where/how fast an HTTP
    # teacher is reached (endpoints, concurrency, retries, prices), do not.
    if teacher["model"] != "toy":
        teacher.pop("toy")
    for backend in ("vllm", "openai"):
        if teacher["backend"] != backend or teacher["kind"] == "dataset":
            teacher.pop(backend)
    for operational in ("scale_out", "serve"):  # where and how wide sampling runs does not change the traces
        teacher.pop(operational)
    if teacher["kind"] != "dataset":  # defaults leave the fingerprints of runs made before these keys alone
        teacher.pop("dataset")
        teacher.pop("kind")
    if not teacher["retry_truncated"]["enabled"]:
        teacher.pop("retry_truncated")
    if "openai" in teacher:
        # effort_max_tokens only once set, so runs made before the key keep their fingerprints
        teacher["openai"] = {k: teacher["openai"][k] for k in OPENAI_OUTPUT_KEYS if k in teacher["openai"]
                             and (k != "effort_max_tokens" or teacher["openai"][k] is not None)}
        if teacher["openai"].get("effort_max_tokens") is not None:  # by value, whether mapping or file
            teacher["openai"]["effort_max_tokens"] = _resolved_effort_caps(teacher["openai"]["effort_max_tokens"])
    sections: dict[str, dict[str, Any]] = {
        "sample": {"problems": config.section("problems"), "teacher": teacher},
        "filter": {"filter": _filter_fingerprint_section(config)},
        "train": {"student": config.section("student")},
        "export": {"export": config.section("export")},
        "eval": {"eval": config.section("eval")},
        "push": {"hub": config.section("hub")},
    }
    return sections[stage]


def _resolved_effort_caps(spec: Any) -> dict[str, int]:
    """The caps per level: a budget-sweep file counts by its contents, not its path."""
    from distill.teachers.backends.openai_http import effort_caps

    try:
        return effort_caps(spec)
    except ValueError as exc:
        raise UserError(f"teacher.openai.effort_max_tokens: {exc}") from None


def _filter_fingerprint_section(config: RunConfig) -> dict[str, Any]:
    """The filter settings that change its output: not where bwrap lives or how many sandboxes run at once,
    and the sandbox/judge/band sections only once set, so runs made before them keep their fingerprints."""
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
        section["judge"] = _judge_fingerprint_section(section["judge"])
    if _has_code_problems(config):
        section["code_verifier"] = CODE_VERIFIER
    return section


def _has_code_problems(config: RunConfig) -> bool:
    """Does the run train on code problems (JSONL rows of kind 'code'; generated and published traces are math)?"""
    p = config.problems
    if p.source != "jsonl" or p.train_path is None or config.teacher.kind == "dataset":
        return False
    try:
        return any(problem.kind == "code" for problem in load_jsonl_problems(p.train_path, limit=p.train_size))
    except (UserError, OSError, ValueError):  # an unreadable file fails the sample stage, with its own message
        return False


def _judge_fingerprint_section(judge: dict[str, Any]) -> dict[str, Any]:
    """The judge settings that change verdicts: which model answers and how, not where it is reached, how fast,
    in what batches or at what price; with model 'teacher' the teacher's own settings (in the sample fingerprint,
    upstream) decide, so the judge's backend and openai options do not."""
    judge.pop("batch_size")
    if judge["model"] == "teacher" or judge["backend"] != "openai":
        judge.pop("openai")
    else:
        judge["openai"] = {k: judge["openai"][k] for k in OPENAI_OUTPUT_KEYS if k in judge["openai"]}
    if judge["model"] == "teacher":
        judge.pop("backend")
    return judge


def fingerprints(config: RunConfig) -> dict[str, str]:
    fps: dict[str, str] = {}
    for stage in STAGES:
        fps[stage] = fingerprint(stage, STAGE_VERSIONS[stage], stage_config(config, stage),
                                 [fps[u] for u in UPSTREAM[stage]])
    return fps


def run(config: RunConfig, until: str | None = None, force: list[str] | None = None,
        reporter: Reporter | None = None) -> dict[str, Any]:
    """Run the pipeline up to ``until`` (inclusive); ``force`` re-runs the named stages and those after them.

    Returns the run report (also written to ``report.json`` in the run folder).
    """
    for name in [until, *(force or [])]:
        if name is not None and name not in STAGES:
            raise UserError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    check_benchmarks(config)  # a misspelt benchmark fails now, not after hours of sampling and training
    reporter = reporter or NullReporter()
    store = RunStore(config.run_dir)
    (config.run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    store.record_environment()
    handler = _attach_log(config.run_dir / "logs" / "run.log")
    try:
        fps = fingerprints(config)
        forced_from = min((STAGES.index(s) for s in force or []), default=len(STAGES))
        last = STAGES.index(until) if until else len(STAGES) - 1
        ctx = Context(config, store, reporter)
        for i, stage in enumerate(STAGES[: last + 1]):
            _run_stage(ctx, stage, fps[stage], forced=i >= forced_from)
        report = build_report(config, store)
        write_json_atomic(config.run_dir / "report.json", report)
        return report
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run_stage(ctx: Context, stage: str, fp: str, forced: bool) -> None:
    store, reporter = ctx.store, ctx.reporter
    if not forced and store.is_done(stage, fp):
        e = store.entry(stage)
        reporter.stage_finished(stage, e.get("summary", ""), 0.0, skipped=True)
        log.info("stage %s skipped (fingerprint %s unchanged)", stage, fp)
        return
    if forced:
        store.manifest["stages"].pop(stage, None)
    reporter.stage_started(stage)
    ctx.resumable = store.begin(stage, fp)
    log.info("stage %s started (fingerprint %s%s)", stage, fp, ", resuming" if ctx.resumable else "")
    started = time.perf_counter()
    try:
        outcome = STAGE_FUNCTIONS[stage](ctx)
    except UserError as exc:
        store.fail(stage, str(exc), time.perf_counter() - started)
        raise
    except KeyboardInterrupt:
        store.fail(stage, "interrupted", time.perf_counter() - started)
        raise
    except Exception as exc:  # a stage failure: log the traceback, tell the user where
        log.error("stage %s failed:\n%s", stage, traceback.format_exc())
        store.fail(stage, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
        raise StageError(stage, f"{type(exc).__name__}: {exc}", str(store.run_dir),
                         str(store.run_dir / "logs" / "run.log")) from exc
    seconds = time.perf_counter() - started
    store.finish(stage, outcome.counts, seconds, outcome.summary)
    reporter.stage_finished(stage, outcome.summary, seconds, skipped=False)
    log.info("stage %s done in %.1fs: %s", stage, seconds, outcome.summary)


def _attach_log(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


# --------------------------------------------------------------------------- problems and models


def run_problems(ctx: Context) -> tuple[list[Problem], list[Problem]]:
    """The run's (train, held-out) problems, built or read once per run and shared by the stages."""
    if "problems" not in ctx.cache:
        train, heldout = problem_sets(ctx.config)
        if ctx.config.teacher.kind == "dataset":  # published traces bring their own training problems
            from distill.teachers.backends.trace_dataset import load_trace_dataset

            train, ctx.cache["dataset_traces"] = load_trace_dataset(ctx.config.teacher.dataset.model_dump())
        ctx.cache["problems"] = (train, heldout)
    return ctx.cache["problems"]


def problem_sets(config: RunConfig) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out), disjoint; the generator draws them from one pool of distinct problems."""
    p = config.problems
    if p.source == "arithmetic":
        pool = generate_arithmetic(p.train_size + p.heldout_size, p.seed, p.min_digits, p.max_digits, "arith")
        heldout, train = pool[: p.heldout_size], pool[p.heldout_size :]
        for i, prob in enumerate(heldout):
            prob.id = f"heldout-{i:05d}"
        for i, prob in enumerate(train):
            prob.id = f"train-{i:05d}"
    else:
        assert p.train_path is not None and p.heldout_path is not None
        train = load_jsonl_problems(p.train_path, limit=p.train_size)
        heldout = load_jsonl_problems(p.heldout_path, limit=p.heldout_size)
        held_texts = {h.problem.strip() for h in heldout}
        train = [t for t in train if t.problem.strip() not in held_texts]
    if not train:
        raise UserError("problems: the training problem set is empty")
    if not heldout:
        raise UserError("problems: the held-out problem set is empty")
    return train, heldout


def teacher_path(ctx: Context, on_log: Callable | None = None) -> str:
    """The teacher model to load: a local folder or Hub id, or the cached toy teacher (trained on demand)."""
    if "teacher_path" in ctx.cache:
        return ctx.cache["teacher_path"]
    cfg = ctx.config
    if cfg.teacher.model != "toy":
        path = cfg.teacher.model
    else:
        from distill.students.toy import ensure_toy_teacher

        _, heldout = run_problems(ctx)
        path = str(ensure_toy_teacher(cfg.teacher.toy.model_dump(mode="json"), cfg.problems.min_digits,
                                      cfg.problems.max_digits, heldout, cfg.teacher.toy.cache_dir, on_log=on_log))
    ctx.cache["teacher_path"] = path
    return path


def _sampler(backend: str, model: str, batch_size: int, dtype: str, vllm_options: dict | None = None,
             openai_options: dict | None = None):
    from distill.teachers.sampler import make_sampler

    options: dict[str, Any] = {"batch_size": batch_size, "dtype": dtype}
    if backend == "vllm":
        options = {"dtype": dtype, **(vllm_options or {})}
    if backend == "openai":  # an HTTP server owns dtype and batching
        options = dict(openai_options or {})
    return make_sampler(backend, model, **options)


# --------------------------------------------------------------------------- stages


def stage_sample(ctx: Context) -> StageOutcome:
    cfg = ctx.config
    t = cfg.teacher
    train, _ = run_problems(ctx)
    info = sample_chunks(ctx)
    shards = ShardStore(ctx.out("sample") / "shards")
    rows = shards.read_all()
    keys = {(r["problem_id"], r["sample_index"]) for r in rows}
    expected = len(train) * t.samples_per_problem if t.kind == "model" else info.pop("traces")
    if len(keys) != len(rows) or len(rows) != expected:
        raise RuntimeError(f"sampling committed {len(rows)} traces ({len(keys)} unique), expected {expected}")
    totals = sampling_totals(rows, _price_table(cfg))
    counts = {"problems": len(train) if t.kind == "model" else len({k[0] for k in keys}), "traces": len(rows),
              **totals, "teacher": info.pop("teacher"), **info}
    return StageOutcome(counts, f"{len(rows)} traces from {counts['problems']} problems "
                                f"({totals['truncated']} truncated, {sum(totals['failures'].values())} failed)")


def sample_chunks(ctx: Context, select: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Sample (or, for a trace dataset, import) every chunk not yet committed that ``select`` picks.

    ``select`` lets a Slurm array task own the chunks ``i % n == k`` (``distill teacher sample --shard k/n``);
    every process commits through the same ShardStore, so the union is exactly the whole job.
    """
    from distill.teachers.sampler import SamplingParams
    from distill.teachers.service import pending_chunks, run_sharded

    cfg = ctx.config
    t = cfg.teacher
    shards = ShardStore(ctx.out("sample") / "shards")
    train, _ = run_problems(ctx)
    if t.kind == "dataset":
        from distill.teachers.backends.trace_dataset import commit_dataset_chunks

        info = commit_dataset_chunks(ctx.cache["dataset_traces"], train, shards, t.shard_size, select)
        return {**info, "teacher": f"dataset:{t.dataset.path}"}
    path = _teacher_for_sampling(ctx)
    params = SamplingParams(n=t.samples_per_problem, temperature=t.temperature, top_p=t.top_p,
                            max_tokens=t.max_tokens, seed=t.seed)
    retry = t.retry_truncated.max_tokens if t.retry_truncated.enabled else None
    chunks, todo, done = pending_chunks(train, shards, t.shard_size, select)
    total = sum(len(chunks[i]) for i in (todo if select else range(len(chunks)))) * t.samples_per_problem
    task = ctx.reporter.task("sampling teacher traces", total)
    already = 0 if select else sum(len(chunks[i]) for i in done) * t.samples_per_problem
    task.advance(already)
    from distill.progress import SamplingMeter

    meter = SamplingMeter(total, already, _price_table(cfg))

    def on_chunk(n: int, stats: dict) -> None:
        task.advance(n, **meter.add(stats))

    try:
        if t.scale_out.backend == "ray":
            info = _sample_on_ray(ctx, path, chunks, todo, params, shards, retry, on_chunk)
        else:
            sampler = _sampler(t.backend, path, t.batch_size, t.dtype, t.vllm.model_dump(), t.openai.model_dump())
            try:
                info = run_sharded(train, sampler, params, shards, t.shard_size, on_shard=on_chunk, select=select,
                                   retry_max_tokens=retry, pending=(chunks, todo, done))
                stats = getattr(sampler, "stats", None)  # an API sampler's own bill: cache hits, off-peak discount
                if stats is not None and getattr(sampler, "price_table", None) is not None:
                    info["billed_usd_this_run"] = round(stats.cost_usd, 8)
            finally:
                sampler.close()
    finally:
        task.close()
    return {"shards": len(chunks), "resumed_shards": len(done), "teacher": path, **info}


def sample_partition(config: RunConfig, shard_index: int = 0, num_shards: int = 1,
                     reporter: Reporter | None = None) -> dict[str, Any]:
    """Sample the chunks ``i % num_shards == shard_index`` of a run's sample stage (one Slurm array task).

    Many such processes may run at once on a shared run folder: each commits only its own chunks,
    atomically, and none deletes anything.  The stage is left ``running`` with this config's fingerprint,
    so a later ``distill run`` resumes it, finds every chunk committed and only checks and summarises.
    """
    if not 0 <= shard_index < num_shards:
        raise UserError(f"--shard {shard_index}/{num_shards}: the index must be in 0..{num_shards - 1}")
    store = RunStore(config.run_dir)
    fp = fingerprints(config)["sample"]
    entry = store.entry("sample")
    if entry.get("fingerprint") not in (None, fp):
        raise UserError(f"{config.run_dir} holds sample output of a different config; use another run name "
                        "or `distill run CONFIG --until sample --force sample` first")
    if entry.get("status") == "done":
        return {"shards": entry.get("counts", {}).get("shards"), "sampled_shards": 0, "already_done": True}
    if not entry:
        (config.run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        store.manifest["stages"]["sample"] = {"status": "running", "fingerprint": fp}
        store.save()
    ctx = Context(config, store, reporter or NullReporter(), resumable=True)
    ctx.out("sample").mkdir(parents=True, exist_ok=True)
    info = sample_chunks(ctx, select=lambda i: i % num_shards == shard_index)
    info.pop("traces", None)
    return info


def teacher_model(config: RunConfig, reporter: Reporter | None = None) -> str:
    """The teacher weights to load or serve (training the toy teacher first when the config asks for it)."""
    return _teacher_for_sampling(Context(config, RunStore(config.run_dir), reporter or NullReporter()))


def _teacher_for_sampling(ctx: Context) -> str:
    t = ctx.config.teacher
    if t.model != "toy":
        return teacher_path(ctx)
    toy_task = ctx.reporter.task("training toy teacher (cached after the first run)", t.toy.train_steps)
    last = [0]

    def on_log(step: int, total: int, logs: dict) -> None:
        toy_task.advance(step - last[0], loss=logs.get("loss"))
        last[0] = step

    try:
        return teacher_path(ctx, on_log)
    finally:
        toy_task.close()


def _sample_on_ray(ctx: Context, path: str, chunks: list, todo: list[int], params: Any, shards: ShardStore,
                   retry: int | None, on_chunk: Callable[[int, dict], None]) -> dict[str, Any]:
    """Chunks as tasks on Ray workers that each build the configured sampler; only this process commits."""
    from distill.teachers.ray_pool import RayPool
    from distill.teachers.service import shard_stats

    so = ctx.config.teacher.scale_out
    specs = ray_worker_specs(ctx.config.teacher, path)
    pool = RayPool(specs, workers=so.workers, address=so.address,
                   cpus_per_worker=so.cpus_per_worker, gpus_per_worker=so.gpus_per_worker,
                   max_chunk_attempts=so.max_chunk_attempts)

    def commit(index: int, traces: list[Trace]) -> None:
        if index in shards.committed():  # idempotent by chunk id
            return
        shards.commit(index, traces)
        on_chunk(len(chunks[index]) * params.n, shard_stats(traces))

    try:
        return pool.run(chunks, todo, params, commit, retry)
    finally:
        pool.close()


def ray_worker_specs(t: Any, path: str) -> list[Any]:
    """One spec per Ray worker: the teacher's sampler, and for an HTTP teacher with enough endpoints,
    worker ``w`` owns ``endpoints[w::workers]`` (so each server is driven by one client).

    ``openai.max_concurrency`` is the whole job's bound on requests in flight, not each worker's: the
    workers share it (each at least 1), by the endpoints they own when those are split, evenly when
    every worker drives every endpoint; otherwise N workers would send N times the limit (429 storms).
    """
    from distill.teachers.backends.openai_http import even_shares
    from distill.teachers.ray_pool import WorkerSpec

    options: dict[str, Any] = {"batch_size": t.batch_size, "dtype": t.dtype}
    if t.backend == "vllm":
        options = {"dtype": t.dtype, **t.vllm.model_dump()}
    if t.backend == "openai":
        options = t.openai.model_dump()
    workers = t.scale_out.workers
    if t.backend != "openai":
        return [WorkerSpec(t.backend, path, options)] * workers
    endpoints, limit = t.openai.endpoints, t.openai.max_concurrency
    if len(endpoints) >= workers:
        per_endpoint = even_shares(limit, len(endpoints))
        return [WorkerSpec(t.backend, path, {**options, "endpoints": endpoints[w::workers],
                                             "max_concurrency": max(1, sum(per_endpoint[w::workers]))})
                for w in range(workers)]
    return [WorkerSpec(t.backend, path, {**options, "max_concurrency": max(1, share)})
            for share in even_shares(limit, workers)]


def _price_table(config: RunConfig) -> Any:
    """The teacher's price table when it is a priced API (teachers/pricing.py), else None."""
    t = config.teacher
    if t.kind != "model" or t.backend != "openai":
        return None
    from distill.teachers.pricing import table_from_options

    prices = t.openai.prices.model_dump() if t.openai.prices else None
    return table_from_options(prices, t.openai.served_model or t.model)


def sampling_totals(rows: list[dict[str, Any]], price: Any = None) -> dict[str, Any]:
    """What the manifest records for a sampling job: tokens, truncations, failures by reason and cost."""
    failures: dict[str, int] = {}
    for r in rows:
        if r["finish_reason"] == "error":
            reason = (r.get("error") or "unknown").split(":", 1)[0].strip() or "unknown"
            failures[reason] = failures.get(reason, 0) + 1
    totals: dict[str, Any] = {
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "retried_truncated": sum(bool((r.get("sampling") or {}).get("retry_of_truncated")) for r in rows),
        "failures": failures,
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in rows),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in rows),
        "reasoning_tokens": sum(r.get("reasoning_tokens", 0) for r in rows),
        "cost_usd": None,
    }
    if price is not None:
        from distill.teachers.pricing import cost

        totals["cost_usd"] = round(cost(totals["prompt_tokens"], totals["completion_tokens"], price), 8)
    return totals


def stage_filter(ctx: Context) -> StageOutcome:
    from distill.filter.dedup import screen_run
    from distill.filter.traces import filter_traces
    from distill.filter.funnel import funnel_summary, write_filter_plots
    from distill.records import to_dict

    cfg = ctx.config
    traces = read_records(ShardStore(ctx.store.stage_dir("sample") / "shards").paths(), Trace)
    train, heldout = run_problems(ctx)
    held_name = heldout_name(cfg.problems)
    screening = screen_run(train, {held_name: heldout}, cfg.filter)  # contaminated / duplicate problems
    llm_judge = _llm_judge(ctx) if cfg.filter.judge.enabled else None
    try:
        result = filter_traces(traces, cfg.filter, screening.reasons, llm_judge=llm_judge)
    finally:
        if llm_judge is not None:
            llm_judge.sampler.close()
    out = ctx.out("filter")
    write_jsonl_atomic(out / "kept.jsonl", result.kept)
    write_jsonl_atomic(out / "verdicts.jsonl", result.verdicts)
    write_jsonl_atomic(out / "rejected.jsonl", ({**to_dict(t), "reason": v.reason, "extracted": v.extracted,
                                                 **({"detail": result.details[t.key]} if t.key in result.details
                                                    else {})}
                                                for t, v in result.rejected()))
    write_jsonl_atomic(out / "contamination.jsonl", (m.as_dict() for m in screening.contamination))
    write_jsonl_atomic(out / "duplicates.jsonl", (d.as_dict() for d in screening.duplicates))
    if cfg.filter.judge.enabled:
        write_jsonl_atomic(out / "judge_audit.jsonl", result.audit)
    sources = {p.id: p.source for p in train}
    write_json_atomic(out / "funnel.json", funnel_summary(result, sources))
    write_filter_plots(result, out, cfg.teacher.max_tokens)
    kept = result.funnel.get("kept", 0)
    rejected = ", ".join(f"{k} {v}" for k, v in result.funnel.items() if k not in ("total", "kept"))
    counts = {"funnel": result.funnel, "contaminated_problems": len({m.train_id for m in screening.contamination}),
              "duplicate_problems": len(screening.duplicates)}
    return StageOutcome(counts,
                        f"kept {kept} of {result.funnel['total']} traces" + (f" (rejected: {rejected})" if rejected else ""))


def _llm_judge(ctx: Context):
    """The filter's LLM judge: a Sampler for filter.judge.model ('teacher': the run's teacher, same backend)."""
    from distill.filter.judge import LLMJudge
    from distill.teachers.sampler import SamplingParams

    cfg, j = ctx.config, ctx.config.filter.judge
    if j.model == "teacher":
        t = cfg.teacher
        sampler = _sampler(t.backend, teacher_path(ctx), j.batch_size, t.dtype, t.vllm.model_dump(),
                           t.openai.model_dump())
    else:
        sampler = _sampler(j.backend, j.model, j.batch_size, cfg.teacher.dtype, None, j.openai.model_dump())
    return LLMJudge(sampler, SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=j.max_tokens, seed=j.seed))


def student_base(ctx: Context) -> str:
    """The student's starting point: a real base model, or a tiny random one sharing the teacher's tokenizer."""
    cfg = ctx.config
    if cfg.student.model != "toy":
        return cfg.student.model
    base = ctx.out("train") / "base"
    if (base / "config.json").is_file():
        return str(base)
    from transformers import AutoTokenizer

    from distill.students.models import TinyModelSpec, build_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(teacher_path(ctx))
    model = build_tiny_model(TinyModelSpec(**cfg.student.toy.model_dump()), tokenizer, seed=cfg.student.seed)
    tmp = base.with_name("base.tmp")
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    tmp.rename(base)
    return str(base)


def stage_train(ctx: Context) -> StageOutcome:
    from transformers import AutoTokenizer

    from distill.students.trainer import to_training_example, train_sft

    cfg = ctx.config.student
    kept = read_records([ctx.store.stage_dir("filter") / "kept.jsonl"], Trace)
    if not kept:
        raise UserError("train: the filter kept no traces; nothing to train on (see filter/funnel.json)")
    examples = [to_training_example(t.prompt, t.reasoning, t.answer_text) for t in kept]
    base = student_base(ctx)
    tokenizer = AutoTokenizer.from_pretrained(base)
    settings = train_settings(cfg)
    _preflight(ctx, tokenizer, examples, settings)
    task = ctx.reporter.task("training student", None)
    last = [0]

    def on_log(step: int, total: int, logs: dict) -> None:
        task.advance(step - last[0], total=total, loss=logs.get("loss"))
        last[0] = step

    from distill.students.plan import oom_remedies
    from distill.students.precision import PrecisionError
    from distill.students.trainer import TrainingOutOfMemoryError

    try:
        result = train_sft(base, tokenizer, examples, ctx.out("train"), settings, on_log=on_log,
                           remedies=lambda: oom_remedies(ctx.config))
    except (PrecisionError, TrainingOutOfMemoryError) as exc:
        raise UserError(f"train: {exc}") from None
    finally:
        task.close()
    write_json_atomic(ctx.out("train") / "losses.json", {"losses": result.losses, "steps": result.steps})
    first = result.losses[0][1] if result.losses else float("nan")
    final = result.losses[-1][1] if result.losses else float("nan")
    counts = {"examples": len(examples), "steps": result.steps, "first_loss": first, "final_loss": final,
              "resumed_from": result.resumed_from, "base": base}
    return StageOutcome(counts, f"{result.steps} steps on {len(examples)} traces, loss {first:.3f} -> {final:.3f}")


def train_settings(cfg: Any) -> Any:
    """The trainer's settings from the ``student`` config section: every TrainSettings field the section
    has, by name, so a new training knob needs no copy line here."""
    import dataclasses

    from distill.students.trainer import TrainSettings

    section = cfg.model_dump()
    values = {f.name: section[f.name] for f in dataclasses.fields(TrainSettings) if f.name in section}
    values["lora_target_modules"] = list(values["lora_target_modules"])
    return TrainSettings(**values)


def _preflight(ctx: Context, tokenizer: Any, examples: list[dict], settings: Any) -> None:
    """Render the shortest kept trace as the trainer will; refuse to train on a template that loses the
    reasoning, the EOS or the prompt/inference match (students/preflight.py says why each matters)."""
    from distill.students.preflight import PreflightError, check_or_raise

    try:
        check_or_raise(tokenizer, examples, settings, report_path=ctx.out("train") / "preflight.txt")
    except PreflightError as exc:
        raise UserError(f"train: {exc} (see train/preflight.txt or `distill check-template CONFIG`)") from None


def stage_export(ctx: Context) -> StageOutcome:
    from distill.students.export import (GGUF_LOGIT_TOLERANCE, export_gguf, export_gguf_4bit, export_int8, export_nf4,
                                 llama_cpp_available)

    cfg = ctx.config.export
    model_dir = ctx.store.stage_dir("train") / "model"
    out = ctx.out("export")
    counts: dict[str, Any] = {}
    parts = []
    if cfg.nf4:
        info = export_nf4(model_dir, out / "nf4")
        counts["nf4"] = info
        parts.append(f"nf4 {info['size_bytes'] / 1e6:.2f} MB")
    if cfg.int8:
        info = export_int8(model_dir, out / "int8")
        counts["int8"] = info
        parts.append(f"int8 {info['size_bytes'] / 1e6:.2f} MB")
    if cfg.gguf:
        # Loaded back in its consumer before it is published: tokens exact, logits within the type's tolerance.
        tolerance = GGUF_LOGIT_TOLERANCE[cfg.gguf_type] if llama_cpp_available() else None
        info = export_gguf(model_dir, out / "gguf" / f"model-{cfg.gguf_type}.gguf", cfg.gguf_type,
                           llama_cpp_tolerance=tolerance)
        counts["gguf"] = info
        parts.append(f"gguf {cfg.gguf_type} {info['size_bytes'] / 1e6:.2f} MB")
    if cfg.gguf_4bit:
        info = export_gguf_4bit(model_dir, out / "gguf", prefer=cfg.gguf_4bit)
        counts["gguf_4bit"] = info
        parts.append(f"gguf {info['qtype']} {info['size_bytes'] / 1e6:.2f} MB"
                     + (" (k-quant fallback on narrow rows)" if info.get("fallback_tensors") else ""))
    write_json_atomic(out / "export.json", counts)
    return StageOutcome(counts, ", ".join(parts) or "nothing to export")


# The quantised artifacts, the backend that runs each in its consumer, and the export switch behind it.
ARTIFACT_BACKENDS = {"student_4bit": "transformers", "student_8bit": "transformers", "student_gguf": "llamacpp"}


def _artifact_enabled(config: RunConfig, label: str) -> bool:
    export = config.export
    return {"student_4bit": export.nf4, "student_8bit": export.int8,
            "student_gguf": export.gguf_4bit is not None}.get(label, True)


def _gguf_4bit_path(ctx: Context) -> str:
    info = json.loads((ctx.store.stage_dir("export") / "export.json").read_text()).get("gguf_4bit") or {}
    if not info.get("path"):
        raise UserError("eval: student_gguf needs the export stage's 4-bit GGUF (export.gguf_4bit)")
    return str(info["path"])


def heldout_name(problems: Any) -> str:
    """The name the run's held-out set goes by (decontamination matches, eval benchmark): ``heldout`` for
    generated arithmetic, else the held-out file's stem."""
    return "heldout" if problems.source == "arithmetic" else problems.heldout_path.stem


def eval_models(ctx: Context) -> dict[str, str]:
    """Label -> model folder (or GGUF file) for every model the eval config names that exists in this run."""
    available = {
        "teacher": lambda: teacher_path(ctx),
        "student_base": lambda: student_base(ctx),
        "student": lambda: str(ctx.store.stage_dir("train") / "model"),
        "student_4bit": lambda: str(ctx.store.stage_dir("export") / "nf4"),
        "student_8bit": lambda: str(ctx.store.stage_dir("export") / "int8"),
        "student_gguf": lambda: _gguf_4bit_path(ctx),
    }
    models = {}
    for label in ctx.config.eval.models:
        if not _artifact_enabled(ctx.config, label):
            continue
        if label == "teacher" and ctx.config.teacher.kind == "dataset":
            log.info("eval: teacher.kind is 'dataset' (published traces); there is no teacher model to evaluate")
            continue
        models[label] = available[label]()
    return models


def check_benchmarks(config: RunConfig) -> None:
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
    out = []
    for b in cfg.benchmarks:
        if b.name == "heldout" and b.file is None:
            _, heldout = run_problems(ctx)
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


def _bench_params(cfg: Any, bench_cfg: Any, loaded: Any) -> Any:
    from distill.eval.benchmarks import REGISTRY
    from distill.teachers.sampler import SamplingParams

    k = bench_cfg.k
    if k == "deepseek":
        registered = REGISTRY.get(bench_cfg.name)
        k = registered.protocol_k if registered else cfg.samples_per_problem
    return SamplingParams(n=k or cfg.samples_per_problem, temperature=cfg.temperature, top_p=cfg.top_p,
                          max_tokens=bench_cfg.max_tokens or cfg.max_tokens, seed=cfg.seed)


# tokens of chat-template text around a prompt (role markers, BOS, a prefilled <think>)
GGUF_TEMPLATE_ALLOWANCE = 256


def gguf_context_size(problems: list[Any], max_generation: int) -> int:
    """llama.cpp's ``n_ctx`` for an eval: the longest prompt plus the longest generation.

    Why not the model's trained length: its KV cache can be tens of GB.  Why not a fixed
    margin: a prompt longer than it would leave less than ``max_tokens`` to generate.
    A prompt's token count is bounded by its UTF-8 byte count (a byte-level BPE token
    covers at least one byte), so the bound needs no tokenizer.
    """
    from distill.problems import build_prompt

    longest = max((len(m["content"].encode("utf-8")) for p in problems for m in build_prompt(p)), default=0)
    return longest + GGUF_TEMPLATE_ALLOWANCE + max_generation


def _eval_sampler(ctx: Context, label: str, path: str, benches: list[tuple[Any, Any]]) -> tuple[Any, str, str]:
    """(sampler, backend, dtype) for one model: quantised artifacts run in their own consumer."""
    cfg = ctx.config.eval
    backend = ARTIFACT_BACKENDS.get(label, cfg.backend)
    dtype = ctx.config.teacher.dtype if label == "teacher" else "float32"
    # served_model names the teacher; other models are asked for by their path
    openai = {**ctx.config.teacher.openai.model_dump(), **({} if label == "teacher" else {"served_model": None})}
    if backend == "llamacpp":
        from distill.teachers.sampler import make_sampler

        longest = max([b.max_tokens or cfg.max_tokens for b in cfg.benchmarks] + [cfg.max_tokens])
        if cfg.budget_sweep is not None:  # a continuation: up to the budget, the forced </think>, the answer
            sweep = cfg.budget_sweep
            longest = max(longest, max(sweep.budgets) + sweep.answer_tokens + 16
                          + len(sweep.answer_prefix.encode("utf-8")))
        n_ctx = gguf_context_size([p for _, loaded in benches for p in loaded.problems], longest)
        return make_sampler("llamacpp", path, n_ctx=n_ctx), backend, f"gguf:{Path(path).stem}"
    return _sampler(backend, path, cfg.batch_size, dtype, ctx.config.teacher.vllm.model_dump(), openai), backend, dtype


def stage_eval(ctx: Context) -> StageOutcome:
    """Every configured model on every configured benchmark under one protocol, plus the 4-bit deltas.

    Files: ``results.json`` (model -> summary on the primary benchmark, as before),
    ``benchmarks.json`` (model -> benchmark -> summary), ``table.md`` (the
    R1-Distill layout with DeepSeek's published numbers), ``deltas.json`` and,
    with ``eval.budget_sweep``, the sweep's JSON/PNG and ``reasoning_effort.json``.
    """
    from distill.eval.protocol import evaluate, protocol_record
    from distill.eval.table import deltas, r1_distill_table

    cfg = ctx.config.eval
    out = ctx.out("eval")
    benches = eval_benchmarks(ctx)
    primary = benches[0][1].name
    grid: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    models = eval_models(ctx)
    for label, path in models.items():
        grid[label] = {}
        todo = []
        for bench_cfg, loaded in benches:
            done_file = out / "by_benchmark" / loaded.name / f"{label}.json"
            if ctx.resumable and done_file.is_file():
                grid[label][loaded.name] = json.loads(done_file.read_text())
            else:
                todo.append((bench_cfg, loaded, done_file))
        if not todo:
            continue
        try:
            sampler, backend, dtype = _eval_sampler(ctx, label, path, benches)
        except ImportError as exc:  # an optional engine (llama-cpp-python) is missing: say so, evaluate the rest
            log.warning("eval: %s skipped: %s", label, exc)
            skipped[label] = str(exc)
            del grid[label]
            continue
        try:
            for bench_cfg, loaded, done_file in todo:
                params = _bench_params(cfg, bench_cfg, loaded)
                task = ctx.reporter.task(f"evaluating {label} on {loaded.name}", len(loaded.problems) * params.n)
                try:
                    result = evaluate(sampler, loaded.problems, params, label, loaded.name, on_progress=task.advance)
                finally:
                    task.close()
                summary = {**result.summary(), "path": path,
                           "protocol": protocol_record(params, backend=backend, dtype=dtype,
                                                       benchmark=loaded.describe())}
                write_jsonl_atomic(done_file.with_name(f"samples-{label}.jsonl"), result.samples)
                write_json_atomic(done_file, summary)
                grid[label][loaded.name] = summary
        finally:
            sampler.close()
    results = {label: per[primary] for label, per in grid.items() if primary in per}
    for label, summary in results.items():  # the primary benchmark's files where they always were
        write_json_atomic(out / f"{label}.json", summary)
        src = out / "by_benchmark" / primary / f"samples-{label}.jsonl"
        if src.is_file():
            shutil.copyfile(src, out / f"samples-{label}.jsonl")
    write_json_atomic(out / "results.json", results)
    write_json_atomic(out / "benchmarks.json", grid)
    delta = deltas(grid)
    write_json_atomic(out / "deltas.json", delta)
    (out / "table.md").write_text(r1_distill_table(grid, ctx.config.student.model), encoding="utf-8")
    if skipped:
        write_json_atomic(out / "skipped.json", skipped)
    counts: dict[str, Any] = {"pass_at_1": {k: v["pass_at_1"] for k, v in results.items()},
                              "benchmarks": [loaded.name for _, loaded in benches], "deltas": delta,
                              "skipped": skipped}
    if cfg.budget_sweep is not None:
        counts["budget_sweep"] = _budget_sweep(ctx, benches, grid, models)
    table = ", ".join(f"{k} {v['pass_at_1']:.2f}" for k, v in results.items())
    delta_text = "; ".join(f"{label} {d[primary]['delta']:+.2f} vs student" for label, d in delta.items()
                           if primary in d)
    return StageOutcome(counts, f"pass@1: {table}" + (f" ({delta_text})" if delta_text else ""))


def _budget_sweep(ctx: Context, benches: list[tuple[Any, Any]], grid: dict[str, Any],
                  models: dict[str, str]) -> dict[str, Any]:
    """Run the thinking-budget sweep on one model and benchmark; returns the derived reasoning_effort budgets.
    ``models`` is stage_eval's label -> path, so the model folders are found once per stage."""
    import dataclasses

    from distill.eval.budget import budget_sweep, write_sweep

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
    params = _bench_params(cfg, bench_cfg, loaded)
    if sweep_cfg.samples_per_problem:
        params = dataclasses.replace(params, n=sweep_cfg.samples_per_problem)
    sampler, backend, dtype = _eval_sampler(ctx, sweep_cfg.model, models[sweep_cfg.model], benches)
    task = ctx.reporter.task(f"thinking-budget sweep ({sweep_cfg.model})", len(sweep_cfg.budgets))
    try:
        sweep = budget_sweep(sampler, loaded.problems, params, sweep_cfg.budgets, sweep_cfg.model, loaded.name,
                             sweep_cfg.answer_tokens, sweep_cfg.answer_prefix, dict(sweep_cfg.effort_fractions))
    finally:
        task.close()
        sampler.close()
    from distill.eval.protocol import protocol_record

    sweep["protocol"] = protocol_record(params, backend=backend, dtype=dtype, benchmark=loaded.describe())
    write_sweep(sweep, out)
    return sweep["reasoning_effort"]


def stage_push(ctx: Context) -> StageOutcome:
    from distill.publish import hub

    cfg = ctx.config
    results = json.loads((ctx.store.stage_dir("eval") / "results.json").read_text())
    funnel = json.loads((ctx.store.stage_dir("filter") / "funnel.json").read_text())["funnel"]
    base = ctx.store.entry("train").get("counts", {}).get("base", cfg.student.model)
    base_name = "toy (random init)" if cfg.student.model == "toy" else cfg.student.model
    license_id, license_note = hub.license_for_base(base_name)
    benchmark_results = {label: {r["benchmark"]: r["pass_at_1"]} for label, r in results.items()}
    any_result = next(iter(results.values()), {})
    card = hub.CardInfo(
        repo_id=cfg.hub.repo_id,
        model_name=cfg.hub.repo_id.split("/")[-1] if cfg.hub.repo_id else cfg.name,
        base_model=base_name,
        teacher=cfg.teacher.model if cfg.teacher.model != "toy" else "toy teacher (distill quickstart)",
        license=license_id,
        license_note=license_note,
        training=cfg.section("student"),
        eval_results=benchmark_results,
        eval_protocol={**any_result.get("params", {}), "problems": any_result.get("problems")},
        funnel=funnel,
        dataset_repo_id=f"{cfg.hub.repo_id}-traces" if cfg.hub.repo_id and cfg.hub.push_traces else None,
        extra_files=[],
    )
    extra: dict[str, Path] = {}
    export_dir = ctx.store.stage_dir("export")
    for sub, pattern in (("gguf", "*.gguf"), ("nf4", "*")):  # the 4-bit variants ride along the student
        folder = export_dir / sub
        for f in sorted(folder.glob(pattern)) if folder.is_dir() else []:
            if f.is_file():
                extra[f"{sub}/{f.name}"] = f
                card.extra_files.append(f"{sub}/{f.name}")
    traces = list(read_jsonl(ctx.store.stage_dir("filter") / "kept.jsonl")) if cfg.hub.push_traces else None
    folder = ctx.out("push") / "upload"
    written = hub.write_upload_folder(folder, ctx.store.stage_dir("train") / "model", card, traces, extra)
    token = hub.resolve_token(cfg.hub.token_env)
    if not cfg.hub.repo_id or not token:
        why = "no hub.repo_id set" if not cfg.hub.repo_id else f"no token in ${cfg.hub.token_env} or the Hub login"
        return StageOutcome({"uploaded": False, "folder": str(folder), "base": base},
                            f"not uploaded ({why}); the upload folder is {folder}")
    pushed = hub.push_folder(Path(written["model_folder"]), cfg.hub.repo_id, token, private=cfg.hub.private,
                             revision=cfg.hub.revision)
    counts: dict[str, Any] = {"uploaded": True, "model": pushed}
    if written.get("dataset_folder") and card.dataset_repo_id:
        counts["dataset"] = hub.push_folder(Path(written["dataset_folder"]), card.dataset_repo_id, token,
                                            private=cfg.hub.private, repo_type="dataset")
    return StageOutcome(counts, f"uploaded to {pushed['url']} ({len(pushed['uploaded'])} files sent)")


STAGE_FUNCTIONS: dict[str, Callable[[Context], StageOutcome]] = {
    "sample": stage_sample,
    "filter": stage_filter,
    "train": stage_train,
    "export": stage_export,
    "eval": stage_eval,
    "push": stage_push,
}


# --------------------------------------------------------------------------- report


def build_report(config: RunConfig, store: RunStore) -> dict[str, Any]:
    """The run's summary: pass@1 per model, the filter funnel and seconds per stage."""
    stages = store.manifest.get("stages", {})
    report: dict[str, Any] = {"name": config.name, "run_dir": str(config.run_dir)}
    results_path = store.stage_dir("eval") / "results.json"
    if results_path.is_file() and stages.get("eval", {}).get("status") == "done":
        results = json.loads(results_path.read_text())
        report["pass_at_1"] = {k: round(v["pass_at_1"], 4) for k, v in results.items()}
        report["eval"] = {k: {**{f: v[f] for f in ("pass_at_1", "ci95_low", "ci95_high", "cons_at_k", "problems",
                                                  "samples", "truncated")}, "failed": v.get("failed", 0)}
                          for k, v in results.items()}
        report["eval_protocol"] = next(iter(results.values()))["params"] if results else {}
        deltas_path = store.stage_dir("eval") / "deltas.json"
        if deltas_path.is_file():
            report["eval_deltas"] = json.loads(deltas_path.read_text())
    funnel_path = store.stage_dir("filter") / "funnel.json"
    if funnel_path.is_file():
        report["funnel"] = json.loads(funnel_path.read_text())["funnel"]
    report["stages"] = {s: {"status": e.get("status"), "seconds": e.get("seconds"), "summary": e.get("summary")}
                        for s, e in stages.items()}
    return report
