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
_ROUNDING = Fraction(1, 10_000)  # values closer than this (relative) may be one rounded: math-verify decides
_MAX_POWER_BITS = 4096  # 2^{4096}: beyond any real answer, and still microseconds to compute exactly


class _Inexact(ValueError):
    """The expression has no exact rational value here (``\\sqrt``, ``\\pi``, a fractional power, a huge one)."""


class _Expr:
    """A recursive-descent evaluator for constant LaTeX scalars: numbers, + - * / ^, \\frac, \\sqrt, \\pi.

    Two modes.  ``exact=True`` computes a :class:`~fractions.Fraction` (decimals read exactly,
    integer powers only, and only up to ``_MAX_POWER_BITS`` bits) and refuses ``\\sqrt`` and ``\\pi``
    with :class:`_Inexact`: only an exact value may call two answers equal, since a float
    cannot tell ``2^{64}-1`` from ``2^{64}``.  ``exact=False`` computes a float, used only to
    call two values far apart; floats overflow at once, so ``9^{9^{9^9}}`` costs nothing.
    Anything else (variables, tuples, text, factorials, brace-less ``\\frac12``, ``2\\frac{1}{2}``
    which math-verify reads as a mixed number, ``2(3)``) raises ValueError and goes to math-verify.
    """

    def __init__(self, text: str, exact: bool) -> None:
        self.tokens = _NUM_TOKEN_RE.findall(text)
        self.i = 0
        self.exact = exact

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def value(self):
        result = self.expr()
        if self.peek() is not None:
            raise ValueError("trailing tokens")
        return result

    def expr(self):
        total = self.term()
        while self.peek() in ("+", "-"):
            total = total + self.term() if self.take() == "+" else total - self.term()
        return total

    def term(self):
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

    def unary(self):
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.unary()  # right-associative; OverflowError/complex caught by the caller
        if not self.exact:
            return float(base**exponent)
        if exponent.denominator != 1:
            raise _Inexact("fractional power")
        size = max(base.numerator.bit_length(), base.denominator.bit_length(), 1)
        if abs(exponent.numerator) * size > _MAX_POWER_BITS:
            raise _Inexact("power too large to compute exactly")
        return base**exponent.numerator

    def group(self):
        self.take("{")
        inner = self.expr()
        self.take("}")
        return inner

    def atom(self):
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return Fraction(tok) if self.exact else float(tok)
        if tok in ("\\pi", "\\sqrt") and self.exact:
            raise _Inexact(tok)
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


def _evaluate(text: str, exact: bool):
    s = normalise_answer(text)
    if not s or len(s) > 200 or not _NUMERIC_CHARS_RE.fullmatch(s):
        return None
    try:
        return _Expr(s, exact).value()
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


def exact_value(text: str) -> Fraction | None:
    """The exact rational value of a constant in LaTeX (``2^{64}-1``, ``\\frac{3}{4}+0.25``), else None."""
    value = _evaluate(text, exact=True)
    return value if isinstance(value, Fraction) else None


def numeric_value(text: str) -> float | None:
    """The approximate value of a constant scalar in LaTeX (``\\frac{\\sqrt{3}}{2}``, ``2\\pi``), else None.

    Only good for telling values apart: floats cannot decide that two answers are equal.
    """
    value = _evaluate(text, exact=False)
    return value if isinstance(value, float) and math.isfinite(value) else None


def quick_check(extracted: str, reference: str) -> bool | None:
    """True/False when the answer is decidable without math-verify, None when it is not.

    Correct only on exact equality: equal normal forms, or equal exact rational values
    (ints and Fractions, decimals read exactly).  Wrong: two exact values written without
    a decimal point that differ (no rounding can explain them), or two values that differ
    more than math-verify's rounding could forgive (it accepts 0.333333 for 1/3); no
    percent sign, which makes 50 and 0.5 the same answer.  Everything else -- ``\\sqrt``,
    ``\\pi``, values a float cannot separate -- is math-verify's to decide.
    """
    both_assign = all(_ASSIGN_RE.match(_SPACING_RE.sub("", t.strip().strip("$"))) for t in (extracted, reference))
    a, b = normalise_answer(extracted, not both_assign), normalise_answer(reference, not both_assign)  # x=5 vs y=5
    if a and a == b:
        return True
    if both_assign:
        return None
    x = plain_number(a)
    x = exact_value(a) if x is None else x
    y = plain_number(b)
    y = exact_value(b) if y is None else y
    if x is not None and y is not None:
        if x == y:
            return True
        if _has_percent(extracted, reference):
            return None
        if "." not in a and "." not in b:
            return False  # exact and different, and no decimal that math-verify might call a rounding
        return False if abs(x - y) > _ROUNDING * max(1, abs(x), abs(y)) else None
    u = numeric_value(a) if x is None else _approx(x)
    v = numeric_value(b) if y is None else _approx(y)
    if u is None or v is None:
        return False if _scalar_against_structure(a, u, b, v) else None
    return _far_apart(u, v, extracted, reference)


def _approx(value: Fraction) -> float | None:
    try:
        return float(value)
    except OverflowError:  # 2^{4096}: exact, but past any float
        return None


_MATRIX_RE = re.compile(r"\\begin\{[pbvB]?matrix\}")


def _is_structure(s: str) -> bool:
    """An interval, a tuple, a union or a matrix of several entries: never equal to one number."""
    if "\\cup" in s:
        return True
    if _MATRIX_RE.search(s):
        return "&" in s or "\\\\" in s
    if s[:1] not in "([" or s[-1:] not in ")]":
        return False
    depth = 0
    for ch in s[1:-1]:
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0:
            return False  # "(1)+(2)": the brackets do not enclose the whole answer
        if ch == "," and depth == 0:
            return True
    return False


def _scalar_against_structure(a: str, u: float | None, b: str, v: float | None) -> bool:
    """One side a constant number, the other an interval/tuple/union/matrix: wrong, whatever the values."""
    return (u is not None and _is_structure(b)) or (v is not None and _is_structure(a))


def _has_percent(*texts: str) -> bool:
    return any(_PERCENT_RE.search(t) for t in texts)


def _far_apart(x: float, y: float, extracted: str, reference: str) -> bool | None:
    """False (wrong) when two values differ beyond any rounding math-verify allows; None when it must decide."""
    if _has_percent(extracted, reference):
        return None
    return False if abs(x - y) > float(_ROUNDING) * max(1.0, abs(x), abs(y)) else None
