"""Duplicate training problems and contamination with evaluation problems: reworded copies are
caught, unrelated problems (even ones sharing contest boilerplate) are not, every match is reported."""

from __future__ import annotations

import json

import pytest

from distill.filter.dedup import Text, find_contamination, find_duplicates, screen_problems
from distill.problems import generate_arithmetic
from distill.records import Problem
from tests.conftest import SHARED_DATA

GARDEN = ("A rectangular garden is 12 meters long and 8 meters wide. A path of uniform width is built around the "
          "garden, and the total area of the garden and the path is 192 square meters. What is the width of the "
          "path, in meters?")
GARDEN_REWORDED = ("A rectangular garden measures 12 meters long and 8 meters wide. A path of uniform width is built "
                   "around the garden, and the combined area of the garden and the path is 192 square meters. What is "
                   "the width of the path in meters?")
GARDEN_REFORMATTED = ("A rectangular garden is $12$ meters long and $8$ meters wide.  A path of uniform width is built "
                      "around the garden, and the total area of the garden and the path is $192$ square meters.  What "
                      "is the width of the path (in meters)?")
FENCE = "A rectangular field is 30 meters long and 20 meters wide. How many meters of fencing go around it?"
BOILERPLATE_A = ("Let x and y be real numbers with x + y = 10 and xy = 21. The value of x^3 + y^3 can be written as "
                 "m/n, where m and n are relatively prime positive integers. Find m + n.")
BOILERPLATE_B = ("A bag holds 4 red and 6 blue marbles. Two are drawn without replacement. The probability both are "
                 "red can be written as m/n, where m and n are relatively prime positive integers. Find m + n.")


def t(id: str, text: str, source: str = "train", answer: str = "") -> Text:
    return Text.of(id, text, source, answer)


def test_reworded_and_reformatted_copies_are_contamination():
    evals = [t("e1", GARDEN, "bench"), t("e2", BOILERPLATE_A, "bench")]
    train = [t("a", GARDEN_REWORDED), t("b", GARDEN_REFORMATTED), t("c", FENCE), t("d", BOILERPLATE_B)]
    matches = find_contamination(train, evals)
    by_train = {m.train_id: m for m in matches}
    assert set(by_train) == {"a", "b"}  # the field problem and the shared-boilerplate problem are not flagged
    assert by_train["b"].kind == "exact" and by_train["b"].score == 1.0
    assert by_train["a"].kind == "ngram" and 0.5 <= by_train["a"].score < 1 and by_train["a"].jaccard > 0.7
    assert (by_train["a"].eval_id, by_train["a"].benchmark) == ("e1", "bench")


def test_fuzzy_match_catches_a_copy_without_long_shared_runs():
    text = "Compute the number of positive divisors of 3600 that are perfect squares but not perfect cubes."
    shuffled = "Of 3600's positive divisors, compute the number that are perfect squares but not perfect cubes."
    only_fuzzy = find_contamination([t("a", shuffled)], [t("e", text, "bench")], ngram=13, fuzzy_threshold=0.3)
    assert [(m.kind, m.train_id) for m in only_fuzzy] == [("fuzzy", "a")]
    assert find_contamination([t("a", shuffled)], [t("e", text, "bench")], ngram=13, fuzzy_threshold=0.9) == []


def test_short_problems_are_compared_whole_and_numbers_matter():
    evals = [t(f"h{i}", p.problem, "heldout") for i, p in enumerate(generate_arithmetic(60, 0, 1, 4, "h"))]
    train = [t(p.id, p.problem) for p in generate_arithmetic(200, 1, 1, 4, "t")]
    held_texts = {e.words for e in evals}
    expected = {x.id for x in train if x.words in held_texts}
    assert {m.train_id for m in find_contamination(train, evals)} == expected
    assert find_contamination([t("x", "What is 34 + 12?")], [t("e", "What is 12 + 34?", "b")]) == []
    assert find_contamination([t("x", "What is 12 + 35?")], [t("e", "What is 12 + 34?", "b")]) == []


def test_duplicates_keep_the_first_and_need_the_same_answer():
    problems = [
        t("p1", GARDEN, answer="2"),
        t("p2", FENCE, answer="100"),
        t("p3", GARDEN_REFORMATTED, answer="2"),
        t("p4", GARDEN_REWORDED, answer="2"),
        t("p5", GARDEN_REWORDED.replace("192", "140"), answer="1.5"),  # a sibling: other numbers, other answer
        t("p6", FENCE, answer="100"),
    ]
    dups = {d.problem_id: d for d in find_duplicates(problems)}
    assert set(dups) == {"p3", "p4", "p6"}
    assert (dups["p3"].duplicate_of, dups["p3"].kind) == ("p1", "exact")
    assert (dups["p4"].duplicate_of, dups["p4"].kind) == ("p1", "near") and 0.7 <= dups["p4"].score < 1
    assert dups["p6"].duplicate_of == "p2"
    assert {d.problem_id for d in find_duplicates(problems, near_threshold=None)} == {"p3", "p6"}


def test_screen_problems_reasons_with_contamination_first():
    train = [Problem("t1", GARDEN, "2"), Problem("t2", GARDEN_REWORDED, "2"), Problem("t3", FENCE, "100"),
             Problem("t4", FENCE, "100")]
    screening = screen_problems(train, {"bench": [Problem("e1", GARDEN_REFORMATTED, "2")]})
    assert screening.reasons == {"t1": "contaminated", "t2": "contaminated", "t4": "duplicate_problem"}
    rows = [m.as_dict() for m in screening.contamination]
    pairs = {(r["train_id"], r["eval_id"], r["benchmark"]) for r in rows}
    assert pairs == {("t1", "e1", "bench"), ("t2", "e1", "bench")}
    assert all(set(r) >= {"train_id", "eval_id", "benchmark", "kind", "score"} for r in rows)
    assert screen_problems(train, {}, dedup=False).reasons == {}


def _jsonl(path) -> list[dict]:
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_math500_problem_inserted_into_training_is_caught():
    math500 = _jsonl(SHARED_DATA / "eval" / "math500.jsonl")
    train_rows = _jsonl(SHARED_DATA / "train" / "math_train.jsonl")[:1500]
    planted, reworded = math500[123], math500[321]
    train = [t(r["id"], r["problem"]) for r in train_rows]
    train += [t("planted", planted["problem"]),
              t("reworded", reworded["problem"].replace("What is", "Find").replace("Find", "Determine", 1) + " ")]
    evals = [t(r["id"], r["problem"], "math500") for r in math500]
    matches = find_contamination(train, evals)
    found = {m.train_id: m for m in matches}
    assert found["planted"].kind == "exact" and found["planted"].eval_id == planted["id"]
    assert found["reworded"].eval_id == reworded["id"] and found["reworded"].benchmark == "math500"
    # the real MATH train slice may hold a few same-template siblings of MATH-500 problems, not hundreds
    assert len({m.train_id for m in matches}) - 2 < 0.02 * len(train_rows)
