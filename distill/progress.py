"""How stages report progress without printing: the CLI plugs in rich bars, the API a no-op."""

from __future__ import annotations

from typing import Any, Protocol


class Task(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    def stage_started(self, stage: str) -> None: ...

    def stage_finished(self, stage: str, summary: str, seconds: float, skipped: bool) -> None: ...

    def task(self, description: str, total: int | None = None) -> Task: ...


class _NullTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class NullReporter:
    """Reports nothing; what notebooks and tests get unless they pass their own."""

    def stage_started(self, stage: str) -> None:
        pass

    def stage_finished(self, stage: str, summary: str, seconds: float, skipped: bool) -> None:
        pass

    def task(self, description: str, total: int | None = None) -> Task:
        return _NullTask()


class SamplingMeter:
    """Live sampling figures for the progress line: traces/s, output tokens/s, acceptance, spend (and ETA).

    Rates count only work done in this process (resumed chunks are in ``done`` but not in the
    rates), so a resumed job's ETA is not flattered by the chunks it found on disk.
    ``accepted`` is a cheap estimate (complete trace, closed think, boxed answer equal to the
    reference by the verifier's quick check); the filter stage decides for real.
    """

    def __init__(self, total: int, done: int = 0, price: Any = None, clock: Any = None):
        import time

        self._clock = clock or time.monotonic
        self.started = self._clock()
        self.total, self.done = total, done
        self.price = price  # a distill.teachers.pricing.PriceTable, or None when the teacher costs nothing we know of
        self.traces = self.completion_tokens = self.prompt_tokens = self.accepted = self.failed = 0
        self.truncated = 0
        self.spend = 0.0

    def add(self, stats: dict[str, int]) -> dict[str, Any]:
        """Account one committed chunk; returns the fields to show."""
        self.traces += stats.get("traces", 0)
        self.done += stats.get("traces", 0)
        self.completion_tokens += stats.get("completion_tokens", 0)
        self.prompt_tokens += stats.get("prompt_tokens", 0)
        self.accepted += stats.get("accepted", 0)
        self.failed += stats.get("failed", 0)
        self.truncated += stats.get("truncated", 0)
        if self.price is not None:  # list price, all input as cache misses: an upper bound on the bill
            self.spend = (self.prompt_tokens * self.price.input_cache_miss_per_m
                          + self.completion_tokens * self.price.output_per_m) / 1_000_000
        return self.fields()

    def fields(self) -> dict[str, Any]:
        elapsed = max(1e-9, self._clock() - self.started)
        return {
            "traces/s": round(self.traces / elapsed, 2),
            "tok/s": round(self.completion_tokens / elapsed, 1),
            "accept~": f"{100 * self.accepted / self.traces:.0f}%" if self.traces else None,
            "trunc": self.truncated or None,
            "failed": self.failed or None,
            "spend": f"${self.spend:.2f}" if self.price is not None else None,
        }

    def eta_seconds(self) -> float | None:
        """Time left at this process's rate (the CLI's bar shows its own ETA column; this is for API callers)."""
        rate = self.traces / max(1e-9, self._clock() - self.started)
        return (self.total - self.done) / rate if rate > 0 and self.total > self.done else None

