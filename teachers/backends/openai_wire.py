"""The OpenAI ``/chat/completions`` wire format: request bodies out, completions (and usage) back.

Everything here is about one request and its one response, with no network and
no concurrency: how a prompt becomes a request body, which responses are worth
another try (:class:`RetryableError`) and which never are (:class:`FatalError`),
and how a choice's text and separately returned reasoning (``reasoning_content``
from DeepSeek, ``reasoning`` from newer vLLM) become a
:class:`~distill.teachers.sampling_types.Completion`.  The client that sends
requests, bounds concurrency and retries lives in
:mod:`distill.teachers.backends.openai_http`.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from distill.http_util import TRANSIENT_STATUSES, retry_after_seconds
from distill.teachers.pricing import PriceTable, cost
from distill.teachers.reasoning import THINK_CLOSE, THINK_OPEN
from distill.teachers.sampling_types import Completion, Messages, SamplingParams

# Statuses worth another try: rate limiting, request timeout and transient server trouble.
RETRY_STATUSES = TRANSIENT_STATUSES | {408}  # the Hub's transient statuses, and a server's request timeout
# DeepSeek ends a request with this finish_reason when it ran out of capacity mid-generation.
RETRY_FINISH_REASONS = frozenset({"insufficient_system_resource"})
ERROR_SNIPPET_CHARS = 200
KNOWN_COUNTS_MAX = 65536

Scrub = Callable[[str], str]


class RetryableError(Exception):
    """A failed attempt another attempt may fix; ``retry_after`` is the server's requested wait, if any."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class FatalError(Exception):
    """A failure retrying cannot fix (bad request, bad key, too large)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RequestJob:
    """One HTTP request: ``n`` choices for prompt ``prompt_index``, filling slots from ``first_slot``."""

    prompt_index: int
    first_slot: int
    n: int
    body: dict[str, Any]
    prefilled: bool


class ParsedChoice(NamedTuple):
    """One choice of a response: the answer text, the separately returned reasoning, the raw finish_reason."""

    content: str
    reasoning: str | None
    finish: str


# ---------------------------------------------------------------------------- requests


def is_prefilled(messages: Messages) -> bool:
    """The prompt ends in an assistant turn that opens a think block, which the model should continue."""
    if not messages:
        return False
    last = messages[-1]
    return last.get("role") == "assistant" and str(last.get("content", "")).lstrip().startswith(THINK_OPEN)


def request_job(prompt_index: int, first_slot: int, n: int, messages: Messages, params: SamplingParams,
                *, seed: int, model: str, max_tokens: int, extra_body: Mapping[str, Any]) -> RequestJob:
    """The request for ``n`` choices of one prompt; ``extra_body`` fields come first, ours override them."""
    prefilled = is_prefilled(messages)
    body: dict[str, Any] = {
        **extra_body,
        "model": model,
        "messages": list(messages),
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": max_tokens,
        "seed": seed,
    }
    if n > 1:
        body["n"] = n
    if prefilled:
        # vLLM's way to continue the final assistant message instead of opening a new turn.
        body.update(continue_final_message=True, add_generation_prompt=False)
    return RequestJob(prompt_index, first_slot, n, body, prefilled)


# ---------------------------------------------------------------------------- responses


def parse_response(response: Any, job: RequestJob, scrub: Scrub) -> tuple[list[ParsedChoice], dict[str, Any]]:
    """The choices (at most ``job.n``) and the usage block of a response, or the error that ends this attempt.

    Raises :class:`RetryableError` for retryable statuses, malformed JSON and empty
    answers, :class:`FatalError` for client errors; ``scrub`` removes the API key
    from every reason.
    """
    status = response.status_code
    if not 200 <= status < 300:
        reason = scrub(f"http {status}: {error_message(response)}")
        if status in RETRY_STATUSES:
            raise RetryableError(reason, parse_retry_after(response.headers))
        raise FatalError(reason)
    data = response_json(response, scrub)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        detail = f": {error_message(response)}" if data.get("error") else ""
        raise RetryableError(scrub(f"empty choices{detail}"))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    parsed = [parse_choice(c) for c in choices[: job.n]]
    check_not_empty(parsed, usage)
    return parsed, usage


def response_json(response: Any, scrub: Scrub) -> dict[str, Any]:
    """The response body as a JSON object; anything else is a malformed (retryable) answer."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        snippet = response.content[:60].decode("utf-8", "replace").replace("\n", " ")
        raise RetryableError(scrub(f"malformed json: {snippet!r}")) from None
    if not isinstance(data, dict):
        raise RetryableError(f"malformed json: top level is {type(data).__name__}, not an object")
    return data


def parse_choice(choice: Any) -> ParsedChoice:
    """(content, reasoning, raw finish_reason) of one choice; a bad shape is a malformed answer."""
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise RetryableError("malformed json: choice without a message")
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning") or None
    if not isinstance(content, str) or not isinstance(reasoning, (str, type(None))):
        raise RetryableError("malformed json: content is not text")
    finish = str(choice.get("finish_reason") or "stop")
    if finish in RETRY_FINISH_REASONS:
        raise RetryableError(f"finish_reason {finish}")
    return ParsedChoice(content, reasoning, finish)


def check_not_empty(parsed: Sequence[ParsedChoice], usage: Mapping[str, Any]) -> None:
    """Nothing generated at all (no text, no reasoning, no tokens billed) is a server hiccup, not an answer."""
    if all(not content.strip() and not reasoning for content, reasoning, _ in parsed) and \
            not as_int(usage.get("completion_tokens")):
        raise RetryableError("empty completion")


def to_completions(parsed: Sequence[ParsedChoice], usage: Mapping[str, Any], job: RequestJob) -> list[Completion]:
    """The choices as completions, the request's completion tokens shared among them (:func:`split_tokens`).

    A ``content_filter`` finish is a recorded error: the provider withheld the text.
    """
    prompt_tokens = as_int(usage.get("prompt_tokens"))
    shares = split_tokens(as_int(usage.get("completion_tokens")),
                          [len(c) + len(r or "") for c, r, _ in parsed],
                          [job.body["max_tokens"] if f == "length" else None for _, _, f in parsed])
    completions = []
    for (content, reasoning, finish), tokens in zip(parsed, shares):
        filtered = finish == "content_filter"
        completions.append(Completion(
            text=content, reasoning=reasoning, finish_reason="error" if filtered else _finish(finish),
            prompt_tokens=prompt_tokens, completion_tokens=tokens, prefilled_think=job.prefilled,
            error="content_filter: the provider withheld the completion" if filtered else ""))
    return completions


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``; None if absent/bad."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"), now)


def error_message(response: Any) -> str:
    """The server's error message (OpenAI ``{"error": {"message": ...}}`` or plain text), one short line."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        data = None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        message = (err.get("message") if isinstance(err, dict) else err) or data.get("message") or data.get("detail")
    if not message:
        message = response.content[:ERROR_SNIPPET_CHARS].decode("utf-8", "replace") or getattr(
            response, "reason_phrase", "")
    return " ".join(str(message).split())[:ERROR_SNIPPET_CHARS]


def _finish(raw: str) -> str:
    return "length" if raw == "length" else "stop"


def as_int(value: Any) -> int:
    """A usage count as an int; missing or malformed counts are 0 (servers omit fields freely)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def split_tokens(total: int, weights: list[int], known: list[int | None]) -> list[int]:
    """Share a request's completion tokens among its ``n`` choices (usage only gives the sum).

    A choice cut at ``max_tokens`` used exactly that many; the rest is shared by
    text length, an estimate.  Exact when there is one choice.
    """
    if len(weights) == 1:
        return [total]
    shares = [min(k, total) if k is not None else 0 for k in known]
    left = max(0, total - sum(shares))
    open_ = [i for i, k in enumerate(known) if k is None]
    if not open_:
        return shares
    whole = sum(weights[i] for i in open_)
    for i in open_:
        shares[i] = left * weights[i] // whole if whole else left // len(open_)
    shares[max(open_, key=lambda i: weights[i])] += left - sum(shares[i] for i in open_)
    return shares


# ---------------------------------------------------------------------------- usage and token counts


@dataclass
class UsageStats:
    """Running totals over the sampler's life: what was asked, what came back, what it cost."""

    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    failures: int = 0  # samples that ended as recorded errors
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit_tokens: int = 0
    cost_usd: float = 0.0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def record_usage(self, usage: Mapping[str, Any], price_table: PriceTable | None) -> None:
        """Add one response's usage block (and its cost, when prices are known)."""
        prompt, completion = as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens"))
        details = usage.get("completion_tokens_details")
        cached = usage.get("prompt_tokens_details")
        hit = as_int(usage.get("prompt_cache_hit_tokens")) or (
            as_int(cached.get("cached_tokens")) if isinstance(cached, dict) else 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.reasoning_tokens += as_int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        self.cache_hit_tokens += hit
        if price_table is not None:
            self.cost_usd += cost(prompt, completion, price_table, datetime.now(timezone.utc), hit)

    def record_failures(self, reason: str, count: int) -> None:
        """``count`` samples failed for ``reason`` (counted by the part before its first colon)."""
        self.failures += count
        key = reason.split(":", 1)[0]
        self.failure_reasons[key] = self.failure_reasons.get(key, 0) + count


class KnownTokenCounts:
    """The server's exact reasoning/answer token counts by text, so ``count_tokens`` can return them.

    Bounded (oldest forgotten first): a long run must not keep every trace's hash.
    """

    def __init__(self, limit: int = KNOWN_COUNTS_MAX):
        self._counts: OrderedDict[int, int] = OrderedDict()
        self._limit = limit

    def get(self, text: str) -> int | None:
        return self._counts.get(hash(text.strip()))

    def remember(self, choice: ParsedChoice, usage: Mapping[str, Any]) -> None:
        """Keep the counts of a single-choice response whose reasoning came separately and was counted."""
        content, reasoning, _ = choice
        details = usage.get("completion_tokens_details")
        thinking = as_int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        if not reasoning or not thinking or THINK_CLOSE in content:
            return
        self._counts[hash(reasoning.strip())] = thinking
        self._counts[hash(content.strip())] = max(0, as_int(usage.get("completion_tokens")) - thinking)
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)


# Roughly how BPE tokenizers cut text: each digit, letter runs of up to four, each other symbol.
_TOKEN_PIECES = re.compile(r"\d|[^\W\d_]{1,4}|[^\w\s]|_")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate (digits one by one, ~4 letters a token, punctuation one each)."""
    return len(_TOKEN_PIECES.findall(text))
