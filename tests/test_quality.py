"""Quality checks: each has fixtures that trip it and fixtures that must pass it, R1-style
reasoning (which repeats "Wait," and "Let me check" all the time) among the latter."""

from __future__ import annotations

import json
import random

import pytest

from distill.config import FilterConfig
from distill.filter.traces import judge
from distill.filter.quality import (conflicting_boxes, foreign_script_fraction, has_final_answer, is_looping, repetition,
                             script_words)
from tests.conftest import SHARED_DATA
from tests.test_records_and_verify import make_trace

FILLERS = ["Wait,", "Hmm,", "Let me check that again.", "Alternatively,", "But wait, let me double-check.",
           "Okay, so", "Let me verify.", "Wait, no."]


def r1_reasoning(seed: int = 0, steps: int = 120) -> str:
    """Reasoning shaped like R1's: short self-checks recur constantly, the mathematics does not."""
    rng = random.Random(seed)
    parts = ["Okay, so I need to find the sum of the roots of the quadratic."]
    for i in range(steps):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        parts.append(rng.choice(FILLERS))
        parts.append(rng.choice([
            f"if x = {a} then {a} squared is {a * a}, and adding {b} gives {a * a + b}.",
            f"the product of {a} and {b} is {a * b}, which is {'even' if a * b % 2 == 0 else 'odd'}.",
            f"step {i}: subtract {b} from {a} to get {a - b}, so the difference is {abs(a - b)} in size.",
            f"maybe I should try {a} over {b}, that is \\frac{{{a}}}{{{b}}}, roughly {a / b:.3f}.",
        ]))
    parts.append("So the answer is 5.")
    return " ".join(parts)


LOOP_BLOCK = ("Alternatively, perhaps I can write it as A = (3√39 + 15√3)/2. This is similar to what I had before, "
              "and it is still not in the desired form, so let me try once more from the start.")


def test_r1_reasoning_with_recurring_short_phrases_is_not_repetition():
    rep = repetition(r1_reasoning())
    assert rep.words > 1500
    assert not is_looping(rep, 20, 0.3, 4)
    assert rep.repeated_fraction < 0.05


def test_a_reasoning_that_ends_in_a_loop_is_repetition():
    rep = repetition(r1_reasoning(1, 40) + " " + " ".join([LOOP_BLOCK] * 8))
    assert rep.tail_period == len(LOOP_BLOCK.split()) and rep.tail_repeats >= 7
    assert is_looping(rep, 20, None, 4)  # the tail alone trips it


def test_a_loop_the_model_escaped_is_repetition_by_its_share():
    text = r1_reasoning(2, 30) + " " + " ".join([LOOP_BLOCK] * 20) + " " + r1_reasoning(3, 30)
    rep = repetition(text)
    assert rep.tail_loop_words == 0  # the text does not end in the loop
    assert rep.repeated_fraction > 0.3 and is_looping(rep, 20, 0.3, 4)


def test_short_stutters_are_not_a_loop():
    rep = repetition(r1_reasoning(4, 40) + " Wait, wait, wait, wait, wait, wait.")
    assert not is_looping(rep, 20, 0.3, 4)


def _sky_t1_reasoning(row: dict) -> str:
    return row["generation"].split("<|end_of_thought|>")[0].replace("<|begin_of_thought|>", "")


def _trace_rows() -> dict[str, dict]:
    path = SHARED_DATA / "traces" / "skyt1_math_correct5k_27b_amc23.jsonl"
    if not path.is_file():
        pytest.skip("shared/data/traces is absent")
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_real_looping_traces_trip_and_real_correct_traces_pass():
    rows = _trace_rows()
    looping = ["amc2023-10", "amc2023-16", "amc2023-18", "amc2023-29", "amc2023-31"]  # read by eye: loops
    for rid in looping:
        assert is_looping(repetition(_sky_t1_reasoning(rows[rid])), 20, 0.3, 4), rid
    correct = [r for r in rows.values() if str(r["correct"]) == "True"]
    assert len(correct) >= 10
    for row in correct:
        assert not is_looping(repetition(_sky_t1_reasoning(row)), 20, 0.3, 4), row["id"]


# --------------------------------------------------------------------------- language mixing

CHINESE = "我们需要计算这个多项式的根的和然后验证答案是否正确所以先把方程化简再求解"


def test_language_mixing_is_measured_against_the_prompts_script():
    english = r1_reasoning(5, 60)
    mixed = english + " " + " ".join([CHINESE] * 4)
    assert foreign_script_fraction("Find the sum of the roots.", mixed) > 0.05
    assert foreign_script_fraction("Find the sum of the roots.", english + " 好") < 0.01  # one stray character
    greek = english + " " + "Let α = π/3 and β = θ + φ, so sin α cos β ..." * 20
    assert foreign_script_fraction("Find α.", greek) == 0.0  # Greek is mathematics, not a language switch
    assert foreign_script_fraction("Найдите сумму корней.", "Сумма корней равна \\frac{1}{2}, x = 5") == 0.0
    assert foreign_script_fraction("求多项式的根的和。", CHINESE + " \\frac{1}{2} x + y") == 0.0
    assert foreign_script_fraction("求多项式的根的和。", CHINESE + " Сумма корней равна пяти") >= 0.1
    assert foreign_script_fraction("Find x.", english + " Сумма корней равна пяти" * 30) > 0.05


def test_script_words_count_han_characters_as_words():
    counts = script_words("Hello world 你好 мир")
    assert (counts["latin"], counts["cjk"], counts["cyrillic"]) == (2, 2, 1)


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "answer, conflict",
    [
        ("So \\boxed{3}. Hmm, actually \\boxed{4}.", True),
        ("\\boxed{x = 3} or maybe \\boxed{5}", True),
        ("\\boxed{\\frac{1}{2}}, i.e. \\boxed{0.5}", False),
        ("\\boxed{x = 3}, that is \\boxed{3}", False),
        ("\\boxed{\\dfrac{\\sqrt{3}}{2}} ... final: \\boxed{\\frac{\\sqrt3}{2}}", False),
        ("the answer is \\boxed{7}", False),
        ("no box at all", False),
    ],
)
def test_conflicting_boxes(answer, conflict):
    assert bool(conflicting_boxes(answer)) is conflict


@pytest.mark.parametrize(
    "kind, answer, ok",
    [("math", "\\boxed{5}", True), ("math", "The answer is 5.", False), ("math", "\\boxed{ }", False),
     ("math", "", False), ("multiple_choice", "The answer is (C).", True), ("multiple_choice", "no idea", False)],
)
def test_has_final_answer(kind, answer, ok):
    assert has_final_answer(kind, answer) is ok


# --------------------------------------------------------------------------- wired into judge


def r1_trace(**kw):
    base = dict(prompt=[{"role": "user", "content": "What is 2 + 3? Please reason step by step."}],
                reasoning=r1_reasoning(7, 60), answer_text="The answer is \\boxed{5}.", reference="5",
                reasoning_tokens=1500, completion_tokens=1600)
    base.update(kw)
    return make_trace(**base)


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({}, "kept"),
        ({"answer_text": "\\boxed{4} no wait \\boxed{5}"}, "conflicting_answers"),
        ({"reasoning": r1_reasoning(8, 60) + " " + " ".join([CHINESE] * 10)}, "language_mixing"),
        ({"reasoning": r1_reasoning(9, 40) + " " + " ".join([LOOP_BLOCK] * 10)}, "repetition"),
        ({"completion_tokens": 30}, "too_short"),
        ({"answer_text": "It is five."}, "no_answer"),
    ],
)
def test_each_quality_reason_in_judge(fields, reason):
    cfg = FilterConfig(min_completion_tokens=100)
    assert judge(r1_trace(**fields), cfg).reason == reason


def test_quality_checks_can_be_switched_off():
    cfg = FilterConfig(reject_conflicting_answers=False, max_foreign_script=None, max_repeated_fraction=None,
                       tail_loop_repeats=None)
    loop = r1_reasoning(9, 40) + " " + " ".join([LOOP_BLOCK] * 10) + " " + " ".join([CHINESE] * 10)
    assert judge(r1_trace(reasoning=loop, answer_text="\\boxed{4} no \\boxed{5}"), cfg).reason == "kept"
