"""How much the HTTP teacher client itself costs: CPU per request, memory, requests/s at 512 in flight.

A hosted teacher is slow per request, so a sampling job keeps hundreds of
requests in flight; the client must not become the bottleneck on the machine
that drives it.  This runs :class:`distill.teachers.backends.openai_http.OpenAISampler`
against a minimal asyncio OpenAI-compatible server in a *separate process* (so
the client's CPU time is its own) that answers every request after a fixed delay.

    python bench/sampling_http.py --requests 5000 --concurrency 512 --delay-ms 20

Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPLY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "The answer is \\boxed{5}.",
        "reasoning_content": "2 plus 3 is 5. " * 40}}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 300, "completion_tokens_details": {"reasoning_tokens": 290}},
}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(REPLY)).encode() + b"\r\n\r\n" + REPLY)


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Keep-alive HTTP/1.1: read headers and body, wait ``delay``, send the canned completion."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if delay:
                await asyncio.sleep(delay)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _server_main(port_queue: "multiprocessing.Queue[int]", delay: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _serve_connection(r, w, delay), "127.0.0.1", 0,
                                            backlog=2048)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _prompts(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Problem {i}: what is {i} + {i + 1}? Put the answer in \\boxed{{}}."}]
            for i in range(count)]


def _run(sampler, prompts, params) -> tuple[float, float, int]:
    """(wall seconds, client CPU seconds, failed requests) for one generate call."""
    cpu, wall = time.process_time(), time.perf_counter()
    outputs = sampler.generate(prompts, params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, sum(c.finish_reason == "error" for row in outputs for c in row)


def measure(requests: int = 5000, concurrency: int = 512, delay_ms: float = 20.0) -> dict:
    """Client figures at ``concurrency`` requests in flight against a local endpoint in another process."""
    from distill.teachers.backends.openai_http import OpenAISampler
    from distill.teachers.sampler import SamplingParams

    ports: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_server_main, args=(ports, delay_ms / 1000), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=30)}/v1"
        sampler = OpenAISampler("bench", endpoints=[url], max_concurrency=concurrency, timeout_s=60,
                                max_retries=2, backoff_base_s=0.05)
        params = SamplingParams(n=1, max_tokens=512)
        _run(sampler, _prompts(min(1000, requests)), params)  # warm up: imports, connections
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wall, cpu, failed = _run(sampler, _prompts(requests), params)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        _run(sampler, _prompts(requests), params)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        server.terminate()
        server.join(10)
    return {"requests": requests, "failed": failed, "concurrency": concurrency, "delay_ms": delay_ms,
            "wall_s": wall, "cpu_s": cpu, "rss_after_kib": rss_after, "rss_before_kib": rss_before,
            "traced_peak_bytes": traced_peak, "attempts": sampler.stats.requests, "retries": sampler.stats.retries}


def report(m: dict) -> None:
    n = m["requests"]
    print(f"requests            {n} ({m['failed']} failed), {m['concurrency']} in flight, "
          f"server delay {m['delay_ms']:g} ms")
    print(f"throughput          {n / m['wall_s']:,.0f} requests/s ({m['wall_s']:.2f} s wall)")
    print(f"client CPU          {m['cpu_s'] * 1000 / n:.3f} ms per request ({m['cpu_s']:.2f} s total)")
    print(f"peak RSS            {m['rss_after_kib'] / 1024:.0f} MiB "
          f"(grew {(m['rss_after_kib'] - m['rss_before_kib']) / 1024:.0f} MiB in the run)")
    print(f"peak Python heap    {m['traced_peak_bytes'] / 2**20:.1f} MiB (tracemalloc, one {n}-request batch)")
    print(f"HTTP attempts       {m['attempts']} total, {m['retries']} retries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="server latency per request")
    args = parser.parse_args()
    report(measure(args.requests, args.concurrency, args.delay_ms))


if __name__ == "__main__":
    main()
