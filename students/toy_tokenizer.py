"""A small byte-level BPE tokenizer with a ChatML template, built offline.

The quickstart and the tests need a tokenizer without downloading one.  This
one is shaped like Qwen2's (same pre-tokenizer regex, digits split one by one,
byte-level BPE, ``<|im_start|>``/``<|im_end|>`` turns, ``<think>`` tokens), so
everything downstream -- chat templates, loss masks, GGUF export with the
``qwen2`` pre-tokenizer -- runs the code path a real Qwen student uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# The pre-tokenizer regex of Qwen2 (and llama.cpp's "qwen2" pre-tokenizer).
QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]
THINK_TOKENS = ["<think>", "</think>"]

# ChatML with {% generation %} markers around the assistant content *and* its
# end-of-turn token, so assistant-only loss trains the model to stop.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_toy_tokenizer(corpus: Iterable[str], vocab_size: int = 384):
    """Train a byte-level BPE on ``corpus`` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_with_chat_words(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.add_tokens(THINK_TOKENS)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def save_tokenizer(tokenizer, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))


def _with_chat_words(corpus: Iterable[str]) -> Iterable[str]:
    """Add the role names so they get merged into whole tokens like in real vocabularies."""
    yield from corpus
    for _ in range(50):
        yield "system\nuser\nassistant\n"
