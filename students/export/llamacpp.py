"""4-bit GGUF: llama.cpp's own quantizer (Q4_K_M), or Q4_0 from the ``gguf`` package without llama.cpp.

Q4_K_M is what llama.cpp users ship, and only llama.cpp's ``llama_model_quantize``
writes it, from a 16-bit GGUF written by :func:`export_gguf` (bf16 for a bf16
checkpoint, else f16: what llama.cpp's converter calls ``auto``), never a full
float32 file.  Either way the
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

QUANTIZE_BUFFER_BYTES = 64 * 2**20  # float32 rows llama.cpp's quantizer holds at once (its default: 8 GiB)
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


def export_gguf_4bit(model_dir: Path, out_dir: Path, *, prefer: str = "q4_k_m", enforce: bool = True) -> dict[str, Any]:
    """A 4-bit GGUF of ``model_dir``: Q4_K_M through llama.cpp's quantizer, else Q4_0 through ``gguf``.

    Q4_K_M is what llama.cpp users ship, and only llama.cpp's own
    ``llama_model_quantize`` writes it (from a 16-bit GGUF written here, see
    :func:`intermediate_qtype`).  k-quants
    need rows of a multiple of 256 values; llama.cpp stores narrower tensors
    in its fallback types (Q5_0 for Q4_K, Q8_0 for Q6_K), which is what tiny
    models get -- the result records how many tensors fell back and why, and the
    share of weights actually stored in 4 bits.  Without llama-cpp-python the
    file is Q4_0 from the ``gguf`` package, with the reason recorded.
    With llama.cpp present the artifact is then checked in llama.cpp
    (:func:`gguf_logits_check`, 4-bit tolerance; ``enforce=False`` measures without refusing on the gap).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    have_llama = llama_cpp_available()
    reason = None
    if prefer == "q4_k_m" and not have_llama:
        reason = "llama-cpp-python is not installed: Q4_0 from the gguf package instead of Q4_K_M"
    qtype = "q4_k_m" if prefer == "q4_k_m" and have_llama else "q4_0"
    out_path = out_dir / f"model-{qtype}.gguf"
    tolerance = GGUF_LOGIT_TOLERANCE[qtype] if have_llama else None  # checked before it is published
    if qtype == "q4_k_m":
        info = _quantize_with_llama_cpp(model_dir, out_path, llama_cpp_tolerance=tolerance, enforce=enforce)
    else:
        info = export_gguf(model_dir, out_path, "q4_0", llama_cpp_tolerance=tolerance, enforce=enforce)
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


def intermediate_qtype(model_dir: Path) -> str:
    """The GGUF type Q4_K_M is quantised from: ``bf16`` for a bf16 checkpoint, else ``f16``.

    llama.cpp's converter picks the same ("auto": the highest-fidelity 16-bit
    type); it halves the scratch file and the quantizer's reads against f32,
    and loses nothing a 4-bit result would keep.
    """
    from safetensors import safe_open

    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():
                if fh.get_slice(name).get_dtype() in ("BF16", "bfloat16"):
                    return "bf16"
                return "f16"
    raise ExportError(f"no *.safetensors weights in {model_dir}")


def llama_cpp_quantize(source_path: Path, out_path: Path, ftype: str = "Q4_K_M") -> None:
    """``llama_cpp.llama_model_quantize`` of a 16-bit GGUF into ``out_path`` (one thread).

    By default llama.cpp converts each tensor whole to float32 before quantising
    it (up to 8 GiB of rows at once): on a 1.5B Qwen that is the 0.93 GB
    embedding, a third of the bf16 checkpoint.  ``max_buf_size`` (the library's
    own bound, :data:`QUANTIZE_BUFFER_BYTES`) makes it work through a tensor a
    block of rows at a time instead; the result is the same file.  The 16-bit
    input is memory-mapped by llama.cpp (no option turns that off); those pages
    are file-backed page cache, reported apart by ``bench/export_memory.py``.
    """
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = 1
    if hasattr(params, "max_buf_size"):  # llama-cpp-python >= 0.3.3x; older ones hold each tensor whole
        params.max_buf_size = QUANTIZE_BUFFER_BYTES
    rc = llama_cpp.llama_model_quantize(str(source_path).encode(), str(out_path).encode(), ctypes.byref(params))
    if rc != 0 or not Path(out_path).is_file():
        raise ExportError(f"llama.cpp's quantizer failed on {source_path} (return code {rc})")


def _quantize_with_llama_cpp(model_dir: Path, out_path: Path,
                             llama_cpp_tolerance: float | None = None, enforce: bool = True) -> dict[str, Any]:
    """16-bit GGUF (:func:`export_gguf`) -> Q4_K_M with ``llama_cpp.llama_model_quantize``, published atomically
    (after :func:`gguf_logits_check` within ``llama_cpp_tolerance``, when given)."""
    with staging_dir(out_path) as staging:
        source_type = intermediate_qtype(model_dir)
        source_path = staging / f"model-{source_type}.gguf"
        source = export_gguf(model_dir, source_path, source_type)
        quantized = staging / out_path.name
        try:
            llama_cpp_quantize(source_path, quantized)
        finally:
            source_path.unlink()  # the scratch file goes before the check loads the model
        checked = (None if llama_cpp_tolerance is None
                   else gguf_logits_check(quantized, model_dir, tolerance=llama_cpp_tolerance, enforce=enforce))
        os.replace(quantized, out_path)
    return {"full_size_bytes": source["full_size_bytes"], "arch": source["arch"],
            "tokenizer_pre": source["tokenizer_pre"], "tensors": source["tensors"], "intermediate": source_type,
            **({"llama_cpp_check": checked} if checked is not None else {})}
