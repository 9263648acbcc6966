"""An Ollama ``Modelfile`` for a ChatML GGUF, so ``ollama create`` can import the export."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from distill.store import write_bytes_atomic

logger = logging.getLogger(__name__)

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
    write_bytes_atomic(out_path, ("\n".join(lines) + "\n").encode("utf-8"))
    logger.info("wrote Ollama Modelfile %s", out_path)
    return out_path
