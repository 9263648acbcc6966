"""Verify trace chunks as they commit, in worker processes, with the filter's own checks and the one verifier.

Why worker processes: the sampler keeps the main process (a transformers engine, the vLLM driver, the HTTP
client's loop); the quality checks (repetition n-grams, scripts, boxed answers) are pure Python and would
take the GIL from it.  A :class:`concurrent.futures.ProcessPoolExecutor` judges chunk ``c`` while chunk
``c + 1`` samples, and math-verify runs, as in the filter, in :mod:`distill.filter.math_check`'s killable
workers.  A chunk's verdicts are written (:class:`~distill.teachers.verdict_store.VerdictStore`) by this
process, once, when they come back, before the rounds see them.
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import multiprocessing
from typing import Any

from distill.teachers.verdict_store import VerdictStore, checks_version, reference_digest, verifier_version

log = logging.getLogger(__name__)


def judge_records(records: list[dict[str, Any]], filter_section: dict[str, Any]) -> list[dict[str, Any]]:
    """One verdict per trace record (in order): the filter's first rejection reason that needs no verifier
    (:func:`distill.filter.traces.precheck`), else the verifier's check as the filter turns it into a verdict.
    Runs in a worker process; each record is checked against its own ``reference`` and ``kind``."""
    from distill.config import FilterConfig
    from distill.filter.traces import precheck, verdict_from_check
    from distill.filter.verify import verify_batch
    from distill.records import Trace

    cfg = FilterConfig(**filter_section)
    verifier = verifier_version(cfg)
    traces = [Trace.from_dict(r) for r in records]
    reasons = [precheck(t, cfg) for t in traces]
    todo = [i for i, r in enumerate(reasons) if r is None]
    checks = verify_batch([(traces[i].kind, traces[i].answer_text, traces[i].reference) for i in todo],
                          cfg.verify_timeout_s, sandbox=cfg.sandbox)
    rows = [{"key": r.get("trace_key"), "ref": reference_digest(t.kind, t.reference), "verifier": verifier,
             "reason": reason, "ok": False, "status": None, "extracted": "", "detail": ""}
            for r, t, reason in zip(records, traces, reasons)]
    for i, check in zip(todo, checks):
        verdict = verdict_from_check(traces[i], check)
        rows[i].update(reason=verdict.reason, ok=verdict.ok, status=check.status, extracted=check.extracted,
                       detail=check.detail)
    return rows


class OnlineVerifier:
    """Chunks in, verdict files out: ``submit`` a committed chunk, collect finished ones with ``completed``."""

    def __init__(self, verdicts: VerdictStore, filter_cfg: Any, workers: int = 1):
        self.verdicts = verdicts
        self.checks = checks_version(filter_cfg)
        self._section = filter_cfg.model_dump(mode="json")
        # forkserver: workers start from a clean process, not a fork of one holding an engine's threads
        self._pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
        self._running: dict[futures.Future, tuple[str, Any]] = {}
        self.verified = 0

    @property
    def pending(self) -> int:
        return len(self._running)

    def submit(self, chunk: str, records: list[dict[str, Any]], tag: Any = None) -> None:
        """Judge every record of trace chunk ``chunk`` (its lines, in order); ``tag`` comes back with them."""
        self._running[self._pool.submit(judge_records, records, self._section)] = (chunk, tag)

    def completed(self, block: bool) -> list[tuple[str, list[dict[str, Any]], Any]]:
        """(chunk, verdict rows, tag) of the chunks judged since the last call, their files written first;
        with ``block``, waits for at least one when any is running."""
        if not self._running:
            return []
        done, _ = futures.wait(list(self._running), timeout=None if block else 0,
                               return_when=futures.FIRST_COMPLETED)
        out = []
        for future in done:
            chunk, tag = self._running.pop(future)
            rows = future.result()  # a verifier that raised is a bug: the stage fails, the chunk stays stored
            if not self.verdicts.has(chunk, self.checks):  # a verdict file is written once, whole
                self.verdicts.write(chunk, self.checks, rows)
            self.verified += len(rows)
            out.append((chunk, rows, tag))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
