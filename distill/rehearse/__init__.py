"""``distill rehearse CONFIG``: the real run's code paths on a CPU, in minutes, on tiny models of the real
architectures, with every GPU-only or huge setting checked statically at full scale and then replaced
by its CPU equivalent (each substitution listed).

Modules: :mod:`.shrink` (tiny random-weight models of a real config), :mod:`.models` (real configs and
the offline tokenizers), :mod:`.substitute` (static checks and CPU substitutions), :mod:`.student` (the
student recipes' two passes), :mod:`.teacher` (the teacher recipes, ``configs/teachers``), :mod:`.report`
(the rows and their table).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable

from distill.rehearse.report import TABLE_WIDTH, StageRehearsal, all_ok, plain_rows, rehearsal_table

log = logging.getLogger(__name__)

__all__ = ["StageRehearsal", "TABLE_WIDTH", "rehearse", "all_ok", "plain_rows", "rehearsal_table", "default_workdir"]


def default_workdir(config_path: str | os.PathLike[str], name: str) -> Path:
    """``rehearsals/<name>`` beside the working folder: never a real run's folder."""
    return Path("rehearsals") / name


def rehearse(config_path: str | os.PathLike[str], until: str | None = None,
             workdir: str | os.PathLike[str] | None = None,
             overrides: Iterable[str] | None = None) -> list[StageRehearsal]:
    """Rehearse a config: one :class:`StageRehearsal` per stage (up to ``until``).

    Bad input (no such config, an unknown stage, a model with no known shape) raises
    :class:`~distill.errors.UserError`; a stage that fails is a row with ``ok=False`` and its one-line
    reason.  Everything is written under ``workdir`` (default ``rehearsals/<name>``).
    """
    from distill.config import STAGES, load_config
    from distill.errors import UserError
    from distill.rehearse.models import shared_data_dir
    from distill.rehearse.student import rehearse_student
    from distill.rehearse.substitute import Substitutions, cpu_settings, full_scale_problems

    if until is not None and until not in STAGES:
        raise UserError(f"rehearse: unknown stage {until!r}; stages are: {', '.join(STAGES)}")
    real = load_config(config_path, list(overrides or []))
    work = Path(workdir) if workdir else default_workdir(config_path, real.name)
    if _inside(work.resolve(), real.run_dir.resolve()):
        raise UserError(f"rehearse: --workdir {work} is inside the real run folder {real.run_dir}; pick another")
    if _is_teacher_recipe(real):  # serve, sample, filter: with its own static checks and substitutions
        from distill.rehearse.teacher import rehearse_teacher

        rows = rehearse_teacher(real, work.resolve(), origin=str(config_path))
        last = STAGES.index(until) if until else len(STAGES)
        return [r for r in rows if r.stage not in STAGES or STAGES.index(r.stage) <= last]
    problems = full_scale_problems(real)
    data = shared_data_dir()
    subs = Substitutions(real.model_dump(mode="json", exclude_unset=False))
    cpu_settings(subs, real, work.resolve(), data)
    rows = rehearse_student(real, subs, work.resolve(), data, until)
    by_stage = subs.by_stage()
    for row in rows:
        row.substituted = by_stage.get(row.stage, []) + row.substituted
        row.full_scale_problems = problems.get(row.stage, []) + row.full_scale_problems
        row.ok = row.ok and not row.full_scale_problems
    return rows


def _is_teacher_recipe(real: Any) -> bool:
    """A teacher recipe (``configs/teachers``): a teacher model to serve and sample, no student to train."""
    return real.student.model == "toy" and real.teacher.kind == "model" and real.teacher.model != "toy"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False
