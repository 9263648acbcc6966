"""The ``problems`` and ``teacher`` sections of the run config (the sample stage).

Import these from ``distill.config``; this module only keeps that file short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, model_validator

from distill.config_base import Strict, TinyModelConfig


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


class OpenAIPrices(Strict):
    """USD per million tokens; overrides the built-in table (teachers/pricing.py) for cost reporting."""

    input_cache_hit_per_m: float = Field(..., ge=0)
    input_cache_miss_per_m: float = Field(..., ge=0)
    output_per_m: float = Field(..., ge=0)
    off_peak_discount: float = Field(0.0, ge=0, le=1, description="fraction off inside the off-peak window")
    off_peak_start_utc: str = Field("16:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    off_peak_end_utc: str = Field("00:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class OpenAIOptions(Strict):
    """An OpenAI-compatible HTTP teacher (DeepSeek API, a vLLM server): endpoints, retries, budget, prices."""

    endpoints: list[str] = Field(["http://127.0.0.1:8000/v1"], min_length=1,
                                 description="base URLs, e.g. https://api.deepseek.com; requests are spread over all")
    api_key_env: str = Field("OPENAI_API_KEY", description="env var holding the key, e.g. DEEPSEEK_API_KEY")
    served_model: Optional[str] = Field(None, description="model name sent to the server (default: teacher.model)")
    max_concurrency: int = Field(64, ge=1)
    timeout_s: float = Field(600.0, gt=0, description="per request, whole response")
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0, description="also caps a server's Retry-After")
    reasoning_effort: Optional[Literal["low", "medium", "high"]] = Field(
        None, description="caps max_tokens at 1024 / 8192 / 32768, or at effort_max_tokens")
    effort_max_tokens: Optional[Union[dict[Literal["low", "medium", "high"], int], str]] = Field(
        None, description="max_tokens per reasoning_effort level, or the path of a budget sweep's "
                          "reasoning_effort.json (its thinking budgets plus its answer allowance)")
    send_n: bool = Field(False, description="ask for n choices in one request (vLLM); else n requests, seeds seed+i")
    tokenizer: Optional[str] = Field(None, description="local tokenizer for exact per-part token counts")
    extra_body: dict[str, Any] = Field({}, description="extra request fields, e.g. {top_k: 20}")
    prices: Optional[OpenAIPrices] = None


class ScaleOutConfig(Strict):
    """Data-parallel sampling: Ray workers each own an engine or an endpoint sampler; chunks are tasks."""

    backend: Literal["none", "ray"] = "none"
    workers: int = Field(2, ge=1, description="Ray actors, each building its own sampler from this config")
    address: str = Field("local", description="'local' starts Ray on this machine, 'auto' joins a running "
                                              "cluster (`ray start --head`), or ray://host:port")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per engine, e.g. 8 for R1 at TP=8")
    max_chunk_attempts: int = Field(3, ge=1, description="a chunk whose worker died is re-queued up to this many times")
    chunk_timeout_s: float = Field(21600.0, gt=0, description="a chunk with no result after this long (its worker's "
                                                          "start-up included) marks the worker hung: replaced, "
                                                          "chunk re-queued")


class RetryTruncatedConfig(Strict):
    """One more try, with a larger budget, for samples that hit max_tokens; the retry's outcome is final."""

    enabled: bool = False
    max_tokens: int = Field(65536, ge=1)


class ServeConfig(Strict):
    """`distill teacher serve`: the OpenAI-compatible server for this teacher (TP/PP from teacher.vllm)."""

    engine: Literal["vllm", "sglang"] = "vllm"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    served_model_name: Optional[str] = Field(None, description="default: teacher.openai.served_model or the model")
    data_parallel_size: int = Field(1, ge=1)
    reasoning_parser: Optional[str] = Field("deepseek_r1", description="splits <think> into `reasoning_content`")
    distributed_executor_backend: Optional[Literal["ray", "mp"]] = Field(
        None, description="'ray' for PP across nodes (start `ray start --head` / `--address` first)")
    max_num_seqs: Optional[int] = Field(None, ge=1)
    extra_args: list[str] = Field([], description="appended verbatim to the server command line")


class TraceDatasetOptions(Strict):
    """Published teacher traces (OpenR1-Math-style or prompt/response layouts) used instead of sampling."""

    path: Optional[str] = Field(None, description="a .jsonl/.parquet file, a folder of them, or a Hub dataset id")
    name: Optional[str] = Field(None, description="Hub dataset config name, e.g. 'default'")
    split: str = "train"
    layout: Literal["auto", "openr1", "single"] = Field(
        "auto", description="openr1: a list of generations per row; single: one response per row")
    columns: dict[str, str] = Field({}, description="our field -> your column: id, problem, answer, solution, "
                                                    "generations, response, reasoning, finish_reasons, correct, source")
    limit: Optional[int] = Field(None, ge=1, description="use at most this many rows")
    tokenizer: Optional[str] = Field(None, description="a tokenizer folder for exact token counts (else estimated)")


class ScoutConfig(Strict):
    """A cheaper model that screens problems before the teacher (docs/adaptive.md): any sampler backend."""

    model: str = Field(..., min_length=1, description="a local folder, Hub id or served name (the student base, "
                                                      "an R1-Distill model, an API model)")
    backend: Literal["transformers", "vllm", "openai", "llamacpp"] = "transformers"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    samples: int = Field(4, ge=1, description="scout samples per problem")
    on_solved: Literal["skip", "one_teacher_sample"] = Field(
        "skip", description="what a problem the scout solved in every sample gets from the teacher")
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(32768, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    openai: OpenAIOptions = OpenAIOptions()


class SamplingConfig(Strict):
    """How many teacher samples a problem gets: ``fixed`` (samples_per_problem each, as published recipes) or
    ``adaptive`` (rounds until target_per_problem verified traces or max_per_problem samples)."""

    mode: Literal["fixed", "adaptive"] = "fixed"
    target_per_problem: int = Field(1, ge=1, description="adaptive: verified traces that close a problem")
    max_per_problem: int = Field(8, ge=1, description="adaptive: samples after which an open problem is unsolved")
    rounds: Optional[list[int]] = Field(None, description="adaptive: new samples an open problem gets in each "
                                                          "round, the last repeated up to max_per_problem (default "
                                                          "doubling: target, target, 2 x target, ...)")
    verify_workers: Optional[int] = Field(None, ge=1, description="processes verifying chunks as they commit "
                                                                  "(default: 1)")
    scout: Optional[ScoutConfig] = None

    @model_validator(mode="after")
    def _check(self) -> "SamplingConfig":
        if self.target_per_problem > self.max_per_problem:
            raise ValueError(f"target_per_problem ({self.target_per_problem}) must not exceed max_per_problem "
                             f"({self.max_per_problem})")
        if self.rounds is not None and (not self.rounds or min(self.rounds) < 1):
            raise ValueError("rounds must be a non-empty list of positive sample counts, e.g. [1, 1, 2, 4]")
        return self


class TeacherConfig(Strict):
    model: str = Field("toy", min_length=1, description="'toy', a local folder or a Hub model id")
    kind: Literal["model", "dataset"] = Field("model", description="dataset: read published traces (teacher.dataset)")
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    toy: ToyTeacherConfig = ToyTeacherConfig()
    vllm: VLLMOptions = VLLMOptions()
    openai: OpenAIOptions = OpenAIOptions()
    samples_per_problem: int = Field(2, ge=1)
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(32768, ge=1)
    batch_size: int = Field(64, ge=1)
    shard_size: int = Field(100, ge=1, description="problems per committed shard")
    seed: int = 0
    store: Optional[Path] = Field(None, description="the keyed trace store (default RUN_DIR/trace_store); runs "
                                                    "may share one, and only missing traces are ever sampled")
    max_failure_share: float = Field(0.0, ge=0, le=1, description="more failed samples than this share leave the "
                                                                  "sample stage undone: the next run retries them")
    retry_truncated: RetryTruncatedConfig = RetryTruncatedConfig()
    scale_out: ScaleOutConfig = ScaleOutConfig()
    serve: ServeConfig = ServeConfig()
    dataset: TraceDatasetOptions = TraceDatasetOptions()
    sampling: SamplingConfig = SamplingConfig()

    @model_validator(mode="after")
    def _check_dataset(self) -> "TeacherConfig":
        if self.kind == "dataset" and not self.dataset.path:
            raise ValueError("kind 'dataset' needs dataset.path (a JSONL/Parquet file, folder or Hub dataset id)")
        if self.kind == "dataset" and (self.sampling.mode != "fixed" or self.sampling.scout is not None):
            raise ValueError("sampling.mode 'adaptive' and sampling.scout need a teacher model (kind 'model'), "
                             "not published traces")
        return self
