"""Chat templates the student trains with: the assistant turn must keep its ``<think>`` block.

Distillation trains on ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``. Whether the
reasoning reaches the loss depends on the tokenizer's chat template:

- ChatML (Qwen2.5, Qwen2.5-Math) renders assistant content verbatim: kept as is.
- Llama 3.1 / 3.3 renders ``content | trim``: kept as is.
- The stock DeepSeek-R1-Distill template renders only ``content.split('</think>')[-1]``
  for every assistant turn, so trained as is, the student would learn to answer
  without reasoning. Its later revision also prefills ``<think>\\n`` in the
  generation prompt. We swap in a training variant (as TRL ships one) that keeps
  the reasoning in the final assistant turn -- the one being trained -- and still
  strips it from earlier turns, so multi-turn inference renders like upstream.

The family is detected from the template text, then the vocabulary, then the
tokenizer's name. ``select_template`` is pure (it reports the choice);
``apply_training_template`` applies it to a tokenizer, and the trainer calls it,
so training, the saved student and the pre-flight all use the same template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FAMILIES = ("chatml", "llama3", "r1_distill")
CHOICES = ("auto", "tokenizer", *FAMILIES)

R1_USER, R1_ASSISTANT, R1_EOS = "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"

# The token each family ends an assistant turn with: the student must emit it to stop,
# so it is the EOS the trainer teaches and generation stops on.
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "r1_distill": R1_EOS}

# Plain ChatML without a default system prompt (used when a ChatML-vocabulary tokenizer has
# no template, e.g. some base checkpoints). The {% generation %} markers make it usable with
# TRL's assistant_only_loss too; the end-of-turn token sits inside them so it is trained.
from distill.students.toy_tokenizer import CHATML_TEMPLATE  # noqa: E402  (one ChatML template for both)

# Llama 3.x turns without the tool and date boilerplate of the instruct template (used only
# when a Llama-vocabulary tokenizer has no template, e.g. the Llama-3.1-8B base).
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else %}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# DeepSeek-R1-Distill, training variant. Differences from the stock template:
# - the final assistant turn keeps its reasoning (stock: content.split('</think>')[-1]);
#   earlier assistant turns are still stripped, exactly as upstream renders history;
# - {% generation %} markers around the reply and its end-of-sentence token;
# - the generation prompt is the later upstream revision's '<｜Assistant｜><think>\n', which
#   is then also the start of every trained turn, so the student continues inside the think
#   block at inference exactly as it was trained;
# - tool calls are not supported (distillation data has none): such turns raise.
R1_DISTILL_TRAINING_TEMPLATE = (
    "{%- if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{%- set ns = namespace(system_prompt='') %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{% endif %}"
    "{%- endfor %}"
    "{{- bos_token }}{{- ns.system_prompt }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{{- '" + R1_USER + "' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{%- if message['content'] is none %}"
    "{{- raise_exception('this training template does not render tool calls') }}"
    "{%- endif %}"
    "{%- set content = message['content'] %}"
    "{%- if not loop.last and '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{- '" + R1_ASSISTANT + "' }}"
    "{% generation %}{{- content + '" + R1_EOS + "' }}{% endgeneration %}"
    "{%- elif message['role'] != 'system' %}"
    "{{- raise_exception('unsupported role ' + message['role']) }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '" + R1_ASSISTANT + "<think>\\n' }}{%- endif %}"
)

BUILT_IN = {"chatml": CHATML_TEMPLATE, "llama3": LLAMA3_TEMPLATE, "r1_distill": R1_DISTILL_TRAINING_TEMPLATE}

# Markers that identify a family: in the template text first (what the tokenizer renders),
# then in the vocabulary. R1-Distill-Llama has Llama's header tokens too, so R1 goes first.
_MARKERS = (("r1_distill", R1_ASSISTANT), ("llama3", "<|start_header_id|>"), ("chatml", "<|im_start|>"))
_NAME_HINTS = (("r1_distill", "r1-distill"), ("llama3", "llama-3"), ("chatml", "qwen"))


@dataclass(frozen=True)
class TemplateSelection:
    """Which template the student trains with, and why (shown by the pre-flight)."""

    family: str | None
    template: str
    source: str  # "tokenizer" (its own template) | "built-in" | "training-variant"
    note: str

    def describe(self) -> str:
        family = self.family or "unknown family"
        return f"{family}, {self.source} template ({self.note})"


class TemplateError(ValueError):
    """No usable chat template: the tokenizer has none and its family is unknown, or a bad choice."""


def template_text(tokenizer: Any) -> str | None:
    """The tokenizer's default chat template (a dict of named templates keeps its 'default')."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def detect_family(tokenizer: Any) -> str | None:
    """chatml | llama3 | r1_distill | None, from the template, else the vocabulary, else the name."""
    text = template_text(tokenizer)
    if text:
        for family, marker in _MARKERS:
            if marker in text:
                return family
    vocab = tokenizer.get_vocab()
    for family, marker in _MARKERS:
        if marker in vocab:
            return family
    name = str(getattr(tokenizer, "name_or_path", "") or "").lower()
    for family, hint in _NAME_HINTS:
        if hint in name:
            return family
    return None


def drops_reasoning(template: str) -> bool:
    """True for templates that cut assistant content at '</think>' (the stock R1-Distill one)."""
    compact = template.replace(" ", "")
    return ".split('</think>')" in compact or '.split("</think>")' in compact


def select_template(tokenizer: Any, choice: str = "auto") -> TemplateSelection:
    """The template to train with, without changing the tokenizer.

    ``auto`` keeps the tokenizer's own template (it is what inference uses) unless it
    drops the reasoning, then swaps in the family's training variant; a tokenizer
    without a template gets its family's built-in one. ``tokenizer`` keeps the own
    template whatever it does (the pre-flight then says what is wrong with it). A
    family name forces that family's built-in template.
    """
    if choice not in CHOICES:
        raise TemplateError(f"unknown chat template choice {choice!r}; choose one of {', '.join(CHOICES)}")
    own = template_text(tokenizer)
    family = detect_family(tokenizer)
    if choice == "tokenizer":
        if own is None:
            raise TemplateError("the tokenizer has no chat template; set student.chat_template to a family")
        return TemplateSelection(family, own, "tokenizer", "kept as shipped")
    if choice in FAMILIES:
        return _built_in(choice, "forced by student.chat_template")
    if own is None:
        if family is None:
            raise TemplateError("the tokenizer has no chat template and its family is unknown; set "
                                f"student.chat_template to one of {', '.join(FAMILIES)}")
        return _built_in(family, "the tokenizer has none")
    if drops_reasoning(own):
        if family != "r1_distill":
            return TemplateSelection(family, own, "tokenizer", "drops reasoning; no training variant is known")
        return _built_in("r1_distill", "the stock template drops the reasoning from assistant turns")
    return TemplateSelection(family, own, "tokenizer", "keeps assistant content")


def _built_in(family: str, why: str) -> TemplateSelection:
    source = "training-variant" if family == "r1_distill" else "built-in"
    return TemplateSelection(family, BUILT_IN[family], source, why)


def apply_training_template(tokenizer: Any, choice: str = "auto") -> TemplateSelection:
    """Set the selected template on ``tokenizer`` and make EOS the family's end-of-turn token.

    The EOS matters as much as the template: a base checkpoint's EOS is often its
    end-of-document token (Qwen2.5 bases: ``<|endoftext|>``, Llama-3.1-8B:
    ``<|end_of_text|>``), which never appears in a chat turn, so the student would be
    trained to end turns with a token generation does not stop on.
    """
    selection = select_template(tokenizer, choice)
    if selection.template != template_text(tokenizer):
        tokenizer.chat_template = selection.template
        log.info("chat template: %s", selection.describe())
    if choice != "tokenizer" and selection.family in END_OF_TURN:
        end = END_OF_TURN[selection.family]
        if end in tokenizer.get_vocab() and tokenizer.eos_token != end:
            log.info("eos token set to the end-of-turn token %s (was %s)", end, tokenizer.eos_token)
            tokenizer.eos_token = end
    return selection
