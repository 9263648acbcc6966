"""Evaluation throughput: problems x samples per second, vLLM against transformers (and llama.cpp) side by side.

The same tiny model (built here with a head size of 32, which vLLM's CPU attention
needs, or ``--model``) runs the whole eval protocol -- chat template, k samples per
problem, answer split, shared verifier -- once per engine, each engine in its own
process (vLLM keeps process-wide state) after one warm-up batch.  llama.cpp runs the
same weights exported to an f32 GGUF.  A random-weight model never stops early, so
every engine generates exactly ``--max-tokens`` per sample: the work is identical.

Prints one row per engine: problems x samples per second, generated tokens per
second, engine start-up seconds, and the ratio to transformers.

    OMP_NUM_THREADS=2 python bench/eval.py [--problems 64] [--samples 4] [--max-tokens 128]
                                           [--engines transformers,vllm,llamacpp] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

WORKER = r"""
import json, sys, time
from distill.problems import generate_arithmetic
from distill.eval.protocol import evaluate
from distill.teachers.sampler import SamplingParams, make_sampler
from distill.teachers.prompts import build_prompt

backend, model, problems, samples, max_tokens, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
options = {"dtype": "float32", "batch_size": batch}
if backend == "vllm":
    options.update(gpu_memory_utilization=0.2, max_model_len=1024)
if backend == "llamacpp":
    options = {"n_ctx": 1024}
started = time.perf_counter()
sampler = make_sampler(backend, model, **options)
startup = time.perf_counter() - started
items = generate_arithmetic(problems, 11, 1, 3, "bench")
params = SamplingParams(n=samples, temperature=0.6, top_p=0.95, max_tokens=max_tokens, seed=0)
sampler.generate([build_prompt(items[0])], SamplingParams(n=1, max_tokens=8))  # warm-up
started = time.perf_counter()
result = evaluate(sampler, items, params, backend, "bench", chunk=max(problems, 1))
wall = time.perf_counter() - started
tokens = sum(r["completion_tokens"] for r in result.samples)
sampler.close()
print("RESULT " + json.dumps({"engine": backend, "wall_s": wall, "startup_s": startup, "samples": len(result.samples),
                             "tokens": tokens, "pass_at_1": result.score.pass_at_1}))
"""


def build_tiny_model(directory: Path) -> Path:
    """A random Qwen2 of head size 32 with the toy tokenizer (what vLLM's CPU backend accepts)."""
    from distill.problems import generate_arithmetic
    from distill.students.models import TinyModelSpec, save_tiny_model
    from distill.students.toy import worked_text
    from distill.students.toy_tokenizer import build_toy_tokenizer

    tokenizer = build_toy_tokenizer([worked_text(p) for p in generate_arithmetic(400, 3, 1, 3, "t")])
    spec = TinyModelSpec(architecture="qwen2", hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                         intermediate_size=256)
    save_tiny_model(directory, spec, tokenizer)
    return directory


def run_engine(engine: str, model: str, args: argparse.Namespace) -> dict | str:
    cmd = [sys.executable, "-c", WORKER, engine, model, str(args.problems), str(args.samples), str(args.max_tokens),
           str(args.batch_size)]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4, help="k samples per problem")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256, help="transformers: sequences per generate() call")
    parser.add_argument("--engines", default="transformers,vllm,llamacpp")
    parser.add_argument("--model", help="a Qwen2/Llama folder (default: a tiny random one built here)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        model = Path(args.model) if args.model else build_tiny_model(Path(tmp) / "model")
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        paths = {e: str(model) for e in engines}
        if "llamacpp" in engines:
            from distill.students.export import export_gguf

            paths["llamacpp"] = export_gguf(model, Path(tmp) / "model-f32.gguf", "f32")["path"]
        print(f"model {model if args.model else 'tiny random Qwen2 (hidden 128, head size 32)'}; "
              f"{args.problems} problems x {args.samples} samples, {args.max_tokens} max tokens, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        results = {e: run_engine(e, paths[e], args) for e in engines}

    base = results.get("transformers")
    base_rate = base["samples"] / base["wall_s"] if isinstance(base, dict) else None
    print(f"{'engine':<14}{'problems x samples/s':>22}{'tokens/s':>12}{'start-up s':>12}{'vs transformers':>17}")
    for engine, r in results.items():
        if not isinstance(r, dict):
            print(f"{engine:<14}{r}")
            continue
        rate = r["samples"] / r["wall_s"]
        ratio = f"{rate / base_rate:.2f}x" if base_rate else "-"
        print(f"{engine:<14}{rate:>22.2f}{r['tokens'] / r['wall_s']:>12.1f}{r['startup_s']:>12.1f}{ratio:>17}")


if __name__ == "__main__":
    main()
