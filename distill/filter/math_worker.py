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


def worker_main(conn, memory_limit_mb: int | None) -> None:
    """A verifier process: answers (index, extracted, reference, timeout) with (index, status) until told to stop."""
    import signal
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
    signal.signal(signal.SIGALRM, _on_alarm)
    _die_with_parent()
    if memory_limit_mb:
        _limit_memory(memory_limit_mb)
    warnings.filterwarnings("ignore")
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _math_status("\\frac{1}{2}", "0.5")  # warm up parsers so the first real job is not slow
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
