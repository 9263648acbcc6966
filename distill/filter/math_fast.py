"""The fast path: math answers decided in the calling process, without math-verify.

Why a fast path: most answers (AIME, AMC, GSM8K, and many MATH ones) are plain
numbers or the reference string written the same way.  :func:`quick_check`
decides those in the calling process in microseconds, and only the rest go to
the workers (:mod:`distill.filter.math_check`).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SPACING_RE = re.compile(r"\\[,;:! ]|\\left|\\right|~|\s+")
_TEXT_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\{([^{}]*)\}")
_DEGREE_RE = re.compile(r"\^\{?\\circ\}?|°")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INT_RE = re.compile(r"-?\d{1,60}")
_DECIMAL_RE = re.compile(r"-?(?:\d{1,60}(?:\.\d{0,60})?|\.\d{1,60})")
_FRAC_RE = re.compile(r"(-?)(?:\\frac\{(-?\d{1,30})\}\{(\d{1,30})\}|(-?\d{1,30})/(\d{1,30}))")
_PERCENT_RE = re.compile(r"\\?%")
_ASSIGN_RE = re.compile(r"[A-Za-z]=")


def normalise_answer(text: str, drop_assignment: bool = True) -> str:
    r"""A canonical spelling for exact matching: no spacing, ``\dfrac``→``\frac``, no degree/``\$``/percent signs,
    ``\text{}`` unwrapped, ``x =`` dropped, thousands commas dropped, ``(B)``→``B``.

    Equal normal forms mean equal answers; different ones mean nothing (math-verify decides).
    """
    s = text.strip().strip("$")
    s = _SPACING_RE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "")
    s = _DEGREE_RE.sub("", s)
    s = _PERCENT_RE.sub("", s)
    for _ in range(3):  # nested \text{\textbf{..}}
        s, n = _TEXT_RE.subn(r"\1", s)
        if not n:
            break
    s = s.rstrip(".")
    if drop_assignment and _ASSIGN_RE.match(s) and s.count("=") == 1:  # "x = 5" boxes 5 (math-verify agrees)
        s = s[s.index("=") + 1 :]
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if re.fullmatch(r"\([A-Za-z]\)", s):
        s = s[1]
    return s


def plain_number(text: str) -> Fraction | None:
    r"""The value of an integer, decimal or simple fraction (``3/4``, ``\frac{3}{4}``), else None.

    Bounded lengths and no exponent notation, so no input can make this slow.
    """
    if _DECIMAL_RE.fullmatch(text):
        return Fraction(text) if text not in ("-", ".", "-.") else None
    m = _FRAC_RE.fullmatch(text)
    if m:
        sign, num, den = m.group(1), m.group(2) or m.group(4), m.group(3) or m.group(5)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign else value
    return None


_NUM_TOKEN_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\frac|\\sqrt|\\pi|\\cdot|\\times|[-+*/^(){}\[\]]")
_NUMERIC_CHARS_RE = re.compile(r"(?:\d|\.|\\frac|\\sqrt|\\pi|\\cdot|\\times|[-+*/^(){}\[\]])+")


class _Expr:
    """A recursive-descent evaluator for constant LaTeX scalars: numbers, + - * / ^, \\frac, \\sqrt, \\pi.

    Floats only, so no input can make it slow: ``9^{9^{9^9}}`` overflows at once
    instead of computing a power for ever.  Anything else (variables, tuples, text,
    factorials, brace-less ``\\frac12``, ``2\\frac{1}{2}`` which math-verify reads as a mixed
    number, ``2(3)``) raises ValueError and goes to math-verify.
    """

    def __init__(self, text: str) -> None:
        self.tokens = _NUM_TOKEN_RE.findall(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def value(self) -> float:
        result = self.expr()
        if self.peek() is not None:
            raise ValueError("trailing tokens")
        return result

    def expr(self) -> float:
        total = self.term()
        while self.peek() in ("+", "-"):
            total = total + self.term() if self.take() == "+" else total - self.term()
        return total

    def term(self) -> float:
        total = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                total *= self.unary()
            elif tok == "/":
                self.take()
                total /= self.unary()
            elif tok in ("\\sqrt", "\\pi"):
                total *= self.unary()  # implicit product: 2\sqrt{3}, 3\pi (not 2\frac12: a mixed number)
            else:
                return total

    def unary(self) -> float:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return float(base ** self.unary())  # right-associative; OverflowError/complex caught by the caller
        return base

    def group(self) -> float:
        self.take("{")
        inner = self.expr()
        self.take("}")
        return inner

    def atom(self) -> float:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return float(tok)
        if tok == "\\pi":
            return math.pi
        if tok == "\\frac":
            num = self.group()
            return num / self.group()
        if tok == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            return self.group() ** (1.0 / index)
        if tok in ("(", "{"):
            inner = self.expr()
            self.take(")" if tok == "(" else "}")
            return inner
        raise ValueError(f"unexpected {tok!r}")


def numeric_value(text: str) -> float | None:
    """The value of a constant scalar in LaTeX (``\\frac{\\sqrt{3}}{2}``, ``2\\pi``), else None."""
    s = normalise_answer(text)
    if not s or len(s) > 200 or not _NUMERIC_CHARS_RE.fullmatch(s):
        return None
    try:
        value = _Expr(s).value()
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def quick_check(extracted: str, reference: str) -> bool | None:
    """True/False when the answer is decidable without math-verify, None when it is not.

    Correct: equal normal forms, equal plain numbers, or constant expressions with
    equal values.  Wrong: different values, when both are integers or they differ by
    more than math-verify's rounding could forgive (it accepts 0.333333 for 1/3), and
    no percent sign makes 50 and 0.5 the same answer.
    """
    both_assign = all(_ASSIGN_RE.match(_SPACING_RE.sub("", t.strip().strip("$"))) for t in (extracted, reference))
    a, b = normalise_answer(extracted, not both_assign), normalise_answer(reference, not both_assign)  # x=5 vs y=5
    if a and a == b:
        return True
    if both_assign:
        return None
    x, y = plain_number(a), plain_number(b)
    if x is not None and y is not None:
        if x == y:
            return True
        if _INT_RE.fullmatch(a) and _INT_RE.fullmatch(b) and not _has_percent(extracted, reference):
            return False
        return _far_apart(float(x), float(y), extracted, reference)
    u, v = numeric_value(a), numeric_value(b)
    if u is None or v is None:
        return None
    if math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-15):
        return True
    return _far_apart(u, v, extracted, reference)


def _has_percent(*texts: str) -> bool:
    return any(_PERCENT_RE.search(t) for t in texts)


def _far_apart(x: float, y: float, extracted: str, reference: str) -> bool | None:
    """False (wrong) when two values differ beyond any rounding math-verify allows; None when it must decide."""
    if _has_percent(extracted, reference):
        return None
    return False if abs(x - y) > 1e-4 * max(1.0, abs(x), abs(y)) else None
