"""The ``mixture`` section of the run config: several sources, each its own teacher, problems and kind.

DeepSeek's R1-Distill students were fine-tuned on about 800k traces from several sources (math, code and
science verified by rules or a judge, plus writing, factual QA and translation that nothing verifies);
Open-R1 and OpenThoughts mix sources the same way.  A mixture names each source with its teacher (a model,
an endpoint or a published trace dataset: a ``teacher`` section, or the run's own when left out), its
problems, its ``kind`` (which verifier the filter uses; ``general`` is unverified) and its ``share`` of the
training set or an explicit ``count``.  Everything here is checked before anything is sampled.

Import these from ``distill.config``; this module only keeps that file short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from distill.config_base import Strict
from distill.config_teacher import TeacherConfig

MixtureKind = Literal["math", "code", "multiple_choice", "general"]
SHARE_TOLERANCE = 1e-6


class SourceProblems(Strict):
    """A source's own problems: generated arithmetic (the toy teacher's) or a JSONL file in the uniform schema."""

    source: Literal["arithmetic", "jsonl"] = "arithmetic"
    path: Optional[Path] = Field(None, description="jsonl: the problems file (rows: id, problem, answer, ...)")
    size: int = Field(1000, ge=1, description="arithmetic: how many problems; jsonl: at most this many")
    min_digits: int = Field(1, ge=1, le=9)
    max_digits: int = Field(4, ge=1, le=9)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SourceProblems":
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits must not exceed max_digits")
        if self.source == "jsonl" and self.path is None:
            raise ValueError("source 'jsonl' needs path (a JSONL file of problems)")
        return self


class MixtureSource(Strict):
    """One source of training traces and its place in the mixture."""

    name: str = Field(..., min_length=1, pattern=r"^[\w.-]+$", description="names its traces (ids 'name/...')")
    kind: MixtureKind = Field(..., description="the verifier: math, code, multiple_choice; general: unverified")
    teacher: Optional[TeacherConfig] = Field(None, description="a teacher section (a model, an endpoint, or "
                                                               "kind: dataset); default: the run's teacher")
    problems: Optional[SourceProblems] = Field(None, description="this source's problems (a dataset teacher "
                                                                 "brings its own)")
    share: Optional[float] = Field(None, gt=0, le=1, description="share of the training set (by mix_by)")
    count: Optional[int] = Field(None, ge=1, description="or this many traces (mix_by: traces) or tokens")

    @model_validator(mode="after")
    def _check(self) -> "MixtureSource":
        if (self.share is None) == (self.count is None):
            raise ValueError(f"source {self.name!r}: give exactly one of share or count")
        if self.teacher is not None and self.teacher.kind == "dataset" and self.problems is not None:
            raise ValueError(f"source {self.name!r}: a trace dataset brings its own problems; drop problems")
        return self

    def resolved_teacher(self, run_teacher: TeacherConfig) -> TeacherConfig:
        """The teacher that writes (or published) this source's traces."""
        return self.teacher if self.teacher is not None else run_teacher


class MixtureConfig(Strict):
    """Several sources drawn to one composition (see docs/mixture.md)."""

    sources: list[MixtureSource] = Field(..., min_length=1)
    mix_by: Literal["traces", "tokens"] = Field("traces", description="shares and counts in traces, or in "
                                                                      "completion tokens")
    total: Optional[int] = Field(None, ge=1, description="with shares: at most this many traces (or tokens); "
                                                         "default the largest set the shares allow")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "MixtureConfig":
        names = [s.name for s in self.sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"source names must differ ({', '.join(repeated)} repeated)")
        shares = [s.share for s in self.sources if s.share is not None]
        if shares and len(shares) != len(self.sources):
            raise ValueError("give every source a share or every source a count, not both kinds")
        if shares and abs(sum(shares) - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"shares must sum to 1 (they sum to {sum(shares):.6g})")
        if self.total is not None and not shares:
            raise ValueError("total is for shares; with counts the total is their sum")
        return self

    @property
    def by_share(self) -> bool:
        return self.sources[0].share is not None

    def check_teachers(self, run_teacher: TeacherConfig) -> None:
        """An empty source is an error before anything runs: a model teacher needs problems to answer."""
        for i, source in enumerate(self.sources):
            teacher = source.resolved_teacher(run_teacher)
            if teacher.kind == "model" and source.problems is None:
                where = "its teacher" if source.teacher is not None else "the run's teacher (teacher:)"
                raise ValueError(f"sources.{i} ({source.name}): no problems for {where} to answer; give "
                                 "problems (source: arithmetic, or jsonl with path) or a dataset teacher")
            if teacher.kind == "dataset" and source.problems is not None:
                raise ValueError(f"sources.{i} ({source.name}): the run's teacher is a trace dataset, which "
                                 "brings its own problems; drop problems")


def check_mixture(mixture: Optional[MixtureConfig], values: dict[str, Any]) -> Optional[MixtureConfig]:
    """RunConfig's check of ``mixture`` against the run's teacher section (validated before it)."""
    if mixture is not None and isinstance(values.get("teacher"), TeacherConfig):
        mixture.check_teachers(values["teacher"])
    return mixture
