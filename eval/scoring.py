"""pass@1 over k samples with a 95% confidence interval, and cons@k (majority vote).

DeepSeek's protocol: sample k answers per problem at T=0.6/top-p 0.95 and report
pass@1 as the mean correctness over all samples; truncated answers count as wrong.
A truncated or failed sample gives no answer, so it does not vote in cons@k either:
its partial text is not the model's answer.

A sample the *verifier* could not judge (no sandbox, a math-verify timeout: status
``error_infra``) is neither right nor wrong, so it is ``None`` in ``correct``: it is left
out of pass@1's denominator (pass@1 is the mean over scored samples, as DeepSeek's is),
casts no cons@k vote, and is counted in ``Score.verifier_failed`` -- the eval stage
fails when that share is too large (``eval.max_verifier_failure_share``), since a mean
over the few samples left would not be the model's score.  A problem with no scored
sample drops out of the mean; with none at all pass@1 is 0.

cons@k votes on answers *as the verifier sees them*: ``1/2``, ``0.5`` and ``\\frac{1}{2}``
are one answer with three votes, not three answers with one each.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from distill.filter.verify import verify_batch

# same(representative, others) -> for each other answer, is it the representative's answer?
Same = Callable[[str, list[str]], list[bool]]

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


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
    verifier_failed: int = 0  # samples the verifier could not judge (error_infra): left out of pass@1
    ci_method: str = "t"  # "t": Student's t over per-problem means; "bootstrap": seeded percentile bootstrap


def _t_quantile(p: float, df: int) -> float:
    from scipy.stats import t  # scipy comes with datasketch (the cpu and gpu extras); imported only here

    return float(t.ppf(p, df))


def interval(per_problem: Sequence[float]) -> tuple[float, float, str]:
    """(low, high, method) of the 95% interval of the mean of ``per_problem`` (n >= 2).

    Problems are the sampling unit (the k samples of one problem are not independent
    evidence about the benchmark).  Over 30 problems z = 1.96 is too narrow; Student's t
    with n - 1 degrees of freedom is the interval for a mean with estimated variance.
    Without scipy the interval is a percentile bootstrap with a fixed seed, so the same
    samples always give the same numbers; ``method`` says which was used.
    """
    n = len(per_problem)
    mean = sum(per_problem) / n
    try:
        q = _t_quantile(0.975, n - 1)
    except ImportError:
        rng = random.Random(BOOTSTRAP_SEED)
        means = sorted(sum(rng.choices(per_problem, k=n)) / n for _ in range(BOOTSTRAP_RESAMPLES))
        cuts = statistics.quantiles(means, n=40, method="inclusive")  # 2.5% steps
        return max(0.0, cuts[0]), min(1.0, cuts[-1]), "bootstrap"
    half = q * statistics.stdev(per_problem) / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half), "t"


def pass_at_1_interval(correct: Sequence[Sequence[Optional[bool]]]) -> tuple[float, float, float, str]:
    """(mean, low, high, ci_method): the mean over problems of each problem's fraction correct among its
    scored samples (``None``, a sample the verifier could not judge, is left out)."""
    per_problem = []
    for c in correct:
        scored = [ok for ok in c if ok is not None]
        if scored:
            per_problem.append(sum(scored) / len(scored))
    if not per_problem:
        return 0.0, 0.0, 0.0, "t"
    mean = sum(per_problem) / len(per_problem)
    if len(per_problem) < 2:
        return mean, mean, mean, "t"
    low, high, method = interval(per_problem)
    return mean, low, high, method


def pass_at_1(correct: Sequence[Sequence[Optional[bool]]]) -> tuple[float, float, float]:
    """(mean, low, high): pass@1 and its 95% interval (:func:`interval` says how)."""
    return pass_at_1_interval(correct)[:3]


def same_string(rep: str, others: list[str]) -> list[bool]:
    """Equality of the strings: multiple-choice letters and code outcomes need nothing more."""
    return [o == rep for o in others]


def verifier_equivalence(kind: str) -> Same:
    """Answer equivalence for ``kind`` by the one verifier (:mod:`distill.filter.verify`), the filter's and eval's.

    Math answers are compared as the verifier compares an answer with a reference (the class's first answer
    is the reference); a comparison it cannot decide (a math-verify timeout) keeps the answers apart.
    """
    if kind != "math":
        return same_string

    def same(rep: str, others: list[str]) -> list[bool]:
        checks = verify_batch([("math", "\\boxed{" + o + "}", rep) for o in others])
        return [o == rep or c.status == "correct" for o, c in zip(others, checks)]

    return same


def vote_classes(answers: Sequence[str], same: Same = same_string) -> list[list[str]]:
    """The distinct non-empty answers grouped into classes of equivalent ones, deterministically.

    Classes are built in order of first appearance: the first answer not yet placed founds a class
    and takes every later unplaced answer equivalent to it -- the same grouping as putting each
    answer into the first earlier class whose founder it matches.
    """
    rest = list(dict.fromkeys(a for a in answers if a))
    classes = []
    while rest:
        rep, others = rest[0], rest[1:]
        joined = same(rep, others) if others else []
        classes.append([rep] + [o for o, j in zip(others, joined) if j])
        rest = [o for o, j in zip(others, joined) if not j]
    return classes


def majority_correct(answers: Sequence[str], correct: Sequence[Optional[bool]], same: Same = same_string) -> bool:
    """cons@k for one problem: is the answer most samples give (up to ``same``) a correct one?

    Empty extractions do not vote; a tie goes to the class seen first; the winning class is
    correct when its first answer was judged correct.
    """
    classes = vote_classes(answers, same)
    if not classes:
        return False
    votes = [sum(1 for a in answers if a in members) for members in classes]
    winner = classes[votes.index(max(votes))][0]
    return any(ok is True for a, ok in zip(answers, correct) if a == winner)


def score(correct: Sequence[Sequence[Optional[bool]]], answers: Sequence[Sequence[str]], truncated: int = 0,
          failed: int = 0, kinds: Sequence[str] | None = None) -> Score:
    """pass@1 and cons@k; ``answers`` must hold "" for samples that may not vote (truncated, failed, unjudged),
    ``correct`` None for a sample the verifier could not judge.  With ``kinds`` (each problem's kind), cons@k
    votes on the verifier's equivalence classes; without, on the strings."""
    mean, low, high, method = pass_at_1_interval(correct)
    cons = [majority_correct(a, c, verifier_equivalence(kinds[i]) if kinds else same_string)
            for i, (a, c) in enumerate(zip(answers, correct))]
    return Score(
        pass_at_1=mean,
        ci95_low=low,
        ci95_high=high,
        cons_at_k=sum(cons) / len(cons) if cons else 0.0,
        problems=len(correct),
        samples=sum(len(c) for c in correct),
        truncated=truncated,
        failed=failed,
        verifier_failed=sum(ok is None for c in correct for ok in c),
        ci_method=method,
    )
