"""One GPU: a randomly initialised Qwen2.5-1.5B-shaped student trained at 8k-16k tokens, naive padding
vs padding-free vs packing, side by side. Prints real tokens/s, peak GPU memory and MFU for each.

Needs no network and no tokenizer: the model config is built here (Qwen2.5-1.5B's published
shape) and the data are random token ids with R1-shaped (lognormal) lengths up to
--max-length. Training is what the trainer does on a GPU: fp32 master weights, bf16
autocast, AdamW, gradient checkpointing, TRL's SFTTrainer. MFU counts the model FLOPs of
the real tokens only (6N + causal attention at each sequence's own length, the same
accounting as `distill plan`) against --peak-tflops (H100/H200 dense BF16: 989).

    python bench/gpu_train.py                    # about 5 minutes on one H100/H200
    python bench/gpu_train.py --tiny             # a CPU smoke test of the same code path (fp32)
    python bench/gpu_train.py --attn sdpa        # force an attention kernel (default: the trainer's choice,
                                                 # FlashAttention-2 on a bf16 GPU if installed, else SDPA)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QWEN25_15B = dict(  # Qwen/Qwen2.5-1.5B config.json (Qwen2.5-Math-1.5B has the same shape)
    hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960,
    vocab_size=151936, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    max_position_embeddings=32768, rms_norm_eps=1e-6,
)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=128,
            vocab_size=512, tie_word_embeddings=True, max_position_embeddings=4096)


def build_model(shape: dict, attn: str, cuda: bool):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**shape, pad_token_id=0, eos_token_id=2, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):  # initialise in place: a CPU init of 1.5B takes minutes
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model, short lengths, CPU allowed (smoke test)")
    parser.add_argument("--max-length", type=int, default=16384)
    parser.add_argument("--median", type=int, default=None, help="median sequence length (default max_length/4)")
    parser.add_argument("--sequences", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step (naive, padding-free)")
    parser.add_argument("--attn", default="auto", choices=["auto", "flash_attention_2", "sdpa", "flex_attention",
                                                           "eager"])
    parser.add_argument("--modes", default="naive,padding_free,packing")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense BF16 peak of the GPU")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)

    import torch

    from distill.students.plan import shape_from_config, train_flops_per_token
    from distill.students.precision import choose_attention
    from distill.students.throughput import measure, r1_like_lengths, token_rows
    from distill.students.toy_tokenizer import build_toy_tokenizer

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        raise SystemExit("no CUDA GPU visible: run with --tiny for a CPU smoke test")
    shape = TINY if args.tiny else QWEN25_15B
    max_length = min(args.max_length, 512) if args.tiny else args.max_length
    sequences = min(args.sequences, 48) if args.tiny else args.sequences
    bf16 = cuda and torch.cuda.is_bf16_supported() and not args.tiny
    # The trainer's own choice: FlashAttention-2 only on a GPU in bf16/fp16 with flash_attn installed.
    attn = args.attn if args.attn != "auto" else choose_attention("auto", "bf16" if bf16 else "fp32", cuda=cuda)
    # Only the pad id is read from it (the rows are token ids already); built offline in a second.
    tokenizer = build_toy_tokenizer(["What is 1 + 2? <think>\n1+2=3\n</think>\n\n\\boxed{3}"] * 10)
    lengths = r1_like_lengths(sequences, max_length, median=args.median or max_length / 4, seed=0)
    rows = token_rows(lengths, shape["vocab_size"], tokenizer.pad_token_id, seed=0)
    mean_len = sum(lengths) / len(lengths)
    plan_shape = shape_from_config({**shape, "model_type": "qwen2"}, name="Qwen2.5-1.5B-shaped")
    # Token-weighted: each sequence's tokens cost attention at that sequence's own length.
    flops_per_token = sum(n * train_flops_per_token(plan_shape, n) for n in lengths) / sum(lengths)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{device}; {plan_shape.parameters() / 1e6:,.0f}M params ({'tiny' if args.tiny else 'Qwen2.5-1.5B'} shape), "
          f"{'bf16 autocast' if bf16 else 'fp32'}, attention {attn}, gradient checkpointing "
          f"{not args.no_checkpointing}")
    print(f"{len(rows)} sequences: median {sorted(lengths)[len(lengths) // 2]}, mean {mean_len:.0f}, max "
          f"{max(lengths)} tokens (max_length {max_length}); {flops_per_token / 1e9:.1f} GFLOPs per real token")
    results = []
    for mode in args.modes.split(","):
        model = build_model(shape, attn, cuda)
        with tempfile.TemporaryDirectory(prefix="bench-gpu-train-") as tmp:
            try:
                result = measure(mode, model, tokenizer, rows, max_length, args.batch_size, tmp,
                                 gradient_checkpointing=not args.no_checkpointing, bf16=bf16)
            except torch.cuda.OutOfMemoryError as exc:
                print(f"{mode}: out of memory ({str(exc).splitlines()[0][:120]})")
                result = None
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        if result:
            results.append(result)
            print(f"  {mode}: {result.tokens_per_second:.0f} real tok/s", flush=True)
    if not results:
        raise SystemExit("no layout finished")
    base = next((r for r in results if r.mode == "naive"), results[0])
    print(f"{'layout':<14}{'batch':<26}{'steps':>6}{'real tok/s':>12}{'real share':>12}{'peak GB':>9}{'MFU':>8}"
          f"{'vs naive':>10}")
    mfus = {r.mode: r.tokens_per_second * flops_per_token / (args.peak_tflops * 1e12) for r in results}
    for r in results:
        mfu = mfus[r.mode]
        peak = f"{r.peak_memory_gb:.1f}" if r.peak_memory_gb is not None else "-"
        print(f"{r.mode:<14}{r.batch:<26}{r.steps:>6}{r.tokens_per_second:>12.0f}{r.real_share:>12.1%}{peak:>9}"
              f"{mfu:>8.1%}{r.tokens_per_second / base.tokens_per_second:>9.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([{**r.as_row(), "mfu": mfus[r.mode]} for r in results], indent=2))


if __name__ == "__main__":
    main()
