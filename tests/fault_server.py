"""A local OpenAI-compatible endpoint that misbehaves on cue, for testing the HTTP teacher backend offline.

It serves ``POST /v1/chat/completions`` on 127.0.0.1 (a random port) from a
threaded ``http.server``.  Each request takes the next *behaviour* from a
script: a queue per key, chosen by a key (marker) that appears in the prompt's
text, or the unkeyed queue, or ``default`` when its queue is empty.  So a test
can say "the prompt with [p1] first gets a 429, then succeeds".

Behaviours (``name`` or ``name:arg``)::

    ok                    inline "<think>R</think>A" in content
    ok_reasoning_content  content "A", reasoning in message.reasoning_content (DeepSeek API)
    ok_reasoning          content "A", reasoning in message.reasoning (newer vLLM)
    ok_prefilled          content "R</think>A" (the prompt was prefilled with "<think>")
    ok_length             inline, unclosed think, finish_reason "length"
    ok_keepalive          "ok" after blank lines, as DeepSeek keeps a queued request alive
    slow:S                "ok" after S seconds (for concurrency and throughput)
    429 / 429:S           rate limited, without / with "Retry-After: S"
    429_date:S            rate limited, Retry-After as an HTTP date S seconds ahead
    500 502 503 504       server errors (503:S adds Retry-After)
    400 401 403 404 413 422  client errors, never worth a retry
    reset                 close the socket with an RST and no response
    timeout:S             sleep S seconds (past the client's timeout), then answer
    malformed             200 with a body that is not JSON
    empty_choices         200 with "choices": []
    empty_content         200 with content "" and no tokens

It records every request (headers, JSON body, behaviour) and the highest number
of requests it had in flight at once.  ``python -m tests.fault_server`` runs one
standalone (prints ``PORT <n>``), for benchmarks that must not share the client's CPU.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REASONING = "2 plus 3 is 5, so the sum is 5."
ANSWER = "The answer is \\boxed{5}."
PROMPT_TOKENS = 11
REASONING_TOKENS = 12
ANSWER_TOKENS = 8


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    behaviour: str
    started: float
    ended: float = 0.0


@dataclass
class _State:
    default: str = "ok"
    supports_n: bool = True
    scripts: dict[str | None, deque] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class FaultServer:
    """Start with ``with FaultServer() as server:``; ``server.url`` is the base URL (``.../v1``)."""

    def __init__(self, default: str = "ok", supports_n: bool = True, port: int = 0):
        self.state = _State(default=default, supports_n=supports_n)
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.state = self.state
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *behaviours: str, key: str | None = None) -> "FaultServer":
        """Queue behaviours for requests whose prompt contains ``key`` (None: any request no key matched)."""
        with self.state.lock:
            self.state.scripts.setdefault(key, deque()).extend(behaviours)
        return self

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def requests_for(self, key: str) -> list[RecordedRequest]:
        return [r for r in self.requests if key in _prompt_text(r.body)]

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight

    def start(self) -> "FaultServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a "timeout" handler may still be asleep at shutdown
    request_queue_size = 1024  # hundreds of clients connect at once in the benchmark
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and clients that hung up are the point here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/health", "/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": "fault-model", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        state = self.server.state
        behaviour = self._next_behaviour(body)
        record = RecordedRequest(self.path, dict(self.headers.items()), body, behaviour, time.perf_counter())
        with state.lock:
            state.requests.append(record)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
            else:
                self._behave(behaviour, body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            record.ended = time.perf_counter()
            with state.lock:
                state.in_flight -= 1

    def _next_behaviour(self, body: Any) -> str:
        state, text = self.server.state, _prompt_text(body)
        with state.lock:
            for key, queue in state.scripts.items():
                if key is not None and key in text:
                    return queue.popleft() if queue else state.default
            queue = state.scripts.get(None)
            return queue.popleft() if queue else state.default

    def _behave(self, behaviour: str, body: dict) -> None:
        name, _, arg = behaviour.partition(":")
        if name.isdigit():
            return self._error(int(name), arg)
        if name == "429_date":
            when = email.utils.formatdate(time.time() + float(arg), usegmt=True)
            return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": when})
        if name == "reset":
            return self._reset()
        if name in ("timeout", "slow"):
            if self.server.state.stopping.wait(float(arg or 1.0)):
                return self._reset()
            return self._send(200, completion_body(body, "ok", self.server.state.supports_n))
        if name == "malformed":
            return self._send_raw(200, b'{"id": "x", "choices": [ {"message": ', "application/json")
        if name == "ok_keepalive":
            payload = json.dumps(completion_body(body, "ok", self.server.state.supports_n)).encode()
            return self._send_raw(200, b"\n\n\n" + payload, "application/json")
        if name == "empty_choices":
            return self._send(200, {"id": "x", "object": "chat.completion", "choices": [],
                                    "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 0}})
        return self._send(200, completion_body(body, name, self.server.state.supports_n))

    def _error(self, status: int, retry_after: str) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        message = {401: "Authentication Fails (no such user)", 413: "request entity too large",
                   429: "Rate limit reached", 503: "Server overloaded"}.get(status, f"status {status}")
        auth = self.headers.get("Authorization", "")
        if status == 401 and auth:
            message += f" ({auth})"  # some servers echo what they got; the client must scrub it
        self._send(status, {"error": {"message": message, "type": "fault", "code": status}}, headers)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def completion_body(request: dict, form: str, supports_n: bool = True) -> dict:
    """A chat.completion object with ``n`` choices in one of the reasoning forms."""
    n = int(request.get("n") or 1) if supports_n else 1
    choices = [_choice(form, i) for i in range(n)]
    reasoning_tokens = 0 if form in ("empty_content", "ok_prefilled") else REASONING_TOKENS
    per_choice = 0 if form == "empty_content" else REASONING_TOKENS + ANSWER_TOKENS
    usage: dict[str, Any] = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": per_choice * n,
                             "total_tokens": PROMPT_TOKENS + per_choice * n}
    if form in ("ok_reasoning_content", "ok_reasoning"):
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens * n}
        usage["prompt_cache_hit_tokens"] = 3
        usage["prompt_cache_miss_tokens"] = PROMPT_TOKENS - 3
    return {"id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "fault-model"), "choices": choices, "usage": usage}


def _choice(form: str, index: int) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": f"<think>{REASONING}</think>{ANSWER}"}
    finish = "stop"
    if form == "ok_reasoning_content":
        message.update(content=ANSWER, reasoning_content=REASONING)
    elif form == "ok_reasoning":
        message.update(content=ANSWER, reasoning=REASONING)
    elif form == "ok_prefilled":
        message["content"] = f"{REASONING}</think>{ANSWER}"
    elif form == "ok_length":
        message["content"] = f"<think>{REASONING}"
        finish = "length"
    elif form == "empty_content":
        message["content"] = ""
    return {"index": index, "message": message, "finish_reason": finish}


def _prompt_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    return "\n".join(str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--default", default="ok")
    args = parser.parse_args(argv)
    server = FaultServer(default=args.default, port=args.port).start()
    print(f"PORT {server.port}", flush=True)
    try:
        server.state.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
