"""The math verifier: equivalent forms accepted, near misses rejected, nothing can hang it,
and it agrees with the correctness labels of real long-CoT traces."""

from __future__ import annotations

import json
import os
import random
import threading
import time

import psutil
import pytest

from distill.filter.verify import (MAX_ANSWER_CHARS, VerifierPool, all_boxed, last_boxed, normalise_answer, numeric_value,
                            quick_check, verify_answer, verify_batch, verify_math)
from tests.conftest import SHARED_DATA

EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),
    ("\\dfrac{1}{2}", "1/2"),
    ("\\tfrac{1}{2}", "0.5"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{5\\pi}{4}", "\\frac{5}{4}\\pi"),
    ("2\\frac{1}{2}", "\\frac{5}{2}"),  # a mixed number
    ("10.0", "10"),
    ("[1, 2)", "[1,2)"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("\\{1, 2, 3\\}", "\\{3,2,1\\}"),
    ("-2, 1", "1, -2"),
    ("30^\\circ", "30"),
    ("30", "30^{\\circ}"),
    ("\\text{(B)}", "B"),
    ("B", "\\text{(B)}"),
    ("(B)", "\\text{(B)}"),
    ("1,234", "1234"),
    ("1,000,000", "1000000"),
    ("\\$5", "5"),
    ("5", "\\$5"),
    ("50\\%", "50"),
    ("50", "50\\%"),
    ("x = 5", "5"),
    ("5\\text{ cm}", "5"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\text{Evelyn}", "\\text{Evelyn}"),
    ("x^2+1", "1+x^2"),
    ("y = 2x + 3", "2x+3"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
]

NEAR_MISSES = [
    ("71", "72"),
    ("-5", "5"),
    ("0.33", "\\frac{1}{3}"),
    ("\\pi", "3.14159"),
    ("(1, 2)", "(1,2]"),
    ("[1,2]", "[1,2)"),
    ("\\{1,2\\}", "\\{1,2,3\\}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{2}"),
    ("2\\sqrt{3}", "\\sqrt{8}"),
    ("x^2-1", "x^2+1"),
    ("\\text{(C)}", "B"),
    ("30", "60^\\circ"),
    ("1,235", "1234"),
    ("12", "1,2"),
    ("x = 5", "y = 5"),
    ("1\\frac{1}{2}", "\\frac{5}{2}"),
    ("100000", "100001"),
]


@pytest.fixture(scope="module")
def warm_pool():
    """Start the shared pool once, so timing assertions measure verification, not process start-up."""
    assert verify_math("\\boxed{x+1}", "1+x").correct
    yield


@pytest.mark.parametrize("pred, ref", EQUIVALENT)
def test_equivalent_forms_are_accepted(pred, ref):
    check = verify_math(f"So the answer is \\boxed{{{pred}}}.", ref)
    assert (check.correct, check.status) == (True, "correct"), check


@pytest.mark.parametrize("pred, ref", NEAR_MISSES)
def test_near_misses_are_rejected(pred, ref):
    check = verify_math(f"\\boxed{{{pred}}}", ref)
    assert (check.correct, check.status) == (False, "wrong"), check


@pytest.mark.parametrize("pred, ref", EQUIVALENT + NEAR_MISSES)
def test_fast_path_never_contradicts_the_table(pred, ref):
    quick = quick_check(pred, ref)
    assert quick is None or quick is ((pred, ref) in EQUIVALENT)


def test_fast_path_agrees_with_math_verify_on_math500_pairs():
    path = SHARED_DATA / "eval" / "math500.jsonl"
    if not path.is_file():
        pytest.skip("shared/data/eval/math500.jsonl is absent")
    from distill.filter.verify import _math_equal

    answers = [json.loads(line)["answer"] for line in path.read_text().splitlines()]
    rng = random.Random(0)
    pairs = [(a, a) for a in answers[:60]] + [(rng.choice(answers), rng.choice(answers)) for _ in range(120)]
    decided = [(p, r, q) for p, r in pairs if (q := quick_check(p, r)) is not None]
    assert len(decided) > 100  # the fast path covers most of MATH-500's answers
    disagree = [(p, r) for p, r, q in decided if q != _math_equal(p, r)]
    assert not disagree


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{12} and \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed {7}", "7"),
        ("\\fbox{8}", "8"),
        ("\\boxed{\\text{(B)}}", "\\text{(B)}"),
        ("\\boxed 5. Then {x} follows", "5"),
        ("\\boxed{a} \\boxed{unclosed", None),
    ],
)
def test_extraction(text, expected):
    assert last_boxed(text) == expected


def test_all_boxed_keeps_nested_boxes_inside_the_outer_one():
    assert all_boxed("\\boxed{1} x \\boxed{\\boxed{2}} \\boxed{3") == ["1", "\\boxed{2}"]


def test_normal_forms_and_numeric_values():
    assert normalise_answer("\\left( 1,\\! 234 \\right).") == "(1,234)"
    assert normalise_answer("1,234") == "1234" and normalise_answer("\\text{(C)}") == "C"
    assert numeric_value("\\frac{\\sqrt{3}}{2}") == pytest.approx(3**0.5 / 2)
    assert numeric_value("9^{9^{9^{9}}}") is None  # overflows at once, never computes
    assert numeric_value("x+1") is None and numeric_value("(1,2)") is None


def test_no_answer_and_unknown_kind():
    assert verify_math("I think it is 3", "3").status == "no_answer"
    assert verify_math("\\boxed{ }", "3").status == "no_answer"
    assert verify_answer("essay", "print(1)", "1").status == "error_infra"  # a kind no rule can check
    assert verify_answer("code", "print(1)", "1").status == "no_answer"  # code needs a fenced block


# --------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(
    "answer",
    ["9^{9^{9^{9}}}", "1000000!", "(10^{10^{10}})!", "2^{2^{2^{2^{2^{2}}}}}"],
)
def test_pathological_answers_return_within_the_timeout(warm_pool, answer):
    started = time.perf_counter()
    check = verify_math(f"\\boxed{{{answer}}}", "5", timeout_s=1.0)
    assert time.perf_counter() - started < 1.5
    assert check.status in ("error_infra", "wrong")


def test_a_megabyte_answer_is_wrong_at_once(warm_pool):
    started = time.perf_counter()
    check = verify_math("\\boxed{" + "1+" * 500_000 + "1}", "5", timeout_s=1.0)
    assert time.perf_counter() - started < 1.5
    assert check.status == "wrong" and len(check.extracted) < MAX_ANSWER_CHARS
    huge_text = "Wait, " * 200_000 + "\\boxed{5}"  # 1.2 MB of answer text, ordinary box
    assert verify_math(huge_text, "5").correct


def test_soft_timeout_stops_slow_work_and_keeps_the_worker():
    with VerifierPool(1) as pool:
        first = pool.pids[0]
        started = time.perf_counter()
        statuses = pool.run([("9^{9^{9^{9}}}", "5"), ("x+1", "1+x")], timeout_s=0.5)
        assert time.perf_counter() - started < 2.0
        assert statuses == ["error_infra", "correct"] and pool.pids == [first]


def test_hung_worker_is_killed_and_replaced():
    with VerifierPool(1, soft_timeouts=False) as pool:  # only the hard deadline: as for a job stuck in C code
        first = pool.pids[0]
        statuses = pool.run([("9^{9^{9^{9}}}", "5"), ("x+1", "1+x")], timeout_s=0.5)
        assert statuses == ["error_infra", "correct"]
        assert pool.replaced == 1 and pool.pids[0] != first
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE


def test_a_worker_killed_from_outside_is_error_infra_and_replaced():
    with VerifierPool(1) as pool:
        pool.run([("1", "1")], 5)  # started and warm
        victim = pool.pids[0]
        threading.Timer(0.3, lambda: os.kill(victim, 9)).start()
        started = time.perf_counter()
        statuses = pool.run([("9^{9^{9^{9}}}", "5"), ("2x", "x+x")], timeout_s=20)  # alarm at 20 s
        assert time.perf_counter() - started < 10  # the death was noticed, not the 20 s deadline
        assert statuses == ["error_infra", "correct"] and pool.replaced == 1


def adversarial_answers(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    makers = [
        lambda i: f"9^{{9^{{9^{{{9 + i}}}}}}}",
        lambda i: "\\frac{" * (20 + i % 30) + "1",
        lambda i: "\\frac{1}{\\frac{1}{" * 30 + str(i) + "}}" * 30,
        lambda i: "".join(rng.choice("\\^_{}()[]|&$%#~") for _ in range(40)) + str(i),
        lambda i: "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(30)),
        lambda i: "9" * rng.randrange(100, 3000),
        lambda i: "+".join(f"x^{{{k}}}" for k in range(50 + i % 100)),
        lambda i: f"\\int_0^{{{i}}} e^{{-x^2}} dx",
        lambda i: str(i),
    ]
    weights = [0.03, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.13]
    return [rng.choices(makers, weights)[0](i) for i in range(count)]


def test_200_adversarial_answers_leave_no_hung_worker():
    items = [("math", f"\\boxed{{{a}}}", "5") for a in adversarial_answers(200)]
    with VerifierPool(2) as pool:
        checks = verify_batch(items, timeout_s=0.3, pool=pool)
        assert len(checks) == 200
        assert "error_infra" in {c.status for c in checks}, "the adversarial answers include ones that time out"
        assert sum(c.correct for c in checks) == sum(a == "5" for a in adversarial_answers(200))
        pids = pool.pids
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        assert [c.status for c in verify_batch([("math", "\\boxed{y+1}", "1+y")] * 4, pool=pool)] == ["correct"] * 4
    time.sleep(0.2)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


# --------------------------------------------------------------------------- agreement with labels


def _sky_t1_as_r1(generation: str) -> str:
    """Sky-T1 markers to R1's: <|begin_of_thought|> -> <think>, <|end_of_thought|> -> </think>."""
    return (generation.replace("<|begin_of_thought|>", "<think>").replace("<|end_of_thought|>", "</think>")
            .replace("<|begin_of_solution|>", "").replace("<|end_of_solution|>", ""))


def _trace_rows() -> list[dict]:
    folder = SHARED_DATA / "traces"
    if not folder.is_dir() or not list(folder.glob("*.jsonl")):
        pytest.skip("shared/data/traces is absent")
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()
            if line.strip()]


def _label(row: dict) -> bool:
    return str(row["correct"]).lower() == "true"


def test_agreement_with_trace_labels_where_the_boxed_answer_is_unambiguous():
    """Unambiguous: the generation boxes an answer and the harness graded that same answer."""
    rows = _trace_rows()
    texts = [_sky_t1_as_r1(r["generation"]) for r in rows]
    checks = verify_batch([("math", t, r["reference_answer"]) for t, r in zip(texts, rows)])
    cases = [(r, c) for r, c in zip(rows, checks)
             if c.extracted and normalise_answer(c.extracted) == normalise_answer(str(r["extracted_pred"]))]
    agree = sum(c.correct == _label(r) for r, c in cases)
    print(f"\nagreement with trace labels (boxed answers): {agree}/{len(cases)}")
    assert len(cases) >= 10
    assert agree / len(cases) >= 0.95, [(r["id"], c) for r, c in cases if c.correct != _label(r)]


def test_agreement_with_trace_labels_on_the_harness_extracted_answers():
    """The equivalence check alone: our verdict on the answer the harness extracted vs the harness's label."""
    rows = [r for r in _trace_rows() if 0 < len(str(r["extracted_pred"])) <= 100]
    checks = verify_batch([("math", f"\\boxed{{{r['extracted_pred']}}}", r["reference_answer"]) for r in rows])
    agree = sum(c.correct == _label(r) for r, c in zip(rows, checks))
    print(f"\nagreement with trace labels (extracted answers): {agree}/{len(rows)}")
    assert len(rows) >= 10
    assert agree / len(rows) >= 0.95, [(r["id"], c) for r, c in zip(rows, checks) if c.correct != _label(r)]


def test_math500_reference_solutions_verify_against_their_answers():
    """500 positives (each solution's box vs its answer) and 500 negatives (vs another problem's answer)."""
    path = SHARED_DATA / "eval" / "math500.jsonl"
    if not path.is_file():
        pytest.skip("shared/data/eval/math500.jsonl is absent")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rng = random.Random(0)
    others = [rng.choice(rows) for _ in rows]
    positives = verify_batch([("math", r["solution"], r["answer"]) for r in rows])
    negatives = verify_batch([("math", r["solution"], o["answer"]) for r, o in zip(rows, others)])
    assert all(c.correct for c in positives)
    wrongly_accepted = [(r["answer"], o["answer"]) for r, o, c in zip(rows, others, negatives)
                        if c.correct and normalise_answer(r["answer"]) != normalise_answer(o["answer"])]
    assert not wrongly_accepted
