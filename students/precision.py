"""Which floating-point precision a training run uses, decided once from the config and the hardware.

``student.dtype`` is ``auto | bf16 | fp16 | fp32``. ``auto`` means bf16 mixed precision on a
CUDA GPU that supports it (Ampere and newer: what every published R1-Distill reproduction
used), fp16 mixed precision on an older CUDA GPU, and fp32 on CPU.

An explicit ``bf16`` or ``fp16`` without a CUDA GPU is refused at the start of training
rather than silently downgraded: the user asked for a precision that changes the
numbers and the memory, and quietly training in fp32 would give a different model than
the config says (and take twice the memory). It is not a config-validation error,
because the same YAML is validated on a laptop and run on a GPU node. On CPU, bf16 is
also slow and, on some CPUs (AMX paths), crashes the process with SIGILL.

Weights are loaded in fp32 for full fine-tuning -- the trainer keeps fp32 master weights and
autocasts the compute to bf16/fp16, so AdamW updates are not rounded away -- and in the
compute dtype for LoRA/QLoRA, whose frozen base never receives updates.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("auto", "bf16", "fp16", "fp32")
TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class PrecisionError(ValueError):
    """The requested precision cannot run on this machine."""


@dataclass(frozen=True)
class Precision:
    """The resolved precision: compute dtype, how weights are loaded, and the TrainingArguments flags."""

    name: str  # bf16 | fp16 | fp32
    load_dtype: str  # torch dtype name the model weights are loaded in
    bf16: bool
    fp16: bool

    @property
    def compute_dtype(self) -> str:
        return TORCH_NAMES[self.name]

    def torch_dtype(self, which: str = "load"):
        import torch

        return getattr(torch, self.load_dtype if which == "load" else self.compute_dtype)


def resolve_precision(requested: str, method: str = "full", cuda: bool | None = None,
                      bf16_supported: bool | None = None) -> Precision:
    """Resolve ``student.dtype`` for ``method`` on this machine (``cuda``/``bf16_supported`` override
    the detection, for tests and for planning another machine)."""
    if requested not in DTYPES:
        raise PrecisionError(f"student.dtype: unknown precision {requested!r} (choose from {', '.join(DTYPES)})")
    if cuda is None or bf16_supported is None:
        detected_cuda, detected_bf16 = _detect()
        cuda = detected_cuda if cuda is None else cuda
        bf16_supported = detected_bf16 if bf16_supported is None else bf16_supported
    if requested == "auto":
        name = "fp32" if not cuda else ("bf16" if bf16_supported else "fp16")
    else:
        name = requested
    if name in ("bf16", "fp16") and not cuda:
        raise PrecisionError(
            f"student.dtype: {name} needs a CUDA GPU, and none is visible; on CPU use dtype: fp32 or auto "
            "(auto picks bf16 on a GPU and fp32 on CPU)")
    if name == "bf16" and not bf16_supported:
        raise PrecisionError("student.dtype: bf16 needs a GPU with bf16 support (Ampere or newer); "
                             "use dtype: fp16 or auto on this GPU")
    load = "float32" if method == "full" else TORCH_NAMES[name]
    return Precision(name=name, load_dtype=load, bf16=name == "bf16", fp16=name == "fp16")


def _detect() -> tuple[bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return cuda, bool(cuda and torch.cuda.is_bf16_supported())


ATTENTIONS = ("auto", "flash_attention_2", "sdpa", "eager")


def choose_attention(requested: str, precision: str, cuda: bool | None = None,
                     flash_installed: bool | None = None) -> str:
    """The attention kernel: ``auto`` is FlashAttention-2 on a CUDA GPU in bf16/fp16 when ``flash_attn``
    is installed (its varlen kernels make packed and padding-free batches cost only their real
    tokens), else PyTorch SDPA (transformers builds block-diagonal masks for packed rows)."""
    import importlib.util

    if requested not in ATTENTIONS:
        raise PrecisionError(f"student.attention: unknown kernel {requested!r} (choose from {', '.join(ATTENTIONS)})")
    if cuda is None:
        cuda = _detect()[0]
    if flash_installed is None:
        flash_installed = importlib.util.find_spec("flash_attn") is not None
    flash_ok = cuda and flash_installed and precision in ("bf16", "fp16")
    if requested == "flash_attention_2" and not flash_ok:
        raise PrecisionError("student.attention: flash_attention_2 needs a CUDA GPU, bf16/fp16 precision and "
                             "`pip install flash-attn`; use attention: auto or sdpa")
    if requested != "auto":
        return requested
    return "flash_attention_2" if flash_ok else "sdpa"
