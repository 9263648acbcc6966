import pytest

from distill.records import Trace, read_jsonl, read_records, write_jsonl_atomic
from distill.shards import ShardStore, plan_shards
from distill.filter.verify import all_boxed, last_boxed, verify_answer, verify_choice, verify_math
from distill.eval.scoring import majority_correct, pass_at_1, score
from distill.teachers.reasoning import split_reasoning


def make_trace(**kw):
    base = dict(problem_id="p1", sample_index=0, prompt=[{"role": "user", "content": "q"}], reasoning="r",
                answer_text="\\boxed{3}", finish_reason="stop", think_closed=True, reasoning_tokens=5,
                completion_tokens=10, reference="3")
    base.update(kw)
    return Trace(**base)


def test_jsonl_round_trip_and_torn_last_line(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl_atomic(path, [make_trace(sample_index=i) for i in range(3)])
    with open(path, "a") as fh:
        fh.write('{"problem_id": "p1", "sample_ind')  # a crash mid-write
    rows = read_records([path], Trace)
    assert [r.sample_index for r in rows] == [0, 1, 2]
    assert not list(tmp_path.glob(".*tmp*"))


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{broken\n{"a": 2}\n')
    with pytest.raises(ValueError):
        list(read_jsonl(path))


def test_shards_commit_atomically_and_list_committed(tmp_path):
    store = ShardStore(tmp_path / "shards")
    assert plan_shards(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    store.commit(1, [{"x": 1}])
    store.commit(0, [{"x": 0}])
    assert store.committed() == {0, 1}
    assert [r["x"] for r in store.read_all()] == [0, 1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{12} and \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{{a}+{b}}", "{a}+{b}"),
        ("\\boxed{unclosed", None),
        ("nothing", None),
        ("\\boxed 5.", "5"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_all_boxed_in_order():
    assert all_boxed("\\boxed{1} then \\boxed{2}") == ["1", "2"]


@pytest.mark.parametrize(
    "answer, reference, ok",
    [
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("\\boxed{\\dfrac{1}{2}}", "1/2", True),
        ("\\boxed{1,234}", "1234", True),
        ("\\boxed{72}", "72", True),
        ("\\boxed{71}", "72", False),
        ("\\boxed{x^2+1}", "1+x^2", True),
        ("\\boxed{(1, 2]}", "(1,2]", True),
        ("\\boxed{(1, 2)}", "(1,2]", False),
    ],
)
def test_math_verify_equivalence(answer, reference, ok):
    assert verify_math(answer, reference).correct is ok


def test_math_no_answer_status():
    assert verify_math("I think it is 3", "3").status == "no_answer"


@pytest.mark.parametrize("text, ok", [("\\boxed{B}", True), ("The answer is (B).", True), ("\\boxed{C}", False),
                                      ("no letter here", False)])
def test_multiple_choice_by_letter(text, ok):
    assert verify_choice(text, "B").correct is ok
    assert verify_answer("multiple_choice", text, "B").correct is ok


@pytest.mark.parametrize("text, letter", [
    ("\\boxed{B}", "B"), ("\\boxed{(D)}", "D"), ("\\boxed{\\text{B. 4 J}}", "B"),  # not the unit J
    ("The answer is (B).", "B"), ("Answer: C", "C"), ("**Answer:** **A**", "A"), ("Final answer: D) 42", "D"),
    ("Option A is wrong; the answer is C.", "C"), ("I think\n(B)", "B"),
    ("...so I pick a value.", None),  # the article "a" is no choice
    ("The answer is a bit unclear", None), ("the answer is: (b)", None), ("\\boxed{4 J}", None),
    ("no letter here", None)])
def test_multiple_choice_reads_the_chosen_letter_strictly(text, letter):
    check = verify_choice(text, "A")
    assert (check.extracted or None) == letter
    assert check.status == ("no_answer" if letter is None else "correct" if letter == "A" else "wrong")


def test_split_reasoning_four_forms():
    inline = split_reasoning("<think>\nstep\n</think>\n\n\\boxed{1}")
    field = split_reasoning("\\boxed{1}", reasoning_field="step")
    prefilled = split_reasoning("step\n</think>\n\n\\boxed{1}", prefilled=True)
    vllm_reasoning = split_reasoning("\n\\boxed{1}", reasoning_field="step\n")
    for s in (inline, field, prefilled, vllm_reasoning):
        assert (s.reasoning, s.answer, s.think_closed) == ("step", "\\boxed{1}", True)
    unclosed = split_reasoning("<think>\nstep step")
    assert unclosed == split_reasoning("step step", prefilled=True)
    assert (unclosed.answer, unclosed.think_closed) == ("", False)
    bare = split_reasoning("\\boxed{1}")
    assert (bare.reasoning, bare.answer, bare.think_closed) == ("", "\\boxed{1}", False)


def test_pass_at_1_and_interval_by_hand():
    correct = [[True, True, False, False], [True, True, True, True], [False, False, False, False]]
    mean, low, high = pass_at_1(correct)
    assert mean == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3
    # per-problem means 0.5, 1, 0: sample sd = 0.5, se = 0.5/sqrt(3), t with 2 degrees of freedom
    half = 4.302652729911275 * 0.5 / 3**0.5
    assert low == pytest.approx(max(0.0, 0.5 - half))
    assert high == pytest.approx(min(1.0, 0.5 + half))
    narrow = [[True, False]] * 10 + [[True, True]] * 10  # 20 problems: the interval stays inside [0, 1]
    mean, low, high = pass_at_1(narrow)
    half = 2.093024054408263 * (sum((m - 0.75) ** 2 for m in [0.5] * 10 + [1.0] * 10) / 19) ** 0.5 / 20 ** 0.5
    assert (low, high) == (pytest.approx(0.75 - half), pytest.approx(0.75 + half))


def test_cons_at_k_majority():
    assert majority_correct(["5", "5", "6", ""], [True, True, False, False])
    assert not majority_correct(["6", "6", "5", "5"], [False, False, True, True])  # tie -> first seen
    assert not majority_correct(["", ""], [False, False])
    s = score([[True, False], [False, False]], [["1", "2"], ["3", "3"]], truncated=1)
    assert (s.pass_at_1, s.cons_at_k, s.problems, s.samples, s.truncated) == (0.25, 0.5, 2, 4, 1)
