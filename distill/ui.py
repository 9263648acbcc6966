"""Rich progress for the CLI: a bar per long task, one summary line per stage."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any):
        self.progress = progress
        self.task_id = task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        total = fields.pop("total", None)
        info = " ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in fields.items() if v is not None)
        self.progress.update(self.task_id, advance=n, info=info, **({"total": total} if total else {}))

    def close(self) -> None:
        self.progress.remove_task(self.task_id)


class RichReporter:
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=console, transient=True,
        )

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def stage_started(self, stage: str) -> None:
        pass

    def stage_finished(self, stage: str, summary: str, seconds: float, skipped: bool) -> None:
        if skipped:
            self.console.print(f"[dim]{stage:7s} skipped (up to date): {summary}[/]", highlight=False)
        else:
            self.console.print(f"[green]{stage:7s}[/] {seconds:6.1f}s  {summary}", highlight=False)

    def task(self, description: str, total: int | None = None) -> _RichTask:
        return _RichTask(self.progress, self.progress.add_task(description, total=total, info=""))
