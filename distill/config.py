"""The run config: one YAML file per run, strictly validated.

Every section is a pydantic model that forbids unknown keys, so a typo is an
error naming its full path (``teacher.temprature``) and the nearest valid key.
``--set a.b=c`` overrides are applied to the raw YAML before validation, so they
are checked exactly like the file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    retry_truncated: RetryTruncatedConfig = RetryTruncatedConfig()
    scale_out: ScaleOutConfig = ScaleOutConfig()
    serve: ServeConfig = ServeConfig()
    dataset: TraceDatasetOptions = TraceDatasetOptions()

    @model_validator(mode="after")
    def _check_dataset(self) -> "TeacherConfig":
        if self.kind == "dataset" and not self.dataset.path:
            raise ValueError("kind 'dataset' needs dataset.path (a JSONL/Parquet file, folder or Hub dataset id)")
        return self


class SandboxConfig(Strict):
    """Limits of the bubblewrap sandbox that runs code answers against their tests (distill/sandbox.py)."""

    bwrap: str = Field("bwrap", description="the bubblewrap executable (Debian package 'bubblewrap')")
    python: Optional[str] = Field(None, description="interpreter inside the sandbox (default /usr/bin/python3); "
                                                   "run as root, it must be readable by uid 65534")
    time_limit_s: float = Field(2.0, gt=0, description="wall clock per test case (CPU limit: its ceiling)")
    memory_mb: int = Field(512, ge=64, description="address-space limit per process; over it is MLE. As root with a "
                                                   "memory cgroup, also the memory of the whole run (all its processes "
                                                   "and tmpfs); without one a sandbox may use nproc x memory_mb, times "
                                                   "the workers running at once")
    max_output_bytes: int = Field(1_000_000, ge=1024, description="stdout read before the program is killed (OLE)")
    nproc: int = Field(16, ge=2, description="processes the program may have at once")
    max_file_mb: int = Field(16, ge=1, description="largest file it may write")
    nofile: int = Field(64, ge=16, description="open files")
    tmpfs_mb: int = Field(64, ge=1, description="size of its private /tmp, and of its /dev/shm (/dev is read-only)")
    max_tests: Optional[int] = Field(None, ge=1, description="run at most this many test cases per problem")
    workers: Optional[int] = Field(None, ge=1, description="sandboxes run at once (default: CPUs, at most 8)")


class JudgeConfig(Strict):
    """An LLM judge for answers the rule-based verifier cannot decide (no readable answer, verifier timeout)."""

    enabled: bool = False
    model: str = Field("teacher", min_length=1, description="'teacher' (the run's teacher), a folder or a model id")
    backend: Literal["transformers", "vllm", "openai"] = "openai"
    openai: OpenAIOptions = OpenAIOptions()
    on: list[Literal["no_answer", "error_infra"]] = Field(
        ["no_answer", "error_infra"], description="verifier statuses handed to the judge (math and multiple choice)")
    audit_fraction: float = Field(0.0, ge=0, le=1, description="also judge this share of rule-decided traces, "
                                                               "for the disagreement audit only")
    max_tokens: int = Field(1024, ge=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 0


class FilterConfig(Strict):
    reject_truncated: bool = True
    require_closed_think: bool = True
    min_reasoning_tokens: int = Field(1, ge=0)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    max_per_problem: Optional[int] = Field(None, ge=1, description="keep at most this many correct traces a problem")
    selection: Literal["first", "shortest", "random"] = "first"
    seed: int = 0
    # quality (distill/quality.py); None switches a check off
    min_completion_tokens: int = Field(0, ge=0, description="reject shorter completions as too_short")
    reject_conflicting_answers: bool = True
    repetition_ngram: int = Field(20, ge=2, description="words in the n-grams that mark a repetition loop")
    max_repeated_fraction: Optional[float] = Field(
        0.3, gt=0, le=1, description="reject when more of the reasoning lies in n-grams seen 3+ times")
    tail_loop_repeats: Optional[int] = Field(
        4, ge=2, description="reject when the reasoning ends in this many copies of one block")
    max_foreign_script: Optional[float] = Field(
        0.01, ge=0, le=1, description="reject when more of the reasoning's words are in another script than the prompt's")
    verify_timeout_s: float = Field(5.0, gt=0, description="math-verify time per answer before error_infra")
    # duplicates and contamination (distill/dedup.py)
    dedup_problems: bool = True
    near_duplicate_threshold: Optional[float] = Field(
        0.7, gt=0, le=1, description="word 3-gram Jaccard for near-duplicate training problems (same answer)")
    decontaminate_heldout: bool = True
    decontaminate_against: list[Path] = Field(default_factory=list, description="eval JSONL files (uniform schema)")
    decontam_ngram: int = Field(8, ge=1)
    decontam_min_overlap: float = Field(
        0.5, gt=0, le=1, description="share of the shorter problem's n-grams shared to count as contaminated")
    decontam_fuzzy_threshold: Optional[float] = Field(0.7, gt=0, le=1, description="word 3-gram Jaccard")
    # selection by difficulty: drop problems the teacher always or never solves
    pass_rate_band: Optional[tuple[float, float]] = Field(
        None, description="[low, high]: keep problems whose share of correct traces lies in it, e.g. [0.1, 0.9]")
    sandbox: SandboxConfig = SandboxConfig()
    judge: JudgeConfig = JudgeConfig()

    @field_validator("pass_rate_band")
    @classmethod
    def _check_band(cls, band: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if band is not None and not 0 <= band[0] <= band[1] <= 1:
            raise ValueError("must be [low, high] with 0 <= low <= high <= 1")
        return band


class RopeScalingConfig(Strict):
    """A RoPE scaling rule (transformers' ``rope_parameters``): stretch positions beyond the trained ones."""

    type: Literal["linear", "dynamic", "yarn"] = "yarn"
    factor: float = Field(..., gt=1)
    original_max_position_embeddings: Optional[int] = Field(None, ge=16, description="default: the base's")


class RopeConfig(Strict):
    """Long-context extension applied to the base's config before training and saved with the student.

    Qwen2.5-Math bases were pretrained with 4096 positions at rope_theta 10000; Open-R1 raised the
    theta to 300000 and declared 32768 positions before SFT at 32k (open-r1/Qwen2.5-Math-7B-RoPE-300k).
    """

    theta: Optional[float] = Field(None, gt=0, description="new RoPE base frequency (rope_theta)")
    max_position_embeddings: Optional[int] = Field(None, ge=16, description="positions declared in config.json")
    scaling: Optional[RopeScalingConfig] = None


class StudentConfig(Strict):
    model: str = Field("toy", min_length=1, description="'toy' or a base model folder / Hub id")
    toy: TinyModelConfig = TinyModelConfig(hidden_size=64, num_layers=3, num_heads=2, num_kv_heads=1,
                                           intermediate_size=256)
    method: Literal["full", "lora", "qlora"] = "full"
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1)
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler: Literal["cosine", "cosine_with_min_lr", "linear", "constant", "constant_with_warmup"] = "cosine"
    min_lr_rate: float = Field(0.1, gt=0, lt=1, description="cosine_with_min_lr: floor as a share of the peak lr")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping (Open-R1's 7B recipe: 0.2)")
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(32768, ge=16)
    packing: bool = Field(False, description="pack sequences into max_length rows (BFD; attention stays "
                                             "inside each sequence)")
    padding_free: bool = Field(False, description="concatenate each batch without pad tokens (position_ids "
                                                  "mark the sequences); implied by packing")
    gradient_checkpointing: bool = False
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 mixed precision on a CUDA GPU that supports it, fp32 on CPU")
    use_liger_kernel: bool = Field(False, description="Liger's fused kernels, when installed and on a CUDA GPU")
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto", description="auto: FlashAttention-2 on a GPU when flash-attn is installed, else SDPA")
    rope: Optional[RopeConfig] = Field(None, description="raise rope_theta / positions for long-context SFT")
    save_steps: int = Field(100, ge=1)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1, description=(
        "projections that get adapters; add gate_proj, up_proj, down_proj to adapt the MLPs too"))
    seed: int = 0
    chat_template: Literal["auto", "tokenizer", "chatml", "llama3", "r1_distill"] = Field(
        "auto", description="auto keeps the tokenizer's template unless it drops the <think> block "
                            "(stock R1-Distill), then uses a training variant; see `distill check-template`")


class ExportConfig(Strict):
    nf4: bool = True
    int8: bool = Field(False, description="also a bitsandbytes 8-bit (LLM.int8) export, evaluated as student_8bit")
    gguf: bool = True
    gguf_type: Literal["f32", "f16", "q8_0"] = "q8_0"
    gguf_4bit: Optional[Literal["q4_k_m", "q4_0"]] = Field(
        "q4_k_m", description="a 4-bit GGUF too (student_gguf): Q4_K_M via llama.cpp's quantizer when "
                              "llama-cpp-python is installed, else Q4_0 via gguf; null for none")


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
    budget_sweep: Optional[BudgetSweepConfig] = None

    @model_validator(mode="after")
    def _check(self) -> "EvalConfig":
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


class TrainResources(Strict):
    """The training cluster `distill plan` sizes the student run for (nothing else reads it)."""

    gpu: str = Field("H100-80GB", description="a label for the tables")
    gpus_per_node: int = Field(8, ge=1)
    nodes: int = Field(1, ge=1)
    gpu_memory_gb: float = Field(80, gt=0, description="per GPU, GB = 1e9 bytes")
    cpu_memory_gb_per_node: float = Field(2000, gt=0, description="host RAM, used by CPU offload")
    parallelism: Literal["ddp", "zero3", "zero3_offload", "fsdp"] = "zero3"
    fused_cross_entropy: bool = Field(
        True, description="the loss is computed in chunks without the full logits, as TRL's SFTTrainer (which distill "
                          "trains with) does by default; false plans for a trainer that materialises them")
    tokens_per_second_per_gpu: Optional[float] = Field(
        None, gt=0, description="measured training throughput; unset: derived from mfu and peak_tflops")
    mfu: float = Field(0.35, gt=0, le=1, description="model FLOPs utilisation assumed when throughput is unset")
    peak_tflops: float = Field(989, gt=0, description="dense BF16 peak per GPU (H100 SXM: 989)")
    usd_per_gpu_hour: float = Field(2.5, ge=0)


class TeacherResources(Strict):
    """The inference cluster `distill plan` sizes the teacher for (nothing else reads it)."""

    gpu: str = Field("H200-141GB", description="a label for the tables")
    gpus_per_node: int = Field(8, ge=1)
    gpu_memory_gb: float = Field(141, gt=0, description="per GPU, GB = 1e9 bytes")
    min_concurrent_sequences: int = Field(32, ge=1, description="KV cache to reserve: this many full-length "
                                                               "sequences at teacher.max_tokens")
    tokens_per_second: float = Field(2500, gt=0, description="generated tokens/s of one engine (one TP x PP group)")
    replicas: int = Field(1, ge=1, description="engines running side by side")
    usd_per_gpu_hour: float = Field(3.5, ge=0)


class PlanConfig(Strict):
    """Assumptions for `distill plan`: hardware, throughput, prices and trace lengths."""

    train: TrainResources = TrainResources()
    teacher: TeacherResources = TeacherResources()
    avg_prompt_tokens: int = Field(150, ge=1)
    avg_completion_tokens: int = Field(6000, ge=1, description="teacher tokens per trace (reasoning + answer)")
    keep_rate: float = Field(0.7, gt=0, le=1, description="share of traces the filter is expected to keep")


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
    plan: PlanConfig = PlanConfig()

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
