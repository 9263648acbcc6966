"""Retries that keep the data true: Retry-After waits spread out, long generations not regenerated and lost.

Issue 14 ("Records, cards and errors"): rate-limited requests came back in
synchronised waves (Retry-After honoured to the millisecond, no jitter), and a
read timeout of a 600 s generation was retried, which regenerates the longest
traces and then drops them, biasing the data toward short reasoning.  Also: the
Hub client and the OpenAI client each computed their own backoff; one function
in :mod:`distill.http_util` now computes every wait.
"""

from __future__ import annotations

import asyncio
import logging
import random

import httpx
import pytest

from distill import http_util
from distill.http_util import RetryPolicy
from distill.teachers.backends.openai_http import OpenAISampler
from distill.teachers.sampler import SamplingParams
from tests.fault_server import FaultServer, completion_body

PARAMS = SamplingParams(n=1, temperature=0.6, top_p=0.95, max_tokens=64, seed=7)


def ask(key: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{key} What is 2 + 3?"}]


def sampler_for(url: str, **options) -> OpenAISampler:
    return OpenAISampler("fault-model", endpoints=[url], **{"max_retries": 3, "backoff_base_s": 0.01,
                                                            "backoff_max_s": 5.0, "timeout_s": 0.5, **options})


# ------------------------------------------------------------------ Retry-After with jitter


def test_retry_after_waits_are_never_early_and_spread_after_the_servers_time():
    """Both clients: at least what the server asked, and not all the same wait (that is a synchronised wave)."""
    sampler = OpenAISampler("m", endpoints=["http://127.0.0.1:1/v1"], backoff_base_s=1.0, backoff_max_s=60.0)
    policy = RetryPolicy(max_retries=5, backoff_base=1.0, backoff_max=60.0)
    for delay in (lambda: sampler.retry_delay(0, 2.0), lambda: policy.delay(0, 2.0)):
        waits = [delay() for _ in range(400)]
        assert min(waits) >= 2.0  # never earlier than the server asked
        assert max(waits) - min(waits) > 0.2  # spread after it
        assert max(waits) <= 2.0 * 1.5  # a bounded spread: the server's wait is still honoured


def test_retry_after_is_capped_then_jittered_above_the_cap():
    sampler = OpenAISampler("m", endpoints=["http://127.0.0.1:1/v1"], backoff_base_s=1.0, backoff_max_s=10.0)
    waits = [sampler.retry_delay(0, 99.0) for _ in range(400)]
    assert min(waits) >= 10.0 and max(waits) <= 15.0 and max(waits) - min(waits) > 0.5
    hub = [RetryPolicy(retry_after_cap=300.0).delay(0, 9999.0) for _ in range(400)]
    assert min(hub) >= 300.0 and max(hub) <= 450.0 and len(set(hub)) > 1


def test_a_retry_after_of_zero_is_still_spread():
    """``Retry-After: 0`` from 500 clients must not bring all 500 back in the same millisecond."""
    waits = [http_util.retry_wait(0, 0.0, base=1.0, cap=60.0) for _ in range(400)]
    assert min(waits) >= 0.0 and max(waits) > 0.1


def test_rate_limited_requests_do_not_return_in_one_wave():
    """16 requests all told "Retry-After: 2": their second tries spread out, none before the time is up."""
    with FaultServer() as server:
        for i in range(16):
            server.script("429:2", "ok", key=f"[w{i}]")
        outputs = sampler_for(server.url, max_concurrency=16).generate([ask(f"[w{i}]") for i in range(16)], PARAMS)
        assert all(row[0].error == "" for row in outputs)
        gaps, retried_at = [], []
        for i in range(16):
            first, second = server.requests_for(f"[w{i}]")[:2]
            gaps.append(second.started - first.ended)
            retried_at.append(second.started)
    assert min(gaps) >= 1.99
    assert max(retried_at) - min(retried_at) > 0.2  # without jitter: all within a few tens of milliseconds


# ------------------------------------------------------------------ one wait policy for both clients


def test_one_function_computes_every_wait_for_both_clients(monkeypatch):
    calls: list[tuple] = []

    def spy(attempt, retry_after, **kw):
        calls.append((attempt, retry_after, kw["base"], kw["cap"]))
        return 0.0

    monkeypatch.setattr(http_util, "retry_wait", spy)
    OpenAISampler("m", endpoints=["http://127.0.0.1:1/v1"], backoff_base_s=0.5, backoff_max_s=7.0).retry_delay(2, 3.0)
    RetryPolicy(backoff_base=2.0, backoff_max=30.0).delay(1, None)
    assert calls == [(2, 3.0, 0.5, 7.0), (1, None, 2.0, 30.0)]


def test_backoff_keeps_each_clients_own_jitter():
    """Without Retry-After: the OpenAI client keeps full jitter, the Hub keeps [d/2, d] -- only the source is one."""
    rng_openai = [http_util.retry_wait(2, None, base=1.0, cap=60.0, floor=0.0, rng=random.Random(s))
                  for s in range(300)]
    assert all(0.0 <= w <= 4.0 for w in rng_openai) and min(rng_openai) < 1.0
    hub = [RetryPolicy(backoff_base=1.0, backoff_max=60.0).delay(2, None) for _ in range(300)]
    assert all(2.0 <= w <= 4.0 for w in hub)


# ------------------------------------------------------------------ timeouts


def test_a_read_timeout_is_recorded_as_timeout_and_not_regenerated(caplog):
    """A generation still running at timeout_s is one long trace: retrying it regenerates it and loses it again."""
    with FaultServer(default="timeout:1.5") as server, caplog.at_level(logging.WARNING):
        sampler = sampler_for(server.url, timeout_s=0.3, max_retries=3)
        [[completion]] = sampler.generate([ask("[long]")], PARAMS)
        sent = len(server.requests)
    assert sent == 1  # not sent again
    assert completion.finish_reason == "error"
    assert completion.error.split(":", 1)[0] == "timeout"  # the manifest's failure key
    assert sampler.stats.failure_reasons == {"timeout": 1}
    assert any("timeout_s" in r.getMessage() and "raise" in r.getMessage() for r in caplog.records)


class _ScriptedClient:
    """An httpx.AsyncClient stand-in whose ``post`` raises or answers from a script."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.posts = 0

    async def post(self, url, json):
        self.posts += 1
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return httpx.Response(200, json=completion_body(json, "ok"), request=httpx.Request("POST", url))


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout("connect timed out"), httpx.PoolTimeout("no connection")])
def test_connection_phase_timeouts_are_still_retried(exc):
    """Nothing was generated before the connection was made, so trying again loses nothing."""
    sampler = sampler_for("http://127.0.0.1:1/v1")
    client = _ScriptedClient(exc, "ok")
    job = sampler.plan([ask("[c]")], PARAMS)[0]
    completions = asyncio.run(sampler._send_with_retries(client, job))
    assert client.posts == 2 and completions[0].error == "" and sampler.stats.retries == 1


def test_a_read_timeout_from_httpx_is_not_retried():
    sampler = sampler_for("http://127.0.0.1:1/v1")
    client = _ScriptedClient(httpx.ReadTimeout("read timed out"), "ok")
    [completion] = asyncio.run(_run_one(sampler, client, sampler.plan([ask("[r]")], PARAMS)[0]))
    assert client.posts == 1 and completion.error.startswith("timeout:")
    assert sampler.stats.failure_reasons == {"timeout": 1}


async def _run_one(sampler, client, job):
    slots: asyncio.Queue = asyncio.Queue()
    slots.put_nowait(client)
    return await sampler._run_job(slots, job)
