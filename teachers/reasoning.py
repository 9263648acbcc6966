"""Normalise a completion into (reasoning, answer, think_closed), however the reasoning arrived.

Four forms reach us: inline ``<think>...</think>`` in the text; a separate
``reasoning_content`` field (DeepSeek API); a ``reasoning`` field (newer vLLM);
and a prompt prefilled with ``<think>`` so the text holds only ``...</think>answer``.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class SplitCompletion:
    reasoning: str
    answer: str
    think_closed: bool


def split_reasoning(text: str, reasoning_field: str | None = None, prefilled: bool = False) -> SplitCompletion:
    """Split a completion; an unclosed think block is all reasoning and no answer."""
    if reasoning_field is not None and reasoning_field.strip():
        # The server already separated them; the text is the answer (it may still repeat a think block).
        answer = text.split(THINK_CLOSE, 1)[1] if THINK_CLOSE in text else text
        return SplitCompletion(reasoning_field.strip(), answer.strip(), True)
    body = text
    stripped = body.lstrip()
    opened = prefilled or stripped.startswith(THINK_OPEN)
    if stripped.startswith(THINK_OPEN):
        body = stripped[len(THINK_OPEN) :]
    if THINK_CLOSE in body:
        reasoning, answer = body.split(THINK_CLOSE, 1)
        return SplitCompletion(reasoning.strip(), answer.strip(), True)
    if opened:
        return SplitCompletion(body.strip(), "", False)
    # No think block at all: the model answered directly.
    return SplitCompletion("", body.strip(), False)
