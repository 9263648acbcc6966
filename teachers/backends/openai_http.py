"""The OpenAI-compatible HTTP backend: DeepSeek's API, a vLLM server, or any ``/chat/completions`` endpoint.

Hosted teachers are slow per request and fail often (rate limits, overload,
dropped connections), so this backend is built around three guarantees:

* **Bounded concurrency, async.**  Requests run on an asyncio loop through one
  ``httpx.AsyncClient``, at most ``max_concurrency`` in flight, spread over
  several endpoints by least-in-flight with round-robin tie-breaks.  The
  synchronous :meth:`OpenAISampler.generate` runs that loop itself (in a helper
  thread when the caller already runs one), so it satisfies the plain Sampler
  interface.
* **Bounded retries.**  429, 408, 500/502/503/504, timeouts, dropped or reset
  connections, malformed JSON and empty answers are retried with exponential
  backoff and full jitter, honouring ``Retry-After`` (seconds or HTTP date,
  capped at ``backoff_max_s``).  Client errors (400/401/403/404/413/422, ...)
  are never retried: the same request would fail the same way.
* **No exception per request.**  Every sample ends as a complete
  :class:`~distill.teachers.sampler.Completion` or as a recorded failure
  (``finish_reason="error"``, ``error="http 401: ..."``) that the filter counts
  as ``sampling_error``.  The API key is read from an environment variable, sent
  only in the ``Authorization`` header, and scrubbed from every error and log line.

``n`` samples per prompt are sent as ``n`` separate requests with seeds
``seed + i`` by default, because DeepSeek's ``deepseek-reasoner`` does not
support ``n > 1``; ``send_n=True`` asks the server for ``n`` choices at once
(vLLM supports it and shares the prompt's prefill).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from distill.http_util import retry_after_seconds, scrub_secret
from distill.teachers.pricing import PriceTable, cost, table_from_options
from distill.teachers.reasoning import THINK_CLOSE, THINK_OPEN
from distill.teachers.sampler import Completion, Messages, SamplingParams

log = logging.getLogger(__name__)

# reasoning_effort -> cap on max_tokens.  OpenAI-compatible servers (DeepSeek, vLLM) have no separate
# thinking budget, and max_tokens counts reasoning + answer, so the effort caps the whole completion:
# low ~ a short check, medium ~ a typical competition-math trace, high = R1's own 32k generation limit.
EFFORT_MAX_TOKENS: dict[str, int] = {"low": 1024, "medium": 8192, "high": 32768}


def effort_caps(spec: Mapping[str, int] | str | None) -> dict[str, int]:
    """The max_tokens cap per reasoning_effort level: the defaults, a mapping, or a sweep's file.

    A path names the ``reasoning_effort.json`` that ``eval.budget_sweep`` writes: its thinking
    budgets were measured on the curve, and each cap adds the sweep's answer allowance, because
    here max_tokens bounds thinking and answer together.
    """
    if spec is None:
        return dict(EFFORT_MAX_TOKENS)
    if isinstance(spec, str):
        try:
            data = json.loads(Path(spec).read_text(encoding="utf-8"))
            thinking = data["max_thinking_tokens"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"effort budgets file {spec}: not a budget sweep's reasoning_effort.json ({exc})") from None
        answer = int(data.get("answer_tokens", 0))
        spec = {level: int(tokens) + answer for level, tokens in thinking.items()}
    caps = {**EFFORT_MAX_TOKENS, **{str(k): int(v) for k, v in spec.items()}}
    if unknown := set(caps) - set(EFFORT_MAX_TOKENS):
        raise ValueError(f"effort budgets: unknown level(s) {sorted(unknown)}; use low, medium, high")
    if any(v < 1 for v in caps.values()):
        raise ValueError("effort budgets must be at least 1 token")
    return caps

# Statuses worth another try: rate limiting, request timeout and transient server trouble.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# DeepSeek ends a request with this finish_reason when it ran out of capacity mid-generation.
RETRY_FINISH_REASONS = frozenset({"insufficient_system_resource"})
ERROR_SNIPPET_CHARS = 200
KNOWN_COUNTS_MAX = 65536
CONNECTIONS_PER_CLIENT = 4


def even_shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, adding up to ``total``: a concurrency
    bound shared by HTTP clients here, and by Ray workers in ``distill.pipeline.ray_worker_specs``."""
    return [total // parts + (i < total % parts) for i in range(parts)]


class _Retryable(Exception):
    """A failed attempt another attempt may fix; ``retry_after`` is the server's requested wait, if any."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure retrying cannot fix (bad request, bad key, too large)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Endpoint:
    base_url: str
    in_flight: int = 0
    requests: int = 0
    failures: int = 0


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


@dataclass
class _Job:
    """One HTTP request: ``n`` choices for prompt ``prompt_index``, filling slots from ``first_slot``."""

    prompt_index: int
    first_slot: int
    n: int
    body: dict[str, Any]
    prefilled: bool


class OpenAISampler:
    """A :class:`~distill.teachers.sampler.Sampler` over one or more OpenAI-compatible ``/chat/completions`` endpoints."""

    def __init__(self, model: str, endpoints: Sequence[str] | None = None, api_key_env: str = "OPENAI_API_KEY",
                 served_model: str | None = None, max_concurrency: int = 64, timeout_s: float = 600.0,
                 max_retries: int = 5, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 reasoning_effort: str | None = None, send_n: bool = False,
                 prices: Mapping[str, Any] | None = None, tokenizer: str | None = None,
                 extra_body: Mapping[str, Any] | None = None, trust_env: bool = True,
                 effort_max_tokens: Mapping[str, int] | str | None = None, **_: Any):
        urls = [u.rstrip("/") for u in (["http://127.0.0.1:8000/v1"] if endpoints is None else endpoints)]
        if not urls:
            raise ValueError("openai backend: at least one endpoint is needed")
        self.effort_caps = effort_caps(effort_max_tokens)
        if reasoning_effort is not None and reasoning_effort not in EFFORT_MAX_TOKENS:
            raise ValueError(f"reasoning_effort must be one of {sorted(EFFORT_MAX_TOKENS)}, got {reasoning_effort!r}")
        self.name = str(served_model or model)
        self.endpoints = [Endpoint(u) for u in urls]
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.reasoning_effort = reasoning_effort
        self.send_n = send_n
        self.extra_body = dict(extra_body or {})
        self.trust_env = trust_env
        self.price_table: PriceTable | None = table_from_options(prices, self.name)
        self.stats = UsageStats()
        self._api_key = os.environ.get(api_key_env) or ""
        self._tokenizer_name = tokenizer
        self._tokenizer: Any = None
        self._ssl_context: Any = None
        self._known_counts: OrderedDict[int, int] = OrderedDict()
        self._rr = 0
        self._rng = random.Random()
        if not self._api_key:
            log.info("openai backend: %s is not set; sending requests without an API key", api_key_env)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAISampler(name={self.name!r}, endpoints={[e.base_url for e in self.endpoints]!r})"

    # ------------------------------------------------------------------ Sampler interface

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt, in order; per-request failures come back as error completions."""
        if not prompts:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(prompts, params))
        # Called from inside a running loop (a notebook, an async app): run ours on a helper thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.agenerate(prompts, params)).result()

    def count_tokens(self, text: str) -> int:
        """Exact when a tokenizer is configured or the server reported this text's count; an estimate otherwise."""
        if self._tokenizer_name:
            return len(self._load_tokenizer()(text, add_special_tokens=False)["input_ids"])
        known = self._known_counts.get(hash(text.strip()))
        if known is not None:
            return known
        return estimate_tokens(text)

    def close(self) -> None:
        """Nothing to release: each ``generate`` opens and closes its own HTTP client."""
        self._tokenizer = None

    # ------------------------------------------------------------------ async core

    async def agenerate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        """The async form of :meth:`generate`, for callers that already run an event loop."""
        jobs = self.plan(prompts, params)
        before = (self.stats.requests, self.stats.retries, dict(self.stats.failure_reasons))
        async with contextlib.AsyncExitStack() as stack:
            slots: asyncio.Queue = asyncio.Queue()
            for client, share in self._clients():
                await stack.enter_async_context(client)
                for _ in range(share):
                    slots.put_nowait(client)
            done = await asyncio.gather(*(self._run_job(slots, job) for job in jobs))
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        for job, completions in zip(jobs, done):
            for k, completion in enumerate(completions):
                results[job.prompt_index][job.first_slot + k] = completion
        self._log_summary(len(jobs), *before)
        return [[c for c in row if c is not None] for row in results]

    def _log_summary(self, jobs: int, requests: int, retries: int, reasons: dict[str, int]) -> None:
        """One line per batch (not per request: a 429 storm at 512 in flight would flood the run log)."""
        failed = {k: v - reasons.get(k, 0) for k, v in self.stats.failure_reasons.items() if v > reasons.get(k, 0)}
        log.info("openai backend: %d requests for %d jobs, %d retries, %d failed samples",
                 self.stats.requests - requests, jobs, self.stats.retries - retries, sum(failed.values()))
        if failed:
            log.warning("openai backend: failed samples by reason: %s",
                        ", ".join(f"{k} x{v}" for k, v in sorted(failed.items())))

    def _clients(self) -> list[tuple[Any, int]]:
        """(client, connections) pairs adding up to ``max_concurrency``.

        httpcore's connection pool scans every connection on every request event,
        so one pool of 512 connections cost the client ~8 ms of CPU per request
        (bench/sampling_http.py); pools of ``CONNECTIONS_PER_CLIENT`` cut that to ~1 ms.
        """
        import httpx

        shares = even_shares(self.max_concurrency, -(-self.max_concurrency // CONNECTIONS_PER_CLIENT))
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 30.0))
        if self._ssl_context is None:  # loading the CA bundle costs ~40 ms; once per sampler, not per client
            self._ssl_context = httpx.create_ssl_context(trust_env=self.trust_env)
        return [(httpx.AsyncClient(headers=self._headers(), timeout=timeout, trust_env=self.trust_env,
                                   verify=self._ssl_context,
                                   limits=httpx.Limits(max_connections=share, max_keepalive_connections=share)),
                 share) for share in shares]

    def plan(self, prompts: Sequence[Messages], params: SamplingParams) -> list[_Job]:
        """One request per prompt asking ``n`` choices (``send_n``), else ``n`` requests seeded ``seed + i``."""
        jobs: list[_Job] = []
        for p, messages in enumerate(prompts):
            if self.send_n:
                jobs.append(self._job(p, 0, params.n, messages, params, params.seed))
            else:
                jobs.extend(self._job(p, i, 1, messages, params, params.seed + i) for i in range(params.n))
        return jobs

    def _job(self, prompt_index: int, first_slot: int, n: int, messages: Messages, params: SamplingParams,
             seed: int) -> _Job:
        prefilled = is_prefilled(messages)
        body: dict[str, Any] = {
            **self.extra_body,
            "model": self.name,
            "messages": list(messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": self.max_tokens_for(params),
            "seed": seed,
        }
        if n > 1:
            body["n"] = n
        if prefilled:
            # vLLM's way to continue the final assistant message instead of opening a new turn.
            body.update(continue_final_message=True, add_generation_prompt=False)
        return _Job(prompt_index, first_slot, n, body, prefilled)

    def max_tokens_for(self, params: SamplingParams) -> int:
        """``params.max_tokens``, capped by the reasoning-effort budget when one is set."""
        if self.reasoning_effort is None:
            return params.max_tokens
        return min(params.max_tokens, self.effort_caps[self.reasoning_effort])

    async def _run_job(self, slots: asyncio.Queue, job: _Job) -> list[Completion]:
        """Never raises for a request's own failure: the result is completions or recorded errors.

        Taking a client from ``slots`` is the concurrency bound: the queue holds
        each client once per connection it may open.
        """
        client = await slots.get()
        started = time.perf_counter()
        try:
            completions = await self._with_retries(client, job)
        except _Fatal as exc:
            completions = self._failures(job, exc.reason)
        except Exception as exc:  # a bug here must cost one sample, not the whole shard
            log.exception("openai backend: unexpected error in a request")
            completions = self._failures(job, self._scrub(f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            slots.put_nowait(client)
        elapsed = time.perf_counter() - started
        for completion in completions:
            completion.latency_s = elapsed
        return completions

    async def _with_retries(self, client: Any, job: _Job) -> list[Completion]:
        avoid: Endpoint | None = None
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            endpoint = self._pick(avoid)
            try:
                return await self._attempt(client, endpoint, job)
            except _Retryable as exc:
                endpoint.failures += 1
                last, avoid = exc, endpoint
                if attempt == self.max_retries:
                    break
                delay = self.retry_delay(attempt, exc.retry_after)
                self.stats.retries += 1
                log.debug("openai backend: %s from %s; retry %d/%d in %.2fs", exc.reason, endpoint.base_url,
                          attempt + 1, self.max_retries, delay)
                await asyncio.sleep(delay)
        assert last is not None
        raise _Fatal(f"{last.reason} (gave up after {self.max_retries + 1} attempts)")

    async def _attempt(self, client: Any, endpoint: Endpoint, job: _Job) -> list[Completion]:
        import httpx

        endpoint.in_flight += 1
        endpoint.requests += 1
        self.stats.requests += 1
        try:
            response = await asyncio.wait_for(
                client.post(f"{endpoint.base_url}/chat/completions", json=job.body), self.timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _Retryable(f"timeout after {self.timeout_s:g}s") from None
        except httpx.UnsupportedProtocol as exc:
            raise _Fatal(self._scrub(f"bad endpoint url: {exc}")) from None
        except httpx.TransportError as exc:
            raise _Retryable(self._scrub(f"connection error: {type(exc).__name__}: {exc}".rstrip(": "))) from None
        except httpx.RequestError as exc:
            raise _Fatal(self._scrub(f"request error: {type(exc).__name__}: {exc}")) from None
        finally:
            endpoint.in_flight -= 1
        return self._parse(response, job)

    def _pick(self, avoid: Endpoint | None) -> Endpoint:
        """Least in flight; ties go round-robin; a retry prefers an endpoint other than the one that just failed."""
        self._rr += 1
        count = len(self.endpoints)
        rotated = [self.endpoints[(self._rr + k) % count] for k in range(count)]
        return min(rotated, key=lambda e: (count > 1 and e is avoid, e.in_flight))

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After when given, else full jitter: uniform(0, min(max, base * 2**attempt))."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        return self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2 ** attempt)))

    # ------------------------------------------------------------------ responses

    def _parse(self, response: Any, job: _Job) -> list[Completion]:
        status = response.status_code
        if not 200 <= status < 300:
            reason = self._scrub(f"http {status}: {error_message(response)}")
            if status in RETRY_STATUSES:
                raise _Retryable(reason, parse_retry_after(response.headers))
            raise _Fatal(reason)
        data = self._json(response)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            detail = f": {error_message(response)}" if data.get("error") else ""
            raise _Retryable(self._scrub(f"empty choices{detail}"))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        parsed = [self._choice(c) for c in choices[: job.n]]
        self._check_not_empty(parsed, usage)
        completions = self._to_completions(parsed, usage, job)
        self._account(usage, completions)
        if len(completions) < job.n:
            completions += self._failures(job, f"server returned {len(completions)} of {job.n} choices",
                                          count=job.n - len(completions))
        return completions

    def _json(self, response: Any) -> dict[str, Any]:
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            snippet = response.content[:60].decode("utf-8", "replace").replace("\n", " ")
            raise _Retryable(self._scrub(f"malformed json: {snippet!r}")) from None
        if not isinstance(data, dict):
            raise _Retryable(f"malformed json: top level is {type(data).__name__}, not an object")
        return data

    def _choice(self, choice: Any) -> tuple[str, str | None, str]:
        """(content, reasoning, raw finish_reason) of one choice; a bad shape is a malformed answer."""
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise _Retryable("malformed json: choice without a message")
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning") or None
        if not isinstance(content, str) or not isinstance(reasoning, (str, type(None))):
            raise _Retryable("malformed json: content is not text")
        finish = str(choice.get("finish_reason") or "stop")
        if finish in RETRY_FINISH_REASONS:
            raise _Retryable(f"finish_reason {finish}")
        return content, reasoning, finish

    @staticmethod
    def _check_not_empty(parsed: list[tuple[str, str | None, str]], usage: dict[str, Any]) -> None:
        """Nothing generated at all (no text, no reasoning, no tokens billed) is a server hiccup, not an answer."""
        if all(not content.strip() and not reasoning for content, reasoning, _ in parsed) and \
                not _int(usage.get("completion_tokens")):
            raise _Retryable("empty completion")

    def _to_completions(self, parsed: list[tuple[str, str | None, str]], usage: dict[str, Any],
                        job: _Job) -> list[Completion]:
        prompt_tokens = _int(usage.get("prompt_tokens"))
        shares = _split_tokens(_int(usage.get("completion_tokens")),
                               [len(c) + len(r or "") for c, r, _ in parsed],
                               [job.body["max_tokens"] if f == "length" else None for _, _, f in parsed])
        completions = []
        for (content, reasoning, finish), tokens in zip(parsed, shares):
            filtered = finish == "content_filter"
            completions.append(Completion(
                text=content, reasoning=reasoning, finish_reason="error" if filtered else _finish(finish),
                prompt_tokens=prompt_tokens, completion_tokens=tokens, prefilled_think=job.prefilled,
                error="content_filter: the provider withheld the completion" if filtered else ""))
        if len(parsed) == 1:
            self._remember_counts(parsed[0], usage)
        return completions

    def _remember_counts(self, choice: tuple[str, str | None, str], usage: dict[str, Any]) -> None:
        """Keep the server's exact reasoning/answer token counts so ``count_tokens`` can return them."""
        content, reasoning, _ = choice
        details = usage.get("completion_tokens_details")
        thinking = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        if not reasoning or not thinking or THINK_CLOSE in content:
            return
        self._known_counts[hash(reasoning.strip())] = thinking
        self._known_counts[hash(content.strip())] = max(0, _int(usage.get("completion_tokens")) - thinking)
        while len(self._known_counts) > KNOWN_COUNTS_MAX:
            self._known_counts.popitem(last=False)

    def _account(self, usage: dict[str, Any], completions: list[Completion]) -> None:
        prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        details = usage.get("completion_tokens_details")
        cached = usage.get("prompt_tokens_details")
        hit = _int(usage.get("prompt_cache_hit_tokens")) or (
            _int(cached.get("cached_tokens")) if isinstance(cached, dict) else 0)
        s = self.stats
        s.prompt_tokens += prompt
        s.completion_tokens += completion
        s.reasoning_tokens += _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        s.cache_hit_tokens += hit
        if self.price_table is not None:
            s.cost_usd += cost(prompt, completion, self.price_table, datetime.now(timezone.utc), hit)

    def _failures(self, job: _Job, reason: str, count: int | None = None) -> list[Completion]:
        count = job.n if count is None else count
        self.stats.failures += count
        key = reason.split(":", 1)[0]
        self.stats.failure_reasons[key] = self.stats.failure_reasons.get(key, 0) + count
        log.debug("openai backend: request for prompt %d failed: %s", job.prompt_index, reason)
        return [Completion(text="", finish_reason="error", prefilled_think=job.prefilled, error=reason)
                for _ in range(count)]

    # ------------------------------------------------------------------ secrets and tokenizer

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _scrub(self, text: str) -> str:
        """Remove the API key (and any bearer token) from text bound for an error field or a log line."""
        return scrub_secret(text, self._api_key)

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_name)
        return self._tokenizer


# Roughly how BPE tokenizers cut text: each digit, letter runs of up to four, each other symbol.
_TOKEN_PIECES = re.compile(r"\d|[^\W\d_]{1,4}|[^\w\s]|_")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate (digits one by one, ~4 letters a token, punctuation one each)."""
    return len(_TOKEN_PIECES.findall(text))


def is_prefilled(messages: Messages) -> bool:
    """The prompt ends in an assistant turn that opens a think block, which the model should continue."""
    if not messages:
        return False
    last = messages[-1]
    return last.get("role") == "assistant" and str(last.get("content", "")).lstrip().startswith(THINK_OPEN)


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


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _split_tokens(total: int, weights: list[int], known: list[int | None]) -> list[int]:
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
