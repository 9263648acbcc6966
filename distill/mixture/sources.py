"""Each mixture source as the sample stage already knows it: a run config whose ``teacher`` is the source's,
and the source's problems with ids ``name/...``.

Why a derived run config per source rather than a second sampling path: the keyed trace store, the toy
teacher, API teachers, Ray scale-out, trace-dataset import and the run's view all read ``config.teacher``
and ``ctx.problems()``.  Giving each source a config and a context of its own reuses every one of them, and
the store's keys (teacher + prompt + sampling settings + seed + index) keep each source's traces apart, so
adding a source or changing a share never re-samples another source.  The source's name enters every
problem id (``arith/train-00001``), so its traces stay its own through filter, composition and report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.errors import UserError
from distill.mixture.problems import SEPARATOR, model_source_problems, namespaced, where
from distill.records import Problem
from distill.stage import Context
from distill.store import content_hashes

if TYPE_CHECKING:
    from distill.config import MixtureSource, RunConfig
    from distill.records import Trace



def source_config(config: "RunConfig", source: "MixtureSource") -> "RunConfig":
    """The run config as one source sees it: its teacher in ``teacher``, no mixture."""
    return config.model_copy(update={"teacher": source.resolved_teacher(config.teacher), "mixture": None})


def source_of(problem_id: str) -> str:
    """The mixture source a namespaced problem id belongs to."""
    return problem_id.split(SEPARATOR, 1)[0]


def dataset_source_records(config: "RunConfig", source: "MixtureSource",
                           ) -> tuple[list[Problem], dict[str, list["Trace"]]]:
    """A trace-dataset source's problems and traces, namespaced and of the source's kind (the prompt built for
    that kind, as a sampled source's would be)."""
    from distill.problems import build_prompt
    from distill.teachers.backends.trace_dataset import load_trace_dataset

    teacher = source.resolved_teacher(config.teacher)
    raw_problems, raw_traces = load_trace_dataset(teacher.dataset.model_dump())
    problems, traces = [], {}
    for raw in raw_problems:
        problem = namespaced(raw, source)
        problems.append(problem)
        traces[problem.id] = [replace(t, problem_id=problem.id, kind=source.kind, prompt=build_prompt(problem))
                              for t in raw_traces[raw.id]]
    if not problems:
        raise UserError(f"{where(config, source)}: the trace dataset {teacher.dataset.path} has no rows")
    return problems, traces


@dataclass
class SourceContext(Context):
    """A source's context: its own config, problems and cache; its view of traces in its own folder."""

    view_dir: Path | None = None

    def out(self, stage: str) -> Path:
        if stage == "sample" and self.view_dir is not None:
            return self.view_dir
        return super().out(stage)


def source_contexts(ctx: Context) -> list[tuple["MixtureSource", SourceContext]]:
    """One context per source, every source's problems read first: an empty source or a bad file stops the
    run before anything is sampled.  Built once per run (``ctx.cache``)."""
    if "mixture_sources" in ctx.cache:
        return ctx.cache["mixture_sources"]
    config = ctx.config
    _, heldout = ctx.problems()
    out = []
    for source in config.mixture.sources:
        sub = source_config(config, source)
        cache: dict[str, Any] = {}
        if sub.teacher.kind == "dataset":
            problems, cache["dataset_traces"] = dataset_source_records(config, source)
        else:
            problems = model_source_problems(config, source)
        cache["problems"] = (problems, heldout)
        view = ctx.out("sample") / "sources" / source.name
        out.append((source, SourceContext(sub, ctx.store, ctx.reporter, ctx.resumable, None, cache, view)))
    ctx.cache["mixture_sources"] = out
    return out


def teacher_label(config: "RunConfig", source: "MixtureSource") -> str:
    """Who wrote a source's traces, in words: ``dataset:PATH``, ``api:MODEL`` or the model."""
    teacher = source.resolved_teacher(config.teacher)
    if teacher.kind == "dataset":
        return f"dataset:{teacher.dataset.path}"
    if teacher.backend == "openai":
        return f"api:{teacher.openai.served_model or teacher.model}"
    return teacher.model


def sample_fingerprint(config: "RunConfig") -> dict[str, Any]:
    """What the sample stage's output depends on in a mixture: each source's teacher (its output settings),
    problems and input files by content; not the shares, counts or draw (the filter's), so a share change
    re-runs only the draw."""
    from distill.teachers.adaptive_stage import sampling_output_settings
    from distill.teachers.models import teacher_output_settings

    p = config.problems
    sources = []
    for source in config.mixture.sources:
        sub = source_config(config, source)
        files = [source.problems.path if source.problems is not None else None,
                 sub.teacher.dataset.path if sub.teacher.kind == "dataset" else None]
        entry = {"name": source.name, "kind": source.kind, "teacher": sampling_output_settings(sub, teacher_output_settings(sub)),
                 "problems": source.problems.model_dump(mode="json") if source.problems is not None else None}
        hashes = content_hashes(files)
        if hashes:
            entry["input_files"] = hashes
        sources.append(entry)
    fp: dict[str, Any] = {"problems": config.section("problems"), "mixture_sources": sources}
    held = content_hashes([p.heldout_path] if p.source == "jsonl" else [])
    if held:
        fp["input_files"] = held
    return fp
