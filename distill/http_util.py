"""Small HTTP helpers shared by the Hub client and the OpenAI-compatible sampler.

:func:`retry_wait` is the project's one wait policy between HTTP retries
(exponential backoff with jitter; ``Retry-After`` honoured, capped, and spread
after the server's time so clients told the same wait do not return in one
wave); :func:`is_retryable_status` its status rule.  :func:`call_with_retries`
is the synchronous retry loop built on them (the Hub client's).  The OpenAI
sampler runs its own loop on asyncio -- a blocking ``time.sleep`` there would
stall every other request in flight, and it moves a retry to another endpoint
and ends in a recorded failure instead of an exception -- so what the two loops
share is the wait and the status rule, not the loop.
"""

from __future__ import annotations

import email.utils
import importlib
import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, TypeVar

from distill.errors import DistillError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


def scrub_secret(text: str, secret: str | None) -> str:
    """Remove ``secret`` and any bearer credential from text bound for an error message or a log line."""
    text = str(text)
    if secret:
        text = text.replace(secret, "***")
    return _BEARER_RE.sub(r"\1***", text)


# --------------------------------------------------------------------------- #
# Retrying
# --------------------------------------------------------------------------- #


# Spread added after a server's Retry-After, as a share of that wait (or of the backoff base, when the
# server said 0): 500 requests told "come back in 2 s" return over 2-2.5 s, not in the same millisecond.
RETRY_AFTER_SPREAD = 0.25


def retry_wait(attempt: int, retry_after: float | None, *, base: float, cap: float,
               retry_after_cap: float | None = None, floor: float = 0.5,
               rng: random.Random | None = None) -> float:
    """The wait before retry ``attempt + 1`` (``attempt`` counts from 0): every client's one wait policy.

    Without ``Retry-After``: exponential backoff ``d = min(cap, base * 2**attempt)``,
    drawn uniformly from ``[floor * d, d]`` (``floor=0`` is full jitter, 0.5
    "equal" jitter).  With it: the server's wait, clamped to ``retry_after_cap``
    (default ``cap``) so a misbehaving proxy cannot park a run for hours, plus a
    uniform spread of up to :data:`RETRY_AFTER_SPREAD` of it -- never earlier than
    the server asked, because a client that comes back early is refused again.
    """
    draw = (rng or random).uniform
    if retry_after is not None:
        wait = min(max(0.0, retry_after), cap if retry_after_cap is None else retry_after_cap)
        return wait + draw(0.0, RETRY_AFTER_SPREAD * max(wait, base))
    delay = min(cap, base * (2**attempt))
    return draw(floor * delay, delay)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry a failed HTTP call and how long to wait in between.

    ``retry_after_cap`` clamps the server's ``Retry-After``, so a misbehaving
    proxy cannot park a run for hours; the call fails after ``max_retries``
    instead and can be rerun.
    """

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_cap: float = 300.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before retry ``attempt + 1``: :func:`retry_wait` with equal jitter ([d/2, d]) for backoff."""
        return retry_wait(attempt, retry_after, base=self.backoff_base, cap=self.backoff_max,
                          retry_after_cap=self.retry_after_cap, floor=0.5)


def _causes(exc: BaseException):
    """``exc`` and the exceptions behind it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def http_failure(exc: BaseException) -> tuple[int | None, float | None]:
    """Find the HTTP status and Retry-After behind ``exc`` (any exception with a ``.response``).

    Why walk the chain: clients wrap some failures (huggingface_hub re-raises an
    LFS upload error as RuntimeError from the HTTP error).
    """
    for cur in _causes(exc):
        response = getattr(cur, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            headers = getattr(response, "headers", None) or {}
            try:
                retry_after = retry_after_seconds(headers.get("Retry-After"))
            except Exception:
                retry_after = None
            return status, retry_after
    return None, None


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors worth retrying, whichever HTTP client (httpx, requests) is in use."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = importlib.import_module(module)
        except Exception:
            continue
        for attr in ("TransportError", "ConnectionError", "Timeout"):
            cls = getattr(mod, attr, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                types.append(cls)
    return tuple(types)


def is_transport_error(exc: BaseException, types: tuple[type[BaseException], ...] | None = None) -> bool:
    """True when ``exc`` or an exception behind it is a connection-level error (``types``, default all known)."""
    types = transport_errors() if types is None else types
    return any(isinstance(cur, types) for cur in _causes(exc))


# The statuses every client here retries: rate limited, and a server or gateway in transient trouble.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable_status(status: int | None) -> bool:
    """429 and 5xx are the server asking to come back later; other statuses will not change on retry.

    :data:`TRANSIENT_STATUSES` is the part both clients agree on; the Hub also
    retries the rarer 5xx, the OpenAI sampler also 408 (its wire module's rule).
    """
    return status in TRANSIENT_STATUSES or (status is not None and 500 <= status <= 599)


def classify_failure(exc: BaseException) -> tuple[int | None, float | None, bool]:
    """``(HTTP status, Retry-After seconds, retryable)`` for a failed call."""
    status, retry_after = http_failure(exc)
    retryable = is_retryable_status(status)
    if status is None and is_transport_error(exc):
        retryable = True
    return status, retry_after, retryable


def _give_up_note(retryable: bool, status: int | None, max_retries: int, auth_hint: str | None) -> str:
    if retryable:
        return f" (gave up after {max_retries} retries)"
    if status in (401, 403) and auth_hint:
        return f" ({auth_hint})"
    return ""


def call_with_retries(
    what: str,
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    scrub: Callable[[str], str],
    make_error: Callable[[str, int | None], Exception],
    auth_hint: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: logging.Logger = logger,
) -> T:
    """Call ``fn``; retry on HTTP 429, 5xx and connection errors; raise ``make_error(message, status)`` otherwise.

    Why these and only these: 429 and 5xx are the server asking us to come back
    later; 400/401/403/404 will not change on retry and retrying auth failures
    only risks a lockout (``auth_hint`` is appended to a 401/403 message).  A
    :class:`~distill.errors.DistillError` from ``fn`` is a decision already made
    and passes through.  Every message goes through ``scrub``, and the raised
    error is built outside the ``except`` block so it chains no exception that
    might hold the secret.  ``sleep`` is a seam for tests; ``log`` names the
    caller's logger.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except DistillError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, then re-raised scrubbed
            status, retry_after, retryable = classify_failure(exc)
            message = scrub(f"{what} failed: {type(exc).__name__}: {exc}")
            reason = f"HTTP {status}" if status is not None else scrub(type(exc).__name__)
        if not retryable or attempt >= policy.max_retries:
            message += _give_up_note(retryable, status, policy.max_retries, auth_hint)
            # Not logged at error level: the caller reports the raised error, once.
            log.debug("%s", message)
            raise make_error(message, status)
        delay = policy.delay(attempt, retry_after)
        log.warning("%s: %s; retry %d/%d in %.1fs", what, reason, attempt + 1, policy.max_retries, delay)
        sleep(delay)
        attempt += 1
