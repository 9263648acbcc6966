"""How fast the verifier is, and that adversarial answers cannot hang it.

Realistic mix: every reference answer of the eval sets in ../shared/data/eval
(MATH-500, GSM8K, AIME 2024/2025, AMC23) paired with one correct prediction (the
reference as a model might write it: as is, ``\\dfrac``, spaced out, ``\\left(``,
a trailing period, ...) and one incorrect one (another problem's answer from the
same benchmark, or an integer off by one), each inside an R1-style answer text.

Pools are built as the filter's and eval's shared pool is (``warm_up=True``: each worker parses one
answer of every common shape before its first job; that start-up CPU is not in the figures, as no
pool start-up is).  Prints, per worker count: verifications per second (wall), per CPU-second (parent
plus workers: "per core"), the share decided by the fast path; the 1 -> 2 worker
speed-up on the whole mix and on distinct math-verify-bound jobs (with the speed-up
the measured CPU time implies for free cores: on a shared machine the wall figure
says more about the neighbours); single-call p50/p99 latency; then the adversarial
run (timeouts, hung workers killed and replaced, none left behind); then code in the
bubblewrap sandbox: one spawn's cost, bwrap versus a plain subprocess of the same
interpreter side by side, and sandboxed executions per second with 1 and 2 at once.

    OMP_NUM_THREADS=1 python bench/verify.py [--adversarial 10000] [--timeout 0.5] [--sandbox-runs 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from distill.filter.verify import VerifierPool, _precheck, verify_batch

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "eval"
SETS = ("math500", "gsm8k_test", "aime2024", "aime2025", "amc23")


def load_answers() -> dict[str, list[str]]:
    out = {}
    for name in SETS:
        path = DATA / f"{name}.jsonl"
        if path.is_file():
            out[name] = [json.loads(line)["answer"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not out:
        raise SystemExit(f"no eval sets under {DATA}")
    return out


def rewrite(answer: str, rng: random.Random) -> str:
    """The reference as a model might box it: mostly verbatim, sometimes respelled."""
    forms = [
        lambda a: a,
        lambda a: a,
        lambda a: a.replace("\\frac", "\\dfrac"),
        lambda a: re.sub(r"([=+,])", r" \1 ", a),
        lambda a: f"\\left({a}\\right)" if a.startswith("(") is False and "," in a else a,
        lambda a: a + ".",
        lambda a: f"{int(a):,}" if a.isdigit() else a,
        lambda a: f"x = {a}" if not a.startswith("\\text") else a,
    ]
    return rng.choice(forms)(answer)


def wrong(answer: str, pool: list[str], rng: random.Random) -> str:
    if answer.lstrip("-").isdigit() and rng.random() < 0.5:
        return str(int(answer) + rng.choice((-1, 1)))
    other = rng.choice(pool)
    return other if other != answer else answer + "1"


def realistic_items(seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    items = []
    for answers in load_answers().values():
        for ans in answers:
            for pred in (rewrite(ans, rng), wrong(ans, answers, rng)):
                items.append(("math", f"Putting it together, the final answer is $\\boxed{{{pred}}}$.", ans))
    rng.shuffle(items)
    return items


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def throughput(items: list, workers: int) -> dict[str, float]:
    """One timed pass over ``items`` through a fresh pool (empty parse caches, as in a real run)."""
    with VerifierPool(workers, warm_up=True) as pool:  # as the filter's and eval's pool
        verify_batch([("math", "\\boxed{x+1}", "1+x")] * workers * 2, pool=pool)  # workers up and warm
        pids = pool.pids
        cpu0, wall0 = time.process_time() + cpu_seconds(pids), time.perf_counter()
        checks = verify_batch(items, pool=pool)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() + cpu_seconds(pids) - cpu0
    return {"n": len(items), "wall": wall, "cpu": cpu, "errors": sum(c.status == "error_infra" for c in checks),
            "correct": sum(c.correct for c in checks), "to_workers": len(needs_math_verify(items))}


def needs_math_verify(items: list) -> list:
    return [it for it in items if not hasattr(_precheck(*it), "status")]


def unique_jobs(count: int, seed: int) -> list[tuple[str, str]]:
    """math-verify-bound (extracted, reference) pairs, all distinct, so no worker's parse cache helps."""
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 99)
        pred = f"\\frac{{{a}x^2+{b}}}{{{c}y}}+\\sqrt{{{i}}}"
        jobs.append((pred, f"\\frac{{{a}}}{{{c}}}x^2/y+{b}/({c}y)+\\sqrt{{{i + 1}}}"))
    return jobs


def scaling(workers: int, count: int = 300) -> tuple[float, float]:
    """(wall seconds, worker CPU seconds) for ``count`` distinct math-verify jobs on a warm pool."""
    with VerifierPool(workers, warm_up=True) as pool:  # as the filter's and eval's pool
        pool.run(unique_jobs(20, seed=99), 5)
        pids = pool.pids
        cpu0, started = cpu_seconds(pids), time.perf_counter()
        pool.run(unique_jobs(count, seed=workers), 5)
        return time.perf_counter() - started, cpu_seconds(pids) - cpu0


def latencies(items: list, sample: int = 600) -> tuple[float, float]:
    """Single-call latency (the verify_answer path) on a sample; fresh pool, so first-seen strings."""
    rng = random.Random(1)
    picked = rng.sample(items, min(sample, len(items)))
    with VerifierPool(1, warm_up=True) as pool:
        verify_batch([("math", "\\boxed{x+1}", "1+x")], pool=pool)
        times = []
        for it in picked:
            started = time.perf_counter()
            verify_batch([it], pool=pool)
            times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def adversarial_items(count: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """Answers built to hang, blow up or confuse the parser, each distinct so no cache helps."""
    rng = random.Random(seed)
    big = "\\boxed{" + "1+" * 500_000 + "1}"
    makers = [
        (0.02, lambda i: f"9^{{9^{{9^{{{9 + i % 7}}}}}}}"),  # power towers: sympy never finishes
        (0.02, lambda i: f"{100_000 + i}!"),  # big factorials: seconds each
        (0.005, lambda i: None),  # a 1 MB answer
        (0.15, lambda i: "\\frac{" * (50 + i % 50) + "1"),  # unclosed braces
        (0.05, lambda i: "\\frac{1}{\\frac{1}{" * 40 + str(i) + "}}" * 40),  # deep nesting
        (0.05, lambda i: "\\sqrt{" * 30 + str(i) + "}" * 30),
        (0.20, lambda i: "".join(rng.choice("\\^_{}()[]|&$%#~") for _ in range(60)) + str(i)),  # LaTeX noise
        (0.20, lambda i: "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(40))),  # unicode junk
        (0.15, lambda i: "9" * rng.randrange(100, 4000)),  # huge integers
        (0.05, lambda i: "+".join(f"x^{{{k}}}" for k in range(i % 200 + 50))),  # long polynomials
        (0.05, lambda i: f"\\int_0^{{{i}}} e^{{-x^2}} dx + \\sum_{{k=1}}^{{\\infty}} \\frac{{1}}{{k^{{{i % 5 + 2}}}}}"),
        (0.05, lambda i: f"\\begin{{pmatrix}} {i} & 2 \\\\ 3 & 4 \\end{{pmatrix}}^{{{1000 + i}}}"),
    ]
    weights = [w for w, _ in makers]
    items = []
    for i in range(count):
        _, make = rng.choices(makers, weights)[0]
        pred = make(i)
        text = big if pred is None else f"The answer is \\boxed{{{pred}}}."
        items.append(("math", text, rng.choice(["5", "\\frac{1}{2}", "x^2+1", "(1,2]"])))
    return items


def adversarial(count: int, workers: int, timeout_s: float) -> None:
    items = adversarial_items(count)
    with VerifierPool(workers, warm_up=True) as pool:  # as the filter's and eval's pool
        started = time.perf_counter()
        checks = verify_batch(items, timeout_s=timeout_s, pool=pool)
        wall = time.perf_counter() - started
        statuses = {s: sum(c.status == s for c in checks) for s in ("correct", "wrong", "no_answer", "error_infra")}
        alive = [p for p in pool.pids if psutil.pid_exists(p)]
        after = verify_batch([("math", "\\boxed{\\frac{2}{4}}", "0.5"), ("math", "\\boxed{y+1}", "1+y")], pool=pool)
        pids, replaced = pool.pids, pool.replaced
    time.sleep(0.2)
    leftover = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    print(f"\nadversarial: {count} answers, {workers} workers, timeout {timeout_s}s: {wall:.1f}s wall, "
          f"{statuses}, workers replaced {replaced}")
    print(f"  workers alive after the run: {len(alive)}/{workers}; pool still answers correctly: "
          f"{[c.status for c in after]}; worker processes left after close: {len(leftover)}")


SUM_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


def spawn_ms(runs: int, sandboxed: bool) -> float:
    """Median milliseconds per execution of a tiny stdin/stdout program, in bwrap or as a plain subprocess."""
    import subprocess

    from distill.filter.sandbox import Sandbox

    box = Sandbox()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        if sandboxed:
            result = box.run(SUM_PROGRAM, stdin="1 2\n")
            assert result.outcome == "ok" and result.stdout.strip() == "3", result
        else:
            out = subprocess.run([box.python, "-I", "-c", SUM_PROGRAM], input="1 2\n", capture_output=True,
                                 text=True, check=True).stdout
            assert out.strip() == "3"
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def sandbox_bench(runs: int, workers: list[int]) -> None:
    from distill.config import SandboxConfig
    from distill.filter.sandbox import Sandbox
    from distill.filter.verify import verify_code_batch

    probe = Sandbox().run("print(1)")
    if probe.outcome != "ok":
        print(f"\nsandbox: not measured, bwrap cannot run here ({probe.outcome}: {probe.detail})")
        return
    spawn_ms(5, True), spawn_ms(5, False)  # warm caches
    plain, boxed = spawn_ms(runs, False), spawn_ms(runs, True)
    print(f"\nsandbox: one execution {boxed:.1f} ms in bwrap vs {plain:.1f} ms as a plain subprocess "
          f"(median of {runs}): {boxed - plain:.1f} ms overhead per spawn, {boxed / plain:.2f}x")
    answer = f"```python\n{SUM_PROGRAM}```"
    items = [(answer, {"inputs": ["1 2\n"], "outputs": ["3\n"]})] * runs
    rates = {}
    for w in workers:
        start = time.perf_counter()
        checks = verify_code_batch(items, SandboxConfig(workers=w))
        wall = time.perf_counter() - start
        assert all(c.correct for c in checks), {c.status for c in checks}
        rates[w] = runs / wall
        print(f"sandbox: {rates[w]:.1f} sandboxed executions/s with {w} at once ({runs} one-test problems)")
    if len(rates) > 1:
        lo, hi = min(rates), max(rates)
        print(f"sandbox: speed-up {lo} -> {hi} at once: {rates[hi] / rates[lo]:.2f}x; "
              f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adversarial", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sandbox-runs", type=int, default=200, help="0 skips the code-sandbox figures")
    parser.add_argument("--skip-math", action="store_true", help="only the code-sandbox figures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not args.skip_math:
        math_bench(args)
    if args.sandbox_runs:
        sandbox_bench(args.sandbox_runs, args.workers)


def math_bench(args: argparse.Namespace) -> None:
    items = realistic_items()
    print(f"realistic mix: {len(items)} answers from {', '.join(load_answers())}; cores here: {os.cpu_count()}")
    walls = {}
    for w in args.workers:
        r = throughput(items, w)
        walls[w] = r["wall"]
        print(f"workers={w}: {r['n'] / r['wall']:.0f} verifications/s wall, {r['n'] / r['cpu']:.0f} per CPU-second "
              f"(parent + workers), {1 - r['to_workers'] / r['n']:.0%} decided by the fast path, "
              f"{r['to_workers']} sent to math-verify, {r['errors']} error_infra, {r['correct']} correct")
    if len(walls) > 1:
        lo, hi = min(walls), max(walls)
        print(f"speed-up {lo} -> {hi} workers, whole mix: {walls[lo] / walls[hi]:.2f}x (fast path: in the parent)")
        (w_lo, c_lo), (w_hi, c_hi) = scaling(lo), scaling(hi)
        print(f"speed-up {lo} -> {hi} workers, 300 distinct math-verify jobs: {w_lo / w_hi:.2f}x wall "
              f"({w_lo:.1f}s -> {w_hi:.1f}s); worker CPU {c_lo:.1f}s -> {c_hi:.1f}s, so with {hi} free cores "
              f"about {hi * w_lo / c_hi:.2f}x; load average now {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
    p50, p99 = latencies(items)
    print(f"single-call latency: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.1f} ms")
    if args.adversarial:
        adversarial(args.adversarial, max(args.workers), args.timeout)


if __name__ == "__main__":
    main()
