"""One Sampler interface for teacher sampling and for evaluation.

A sampler takes chat prompts and returns ``n`` raw completions per prompt.
Splitting the reasoning from the answer happens afterwards, in
:mod:`distill.teachers.reasoning`, so every backend yields the same normalised trace.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

from distill.teachers.reasoning import THINK_OPEN

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


def continues_final_message(messages: Messages) -> bool:
    """A prompt whose last message is the assistant's is continued, not answered in a new turn.

    Budget forcing (eval/budget.py) and a prefilled ``<think>`` rely on this: the
    backend renders the conversation before that message with its generation
    prompt and appends the message's text verbatim (:func:`continuation_text`);
    the completion holds only the new text.
    """
    return bool(messages) and messages[-1].get("role") == "assistant"


def prefilled_opener(generation_prompt: str) -> str:
    """The think opener a generation prompt ends with (``"<think>\\n"`` for R1-Distill), else ``""``."""
    stripped = generation_prompt.rstrip()
    if not stripped.endswith(THINK_OPEN):
        return ""
    return generation_prompt[len(stripped) - len(THINK_OPEN):]


def continuation_text(generation_prompt: str, content: str) -> str:
    """The prompt that continues an assistant message: the generation prompt, then the text as the model wrote it.

    Why not the template's own ``continue_final_message``: templates rewrite
    assistant content.  The stock DeepSeek-R1 / R1-Distill template keeps only
    the text after ``</think>``, so the message is not found in the rendering
    (transformers raises); and a template whose generation prompt prefills
    ``<think>\\n`` renders an assistant message without it, so the model's
    reasoning (generated after the prefill) would be continued with no opener.
    Appending to the generation prompt is exactly the context the model
    generated in; an opener the prompt already ends with is not repeated.
    """
    opener = prefilled_opener(generation_prompt)
    stripped = content.lstrip()
    if opener and stripped.startswith(THINK_OPEN):
        content = stripped[len(THINK_OPEN):]
        spacing = opener[len(THINK_OPEN):]
        if spacing and content.startswith(spacing):
            content = content[len(spacing):]
    return generation_prompt + content


def render_with(render: Callable[[Messages], str], messages: Messages) -> str:
    """A prompt's text from ``render`` (the chat template with its generation prompt), continuing a final
    assistant message with :func:`continuation_text`."""
    if not continues_final_message(messages):
        return render(list(messages))
    return continuation_text(render(list(messages[:-1])), str(messages[-1].get("content") or ""))


def render_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text for a transformers tokenizer's chat template, continuing a final assistant message."""
    return render_with(lambda m: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                       messages)


def make_sampler(backend: str, model: str, **options: Any) -> Sampler:
    """Build a sampler; heavy engines are imported only when asked for."""
    if backend == "transformers":
        from distill.teachers.backends.hf import TransformersSampler

        return TransformersSampler(model, **options)
    if backend == "vllm":
        from distill.teachers.backends.vllm_engine import VLLMSampler

        return VLLMSampler(model, **options)
    if backend == "openai":
        from distill.teachers.backends.openai_http import OpenAISampler

        return OpenAISampler(model, **options)
    if backend == "llamacpp":
        from distill.teachers.backends.llamacpp import LlamaCppSampler

        return LlamaCppSampler(model, **options)
    raise ValueError(f"unknown sampler backend {backend!r}")
