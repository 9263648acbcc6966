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

logger = logging.getLogger(__name__)

# HF architecture -> gguf.MODEL_ARCH member (llama.cpp arch string via gguf.MODEL_ARCH_NAMES)
_GGUF_ARCHES = {
    "Qwen2ForCausalLM": "QWEN2",
    "LlamaForCausalLM": "LLAMA",
}

# export_gguf's qtype -> (gguf.GGMLQuantizationType member, gguf.LlamaFileType member)
_QTYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}


def supported_gguf_qtypes() -> list[str]:
    """The ``qtype`` values :func:`export_gguf` accepts with the installed ``gguf`` package.

    ``f32``/``f16`` are plain numpy casts; quantised types need a numpy
    quantiser in ``gguf.quants`` (Q8_0 and Q4_0 have one in gguf >= 0.10).
    """
    import gguf

    out = []
    for name, (ggml_name, _) in _QTYPES.items():
        qt = gguf.GGMLQuantizationType[ggml_name]
        if name in ("f32", "f16"):
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


def _rope_theta(config: dict[str, Any]) -> float:
    """rope base from a config.json, old (``rope_theta``) or transformers-5 (``rope_parameters``) layout.

    Scaled rope (llama3, yarn, linear, ...) needs extra GGUF keys and tensors this
    exporter does not write, so it is refused rather than exported wrongly.
    """
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise ExportError(f"rope type {rope_type!r} is not supported by this GGUF exporter")
    theta = config.get("rope_theta", params.get("rope_theta"))
    return float(theta) if theta is not None else 10000.0


@dataclass(frozen=True)
class GgufTarget:
    """A checkpoint's ``config.json`` read as a GGUF writer needs it: llama.cpp arch and hyper-parameters."""

    config: dict[str, Any]
    hf_arch: str
    model_arch: Any  # gguf.MODEL_ARCH member
    rope_theta: float

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
    """Read ``model_dir/config.json``; raise unless it is an unquantised Qwen2 / Llama with plain rope."""
    import gguf

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        # e.g. an nf4 export: its safetensors hold packed uint8, not weights GGUF can re-quantise.
        raise ExportError(f"{model_dir} is already quantised; export GGUF from the fp32/bf16 checkpoint")
    architectures = config.get("architectures") or []
    hf_arch = next((a for a in architectures if a in _GGUF_ARCHES), None)
    if hf_arch is None:
        raise ExportError(f"GGUF export supports {sorted(_GGUF_ARCHES)}, not {architectures}")
    target = GgufTarget(config, hf_arch, gguf.MODEL_ARCH[_GGUF_ARCHES[hf_arch]], _rope_theta(config))
    _ = (target.n_layers, target.head_dim, target.n_head_kv, target.vocab_size)  # missing keys fail here, early
    return target


def read_state_dict(model_dir: Path) -> dict[str, np.ndarray]:
    """All tensors of the safetensors checkpoint(s) in ``model_dir`` as float32 numpy arrays."""
    import torch
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ExportError(f"no *.safetensors weights in {model_dir}")
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():
                tensors[name] = fh.get_tensor(name).to(torch.float32).numpy()
    return tensors


def _tensor_qtype(gguf_name: str, data: np.ndarray, wanted):
    """The GGML type one tensor is stored as, as convert_hf_to_gguf chooses it.

    1-D tensors (norms, biases) and norm weights stay F32; a quantised type
    needs rows (the last numpy axis) divisible by its block size, otherwise the
    tensor falls back to F16.
    """
    import gguf

    T = gguf.GGMLQuantizationType
    if data.ndim <= 1 or gguf_name.endswith("_norm.weight"):
        return T.F32
    if wanted in (T.F32, T.F16):
        return wanted
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    if data.shape[-1] % block != 0:
        logger.warning("%s: row length %d not divisible by %d, storing F16", gguf_name, data.shape[-1], block)
        return T.F16
    return wanted


def plan_tensors(state: dict[str, np.ndarray], target: GgufTarget,
                 wanted) -> tuple[list[tuple[str, np.ndarray, Any]], dict[str, np.ndarray]]:
    """Map, permute and type every tensor before the file is opened.

    Returns ``(gguf_name, float32 data, GGML type)`` in checkpoint order, and
    the data by GGUF name (what the read-back check compares against).
    ``lm_head`` is left out for tied embeddings: llama.cpp falls back to ``token_embd``.
    """
    import gguf

    name_map = gguf.get_tensor_name_map(target.model_arch, target.n_layers)
    planned: list[tuple[str, np.ndarray, Any]] = []
    originals: dict[str, np.ndarray] = {}
    for hf_name, data in state.items():
        if hf_name.endswith(("rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")):
            continue
        if target.tied and hf_name == "lm_head.weight":
            continue
        if target.is_llama and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = llama_permute(data, target.n_head, target.n_head)
        elif target.is_llama and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = llama_permute(data, target.n_head, target.n_head_kv)
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"no GGUF name for tensor {hf_name!r} of {target.hf_arch}")
        data = np.ascontiguousarray(data, dtype=np.float32)
        planned.append((gguf_name, data, _tensor_qtype(gguf_name, data, wanted)))
        originals[gguf_name] = data
    if "token_embd.weight" not in originals:
        raise ExportError("checkpoint has no token embedding")
    return planned, originals
