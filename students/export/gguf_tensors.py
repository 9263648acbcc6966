"""Which checkpoints become GGUF and how their tensors are named, permuted and typed (as convert_hf_to_gguf does).

Everything here runs before the GGUF file is opened: the architecture and
hyper-parameters from ``config.json`` (:func:`read_gguf_target`), and every
tensor mapped to its GGUF name, permuted where llama.cpp's rope needs it and
given its stored type (:func:`plan_tensors`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.students.export.errors import ExportError
from distill.students.export.gguf_support import GGUF_ARCHES, gguf_unsupported_reason, rope_parameters

logger = logging.getLogger(__name__)

# export_gguf's qtype -> (gguf.GGMLQuantizationType member, gguf.LlamaFileType member)
_QTYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}


def supported_gguf_qtypes() -> list[str]:
    """The ``qtype`` values :func:`export_gguf` accepts with the installed ``gguf`` package.

    ``f32``/``f16``/``bf16`` are plain numpy casts; quantised types need a numpy
    quantiser in ``gguf.quants`` (Q8_0 and Q4_0 have one in gguf >= 0.10).
    """
    import gguf

    out = []
    for name, (ggml_name, _) in _QTYPES.items():
        qt = gguf.GGMLQuantizationType[ggml_name]
        if name in ("f32", "f16", "bf16"):
            out.append(name)
            continue
        try:
            gguf.quants.quantize(np.zeros((1, gguf.GGML_QUANT_SIZES[qt][0]), dtype=np.float32), qt)
        except Exception:  # noqa: BLE001 - any failure (NotImplementedError, QuantError) means unsupported
            continue
        out.append(name)
    return out


def resolve_qtype(qtype: str) -> tuple[Any, str]:
    """The GGML type wanted for ``qtype`` and the name of its ``gguf.LlamaFileType``; raise if unsupported."""
    import gguf

    if qtype not in _QTYPES:
        raise ExportError(f"qtype must be one of {sorted(_QTYPES)}, got {qtype!r}")
    if qtype not in supported_gguf_qtypes():
        raise ExportError(f"the installed gguf package cannot quantise to {qtype}")
    ggml_name, ftype_name = _QTYPES[qtype]
    return gguf.GGMLQuantizationType[ggml_name], ftype_name


def llama_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """``LlamaModel.permute`` from convert_hf_to_gguf: HF's rotate-half layout to GGML's interleaved rope.

    HF Llama checkpoints store each head's q/k rows as [first halves, second
    halves]; llama.cpp's ``llama`` arch applies rope to adjacent pairs, so rows
    are interleaved.  Qwen2 uses NEOX-style rope in llama.cpp and is not permuted.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


@dataclass(frozen=True)
class GgufTarget:
    """A checkpoint's ``config.json`` read as a GGUF writer needs it: llama.cpp arch and hyper-parameters."""

    config: dict[str, Any]
    hf_arch: str
    model_arch: Any  # gguf.MODEL_ARCH member
    rope_theta: float
    rope: dict[str, Any]  # gguf_support.rope_parameters: rope_type and its scaling keys

    @property
    def arch(self) -> str:
        """llama.cpp's arch string (``qwen2``, ``llama``), the GGUF key prefix."""
        import gguf

        return gguf.MODEL_ARCH_NAMES[self.model_arch]

    @property
    def is_llama(self) -> bool:
        import gguf

        return self.model_arch == gguf.MODEL_ARCH.LLAMA

    @property
    def n_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def n_head(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def n_head_kv(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.n_head)

    @property
    def head_dim(self):
        return self.config.get("head_dim") or self.hidden // self.n_head

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))


def read_gguf_target(model_dir: Path) -> GgufTarget:
    """Read ``model_dir/config.json``; raise with :func:`gguf_unsupported_reason`'s line when it cannot be converted."""
    import gguf

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    reason = gguf_unsupported_reason(config)
    if reason is not None:
        raise ExportError(f"{model_dir}: {reason}")
    rope = rope_parameters(config)
    theta = rope.get("rope_theta")
    hf_arch = next(a for a in config["architectures"] if a in GGUF_ARCHES)
    return GgufTarget(config, hf_arch, gguf.MODEL_ARCH[GGUF_ARCHES[hf_arch]],
                      float(theta) if theta is not None else 10000.0, rope)


def llama3_rope_factors(target: GgufTarget) -> np.ndarray:
    """The ``rope_freqs`` tensor llama.cpp reads for Llama-3.1/3.3 rope scaling (``rope_type: llama3``).

    Per rotary frequency ``1 / theta^(2i/d)``: 1 for wavelengths shorter than
    ``original_max_position_embeddings / high_freq_factor``, ``factor`` for ones
    longer than ``original / low_freq_factor``, and a smooth blend in between --
    the same rule as transformers' ``_compute_llama3_parameters`` and llama.cpp's
    ``LlamaModel.generate_extra_tensors``; llama.cpp divides each frequency by its factor.
    """
    rope = target.rope
    dim = int(target.head_dim)
    factor = float(rope["factor"])
    low, high = float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
    old_context = float(rope["original_max_position_embeddings"])
    freqs = 1.0 / (target.rope_theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    wavelen = 2 * np.pi / freqs.astype(np.float64)
    smooth = (old_context / wavelen - low) / (high - low)
    blended = 1.0 / ((1 - smooth) / factor + smooth)
    out = np.where(wavelen < old_context / high, 1.0, np.where(wavelen > old_context / low, factor, blended))
    return out.astype(np.float32)


def tensor_qtype(gguf_name: str, shape: tuple[int, ...], wanted):
    """The GGML type one tensor is stored as, as convert_hf_to_gguf chooses it.

    1-D tensors (norms, biases, rope_freqs) and norm weights stay F32; a
    quantised type needs rows (the last numpy axis) divisible by its block
    size, otherwise the tensor falls back to F16.
    """
    import gguf

    T = gguf.GGMLQuantizationType
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight"):
        return T.F32
    if wanted in (T.F32, T.F16, T.BF16):
        return wanted
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    if shape[-1] % block != 0:
        logger.warning("%s: row length %d not divisible by %d, storing F16", gguf_name, shape[-1], block)
        return T.F16
    return wanted


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor before any weight is read: where it comes from, its shape, type and rope permutation."""

    gguf_name: str
    shape: tuple[int, ...]  # numpy order (rows last)
    qtype: Any  # gguf.GGMLQuantizationType
    file: Path | None  # the safetensors file holding it; None for a generated tensor (rope_freqs)
    hf_name: str = ""
    permute_heads: int | None = None  # llama_permute(data, n_head, permute_heads) for llama q/k


def _skipped(hf_name: str, target: GgufTarget) -> bool:
    if hf_name.endswith(("rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")):
        return True
    return target.tied and hf_name == "lm_head.weight"  # llama.cpp falls back to token_embd


def plan_tensors(model_dir: Path, target: GgufTarget, wanted) -> list[PlannedTensor]:
    """Map, type and order every tensor from the safetensors headers alone (no weight is read here).

    ``lm_head`` is left out for tied embeddings; llama q/k get the rope
    permutation; a ``llama3`` rope adds the generated ``rope_freqs`` tensor
    first, as llama.cpp's converter does.
    """
    import gguf
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ExportError(f"no *.safetensors weights in {model_dir}")
    name_map = gguf.get_tensor_name_map(target.model_arch, target.n_layers)
    planned: list[PlannedTensor] = []
    if target.rope["rope_type"] == "llama3":
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        planned.append(PlannedTensor(name, (int(target.head_dim) // 2,), gguf.GGMLQuantizationType.F32, None))
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for hf_name in fh.keys():
                if _skipped(hf_name, target):
                    continue
                gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise ExportError(f"no GGUF name for tensor {hf_name!r} of {target.hf_arch}")
                shape = tuple(int(d) for d in fh.get_slice(hf_name).get_shape())
                heads = None
                if target.is_llama and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                    heads = target.n_head
                elif target.is_llama and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                    heads = target.n_head_kv
                planned.append(PlannedTensor(gguf_name, shape, tensor_qtype(gguf_name, shape, wanted), file,
                                             hf_name, heads))
    if not any(p.gguf_name == "token_embd.weight" for p in planned):
        raise ExportError("checkpoint has no token embedding")
    return planned
