"""What a code answer is judged by: its program, the problem's test cases, and how outputs compare.

Tests come in the two styles of APPS, TACO and LiveCodeBench (see :func:`parse_tests`):
stdin/stdout, where the program reads the input and its printed output is compared
token by token (:func:`same_stdout`); and function calls, where a named function (or a
``Solution`` method, LeetCode style) is called with JSON arguments by :data:`CALL_DRIVER`
and its return value compared (:func:`same_value`).  Nothing here runs a program: that
is :mod:`distill.filter.sandbox`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

RESULT_MARK = "\n@@distill-result@@"

# --------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class
    input: Any  # stdin text (stdio) or a list of arguments (call)
    output: Any  # expected stdout text (stdio) or return value (call)


@dataclass(frozen=True)
class TestSuite:
    __test__ = False  # not a pytest class
    style: str  # stdio | call
    cases: tuple[TestCase, ...]
    fn_name: str | None = None


def parse_tests(spec: Any) -> TestSuite:
    """A :class:`TestSuite` from any of the formats datasets ship (ValueError if it is none of them).

    - ours: ``{"style": "stdio"|"call", "fn_name": ..., "cases": [{"input": ..., "output": ...}]}``
    - APPS / TACO ``input_output``: ``{"inputs": [...], "outputs": [...], "fn_name"?: ...}``; with
      ``fn_name`` each input is the argument list (APPS wraps expected values in a list: both match)
    - LiveCodeBench: a list of ``{"input", "output", "testtype": "stdin"|"functional"}`` (or
      ``{"fn_name": ..., "cases": [...]}`` around it); functional inputs are one JSON value per line
    A JSON string of any of these is parsed first.
    """
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tests are not JSON: {exc}") from None
    fn_name = None
    if isinstance(spec, dict) and "inputs" in spec and "outputs" in spec:
        fn_name = spec.get("fn_name")
        if len(spec["inputs"]) != len(spec["outputs"]):
            raise ValueError("tests: inputs and outputs differ in length")
        cases = [{"input": i, "output": o} for i, o in zip(spec["inputs"], spec["outputs"])]
        style = "call" if fn_name else "stdio"
    elif isinstance(spec, dict) and "cases" in spec:
        fn_name = spec.get("fn_name") or spec.get("func_name")
        cases = spec["cases"]
        style = spec.get("style") or _lcb_style(cases) or ("call" if fn_name else "stdio")
    elif isinstance(spec, list):
        cases, style = spec, _lcb_style(spec) or "stdio"
    else:
        raise ValueError("tests: expected {inputs, outputs}, {cases: [...]} or a list of cases")
    if style not in ("stdio", "call"):
        raise ValueError(f"tests: unknown style {style!r}")
    if style == "call" and not fn_name:
        raise ValueError("tests: function-call tests need fn_name")
    if not cases:
        raise ValueError("tests: no test cases")
    return TestSuite(style, tuple(_case(c, style) for c in cases), fn_name)


def _lcb_style(cases: Sequence[Any]) -> str | None:
    types = {c.get("testtype") for c in cases if isinstance(c, dict)} - {None}
    if not types:
        return None
    return "call" if types == {"functional"} else "stdio"


def _case(raw: Any, style: str) -> TestCase:
    if not isinstance(raw, dict) or "input" not in raw or "output" not in raw:
        raise ValueError("tests: each case needs input and output")
    inp, out = raw["input"], raw["output"]
    if style == "stdio":
        return TestCase(_as_text(inp), _as_text(out))
    if isinstance(inp, str):  # LiveCodeBench: one JSON argument per line
        inp = [json.loads(line) for line in inp.splitlines() if line.strip()]
    if isinstance(out, str):
        try:
            out = json.loads(out)
        except json.JSONDecodeError:
            pass
    if not isinstance(inp, list):
        inp = [inp]
    return TestCase(inp, out)


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- code and output


_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(answer_text: str) -> str | None:
    """The last fenced ```python block of the answer (else the last untagged block); None if there is none."""
    blocks = _FENCE_RE.findall(answer_text)
    tagged = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
    plain = [code for lang, code in blocks if not lang]
    chosen = tagged or plain
    if not chosen or not chosen[-1].strip():
        return None
    return chosen[-1]


def same_stdout(actual: str, expected: str) -> bool:
    """Token-wise equality, as judges compare: whitespace and line ends do not matter; floats within 1e-6.

    Integers compare exactly: a relative tolerance would let ``999999999`` pass for
    ``1000000000`` (modular answers, large counts), so the tolerance applies only when
    a token is written as a float (it has ``.``, ``e`` or ``E``).
    """
    a, b = actual.split(), expected.split()
    if a == b:
        return True
    if len(a) != len(b):
        return False
    return all(x == y or _close(x, y) for x, y in zip(a, b))


_INT_TOKEN_RE = re.compile(r"[+-]?\d+")


def _close(x: str, y: str) -> bool:
    if _INT_TOKEN_RE.fullmatch(x) and _INT_TOKEN_RE.fullmatch(y):
        return int(x) == int(y)  # "007" is 7; but 10**9 is not 10**9 - 1
    if not any(c in token for token in (x, y) for c in ".eE"):
        return False  # neither is written as a float: "inf"/"nan" words and the like compare as text
    try:
        u, v = float(x), float(y)
    except ValueError:
        return False
    return math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-6)


def same_value(actual: Any, expected: Any) -> bool:
    """Return-value equality (tuples are lists, floats within 1e-6, integers exact).

    APPS's ``[expected]`` wrapping also matches."""
    return _same(actual, expected) or (isinstance(expected, list) and len(expected) == 1 and _same(actual, expected[0]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # exact: a tolerance would take 10**9 + 7 for 10**9
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


# The function-call driver: loads the solution as a module (its `if __name__ == "__main__"` block stays
# quiet), calls the function with the JSON arguments read from stdin and prints the result after a mark.
CALL_DRIVER = r'''
import json, sys
ns = {"__name__": "solution"}
with open("/box/solution.py", encoding="utf-8") as fh:
    exec(compile(fh.read(), "solution.py", "exec"), ns)
name = sys.argv[1]
fn = ns.get(name)
if not callable(fn) and isinstance(ns.get("Solution"), type):
    fn = getattr(ns["Solution"](), name, None)
if not callable(fn):
    sys.exit("no function %r in the solution" % name)
result = fn(*json.loads(sys.stdin.read()))
def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(plain(x) for x in v)
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    return v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)
sys.stdout.write(MARK + json.dumps(plain(result)) + "\n")
'''.replace("MARK", repr(RESULT_MARK))
