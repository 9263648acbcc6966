"""The one error every export raises, so callers can tell a failed export from a bug."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An export could not be written, reloaded, or failed its read-back check."""
