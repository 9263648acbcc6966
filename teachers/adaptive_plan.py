"""The round logic of adaptive sampling, without I/O: which sample indices each problem needs next.

A problem's rounds are fixed by the config alone (:func:`round_ends`): with target 1, max 8 and the
default doubling, it may hold 1, 2, 4 or 8 samples.  After each round, once every sample of it has a
verdict, the problem is ``done`` (at least ``target`` verified traces), ``unsolved`` (``max`` samples, fewer
verified) or gets its next round: the next indices, never an index it already has.  Each problem moves
through its rounds on its own, so one whose verdicts are in is queued again while other problems' long
tails still sample (no barrier between rounds), and a rerun replays the same decisions from the stored
traces and verdicts, asking the teacher only for keys the store lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

OPEN, DONE, UNSOLVED, SKIPPED = "open", "done", "unsolved", "skipped"


def round_sizes(target: int, rounds: Sequence[int] | None) -> list[int]:
    """New samples per round: ``rounds`` as given, else doubling (target, target, 2 x target, 4 x target...)."""
    if rounds:
        return list(rounds)
    return [target] + [target * 2 ** k for k in range(31)]


def round_ends(target: int, maximum: int, rounds: Sequence[int] | None = None) -> list[int]:
    """How many samples a problem holds after each round: the sizes summed, the last size repeated, capped at
    ``maximum``; e.g. ``round_ends(1, 8) == [1, 2, 4, 8]``."""
    sizes, ends, total = round_sizes(target, rounds), [], 0
    while total < maximum:
        total = min(maximum, total + sizes[min(len(ends), len(sizes) - 1)])
        ends.append(total)
    return ends


@dataclass
class ProblemRounds:
    """One problem's progress: the rounds it may have, the round it is in, and its samples' verdicts."""

    ends: list[int]
    target: int
    round: int = 0
    verdicts: dict[int, bool] = field(default_factory=dict)
    status: str = OPEN

    @property
    def issued(self) -> int:
        """Samples the problem holds once its current round is sampled (0 when it gets none)."""
        return self.ends[self.round] if self.ends else 0

    @property
    def verified(self) -> int:
        return sum(ok for i, ok in self.verdicts.items() if i < self.issued)

    def waiting(self) -> list[int]:
        """The current round's indices without a verdict yet."""
        if self.status != OPEN:
            return []
        return [i for i in range(self.issued) if i not in self.verdicts]

    def close_round(self) -> bool:
        """Decide the finished current round: done, unsolved, or the next round (True: new indices to get)."""
        if self.status != OPEN or self.waiting():
            return False
        if self.verified >= self.target:
            self.status = DONE
        elif self.round + 1 >= len(self.ends):
            self.status = UNSOLVED
        else:
            self.round += 1
            return True
        return False


class RoundPlanner:
    """Every problem's rounds; the sampler loop asks it what to get and tells it what the verdicts said."""

    def __init__(self, schedules: dict[str, list[int]], target: int):
        """``schedules``: problem id -> its round ends (an empty list: the problem gets no teacher sample)."""
        self.problems = {pid: ProblemRounds(ends, target, status=OPEN if ends else SKIPPED)
                         for pid, ends in schedules.items()}

    def record(self, pid: str, index: int, ok: bool) -> None:
        self.problems[pid].verdicts.setdefault(index, ok)

    def wanted(self, pid: str) -> list[int]:
        """The indices ``pid`` needs verdicts for now, after closing every round its verdicts already decide;
        [] once it is done, unsolved or skipped."""
        state = self.problems[pid]
        while not state.waiting() and state.close_round():
            pass
        return state.waiting()

    def counts(self) -> dict[str, int]:
        """Samples each problem holds in the run's view: its rounds so far."""
        return {pid: s.issued for pid, s in self.problems.items()}

    def statuses(self) -> dict[str, int]:
        out = {OPEN: 0, DONE: 0, UNSOLVED: 0, SKIPPED: 0}
        for s in self.problems.values():
            out[s.status] += 1
        return out

    def with_status(self, status: str) -> list[str]:
        return [pid for pid, s in self.problems.items() if s.status == status]

    def verified(self) -> int:
        return sum(problem.verified for problem in self.problems.values())
