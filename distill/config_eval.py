"""The ``eval`` and ``hub`` sections of the run config (the eval and push stages).

Import these from ``distill.config``; this module only keeps that file short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, get_args

from pydantic import Field, model_validator

from distill.config_base import Strict


EvalModel = Literal["teacher", "student_base", "student", "student_4bit", "student_gguf", "student_8bit"]
EVAL_MODELS: tuple[str, ...] = get_args(EvalModel)


class BenchmarkConfig(Strict):
    """One benchmark to evaluate: the run's held-out set, a registered one (eval/benchmarks.py) or a user file."""

    name: str = Field(..., pattern=r"^[\w.-]+$", description="heldout, aime2024, aime2025, math500, gsm8k, amc23, "
                                                            "gpqa_diamond, livecodebench, or any name with file")
    k: Optional[int | Literal["deepseek"]] = Field(
        None, description="samples per problem; default eval.samples_per_problem; 'deepseek': the paper's k (AIME 64)")
    limit: Optional[int] = Field(None, ge=1, description="first N problems only (CPU smoke runs)")
    source: Literal["auto", "local", "hub"] = "auto"
    file: Optional[Path] = Field(None, description="a JSONL benchmark in the uniform schema")
    kind: Literal["math", "multiple_choice", "code"] = Field("math", description="for file benchmarks")
    max_tokens: Optional[int] = Field(None, ge=1, description="default eval.max_tokens")
    revision: Optional[str] = Field(None, description="Hub dataset revision (commit) to pin")
    window: Optional[str] = Field(
        None, pattern=r"^\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}$",
        description="livecodebench: problems whose contest_date is in FIRST..LAST; default 2024-08-01..2025-01-31, "
                    "the window of DeepSeek's published numbers")

    @model_validator(mode="after")
    def _check(self) -> "BenchmarkConfig":
        if isinstance(self.k, int) and self.k < 1:
            raise ValueError("k must be at least 1")
        return self


class BudgetSweepConfig(Strict):
    """Thinking-budget sweep: accuracy vs tokens, and the reasoning_effort budgets derived from it."""

    budgets: list[int] = Field(..., min_length=1, description="thinking caps in tokens, e.g. [256, 1024, 4096]")
    model: EvalModel = "student"
    benchmark: Optional[str] = Field(None, description="a name in eval.benchmarks; default the first")
    answer_tokens: int = Field(64, ge=1, description="tokens allowed for the answer after the forced </think>")
    answer_prefix: str = Field("", description="text after the forced </think>, e.g. 'The answer is \\boxed{'")
    samples_per_problem: Optional[int] = Field(None, ge=1)
    effort_fractions: dict[Literal["low", "medium", "high"], float] = Field(
        {"low": 0.5, "medium": 0.8, "high": 0.95},
        description="each level's budget: the smallest reaching this share of the best pass@1")

    @model_validator(mode="after")
    def _check(self) -> "BudgetSweepConfig":
        if any(b < 1 for b in self.budgets):
            raise ValueError("budgets must be at least 1 token")
        if any(not 0 < f <= 1 for f in self.effort_fractions.values()):
            raise ValueError("effort_fractions must be in (0, 1]")
        return self


class CheckpointEvalConfig(Strict):
    """Evaluate the train stage's checkpoints as they are saved, beside training (Open-R1's way): pass@1 by step."""

    enabled: bool = False
    every: int = Field(1, ge=1, description="evaluate every Nth saved checkpoint (student.save_steps apart)")
    launcher: Literal["process", "slurm"] = Field(
        "process", description="process: a separate local process per checkpoint; slurm: sbatch of slurm_template")
    slurm_template: Optional[Path] = Field(
        None, description="the sbatch script each checkpoint's evaluation is submitted as (it gets CONFIG, MODEL, "
                          "STEP and OUT in its environment), e.g. configs/launchers/eval-checkpoint.sbatch")

    @model_validator(mode="after")
    def _check(self) -> "CheckpointEvalConfig":
        if self.launcher == "slurm" and self.slurm_template is None:
            raise ValueError("launcher 'slurm' needs slurm_template, e.g. configs/launchers/eval-checkpoint.sbatch")
        return self


class EvalServing(Strict):
    """How eval serves one model on vLLM; unset fields come from the model itself (eval/models.py).

    The teacher defaults to teacher.vllm and teacher.dtype; every other model is served as itself:
    its own positions (up to the longest eval generation plus prompt room), the smallest tensor-
    parallel size that divides its heads and fits its weights on plan.teacher's GPUs, and dtype auto
    (bf16 on a GPU with bf16, fp16 on one without, float32 on CPU).
    """

    tensor_parallel_size: Optional[int] = Field(None, ge=1)
    pipeline_parallel_size: Optional[int] = Field(None, ge=1)
    max_model_len: Optional[int] = Field(None, ge=16, description="default: the model's positions, capped at "
                                                                  "the longest eval generation + prompt room")
    gpu_memory_utilization: Optional[float] = Field(None, gt=0, le=1)
    dtype: Optional[Literal["auto", "bfloat16", "float16", "float32"]] = None
    enforce_eager: Optional[bool] = None
    quantization: Optional[str] = None


class EvalConfig(Strict):
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    models: list[EvalModel] = Field(list(EVAL_MODELS[:4]), description="student_gguf and student_8bit are opt-in")
    benchmarks: list[BenchmarkConfig] = Field(
        [BenchmarkConfig(name="heldout")], min_length=1,
        description="the first is the primary one (results.json); all go into the model x benchmark table")
    data_dir: Optional[Path] = Field(None, description="folder of local benchmark files, e.g. ../shared/data/eval")
    samples_per_problem: int = Field(4, ge=1, description="k in pass@1 averaged over k samples")
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(32768, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    max_verifier_failure_share: float = Field(
        0.05, ge=0, le=1, description="the eval stage fails when the verifier could not judge more than this share "
                                      "of one model's samples on one benchmark (no sandbox, math-verify timeouts): "
                                      "those samples are left out of pass@1, and a score over the rest misleads")
    budget_sweep: Optional[BudgetSweepConfig] = None
    extra_models: dict[str, str] = Field(
        {}, description="label -> any model to evaluate as it is: a folder, a saved checkpoint or a Hub id "
                        "(with models: [] nothing is sampled or trained)")
    on_checkpoints: CheckpointEvalConfig = CheckpointEvalConfig()
    serving: dict[str, EvalServing] = Field(
        {}, description="model label (teacher, student_base, student, ... or an extra_models label) -> its vLLM "
                        "serving options; unset: derived from the model (the student is served as the student)")

    @model_validator(mode="after")
    def _check(self) -> "EvalConfig":
        unknown = sorted(set(self.serving) - set(EVAL_MODELS) - set(self.extra_models))
        if unknown:
            raise ValueError(f"serving names {unknown[0]!r}, which is neither a model label ({', '.join(EVAL_MODELS)}) "
                             "nor an extra_models label")
        clash = sorted(set(self.extra_models) & set(EVAL_MODELS))
        if clash:
            raise ValueError(f"extra_models label {clash[0]!r} is a built-in model; name it differently")
        if any(not label.replace("-", "").replace("_", "").replace(".", "").isalnum() for label in self.extra_models):
            raise ValueError("extra_models labels may use letters, digits, '-', '_' and '.' only")
        if not self.models and not self.extra_models:
            raise ValueError("nothing to evaluate: name eval.models or eval.extra_models")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("benchmark names must be distinct")
        if self.budget_sweep and self.budget_sweep.benchmark and self.budget_sweep.benchmark not in names:
            raise ValueError(f"budget_sweep.benchmark {self.budget_sweep.benchmark!r} is not in eval.benchmarks")
        return self


class HubConfig(Strict):
    repo_id: Optional[str] = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = True
    token_env: str = "HF_TOKEN"
    push_traces: bool = True
    revision: Optional[str] = Field(None, description="push to this branch (e.g. one per checkpoint) instead of main")
