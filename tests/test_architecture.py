"""The shape of the code, checked on the installed package: one-way imports with no cycles, stages that
never reach back into the pipeline, a core that loads no stage at import time, small modules and functions,
and an install that adds no top-level name but ``distill``."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGE_PACKAGES = ("distill.teachers", "distill.students", "distill.eval", "distill.filter", "distill.publish")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 70
MAX_CONSTRUCTOR_PARAMETERS = 8


def declared_packages() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def installed_modules() -> dict[str, Path]:
    """Every module of the installed ``distill`` package, by its installed name (the install maps the
    top-level folders teachers/, students/ and eval/ under ``distill``)."""
    modules: dict[str, Path] = {}
    for package in declared_packages():
        pkg = importlib.import_module(package)
        modules[package] = Path(pkg.__file__)
        for info in pkgutil.iter_modules(pkg.__path__, f"{package}."):
            if not info.ispkg:
                modules[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return modules


MODULES = installed_modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")[: -node.level] if not MODULES[module].name == "__init__.py" else \
        module.split(".")[: len(module.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def imports_of(module: str, top_level_only: bool = False) -> set[str]:
    """The distill modules ``module`` imports (``from pkg import submodule`` counts as the submodule), at
    module level only or anywhere (inside functions too); imports for type checkers only are left out."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != module}


def test_every_package_folder_is_installed():
    """A package folder missing from pyproject's list would be left out of a regular install."""
    folders = {p.parent for root in ("distill", "teachers", "students", "eval") for p in (REPO / root).rglob("__init__.py")}
    installed = {MODULES[m].parent for m in MODULES if MODULES[m].name == "__init__.py"}
    assert folders == installed


def test_no_import_cycles():
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_stage_imports_the_pipeline():
    for m in MODULES:
        if m.startswith(STAGE_PACKAGES):
            assert not imports_of(m) & {"distill.pipeline", "distill.cli", "distill.api"}, m


def test_core_imports_no_stage_at_module_level():
    core = [m for m in MODULES if not m.startswith(STAGE_PACKAGES)]
    for m in core:
        stages = {i for i in imports_of(m, top_level_only=True) if i.startswith(STAGE_PACKAGES)}
        assert not stages, f"{m} imports {sorted(stages)} at module level"


def test_modules_functions_and_constructors_are_small():
    too_big = []
    for m, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_big.append(f"{m}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_big.append(f"{m}.{node.name}: {lines} lines")
                params = len(node.args.args) + len(node.args.kwonlyargs) - 1
                if node.name == "__init__" and params > MAX_CONSTRUCTOR_PARAMETERS:
                    too_big.append(f"{m}.__init__: {params} parameters")
    assert not too_big, "\n".join(too_big)


def test_pipeline_reads_on_one_screen():
    assert MODULES["distill.pipeline"].read_text(encoding="utf-8").count("\n") < 200


def test_an_install_adds_only_the_distill_name(tmp_path):
    """A regular (non-editable) install of this checkout puts one top-level import name in site-packages."""
    import shutil

    source, target = tmp_path / "src", tmp_path / "site"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "__pycache__",
                                                                "notebooks", "tests", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    names = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert names == {"distill"}
    dist_info = next(target.glob("distill-*.dist-info"))
    record_tops = {line.split("/", 1)[0] for line in (dist_info / "RECORD").read_text().splitlines()}
    assert {t for t in record_tops if not t.endswith(".dist-info") and t != "bin" and not t.startswith("..")} \
        == {"distill"}
    for sub in ("teachers/sampler.py", "students/trainer.py", "eval/protocol.py", "publish/templates"):
        assert (target / "distill" / sub).exists(), sub
