"""Training throughput of naive padding vs packing vs padding-free, side by side in one run.

A long-tailed sample of sequence lengths shaped like R1 traces (lognormal, median
max_length/6, a tail to max_length) is trained for one epoch in each layout with TRL's
SFTTrainer on a tiny randomly initialised Qwen2 student (fp32, CPU or GPU). Printed per
layout: real (non-pad) tokens per second, the share of batch slots holding real tokens,
and the ratio to naive padding (target: >= 1.5x).

The default shape keeps the model's width above the mean sequence length, as in real
students (hidden 1536-8192), so the per-token layers dominate. On a CPU there is no
variable-length attention kernel: a packed or padding-free row attends through one
block-diagonal mask over the whole row, so with a width far below the sequence length
(e.g. --hidden 128 --max-length 2048, where attention dominates) all three layouts
measured the same (1.0x) on this 2-core machine. On a GPU, FlashAttention-2's varlen
kernel attends within each sequence (bench/gpu_train.py).

    python bench/train.py                       # default sample (about a minute on 2 CPU cores)
    python bench/train.py --sequences 48 --max-length 512 --hidden 64 --layers 2   # a quick check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (naive, padding-free)")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--modes", default="naive,padding_free,packing")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)

    from distill.students.models import TinyModelSpec, build_tiny_model
    from distill.students.throughput import measure, r1_like_lengths, token_rows
    from distill.students.toy_tokenizer import build_toy_tokenizer

    tokenizer = build_toy_tokenizer(["What is 12 + 34? <think>\n2+4=6\n</think>\n\n\\boxed{46}"] * 20)
    lengths = r1_like_lengths(args.sequences, args.max_length, seed=0)
    rows = token_rows(lengths, len(tokenizer), tokenizer.pad_token_id, seed=0)
    spec = TinyModelSpec(hidden_size=args.hidden, num_layers=args.layers, num_heads=max(2, args.hidden // 32),
                         num_kv_heads=1, intermediate_size=4 * args.hidden,
                         max_position_embeddings=max(2048, args.max_length))
    print(f"{len(rows)} sequences, lengths median {sorted(lengths)[len(lengths) // 2]}, mean "
          f"{sum(lengths) / len(lengths):.0f}, max {max(lengths)} (max_length {args.max_length}); model "
          f"hidden {args.hidden} x {args.layers} layers, fp32")
    results = []
    for mode in args.modes.split(","):
        model = build_tiny_model(spec, tokenizer, seed=0)
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            results.append(measure(mode, model, tokenizer, rows, args.max_length, args.batch_size, tmp))
    base = next((r for r in results if r.mode == "naive"), results[0])
    print(f"{'layout':<14}{'batch':<24}{'steps':>6}{'real tok/s':>12}{'real share':>12}{'vs naive':>10}")
    for r in results:
        print(f"{r.mode:<14}{r.batch:<24}{r.steps:>6}{r.tokens_per_second:>12.0f}{r.real_share:>12.1%}"
              f"{r.tokens_per_second / base.tokens_per_second:>9.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_row() for r in results], indent=2))


if __name__ == "__main__":
    main()
