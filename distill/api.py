"""The Python API: run a distillation from a script or a notebook and explore what it left behind.

Why a separate module from :mod:`distill.pipeline`: the pipeline is the engine (it
takes a validated :class:`~distill.config.RunConfig` and a progress reporter); this is
the front door a notebook wants - a config from a path or a dict with overrides, a
stage run with whatever it depends on, and a :class:`Run` that hands back traces,
verdicts and eval samples as ``datasets`` or ``pandas`` objects.  Everything is also
exported from the package (``distill.open_run``...), lazily, so ``import distill``
stays as light as ``distill --help``.

Heavy libraries (``datasets``, ``pandas``, torch through the pipeline) are imported
inside the functions that need them.  Nothing here prints; progress goes to the
``distill`` loggers and to an optional reporter.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Union

from distill.errors import UserError

if TYPE_CHECKING:
    from distill.config import RunConfig
    from distill.progress import Reporter
    from distill.publish.report import ReportFiles

log = logging.getLogger(__name__)

__all__ = ["Run", "StageNotRun", "load_config", "open_run", "rehearse", "run", "run_stage"]

PathLike = Union[str, "os.PathLike[str]"]
ConfigLike = Union["RunConfig", PathLike, Mapping[str, Any]]
Overrides = Union[Iterable[str], Mapping[str, Any], None]
FORMATS = ("datasets", "pandas", "records")


class StageNotRun(UserError, FileNotFoundError):
    """A stage's output was asked for but that stage has not produced it in this run folder.

    A :class:`~distill.errors.UserError` (the CLI's exit 2) and a ``FileNotFoundError``,
    so ``except FileNotFoundError`` in a notebook catches it too.
    """


# --------------------------------------------------------------------------- configs


def _yaml_value(value: Any) -> str:
    """``value`` as the YAML text an ``a.b=VALUE`` override parses back to the same value.

    Why not str() or JSON: PyYAML reads ``1e-05`` as a string and ``0.7`` (a str meant
    as one) as a float; its own dump round-trips both.
    """
    import yaml

    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text.endswith("..."):
        text = text[:-3].strip()
    return text


def _override_strings(overrides: Overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{key}={_yaml_value(value)}" for key, value in overrides.items()]
    return [str(item) for item in overrides]


def load_config(path: PathLike, overrides: Overrides = None) -> "RunConfig":
    """Read, override and validate a run config, exactly as ``distill run CONFIG --set ...`` does.

    ``overrides`` is either ``["teacher.temperature=0.7", ...]`` (the CLI's ``--set``
    strings, values parsed as YAML) or ``{"teacher.temperature": 0.7, ...}`` (Python
    values, kept as they are).  Raises :class:`~distill.errors.ConfigError` with the
    offending key's full path.
    """
    from distill.config import load_config as _load

    return _load(path, _override_strings(overrides))


def _as_config(config: ConfigLike, overrides: Overrides = None) -> "RunConfig":
    from distill.config import RunConfig, apply_override, config_from_dict

    if isinstance(config, RunConfig):
        if overrides:
            raw = config.model_dump(mode="json")
            for item in _override_strings(overrides):
                apply_override(raw, item)
            return config_from_dict(raw)
        return config
    if isinstance(config, Mapping):
        raw = json.loads(json.dumps(dict(config), default=str))  # a deep copy the overrides may change
        for item in _override_strings(overrides):
            apply_override(raw, item)
        return config_from_dict(raw)
    return load_config(config, overrides)


def _force_list(force: str | Iterable[str] | None) -> list[str]:
    if force is None:
        return []
    if isinstance(force, str):
        return [force]
    return list(force)


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _library_progress_bars_off(modules: Iterable[str] | None = None) -> Iterator[None]:
    """Silence the tqdm bars of datasets, transformers and huggingface_hub for the duration, then restore them.

    Why: the pipeline's stages call ``datasets.map`` and ``save_pretrained``, whose bars
    would otherwise fill a notebook cell or a script's stderr; a library call should
    not print.  Each library's own setting is put back as it was, so a caller who
    wants the bars elsewhere keeps them.  ``modules`` (top-level names, e.g. ``("datasets",)``) limits
    it to those libraries, so a caller that only reads data never imports transformers.
    """
    restore: list[Callable[[], None]] = []
    switches = (("datasets", "are_progress_bars_disabled", "disable_progress_bars", "enable_progress_bars", True),
                ("huggingface_hub.utils", "are_progress_bars_disabled", "disable_progress_bars",
                 "enable_progress_bars", True),
                ("transformers.utils.logging", "is_progress_bar_enabled", "disable_progress_bar",
                 "enable_progress_bar", False))
    for module_name, query, off, on, query_means_off in switches:
        if modules is not None and module_name.split(".")[0] not in modules:
            continue
        try:
            module = importlib.import_module(module_name)
            already_off = bool(getattr(module, query)()) == query_means_off
            if not already_off:
                getattr(module, off)()
                restore.append(getattr(module, on))
        except Exception:  # noqa: BLE001 - a library without the switch keeps its bars; nothing else changes
            log.debug("cannot switch off the progress bars of %s", module_name, exc_info=True)
    try:
        yield
    finally:
        for enable in restore:
            enable()


def run(config_or_path: ConfigLike, until: str | None = None, force: str | Iterable[str] | None = None,
        overrides: Overrides = None, reporter: "Reporter | None" = None, quiet: bool = True) -> "Run":
    """Run the pipeline for a config (up to ``until``) and return the run folder as a :class:`Run`.

    ``config_or_path`` is a :class:`~distill.config.RunConfig`, a YAML path or a config
    dict.  Stages whose inputs did not change are skipped, exactly as ``distill run``
    does; ``force`` re-runs the named stage(s) and every stage after them.  The
    pipeline's summary (``report.json``) is ``Run.summary``.  ``quiet`` (the default)
    keeps the libraries' progress bars off while it runs.
    """
    from distill.pipeline import run as _run

    config = _as_config(config_or_path, overrides)
    with _library_progress_bars_off() if quiet else contextlib.nullcontext():
        _run(config, until=until, force=_force_list(force) or None, reporter=reporter)
    return Run(config.run_dir)


def run_stage(config_or_path: ConfigLike, stage: str, force: bool = False, overrides: Overrides = None,
              reporter: "Reporter | None" = None, quiet: bool = True) -> "Run":
    """Make ``stage`` up to date, running the stages it depends on first where they are missing or stale.

    Why it is ``run(until=stage)``: the stages form one chain (each reads the one
    before it), so "everything ``stage`` needs" is every earlier stage, and each of
    those is skipped when its fingerprint is unchanged.  Later stages are never run.
    ``force=True`` re-runs ``stage`` itself even when it is up to date (its upstream
    stages still only run if needed).
    """
    from distill.config import STAGES

    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; stages are: {', '.join(STAGES)}")
    return run(config_or_path, until=stage, force=[stage] if force else None, overrides=overrides,
               reporter=reporter, quiet=quiet)


def rehearse(config_path: PathLike, until: str | None = None, workdir: PathLike | None = None,
             overrides: Overrides = None, quiet: bool = True) -> list[dict[str, Any]]:
    """Rehearse a config on this CPU (``distill rehearse``): one plain row per stage with ``stage``, ``ran``,
    ``substituted`` (``"path: old -> new (why)"``), ``full_scale_problems``, ``ok`` and ``seconds``.

    Tiny random-weight models of the real architectures run the real pipeline in ``workdir`` (default
    ``rehearsals/<name>``), never in a real run folder.  Bad input raises
    :class:`~distill.errors.UserError`; a failing stage is a row with ``ok`` False.
    """
    from distill.rehearse import plain_rows
    from distill.rehearse import rehearse as _rehearse

    with _library_progress_bars_off() if quiet else contextlib.nullcontext():
        rows = _rehearse(config_path, until=until, workdir=workdir, overrides=_override_strings(overrides))
    return plain_rows(rows)


def open_run(run_dir: PathLike) -> "Run":
    """Open an existing run folder (one with a ``manifest.json``) for reading."""
    path = Path(run_dir)
    if not (path / "manifest.json").is_file():
        raise UserError(f"not a run folder (no manifest.json): {path}")
    return Run(path)


# --------------------------------------------------------------------------- the run folder


class Run:
    """One run folder, ``runs/<name>/``, read on demand.

    Nothing is cached: every accessor reads the files as they are now, so a ``Run``
    held in a notebook stays right while the pipeline keeps writing to the folder.
    """

    def __init__(self, run_dir: PathLike):
        self.path = Path(run_dir)

    def __repr__(self) -> str:
        stages = ", ".join(f"{s} {status}" for s, status in self.stages.items())
        return f"Run({str(self.path)!r}: {stages})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ----- metadata

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def manifest(self) -> dict[str, Any]:
        """``manifest.json``: per stage status, fingerprint, counts, seconds; package versions; git commit."""
        path = self.path / "manifest.json"
        if not path.is_file():
            raise UserError(f"not a run folder (no manifest.json): {self.path}")
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def summary(self) -> dict[str, Any]:
        """``report.json`` (pass@1 per model, funnel, seconds per stage); empty before the first run ends."""
        path = self.path / "report.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    @property
    def config(self) -> "RunConfig":
        """The resolved config this run was made with, pointed at this folder.

        ``output_dir`` is set to the folder holding this run (when the folder still has
        the run's name), so ``distill.run(run.config, ...)`` continues this run even
        after the folder was moved.
        """
        import yaml

        from distill.config import config_from_dict

        path = self.path / "config.yaml"
        if not path.is_file():
            raise StageNotRun(f"no config.yaml in {self.path}")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if raw.get("name") == self.path.name:
            raw["output_dir"] = str(self.path.parent)
        return config_from_dict(raw, origin=str(path))

    def _stage_names(self) -> list[str]:
        from distill.config import STAGES

        return list(STAGES)

    def _recorded_stages(self) -> dict[str, Any]:
        """The manifest's per-stage entries, {} before the first run wrote a manifest."""
        try:
            return self.manifest.get("stages", {})
        except UserError:
            return {}

    @staticmethod
    def _status_in(recorded: dict[str, Any], stage: str) -> str:
        return str(recorded.get(stage, {}).get("status") or "not run")

    def status(self, stage: str) -> str:
        """``done``, ``running``, ``incomplete`` (failed samples to retry, a push not yet uploaded), ``failed``
        or ``not run``."""
        return self._status_in(self._recorded_stages(), stage)

    @property
    def stages(self) -> dict[str, str]:
        """Stage -> status, for all six stages (the manifest read once, not once per stage)."""
        recorded = self._recorded_stages()
        return {s: self._status_in(recorded, s) for s in self._stage_names()}

    # ----- stage outputs

    def _need(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise StageNotRun(f"stage {stage} has not produced {path.relative_to(self.path)} in {self.path} "
                              f"(status: {self.status(stage)})")
        return path

    def _shards(self) -> list[Path]:
        shards = sorted(self._need(self.path / "sample" / "shards", "sample").glob("*.jsonl"))
        if not shards:
            raise StageNotRun(f"stage sample has committed no shard yet in {self.path}")
        return shards

    def traces(self, as_: str = "datasets"):
        """Every sampled trace (``sample/shards/*.jsonl``): prompt, reasoning, answer, token counts, teacher.

        ``as_`` is ``"datasets"`` (a ``datasets.Dataset``), ``"pandas"`` (a DataFrame) or
        ``"records"`` (a list of dicts).
        """
        return _load_rows(self._shards(), as_)

    def kept(self, as_: str = "datasets"):
        """The traces the filter kept (``filter/kept.jsonl``): what the student was trained on."""
        return _load_rows([self._need(self.path / "filter" / "kept.jsonl", "filter")], as_)

    def verdicts(self, as_: str = "datasets"):
        """One verdict per trace (``filter/verdicts.jsonl``): ``ok``, ``reason`` (kept or why not), ``extracted``."""
        return _load_rows([self._need(self.path / "filter" / "verdicts.jsonl", "filter")], as_)

    def eval_models(self) -> list[str]:
        """The models with eval samples in this run (``teacher``, ``student`` ...)."""
        folder = self.path / "eval"
        return sorted(p.stem[len("samples-"):] for p in folder.glob("samples-*.jsonl")) if folder.is_dir() else []

    def eval_samples(self, model: str, as_: str = "datasets"):
        """Every eval sample of ``model`` (``eval/samples-<model>.jsonl``): correct, extracted, tokens, reference."""
        path = self.path / "eval" / f"samples-{model}.jsonl"
        if not path.is_file():
            have = self.eval_models()
            raise StageNotRun(f"no eval samples for model {model!r} in {self.path}"
                              + (f" (models evaluated: {', '.join(have)})" if have else
                                 f" (eval status: {self.status('eval')})"))
        return _load_rows([path], as_)

    def results(self, as_: str = "dict"):
        """``eval/results.json``: model -> pass@1, its 95% CI, cons@k, problems, samples, truncated, params.

        ``as_="pandas"`` gives a DataFrame with one row per model.
        """
        data = json.loads(self._need(self.path / "eval" / "results.json", "eval").read_text(encoding="utf-8"))
        if as_ == "dict":
            return data
        if as_ == "pandas":
            import pandas as pd

            return pd.DataFrame.from_dict(data, orient="index").rename_axis("model")
        raise UserError(f"results(as_={as_!r}): expected 'dict' or 'pandas'")

    def funnel(self) -> dict[str, int]:
        """``filter/funnel.json``'s counts: total, each rejection reason, kept."""
        path = self._need(self.path / "filter" / "funnel.json", "filter")
        return json.loads(path.read_text(encoding="utf-8"))["funnel"]

    def losses(self) -> list[tuple[int, float]]:
        """``train/losses.json`` as (step, loss) pairs."""
        path = self._need(self.path / "train" / "losses.json", "train")
        return [(int(s), float(v)) for s, v in json.loads(path.read_text(encoding="utf-8"))["losses"]]

    def export_info(self) -> dict[str, Any]:
        """``export/export.json``: per format its path, size, fp32 size and fidelity checks."""
        path = self._need(self.path / "export" / "export.json", "export")
        return json.loads(path.read_text(encoding="utf-8"))

    def report(self, out_dir: PathLike | None = None) -> "ReportFiles":
        """Write ``report.html`` and ``report.md`` (default into ``<run>/report/``); returns their paths."""
        from distill.publish.report import write_report

        return write_report(self.path, out_dir)


def _load_rows(paths: list[Path], as_: str):
    """Rows of JSONL files in the form asked for.

    ``datasets`` reads the files with its JSON builder (Arrow-backed, memory-mapped:
    the way to hold a 100k-trace run); pandas and records go through the pipeline's own
    reader, which ignores a torn final line the same way the stages do.
    """
    if as_ not in FORMATS:
        raise UserError(f"as_={as_!r}: expected one of {', '.join(FORMATS)}")
    if as_ == "datasets":
        import datasets

        if all(p.stat().st_size == 0 for p in paths):
            return datasets.Dataset.from_list([])
        # datasets draws a progress bar on stderr while it builds the Arrow cache; keep it quiet
        # (a library call should not print) and leave the caller's own setting as it was.
        with _library_progress_bars_off(modules=("datasets",)):
            return datasets.load_dataset("json", data_files=[str(p) for p in paths], split="train")
    from distill.records import read_jsonl

    rows = [row for p in paths for row in read_jsonl(p)]
    if as_ == "records":
        return rows
    import pandas as pd

    return pd.DataFrame.from_records(rows)
