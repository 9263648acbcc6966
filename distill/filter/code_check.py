"""Code answers: the last fenced python block run against the problem's tests in the sandbox, as a :class:`Check`.

The tests are the ``reference`` -- a JSON string (what ``Problem.answer`` holds for a code problem)
or the dict/list itself, in stdin/stdout or function-call style (:func:`distill.filter.sandbox.parse_tests`).
The Check's ``extracted`` is the sandbox outcome (pass, wrong_answer, TLE, MLE, OLE,
runtime_error, blocked, error_infra) and ``detail`` says which test failed and how.  A sandbox
that cannot start is ``error_infra``, never correct or wrong.
"""

from __future__ import annotations

from typing import Any, Sequence

from distill.filter.answers import Check
from distill.filter.math_check import default_workers


def verify_code(answer_text: str, tests: Any, sandbox: Any = None, box: Any = None) -> Check:
    """Run the answer's last python block against ``tests`` in the sandbox (see the module docstring);
    ``box``, a :class:`distill.filter.sandbox.Sandbox` shared by a batch, else one built from ``sandbox``."""
    from distill.filter.sandbox import check_code

    status, result = check_code(answer_text, tests, sandbox, box)
    if result is None:
        return Check(False, "", status)
    return Check(status == "correct", result.outcome, status, result.detail)


def verify_code_batch(items: Sequence[tuple[str, Any]], sandbox: Any = None) -> list[Check]:
    """:func:`verify_code` for many (answer_text, tests) pairs, ``sandbox.workers`` (default: CPUs) at a time.

    Threads suffice: each one only waits on its sandbox process.  One Sandbox serves the whole batch, so
    its setup is probed once, and a sandbox that cannot start is found once, not re-probed per answer.
    """
    if not items:
        return []
    from concurrent.futures import ThreadPoolExecutor

    from distill.filter.sandbox import Sandbox

    box = Sandbox(sandbox)
    width = min(len(items), getattr(sandbox, "workers", None) or default_workers())
    if width == 1:
        return [verify_code(a, t, sandbox, box) for a, t in items]
    with ThreadPoolExecutor(width, thread_name_prefix="distill-sandbox") as ex:
        return list(ex.map(lambda item: verify_code(item[0], item[1], sandbox, box), items))
