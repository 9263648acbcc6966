"""The run config: one YAML file per run, strictly validated.

Every section is a pydantic model that forbids unknown keys, so a typo is an
error naming its full path (``teacher.temprature``) and the nearest valid key.
``--set a.b=c`` overrides are applied to the raw YAML before validation, so they
are checked exactly like the file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distill.errors import ConfigError, UserError

STAGES = ("sample", "filter", "train", "export", "eval", "push")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProblemsConfig(Strict):
    """Where problems come from: the procedural generator or JSONL files in the uniform schema."""

    source: Literal["arithmetic", "jsonl"] = "arithmetic"
    train_size: int = Field(1500, ge=1, description="training problems to sample traces for")
    heldout_size: int = Field(60, ge=1, description="held-out problems for evaluation")
    min_digits: int = Field(1, ge=1, le=9)
    max_digits: int = Field(4, ge=1, le=9)
    train_path: Optional[Path] = None
    heldout_path: Optional[Path] = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "ProblemsConfig":
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits must not exceed max_digits")
        if self.source == "jsonl" and (self.train_path is None or self.heldout_path is None):
            raise ValueError("source 'jsonl' needs train_path and heldout_path")
        return self


class TinyModelConfig(Strict):
    """Shape of a tiny model built from Qwen2Config or LlamaConfig (toy teacher, toy student)."""

    architecture: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = Field(96, ge=8)
    num_layers: int = Field(3, ge=1)
    num_heads: int = Field(3, ge=1, description="vLLM's CPU attention needs head_dim (hidden/heads) of 32, 64, ...")
    num_kv_heads: int = Field(1, ge=1)
    intermediate_size: int = Field(384, ge=8)

    @model_validator(mode="after")
    def _check(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be divisible by num_kv_heads")
        return self


class ToyTeacherConfig(Strict):
    """The embedded teacher: a tiny LM trained once on procedural worked solutions, then cached."""

    model: TinyModelConfig = TinyModelConfig()
    train_problems: int = Field(2000, ge=10)
    train_steps: int = Field(500, ge=1)
    slip_rate: float = Field(0.0, ge=0, lt=1, description="share of worked solutions with one arithmetic slip")
    learning_rate: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    vocab_size: int = Field(384, ge=300)
    seed: int = 1234
    cache_dir: Optional[Path] = None


class VLLMOptions(Strict):
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    max_model_len: Optional[int] = Field(None, ge=16)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    quantization: Optional[str] = None


class TeacherConfig(Strict):
    model: str = Field("toy", min_length=1, description="'toy', a local folder or a Hub model id")
    backend: Literal["transformers", "vllm"] = "transformers"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    toy: ToyTeacherConfig = ToyTeacherConfig()
    vllm: VLLMOptions = VLLMOptions()
    samples_per_problem: int = Field(2, ge=1)
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(32768, ge=1)
    batch_size: int = Field(64, ge=1)
    shard_size: int = Field(100, ge=1, description="problems per committed shard")
    seed: int = 0


class FilterConfig(Strict):
    reject_truncated: bool = True
    require_closed_think: bool = True
    min_reasoning_tokens: int = Field(1, ge=0)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    max_per_problem: Optional[int] = Field(None, ge=1, description="keep at most this many correct traces a problem")
    selection: Literal["first", "shortest", "random"] = "first"
    seed: int = 0


class StudentConfig(Strict):
    model: str = Field("toy", min_length=1, description="'toy' or a base model folder / Hub id")
    toy: TinyModelConfig = TinyModelConfig(hidden_size=64, num_layers=3, num_heads=2, num_kv_heads=1,
                                           intermediate_size=256)
    method: Literal["full", "lora", "qlora"] = "full"
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1)
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(32768, ge=16)
    packing: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = Field(100, ge=1)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    seed: int = 0


class ExportConfig(Strict):
    nf4: bool = True
    gguf: bool = True
    gguf_type: Literal["f32", "f16", "q8_0"] = "q8_0"


EVAL_MODELS = ("teacher", "student_base", "student", "student_4bit")


class EvalConfig(Strict):
    backend: Literal["transformers", "vllm"] = "transformers"
    models: list[Literal["teacher", "student_base", "student", "student_4bit"]] = list(EVAL_MODELS)
    samples_per_problem: int = Field(4, ge=1, description="k in pass@1 averaged over k samples")
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(32768, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0


class HubConfig(Strict):
    repo_id: Optional[str] = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = True
    token_env: str = "HF_TOKEN"
    push_traces: bool = True


class RunConfig(Strict):
    name: str = Field(..., min_length=1, pattern=r"^[\w.-]+$")
    output_dir: Path = Path("runs")
    problems: ProblemsConfig = ProblemsConfig()
    teacher: TeacherConfig = TeacherConfig()
    filter: FilterConfig = FilterConfig()
    student: StudentConfig = StudentConfig()
    export: ExportConfig = ExportConfig()
    eval: EvalConfig = EvalConfig()
    hub: HubConfig = HubConfig()

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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
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
