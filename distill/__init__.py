"""distill: distil a reasoning teacher into small students (R1-Distill style).

The Python API is exported here lazily (PEP 562): ``import distill`` imports none of
it, so it stays as light as ``distill --help`` - no pydantic, torch or transformers
until a name below is first used.  See docs/python-api.md.
"""

from __future__ import annotations

__all__ = ["Run", "StageNotRun", "load_config", "open_run", "run", "run_stage", "write_report"]

_LAZY = {
    "Run": "distill.api",
    "StageNotRun": "distill.api",
    "load_config": "distill.api",
    "open_run": "distill.api",
    "run": "distill.api",
    "run_stage": "distill.api",
    "write_report": "distill.publish.report",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distill' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
