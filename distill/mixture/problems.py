"""A mixture source's own problems, and the checks of a mixture's input files before the first stage.

Kept apart from :mod:`distill.mixture.sources` (which reaches the trace-dataset reader) so that
``distill.input_checks`` can call :func:`check_mixture_inputs` without an import cycle.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from distill.errors import UserError
from distill.records import Problem

if TYPE_CHECKING:
    from distill.config import MixtureSource, RunConfig

SEPARATOR = "/"


def namespaced(problem: Problem, source: "MixtureSource") -> Problem:
    return replace(problem, id=f"{source.name}{SEPARATOR}{problem.id}", kind=source.kind)


def where(config: "RunConfig", source: "MixtureSource") -> str:
    index = [s.name for s in config.mixture.sources].index(source.name)
    return f"mixture.sources.{index} ({source.name})"


def model_source_problems(config: "RunConfig", source: "MixtureSource") -> list[Problem]:
    """A model-teacher source's problems, namespaced and of the source's kind."""
    from distill.config import ProblemsConfig
    from distill.problems import load_jsonl_problems, problem_sets

    p = source.problems
    assert p is not None  # MixtureConfig.check_teachers refuses a model source without problems
    if p.source == "arithmetic":  # drawn like the run's own problems: the same settings give the same problems
        generated = ProblemsConfig(source="arithmetic", train_size=p.size, heldout_size=config.problems.heldout_size,
                                   min_digits=p.min_digits, max_digits=p.max_digits, seed=p.seed)
        problems, _ = problem_sets(config.model_copy(update={"problems": generated}))
    else:
        assert p.path is not None
        problems = load_jsonl_problems(p.path, limit=p.size, kind=source.kind)
        wrong = next((q for q in problems if q.kind != source.kind), None)
        if wrong is not None:
            raise UserError(f"{where(config, source)}: {p.path} has problem {wrong.id!r} of kind {wrong.kind!r}, "
                            f"but the source's kind is {source.kind!r}; split the file or fix the kind")
    if not problems:
        raise UserError(f"{where(config, source)}: no problems in {p.path}; give a file with problems")
    return [namespaced(q, source) for q in problems]


def check_mixture_inputs(config: "RunConfig", missing_ok: bool, is_local: Callable[[str], bool]) -> list[str]:
    """The files a mixture names, checked before the first stage (``distill.input_checks`` passes its own
    ``is_local``: does a dataset path name a local file rather than a Hub id): a missing file is one line
    naming its config key; present problem files are read (bad lines, a kind not the source's, no rows)."""
    missing = []
    for source in config.mixture.sources:
        key = where(config, source)
        teacher = source.resolved_teacher(config.teacher)
        if source.problems is not None and source.problems.path is not None:
            if not source.problems.path.is_file():
                missing.append(f"problems file not found: {source.problems.path} ({key}.problems.path); check "
                               f"the path (a relative one is read from {Path.cwd()})")
            else:
                model_source_problems(config, source)
        if teacher.kind == "dataset" and source.teacher is not None:
            path = teacher.dataset.path or ""
            if is_local(path) and not Path(path).expanduser().exists():
                missing.append(f"{key}.teacher.dataset.path: no such file or folder: {path}; give a "
                               ".jsonl/.parquet file, a folder of them, or a Hub dataset id (owner/name)")
    if missing and not missing_ok:
        raise UserError(missing[0])
    return missing
