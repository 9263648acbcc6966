"""Verdicts that must be exact: the fast path decides only exact equality, the pronoun "I" is no
multiple-choice letter, and a code problem is asked for a code block, not a boxed answer (issue 14)."""

from __future__ import annotations

import pytest

from distill.filter.answers import chosen_letter
from distill.filter.code_tests import extract_code
from distill.filter.math_fast import exact_value, quick_check
from distill.filter.verify import verify_answer, verify_batch
from distill.problems import CHOICE_INSTRUCTION, CODE_INSTRUCTION, MATH_INSTRUCTION, build_prompt
from distill.records import Problem

# Values a float cannot tell apart (rel_tol=1e-12 said "equal"); each pair differs by an exact amount.
LARGE_NEAR_MISSES = [
    ("2^{40}-1", "2^{40}"),
    ("1000000000001", "10^{12}"),
    ("2^{64}-1", "2^{64}"),
    ("18446744073709551615", "2^{64}"),
    ("10^{12}+1", "10^{12}"),
    ("\\frac{1}{10^{12}}", "\\frac{1}{10^{12}+1}"),  # math-verify's own rounding calls these equal
    ("2^{53}+1", "9007199254740992"),
    ("3^{40}", "12157665459056928800"),
]


@pytest.mark.parametrize("pred, ref", LARGE_NEAR_MISSES)
def test_the_fast_path_never_calls_near_misses_equal(pred, ref):
    assert quick_check(pred, ref) is not True
    assert quick_check(ref, pred) is not True


@pytest.mark.parametrize("pred, ref", LARGE_NEAR_MISSES)
def test_large_near_misses_are_wrong_through_the_entry_point(pred, ref):
    check = verify_answer("math", f"The answer is \\boxed{{{pred}}}.", ref)
    assert (check.correct, check.status) == (False, "wrong"), check


@pytest.mark.parametrize("pred, ref", [("2^{64}-1", "18446744073709551615"), ("2^{40}", "1099511627776"),
                                       ("10^{12}", "1,000,000,000,000"), ("\\frac{2^{10}}{4}", "256")])
def test_exactly_equal_large_values_are_correct(pred, ref):
    assert quick_check(pred, ref) is True
    assert verify_answer("math", f"\\boxed{{{pred}}}", ref).correct


def test_irrational_values_are_never_called_equal_by_floats():
    # sqrt and pi have no exact value here: equality is math-verify's to decide
    assert quick_check("2\\sqrt{2}", "\\sqrt{8}") is None
    assert quick_check("\\frac{\\pi}{2}", "1.5707963267948966") is None
    assert quick_check("\\sqrt{2}", "1.414") is False  # far apart beyond any rounding: still wrong
    checks = verify_batch([("math", "\\boxed{2\\sqrt{2}}", "\\sqrt{8}"), ("math", "\\boxed{\\sqrt{2}+10^{-13}}", "\\sqrt{2}")])
    assert [c.status for c in checks] == ["correct", "wrong"]


def test_exact_values_are_fractions_and_huge_powers_are_refused():
    assert exact_value("2^{64}-1") == 2**64 - 1
    assert exact_value("\\frac{3}{4}+0.25") == 1
    assert exact_value("2^{-2}") == pytest.approx(0.25) and exact_value("2^{-2}").denominator == 4
    assert exact_value("9^{9^{9^{9}}}") is None  # too large to compute: math-verify's (under its deadline)
    assert exact_value("\\sqrt{4}") is None and exact_value("\\pi") is None and exact_value("4^{1/2}") is None


@pytest.mark.parametrize("text, letter", [
    ("The answer is B. Checking again, my answer: I am sure", "B"),
    ("Answer: I think it is C", None),  # no stated letter: nothing, rather than the pronoun
    ("The answer is I'm not sure, maybe D", None),
    ("answer is I\u2019d say (A)", None),
    ("Answer: I\n", "I"),
    ("The answer is (I) because", "I"),
    ("\\boxed{I}", "I"),
    ("The answer is (I).", "I"),
    ("The answer is I.", "I"),
    ("Answer: I", "I"),
    ("I think so.\nI", "I"),
])
def test_the_pronoun_i_is_no_choice(text, letter):
    assert chosen_letter(text) == letter


def test_the_pronoun_i_through_the_entry_point():
    check = verify_answer("multiple_choice", "The answer is B ... my answer: I am sure", "B")
    assert (check.extracted, check.status) == ("B", "correct")


def test_code_problems_are_asked_for_a_code_block_not_a_box():
    prompt = build_prompt(Problem("c", "Add two numbers.", "{}", kind="code"))[0]["content"]
    assert "\\boxed" not in prompt and prompt.endswith(CODE_INSTRUCTION)
    assert "python" in CODE_INSTRUCTION.lower() and "code block" in CODE_INSTRUCTION
    assert extract_code("Reasoning...\n```python\nprint(1)\n```") == "print(1)\n"


def test_math_and_choice_prompts_are_unchanged():
    math = build_prompt(Problem("m", "What is 1 + 1?", "2"))
    choice = build_prompt(Problem("q", "Pick one. (A) 1 (B) 2", "B", kind="multiple_choice"))
    assert math == [{"role": "user", "content": "What is 1 + 1? Please reason step by step, and put your final "
                                                "answer within \\boxed{}."}]
    assert choice[0]["content"] == "Pick one. (A) 1 (B) 2 " + CHOICE_INSTRUCTION
    assert MATH_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    assert CHOICE_INSTRUCTION == ("Please reason step by step, and put the letter of your final answer "
                                  "within \\boxed{}.")
