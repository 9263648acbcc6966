"""Read-back checks every export runs before it is published: tokenizer round trip and logit agreement.

* :func:`check_tokenizer_roundtrip` -- the exported tokenizer encodes and
  decodes fixed texts exactly like the source one and keeps the chat template.
* :func:`logit_gap` -- the one logit comparison (every position, not just the
  last): the bitsandbytes exports compare their reloaded model with the fp32
  one through :func:`compare_models`, the GGUF exports compare llama.cpp with
  the fp32 transformers model through :func:`gguf_logits_check`.
* :func:`gguf_logits_check` (needs ``llama-cpp-python``, optional) runs the
  GGUF in llama.cpp itself -- the only check that proves llama.cpp reads the
  file as we meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from distill.students.export.errors import ExportError

# Texts whose tokenization must survive an export unchanged: ASCII, digits
# (split one by one by the Qwen2 regex), whitespace runs, non-ASCII, and the
# special / added tokens that chat formatting relies on.
TOKENIZER_CHECK_TEXTS: list[str] = [
    "What is 12 + 7? Please reason step by step.",
    "The answer is 19.\n\n  Indented line\twith a tab.",
    "naïve café — 東京 🙂 ",
    "<|im_start|>user\nWhat is 3 * 4?<|im_end|>\n<|im_start|>assistant\n<think>3 * 4 = 12</think>12<|im_end|>\n",
]

# Prompts whose logits are compared between the fp32 model and its export.
DEFAULT_CHECK_PROMPTS: list[str] = [
    "What is 12 + 7? Please reason step by step.",
    "<|im_start|>user\nWhat is 25 - 9?<|im_end|>\n<|im_start|>assistant\n<think>",
    "The answer is 42. Let me check: 40 + 2 = 42.",
]

# Largest acceptable max |logit diff| between llama.cpp running the GGUF and the fp32
# transformers model, relative to the spread of the fp32 logits (max - min at a position,
# averaged over positions), per stored type.  Measured on tiny random Qwen2 (width 64 and 256),
# the toy teacher and a trained quickstart student: f32 <= 0.0013, f16 <= 0.0016,
# q8_0 <= 0.028, q4_0 <= 0.234, Q4_K_M <= 0.10.  The bounds are about 2-4x the worst measured:
# tight for f32/f16/q8_0, loose for the 4-bit types.
GGUF_LOGIT_TOLERANCE: dict[str, float] = {"f32": 0.005, "f16": 0.01, "q8_0": 0.06, "q4_0": 0.5, "q4_k_m": 0.4}


def check_tokenizer_roundtrip(source_tok, exported_tok, texts: Iterable[str]) -> bool:
    """Raise unless the exported tokenizer encodes and decodes ``texts`` exactly like the source.

    Returns whether decoding is also lossless (``decode(encode(t)) == t``); that
    is reported, not enforced, because some tokenizers normalise text on purpose.
    """
    lossless = True
    for text in texts:
        src_ids = source_tok.encode(text, add_special_tokens=False)
        new_ids = exported_tok.encode(text, add_special_tokens=False)
        if src_ids != new_ids:
            raise ExportError(f"exported tokenizer encodes {text!r} as {new_ids}, source tokenizer as {src_ids}")
        src_text = source_tok.decode(src_ids, skip_special_tokens=False)
        new_text = exported_tok.decode(new_ids, skip_special_tokens=False)
        if src_text != new_text:
            raise ExportError(f"exported tokenizer decodes {text!r} as {new_text!r}, source as {src_text!r}")
        lossless = lossless and new_text == text
    if source_tok.chat_template != exported_tok.chat_template:
        raise ExportError("exported tokenizer lost or changed the chat template")
    return lossless


@dataclass(frozen=True)
class LogitGap:
    """How far a candidate's logits are from the reference's over one token sequence (every position)."""

    positions: int
    max_abs_diff: float
    sum_abs_diff: float
    n_values: int
    top1_matches: int  # positions whose argmax agrees
    reference_spread: float  # max minus min of the reference logits at a position, averaged over positions

    @property
    def top1_agreement(self) -> float:
        return self.top1_matches / self.positions

    @property
    def relative_diff(self) -> float:
        """``max_abs_diff`` over the reference spread, so one bound fits small random and large trained models."""
        return self.max_abs_diff / (self.reference_spread or 1.0)


def logit_gap(reference: np.ndarray, candidate: np.ndarray) -> LogitGap:
    """Compare two ``[positions, vocab]`` logit arrays; extra vocab columns of either side are ignored."""
    n = min(reference.shape[-1], candidate.shape[-1])
    ref = np.asarray(reference[:, :n], dtype=np.float32)
    cand = np.asarray(candidate[:, :n], dtype=np.float32)
    diff = np.abs(ref - cand)
    return LogitGap(
        positions=int(ref.shape[0]),
        max_abs_diff=float(diff.max()),
        sum_abs_diff=float(diff.sum()),
        n_values=int(diff.size),
        top1_matches=int((ref.argmax(-1) == cand.argmax(-1)).sum()),
        reference_spread=float((ref.max(axis=-1) - ref.min(axis=-1)).mean()),
    )


def compare_models(reference, candidate, tokenizer, prompts: list[str]) -> dict[str, float]:
    """Logit distance between two transformers models on ``prompts``, pooled over every position."""
    import torch

    gaps: list[LogitGap] = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            if not ids:
                continue
            input_ids = torch.tensor([ids], dtype=torch.long)
            ref = reference(input_ids=input_ids).logits.float()[0].numpy()
            cand = candidate(input_ids=input_ids).logits.float()[0].numpy()
            gaps.append(logit_gap(ref, cand))
    if not gaps:
        raise ExportError("no check prompt produced any tokens")
    positions = sum(g.positions for g in gaps)
    return {
        "max_abs_logit_diff": max(g.max_abs_diff for g in gaps),
        "mean_abs_logit_diff": sum(g.sum_abs_diff for g in gaps) / sum(g.n_values for g in gaps),
        "top1_agreement": sum(g.top1_matches for g in gaps) / positions,
        "positions": positions,
    }


# ---------------------------------------------------------------------------
# llama.cpp (optional dependency)


def gguf_logits_check(
    gguf_path: Path,
    model_dir: Path,
    texts: list[str] | None = None,
    prompts: list[str] | None = None,
    *,
    tolerance: float | None = None,
    n_ctx: int = 512,
    n_threads: int = 1,
) -> dict[str, Any]:
    """Load the GGUF in llama.cpp (llama-cpp-python) and compare it with the fp32 transformers model.

    * Tokenization of ``texts`` (default :data:`TOKENIZER_CHECK_TEXTS`) must be
      identical to the HF tokenizer's -- it proves the vocab, merges, token types
      and ``tokenizer.ggml.pre`` were written right -- and detokenizing must give
      the text back; raises :class:`ExportError` otherwise.
    * Logits on ``prompts`` (default :data:`DEFAULT_CHECK_PROMPTS`) are compared
      at every position (:func:`logit_gap`): ``max_abs_logit_diff``,
      ``relative_logit_diff`` (that, over the spread of the fp32 logits) and
      top-1 agreement.  With ``tolerance`` (relative; see
      :data:`GGUF_LOGIT_TOLERANCE`) a larger gap raises.
    """
    try:
        import llama_cpp
    except ImportError as exc:
        raise ExportError("gguf_logits_check needs llama-cpp-python (pip install llama-cpp-python)") from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = list(texts) if texts is not None else list(TOKENIZER_CHECK_TEXTS)
    prompts = list(prompts) if prompts is not None else list(DEFAULT_CHECK_PROMPTS)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    # logits_all: llama-cpp-python only keeps every position's logits in ``scores`` when it is set.
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads, logits_all=True, verbose=False)
    try:
        _check_llama_tokenization(llm, tokenizer, texts)
        per_prompt = _llama_prompt_gaps(llm, model, tokenizer, prompts, n_ctx)
    finally:
        llm.close()
    return _summarise_llama_check(gguf_path, per_prompt, len(texts), tolerance)


def _check_llama_tokenization(llm, tokenizer, texts: list[str]) -> None:
    """Raise unless llama.cpp tokenizes and detokenizes every text exactly like the HF tokenizer."""
    for text in texts:
        hf_ids = tokenizer.encode(text, add_special_tokens=False)
        cpp_ids = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if hf_ids != cpp_ids:
            raise ExportError(f"llama.cpp tokenizes {text!r} as {cpp_ids}, HF as {hf_ids}")
        back = llm.detokenize(cpp_ids, special=True).decode("utf-8", errors="replace")
        if back != tokenizer.decode(hf_ids, skip_special_tokens=False):
            raise ExportError(f"llama.cpp detokenizes {text!r} as {back!r}")


def _llama_prompt_gaps(llm, model, tokenizer, prompts: list[str], n_ctx: int) -> list[dict[str, Any]]:
    """Per prompt, llama.cpp's logits against the transformers model's (see :func:`logit_gap`)."""
    import torch

    per_prompt = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:
            continue
        if len(ids) > n_ctx:
            raise ExportError(f"check prompt of {len(ids)} tokens does not fit n_ctx={n_ctx}")
        llm.reset()
        llm.eval(ids)
        cpp = np.array(llm.scores[: len(ids)], dtype=np.float32)
        with torch.inference_mode():
            ref = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
        gap = logit_gap(ref, cpp)
        per_prompt.append({"prompt": prompt, "tokens": len(ids), "max_abs_logit_diff": gap.max_abs_diff,
                           "relative_logit_diff": gap.relative_diff, "top1_agreement": gap.top1_agreement})
    return per_prompt


def _summarise_llama_check(gguf_path: Path, per_prompt: list[dict[str, Any]], texts_checked: int,
                           tolerance: float | None) -> dict[str, Any]:
    """Pool the per-prompt figures (worst gap, token-weighted agreement); raise if over ``tolerance``."""
    if not per_prompt:
        raise ExportError("no check prompt produced any tokens")
    result = {
        "tokenization_identical": True,
        "texts_checked": texts_checked,
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in per_prompt),
        "relative_logit_diff": max(r["relative_logit_diff"] for r in per_prompt),
        "top1_agreement": sum(r["top1_agreement"] * r["tokens"] for r in per_prompt)
        / sum(r["tokens"] for r in per_prompt),
        "tolerance": tolerance,
        "prompts": per_prompt,
    }
    if tolerance is not None and not result["relative_logit_diff"] <= tolerance:
        raise ExportError(f"llama.cpp logits of {gguf_path} differ from the fp32 model by "
                          f"{result['relative_logit_diff']:.3g} (relative; tolerance {tolerance})")
    return result
