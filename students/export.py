"""Export a trained student for deployment: bitsandbytes NF4 and GGUF (llama.cpp / Ollama).

Every export is written beside its destination first and only renamed into
place once it is complete *and* has passed a read-back check, so a crash or a
failed check never leaves a half-written or broken artefact at the final path
(a later stage, or a user, would otherwise happily load it).

* :func:`export_nf4` quantises the fp32 Hugging Face checkpoint to 4-bit NF4
  with bitsandbytes, saves it with its tokenizer, reloads the saved copy with
  ``AutoModelForCausalLM.from_pretrained`` and compares its logits with the
  fp32 model.  Tiny models quantise badly, so the top-1 agreement tolerance is
  a parameter rather than a constant.
* :func:`export_gguf` writes a GGUF file the way llama.cpp's
  ``convert_hf_to_gguf.py`` does for ``qwen2`` and ``llama`` (same metadata
  keys, tensor names, Llama q/k permutation, tokenizer metadata), then reads it
  back with :class:`gguf.GGUFReader` to check it.
* :func:`write_ollama_modelfile` writes a small Ollama ``Modelfile`` for a
  ChatML GGUF.
* :func:`gguf_logits_check` (needs ``llama-cpp-python``, optional) runs the
  GGUF in llama.cpp itself and compares tokenization and logits with the HF
  model -- the only check that proves llama.cpp reads the file as we meant.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An export could not be written, reloaded, or failed its read-back check."""


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


# ---------------------------------------------------------------------------
# small filesystem helpers


def _weights_size(directory: Path) -> int:
    """Bytes of the safetensors weight files in ``directory`` (the part quantisation shrinks)."""
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


def _publish_dir(staging: Path, out_dir: Path) -> None:
    """Move a finished staging directory to ``out_dir``, replacing an older export there.

    ``out_dir`` is never a mix of old and new files: the old export is renamed
    aside, the new one renamed in, and only then is the old one deleted (it is
    put back if the second rename fails).
    """
    backup: Path | None = None
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir} exists and is not a directory")
        backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        backup.rmdir()
        os.replace(out_dir, backup)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if backup is not None:
            os.replace(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


# ---------------------------------------------------------------------------
# NF4 (bitsandbytes)


def _check_tokenizer_roundtrip(source_tok, exported_tok, texts: Iterable[str]) -> bool:
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


def _compare_logits(reference, candidate, tokenizer, prompts: list[str]) -> dict[str, float]:
    """Logit distance between two models on ``prompts`` (every position, not just the last)."""
    import torch

    max_diff = 0.0
    abs_sum = 0.0
    n_values = 0
    agree = 0
    positions = 0
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            if not ids:
                continue
            input_ids = torch.tensor([ids], dtype=torch.long)
            ref = reference(input_ids=input_ids).logits.float()[0]
            cand = candidate(input_ids=input_ids).logits.float()[0]
            diff = (ref - cand).abs()
            max_diff = max(max_diff, float(diff.max()))
            abs_sum += float(diff.sum())
            n_values += diff.numel()
            agree += int((ref.argmax(-1) == cand.argmax(-1)).sum())
            positions += ref.shape[0]
    if positions == 0:
        raise ExportError("no check prompt produced any tokens")
    return {
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": abs_sum / n_values,
        "top1_agreement": agree / positions,
        "positions": positions,
    }


def export_nf4(
    model_dir: Path,
    out_dir: Path,
    check_prompts: list[str] | None = None,
    *,
    min_top1_agreement: float = 0.5,
) -> dict[str, Any]:
    """bitsandbytes NF4 (4-bit); see :func:`export_bnb`."""
    return export_bnb(model_dir, out_dir, check_prompts, bits=4, min_top1_agreement=min_top1_agreement)


def export_int8(
    model_dir: Path,
    out_dir: Path,
    check_prompts: list[str] | None = None,
    *,
    min_top1_agreement: float = 0.9,
) -> dict[str, Any]:
    """bitsandbytes LLM.int8 (8-bit); see :func:`export_bnb`.  8 bits lose little, so the bar is higher."""
    return export_bnb(model_dir, out_dir, check_prompts, bits=8, min_top1_agreement=min_top1_agreement)


def export_bnb(
    model_dir: Path,
    out_dir: Path,
    check_prompts: list[str] | None = None,
    *,
    bits: int = 4,
    min_top1_agreement: float = 0.5,
) -> dict[str, Any]:
    """Quantise the fp32 checkpoint in ``model_dir`` with bitsandbytes (NF4 or int8) and save it to ``out_dir``.

    The export is staged in a sibling temporary directory, reloaded from there
    with ``AutoModelForCausalLM.from_pretrained`` (so what is checked is what
    was written, quantisation config included) and only then renamed to
    ``out_dir``.  Checks: the saved tokenizer encodes/decodes fixed texts
    exactly like the source one and keeps the chat template; logits on
    ``check_prompts`` against the fp32 model give ``max_abs_logit_diff`` and
    ``top1_agreement`` (fraction of positions whose argmax agrees).  Raises
    :class:`ExportError` if the reload fails or ``top1_agreement`` is below
    ``min_top1_agreement`` (default 0.5: tiny random models lose a lot to 4 bits).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    model_dir = Path(model_dir)
    out_dir = Path(out_dir)
    prompts = list(check_prompts) if check_prompts else list(DEFAULT_CHECK_PROMPTS)
    full_size = _weights_size(model_dir)
    if full_size == 0:
        raise ExportError(f"no *.safetensors weights in {model_dir}")

    if bits == 4:
        bnb_config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float32,
        )
    elif bits == 8:
        bnb_config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ExportError(f"bitsandbytes exports are 4- or 8-bit, not {bits}")
    kind, layer_type = ("nf4", "Linear4bit") if bits == 4 else ("int8", "Linear8bitLt")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    logger.info("quantising %s to %s", model_dir, kind)
    quantized = AutoModelForCausalLM.from_pretrained(
        str(model_dir), quantization_config=bnb_config, device_map="cpu", dtype=torch.float32
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        quantized.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        del quantized

        try:
            reloaded = AutoModelForCausalLM.from_pretrained(str(staging), device_map="cpu")
            reloaded_tok = AutoTokenizer.from_pretrained(str(staging))
        except Exception as exc:  # any loader failure means the export is unusable
            raise ExportError(f"{kind} export in {staging} does not reload: {exc}") from exc
        reloaded.eval()
        n_4bit = sum(1 for m in reloaded.modules() if type(m).__name__ == layer_type)
        if n_4bit == 0:
            raise ExportError(f"reloaded {kind} export has no {layer_type} layers; quantisation was lost")

        lossless = _check_tokenizer_roundtrip(tokenizer, reloaded_tok, TOKENIZER_CHECK_TEXTS)

        reference = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        reference.eval()
        stats = _compare_logits(reference, reloaded, tokenizer, prompts)
        del reference, reloaded
        logger.info(
            "%s check: top1 agreement %.3f, max |logit diff| %.4f over %d positions",
            kind,
            stats["top1_agreement"],
            stats["max_abs_logit_diff"],
            stats["positions"],
        )
        if stats["top1_agreement"] < min_top1_agreement:
            raise ExportError(
                f"{kind} export agrees with the fp32 model on only {stats['top1_agreement']:.3f} of "
                f"{stats['positions']} positions (tolerance {min_top1_agreement}); "
                f"max |logit diff| {stats['max_abs_logit_diff']:.4f}"
            )
        size = _weights_size(staging)
        _publish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    result = {
        "path": str(out_dir),
        "size_bytes": size,
        "full_size_bytes": full_size,
        "quantized_linear_layers": n_4bit,
        "bits": bits,
        "tokenizer_lossless": lossless,
        "min_top1_agreement": min_top1_agreement,
        **stats,
    }
    logger.info("wrote %s export %s (%d bytes, fp32 %d bytes)", kind, out_dir, size, full_size)
    return result


# ---------------------------------------------------------------------------
# GGUF

# HF architecture -> gguf.MODEL_ARCH member (llama.cpp arch string via gguf.MODEL_ARCH_NAMES)
_GGUF_ARCHES = {
    "Qwen2ForCausalLM": "QWEN2",
    "LlamaForCausalLM": "LLAMA",
}

_QTYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}

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


def _detect_tokenizer_pre(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json, from its Split regex.

    convert_hf_to_gguf hashes a tokenization of a probe string instead; the
    regex is what that hash stands for, and it needs no table of hashes.
    Unknown regexes fall back to ``qwen2`` with a warning.
    """
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Split":
                pattern = node.get("pattern", {})
                if isinstance(pattern, dict) and "Regex" in pattern:
                    patterns.append(pattern["Regex"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    pre = tokenizer_json.get("pre_tokenizer")
    walk(pre)
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


def gguf_vocab(model_dir: Path, vocab_size: int) -> dict[str, Any]:
    """Tokenizer metadata for a byte-level BPE tokenizer, as convert_hf_to_gguf's ``_set_vocab_gpt2`` builds it.

    Tokens are ordered by id and padded with ``[PAD{i}]`` (UNUSED) up to the
    model's ``vocab_size``; special added tokens (or ones that look like
    ``<|...|>``) are CONTROL, other added tokens USER_DEFINED, the rest NORMAL.
    """
    import gguf
    from transformers import AutoTokenizer

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

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
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

    special: dict[str, int] = {}
    for name in ("bos", "eos", "pad", "unk"):
        idx = getattr(tokenizer, f"{name}_token_id", None)
        if idx is not None:
            special[name] = int(idx)
    return {
        "pre": _detect_tokenizer_pre(tokenizer_json),
        "tokens": tokens,
        "token_types": types,
        "merges": _merges_as_strings(tj_model.get("merges", [])),
        "special_ids": special,
        "chat_template": tokenizer.chat_template,
    }


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


def _read_state_dict(model_dir: Path) -> dict[str, np.ndarray]:
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


def _gguf_field(reader, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _embedding_tolerance(qtype, original: np.ndarray) -> float:
    """Largest acceptable |dequantised - original| for a tensor stored as ``qtype``."""
    import gguf

    T = gguf.GGMLQuantizationType
    scale = float(np.abs(original).max()) if original.size else 0.0
    if qtype == T.F32:
        return 0.0
    if qtype == T.F16:
        return scale * 1e-3 + 1e-7
    if qtype == T.Q8_0:
        return scale / 127.0 + scale * 1e-3 + 1e-7  # one step = twice the rounding error; covers fp16 scales
    if qtype == T.Q4_0:
        return scale / 8.0 + scale * 1e-3 + 1e-7  # clipping at +7 costs up to one full step
    return scale


def export_gguf(model_dir: Path, out_path: Path, qtype: str = "q8_0", *,
                llama_cpp_tolerance: float | None = None) -> dict[str, Any]:
    """Write ``model_dir`` (Qwen2ForCausalLM or LlamaForCausalLM, safetensors) as a llama.cpp GGUF file.

    Mirrors convert_hf_to_gguf.py: hyper-parameters under the arch prefix,
    tensor names from ``gguf.get_tensor_name_map``, Llama q/k rows permuted to
    GGML's rope layout, ``output.weight`` omitted for tied embeddings (llama.cpp
    falls back to ``token_embd``), 1-D tensors kept F32, and the tokenizer as a
    ``gpt2`` BPE vocab with merges, special ids and chat template.  ``qtype`` is
    one of :func:`supported_gguf_qtypes` (f32, f16, q8_0, q4_0).  The file is
    written to a temporary name, read back with ``gguf.GGUFReader`` (arch,
    tensor count and names, token count, and dequantised ``token_embd`` within
    the tolerance of its stored type) and only then renamed to ``out_path``.
    With ``llama_cpp_tolerance`` the temporary file is also loaded in llama.cpp
    (:func:`gguf_logits_check`) before the rename, so a file that fails it never
    reaches ``out_path``; the check's figures are returned as ``llama_cpp_check``.
    """
    import gguf

    model_dir = Path(model_dir)
    out_path = Path(out_path)
    if qtype not in _QTYPES:
        raise ExportError(f"qtype must be one of {sorted(_QTYPES)}, got {qtype!r}")
    if qtype not in supported_gguf_qtypes():
        raise ExportError(f"the installed gguf package cannot quantise to {qtype}")
    ggml_name, ftype_name = _QTYPES[qtype]
    wanted = gguf.GGMLQuantizationType[ggml_name]

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        # e.g. an nf4 export: its safetensors hold packed uint8, not weights GGUF can re-quantise.
        raise ExportError(f"{model_dir} is already quantised; export GGUF from the fp32/bf16 checkpoint")
    architectures = config.get("architectures") or []
    hf_arch = next((a for a in architectures if a in _GGUF_ARCHES), None)
    if hf_arch is None:
        raise ExportError(f"GGUF export supports {sorted(_GGUF_ARCHES)}, not {architectures}")
    model_arch = gguf.MODEL_ARCH[_GGUF_ARCHES[hf_arch]]
    arch = gguf.MODEL_ARCH_NAMES[model_arch]
    is_llama = model_arch == gguf.MODEL_ARCH.LLAMA

    n_layers = int(config["num_hidden_layers"])
    hidden = int(config["hidden_size"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    head_dim = config.get("head_dim") or hidden // n_head
    vocab_size = int(config["vocab_size"])
    tied = bool(config.get("tie_word_embeddings", False))
    rope_theta = _rope_theta(config)

    vocab = gguf_vocab(model_dir, vocab_size)
    state = _read_state_dict(model_dir)
    full_size = _weights_size(model_dir)
    name_map = gguf.get_tensor_name_map(model_arch, n_layers)

    # --- map, permute and type every tensor before opening the file
    planned: list[tuple[str, np.ndarray, Any]] = []
    originals: dict[str, np.ndarray] = {}
    for hf_name, data in state.items():
        if hf_name.endswith(("rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")):
            continue
        if tied and hf_name == "lm_head.weight":
            continue
        if is_llama and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = llama_permute(data, n_head, n_head)
        elif is_llama and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = llama_permute(data, n_head, n_head_kv)
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"no GGUF name for tensor {hf_name!r} of {hf_arch}")
        data = np.ascontiguousarray(data, dtype=np.float32)
        planned.append((gguf_name, data, _tensor_qtype(gguf_name, data, wanted)))
        originals[gguf_name] = data
    if "token_embd.weight" not in originals:
        raise ExportError("checkpoint has no token embedding")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(str(tmp_path), arch)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(model_dir.name)
        writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
        writer.add_embedding_length(hidden)
        writer.add_block_count(n_layers)
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head_kv)
        writer.add_rope_freq_base(rope_theta)
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
        if config.get("head_dim") is not None:
            writer.add_key_length(int(head_dim))
            writer.add_value_length(int(head_dim))
        if is_llama:
            writer.add_vocab_size(vocab_size)
            writer.add_rope_dimension_count(int(head_dim))
        writer.add_file_type(int(gguf.LlamaFileType[ftype_name]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

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
        writer.add_add_bos_token(False)
        if vocab["chat_template"]:
            writer.add_chat_template(vocab["chat_template"])

        stored_types: dict[str, Any] = {}
        for gguf_name, data, tensor_qtype in planned:
            try:
                packed = gguf.quants.quantize(data, tensor_qtype)
            except gguf.QuantError as exc:  # same fallback as convert_hf_to_gguf
                logger.warning("%s: %s; storing F16", gguf_name, exc)
                tensor_qtype = gguf.GGMLQuantizationType.F16
                packed = gguf.quants.quantize(data, tensor_qtype)
            stored_types[gguf_name] = tensor_qtype
            writer.add_tensor(gguf_name, packed, raw_dtype=tensor_qtype)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

        _verify_gguf(tmp_path, arch, originals, stored_types, len(vocab["tokens"]))
        checked = (None if llama_cpp_tolerance is None
                   else gguf_logits_check(tmp_path, model_dir, tolerance=llama_cpp_tolerance))
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise

    size = out_path.stat().st_size
    logger.info(
        "wrote %s GGUF %s (%d tensors, %d bytes, fp32 %d bytes)", qtype, out_path, len(planned), size, full_size
    )
    return {
        "path": str(out_path),
        "qtype": qtype,
        "size_bytes": size,
        "full_size_bytes": full_size,
        "tensors": len(planned),
        "arch": arch,
        "tokenizer_pre": vocab["pre"],
        "tensor_types": {name: t.name for name, t in stored_types.items()},
        **({"llama_cpp_check": checked} if checked is not None else {}),
    }


def _verify_gguf(
    path: Path, arch: str, originals: dict[str, np.ndarray], stored_types: dict[str, Any], n_tokens: int
) -> None:
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
        if len(names) != len(originals) or set(names) != set(originals):
            raise ExportError(f"GGUF holds {len(names)} tensors, expected {len(originals)}")
        tokens = _gguf_field(reader, "tokenizer.ggml.tokens") or []
        if len(tokens) != n_tokens:
            raise ExportError(f"GGUF holds {len(tokens)} tokens, expected {n_tokens}")
        emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
        expected_type = stored_types["token_embd.weight"]
        if emb.tensor_type != expected_type:
            raise ExportError(f"token_embd stored as {emb.tensor_type.name}, expected {expected_type.name}")
        original = originals["token_embd.weight"]
        restored = gguf.quants.dequantize(np.asarray(emb.data), emb.tensor_type).reshape(original.shape)
        err = float(np.abs(restored - original).max())
        tol = _embedding_tolerance(emb.tensor_type, original)
        if not err <= tol:
            raise ExportError(f"dequantised token_embd differs by {err:.3g} (> {tol:.3g} for {emb.tensor_type.name})")
        logger.debug("GGUF check ok: %d tensors, token_embd max err %.3g", len(names), err)
    finally:
        del reader


# ---------------------------------------------------------------------------
# Ollama

# Ollama (Go template) form of the ChatML template the students are trained on.
CHATML_TEMPLATE_GO = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)


def write_ollama_modelfile(
    gguf_path: Path,
    out_path: Path,
    chat_template_go: str | None = None,
    *,
    stop: list[str] | None = None,
    temperature: float = 0.6,
    top_p: float = 0.95,
) -> Path:
    """Write an Ollama ``Modelfile`` for ``gguf_path`` so ``ollama create`` can import it.

    GGUF's chat template is Jinja, which Ollama does not run, so the template is
    given in Go-template form (ChatML by default) with ``<|im_end|>`` as stop.
    ``FROM`` is ``./<file>`` when the GGUF sits next to the Modelfile (the
    directory can then be moved as a whole), otherwise the absolute path.
    """
    gguf_path = Path(gguf_path)
    out_path = Path(out_path)
    template = chat_template_go if chat_template_go is not None else CHATML_TEMPLATE_GO
    stops = stop if stop is not None else ["<|im_end|>"]
    if '"""' in template:
        raise ValueError('chat template may not contain """ (Modelfile string delimiter)')
    if gguf_path.resolve().parent == out_path.resolve().parent:
        source = f"./{gguf_path.name}"
    else:
        source = str(gguf_path.resolve())
    lines = [f"FROM {source}", f'TEMPLATE """{template}"""']
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    lines += [f"PARAMETER temperature {temperature}", f"PARAMETER top_p {top_p}"]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out_path)
    logger.info("wrote Ollama Modelfile %s", out_path)
    return out_path


# ---------------------------------------------------------------------------
# llama.cpp check (optional dependency)


# Largest acceptable max |logit diff| between llama.cpp running the GGUF and the fp32
# transformers model, relative to the spread of the fp32 logits (max - min at a position,
# averaged over positions), per stored type.  Measured on tiny random Qwen2 (width 64 and 256),
# the toy teacher and a trained quickstart student: f32 <= 0.0013, f16 <= 0.0016,
# q8_0 <= 0.028, q4_0 <= 0.234, Q4_K_M <= 0.10.  The bounds are about 2-4x the worst measured:
# tight for f32/f16/q8_0, loose for the 4-bit types.
GGUF_LOGIT_TOLERANCE: dict[str, float] = {"f32": 0.005, "f16": 0.01, "q8_0": 0.06, "q4_0": 0.5, "q4_k_m": 0.4}


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
      at every position: ``max_abs_logit_diff``, ``relative_logit_diff`` (that,
      over the spread of the fp32 logits -- max minus min at a position, averaged
      -- so one bound fits small random and large trained models) and top-1
      agreement.  With ``tolerance``
      (relative; see :data:`GGUF_LOGIT_TOLERANCE`) a larger gap raises.
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
    per_prompt = []
    try:
        for text in texts:
            hf_ids = tokenizer.encode(text, add_special_tokens=False)
            cpp_ids = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
            if hf_ids != cpp_ids:
                raise ExportError(f"llama.cpp tokenizes {text!r} as {cpp_ids}, HF as {hf_ids}")
            back = llm.detokenize(cpp_ids, special=True).decode("utf-8", errors="replace")
            if back != tokenizer.decode(hf_ids, skip_special_tokens=False):
                raise ExportError(f"llama.cpp detokenizes {text!r} as {back!r}")
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
            n = min(cpp.shape[1], ref.shape[1])
            cpp, ref = cpp[:, :n], ref[:, :n]
            diff = float(np.abs(cpp - ref).max())
            scale = float((ref.max(axis=-1) - ref.min(axis=-1)).mean()) or 1.0
            per_prompt.append({"prompt": prompt, "tokens": len(ids), "max_abs_logit_diff": diff,
                               "relative_logit_diff": diff / scale,
                               "top1_agreement": float((cpp.argmax(-1) == ref.argmax(-1)).mean())})
    finally:
        llm.close()
    if not per_prompt:
        raise ExportError("no check prompt produced any tokens")
    result = {
        "tokenization_identical": True,
        "texts_checked": len(texts),
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


# ---------------------------------------------------------------------------
# 4-bit GGUF: llama.cpp's quantizer, or the gguf package without it

K_QUANT_BLOCK = 256  # llama.cpp k-quants (Q4_K, Q6_K ...) need rows that are a multiple of this


def llama_cpp_available() -> bool:
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
    import gguf

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
    reader = gguf.GGUFReader(str(out_path))
    try:
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        sizes = {t.name: int(t.n_elements) for t in reader.tensors}
        widths = {t.name: int(t.shape[0]) for t in reader.tensors}  # GGUF shapes are innermost-first
    finally:
        del reader
    four_bit = {"Q4_K", "Q4_0", "Q4_1", "IQ4_NL", "IQ4_XS"}
    matrices = [n for n in types if not n.endswith("_norm.weight") and types[n] not in ("F32",)]
    weights = sum(sizes[n] for n in matrices) or 1
    fallback = sorted(n for n in matrices if types[n] not in four_bit | {"Q6_K"})
    if qtype == "q4_k_m" and fallback:
        narrow = sorted({widths[n] for n in fallback if widths[n] % K_QUANT_BLOCK})
        reason = (f"{len(fallback)} of {len(matrices)} weight tensors have rows of {narrow} values, not a multiple "
                  f"of {K_QUANT_BLOCK} (k-quant block); llama.cpp stored them in its fallback types "
                  f"({', '.join(sorted({types[n] for n in fallback}))})")
        logger.warning("Q4_K_M: %s", reason)
    result = {
        **info,
        "path": str(out_path),
        "qtype": qtype,
        "size_bytes": out_path.stat().st_size,
        "tensor_types": types,
        "fraction_4bit": sum(sizes[n] for n in matrices if types[n] in four_bit) / weights,
        "fallback_tensors": fallback,
        "fallback_reason": reason,
        "quantizer": "llama.cpp llama_model_quantize" if qtype == "q4_k_m" else "gguf package",
    }
    return result


def _quantize_with_llama_cpp(model_dir: Path, out_path: Path,
                             llama_cpp_tolerance: float | None = None) -> dict[str, Any]:
    """f32 GGUF (this module's writer) -> Q4_K_M with ``llama_cpp.llama_model_quantize``, published atomically
    (after :func:`gguf_logits_check` within ``llama_cpp_tolerance``, when given)."""
    import ctypes

    import llama_cpp

    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.tmp-", dir=out_path.parent))
    try:
        f32 = export_gguf(model_dir, staging / "model-f32.gguf", "f32")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
        params.nthread = 1
        quantized = staging / out_path.name
        rc = llama_cpp.llama_model_quantize(str(staging / "model-f32.gguf").encode(), str(quantized).encode(),
                                            ctypes.byref(params))
        if rc != 0 or not quantized.is_file():
            raise ExportError(f"llama.cpp's quantizer failed on {model_dir} (return code {rc})")
        checked = (None if llama_cpp_tolerance is None
                   else gguf_logits_check(quantized, model_dir, tolerance=llama_cpp_tolerance))
        os.replace(quantized, out_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"full_size_bytes": f32["full_size_bytes"], "arch": f32["arch"], "tokenizer_pre": f32["tokenizer_pre"],
            "tensors": f32["tensors"], **({"llama_cpp_check": checked} if checked is not None else {})}
