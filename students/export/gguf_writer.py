"""Write a checkpoint as a llama.cpp GGUF file, read it back, and only then publish it.

Mirrors llama.cpp's ``convert_hf_to_gguf.py`` for ``qwen2`` and ``llama``: the
same metadata keys, tensor names, Llama q/k permutation and tokenizer metadata
(:mod:`.gguf_tensors`, :mod:`.gguf_tokenizer`).  The file is built in a staging
folder beside its destination, checked with :class:`gguf.GGUFReader` (and in
llama.cpp itself when asked) and renamed into place only when it passes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from distill.students.export.checks import gguf_logits_check
from distill.students.export.errors import ExportError
from distill.students.export.gguf_stream import SafetensorsSource, packed_layout
from distill.students.export.gguf_tensors import (GgufTarget, PlannedTensor, plan_tensors, read_gguf_target,
                                                  resolve_qtype)
from distill.students.export.gguf_tokenizer import gguf_vocab
from distill.students.export.staging import staging_dir, weights_size

logger = logging.getLogger(__name__)


def export_gguf(model_dir: Path, out_path: Path, qtype: str = "q8_0", *,
                llama_cpp_tolerance: float | None = None, enforce: bool = True) -> dict[str, Any]:
    """Write ``model_dir`` (Qwen2ForCausalLM or LlamaForCausalLM, safetensors) as a llama.cpp GGUF file.

    Mirrors convert_hf_to_gguf.py: hyper-parameters under the arch prefix,
    tensor names from ``gguf.get_tensor_name_map``, Llama q/k rows permuted to
    GGML's rope layout, a ``rope_freqs`` tensor for Llama-3.1 ``llama3`` rope
    scaling, ``output.weight`` omitted for tied embeddings (llama.cpp falls
    back to ``token_embd``), 1-D tensors kept F32, and the tokenizer as a
    ``gpt2`` BPE vocab with merges, special ids, BOS/EOS behaviour and chat
    template.  What cannot be converted is refused up front
    (:func:`~distill.students.export.gguf_support.gguf_unsupported_reason`).
    ``qtype`` is one of :func:`supported_gguf_qtypes` (f32, f16, bf16, q8_0, q4_0).

    Memory is bounded by the largest tensor, not the model: tensors are read
    from the safetensors files one at a time and packed in blocks of rows
    (:mod:`.gguf_stream`), and the file is streamed (tensor infos first, then
    each tensor's data).  The file is written to a staging folder, read back
    with ``gguf.GGUFReader`` (arch, tensor names, token count, and dequantised
    ``token_embd`` within the tolerance of its stored type) and only then
    renamed to ``out_path``.  With ``llama_cpp_tolerance`` the staged file is
    also loaded in llama.cpp (:func:`gguf_logits_check`) before the rename, so a
    file that fails it never reaches ``out_path``; the check's figures are
    returned as ``llama_cpp_check``.  ``enforce=False`` (``export.fidelity: report``) measures the logit gap
    without refusing the file for it (the tokenization must still match).
    """
    model_dir = Path(model_dir)
    out_path = Path(out_path)
    wanted, ftype_name = resolve_qtype(qtype)
    target = read_gguf_target(model_dir)
    vocab = gguf_vocab(model_dir, target.vocab_size)
    planned = plan_tensors(model_dir, target, wanted)
    full_size = weights_size(model_dir)

    with staging_dir(out_path) as staging:
        staged = staging / out_path.name
        with SafetensorsSource(target) as source:
            _write_gguf_file(staged, model_dir.name, target, vocab, planned, ftype_name, source)
            _verify_gguf(staged, target.arch, planned, len(vocab["tokens"]), source)
        checked = (None if llama_cpp_tolerance is None
                   else gguf_logits_check(staged, model_dir, tolerance=llama_cpp_tolerance, enforce=enforce))
        os.replace(staged, out_path)

    size = out_path.stat().st_size
    logger.info("wrote %s GGUF %s (%d tensors, %d bytes, checkpoint %d bytes)", qtype, out_path, len(planned), size,
                full_size)
    return {
        "path": str(out_path),
        "qtype": qtype,
        "size_bytes": size,
        "full_size_bytes": full_size,
        "tensors": len(planned),
        "arch": target.arch,
        "rope_type": target.rope["rope_type"],
        "tokenizer_pre": vocab["pre"],
        "add_bos_token": vocab["add_bos"],
        "tensor_types": {p.gguf_name: p.qtype.name for p in planned},
        **({"llama_cpp_check": checked} if checked is not None else {}),
    }


def _write_gguf_file(path: Path, name: str, target: GgufTarget, vocab: dict[str, Any],
                     planned: list[PlannedTensor], ftype_name: str, source: SafetensorsSource) -> None:
    """Stream metadata, tensor infos and then each tensor's packed data to ``path``, one tensor in memory at a time."""
    import gguf

    writer = gguf.GGUFWriter(str(path), target.arch)
    _add_hyperparameters(writer, name, target, ftype_name)
    _add_tokenizer(writer, vocab)
    for p in planned:
        shape, dtype, nbytes = packed_layout(p)
        writer.add_tensor_info(p.gguf_name, shape, dtype, nbytes, raw_dtype=p.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for p in planned:
        writer.write_tensor_data(source.streamed(p))
    writer.close()


def _add_hyperparameters(writer, name: str, target: GgufTarget, ftype_name: str) -> None:
    """The model keys convert_hf_to_gguf writes for qwen2 / llama, in its order."""
    import gguf

    config = target.config
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(target.hidden)
    writer.add_block_count(target.n_layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(target.n_head)
    writer.add_head_count_kv(target.n_head_kv)
    writer.add_rope_freq_base(target.rope_theta)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    if config.get("head_dim") is not None:
        writer.add_key_length(int(target.head_dim))
        writer.add_value_length(int(target.head_dim))
    if target.is_llama:
        writer.add_vocab_size(target.vocab_size)
        writer.add_rope_dimension_count(int(target.head_dim))
    writer.add_file_type(int(gguf.LlamaFileType[ftype_name]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tokenizer(writer, vocab: dict[str, Any]) -> None:
    """The ``gpt2`` BPE tokenizer keys (:func:`gguf_vocab`), with BOS/EOS added as the HF tokenizer adds them
    (Llama 3 prepends ``<|begin_of_text|>``; Qwen2.5 adds nothing)."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["token_types"])
    if vocab["merges"]:
        writer.add_token_merges(vocab["merges"])
    ids = vocab["special_ids"]
    if "bos" in ids:
        writer.add_bos_token_id(ids["bos"])
    if "eos" in ids:
        writer.add_eos_token_id(ids["eos"])
    if "pad" in ids:
        writer.add_pad_token_id(ids["pad"])
    if "unk" in ids:
        writer.add_unk_token_id(ids["unk"])
    writer.add_add_bos_token(vocab["add_bos"])
    writer.add_add_eos_token(vocab["add_eos"])
    if vocab["chat_template"]:
        writer.add_chat_template(vocab["chat_template"])


# ---------------------------------------------------------------------------
# read-back check


def _gguf_field(reader, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _embedding_tolerance(qtype, scale: float) -> float:
    """Largest acceptable |dequantised - original| for a tensor stored as ``qtype`` whose largest |value| is ``scale``."""
    import gguf

    T = gguf.GGMLQuantizationType
    if qtype == T.F32:
        return 0.0
    if qtype == T.F16:
        return scale * 1e-3 + 1e-7
    if qtype == T.BF16:
        return scale * 4e-3 + 1e-7  # 8 significant bits
    if qtype == T.Q8_0:
        return scale / 127.0 + scale * 1e-3 + 1e-7  # one step = twice the rounding error; covers fp16 scales
    if qtype == T.Q4_0:
        return scale / 8.0 + scale * 1e-3 + 1e-7  # clipping at +7 costs up to one full step
    return scale


def _verify_gguf(path: Path, arch: str, planned: list[PlannedTensor], n_tokens: int,
                 source: SafetensorsSource) -> None:
    """Read a freshly written GGUF back and raise :class:`ExportError` if it is not what was meant."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise ExportError(f"written GGUF {path} does not parse: {exc}") from exc
    try:
        got_arch = _gguf_field(reader, "general.architecture")
        if got_arch != arch:
            raise ExportError(f"GGUF architecture is {got_arch!r}, expected {arch!r}")
        names = [t.name for t in reader.tensors]
        if len(names) != len(planned) or set(names) != {p.gguf_name for p in planned}:
            raise ExportError(f"GGUF holds {len(names)} tensors, expected {len(planned)}")
        tokens = _gguf_field(reader, "tokenizer.ggml.tokens") or []
        if len(tokens) != n_tokens:
            raise ExportError(f"GGUF holds {len(tokens)} tokens, expected {n_tokens}")
        embedding = next(p for p in planned if p.gguf_name == "token_embd.weight")
        _verify_token_embedding(reader, embedding, source)
        logger.debug("GGUF check ok: %d tensors", len(names))
    finally:
        del reader


def _verify_token_embedding(reader, planned: PlannedTensor, source: SafetensorsSource) -> None:
    """Raise unless ``token_embd`` has its planned type and dequantises to within that type's tolerance.

    Compared a block of rows at a time against the checkpoint, so the check holds no full float32 copy.
    Rows are read from the file at the tensor's offset rather than through the reader's memory map.
    """
    import gguf

    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    if emb.tensor_type != planned.qtype:
        raise ExportError(f"token_embd stored as {emb.tensor_type.name}, expected {planned.qtype.name}")
    shape, dtype, _ = packed_layout(planned)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    offset = int(emb.data_offset)
    err = scale = 0.0
    for start, block in source.row_blocks(planned):
        # read from the file, not the reader's memory map, whose touched pages would stay resident
        raw = np.fromfile(reader.data.filename, dtype=dtype, count=block.shape[0] * row_bytes // dtype.itemsize,
                          offset=offset + start * row_bytes)
        restored = gguf.quants.dequantize(raw.reshape(block.shape[0], *shape[1:]), emb.tensor_type)
        err = max(err, float(np.abs(restored.reshape(block.shape) - block).max()))
        scale = max(scale, float(np.abs(block).max()))
    tol = _embedding_tolerance(emb.tensor_type, scale)
    if not err <= tol:
        raise ExportError(f"dequantised token_embd differs by {err:.3g} (> {tol:.3g} for {emb.tensor_type.name})")
    logger.debug("GGUF token_embd max err %.3g", err)
