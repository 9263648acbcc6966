"""What runs inside a verifier worker process: math-verify on one (extracted, reference) pair at a time.

The parent side, with the hard deadline that kills a stuck worker, is :mod:`distill.filter.math_check`.
It needs nothing else from the package, so the forkserver preloads it (with math-verify and sympy)
and a replacement worker starts in milliseconds.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache

log = logging.getLogger(__name__)


def math_equal(extracted: str, reference: str) -> bool:
    """math-verify's judgement, with its signal timers off: the pool's deadline is the one timeout."""
    from math_verify import verify

    gold, pred = _parse_cached(reference), _parse_cached(extracted)
    if not gold or not pred:
        return _normalise(extracted) == _normalise(reference)
    return bool(verify(list(gold), list(pred), timeout_seconds=None))


@lru_cache(maxsize=8192)
def _parse_cached(text: str) -> tuple:
    """Parsed forms of an answer string; cached because k samples share one reference and often one answer."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return tuple(parse(f"${text}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                       parsing_timeout=None))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", "", text).strip("$.").lower()


class _JobTimeout(BaseException):
    """Raised by the worker's alarm; a BaseException so that no ``except Exception`` in sympy swallows it."""


def _on_alarm(signum, frame) -> None:
    raise _JobTimeout()


def _math_status(extracted: str, reference: str, soft_timeout: float | None = None) -> str:
    """correct | wrong | error_infra for one pair, never raising (the worker must survive anything).

    ``soft_timeout`` arms SIGALRM (worker processes only: they install :func:`_on_alarm`),
    which stops Python-level work such as sympy simplifying an integral; work stuck
    inside one C call ignores signals and is left to the pool's hard deadline.
    """
    import signal

    try:
        if soft_timeout:
            signal.setitimer(signal.ITIMER_REAL, soft_timeout)
        return "correct" if math_equal(extracted, reference) else "wrong"
    except BaseException as exc:  # noqa: BLE001 - timeouts, MemoryError, RecursionError, sympy bugs: infrastructure
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        log.debug("math-verify error on %r vs %r: %r", extracted[:200], reference[:200], exc)
        return "error_infra"
    finally:
        if soft_timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)


# One of each shape of answer math-verify meets.  Its LaTeX parser (ANTLR) builds its prediction tables lazily
# and keeps them for the process: a cold worker spends ~30 ms on each new shape of answer, a warmed one a third
# of that, so a worker warms up once before its first job rather than on a run's first few hundred.
_WARM_UP = (
    ("\\frac{1}{2}", "0.5"), ("(2,5]", "[-1, 4)"), ("(-\\infty, 1) \\cup (6, \\infty)", "y \\in [-3,8]"),
    ("\\{4, 7\\}", "2, 9, 11"),
    ("\\begin{pmatrix} 5 & 1 \\\\ 2 & 6 \\end{pmatrix}", "\\begin{pmatrix} -3 \\\\ 4/7 \\end{pmatrix}"),
    ("\\text{(D)}", "\\text{north}"), ("t^3 - 4t + 7", "5k^2 + 3k - 2"), ("3\\sqrt{11}", "\\frac{2\\pi}{5}"),
    ("2 \\pm \\sqrt{7}", "4-5i"), ("3021_4", "1562_{7}"), ("45^\\circ", "7\\mbox{ m}^2"),
    ("z = 3y - 1", "2.5 \\text{ dollars}"),
    ("2\\frac{3}{7}", "\\tan y"), ("\\left( 2, \\frac{\\pi}{4} \\right)", "(c+1)(d-3)"),
)


def worker_main(conn, memory_limit_mb: int | None, warm_up: bool = False) -> None:
    """A verifier process: answers (index, extracted, reference, timeout) with (index, status) until told to stop.

    ``warm_up`` parses :data:`_WARM_UP` first (about a second of CPU); without it, one pair warms the imports,
    so that a replacement for a killed worker takes the next job at once.
    """
    import signal
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
    signal.signal(signal.SIGALRM, _on_alarm)
    _die_with_parent()
    if memory_limit_mb:
        _limit_memory(memory_limit_mb)
    warnings.filterwarnings("ignore")
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for extracted, reference in _WARM_UP if warm_up else _WARM_UP[:1]:
        _math_status(extracted, reference)
    _parse_cached.cache_clear()  # warm parsers, but no answer cached from outside a real job
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, extracted, reference, soft_timeout = msg
        try:
            status = _math_status(extracted, reference, soft_timeout)
        except _JobTimeout:  # the alarm went off just as the job finished
            status = "error_infra"
        conn.send((index, status))


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent goes, so a stuck worker never outlives the run."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the daemon flag and EOF on the pipe still end idle workers
        pass


def _limit_memory(megabytes: int) -> None:
    """Cap the worker's address space: an answer that needs gigabytes is an infrastructure error, not an OOM."""
    try:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
