"""The run's inputs checked before its first expensive step: the files and local folders a config names.

The stages' own ``check`` hooks look at config values; this module looks at what those values point
to on this machine, so a typo in a model folder, a problem file with a bad line or a repeated id ends
the run with one line before a teacher is trained or a model is loaded, not hours into sampling.

A model value is a Hub id (``owner/name``) or a local folder; transformers tries the Hub for anything
that is not a folder, and a mistyped folder then fails as "Repo id must be in the form ...".  So a
value that looks like a path (:func:`looks_like_local_path`) and does not exist is reported as a
missing folder, naming its config key.

``distill validate`` checks a config anywhere (the shipped recipes name data files and folders that
you prepare on the cluster), so with ``missing_ok`` what is absent here is returned as notes; files
that are present are read and checked all the same.  ``distill run`` refuses anything missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distill.errors import UserError

if TYPE_CHECKING:
    from distill.config import RunConfig

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def check_inputs(config: "RunConfig", missing_ok: bool = False) -> list[str]:
    """Raise UserError for the first bad input; return what is missing here (only when ``missing_ok``)."""
    missing = _missing_paths(config)
    if missing and not missing_ok:
        raise UserError(missing[0])
    absent = {path for path in _named_files(config) if not path.is_file()}
    _read_problem_files(config, absent)
    _read_other_files(config, absent)
    if config.mixture is not None:  # each source's problem file and trace dataset (distill/mixture/problems.py)
        from distill.mixture.problems import check_mixture_inputs

        missing += check_mixture_inputs(config, missing_ok,
                                        lambda path: looks_like_local_path(path) or path.endswith(DATA_SUFFIXES))
    return missing


def looks_like_local_path(value: str, cwd: Path | None = None) -> bool:
    """Is a model value meant as a local path rather than a Hub id (``owner/name``)?

    It is when it starts with ``.``, ``/`` or ``~``, has more than one ``/`` (a Hub id has exactly
    one), or its first part exists here (``models/qwen`` beside a ``models`` folder).
    """
    if value.startswith((".", "/", "~", "\\")):
        return True
    parts = Path(value).parts
    if len(parts) > 2:
        return True
    return len(parts) > 1 and ((cwd or Path.cwd()) / parts[0]).exists()


def _model_values(config: "RunConfig") -> list[tuple[str, str | None]]:
    """(config key, value) of every model or tokenizer this run loads from disk or the Hub."""
    t, judge = config.teacher, config.filter.judge
    values: list[tuple[str, str | None]] = [("student.model", None if config.student.model == "toy"
                                             else config.student.model)]
    if t.kind == "model" and t.backend != "openai" and t.model != "toy":
        values.append(("teacher.model", t.model))  # an HTTP teacher's model is the server's name for it
    if t.kind == "model" and t.backend == "openai":
        values.append(("teacher.openai.tokenizer", t.openai.tokenizer))
    if t.kind == "dataset":
        values.append(("teacher.dataset.tokenizer", t.dataset.tokenizer))
    scout = t.sampling.scout if t.kind == "model" else None
    if scout is not None and scout.backend != "openai":  # a served scout's model is the server's name for it
        values.append(("teacher.sampling.scout.model", scout.model))
    if judge.enabled and judge.backend != "openai" and judge.model != "teacher":
        values.append(("filter.judge.model", judge.model))
    return values


def _missing_paths(config: "RunConfig") -> list[str]:
    """One message per missing file or local folder, problem files first (they are read first)."""
    out = [f"{'problems file' if key.startswith('problems.') else 'file'} not found: {path} ({key}); check the "
           f"path (a relative one is read from {Path.cwd()})"
           for key, path in _named_files(config).values() if not path.is_file()]
    for key, value in _model_values(config):
        if value and looks_like_local_path(value) and not Path(value).expanduser().exists():
            out.append(f"{key}: no such folder {value!r}; give an existing local model folder or a Hub id "
                       "such as deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    if config.teacher.kind == "dataset" and config.teacher.dataset.path:
        path = config.teacher.dataset.path
        local = looks_like_local_path(path) or path.endswith(DATA_SUFFIXES)
        if local and not Path(path).expanduser().exists():
            out.append(f"teacher.dataset.path: no such file or folder: {path}; give a .jsonl/.parquet file, a "
                       "folder of them, or a Hub dataset id (owner/name)")
    return out


def _named_files(config: "RunConfig") -> dict[Path, tuple[str, Path]]:
    """The input files a config names, keyed by path: (config key, path)."""
    files: dict[Path, tuple[str, Path]] = {}
    p = config.problems
    if p.source == "jsonl":
        for key, path in (("problems.train_path", p.train_path), ("problems.heldout_path", p.heldout_path)):
            if path is not None:
                files.setdefault(path, (key, path))
    for i, path in enumerate(config.filter.decontaminate_against):
        files.setdefault(path, (f"filter.decontaminate_against[{i}]", path))
    for i, bench in enumerate(config.eval.benchmarks):
        if bench.file is not None:
            files.setdefault(bench.file, (f"eval.benchmarks[{i}].file", bench.file))
    return files


def _read_problem_files(config: "RunConfig", absent: set[Path]) -> None:
    """Build the problem sets as the sample stage will (bad lines, repeated ids, empty sets all fail here);
    when one file is not here (``validate`` elsewhere), read the other one alone."""
    from distill.problems import load_jsonl_problems, problem_sets

    p = config.problems
    if p.source == "arithmetic" or not absent & {p.train_path, p.heldout_path}:
        problem_sets(config)
        return
    for path, limit in ((p.train_path, p.train_size), (p.heldout_path, p.heldout_size)):
        if path is not None and path not in absent:
            load_jsonl_problems(path, limit=limit)


def _read_other_files(config: "RunConfig", absent: set[Path]) -> None:
    """The eval files named besides the problem sets: decontamination sets are read as the filter reads
    them; benchmark files are checked line by line (their loader reads their layouts)."""
    from distill.problems import load_jsonl_problems
    from distill.records import read_jsonl

    for path in config.filter.decontaminate_against:
        if path not in absent:
            load_jsonl_problems(path)
    for bench in config.eval.benchmarks:
        if bench.file is not None and bench.file not in absent:
            for _ in read_jsonl(bench.file, strict=True):
                pass
