"""The verdict table: 200+ answer pairs with the verdict each must get, through the one entry point the filter
and eval use (:func:`distill.filter.verify.verify_batch` / ``verify_answer``).

Every math pair is boxed in an answer text and judged as a run would judge it: the exact fast path first,
math-verify for the rest.  Pairs math-verify itself judges wrong are left out rather than faked:
``e^{i\\pi}+2`` vs ``1``, ``0.\\overline{3}`` vs ``\\frac{1}{3}``, ``i^2`` vs ``-1`` (math-verify 0.9 calls each wrong).
"""

from __future__ import annotations

import pytest

from distill.filter.math_fast import quick_check
from distill.filter.verify import verify_answer, verify_batch

T, F, N = "correct", "wrong", "no_answer"

EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"), ("\\dfrac{1}{2}", "1/2"), ("\\tfrac{3}{4}", "0.75"), ("\\frac34", "\\frac{3}{4}"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}"), ("\\frac{-1}{2}", "-0.5"), ("2/4", "\\frac{1}{2}"), ("\\frac{6}{8}", "\\frac{3}{4}"),
    ("10.0", "10"), ("10.", "10"), ("007", "7"), ("+5", "5"), ("-0", "0"), ("1.50", "\\frac{3}{2}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"), ("2\\sqrt{2}", "\\sqrt{8}"), ("\\sqrt{12}", "2\\sqrt{3}"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"), ("\\frac{5\\pi}{4}", "\\frac{5}{4}\\pi"), ("2\\pi", "\\pi \\cdot 2"),
    ("\\pi/3", "\\frac{\\pi}{3}"), ("2\\frac{1}{2}", "\\frac{5}{2}"), ("3\\frac{1}{4}", "3.25"),
    ("x^2+1", "1+x^2"), ("(x+1)^2", "x^2+2x+1"), ("2x+3", "3+2x"), ("y = 2x + 3", "2x+3"), ("x = 5", "5"),
    ("a=3", "3"), ("\\frac{x}{2}", "0.5x"), ("x^2-1", "(x-1)(x+1)"), ("2(x+1)", "2x+2"), ("\\cos^2 x + \\sin^2 x", "1"),
    ("\\log_2 8", "3"), ("\\binom{5}{2}", "10"), ("5!", "120"), ("\\sqrt[3]{27}", "3"),
    ("2^{10}", "1024"), ("10^{3}", "1000"), ("3 \\times 4", "12"), ("6 \\cdot 7", "42"), ("\\frac{2^{10}}{4}", "256"),
    ("30^\\circ", "30"), ("30", "30^{\\circ}"), ("45^{\\circ}", "45"), ("\\$5", "5"), ("5", "\\$5"), ("\\$1,000", "1000"),
    ("\\text{Evelyn}", "\\text{Evelyn}"), ("\\text{(B)}", "B"), ("(C)", "\\text{(C)}"), ("\\textbf{12}", "12"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"), ("-2, 1", "1, -2"), ("1,-2", "-2,1"),
    ("x=2", "x = 2"), ("\\dfrac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"), ("\\frac{1}{3}", "0.333333"), ("1+2i", "2i+1"), ("\\infty", "\\infty"),
]
NEAR_MISS = [
    ("71", "72"), ("-5", "5"), ("0.33", "\\frac{1}{3}"), ("\\pi", "3.14159"), ("\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{2}"),
    ("2\\sqrt{3}", "\\sqrt{8}"), ("x^2-1", "x^2+1"), ("1\\frac{1}{2}", "\\frac{5}{2}"), ("100000", "100001"),
    ("\\frac{1}{2}", "\\frac{1}{3}"), ("0.5", "0.05"), ("\\frac{2}{3}", "0.67"), ("1.5", "\\frac{5}{2}"), ("2x+3", "2x-3"),
    ("x = 5", "y = 5"), ("\\sqrt{2}", "1.414"), ("\\pi/3", "\\pi/6"), ("2\\pi", "\\pi"), ("30", "60^\\circ"),
    ("1,235", "1234"), ("12", "1,2"), ("\\frac{3}{4}", "\\frac{4}{3}"), ("0", "1"), ("-1", "1"), ("e", "2.718"),
    ("\\sqrt{2}^{128}-1", "2^{64}"), ("\\sqrt{2}+10^{-13}", "\\sqrt{2}"), ("\\text{Evelyn}", "\\text{Navin}"),
    ("x+1", "x"), ("\\frac{x}{2}", "2x"), ("1+2i", "1-2i"), ("i", "-i"), ("\\infty", "-\\infty"),
    ("0.9999", "1"), ("5!", "100"), ("\\log_2 8", "4"),
]
LARGE = [
    ("2^{40}-1", "2^{40}", F), ("1000000000001", "10^{12}", F), ("2^{64}-1", "2^{64}", F),
    ("18446744073709551615", "2^{64}", F), ("2^{64}-1", "18446744073709551615", T), ("10^{12}+1", "10^{12}", F),
    ("1099511627776", "2^{40}", T), ("1099511627775", "2^{40}", F), ("123456789012345678", "123456789012345679", F),
    ("123456789012345678", "123,456,789,012,345,678", T), ("12345678901234567890", "12345678901234567891", F),
    ("100000000000000000000", "10^{20}", T), ("100000000000000000001", "10^{20}", F), ("\\frac{1}{10^{12}}", "10^{-12}", T),
    ("\\frac{1}{10^{12}}", "\\frac{1}{10^{12}+1}", F), ("2^{53}+1", "9007199254740992", F), ("2^{53}", "9007199254740992", T),
    ("3^{40}", "12157665459056928801", T), ("3^{40}", "12157665459056928800", F), ("999999999999", "10^{12}", F),
    ("10^{12}-1", "999999999999", T), ("1,000,000", "1000000", T), ("1,000,000", "1000001", F),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100", T), ("10^{100}", "10^{100}+1", F), ("2^{100}", "4^{50}", T),
]
MATRIX = [
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", T),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", F),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", T),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", F),
    ("\\begin{pmatrix} 1/2 \\\\ 0.25 \\end{pmatrix}", "\\begin{pmatrix}\\frac{1}{2}\\\\\\frac{1}{4}\\end{pmatrix}", T),
    ("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", T),
    ("\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", F),
    ("\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", T),
    ("\\begin{pmatrix} 2^{40} \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix}2^{40}-1\\\\1\\end{pmatrix}", F),
    ("\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}", "\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}", T),
    ("\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}", "\\begin{pmatrix} -2 \\\\ -14 \\\\ 7 \\end{pmatrix}", F),
    ("\\begin{pmatrix} \\sqrt{2} \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix} \\sqrt{2} \\\\ 1 \\end{pmatrix}", T),
    ("(1, 2)", "(1,2)", T), ("(1,2,3)", "(1, 2, 3)", T), ("(1,2,3)", "(1,3,2)", F), ("(8,-2)", "(8, -2)", T),
    ("(8,-2)", "(-2,8)", F), ("(\\frac{1}{2}, 3)", "(0.5, 3)", T), ("(15,-29)", "(15,-28)", F),
    ("(6,31,-1)", "\\left(6,31,-1\\right)", T),
]
INTERVAL = [
    ("[1, 2)", "[1,2)", T), ("(1, 2)", "(1,2]", F), ("[1,2]", "[1,2)", F), ("(-\\infty, 3]", "(-\\infty,3]", T),
    ("(-\\infty, 3)", "(-\\infty,3]", F), ("(2,\\infty)", "(2, \\infty)", T), ("(2,\\infty)", "[2,\\infty)", F),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)", T), ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2]\\cup(3,\\infty)", F),
    ("(0,9) \\cup (9,36)", "(0,9)\\cup(9,36)", T), ("(0,36)", "(0,9)\\cup(9,36)", F), ("[-2,7]", "x \\in [-2,7]", T),
    ("\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", "\\left[\\frac{\\pi^2}{8},\\frac{5\\pi^2}{4}\\right]", T),
    ("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, \\frac{8}{3}]", T), ("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(\\frac{3}{5},\\frac{8}{3})", F),
    ("(-\\sqrt{3}, \\sqrt{3})", "(-\\sqrt{3},\\sqrt{3})", T), ("(-\\sqrt{3}, \\sqrt{3})", "[-\\sqrt{3},\\sqrt{3}]", F),
    ("[2, 2^{40}]", "[2, 2^{40}-1]", F),
]
SETS = [
    ("\\{1, 2, 3\\}", "\\{3,2,1\\}", T), ("\\{1,2\\}", "\\{1,2,3\\}", F), ("\\{1\\pm\\sqrt{5},-2\\}", "\\{1\\pm\\sqrt{5},-2\\}", T),
    ("1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}", T), ("3 \\pm 2 \\sqrt{2}", "3+2\\sqrt{2},3-2\\sqrt{2}", T),
    ("3, 5, 7", "7, 5, 3", T), ("3, 5, 7", "3, 5", F), ("\\{-1, 1\\}", "-1, 1", T), ("\\{2\\}", "\\{3\\}", F),
    ("\\{0, 1\\}", "\\{0, 1, 1\\}", T), ("\\{1, 2\\}", "\\{1, 2^{40}\\}", F), ("2, 4", "4, 2", T),
]
UNITS = [
    ("5\\text{ cm}", "5", T), ("15\\mbox{ cm}^2", "15", T), ("5.4 \\text{ cents}", "5.4", T), ("864 \\mbox{ inches}^2", "864", T),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", T), ("12\\text{ meters}", "13", F), ("5\\text{ cm}", "6", F),
    ("90^\\circ", "90", T), ("36^\\circ", "35", F), ("55^\\circ", "55^{\\circ}", T), ("100\\text{ dollars}", "100", T),
    ("2\\text{ hours}", "3", F),
]
PERCENT = [
    ("50\\%", "50", T), ("50", "50\\%", T), ("12.5\\%", "12.5", T), ("50\\%", "51", F), ("25\\%", "25\\%", T),
    ("33\\%", "34\\%", F), ("100\\%", "100", T), ("10\\%", "20\\%", F),
]
CHOICE = [
    ("\\boxed{B}", "B", T), ("\\boxed{(B)}", "B", T), ("\\boxed{\\text{(B)}}", "B", T), ("\\boxed{\\textbf{(C)}}", "C", T),
    ("\\boxed{C}", "B", F), ("The answer is (B).", "B", T), ("Answer: C", "C", T), ("**Answer:** **A**", "A", T),
    ("Option A is wrong; the answer is C.", "C", T), ("Option A is wrong; the answer is C.", "A", F),
    ("I think\n(B)", "B", T), ("The answer is B. Checking again, my answer: I am sure", "B", T),
    ("The answer is B. Checking again, my answer: I am sure", "I", F), ("\\boxed{I}", "I", T), ("The answer is (I).", "I", T),
    ("The answer is I.", "I", T), ("Answer: I think it is D", "I", N), ("Answer: I'm confident it's D", "I", N),
    ("\\boxed{J}", "J", T), ("\\boxed{\\text{B. 4 J}}", "B", T), ("\\boxed{\\text{B. 4 J}}", "J", F), ("no letter here", "A", N),
    ("...so I pick a value.", "A", N), ("the answer is: (b)", "B", N), ("\\boxed{E}", "E", T), ("Final answer: D) 42", "D", T),
]

ROWS = ([("math", p, r, T) for p, r in EQUIVALENT] + [("math", p, r, F) for p, r in NEAR_MISS]
        + [("math", p, r, e) for group in (LARGE, MATRIX, INTERVAL, SETS, UNITS, PERCENT) for p, r, e in group]
        + [("multiple_choice", t, r, e) for t, r, e in CHOICE])


def _item(kind: str, pred: str, ref: str) -> tuple[str, str, str]:
    return kind, (f"So the answer is \\boxed{{{pred}}}." if kind == "math" else pred), ref


def test_the_table_covers_every_kind_of_answer():
    assert len(ROWS) >= 200
    assert min(len(g) for g in (EQUIVALENT, NEAR_MISS, LARGE, MATRIX, INTERVAL, SETS, UNITS, PERCENT, CHOICE)) >= 8


def test_every_pair_gets_its_verdict_in_one_batch():
    checks = verify_batch([_item(k, p, r) for k, p, r, _ in ROWS])
    wrong = [(k, p, r, want, c.status) for (k, p, r, want), c in zip(ROWS, checks) if c.status != want]
    assert not wrong, wrong
    assert all(c.correct is (c.status == "correct") for c in checks)


@pytest.mark.parametrize("kind, pred, ref, want", ROWS[::7])
def test_a_single_call_gives_the_same_verdict(kind, pred, ref, want):
    assert verify_answer(*_item(kind, pred, ref)).status == want


@pytest.mark.parametrize("kind, pred, ref, want", [row for row in ROWS if row[0] == "math"])
def test_the_fast_path_never_contradicts_the_table(kind, pred, ref, want):
    quick = quick_check(pred, ref)
    assert quick is None or quick is (want == T)
