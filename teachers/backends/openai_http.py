"""The OpenAI-compatible HTTP backend: DeepSeek's API, a vLLM server, or any ``/chat/completions`` endpoint.

Hosted teachers are slow per request and fail often (rate limits, overload,
dropped connections), so this backend is built around three guarantees:

* **Bounded concurrency, async.**  Requests run on an asyncio loop through one
  ``httpx.AsyncClient``, at most ``max_concurrency`` in flight, spread over
  several endpoints by least-in-flight with round-robin tie-breaks.  The
  synchronous :meth:`OpenAISampler.generate` runs that loop itself (in a helper
  thread when the caller already runs one), so it satisfies the plain Sampler
  interface.
* **Bounded retries.**  429, 408, 500/502/503/504, connect and pool timeouts,
  dropped or reset connections, malformed JSON and empty answers are retried
  after :func:`distill.http_util.retry_wait` (exponential backoff with full
  jitter; ``Retry-After`` in seconds or an HTTP date, capped at
  ``backoff_max_s``, with jitter after it).  Client errors
  (400/401/403/404/413/422, ...) are never retried: the same request would fail
  the same way.  Nor is a read timeout: a generation still running at
  ``timeout_s`` is one of the longest traces, and a retry would regenerate it
  only to lose it again, biasing the data toward short reasoning; it is recorded
  as failed with reason ``timeout`` and a warning says to raise ``timeout_s``.
* **No exception per request.**  Every sample ends as a complete
  :class:`~distill.teachers.sampling_types.Completion` or as a recorded failure
  (``finish_reason="error"``, ``error="http 401: ..."``) that the filter counts
  as ``sampling_error``.  The API key is read from an environment variable, sent
  only in the ``Authorization`` header, and scrubbed from every error and log line.

``n`` samples per prompt are sent as ``n`` separate requests with seeds
``seed + i`` by default, because DeepSeek's ``deepseek-reasoner`` does not
support ``n > 1``; ``send_n=True`` asks the server for ``n`` choices at once
(vLLM supports it and shares the prompt's prefill).

This module is the client (concurrency, endpoints, the retry loop); the request
and response format is :mod:`~distill.teachers.backends.openai_wire` and the
settings (with the reasoning-effort caps) :mod:`~distill.teachers.backends.openai_options`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

from distill import http_util
from distill.http_util import scrub_secret
from distill.teachers.backends.openai_options import (  # noqa: F401 - re-exported, imported from here elsewhere
    EFFORT_MAX_TOKENS, OpenAISamplerOptions, check_reasoning_effort, effort_caps)
from distill.teachers.backends.openai_wire import (  # noqa: F401 - re-exported, imported from here elsewhere
    RETRY_FINISH_REASONS, RETRY_STATUSES, FatalError, KnownTokenCounts, RequestJob, RetryableError, UsageStats,
    error_message, estimate_tokens, is_prefilled, parse_response, parse_retry_after, request_job, to_completions)
from distill.teachers.pricing import PriceTable, table_from_options
from distill.teachers.sampling_types import Completion, Messages, SamplingParams

log = logging.getLogger(__name__)

CONNECTIONS_PER_CLIENT = 4


def even_shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, adding up to ``total``: a concurrency
    bound shared by HTTP clients here, and by Ray workers in ``distill.pipeline.ray_worker_specs``."""
    return [total // parts + (i < total % parts) for i in range(parts)]


@dataclass
class Endpoint:
    base_url: str
    in_flight: int = 0
    requests: int = 0
    failures: int = 0


class OpenAISampler:
    """A :class:`~distill.teachers.sampling_types.Sampler` over one or more OpenAI-compatible
    ``/chat/completions`` endpoints.

    Built from one :class:`OpenAISamplerOptions`; keyword options (the fields of
    that object, as ``teacher.openai.model_dump()`` gives them) are accepted too
    and turned into it, unknown keys ignored.
    """

    def __init__(self, model: str, options: OpenAISamplerOptions | None = None, **fields: Any):
        opts = options if options is not None else OpenAISamplerOptions.from_mapping(fields)
        urls = opts.endpoint_urls()
        self.effort_caps = effort_caps(opts.effort_max_tokens)
        check_reasoning_effort(opts.reasoning_effort)
        self.options = opts
        self.name = str(opts.served_model or model)
        self.endpoints = [Endpoint(u) for u in urls]
        self.max_concurrency = max(1, int(opts.max_concurrency))
        self.timeout_s = float(opts.timeout_s)
        self.max_retries = max(0, int(opts.max_retries))
        self.backoff_base_s = float(opts.backoff_base_s)
        self.backoff_max_s = float(opts.backoff_max_s)
        self.reasoning_effort = opts.reasoning_effort
        self.send_n = opts.send_n
        self.extra_body = dict(opts.extra_body or {})
        self.trust_env = opts.trust_env
        self.price_table: PriceTable | None = table_from_options(opts.prices, self.name)
        self.stats = UsageStats()
        self._api_key = os.environ.get(opts.api_key_env) or ""
        self._tokenizer_name = opts.tokenizer
        self._tokenizer: Any = None
        self._ssl_context: Any = None
        self._known_counts = KnownTokenCounts()
        self._rr = 0
        self._rng = random.Random()
        if not self._api_key:
            log.info("openai backend: %s is not set; sending requests without an API key", opts.api_key_env)

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
        known = self._known_counts.get(text)
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
        if failed.get("timeout"):
            log.warning("openai backend: %d sample(s) still generating after timeout_s=%gs were recorded as failed "
                        "(reason 'timeout'), not retried, so the longest traces are not silently lost; raise "
                        "teacher.openai.timeout_s and sample them again", failed["timeout"], self.timeout_s)

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

    def plan(self, prompts: Sequence[Messages], params: SamplingParams) -> list[RequestJob]:
        """One request per prompt asking ``n`` choices (``send_n``), else ``n`` requests seeded ``seed + i``."""
        jobs: list[RequestJob] = []
        for p, messages in enumerate(prompts):
            if self.send_n:
                jobs.append(self._job(p, 0, params.n, messages, params, params.seed))
            else:
                jobs.extend(self._job(p, i, 1, messages, params, params.seed + i) for i in range(params.n))
        return jobs

    def _job(self, prompt_index: int, first_slot: int, n: int, messages: Messages, params: SamplingParams,
             seed: int) -> RequestJob:
        return request_job(prompt_index, first_slot, n, messages, params, seed=seed, model=self.name,
                           max_tokens=self.max_tokens_for(params), extra_body=self.extra_body)

    def max_tokens_for(self, params: SamplingParams) -> int:
        """``params.max_tokens``, capped by the reasoning-effort budget when one is set."""
        if self.reasoning_effort is None:
            return params.max_tokens
        return min(params.max_tokens, self.effort_caps[self.reasoning_effort])

    async def _run_job(self, slots: asyncio.Queue, job: RequestJob) -> list[Completion]:
        """Never raises for a request's own failure: the result is completions or recorded errors.

        Taking a client from ``slots`` is the concurrency bound: the queue holds
        each client once per connection it may open.
        """
        client = await slots.get()
        started = time.perf_counter()
        try:
            completions = await self._send_with_retries(client, job)
        except FatalError as exc:
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

    # ------------------------------------------------------------------ the retry loop

    async def _send_with_retries(self, client: Any, job: RequestJob) -> list[Completion]:
        """This backend's one retry loop: up to ``max_retries`` more attempts after a retryable failure,
        each after :meth:`retry_delay` (Retry-After, else full-jitter backoff), preferring another endpoint.

        The wait is the project's shared :func:`distill.http_util.retry_wait`; the loop is not
        :func:`~distill.http_util.call_with_retries` because that one blocks in ``time.sleep`` (here
        it would stall every request in flight on this event loop), raises instead of recording a
        failed sample, and cannot move the next attempt to another endpoint.
        Raises :class:`FatalError` when the failure is not retryable or the attempts are used up.
        """
        avoid: Endpoint | None = None
        last: RetryableError | None = None
        for attempt in range(self.max_retries + 1):
            endpoint = self._pick(avoid)
            try:
                return await self._attempt(client, endpoint, job)
            except RetryableError as exc:
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
        raise FatalError(f"{last.reason} (gave up after {self.max_retries + 1} attempts)")

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """The project's one wait policy (:func:`distill.http_util.retry_wait`): the server's Retry-After
        capped at ``backoff_max_s`` plus jitter after it, else full jitter
        ``uniform(0, min(max, base * 2**attempt))``."""
        return http_util.retry_wait(attempt, retry_after, base=self.backoff_base_s, cap=self.backoff_max_s,
                                    retry_after_cap=self.backoff_max_s, floor=0.0, rng=self._rng)

    async def _attempt(self, client: Any, endpoint: Endpoint, job: RequestJob) -> list[Completion]:
        """One POST to ``endpoint``; transport trouble becomes a :class:`RetryableError` or :class:`FatalError`."""
        import httpx

        endpoint.in_flight += 1
        endpoint.requests += 1
        self.stats.requests += 1
        try:
            response = await asyncio.wait_for(
                client.post(f"{endpoint.base_url}/chat/completions", json=job.body), self.timeout_s)
        except (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteTimeout) as exc:
            # Before the request was delivered: nothing was generated, so trying again loses nothing.
            raise RetryableError(f"connect timeout: {type(exc).__name__}") from None
        except (asyncio.TimeoutError, httpx.TimeoutException):
            # A generation still running: a retry would regenerate the longest traces and drop them again.
            raise FatalError(f"timeout: no answer within timeout_s={self.timeout_s:g}s (not retried)") from None
        except httpx.UnsupportedProtocol as exc:
            raise FatalError(self._scrub(f"bad endpoint url: {exc}")) from None
        except httpx.TransportError as exc:
            raise RetryableError(self._scrub(f"connection error: {type(exc).__name__}: {exc}".rstrip(": "))) \
                from None
        except httpx.RequestError as exc:
            raise FatalError(self._scrub(f"request error: {type(exc).__name__}: {exc}")) from None
        finally:
            endpoint.in_flight -= 1
        return self._completions(response, job)

    def _pick(self, avoid: Endpoint | None) -> Endpoint:
        """Least in flight; ties go round-robin; a retry prefers an endpoint other than the one that just failed."""
        self._rr += 1
        count = len(self.endpoints)
        rotated = [self.endpoints[(self._rr + k) % count] for k in range(count)]
        return min(rotated, key=lambda e: (count > 1 and e is avoid, e.in_flight))

    # ------------------------------------------------------------------ responses

    def _completions(self, response: Any, job: RequestJob) -> list[Completion]:
        """A response's completions, its usage accounted; choices the server left out become recorded errors."""
        parsed, usage = parse_response(response, job, self._scrub)
        completions = to_completions(parsed, usage, job)
        if len(parsed) == 1:
            self._known_counts.remember(parsed[0], usage)
        self.stats.record_usage(usage, self.price_table)
        if len(completions) < job.n:
            completions += self._failures(job, f"server returned {len(completions)} of {job.n} choices",
                                          count=job.n - len(completions))
        return completions

    def _failures(self, job: RequestJob, reason: str, count: int | None = None) -> list[Completion]:
        count = job.n if count is None else count
        self.stats.record_failures(reason, count)
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
