"""4-bit GGUF: llama.cpp's own quantizer (Q4_K_M), or Q4_0 from the ``gguf`` package without llama.cpp.

Q4_K_M is what llama.cpp users ship, and only llama.cpp's ``llama_model_quantize``
writes it (from an f32 GGUF written by :func:`export_gguf`).  Either way the
4-bit file is checked in llama.cpp when it is installed
(:func:`~distill.students.export.checks.gguf_logits_check`, 4-bit tolerance)
before it is published.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from distill.students.export.checks import GGUF_LOGIT_TOLERANCE, gguf_logits_check
from distill.students.export.errors import ExportError
from distill.students.export.gguf_writer import export_gguf
from distill.students.export.staging import staging_dir

logger = logging.getLogger(__name__)

K_QUANT_BLOCK = 256  # llama.cpp k-quants (Q4_K, Q6_K ...) need rows that are a multiple of this

# GGML types that store 4 bits per weight (the share of weights in these is ``fraction_4bit``).
_FOUR_BIT_TYPES = {"Q4_K", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS"}


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python imports: it enables Q4_K_M and the in-llama.cpp load-back checks."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def export_gguf_4bit(model_dir: Path, out_dir: Path, *, prefer: str = "q4_k_m", check: bool = True) -> dict[str, Any]:
    """A 4-bit GGUF of ``model_dir``: Q4_K_M through llama.cpp's quantizer, else Q4_0 through ``gguf``.

    Q4_K_M is what llama.cpp users ship, and only llama.cpp's own
    ``llama_model_quantize`` writes it (from an f32 GGUF written here).  k-quants
    need rows of a multiple of 256 values; llama.cpp stores narrower tensors
    in its fallback types (Q5_0 for Q4_K, Q8_0 for Q6_K), which is what tiny
    models get -- the result records how many tensors fell back and why, and the
    share of weights actually stored in 4 bits.  Without llama-cpp-python the
    file is Q4_0 from the ``gguf`` package, with the reason recorded.
    With llama.cpp present the artifact is then checked in llama.cpp
    (:func:`gguf_logits_check`, 4-bit tolerance).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    have_llama = llama_cpp_available()
    reason = None
    if prefer == "q4_k_m" and not have_llama:
        reason = "llama-cpp-python is not installed: Q4_0 from the gguf package instead of Q4_K_M"
    qtype = "q4_k_m" if prefer == "q4_k_m" and have_llama else "q4_0"
    out_path = out_dir / f"model-{qtype}.gguf"
    tolerance = GGUF_LOGIT_TOLERANCE[qtype] if check and have_llama else None  # checked before it is published
    if qtype == "q4_k_m":
        info = _quantize_with_llama_cpp(model_dir, out_path, llama_cpp_tolerance=tolerance)
    else:
        info = export_gguf(model_dir, out_path, "q4_0", llama_cpp_tolerance=tolerance)
    storage = _four_bit_storage(out_path, qtype)
    return {
        **info,
        "path": str(out_path),
        "qtype": qtype,
        "size_bytes": out_path.stat().st_size,
        "tensor_types": storage["tensor_types"],
        "fraction_4bit": storage["fraction_4bit"],
        "fallback_tensors": storage["fallback_tensors"],
        "fallback_reason": storage["fallback_reason"] or reason,
        "quantizer": "llama.cpp llama_model_quantize" if qtype == "q4_k_m" else "gguf package",
    }


def _four_bit_storage(path: Path, qtype: str) -> dict[str, Any]:
    """How a 4-bit GGUF really stores its weights: types, share in 4 bits, and the k-quant fallbacks with why."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    try:
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        sizes = {t.name: int(t.n_elements) for t in reader.tensors}
        widths = {t.name: int(t.shape[0]) for t in reader.tensors}  # GGUF shapes are innermost-first
    finally:
        del reader
    matrices = [n for n in types if not n.endswith("_norm.weight") and types[n] not in ("F32",)]
    weights = sum(sizes[n] for n in matrices) or 1
    fallback = sorted(n for n in matrices if types[n] not in _FOUR_BIT_TYPES | {"Q6_K"})
    reason = None
    if qtype == "q4_k_m" and fallback:
        narrow = sorted({widths[n] for n in fallback if widths[n] % K_QUANT_BLOCK})
        reason = (f"{len(fallback)} of {len(matrices)} weight tensors have rows of {narrow} values, not a multiple "
                  f"of {K_QUANT_BLOCK} (k-quant block); llama.cpp stored them in its fallback types "
                  f"({', '.join(sorted({types[n] for n in fallback}))})")
        logger.warning("Q4_K_M: %s", reason)
    return {
        "tensor_types": types,
        "fraction_4bit": sum(sizes[n] for n in matrices if types[n] in _FOUR_BIT_TYPES) / weights,
        "fallback_tensors": fallback,
        "fallback_reason": reason,
    }


def _quantize_with_llama_cpp(model_dir: Path, out_path: Path,
                             llama_cpp_tolerance: float | None = None) -> dict[str, Any]:
    """f32 GGUF (:func:`export_gguf`) -> Q4_K_M with ``llama_cpp.llama_model_quantize``, published atomically
    (after :func:`gguf_logits_check` within ``llama_cpp_tolerance``, when given)."""
    import ctypes

    import llama_cpp

    with staging_dir(out_path) as staging:
        f32_path = staging / "model-f32.gguf"
        f32 = export_gguf(model_dir, f32_path, "f32")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
        params.nthread = 1
        quantized = staging / out_path.name
        rc = llama_cpp.llama_model_quantize(str(f32_path).encode(), str(quantized).encode(), ctypes.byref(params))
        if rc != 0 or not quantized.is_file():
            raise ExportError(f"llama.cpp's quantizer failed on {model_dir} (return code {rc})")
        checked = (None if llama_cpp_tolerance is None
                   else gguf_logits_check(quantized, model_dir, tolerance=llama_cpp_tolerance))
        os.replace(quantized, out_path)
    return {"full_size_bytes": f32["full_size_bytes"], "arch": f32["arch"], "tokenizer_pre": f32["tokenizer_pre"],
            "tensors": f32["tensors"], **({"llama_cpp_check": checked} if checked is not None else {})}
