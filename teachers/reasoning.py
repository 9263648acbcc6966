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
    """Split a completion; an unclosed think block is all reasoning and no answer.

    With a separate reasoning field the server has already split the text at ``</think>``,
    so the split no longer shows whether the block closed.  The answer does: a server puts
    everything into the field until the model closes its thinking, so no answer text (and
    no ``</think>`` in it) means the generation stopped, or was cut off, while still
    thinking -- the same ``think_closed=False`` the inline and prefilled forms give.  A
    model that closed its thinking and then said nothing is counted as unclosed too; it
    has no answer either way.
    """
    if reasoning_field is not None and reasoning_field.strip():
        # The server already separated them; the text is the answer (it may still repeat a think block).
        stripped = text.lstrip()
        if THINK_CLOSE in text:
            return SplitCompletion(reasoning_field.strip(), text.split(THINK_CLOSE, 1)[1].strip(), True)
        if stripped.startswith(THINK_OPEN):  # a think block reopened in the answer and never closed
            return SplitCompletion(reasoning_field.strip(), "", False)
        return SplitCompletion(reasoning_field.strip(), stripped.strip(), bool(stripped.strip()))
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
