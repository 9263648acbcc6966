"""Export a trained student for deployment: bitsandbytes NF4 / int8 and GGUF (llama.cpp / Ollama).

Every export is written beside its destination first and only renamed into
place once it is complete *and* has passed a read-back check, so a crash or a
failed check never leaves a half-written or broken artefact at the final path
(a later stage, or a user, would otherwise happily load it); see :mod:`.staging`.

One module per format:

* :mod:`.bnb` -- :func:`export_nf4` / :func:`export_int8` quantise the fp32
  Hugging Face checkpoint with bitsandbytes, save it with its tokenizer, reload
  the saved copy and compare its logits with the fp32 model.
* :mod:`.gguf_writer` -- :func:`export_gguf` writes a GGUF file the way
  llama.cpp's ``convert_hf_to_gguf.py`` does for ``qwen2`` and ``llama``
  (:mod:`.gguf_support`: what can be converted, and why not -- also used by
  ``distill validate``; :mod:`.gguf_tensors`: tensor names, types, the Llama
  q/k permutation and Llama-3 ``rope_freqs``; :mod:`.gguf_stream`: tensor by
  tensor from the safetensors files; :mod:`.gguf_tokenizer`: tokenizer
  metadata, BOS/EOS as the tokenizer adds them), then reads it back.
* :mod:`.llamacpp` -- :func:`export_gguf_4bit`: Q4_K_M through llama.cpp's
  quantizer (from a bf16/f16 GGUF), or Q4_0 without it.
* :mod:`.ollama` -- :func:`write_ollama_modelfile` for a ChatML GGUF.
* :mod:`.checks` -- the read-back checks all of them share: tokenizer round
  trip, the one logit comparison, and :func:`gguf_logits_check`, which runs the
  GGUF in llama.cpp itself (needs ``llama-cpp-python``, optional).
"""

from __future__ import annotations

from distill.students.export.bnb import export_bnb, export_int8, export_nf4
from distill.students.export.checks import (DEFAULT_CHECK_PROMPTS, GGUF_LOGIT_TOLERANCE, TOKENIZER_CHECK_TEXTS,
                                            gguf_logits_check)
from distill.students.export.errors import ExportError
from distill.students.export.gguf_support import gguf_unsupported_reason
from distill.students.export.gguf_tensors import llama_permute, supported_gguf_qtypes
from distill.students.export.gguf_tokenizer import gguf_vocab
from distill.students.export.gguf_writer import export_gguf
from distill.students.export.llamacpp import K_QUANT_BLOCK, export_gguf_4bit, llama_cpp_available
from distill.students.export.ollama import CHATML_TEMPLATE_GO, write_ollama_modelfile

__all__ = [
    "CHATML_TEMPLATE_GO",
    "DEFAULT_CHECK_PROMPTS",
    "GGUF_LOGIT_TOLERANCE",
    "K_QUANT_BLOCK",
    "TOKENIZER_CHECK_TEXTS",
    "ExportError",
    "export_bnb",
    "export_gguf",
    "export_gguf_4bit",
    "export_int8",
    "export_nf4",
    "gguf_logits_check",
    "gguf_unsupported_reason",
    "gguf_vocab",
    "llama_cpp_available",
    "llama_permute",
    "supported_gguf_qtypes",
    "write_ollama_modelfile",
]
