"""Small HTTP helpers shared by the Hub client and the OpenAI-compatible sampler."""

from __future__ import annotations

import email.utils
import re
from datetime import datetime, timezone


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
