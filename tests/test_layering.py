"""Data flows one way: core modules import none of teachers/students/eval; only pipeline and CLI may,
inside functions, so `distill --help` and config checks stay free of torch and vLLM."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = sorted((REPO / "distill").glob("*.py"))
ORCHESTRATORS = {"pipeline.py", "cli.py", "api.py"}


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_no_downstream_package(path):
    downstream = {"teachers", "students", "eval"}
    if path.name in ORCHESTRATORS:
        assert not imports(path, top_level_only=True) & downstream  # only inside functions
    else:
        assert not imports(path, top_level_only=False) & downstream


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_no_heavy_library_at_module_level(path):
    assert not imports(path, top_level_only=True) & {"torch", "vllm", "transformers", "trl", "peft"}


def test_library_code_never_prints():
    for package in ("distill", "teachers", "students", "eval"):
        for path in (REPO / package).rglob("*.py"):
            if path.name in ("cli.py", "ui.py"):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
            assert not calls, f"{path} calls print()"
