"""The one verifier that decides "correct", for the filter and for evaluation alike.

Math answers are the last ``\\boxed{}`` of the text after ``</think>``, compared to
the reference with math-verify.  Multiple choice compares the chosen letter (the
last boxed letter, else "answer: B", else the last standalone capital A-J).

Code answers (``kind="code"``) are the last fenced ```python block, run against the
problem's tests in a bubblewrap sandbox (:mod:`distill.filter.sandbox`).  For code the
``reference`` is the tests spec -- a JSON string (what ``Problem.answer`` holds for a
code problem) or the dict/list itself -- in stdin/stdout or function-call style::

    verify_answer("code", answer_text, '{"inputs": ["1 2\\n"], "outputs": ["3\\n"]}')
    verify_answer("code", answer_text, {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]})

The Check's ``extracted`` is then the sandbox outcome (pass, wrong_answer, TLE, MLE,
OLE, runtime_error, blocked, error_infra) and ``detail`` says which test failed and
how.  A sandbox that cannot start is ``error_infra``, never correct or wrong.  Pass
``sandbox=SandboxConfig(...)`` (distill.config) to change its limits.

This module is the entry point; the work is done by:

- :mod:`~distill.filter.answers` -- reading the boxed answer or the chosen letter, and :class:`Check`;
- :mod:`~distill.filter.math_fast` -- the in-process fast path (:func:`quick_check`) that decides
  identical spellings and exact rational values in microseconds -- never float closeness, which
  would call ``2^{64}-1`` and ``2^{64}`` the same answer; everything inexact goes to math-verify;
- :mod:`~distill.filter.math_check` -- :class:`VerifierPool`, math-verify in worker processes
  (:mod:`~distill.filter.math_worker`) that are killed at a hard deadline, since a boxed
  ``9^{9^{9^{9}}}`` can keep sympy busy for ever; a job past its timeout is ``error_infra``;
- :mod:`~distill.filter.code_check` -- code answers through the sandbox.

Every name those modules offer callers stays importable from here.
"""

from __future__ import annotations

from typing import Any, Iterable

from distill.filter.answers import STATUSES, Check, all_boxed, chosen_letter, last_boxed, verify_choice
from distill.filter.code_check import verify_code, verify_code_batch
from distill.filter.math_check import (DEFAULT_TIMEOUT_S, HARD_DEADLINE_GRACE_S, VerifierPool, default_workers,
                                       run_math_jobs, shutdown)
from distill.filter.math_fast import exact_value, normalise_answer, numeric_value, plain_number, quick_check
from distill.filter.math_worker import math_equal as _math_equal  # noqa: F401 - tests compare the fast path with it

__all__ = [
    "DEFAULT_TIMEOUT_S", "HARD_DEADLINE_GRACE_S", "MAX_ANSWER_CHARS", "STATUSES", "Check", "VerifierPool",
    "all_boxed", "chosen_letter", "default_workers", "exact_value", "last_boxed", "normalise_answer", "numeric_value",
    "plain_number", "quick_check", "shutdown", "verify_answer", "verify_batch", "verify_choice", "verify_code",
    "verify_code_batch", "verify_math",
]

# A boxed "answer" longer than this is a runaway generation, not a final answer:
# it is wrong without asking sympy (which could spend minutes parsing it).
MAX_ANSWER_CHARS = 4096


def _precheck(kind: str, answer_text: str, reference: str) -> Check | tuple[str, str] | None:
    """A final Check when one is possible in-process, None for code (the sandbox's), else the math-verify job."""
    if kind == "code":
        return None
    if kind == "multiple_choice":
        return verify_choice(answer_text, reference)
    if kind != "math":
        return Check(False, "", "error_infra")
    extracted = last_boxed(answer_text)
    if extracted is None or not extracted.strip():
        return Check(False, "", "no_answer")
    if len(extracted) > MAX_ANSWER_CHARS:
        return Check(False, extracted[:200] + "…", "wrong")
    quick = quick_check(extracted, reference)
    if quick is not None:
        return Check(quick, extracted, "correct" if quick else "wrong")
    return extracted, reference


def verify_batch(items: Iterable[tuple[str, str, Any]], timeout_s: float = DEFAULT_TIMEOUT_S,
                 workers: int | None = None, pool: VerifierPool | None = None, sandbox: Any = None) -> list[Check]:
    """Checks for many (kind, answer_text, reference) items; each math-verify call is cut off at ``timeout_s``.

    Fast-path answers never leave this process; the rest go to ``pool`` or else the
    process-wide pool of ``workers`` processes (default: :func:`default_workers`).
    Code items run in sandboxes (``sandbox``: a :class:`distill.config.SandboxConfig`),
    several at once.  Never hangs: a job past its deadline is ``error_infra``.
    """
    checks: list[Check | None] = []
    jobs: list[tuple[str, str]] = []
    slots: list[int] = []
    code: list[tuple[int, str, Any]] = []
    for kind, answer_text, reference in items:
        pre = _precheck(kind, answer_text, reference)
        if isinstance(pre, Check):
            checks.append(pre)
            continue
        if pre is None:
            code.append((len(checks), answer_text, reference))
        else:
            slots.append(len(checks))
            jobs.append(pre)
        checks.append(None)
    if jobs:
        statuses = run_math_jobs(jobs, timeout_s, workers, pool)
        for slot, (extracted, _), status in zip(slots, jobs, statuses):
            checks[slot] = Check(status == "correct", extracted, status)
    for slot, check in zip((c[0] for c in code), verify_code_batch([(a, r) for _, a, r in code], sandbox)):
        checks[slot] = check
    return checks  # type: ignore[return-value]  # every slot is filled


def verify_math(answer_text: str, reference: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Check:
    return verify_batch([("math", answer_text, reference)], timeout_s)[0]


def verify_answer(kind: str, answer_text: str, reference: Any, timeout_s: float = DEFAULT_TIMEOUT_S,
                  sandbox: Any = None) -> Check:
    """Dispatch by problem kind (math | multiple_choice | code); the single entry point for filter and eval."""
    return verify_batch([(kind, answer_text, reference)], timeout_s, sandbox=sandbox)[0]
