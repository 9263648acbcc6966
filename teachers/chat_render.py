"""How a chat prompt becomes the text a local engine generates from, continuing a final assistant message.

Budget forcing (eval/budget.py) and a prefilled ``<think>`` send prompts whose
last message is the assistant's: that message is continued, not answered in a
new turn.  Every local backend (transformers, vLLM, llama.cpp) renders such a
prompt the same way, with the helpers here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from distill.teachers.reasoning import THINK_CLOSE, THINK_OPEN
from distill.teachers.sampling_types import Completion, Messages


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
    return render_state(render, messages)[0]


def render_state(render: Callable[[Messages], str], messages: Messages) -> tuple[str, bool]:
    """(the prompt text as :func:`render_with` makes it, whether that text leaves a think block open).

    Open means the model starts generating inside its thinking: the template's generation prompt
    ends with ``<think>`` (R1 / R1-Distill since their template revision), or a continued assistant
    message opened one and has not closed it.  The completion then holds no ``<think>`` of its own,
    and a trace cut off before ``</think>`` is all reasoning -- without this flag the reasoning split
    (:func:`distill.teachers.reasoning.split_reasoning`) would file it as the answer.
    """
    if not continues_final_message(messages):
        text = render(list(messages))
        return text, bool(prefilled_opener(text))
    generation_prompt = render(list(messages[:-1]))
    content = str(messages[-1].get("content") or "")
    opened = bool(prefilled_opener(generation_prompt)) or content.lstrip().startswith(THINK_OPEN)
    return continuation_text(generation_prompt, content), opened and THINK_CLOSE not in content


def render_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text for a transformers tokenizer's chat template, continuing a final assistant message."""
    return render_prompt_state(tokenizer, messages)[0]


def render_prompt_state(tokenizer: Any, messages: Messages) -> tuple[str, bool]:
    """:func:`render_state` with a transformers tokenizer's chat template."""
    return render_state(lambda m: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                        messages)


def mark_think_open(completions: list[Completion], think_open: bool) -> list[Completion]:
    """The completions of one prompt, flagged ``prefilled_think`` when the prompt left a think block open."""
    if not think_open:
        return completions
    return [dataclasses.replace(c, prefilled_think=True) for c in completions]
