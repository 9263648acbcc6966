"""Each stage's code version, kept honest: a change to a stage's code must come with a bump of its version.

A stage's version is part of its fingerprint, so bumping it re-runs the stage (and, once its output
differs, what follows); forgetting to bump it would reuse results the old code made.  This module hashes
each stage's code (the syntax tree of its modules, without comments, formatting or docstrings) and
records it in ``stage_versions.json`` beside the version; ``tests/test_stage_code.py`` fails when a
stage's code no longer matches the recorded hash, naming the stage to bump.  After bumping ``version``
in the stage's ``stage.py``, record the new hashes:

    python -m distill.stage_code

It refuses to record a changed hash under an unchanged version.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import pkgutil
import sys
from pathlib import Path

from distill.stage import STAGE_HOMES, get_stage

RECORD = Path(__file__).with_name("stage_versions.json")
# the packages whose code decides each stage's output; the train stage's excludes the export package and the
# planner (which only advises)
STAGE_PACKAGES = {
    "sample": ("distill.teachers",),  # with distill.problems: the prompt
    "filter": ("distill.filter",),
    "train": ("distill.students",),
    "export": ("distill.students.export",),
    "eval": ("distill.eval", "distill.filter", "distill.teachers"),  # it scores with the verifier, samples
    "push": ("distill.publish",),
}
EXCLUDED = ("distill.students.export", "distill.students.plan")
EXTRA_MODULES = {"sample": ("distill.problems",), "eval": ("distill.problems",)}  # the prompt builder


def _modules(stage: str) -> list[str]:
    names = []
    for package in STAGE_PACKAGES[stage]:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if stage != "export" and info.name.startswith(EXCLUDED):
                continue
            names.append(info.name)
    return sorted(names + list(EXTRA_MODULES.get(stage, ())))


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_hash(stage: str) -> str:
    """The hash of a stage's code: what it does, not how it is formatted or documented."""
    h = hashlib.sha256()
    for name in _modules(stage):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        h.update(name.encode() + b"\0" + source_digest(Path(spec.origin).read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:16]


def source_digest(source: str) -> str:
    """One module's code, as its syntax tree without docstrings: comments and formatting do not count."""
    return hashlib.sha256(ast.dump(_without_docstrings(ast.parse(source))).encode()).hexdigest()


def recorded() -> dict[str, dict[str, str]]:
    return json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}


def stale_stages() -> list[str]:
    """The stages whose code changed since their version was recorded: each must be bumped."""
    record = recorded()
    return [s for s in STAGE_HOMES if record.get(s, {}).get("code") != code_hash(s)
            or record.get(s, {}).get("version") != get_stage(s).version]


def record_versions() -> list[str]:
    """Write the current versions and code hashes; refuses a changed hash under an unchanged version."""
    old, new, unbumped = recorded(), {}, []
    for stage in STAGE_HOMES:
        version, code = get_stage(stage).version, code_hash(stage)
        if stage in old and old[stage]["code"] != code and old[stage]["version"] == version:
            unbumped.append(stage)
        new[stage] = {"version": version, "code": code}
    if unbumped:
        return unbumped
    RECORD.write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
    return []


def main() -> int:
    unbumped = record_versions()
    if unbumped:
        sys.stderr.write(f"the code of {', '.join(unbumped)} changed: bump its version in its stage.py first\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
