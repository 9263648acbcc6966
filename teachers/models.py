"""Which teacher a run uses, and samplers built from config sections: shared by the sample stage, the
filter's judge (``model: teacher``) and the eval stage, so all three load the same weights the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from distill.errors import UserError

if TYPE_CHECKING:
    from distill.stage import Context

# The openai options that change what the teacher writes (the rest say where and how fast it is reached).
OPENAI_OUTPUT_KEYS = ("served_model", "reasoning_effort", "send_n", "extra_body", "effort_max_tokens")


def teacher_path(ctx: "Context", on_log: Callable | None = None) -> str:
    """The teacher model to load: a local folder or Hub id, or the cached toy teacher (trained on demand)."""
    if "teacher_path" in ctx.cache:
        return ctx.cache["teacher_path"]
    cfg = ctx.config
    if cfg.teacher.model != "toy":
        path = cfg.teacher.model
    else:
        from distill.students.toy import ensure_toy_teacher

        _, heldout = ctx.problems()
        path = str(ensure_toy_teacher(cfg.teacher.toy.model_dump(mode="json"), cfg.problems.min_digits,
                                      cfg.problems.max_digits, heldout, cfg.teacher.toy.cache_dir, on_log=on_log))
    ctx.cache["teacher_path"] = path
    return path


def teacher_for_sampling(ctx: "Context") -> str:
    """:func:`teacher_path`, with the toy teacher's one-off training shown as a progress task."""
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


def teacher_model(config: Any, reporter: Any = None) -> str:
    """The teacher weights to load or serve (training the toy teacher first when the config asks for it)."""
    from distill.stage import Context
    from distill.store import RunStore

    ctx = Context(config, RunStore(config.run_dir))
    if reporter is not None:
        ctx.reporter = reporter
    return teacher_for_sampling(ctx)


def sampler_options(backend: str, batch_size: int, dtype: str, vllm_options: dict | None = None,
                    openai_options: dict | None = None) -> dict[str, Any]:
    """The keyword options of ``make_sampler`` for a backend: an HTTP server owns dtype and batching,
    vLLM its own batching."""
    if backend == "vllm":
        return {"dtype": dtype, **(vllm_options or {})}
    if backend == "openai":
        return dict(openai_options or {})
    return {"batch_size": batch_size, "dtype": dtype}


def config_sampler(backend: str, model: str, batch_size: int, dtype: str, vllm_options: dict | None = None,
                   openai_options: dict | None = None) -> Any:
    """A sampler for ``model`` on ``backend`` with the options a config section gives."""
    from distill.teachers.sampler import make_sampler

    return make_sampler(backend, model, **sampler_options(backend, batch_size, dtype, vllm_options, openai_options))


def teacher_sampler(ctx: "Context", model: str | None = None, batch_size: int | None = None) -> Any:
    """The run's teacher as a sampler (its backend and options), for sampling or as the filter's judge."""
    t = ctx.config.teacher
    return config_sampler(t.backend, model or teacher_path(ctx), batch_size or t.batch_size, t.dtype,
                          t.vllm.model_dump(), t.openai.model_dump())


def teacher_output_settings(config: Any) -> dict[str, Any]:
    """Only what changes the traces: another backend's options, and where/how fast an HTTP teacher is reached
    (endpoints, concurrency, retries, prices, scale-out, the server's options), do not."""
    teacher = config.section("teacher")
    teacher["toy"].pop("cache_dir", None)
    if teacher["model"] != "toy":
        teacher.pop("toy")
    for backend in ("vllm", "openai"):
        if teacher["backend"] != backend or teacher["kind"] == "dataset":
            teacher.pop(backend)
    # where, how wide and how fast sampling runs, and where the traces are kept, do not change them
    for operational in ("scale_out", "serve", "batch_size", "shard_size", "store", "max_failure_share"):
        teacher.pop(operational)
    if "vllm" in teacher:  # parallelism, memory share, eager mode, prefix caching and context are operational
        quantization = teacher.pop("vllm")["quantization"]
        if quantization:
            teacher["vllm"] = {"quantization": quantization}
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
    return teacher


def _resolved_effort_caps(spec: Any) -> dict[str, int]:
    """The caps per level: a budget-sweep file counts by its contents, not its path."""
    from distill.teachers.backends.openai_http import effort_caps

    try:
        return effort_caps(spec)
    except ValueError as exc:
        raise UserError(f"teacher.openai.effort_max_tokens: {exc}") from None


def price_table(config: Any) -> Any:
    """The teacher's price table when it is a priced API (teachers/pricing.py), else None."""
    t = config.teacher
    if t.kind != "model" or t.backend != "openai":
        return None
    from distill.teachers.pricing import table_from_options

    prices = t.openai.prices.model_dump() if t.openai.prices else None
    return table_from_options(prices, t.openai.served_model or t.model)
