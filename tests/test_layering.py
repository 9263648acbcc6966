"""The core stays light: no core module imports torch, vLLM or transformers at module level, so
`distill --help` and config checks stay fast; and library code never prints (logging, and rich at the CLI).
Which stage imports what is checked on the installed package in tests/test_architecture.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_architecture import MODULES, STAGE_PACKAGES

CORE = sorted(m for m in MODULES if not m.startswith(STAGE_PACKAGES))


def top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_heavy_library_at_module_level(module):
    assert not top_level_imports(MODULES[module]) & {"torch", "vllm", "transformers", "trl", "peft", "datasets"}


def test_library_code_never_prints():
    for module, path in MODULES.items():
        if module in ("distill.cli", "distill.ui"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path} calls print()"
