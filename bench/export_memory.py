"""Peak memory of the exports on a random-weight model of Qwen2.5-Math-1.5B's shape, as a multiple of its bf16 size.

Builds the published Qwen2.5-Math-1.5B config (1.54B parameters, tied embeddings, q/k/v biases) with
random bf16 weights, written shard by shard (one shard's tensors in memory at a time) with the real
Qwen2.5 tokenizer when ../shared is here (a toy tokenizer otherwise).  Each step then runs in a fresh
subprocess; three figures per step (see :func:`peak_rss`): the kernel's peak RSS (``os.wait4``), and the
peaks of anonymous (``RssAnon``) and file-backed (``RssFile``) pages sampled from ``/proc/<pid>/status``.
File-backed pages are mapped checkpoint/GGUF files: clean page cache the kernel reclaims under memory
pressure, so ``anon`` is what an export really needs; ``total`` is printed too and is what the target is
read against.

* ``gguf q8_0``: :func:`export_gguf` (tensor by tensor from the safetensors files);
* ``q4_k_m: bf16 write`` and ``q4_k_m: llama.cpp``: the two halves of Q4_K_M, apart -- our bf16 GGUF
  intermediate, then llama.cpp's quantizer alone on it (``llama_cpp_quantize``; torch is not imported);
* ``gguf q4_k_m``: both in one process, as the export runs them;
* ``nf4``: bitsandbytes quantising while transformers loads, then saving (:func:`quantize_and_save`);
* ``logit check``: the full-precision reference logits the checks compute (one float32 model, held alone).

What the figures showed (2 shared cores, llama-cpp-python 0.3.36, transformers 5.19, bitsandbytes 0.50):

* llama.cpp's quantizer converts each tensor whole to float32 by default (up to 8 GiB of rows): for
  this model the 151936 x 1536 embedding, 0.93 GB -- anonymous peak 1.11 GiB (0.39x) in a process
  without torch.  Its ``max_buf_size`` parameter (``QUANTIZE_BUFFER_BYTES``, 64 MiB) brings that to
  0.13 GiB with a byte-identical output; the remaining RSS is its mmap of the bf16 input (file-backed,
  about 0.46 GiB at peak; llama.cpp offers no switch to turn the mmap off).
* nf4 is bounded by transformers + bitsandbytes, not by our code: the loader memory-maps every
  safetensors file and keeps the mappings until the load ends (file-backed pages ~1.06x, which is what
  puts the total at ~1.5x) and holds the quantised model (bf16 embedding plus 4-bit linears, ~0.42x of
  bf16 by construction) plus its save buffers: anonymous 0.46x in a quiet run, 0.69x in one on a busy
  machine (sampled, so a lower bound).
* ``logit check`` holds one float32 model (2x bf16 by construction, anonymous 2.1x) plus the mapped
  bf16 checkpoint (file-backed 1.06x); no step holds two models.

Target (issue 12): every export at most 0.5x the bf16 checkpoint.  The old path (the whole state dict as
float32, then a second model for the check) held at least 2x by construction and is not run.

    python bench/export_memory.py [--out /tmp/export-memory] [--keep] [--only "gguf q8_0,nf4"]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing
BASE = "Qwen/Qwen2.5-Math-1.5B"
SHARD_BYTES = 500 * 2**20
SAMPLE_S = 0.005

CHILD = {
    "gguf q8_0": "from distill.students.export import export_gguf; export_gguf(M, O / 'm-q8_0.gguf', 'q8_0')",
    # Q4_K_M split in its two halves (the bf16 file is kept for the second), then as the export runs it
    "q4_k_m: bf16 write": "from distill.students.export import export_gguf; export_gguf(M, O / 'm-bf16.gguf', 'bf16')",
    "q4_k_m: llama.cpp": ("from distill.students.export.llamacpp import llama_cpp_quantize; "
                          "llama_cpp_quantize(O / 'm-bf16.gguf', O / 'm-q4-only.gguf')"),
    "gguf q4_k_m": ("from distill.students.export.llamacpp import _quantize_with_llama_cpp; "
                    "_quantize_with_llama_cpp(M, O / 'm-q4_k_m.gguf')"),
    "nf4": "from distill.students.export.bnb import quantize_and_save; quantize_and_save(M, O / 'nf4', 4)",
    "logit check": ("from distill.students.export.checks import reference_logits; "
                    "reference_logits(M, [list(range(1, 65))])"),
}
EXPORTS = ("gguf q8_0", "gguf q4_k_m", "nf4")  # what a user runs; the rest are parts or checks


def build_checkpoint(folder: Path) -> int:
    """The random bf16 checkpoint, shard by shard; returns its parameter count."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from distill.students.arch_configs import published_config

    cfg = published_config(BASE)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in AutoModelForCausalLM.from_config(config).named_parameters()}
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    for name, shape in shapes.items():
        if sum(2 * torch.Size(s).numel() for s in shards[-1].values()) + 2 * torch.Size(shape).numel() > SHARD_BYTES:
            shards.append({})
        shards[-1][name] = shape
    index = {"metadata": {}, "weight_map": {}}
    gen = torch.Generator().manual_seed(0)
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {n: (torch.ones(s) if "norm" in n else torch.randn(s, generator=gen) * 0.02).to(torch.bfloat16)
                   for n, s in shard.items()}
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        del tensors
        index["weight_map"].update({n: file for n in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config.dtype = torch.bfloat16
    config.save_pretrained(folder)
    _save_tokenizer(folder)
    return sum(torch.Size(s).numel() for s in shapes.values())


def _save_tokenizer(folder: Path) -> None:
    shared = REPO.parent / "shared" / "data" / "tokenizers" / "qwen2.5-instruct"
    if shared.is_dir():
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(shared)).save_pretrained(folder)
    else:
        from distill.students.toy_tokenizer import build_toy_tokenizer

        build_toy_tokenizer(["What is 12 + 7? The answer is 19."] * 20).save_pretrained(folder)


def peak_rss(code: str, model_dir: Path, out_dir: Path) -> tuple[int, dict[str, int]]:
    """Run ``code`` in a fresh Python with M (model dir) and O (output dir); its exit code and peak memory.

    ``total`` is the kernel's own peak RSS (``os.wait4`` rusage: anonymous and file-backed pages, as
    ``ru_maxrss`` counts them).  ``anon`` and ``file`` are the peaks of ``RssAnon`` and ``RssFile`` from
    ``/proc/<pid>/status``, sampled every few milliseconds: anonymous memory is what the process really
    needs; file-backed pages are mapped file contents (safetensors / GGUF mmaps), clean page cache the
    kernel can drop under pressure.  Sampling can miss a short spike, so ``anon`` is a lower bound.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    prelude = f"from pathlib import Path; M = Path({str(model_dir)!r}); O = Path({str(out_dir)!r}); "
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", prelude + code], env=env)
    peaks = {"anon": 0, "file": 0}
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        sample = _status_kib(proc.pid)
        peaks["anon"] = max(peaks["anon"], sample.get("RssAnon", 0) * 1024)
        peaks["file"] = max(peaks["file"], sample.get("RssFile", 0) * 1024)
        time.sleep(SAMPLE_S)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, {"total": usage.ru_maxrss * 1024, **peaks}  # ru_maxrss is in KiB on Linux


def _status_kib(pid: int) -> dict[str, int]:
    """The ``Rss*`` lines of ``/proc/<pid>/status`` in KiB (empty once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k.startswith("Rss")}


def _fmt(peak: dict[str, int], size: int) -> str:
    return " | ".join(f"{peak[k] / 2**30:>7.2f}G {peak[k] / size:>6.2f}x" for k in ("total", "anon", "file"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/export-memory"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and exports")
    parser.add_argument("--only", help="comma-separated steps to run (default: all): " + ", ".join(CHILD))
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:  # the child that builds the checkpoint: torch never enters the measuring parent
        print(build_checkpoint(args.build_only))
        return
    shutil.rmtree(args.out, ignore_errors=True)
    model_dir = args.out / "model"
    # Linux keeps a process's peak RSS across fork+exec, so the parent stays small (no torch) and builds
    # the checkpoint in a child too; otherwise every child would "start" at the parent's size.
    built = subprocess.run([sys.executable, __file__, "--build-only", str(model_dir)], check=True,
                           capture_output=True, text=True)
    n_params = int(built.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    print(f"{BASE} shape, random weights: {n_params / 1e9:.2f}B parameters, bf16 checkpoint {size / 2**30:.2f} GiB")
    _, baseline = peak_rss("import torch, transformers, gguf", model_dir, args.out / "x")
    print(f"python + torch + transformers alone: {_fmt(baseline, size)}")
    print(f"{'step':<22} {'peak RSS':>9} {'x bf16':>7} | {'anon':>7} {'x bf16':>7} | {'file':>7} {'x bf16':>7}")
    ratios: dict[str, dict[str, float]] = {}
    steps = [k.strip() for k in args.only.split(",")] if args.only else list(CHILD)
    for name in steps:
        rc, peak = peak_rss(CHILD[name], model_dir, args.out / "exports")
        ratios[name] = {k: v / size for k, v in peak.items()}
        status = "" if rc == 0 else f"  FAILED (exit {rc})"
        print(f"{name:<22} {_fmt(peak, size)}{status}")
    exports = {k: v for k, v in ratios.items() if k in EXPORTS}
    if exports:
        worst = max(exports, key=lambda k: exports[k]["total"])
        worst_anon = max(exports, key=lambda k: exports[k]["anon"])
        print(f"max_export_rss_ratio={exports[worst]['total']:.2f} ({worst}; anonymous "
              f"{exports[worst_anon]['anon']:.2f}, {worst_anon}) (target <= 0.5)")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
