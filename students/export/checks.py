"""Read-back checks every export runs before it is published: tokenizer round trip and logit agreement.

* :func:`check_tokenizer_roundtrip` -- the exported tokenizer encodes and
  decodes fixed texts exactly like the source one and keeps the chat template.
* :func:`logit_gap` -- the one logit comparison (every position, not just the
  last): the bitsandbytes exports compare their reloaded model with the fp32
  one's :func:`reference_logits` through :func:`pooled_gaps`, the GGUF exports compare llama.cpp with
  the fp32 transformers model through :func:`gguf_logits_check`.
* :func:`gguf_logits_check` (needs ``llama-cpp-python``, optional) runs the
  GGUF in llama.cpp itself -- the only check that proves llama.cpp reads the
  file as we meant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from distill.students.export.errors import ExportError

logger = logging.getLogger(__name__)

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
# q8_0 <= 0.028, q4_0 <= 0.234, Q4_K_M <= 0.10.  Real pretrained weights sit higher: SmolLM2-135M-Instruct
# (30 layers) after a LoRA merge measured q8_0 0.069 (tests/test_smollm2_e2e.py) -- the worst logit over the
# whole vocabulary grows with depth while top-1 agreement stays high.  The bounds are about 2x the worst
# measured: tight for f32/f16/q8_0, loose for the 4-bit types.
GGUF_LOGIT_TOLERANCE: dict[str, float] = {"f32": 0.005, "f16": 0.01, "q8_0": 0.14, "q4_0": 0.5, "q4_k_m": 0.4}


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


def reference_logits(model_dir: Path, id_lists: list[list[int]]) -> list[np.ndarray]:
    """The full-precision transformers model's logits (float32, every position) for each token id list.

    The model is loaded in float32 (bf16 matmuls may not run on a CPU), used
    and freed before this returns, so a check never holds it beside the export
    it is compared with (a llama.cpp model, a reloaded bitsandbytes model).
    """
    import gc

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    try:
        with torch.inference_mode():
            return [model(input_ids=torch.tensor([ids])).logits[0].float().numpy() for ids in id_lists]
    finally:
        del model
        gc.collect()


def check_prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each non-empty check prompt, with the special tokens the tokenizer adds (Llama 3's BOS)."""
    out = [tokenizer.encode(prompt, add_special_tokens=True) for prompt in prompts]
    out = [ids for ids in out if ids]
    if not out:
        raise ExportError("no check prompt produced any tokens")
    return out


def pooled_gaps(references: list[np.ndarray], candidates: list[np.ndarray]) -> dict[str, float]:
    """Logit distance between reference and candidate logits, pooled over every position of every prompt."""
    gaps = [logit_gap(ref, cand) for ref, cand in zip(references, candidates)]
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
    enforce: bool = True,
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
      :data:`GGUF_LOGIT_TOLERANCE`) a larger gap raises; with ``enforce=False`` (``export.fidelity:
      report``, random-weight models) it is logged and returned as ``over_tolerance``, not raised.
      Tokenization is held exact either way.
    """
    try:
        import llama_cpp
    except ImportError as exc:
        raise ExportError("gguf_logits_check needs llama-cpp-python (pip install llama-cpp-python)") from exc
    from transformers import AutoTokenizer

    texts = list(texts) if texts is not None else list(TOKENIZER_CHECK_TEXTS)
    prompts = list(prompts) if prompts is not None else list(DEFAULT_CHECK_PROMPTS)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = check_prompt_ids(tokenizer, prompts)
    if max(len(x) for x in ids) > n_ctx:
        raise ExportError(f"check prompt of {max(len(x) for x in ids)} tokens does not fit n_ctx={n_ctx}")
    references = reference_logits(model_dir, ids)  # computed and freed before llama.cpp loads the GGUF
    # logits_all: llama-cpp-python only keeps every position's logits in ``scores`` when it is set.
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads, logits_all=True, verbose=False)
    try:
        _check_llama_tokenization(llm, tokenizer, texts)
        per_prompt = []
        for prompt_ids, ref in zip(ids, references):
            llm.reset()
            llm.eval(prompt_ids)
            gap = logit_gap(ref, np.array(llm.scores[: len(prompt_ids)], dtype=np.float32))
            per_prompt.append({"tokens": len(prompt_ids), "max_abs_logit_diff": gap.max_abs_diff,
                               "relative_logit_diff": gap.relative_diff, "top1_agreement": gap.top1_agreement})
    finally:
        llm.close()
    return _summarise_llama_check(gguf_path, per_prompt, len(texts), tolerance, enforce)


def _check_llama_tokenization(llm, tokenizer, texts: list[str]) -> None:
    """Raise unless llama.cpp tokenizes and detokenizes every text exactly like the HF tokenizer.

    Both without and with special tokens: the second proves the GGUF's
    ``add_bos_token`` / ``add_eos_token`` match what the HF tokenizer adds.
    """
    for text in texts:
        for special in (False, True):
            hf_ids = tokenizer.encode(text, add_special_tokens=special)
            cpp_ids = list(llm.tokenize(text.encode("utf-8"), add_bos=special, special=True))
            if hf_ids != cpp_ids:
                raise ExportError(f"llama.cpp tokenizes {text!r} (add_special={special}) as {cpp_ids}, HF as {hf_ids}")
        hf_ids = tokenizer.encode(text, add_special_tokens=False)
        back = llm.detokenize(hf_ids, special=True).decode("utf-8", errors="replace")
        if back != tokenizer.decode(hf_ids, skip_special_tokens=False):
            raise ExportError(f"llama.cpp detokenizes {text!r} as {back!r}")


def _summarise_llama_check(gguf_path: Path, per_prompt: list[dict[str, Any]], texts_checked: int,
                           tolerance: float | None, enforce: bool = True) -> dict[str, Any]:
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
    result["over_tolerance"] = tolerance is not None and not result["relative_logit_diff"] <= tolerance
    result["fidelity_enforced"] = enforce
    if result["over_tolerance"] and not enforce:
        logger.warning("llama.cpp logits of %s differ from the fp32 model by %.3g (relative), over the tolerance "
                       "%s: reported, not enforced (export.fidelity: report)", gguf_path,
                       result["relative_logit_diff"], tolerance)
    elif result["over_tolerance"]:
        raise ExportError(f"llama.cpp logits of {gguf_path} differ from the fp32 model by "
                          f"{result['relative_logit_diff']:.3g} (relative; tolerance {tolerance})")
    return result
