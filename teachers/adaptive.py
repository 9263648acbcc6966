"""Adaptive sampling: spend the teacher where the verifier says a problem is still open (docs/adaptive.md).

Built on the keyed trace store: a problem's round ``r`` samples the next sample indices of its keys, every
sample (verified or not) is committed to the store, and each committed chunk is judged at once by
:class:`~distill.teachers.online_verify.OnlineVerifier` with the filter's checks; its verdicts go beside
the store.  The loop never waits for a round to end: it samples whatever is queued while verdicts come
back, and a problem whose verdicts say it is still open is queued again at once.  A rerun replays the
rounds from the stored traces and verdicts (:class:`~distill.teachers.adaptive_plan.RoundPlanner`): it
verifies stored traces that lack a verdict and asks the teacher only for keys the store lacks.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

from distill.records import Problem, to_dict
from distill.stage import Context
from distill.teachers.adaptive_engine import SamplingEngine, teacher_engine
from distill.teachers.adaptive_meter import AdaptiveMeter
from distill.teachers.adaptive_plan import DONE, OPEN, UNSOLVED, RoundPlanner, round_ends
from distill.teachers.keyed_sampling import key_identity, sampling_budget, trace_store
from distill.teachers.online_verify import OnlineVerifier
from distill.teachers.prompts import build_prompt
from distill.teachers.trace_store import Entry, TraceStore, prompt_digest, sample_key
from distill.teachers.verdict_store import VerdictStore, checks_version, reference_digest

log = logging.getLogger(__name__)


def teacher_schedules(config: Any, problems: Sequence[Problem], scout: dict[str, str] | None = None
                      ) -> dict[str, list[int]]:
    """Each problem's round ends: the config's rounds, or what the scout's screen leaves it (no teacher
    sample for a problem the scout always solves, or exactly one)."""
    s = config.teacher.sampling
    base = round_ends(s.target_per_problem, s.max_per_problem, s.rounds)
    scout = scout or {}
    return {p.id: {"skip": [], "one_teacher_sample": [1]}.get(scout.get(p.id, ""), base) for p in problems}


@dataclass
class Side:
    """Who samples in a run of rounds: the teacher, or the scout screening problems before it."""

    identity: dict[str, Any]  # what its trace keys hash besides the prompt (keyed_sampling.key_identity)
    budget: int  # the token budget a stored trace must serve
    target: int  # verified samples that close a problem
    engine: SamplingEngine


def sample_adaptive(ctx: Context, model_path: str, problems: Sequence[Problem],
                    schedules: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Sample ``problems`` in rounds until each is done or unsolved; returns the manifest's figures and, under
    ``counts``, the samples each problem holds (the run's view)."""
    cfg = ctx.config
    side = Side(key_identity(cfg, model_path), sampling_budget(cfg), cfg.teacher.sampling.target_per_problem,
                teacher_engine(ctx, model_path))
    return run_rounds(ctx, side, problems, schedules or teacher_schedules(cfg, problems))


def run_rounds(ctx: Context, side: Side, problems: Sequence[Problem],
               schedules: dict[str, list[int]]) -> dict[str, Any]:
    """The rounds of ``side`` over ``problems`` (each with its round ends), against the run's trace store."""
    store = trace_store(ctx)
    store.recover()
    run = _AdaptiveRun(ctx, store, side, problems, schedules)
    try:
        run.loop()
    finally:
        run.close()
    return run.summary()


@dataclass
class _Waiting:
    """What the loop waits for: keys being sampled or verified, and the problems queued by sample indices."""

    in_flight: set[tuple[str, int]] = field(default_factory=set)
    queue: "OrderedDict[tuple[int, ...], list[Problem]]" = field(default_factory=OrderedDict)
    catch_up: dict[str, dict[int, list[tuple[str, int]]]] = field(default_factory=dict)


class _AdaptiveRun:
    """One run of the rounds: the planner, the store, the verifier and the engine, and the loop between them."""

    def __init__(self, ctx: Context, store: TraceStore, side: Side, problems: Sequence[Problem],
                 schedules: dict[str, list[int]]):
        cfg, t = ctx.config, ctx.config.teacher
        self.ctx, self.store, self.t = ctx, store, t
        self.identity, self.budget, self.engine = side.identity, side.budget, side.engine
        self.verdicts = VerdictStore(store.folder)
        self.checks = checks_version(cfg.filter)
        self.known = self.verdicts.load(self.checks)
        self.problems = {p.id: p for p in problems}
        self.digests: dict[str, bytes] = {}
        owners: dict[bytes, str] = {}
        self.twins: dict[str, str] = {}  # a problem whose prompt another problem already has: shares its keys
        for p in problems:
            digest = prompt_digest(self.identity, build_prompt(p))
            self.digests[p.id] = digest
            if digest in owners:
                self.twins[p.id] = owners[digest]
            else:
                owners[digest] = p.id
        self.refs = {p.id: reference_digest(p.kind, p.answer) for p in problems}
        self.planner = RoundPlanner({pid: ends for pid, ends in schedules.items() if pid not in self.twins},
                                    side.target)
        self.wait = _Waiting()
        self.verifier = OnlineVerifier(self.verdicts, cfg.filter, t.sampling.verify_workers or 1)
        label = side.engine.settings.label
        self.meter = AdaptiveMeter(len(self.planner.problems), self._price() if label == "teacher" else None)
        self.task = ctx.reporter.task(f"{label}: sampling in rounds (problems closed)", len(self.planner.problems))
        self.sampled = self.reused = 0
        self.closed: set[str] = set()
        self._chunk_entries: dict[str, list[Entry]] | None = None

    def _price(self) -> Any:
        from distill.teachers.models import price_table

        return price_table(self.ctx.config)

    # ------------------------------------------------------------------ the loop
    def loop(self) -> None:
        for pid in self.planner.problems:
            self._refresh(pid)
        self._submit_catch_up()
        while self.wait.queue or self.verifier.pending:
            for chunk, rows, tag in self.verifier.completed(block=not self.wait.queue):
                self._apply(chunk, rows, tag)
            if self.wait.queue:
                self._sample_next()

    def _refresh(self, pid: str) -> None:
        """Queue what ``pid`` needs now: verdicts found in the store are taken, stored traces without one are
        verified, and keys the store lacks are sampled."""
        while True:
            want = [i for i in self.planner.wanted(pid) if (pid, i) not in self.wait.in_flight]
            if not want:
                self._closed(pid)
                return
            missing, progressed = [], False
            for i in want:
                entry = self.store.lookup(sample_key(self.digests[pid], i), self.budget)
                if entry is None:
                    missing.append(i)
                    continue
                self.reused += 1
                row = self.known.get((entry.chunk, entry.line))
                if row is not None and row.get("ref") == self.refs[pid]:
                    self.planner.record(pid, i, bool(row["ok"]))
                    progressed = True
                else:
                    self.wait.catch_up.setdefault(entry.chunk, {}).setdefault(entry.line, []).append((pid, i))
                    self.wait.in_flight.add((pid, i))
            if missing:
                self.wait.queue.setdefault(tuple(missing), []).append(self.problems[pid])
                self.wait.in_flight.update((pid, i) for i in missing)
            if not progressed:
                return

    def _closed(self, pid: str) -> None:
        state = self.planner.problems[pid]
        if state.status != OPEN and pid not in self.closed:
            self.closed.add(pid)
            self.meter.close_problem(state.status)
            self.task.advance(1, **self.meter.fields())

    def _submit_catch_up(self) -> None:
        """Verify, whole, each stored chunk holding traces this run needs that have no verdict (a SIGKILL
        between a chunk's commit and its verdicts, or new quality settings)."""
        for chunk, lines in self.wait.catch_up.items():
            entries = self._entries_of(chunk)
            records = [row for _, row in self.store.read(entries)]
            for line, owners in lines.items():  # checked against this run's reference
                problem = self.problems[owners[0][0]]
                records[line] = {**records[line], "reference": problem.answer, "kind": problem.kind}
            log.info("verifying stored chunk %s (%d traces): it has no verdicts under these checks", chunk,
                     len(records))
            self.verifier.submit(chunk, records, tag=dict(lines))
        self.wait.catch_up = {}

    def _entries_of(self, chunk: str) -> list[Entry]:
        if self._chunk_entries is None:
            self._chunk_entries = {}
            for entries in self.store.entries().values():
                for e in entries:
                    self._chunk_entries.setdefault(e.chunk, []).append(e)
        return sorted(self._chunk_entries[chunk], key=lambda e: e.line)

    def _sample_next(self) -> None:
        """One chunk of the oldest queued group (problems lacking the same sample indices), committed to the
        store and handed to the verifier."""
        indices, group = next(iter(self.wait.queue.items()))
        take = self.t.shard_size * self.engine.parallel
        batch, rest = group[:take], group[take:]
        if rest:
            self.wait.queue[indices] = rest
        else:
            del self.wait.queue[indices]
        self.engine.sample(indices, batch, lambda traces: self._commit(indices, traces))

    def _commit(self, indices: tuple[int, ...], traces: list[Any]) -> None:
        """One sampled chunk: each trace under its key in the store, then to the verifier."""
        records, owners = [], []
        for trace in traces:
            trace.sample_index = indices[trace.sample_index]
            record = to_dict(trace)
            record["trace_key"] = sample_key(self.digests[trace.problem_id], trace.sample_index)
            record["max_tokens"] = int(trace.sampling.get("max_tokens") or 0)
            records.append(record)
            owners.append((trace.problem_id, trace.sample_index))
        chunk = self.store.commit(records)
        self.sampled += len(records)
        self.meter.add_traces(records)
        self.verifier.submit(chunk, records, tag={line: [owner] for line, owner in enumerate(owners)})
        for chunk_done, rows, tag in self.verifier.completed(block=False):
            self._apply(chunk_done, rows, tag)

    def _apply(self, chunk: str, rows: list[dict[str, Any]], tag: dict[int, list[tuple[str, int]]]) -> None:
        """A chunk's verdicts: recorded for the keys waiting on them, and those problems moved on."""
        touched = []
        for line, owners in tag.items():
            for pid, index in owners:
                self.planner.record(pid, index, bool(rows[line]["ok"]))
                self.wait.in_flight.discard((pid, index))
                self.meter.add_verdict(bool(rows[line]["ok"]))
                touched.append(pid)
        for pid in dict.fromkeys(touched):
            self._refresh(pid)
        self._submit_catch_up()
        self.task.advance(0, **self.meter.fields())

    # ------------------------------------------------------------------ results
    def close(self) -> None:
        try:
            self.task.close()
            self.engine.close()
        finally:
            self.verifier.close()

    def summary(self) -> dict[str, Any]:
        counts = self.planner.counts()
        counts.update({pid: counts[owner] for pid, owner in self.twins.items()})
        statuses = self.planner.statuses()
        unsolved = self.planner.with_status(UNSOLVED)
        unsolved += [pid for pid, owner in self.twins.items() if owner in set(unsolved)]
        return {"reused_traces": self.reused, "sampled_traces": self.sampled, "new_completion_tokens":
                self.meter.completion_tokens, "store": str(self.store.folder), "verdicts_made": self.verifier.verified,
                "verified_traces": self.planner.verified(), "problems_done": statuses[DONE],
                "problems_open": statuses[OPEN], "problems_unsolved": statuses[UNSOLVED],
                "problems_skipped": statuses["skipped"], "unsolved": unsolved, "counts": counts}
