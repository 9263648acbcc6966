"""Error types that decide how the CLI exits.

A :class:`UserError` is bad input (config, files, arguments): the CLI prints its
one-line message and exits 2.  A :class:`StageError` is a failure inside a stage
while running: the CLI names the stage, the run folder and the log, and exits 1.
"""

from __future__ import annotations


class DistillError(Exception):
    """Base class for all errors distill raises on purpose."""


class UserError(DistillError):
    """Bad input from the user: a config, a path, an argument. Exit code 2."""


class ConfigError(UserError):
    """A config value is unknown, mistyped or impossible; the message names its full path."""


class StageError(DistillError):
    """A stage failed while running. Exit code 1."""

    def __init__(self, stage: str, message: str, run_dir: str | None = None, log: str | None = None):
        self.stage = stage
        self.run_dir = run_dir
        self.log = log
        super().__init__(message)
