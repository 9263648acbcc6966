"""The export stage: the trained student exported to 4-bit (bitsandbytes nf4, GGUF) and checked in its
consumer (transformers, llama.cpp) before anything is published."""

from __future__ import annotations

from typing import Any

from distill.stage import Context, StageBase, StageOutcome
from distill.store import write_json_atomic


class ExportStage(StageBase):
    name = "export"
    section = "export"
    version = "3"  # 3: llama3 RoPE (rope_freqs), BOS from the tokenizer, tensor-by-tensor GGUF, export.fidelity
    upstream = ("train",)

    def run(self, ctx: Context) -> StageOutcome:
        from distill.students.export import (GGUF_LOGIT_TOLERANCE, export_gguf, export_gguf_4bit, export_int8,
                                             export_nf4, llama_cpp_available)

        cfg = ctx.config.export
        # export.fidelity report (random weights): every figure measured and recorded, none held to its bar
        enforce = cfg.fidelity == "enforce"
        model_dir = ctx.store.stage_dir("train") / "model"
        out = ctx.out("export")
        counts: dict[str, Any] = {}
        parts = []
        if cfg.nf4:
            counts["nf4"] = info = export_nf4(model_dir, out / "nf4", enforce=enforce)
            parts.append(f"nf4 {info['size_bytes'] / 1e6:.2f} MB")
        if cfg.int8:
            counts["int8"] = info = export_int8(model_dir, out / "int8", enforce=enforce)
            parts.append(f"int8 {info['size_bytes'] / 1e6:.2f} MB")
        if cfg.gguf:
            # Loaded back in its consumer before it is published: tokens exact, logits within the type's tolerance.
            tolerance = GGUF_LOGIT_TOLERANCE[cfg.gguf_type] if llama_cpp_available() else None
            counts["gguf"] = info = export_gguf(model_dir, out / "gguf" / f"model-{cfg.gguf_type}.gguf",
                                                cfg.gguf_type, llama_cpp_tolerance=tolerance, enforce=enforce)
            parts.append(f"gguf {cfg.gguf_type} {info['size_bytes'] / 1e6:.2f} MB")
        if cfg.gguf_4bit:
            counts["gguf_4bit"] = info = export_gguf_4bit(model_dir, out / "gguf", prefer=cfg.gguf_4bit,
                                                          enforce=enforce)
            parts.append(f"gguf {info['qtype']} {info['size_bytes'] / 1e6:.2f} MB"
                         + (" (k-quant fallback on narrow rows)" if info.get("fallback_tensors") else ""))
        write_json_atomic(out / "export.json", counts)
        return StageOutcome(counts, ", ".join(parts) or "nothing to export")


EXPORT = ExportStage()
