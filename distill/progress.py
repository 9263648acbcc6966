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
