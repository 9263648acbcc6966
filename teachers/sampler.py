"""One Sampler interface for teacher sampling and for evaluation.

A sampler takes chat prompts and returns ``n`` raw completions per prompt.
Splitting the reasoning from the answer happens afterwards, in
:mod:`teachers.reasoning`, so every backend yields the same normalised trace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    """One generated continuation as the backend returned it."""

    text: str
    finish_reason: str  # stop | length | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning: str | None = None  # set when the backend returns reasoning separately
    prefilled_think: bool = False  # the prompt already ended in "<think>"
    latency_s: float = 0.0
    error: str = ""


class Sampler(Protocol):
    """Anything that turns chat prompts into completions."""

    name: str

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        """Return ``params.n`` completions for each prompt, in prompt order."""
        ...

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` in this model's tokenizer (for per-part token counts)."""
        ...

    def close(self) -> None: ...


def continues_final_message(messages: Messages) -> bool:
    """A prompt whose last message is the assistant's is continued, not answered in a new turn.

    Budget forcing (eval/budget.py) and a prefilled ``<think>`` rely on this: the
    backend renders the chat template without closing that message and generates
    from where its text ends; the completion holds only the new text.
    """
    return bool(messages) and messages[-1].get("role") == "assistant"


def render_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text for a transformers tokenizer's chat template, continuing a final assistant message."""
    cont = continues_final_message(messages)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=not cont,
                                         continue_final_message=cont)


def make_sampler(backend: str, model: str, **options: Any) -> Sampler:
    """Build a sampler; heavy engines are imported only when asked for."""
    if backend == "transformers":
        from teachers.backends.hf import TransformersSampler

        return TransformersSampler(model, **options)
    if backend == "vllm":
        from teachers.backends.vllm_engine import VLLMSampler

        return VLLMSampler(model, **options)
    if backend == "openai":
        from teachers.backends.openai_http import OpenAISampler

        return OpenAISampler(model, **options)
    if backend == "llamacpp":
        from teachers.backends.llamacpp import LlamaCppSampler

        return LlamaCppSampler(model, **options)
    raise ValueError(f"unknown sampler backend {backend!r}")
