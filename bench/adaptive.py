"""Fixed k=4 against adaptive sampling (target 1, max 8), side by side, on the toy teacher and a weaker one.

Both modes sample the same problems (the quickstart's additions, 1 to 4 digits: more digits, more carries,
harder) with the same seeds through the real sample and filter stages, each run in its own folder and trace
store, on two teachers:

- ``toy``: the quickstart's toy teacher (600 training steps), right on most samples;
- ``toy-weak``: the same toy teacher trained for fewer steps (``--weak-steps``, default 500; the one knob
  changed, everything else is the quickstart's): right on about a quarter of its samples, mostly on 1-2
  digit sums and rarely on 3-4 digit ones, so many problems are hard.  Trained once (a few minutes) and cached
  like the quickstart's.

Definitions (issue 15):

- coverage: problems with at least one verified trace (the filter's verdicts: right answer and every trace
  check passed, whatever the per-problem quota did afterwards);
- tokens: the teacher's output (completion) tokens, every sample counted, verified or not;
- ``adaptive_token_ratio`` = adaptive tokens at equal or better coverage / fixed tokens, summed over both
  teachers: the adaptive run's tokens through the end of the first of its rounds (target 1, max 8: a problem
  holds 1, 2, 4, then 8 samples) after which it covered at least as many problems as fixed k=4 did in its
  whole run -- what adaptive spends to match fixed, stopped at a round boundary.  Target: <= 0.60 (at least
  40% fewer teacher tokens, hence also per covered problem, at equal or better coverage).

It also prints every run whole: its coverage, tokens, tokens per verified trace and per covered problem, and
the share of right samples by digit count (how hard the problems are).  On the weak teacher the whole
adaptive run spends more than fixed k=4 and covers more: the problems fixed gives up on after four failures
get up to eight tries.

    python bench/adaptive.py [--problems 150] [--weak-steps 500] [--out /tmp/adaptive-bench]
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
from distill.records import read_jsonl  # noqa: E402
from distill.teachers.adaptive_plan import round_ends  # noqa: E402

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
            "by_digits": dict(sorted(by_digits.items())),
            "rounds": tokens_at_round_ends(traces, verdicts, round_ends(1, 8)),
            "tokens_per_verified": tokens / verified if verified else float("inf"),
            "tokens_per_covered": tokens / covered if covered else float("inf")}


def tokens_at_round_ends(traces: list[tuple[str, int, int]], verdicts: dict[tuple[str, int], bool],
                         ends: list[int]) -> list[tuple[int, int]]:
    """(output tokens spent, problems covered) at the end of each round: a round ending at ``end`` samples
    holds every trace with a sample index below ``end`` (problems that closed earlier stop sampling)."""
    out = []
    for end in ends:
        tokens = sum(n for _, index, n in traces if index < end)
        covered = len({pid for (pid, index), ok in verdicts.items() if ok and index < end})
        out.append((tokens, covered))
    return out


def tokens_to_match(adaptive: dict, covered: int) -> tuple[int, int] | None:
    """(tokens, round) at the end of the first adaptive round that covered at least ``covered`` problems."""
    return next(((tokens, i + 1) for i, (tokens, n) in enumerate(adaptive["rounds"]) if n >= covered), None)


def run_line(teacher: str, mode: str, r: dict) -> str:
    digits = ", ".join(f"{d}d {100 * ok / n:.0f}%" for d, (ok, n) in r["by_digits"].items())
    return (f"{teacher:8s} {mode:8s} coverage {r['covered']}/{r['problems']} "
            f"({100 * r['covered'] / r['problems']:.1f}%), {r['traces']} traces, {r['verified']} verified "
            f"({100 * r['verified'] / max(1, r['traces']):.0f}%; by digits {digits}), {r['tokens']} output tokens, "
            f"{r['tokens_per_verified']:.1f} tokens/verified trace, {r['tokens_per_covered']:.1f} "
            f"tokens/covered problem ({r['seconds']:.0f} s)")


def compare_line(teacher: str, fixed: dict, adaptive: dict) -> str:
    match = tokens_to_match(adaptive, fixed["covered"])
    matched = (f"adaptive covered >= {fixed['covered']} problems after round {match[1]}, {match[0]} output tokens = "
               f"{match[0] / fixed['tokens']:.3f} of fixed's" if match else "adaptive never matched fixed's coverage")
    return (f"{teacher}: {matched}; whole runs: coverage adaptive {adaptive['covered']} vs fixed {fixed['covered']}, "
            f"output tokens {adaptive['tokens']}/{fixed['tokens']} = {adaptive['tokens'] / fixed['tokens']:.3f}, "
            f"tokens per covered problem {adaptive['tokens_per_covered'] / fixed['tokens_per_covered']:.3f} of "
            f"fixed's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument("--weak-steps", type=int, default=500,
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
    matches = {t: tokens_to_match(m["adaptive"], m["fixed"]["covered"]) for t, m in results.items()}
    short = [t for t, match in matches.items() if match is None]
    if short:
        print(f"adaptive never reached fixed's coverage on {', '.join(short)}: no ratio at equal coverage")
        print("adaptive_token_ratio=nan")
        return
    adaptive = sum(match[0] for match in matches.values())
    whole = sum(m["adaptive"]["tokens"] for m in results.values())
    print(f"both teachers: adaptive spent {adaptive} output tokens to match fixed's coverage (whole runs: {whole}, "
          f"covering more), fixed {fixed}; target ratio <= 0.60")
    print(f"adaptive_token_ratio={adaptive / fixed:.3f}")


if __name__ == "__main__":
    main()
