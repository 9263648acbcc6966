"""The keyed trace store at a million traces: how long planning a run takes, and what the store costs on disk.

Builds a store of N synthetic traces (default 1,000,000, in chunks of 10,000, each trace about the size of a
short R1 trace), then plans a run over every stored (problem, sample) plus 10,000 new keys, through the
sample stage's own planner (``plan_missing``: index load, one key per sample, lookups), and compares the
store's bytes (chunks and index) with the same traces as plain JSONL.

    python bench/trace_store.py [--traces 1000000] [--new 10000] [--folder /tmp/trace-store-bench]

Targets (issue 13): planning <= 10 s on a 2-core machine; size overhead <= 10 %.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from distill.records import Problem  # noqa: E402
from distill.teachers.keyed_sampling import plan_missing  # noqa: E402
from distill.teachers.prompts import build_prompt  # noqa: E402
from distill.teachers.trace_store import TraceStore, prompt_digest, sample_key  # noqa: E402

SAMPLES = 4
IDENTITY = {"model": "deepseek-ai/DeepSeek-R1", "backend": "vllm", "dtype": "bfloat16", "temperature": 0.6,
            "top_p": 0.95, "seed": 0}
WORDS = "so the sum of the roots is then we check that each term divides and therefore wait let me recompute".split()


def problem(i: int) -> Problem:
    return Problem(id=f"p{i:07d}", problem=f"Find the remainder when {i} ** 7 + {i % 97} is divided by 1000.",
                   answer=str((i ** 7 + i % 97) % 1000))


def synthetic_trace(p: Problem, index: int, rng: random.Random) -> dict:
    reasoning = " ".join(rng.choice(WORDS) for _ in range(rng.randint(350, 650)))  # ~2-3.5 KB of thinking
    return {"problem_id": p.id, "sample_index": index, "prompt": build_prompt(p), "reasoning": reasoning,
            "answer_text": f"The answer is \\boxed{{{p.answer}}}.", "finish_reason": "stop", "think_closed": True,
            "prompt_tokens": 40, "completion_tokens": 700, "reasoning_tokens": 690, "answer_tokens": 10,
            "teacher": IDENTITY["model"], "sampling": {"n": SAMPLES, "temperature": 0.6, "top_p": 0.95,
                                                       "max_tokens": 32768},
            "seed": 0, "reference": p.answer, "kind": "math", "latency_s": 12.5, "error": ""}


def build(folder: Path, traces: int, chunk: int) -> int:
    """Fill the store; returns the bytes the same traces take as plain JSONL (without the store's fields)."""
    store, rng, raw_bytes, batch = TraceStore(folder), random.Random(0), 0, []
    for i in range(traces // SAMPLES):
        p = problem(i)
        digest = prompt_digest(IDENTITY, build_prompt(p))
        for s in range(SAMPLES):
            record = synthetic_trace(p, s, rng)
            raw_bytes += len(json.dumps(record, ensure_ascii=False).encode()) + 1
            batch.append({**record, "trace_key": sample_key(digest, s), "max_tokens": 32768})
        if len(batch) >= chunk:
            store.commit(batch)
            batch = []
    if batch:
        store.commit(batch)
    return raw_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--folder", default="/tmp/trace-store-bench")
    args = parser.parse_args()
    folder = Path(args.folder)
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    raw = build(folder, args.traces, args.chunk)
    print(f"built {args.traces:,} traces in {time.perf_counter() - started:.0f} s")
    problems = [problem(i) for i in range((args.traces + args.new) // SAMPLES)]
    started = time.perf_counter()
    missing, present = plan_missing(TraceStore(folder), IDENTITY, problems, SAMPLES, 32768)
    plan_s = time.perf_counter() - started
    new = sum(len(indices) for _, indices in missing)
    stored = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"plan: {present:,} keys found, {new:,} to sample, in {plan_s:.2f} s (target <= 10 s)")
    print(f"size: store {stored / 1e9:.3f} GB vs plain JSONL {raw / 1e9:.3f} GB: "
          f"overhead {100 * (stored / raw - 1):.1f} % (target <= 10 %)")
    print(f"plan_seconds={plan_s:.2f} size_overhead_pct={100 * (stored / raw - 1):.1f}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
