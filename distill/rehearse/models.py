"""The real config and the real (or nearest offline) tokenizer of each model a config names.

Real shapes come from a local folder's ``config.json`` or the published configs the project ships
(``distill.students.arch_configs``); tokenizers from a local folder or, offline, from the shared
tokenizer folders (``../shared/data/tokenizers``: Qwen2.5-Instruct, R1-Distill-Qwen, Llama-3.1-Instruct),
with what differs from the real one said in one line (a base model's EOS is set as its own
``tokenizer_config.json`` sets it, so that difference is removed rather than listed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.rehearse.shrink import TokenizerChoice

SHARED_ENV = "DISTILL_SHARED_DATA"
QWEN_BASE_EOS = "<|endoftext|>"
LLAMA_BASE_EOS = "<|end_of_text|>"
# Meta's tokenizer.json puts <|begin_of_text|> in front of every encoding (its TemplateProcessing post-processor),
# and so do R1-Distill-Llama's; the shared Llama-3.1 folder is the tiktoken tokenizer.model, which transformers
# converts without that post-processor, so its encode() adds no BOS.  Set, it adds it, and saves that.
LLAMA_BOS = {"add_bos_token": True}


def shared_data_dir() -> Path | None:
    """``../shared/data`` (or ``$DISTILL_SHARED_DATA``): beside the working folder or the repository."""
    candidates = [os.environ.get(SHARED_ENV)] if os.environ.get(SHARED_ENV) else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"]
    for folder in candidates:
        if folder and (Path(folder) / "tokenizers").is_dir():
            return Path(folder).resolve()
    return None


def real_config(model: str) -> dict[str, Any]:
    """The real ``config.json`` of ``model`` (a local folder's wins), without downloading anything."""
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    from distill.students.arch_configs import model_config

    cfg = model_config(model)
    if cfg is None:
        raise UserError(f"rehearse: no known config.json for {model!r}; point the config at a local model folder "
                        "(its config.json and tokenizer are used)")
    return dict(cfg)


def tokenizer_choice(model: str) -> TokenizerChoice:
    """The tokenizer the real run would load for ``model``, or the nearest offline one and what differs."""
    folder = Path(model).expanduser()
    if (folder / "tokenizer_config.json").is_file():
        return TokenizerChoice(folder)
    shared = shared_data_dir()
    if shared is None:
        raise UserError(f"rehearse: {model!r} is not a local folder and ../shared/data/tokenizers is not here; "
                        "give student.model / teacher.model as a local folder (its tokenizer is used)")
    tok = shared / "tokenizers"
    key = model.lower()
    if "deepseek-r1-distill-qwen" in key:
        return TokenizerChoice(tok / "deepseek-r1-distill-qwen")
    if "deepseek-r1-distill-llama" in key:
        return TokenizerChoice(tok / "llama-3.1-instruct", dict(LLAMA_BOS), substitution=(
            f"tokenizer of {model}: not here; Llama-3.1-Instruct's (same vocabulary; its chat template, not "
            "R1-Distill-Llama's)"))
    if key.startswith("deepseek-ai/deepseek-r1") or key.startswith("deepseek-ai/deepseek-v3"):
        return TokenizerChoice(tok / "deepseek-r1-distill-qwen", substitution=(
            f"tokenizer of {model}: R1's own (129,280 tokens) is not here; R1-Distill-Qwen's stands in (the same "
            "<｜User｜>/<｜Assistant｜>/<think> chat format, the Qwen2 vocabulary)"))
    if "qwen2.5" in key:
        if "instruct" in key:
            return TokenizerChoice(tok / "qwen2.5-instruct")
        note = ("; chat template Qwen2.5-Instruct's (Qwen2.5-Math's default system prompt differs)"
                if "math" in key else "")
        return TokenizerChoice(tok / "qwen2.5-instruct", {"eos_token": QWEN_BASE_EOS}, substitution=(
            f"tokenizer of {model}: Qwen2.5-Instruct's files with the base's EOS {QWEN_BASE_EOS}{note}"
            if note else ""))
    if "llama-3" in key:
        if "instruct" in key:
            return TokenizerChoice(tok / "llama-3.1-instruct", dict(LLAMA_BOS), substitution="" if "3.1" in key else (
                f"tokenizer of {model}: Llama-3.1-Instruct's (the same vocabulary, special tokens and template)"))
        return TokenizerChoice(tok / "llama-3.1-instruct", {"eos_token": LLAMA_BASE_EOS, **LLAMA_BOS}, substitution=(
            f"tokenizer of {model}: Llama-3.1-Instruct's files with the base's EOS {LLAMA_BASE_EOS} (chat template "
            "the Instruct one)"))
    raise UserError(f"rehearse: no offline tokenizer for {model!r}; give a local model folder with its tokenizer")
