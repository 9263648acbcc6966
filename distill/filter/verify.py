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

Why worker processes: math-verify hands answers to sympy, and a model can box
anything -- ``9^{9^{9^{9}}}`` sends sympy after a power that never finishes,
``1000000!`` takes seconds, a megabyte of LaTeX stalls the parser.  An alarm in the
worker stops most such work at the timeout; work stuck inside one C call ignores
signals, so the final bound is a separate process that is killed when its time is
up.  :class:`VerifierPool` runs math-verify in such processes; a job past its
timeout gets ``status="error_infra"`` (counted apart from wrong answers), and a
worker that does not come back is killed and replaced.

Why a fast path: most answers (AIME, AMC, GSM8K, and many MATH ones) are plain
numbers or the reference string written the same way.  :func:`quick_check`
decides those in the calling process in microseconds, and only the rest go to
the workers.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
# The worker's own alarm stops Python-level work at the timeout and the worker lives on;
# past this much more, the job is stuck in C code (a huge integer power) and the worker is killed.
HARD_DEADLINE_GRACE_S = 0.25
# A boxed "answer" longer than this is a runaway generation, not a final answer:
# it is wrong without asking sympy (which could spend minutes parsing it).
MAX_ANSWER_CHARS = 4096
STATUSES = ("correct", "wrong", "no_answer", "error_infra")


@dataclass(frozen=True)
class Check:
    correct: bool
    extracted: str  # the final answer we read, "" if none; for code, the sandbox outcome
    status: str  # correct | wrong | no_answer | error_infra
    detail: str = ""  # code: which test failed and how


# --------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_BRACE_RE = re.compile(r"[{}]")


def _box_at(text: str, start: int) -> tuple[str, int] | None:
    r"""(content, end) of the box whose command ends at ``start``; None if unclosed or empty-handed.

    Handles ``\boxed{...}`` with nested braces and the brace-less ``\boxed 5`` form.
    """
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        m = re.match(r"\s+(\S+)", text[start:])  # "\boxed 5" form
        if not m:
            return None
        return m.group(1).rstrip(".$"), start + m.end()
    depth = 0
    for m in _BRACE_RE.finditer(text, i):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[i + 1 : m.start()].strip(), m.end()
    return None


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces balanced; None if absent or unclosed."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    found = _box_at(text, idx + (len("\\boxed") if text.startswith("\\boxed", idx) else len("\\fbox")))
    return None if found is None else found[0]


def all_boxed(text: str) -> list[str]:
    """Contents of every closed box, in order; boxes nested inside another are part of the outer one."""
    found: list[str] = []
    pos = 0
    for m in _BOX_RE.finditer(text):
        if m.start() < pos:
            continue
        box = _box_at(text, m.end())
        if box is not None:
            found.append(box[0])
            pos = box[1]
    return found


# --------------------------------------------------------------------------- fast path

_SPACING_RE = re.compile(r"\\[,;:! ]|\\left|\\right|~|\s+")
_TEXT_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\{([^{}]*)\}")
_DEGREE_RE = re.compile(r"\^\{?\\circ\}?|°")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INT_RE = re.compile(r"-?\d{1,60}")
_DECIMAL_RE = re.compile(r"-?(?:\d{1,60}(?:\.\d{0,60})?|\.\d{1,60})")
_FRAC_RE = re.compile(r"(-?)(?:\\frac\{(-?\d{1,30})\}\{(\d{1,30})\}|(-?\d{1,30})/(\d{1,30}))")
_PERCENT_RE = re.compile(r"\\?%")
_ASSIGN_RE = re.compile(r"[A-Za-z]=")


def normalise_answer(text: str, drop_assignment: bool = True) -> str:
    r"""A canonical spelling for exact matching: no spacing, ``\dfrac``→``\frac``, no degree/``\$``/percent signs,
    ``\text{}`` unwrapped, ``x =`` dropped, thousands commas dropped, ``(B)``→``B``.

    Equal normal forms mean equal answers; different ones mean nothing (math-verify decides).
    """
    s = text.strip().strip("$")
    s = _SPACING_RE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "")
    s = _DEGREE_RE.sub("", s)
    s = _PERCENT_RE.sub("", s)
    for _ in range(3):  # nested \text{\textbf{..}}
        s, n = _TEXT_RE.subn(r"\1", s)
        if not n:
            break
    s = s.rstrip(".")
    if drop_assignment and _ASSIGN_RE.match(s) and s.count("=") == 1:  # "x = 5" boxes 5 (math-verify agrees)
        s = s[s.index("=") + 1 :]
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if re.fullmatch(r"\([A-Za-z]\)", s):
        s = s[1]
    return s


def plain_number(text: str) -> Fraction | None:
    r"""The value of an integer, decimal or simple fraction (``3/4``, ``\frac{3}{4}``), else None.

    Bounded lengths and no exponent notation, so no input can make this slow.
    """
    if _DECIMAL_RE.fullmatch(text):
        return Fraction(text) if text not in ("-", ".", "-.") else None
    m = _FRAC_RE.fullmatch(text)
    if m:
        sign, num, den = m.group(1), m.group(2) or m.group(4), m.group(3) or m.group(5)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign else value
    return None


_NUM_TOKEN_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\frac|\\sqrt|\\pi|\\cdot|\\times|[-+*/^(){}\[\]]")
_NUMERIC_CHARS_RE = re.compile(r"(?:\d|\.|\\frac|\\sqrt|\\pi|\\cdot|\\times|[-+*/^(){}\[\]])+")


class _Expr:
    """A recursive-descent evaluator for constant LaTeX scalars: numbers, + - * / ^, \\frac, \\sqrt, \\pi.

    Floats only, so no input can make it slow: ``9^{9^{9^9}}`` overflows at once
    instead of computing a power for ever.  Anything else (variables, tuples, text,
    factorials, brace-less ``\\frac12``, ``2\\frac{1}{2}`` which math-verify reads as a mixed
    number, ``2(3)``) raises ValueError and goes to math-verify.
    """

    def __init__(self, text: str) -> None:
        self.tokens = _NUM_TOKEN_RE.findall(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def value(self) -> float:
        result = self.expr()
        if self.peek() is not None:
            raise ValueError("trailing tokens")
        return result

    def expr(self) -> float:
        total = self.term()
        while self.peek() in ("+", "-"):
            total = total + self.term() if self.take() == "+" else total - self.term()
        return total

    def term(self) -> float:
        total = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                total *= self.unary()
            elif tok == "/":
                self.take()
                total /= self.unary()
            elif tok in ("\\sqrt", "\\pi"):
                total *= self.unary()  # implicit product: 2\sqrt{3}, 3\pi (not 2\frac12: a mixed number)
            else:
                return total

    def unary(self) -> float:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return float(base ** self.unary())  # right-associative; OverflowError/complex caught by the caller
        return base

    def group(self) -> float:
        self.take("{")
        inner = self.expr()
        self.take("}")
        return inner

    def atom(self) -> float:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return float(tok)
        if tok == "\\pi":
            return math.pi
        if tok == "\\frac":
            num = self.group()
            return num / self.group()
        if tok == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            return self.group() ** (1.0 / index)
        if tok in ("(", "{"):
            inner = self.expr()
            self.take(")" if tok == "(" else "}")
            return inner
        raise ValueError(f"unexpected {tok!r}")


def numeric_value(text: str) -> float | None:
    """The value of a constant scalar in LaTeX (``\\frac{\\sqrt{3}}{2}``, ``2\\pi``), else None."""
    s = normalise_answer(text)
    if not s or len(s) > 200 or not _NUMERIC_CHARS_RE.fullmatch(s):
        return None
    try:
        value = _Expr(s).value()
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def quick_check(extracted: str, reference: str) -> bool | None:
    """True/False when the answer is decidable without math-verify, None when it is not.

    Correct: equal normal forms, equal plain numbers, or constant expressions with
    equal values.  Wrong: different values, when both are integers or they differ by
    more than math-verify's rounding could forgive (it accepts 0.333333 for 1/3), and
    no percent sign makes 50 and 0.5 the same answer.
    """
    both_assign = all(_ASSIGN_RE.match(_SPACING_RE.sub("", t.strip().strip("$"))) for t in (extracted, reference))
    a, b = normalise_answer(extracted, not both_assign), normalise_answer(reference, not both_assign)  # x=5 vs y=5
    if a and a == b:
        return True
    if both_assign:
        return None
    x, y = plain_number(a), plain_number(b)
    if x is not None and y is not None:
        if x == y:
            return True
        if _INT_RE.fullmatch(a) and _INT_RE.fullmatch(b) and not _has_percent(extracted, reference):
            return False
        return _far_apart(float(x), float(y), extracted, reference)
    u, v = numeric_value(a), numeric_value(b)
    if u is None or v is None:
        return None
    if math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-15):
        return True
    return _far_apart(u, v, extracted, reference)


def _has_percent(*texts: str) -> bool:
    return any(_PERCENT_RE.search(t) for t in texts)


def _far_apart(x: float, y: float, extracted: str, reference: str) -> bool | None:
    """False (wrong) when two values differ beyond any rounding math-verify allows; None when it must decide."""
    if _has_percent(extracted, reference):
        return None
    return False if abs(x - y) > 1e-4 * max(1.0, abs(x), abs(y)) else None


# --------------------------------------------------------------------------- math-verify (runs in workers)


def _math_equal(extracted: str, reference: str) -> bool:
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
        return "correct" if _math_equal(extracted, reference) else "wrong"
    except BaseException as exc:  # noqa: BLE001 - timeouts, MemoryError, RecursionError, sympy bugs: infrastructure
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        log.debug("math-verify error on %r vs %r: %r", extracted[:200], reference[:200], exc)
        return "error_infra"
    finally:
        if soft_timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _worker_main(conn, memory_limit_mb: int | None) -> None:
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


# --------------------------------------------------------------------------- the pool


class _Worker:
    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        self.started = time.monotonic()


class VerifierPool:
    """Worker processes running math-verify, each job under a hard wall-clock deadline.

    One job per worker at a time over a private pipe, so the parent always knows which
    job a stuck worker holds.  Two timeouts: the worker's alarm interrupts Python-level
    work at ``timeout_s`` (the worker survives, the job is ``error_infra``); a job still
    running ``HARD_DEADLINE_GRACE_S`` later is stuck in C code, so its worker is
    SIGKILLed and replaced while the others carry on.  ``soft_timeouts=False`` leaves
    only the kill.  Workers come from a forkserver that has math-verify imported, so a
    replacement starts in milliseconds (and warms up before it takes a job).
    """

    START_TIMEOUT_S = 120.0

    def __init__(self, workers: int = 1, memory_limit_mb: int | None = 4096, soft_timeouts: bool = True) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.size = workers
        self.memory_limit_mb = memory_limit_mb
        self.soft_timeouts = soft_timeouts
        self.pid = os.getpid()
        self.replaced = 0
        self._start_failures = 0
        self._ctx = _mp_context()
        self._workers: list[_Worker] = [self._spawn() for _ in range(workers)]

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child, self.memory_limit_mb), daemon=True,
                                    name="distill-verify")
        with _main_module_hidden():
            process.start()
        child.close()
        return _Worker(process, parent)

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a worker (stuck, dead or broken) and start its successor in its slot."""
        _kill(worker)
        self.replaced += 1
        fresh = self._spawn()
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def run(self, jobs: Sequence[tuple[str, str]], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
        """Status (correct | wrong | error_infra) of each (extracted, reference) job, in order."""
        from multiprocessing.connection import wait

        results: list[str | None] = [None] * len(jobs)
        replaced_before = self.replaced
        queue = deque(range(len(jobs)))
        busy: dict[_Worker, tuple[int, float]] = {}  # worker -> (job, deadline)
        while queue or busy:
            self._dispatch(jobs, queue, busy, timeout_s)
            waiting = [w for w in self._workers if w in busy or not w.ready]
            now = time.monotonic()
            deadlines = [d for _, d in busy.values()] + [w.started + self.START_TIMEOUT_S for w in waiting]
            ready = wait([w.conn for w in waiting], timeout=max(0.0, min(deadlines, default=now) - now))
            by_conn = {w.conn: w for w in waiting}
            for conn in ready:
                self._receive(by_conn[conn], busy, results, queue)
            self._expire(busy, results)
        statuses = [r or "error_infra" for r in results]
        errors = statuses.count("error_infra")
        if errors:
            log.warning("%d of %d math-verify jobs timed out (%.1fs) or failed: error_infra; %d workers replaced",
                        errors, len(jobs), timeout_s, self.replaced - replaced_before)
        return statuses

    def _dispatch(self, jobs, queue: deque, busy: dict, timeout_s: float) -> None:
        for worker in list(self._workers):
            if not queue:
                return
            if not worker.ready or worker in busy:
                continue
            index = queue.popleft()
            try:
                worker.conn.send((index, *jobs[index], timeout_s if self.soft_timeouts else None))
            except (OSError, ValueError):  # the worker died between jobs: retry the job elsewhere
                queue.appendleft(index)
                self._replace(worker)
                continue
            busy[worker] = (index, time.monotonic() + timeout_s + HARD_DEADLINE_GRACE_S)

    def _receive(self, worker: _Worker, busy: dict, results: list, queue: deque) -> None:
        try:
            msg = worker.conn.recv()
        except (EOFError, OSError):  # died mid-job (OOM killer, a crash in C code) or while starting
            if not worker.ready:
                self._start_failures += 1
                if self._start_failures > 3:
                    raise RuntimeError("verifier workers die while starting (is math-verify installed?)")
            job = busy.pop(worker, None)
            if job is not None:
                results[job[0]] = "error_infra"
                log.warning("verifier worker %s died on job %d; replaced", worker.process.pid, job[0])
            self._replace(worker)
            return
        if msg[0] == "ready":
            worker.ready = True
            self._start_failures = 0
            return
        index, status = msg
        busy.pop(worker, None)
        results[index] = status

    def _expire(self, busy: dict, results: list) -> None:
        now = time.monotonic()
        for worker, (index, deadline) in list(busy.items()):
            if deadline <= now:
                busy.pop(worker)
                results[index] = "error_infra"
                log.debug("math-verify job %d passed its deadline; worker %s killed", index, worker.process.pid)
                self._replace(worker)
        for worker in list(self._workers):
            if not worker.ready and worker not in busy and now - worker.started > self.START_TIMEOUT_S:
                raise RuntimeError(f"verifier worker did not start within {self.START_TIMEOUT_S:.0f}s")

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            _kill(worker)
        self._workers = []

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _kill(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(timeout=5)
    worker.conn.close()


@contextmanager
def _main_module_hidden():
    """Start a worker without it re-importing the caller's ``__main__``.

    multiprocessing makes spawn/forkserver children import the parent's main script;
    that fails in scripts without an ``if __name__ == "__main__"`` guard and costs every
    worker the script's imports (torch, say).  The worker needs only this module, so
    the main module's file and spec are hidden while the child's start data is taken.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _mp_context():
    """A forkserver context preloading math-verify (fast, fork-safe replacements); spawn where there is none."""
    import multiprocessing as mp

    try:
        ctx = mp.get_context("forkserver")
    except ValueError:
        return mp.get_context("spawn")
    ctx.set_forkserver_preload(["distill.filter.verify", "math_verify", "sympy"])
    return ctx


_shared: VerifierPool | None = None
_shared_lock = threading.Lock()


def default_workers() -> int:
    """Verifier processes when none are asked for: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _shared_pool(workers: int | None) -> VerifierPool:
    """The process-wide pool, created on first use (and again after a fork or a size change)."""
    global _shared
    size = workers or (_shared.size if _shared is not None else default_workers())
    if _shared is not None and (_shared.pid != os.getpid() or _shared.size != size):
        if _shared.pid == os.getpid():
            _shared.close()
        _shared = None
    if _shared is None:
        _shared = VerifierPool(size)
    return _shared


def shutdown() -> None:
    """Stop the shared verifier workers (also done at interpreter exit)."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared.pid == os.getpid():
            _shared.close()
        _shared = None


atexit.register(shutdown)


# --------------------------------------------------------------------------- public API

# A choice is a capital letter standing alone: "(B)", "B.", "B:", "B" -- never the article "a" or a unit "J".
_CHOICE = r"\(?([A-J])\)?(?![A-Za-z0-9])"
_BOXED_CHOICE_RE = re.compile(r"^\s*" + _CHOICE)
_STATED_CHOICE_RE = re.compile(r"(?i:answer)(?:\s*(?i:is))?[\s:*]*" + _CHOICE)
_LAST_LINE_CHOICE_RE = re.compile(r"^\W*" + _CHOICE + r"\W*$")


def chosen_letter(answer_text: str) -> str | None:
    r"""The letter an answer chooses, or None.

    Read strictly, because a loose read inflates multiple-choice scores: the letter that opens
    ``\boxed{}`` (``\boxed{\text{B. 4 J}}`` is B, not the unit J); without a box, the last
    "answer is (X)" / "Answer: X", else a final line that is only a letter. Lower-case letters never
    count, so "I pick a value" chooses nothing.
    """
    boxed = last_boxed(answer_text)
    if boxed is not None:
        inner = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", boxed)
        m = _BOXED_CHOICE_RE.match(inner)
        return m.group(1) if m else None
    stated = _STATED_CHOICE_RE.findall(answer_text)
    if stated:
        return stated[-1]
    lines = [line for line in answer_text.strip().splitlines() if line.strip()]
    m = _LAST_LINE_CHOICE_RE.match(lines[-1]) if lines else None
    return m.group(1) if m else None


def verify_choice(answer_text: str, reference: str) -> Check:
    choice = chosen_letter(answer_text)
    if choice is None:
        return Check(False, "", "no_answer")
    ok = choice == reference.strip().upper()
    return Check(ok, choice, "correct" if ok else "wrong")


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
        statuses = _run_jobs(jobs, timeout_s, workers, pool)
        for slot, (extracted, _), status in zip(slots, jobs, statuses):
            checks[slot] = Check(status == "correct", extracted, status)
    for slot, check in zip((c[0] for c in code), verify_code_batch([(a, r) for _, a, r in code], sandbox)):
        checks[slot] = check
    return checks  # type: ignore[return-value]  # every slot is filled


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


def _run_jobs(jobs: list[tuple[str, str]], timeout_s: float, workers: int | None,
              pool: VerifierPool | None) -> list[str]:
    if pool is not None:
        return pool.run(jobs, timeout_s)
    with _shared_lock:
        return _shared_pool(workers).run(jobs, timeout_s)


def verify_math(answer_text: str, reference: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Check:
    return verify_batch([("math", answer_text, reference)], timeout_s)[0]


def verify_answer(kind: str, answer_text: str, reference: Any, timeout_s: float = DEFAULT_TIMEOUT_S,
                  sandbox: Any = None) -> Check:
    """Dispatch by problem kind (math | multiple_choice | code); the single entry point for filter and eval."""
    return verify_batch([(kind, answer_text, reference)], timeout_s, sandbox=sandbox)[0]
