"""The run config: one YAML file per run, strictly validated.

Every section is a pydantic model that forbids unknown keys, so a typo is an
error naming its full path (``teacher.temprature``) and the nearest valid key.
``--set a.b=c`` overrides are applied to the raw YAML before validation, so they
are checked exactly like the file.

The section models live in one module per stage (``config_teacher``, ``config_filter``,
``config_student``, ``config_eval``, ``config_plan``, on ``config_base``); this module
re-exports them all, so ``distill.config`` stays the one import path for the schema.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from distill.config_base import Strict, TinyModelConfig
from distill.config_eval import (EVAL_MODELS, BenchmarkConfig, BudgetSweepConfig, EvalConfig, EvalModel,
                                 HubConfig)
from distill.config_filter import FilterConfig, JudgeConfig, SandboxConfig
from distill.config_mixture import MixtureConfig, MixtureSource, SourceProblems, check_mixture
from distill.config_plan import PlanConfig, TeacherResources, TrainResources
from distill.config_student import ExportConfig, RopeConfig, RopeScalingConfig, StudentConfig
from distill.config_teacher import (OpenAIOptions, OpenAIPrices, ProblemsConfig, RetryTruncatedConfig,
                                    ScaleOutConfig, ServeConfig, TeacherConfig, ToyTeacherConfig,
                                    TraceDatasetOptions, VLLMOptions)
from distill.errors import ConfigError, UserError

__all__ = [
    "STAGES", "RunConfig", "load_config", "config_from_dict", "apply_override", "format_validation_error",
    "dump_config", "ConfigError", "UserError",
    "Strict", "TinyModelConfig", "ProblemsConfig", "ToyTeacherConfig", "VLLMOptions", "OpenAIPrices",
    "OpenAIOptions", "ScaleOutConfig", "RetryTruncatedConfig", "ServeConfig", "TraceDatasetOptions",
    "TeacherConfig", "SandboxConfig", "JudgeConfig", "FilterConfig", "RopeScalingConfig", "RopeConfig",
    "StudentConfig", "ExportConfig", "EvalModel", "EVAL_MODELS", "BenchmarkConfig", "BudgetSweepConfig",
    "EvalConfig", "HubConfig", "TrainResources", "TeacherResources", "PlanConfig",
    "MixtureConfig", "MixtureSource", "SourceProblems",
]

STAGES = ("sample", "filter", "train", "export", "eval", "push")


class RunConfig(Strict):
    """A whole run: its name, where it writes, and one section per stage."""

    name: str = Field(..., min_length=1, pattern=r"^[\w.-]+$")
    output_dir: Path = Path("runs")
    problems: ProblemsConfig = ProblemsConfig()
    teacher: TeacherConfig = TeacherConfig()
    filter: FilterConfig = FilterConfig()
    student: StudentConfig = StudentConfig()
    export: ExportConfig = ExportConfig()
    eval: EvalConfig = EvalConfig()
    hub: HubConfig = HubConfig()
    plan: PlanConfig = PlanConfig()
    mixture: Optional[MixtureConfig] = None  # several sources drawn to one composition (config_mixture.py)

    @field_validator("mixture")
    @classmethod
    def _check_mixture(cls, mixture: Optional[MixtureConfig], info: ValidationInfo) -> Optional[MixtureConfig]:
        return check_mixture(mixture, info.data)

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def section(self, name: str) -> dict[str, Any]:
        return getattr(self, name).model_dump(mode="json")


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a config file; raise ConfigError/UserError with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for item in overrides or []:
        apply_override(raw, item)
    return config_from_dict(raw, origin=str(path))


def _read_text(path: Path) -> str:
    """The config's text; a file saved in another encoding is named with the line to fix, not a traceback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); save the config as "
                          "UTF-8") from None


def config_from_dict(raw: dict[str, Any], origin: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {format_validation_error(exc)}") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b=c`` to the raw mapping; the value is parsed as YAML (``3``, ``true``, ``[a, b]``)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. teacher.temperature=0.7")
    key, _, value = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        node[parts[-1]] = value


def format_validation_error(exc: ValidationError) -> str:
    """The first error as ``path: message``, with a did-you-mean for unknown keys."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        hint = _nearest_key(loc)
        return f"{path}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    extra = f" and {len(exc.errors()) - 1} more error(s)" if len(exc.errors()) > 1 else ""
    return f"{path}: {msg}{shown}{extra}"


def _nearest_key(loc: list[str]) -> str:
    model: Any = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(model.model_fields)})"


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
