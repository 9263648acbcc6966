"""The types every sampler shares: prompts in, :class:`Completion` records out.

Why a module of its own: the backends (transformers, vLLM, HTTP, llama.cpp) and
the factory that builds them both need these types, so they live where no
backend is imported; :mod:`distill.teachers.factory` is the only place that
imports backends, and only inside :func:`~distill.teachers.factory.make_sampler`.
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


def distinct_samples(params: SamplingParams) -> int:
    """How many different samples a prompt's ``n`` really are: greedy decoding (temperature 0) gives one
    sample, so backends generate it once and repeat it ``n`` times (vLLM even refuses n > 1 when greedy)."""
    return params.n if params.temperature > 0 else 1


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
