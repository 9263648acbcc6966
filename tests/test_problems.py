"""Problem files: the uniform JSONL schema, including code problems that carry tests instead of an answer."""

from __future__ import annotations

import json

import pytest

from distill.errors import UserError
from distill.problems import load_jsonl_problems


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_code_problem_with_tests_and_no_answer(tmp_path):
    tests = {"inputs": ["3\n"], "outputs": ["9\n"]}
    path = write_rows(tmp_path / "code.jsonl", [{"id": "sq", "problem": "Square n.", "kind": "code", "tests": tests}])
    (problem,) = load_jsonl_problems(path)
    assert problem.kind == "code"
    assert problem.tests == tests
    assert json.loads(problem.answer) == tests  # the tests travel as the reference


def test_math_problem_still_needs_an_answer(tmp_path):
    path = write_rows(tmp_path / "math.jsonl", [{"id": "m", "problem": "1+1?"}])
    with pytest.raises(UserError, match="line 1 lacks field\\(s\\) answer"):
        load_jsonl_problems(path)


def test_code_problem_without_tests_needs_an_answer(tmp_path):
    path = write_rows(tmp_path / "c.jsonl", [{"id": "c", "problem": "Write f.", "kind": "code"}])
    with pytest.raises(UserError, match="answer"):
        load_jsonl_problems(path)


def test_code_problem_with_both_answer_and_tests_is_graded_by_its_tests(tmp_path):
    """The sandbox grades code by tests: an answer beside them (a reference program) moves to solution."""
    from distill.records import Problem, to_dict

    tests = {"inputs": ["3\n"], "outputs": ["9\n"]}
    program = "print(int(input()) ** 2)"
    path = write_rows(tmp_path / "code.jsonl", [
        {"id": "sq", "problem": "Square n.", "kind": "code", "answer": program, "tests": tests},
        {"id": "sq2", "problem": "Square n.", "kind": "code", "answer": program, "tests": tests, "solution": "mine"},
    ])
    first, second = load_jsonl_problems(path)
    assert json.loads(first.answer) == tests and first.solution == program
    assert json.loads(second.answer) == tests and second.solution == "mine"
    # read back from a shard, the problem stays the same (its answer already is the tests)
    assert Problem.from_dict(to_dict(first)) == first
    # tests given as a JSON string (as APPS ships input_output) are the reference as they are
    as_text = Problem("t", "Square n.", "", kind="code", tests=json.dumps(tests))
    assert json.loads(as_text.answer) == tests
    # math problems keep their answer, tests or not
    assert Problem("m", "1+1?", "2", tests=tests).answer == "2"
