"""One Sampler interface for teacher sampling and for evaluation.

A sampler takes chat prompts and returns ``n`` raw completions per prompt.
Splitting the reasoning from the answer happens afterwards, in
:mod:`distill.teachers.reasoning`, so every backend yields the same normalised trace.

This module is the public face: the types live in
:mod:`distill.teachers.sampling_types`, prompt rendering in
:mod:`distill.teachers.chat_render` and the factory in
:mod:`distill.teachers.factory`, so that backends (which import only the first
two) and the factory (which imports backends lazily) form no import cycle.
``from distill.teachers.sampler import X`` keeps working for every name here, and
Ray workers still name the factory ``"distill.teachers.sampler:make_sampler"``.
"""

from __future__ import annotations

from distill.teachers.chat_render import (continuation_text, continues_final_message, prefilled_opener,
                                          render_prompt, render_with)
from distill.teachers.factory import make_sampler
from distill.teachers.sampling_types import Completion, Messages, Sampler, SamplingParams, distinct_samples

__all__ = [
    "Completion", "Messages", "Sampler", "SamplingParams", "distinct_samples",
    "continuation_text", "continues_final_message", "prefilled_opener", "render_prompt", "render_with",
    "make_sampler",
]
