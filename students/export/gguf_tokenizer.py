"""Tokenizer metadata for a GGUF file, as llama.cpp's ``convert_hf_to_gguf.py`` writes it (``gpt2`` BPE vocab).

llama.cpp tokenizes with what the GGUF says, not with tokenizer.json, so the
token list, token types, merges, special ids and pre-tokenizer name must match
the Hugging Face tokenizer exactly; :func:`distill.students.export.checks.gguf_logits_check`
proves it when llama.cpp is installed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from distill.students.export.errors import ExportError

logger = logging.getLogger(__name__)

# Pre-tokenizer regexes llama.cpp knows under a name ("tokenizer.ggml.pre").
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_KNOWN_PRE = {_QWEN2_REGEX: "qwen2", _LLAMA3_REGEX: "llama-bpe"}


def _split_regexes(node: Any) -> list[str]:
    """Every ``Split`` pre-tokenizer regex in a tokenizer.json subtree, depth first."""
    patterns: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "Split":
            pattern = node.get("pattern", {})
            if isinstance(pattern, dict) and "Regex" in pattern:
                patterns.append(pattern["Regex"])
        for value in node.values():
            patterns += _split_regexes(value)
    elif isinstance(node, list):
        for value in node:
            patterns += _split_regexes(value)
    return patterns


def _detect_tokenizer_pre(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json, from its Split regex.

    convert_hf_to_gguf hashes a tokenization of a probe string instead; the
    regex is what that hash stands for, and it needs no table of hashes.
    Unknown regexes fall back to ``qwen2`` with a warning.
    """
    pre = tokenizer_json.get("pre_tokenizer")
    patterns = _split_regexes(pre)
    for pattern in patterns:
        if pattern in _KNOWN_PRE:
            return _KNOWN_PRE[pattern]
    if not patterns and isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    logger.warning("unrecognised pre-tokenizer %s; writing tokenizer.ggml.pre='qwen2'", json.dumps(pre)[:200])
    return "qwen2"


def _looks_special(token: str) -> bool:
    """convert_hf_to_gguf's ``does_token_look_special``: added tokens that should be CONTROL anyway."""
    return (
        token in ("<pad>", "<mask>")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<｜") and token.endswith("｜>"))
    )


def _merges_as_strings(merges: list[Any]) -> list[str]:
    """tokenizer.json merges in GGUF's ``"a b"`` form; list pairs have literal spaces encoded as U+0120."""
    out: list[str] = []
    for merge in merges:
        if isinstance(merge, str):
            out.append(merge)
        else:
            left, right = merge
            out.append(" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in (left, right)))
    return out


def _read_bpe_tokenizer_json(model_dir: Path) -> dict[str, Any]:
    """``model_dir``'s tokenizer.json; raise unless it is a byte-level BPE (the only kind written as ``gpt2``)."""
    tok_path = Path(model_dir) / "tokenizer.json"
    if not tok_path.is_file():
        raise ExportError(f"{model_dir} has no tokenizer.json; GGUF export needs a fast BPE tokenizer")
    tokenizer_json = json.loads(tok_path.read_text(encoding="utf-8"))
    tj_model = tokenizer_json.get("model", {})
    if tj_model.get("type") != "BPE" or tj_model.get("byte_fallback"):
        raise ExportError(
            f"only byte-level BPE tokenizers can be exported as 'gpt2' GGUF vocab; "
            f"got model type {tj_model.get('type')!r} (byte_fallback={tj_model.get('byte_fallback')})"
        )
    return tokenizer_json


def _tokens_and_types(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens by id padded with ``[PAD{i}]`` to ``vocab_size``, and their GGUF token types."""
    import gguf

    reverse = {idx: tok for tok, idx in tokenizer.get_vocab().items()}
    if reverse and max(reverse) >= vocab_size:
        raise ExportError(f"tokenizer has id {max(reverse)} but the model's vocab_size is {vocab_size}")
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        token = reverse[i]
        if i in added:
            is_control = added[i].special or _looks_special(token)
            types.append(int(gguf.TokenType.CONTROL if is_control else gguf.TokenType.USER_DEFINED))
        else:
            types.append(int(gguf.TokenType.NORMAL))
        tokens.append(token)
    return tokens, types


def _added_special_tokens(tokenizer) -> tuple[bool, bool]:
    """Whether the HF tokenizer prepends BOS / appends EOS when encoding with special tokens.

    Read from what the tokenizer does, not from ``add_bos_token`` flags: Llama 3
    adds ``<|begin_of_text|>`` through its tokenizer.json post-processor while
    its tokenizer_config has no such flag; Qwen2.5 has no BOS at all.
    """
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a", add_special_tokens=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos


def gguf_vocab(model_dir: Path, vocab_size: int) -> dict[str, Any]:
    """Tokenizer metadata for a byte-level BPE tokenizer, as convert_hf_to_gguf's ``_set_vocab_gpt2`` builds it.

    Tokens are ordered by id and padded with ``[PAD{i}]`` (UNUSED) up to the
    model's ``vocab_size``; special added tokens (or ones that look like
    ``<|...|>``) are CONTROL, other added tokens USER_DEFINED, the rest NORMAL.
    """
    from transformers import AutoTokenizer

    tokenizer_json = _read_bpe_tokenizer_json(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokens, types = _tokens_and_types(tokenizer, vocab_size)
    special: dict[str, int] = {}
    for name in ("bos", "eos", "pad", "unk"):
        idx = getattr(tokenizer, f"{name}_token_id", None)
        if idx is not None:
            special[name] = int(idx)
    add_bos, add_eos = _added_special_tokens(tokenizer)
    return {
        "pre": _detect_tokenizer_pre(tokenizer_json),
        "add_bos": add_bos,
        "add_eos": add_eos,
        "tokens": tokens,
        "token_types": types,
        "merges": _merges_as_strings(tokenizer_json.get("model", {}).get("merges", [])),
        "special_ids": special,
        "chat_template": tokenizer.chat_template,
    }
