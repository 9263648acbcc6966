"""Fixed k=4 against adaptive sampling (target 1, max 8), side by side, on the toy teacher and a weaker one.

Both modes sample the same problems (the quickstart's additions, 1 to 4 digits: more digits, more carries,
harder) with the same seeds through the real sample and filter stages, each run in its own folder and trace
store, on two teachers:

- ``toy``: the quickstart's toy teacher (600 training steps), right on most samples;
- ``toy-weak``: the same toy teacher trained for fewer steps (``--weak-steps``, default 400; the one knob
  changed, everything else is the quickstart's), so it is right on a middling share of samples, fewer the
  more digits: some problems are hard.  Trained once (a few minutes) and cached like the quickstart's.

Definitions (issue 15):

- coverage: problems with at least one verified trace (the filter's verdicts: right answer and every trace
  check passed, whatever the per-problem quota did afterwards);
- tokens: the teacher's output (completion) tokens over the whole run, every sample counted, verified or not;
- ``adaptive_token_ratio`` = adaptive tokens / fixed tokens, summed over both teachers, each adaptive run
  counted whole (all its rounds, not cut off where it matched fixed's coverage).  It stands only where
  adaptive reached at least fixed's coverage on each teacher (the script says so when it did not).
  Target: <= 0.60 (at least 40% fewer teacher tokens at equal or better coverage, hence also per covered
  problem).

It also prints, per teacher, the share of right samples by digit count (how hard the problems are), tokens
per verified trace and per covered problem, and, for reference only, the tokens adaptive had spent when it
first covered as many problems as fixed did (its traces taken by sample index).

    python bench/adaptive.py [--problems 150] [--weak-steps 400] [--out /tmp/adaptive-bench]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import yaml  # noqa: E402

from distill.config import config_from_dict  # noqa: E402
from distill.pipeline import run  # noqa: E402
from distill.publish.coverage_section import coverage_curve  # noqa: E402
from distill.records import read_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VERIFIED = {"kept", "over_quota", "outside_pass_rate_band"}  # verified correct, whatever the quotas did after
OPERANDS = re.compile(r"What is (\d+) \+ (\d+)\?")


def bench_config(out: Path, name: str, problems: int, weak_steps: int | None, mode: str) -> dict:
    raw = copy.deepcopy(yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text()))
    raw.update(name=name, output_dir=str(out))
    raw["problems"]["train_size"] = problems
    if weak_steps is not None:  # the same toy teacher, trained for fewer steps: weaker, some problems hard
        raw["teacher"]["toy"]["train_steps"] = weak_steps
    if mode == "fixed":
        raw["teacher"]["samples_per_problem"] = 4
    else:
        raw["teacher"]["sampling"] = {"mode": "adaptive", "target_per_problem": 1, "max_per_problem": 8}
    return raw


def measure(raw: dict) -> dict:
    config = config_from_dict(raw)
    started = time.perf_counter()
    run(config, until="filter")
    seconds = time.perf_counter() - started
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    sample = manifest["stages"]["sample"]["counts"]
    verdicts = {(v["problem_id"], v["sample_index"]): v["reason"] in VERIFIED
                for v in read_jsonl(config.run_dir / "filter" / "verdicts.jsonl")}
    records = [r for shard in sorted((config.run_dir / "sample" / "shards").glob("*.jsonl")) for r in read_jsonl(shard)]
    traces = [(r["problem_id"], r["sample_index"], int(r["completion_tokens"])) for r in records]
    tokens = sum(t for _, _, t in traces)
    verified = sum(verdicts.values())
    covered = len({pid for (pid, _), ok in verdicts.items() if ok})
    by_digits: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # digits -> [right samples, samples]
    for r in records:
        a, b = OPERANDS.search(r["prompt"][-1]["content"]).groups()
        by_digits[max(len(a), len(b))][0] += verdicts[(r["problem_id"], r["sample_index"])]
        by_digits[max(len(a), len(b))][1] += 1
    assert tokens == sample["completion_tokens"], "the shards' tokens disagree with the manifest's"
    return {"traces": len(traces), "tokens": tokens,
            "verified": verified, "covered": covered, "problems": sample["problems"], "seconds": seconds,
            "curve": coverage_curve(traces, verdicts), "by_digits": dict(sorted(by_digits.items())),
            "tokens_per_verified": tokens / verified if verified else float("inf"),
            "tokens_per_covered": tokens / covered if covered else float("inf")}


def tokens_to_cover(curve: list[tuple[int, int]], covered: int) -> int | None:
    """The output tokens after which ``covered`` problems had a verified trace, taking the traces in order of
    sample index (every problem's first sample, then the second...); None when the run never covered that many."""
    return next((tokens for tokens, n in curve if n >= covered), None)


def run_line(teacher: str, mode: str, r: dict) -> str:
    digits = ", ".join(f"{d}d {100 * ok / n:.0f}%" for d, (ok, n) in r["by_digits"].items())
    return (f"{teacher:8s} {mode:8s} coverage {r['covered']}/{r['problems']} "
            f"({100 * r['covered'] / r['problems']:.1f}%), {r['traces']} traces, {r['verified']} verified "
            f"({100 * r['verified'] / max(1, r['traces']):.0f}%; by digits {digits}), {r['tokens']} output tokens, "
            f"{r['tokens_per_verified']:.1f} tokens/verified trace, {r['tokens_per_covered']:.1f} "
            f"tokens/covered problem ({r['seconds']:.0f} s)")


def compare_line(teacher: str, fixed: dict, adaptive: dict) -> str:
    reach = tokens_to_cover(adaptive["curve"], fixed["covered"])
    same = adaptive["covered"] >= fixed["covered"]
    return (f"{teacher}: adaptive coverage {adaptive['covered']} {'>=' if same else '< (FAILS the bar)'} fixed "
            f"{fixed['covered']}; output tokens adaptive/fixed {adaptive['tokens']}/{fixed['tokens']} = "
            f"{adaptive['tokens'] / fixed['tokens']:.3f}; tokens per covered problem "
            f"{adaptive['tokens_per_covered'] / fixed['tokens_per_covered']:.3f} of fixed's; "
            f"(reference: adaptive first covered {fixed['covered']} problems after "
            + (f"{reach} tokens, {reach / fixed['tokens']:.3f} of fixed's)" if reach is not None else "never)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument("--weak-steps", type=int, default=400,
                        help="training steps of the weaker toy teacher (the quickstart's has 600)")
    parser.add_argument("--out", default="/tmp/adaptive-bench")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    results: dict[str, dict[str, dict]] = {}
    for teacher, steps in (("toy", None), ("toy-weak", args.weak_steps)):
        for mode in ("fixed", "adaptive"):
            results.setdefault(teacher, {})[mode] = r = measure(bench_config(out, f"{teacher}-{mode}",
                                                                              args.problems, steps, mode))
            print(run_line(teacher, mode, r), flush=True)
    for teacher, modes in results.items():
        print(compare_line(teacher, modes["fixed"], modes["adaptive"]))
    fixed = sum(m["fixed"]["tokens"] for m in results.values())
    adaptive = sum(m["adaptive"]["tokens"] for m in results.values())
    short = [t for t, m in results.items() if m["adaptive"]["covered"] < m["fixed"]["covered"]]
    print(f"both teachers: adaptive {adaptive} output tokens, fixed {fixed}; adaptive coverage "
          + (f"below fixed on {', '.join(short)}: the ratio does not meet the bar" if short else
             ">= fixed on both") + "; target ratio <= 0.60")
    print(f"adaptive_token_ratio={adaptive / fixed:.3f}")


if __name__ == "__main__":
    main()
