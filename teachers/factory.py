"""Build a sampler by backend name: the one place that imports the backends.

Each backend is imported inside :func:`make_sampler`, only when asked for, so a
run that samples over HTTP never imports torch or vLLM, and no backend module
imports this one (they depend only on :mod:`distill.teachers.sampling_types`).
"""

from __future__ import annotations

from typing import Any

from distill.teachers.sampling_types import Sampler


def make_sampler(backend: str, model: str, **options: Any) -> Sampler:
    """Build a sampler from a config dict's keyword options; heavy engines are imported only when asked for.

    The vLLM and OpenAI backends turn the keywords into their typed options
    object (unknown keys are ignored by the HTTP backend, passed to ``vllm.LLM``
    by the vLLM one), as they did when called with keywords directly.
    """
    if backend == "transformers":
        from distill.teachers.backends.hf import TransformersSampler

        return TransformersSampler(model, **options)
    if backend == "vllm":
        from distill.teachers.backends.vllm_engine import VLLMEngineOptions, VLLMSampler

        return VLLMSampler(model, VLLMEngineOptions.from_mapping(options))
    if backend == "openai":
        from distill.teachers.backends.openai_http import OpenAISampler
        from distill.teachers.backends.openai_options import OpenAISamplerOptions

        return OpenAISampler(model, OpenAISamplerOptions.from_mapping(options))
    if backend == "llamacpp":
        from distill.teachers.backends.llamacpp import LlamaCppSampler

        return LlamaCppSampler(model, **options)
    raise ValueError(f"unknown sampler backend {backend!r}")
