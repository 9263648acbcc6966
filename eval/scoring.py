"""pass@1 over k samples with a 95% confidence interval, and cons@k (majority vote).

DeepSeek's protocol: sample k answers per problem at T=0.6/top-p 0.95 and report
pass@1 as the mean correctness over all samples; truncated answers count as wrong.
A truncated or failed sample gives no answer, so it does not vote in cons@k either:
its partial text is not the model's answer.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Score:
    pass_at_1: float
    ci95_low: float
    ci95_high: float
    cons_at_k: float
    problems: int
    samples: int
    truncated: int
    failed: int = 0  # samples the backend could not produce (finish_reason "error"): an outage, not a wrong answer


def pass_at_1(correct: Sequence[Sequence[bool]]) -> tuple[float, float, float]:
    """Mean over problems of each problem's fraction correct, with a normal-approximation 95% CI.

    The interval treats problems as the sampling unit (the k samples of one problem are
    not independent evidence about the benchmark), using the standard error of the
    per-problem means.
    """
    if not correct:
        return 0.0, 0.0, 0.0
    per_problem = [sum(c) / len(c) for c in correct if c]
    n = len(per_problem)
    mean = sum(per_problem) / n
    if n < 2:
        return mean, mean, mean
    var = sum((p - mean) ** 2 for p in per_problem) / (n - 1)
    half = Z95 * math.sqrt(var / n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def majority_correct(answers: Sequence[str], correct: Sequence[bool]) -> bool:
    """cons@k for one problem: is the most common extracted answer a correct one?

    Empty extractions do not vote; ties go to the answer seen first.
    """
    votes = Counter(a for a in answers if a)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(a for a in answers if a and votes[a] == top)
    return any(ok for a, ok in zip(answers, correct) if a == winner)


def score(correct: Sequence[Sequence[bool]], answers: Sequence[Sequence[str]], truncated: int = 0,
          failed: int = 0) -> Score:
    """pass@1 and cons@k; ``answers`` must hold "" for samples that may not vote (truncated, failed)."""
    mean, low, high = pass_at_1(correct)
    cons = [majority_correct(a, c) for a, c in zip(answers, correct)]
    return Score(
        pass_at_1=mean,
        ci95_low=low,
        ci95_high=high,
        cons_at_k=sum(cons) / len(cons) if cons else 0.0,
        problems=len(correct),
        samples=sum(len(c) for c in correct),
        truncated=truncated,
        failed=failed,
    )
