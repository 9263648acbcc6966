"""Quality checks that tell the truth about the whole trace (issue 14, "Filter quality").

* The repetition and language-mixing checks read the final answer too, not only the reasoning.
* A LaTeX table or matrix repeats by structure (rows of zeros, a coefficient row copied into
  every synthetic division); that is not a loop, while a real loop in the same trace still is.
* Two boxed answers to a question that asks for two values do not conflict.
* A completion cut off while still thinking is never marked as having closed its thinking,
  whichever way the server returned the reasoning.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from distill.config import FilterConfig
from distill.filter import quality
from distill.filter.quality import conflicting_boxes, is_looping, repetition
from distill.filter.traces import judge
from distill.records import Problem
from distill.teachers.backends.openai_wire import parse_response, request_job, to_completions
from distill.teachers.reasoning import split_reasoning
from distill.teachers.sampler import Completion, SamplingParams
from distill.teachers.service import to_trace
from tests.test_quality import CHINESE, LOOP_BLOCK, r1_reasoning, r1_trace

# --------------------------------------------------------------------------- the answer is checked too


def test_a_loop_in_the_final_answer_is_repetition():
    answer = "So the answer is \\boxed{5}. " + " ".join([LOOP_BLOCK] * 8)
    assert judge(r1_trace(answer_text=answer), FilterConfig()).reason == "repetition"


def test_a_final_answer_in_another_language_is_language_mixing():
    answer = "因此，答案是 \\boxed{5}。我们验证了这个结果是正确的，所以答案就是五。"
    assert judge(r1_trace(answer_text=answer), FilterConfig()).reason == "language_mixing"


def test_an_answer_in_the_prompts_own_language_is_not_mixing():
    prompt = [{"role": "user", "content": "求二加三的和。请逐步推理，并把最终答案放在 \\boxed{} 中。"}]
    reasoning = CHINESE + "。先算 2 + 3，得到 5，再检查一遍：5 - 3 = 2，没错。"
    answer = "因此，答案是 \\boxed{5}。"
    assert judge(r1_trace(prompt=prompt, reasoning=reasoning, answer_text=answer), FilterConfig()).reason == "kept"


# --------------------------------------------------------------------------- tables are not loops


def pmatrix(rows: list[list[int]]) -> str:
    return "\\begin{pmatrix}\n" + " \\\\\n".join(" & ".join(map(str, r)) for r in rows) + "\n\\end{pmatrix}"


def shift_power(n: int, k: int) -> list[list[int]]:
    return [[1 if j - i == k else 0 for j in range(n)] for i in range(n)]


def matrix_power_reasoning() -> str:
    """Powers of a nilpotent shift matrix, written out: rows of zeros recur in every one."""
    parts = [r1_reasoning(12, 6), "Let me compute the powers of N one at a time."]
    for k in range(1, 7):
        parts.append(f"Multiplying once more, N^{k} = {pmatrix(shift_power(6, k))}, so the ones moved up to "
                     f"diagonal {k}.")
    parts.append("So N^6 is the zero matrix.")
    return "\n".join(parts)


def synthetic_division(coeffs: list[int], r: int) -> str:
    carry, products, quotient = 0, [], []
    for c in coeffs:
        quotient.append(c + carry)
        carry = (c + carry) * r
        products.append(carry)
    return "\n".join([
        "\\[", f"\\begin{{array}}{{c|{'c' * len(coeffs)}}}", f"{r} & " + " & ".join(map(str, coeffs)) + " \\\\",
        "  &  & " + " & ".join(map(str, products[:-1])) + " \\\\", "\\hline", "  & " + " & ".join(map(str, quotient)),
        "\\end{array}", "\\]"])


ZERO_MATRIX_ANSWER = f"Since $N$ is nilpotent, $N^6 = \\boxed{{{pmatrix([[0] * 5] * 5)}}}$."


def test_matrices_in_the_reasoning_are_not_a_loop():
    reasoning = matrix_power_reasoning()
    assert judge(r1_trace(reasoning=reasoning), FilterConfig()).reason == "kept"


def test_a_zero_matrix_as_the_final_answer_is_not_a_loop():
    rep = repetition(ZERO_MATRIX_ANSWER)
    assert not is_looping(rep, 20, 0.3, 4)
    trace = r1_trace(answer_text=ZERO_MATRIX_ANSWER, reference="0")
    assert judge(trace, FilterConfig()).reason != "repetition"


def test_synthetic_divisions_are_not_a_loop():
    parts = [r1_reasoning(11, 8)]
    for r in (1, -1, 2, -2, 3, -3, 4, -4, 6, -6):
        parts += [f"Let me try x = {r} with synthetic division:", synthetic_division([1] + [0] * 14 + [-1], r),
                  "The remainder is zero." if r == 1 else f"The remainder is not zero for {r}."]
    rep = repetition("\n".join(parts))
    assert not is_looping(rep, 20, 0.3, 4), rep


def test_a_real_loop_next_to_the_tables_still_trips():
    escaped = matrix_power_reasoning() + "\n" + " ".join([LOOP_BLOCK] * 20) + "\n" + r1_reasoning(3, 30)
    assert judge(r1_trace(reasoning=escaped), FilterConfig()).reason == "repetition"
    ending = matrix_power_reasoning() + "\n" + " ".join([LOOP_BLOCK] * 8)
    assert judge(r1_trace(reasoning=ending), FilterConfig()).reason == "repetition"
    same_table = " ".join([f"Again, N^2 = {pmatrix(shift_power(6, 2))}."] * 12)
    assert judge(r1_trace(reasoning=r1_reasoning(4, 20) + " " + same_table), FilterConfig()).reason == "repetition"
    stuck_row = "\\begin{array}{ccc}\n" + " \\\\\n".join(["1 & 2 & 3"] * 60) + "\n\\end{array}"
    assert judge(r1_trace(reasoning=r1_reasoning(5, 20) + " " + stuck_row), FilterConfig()).reason == "repetition"


# --------------------------------------------------------------------------- questions that ask for two values


@pytest.mark.parametrize("problem, values", [
    ("Find $x$ and $y$ if $x + y = 8$ and $x - y = 2$.", 2),
    ("Solve for a, b, and c given the system below.", 3),
    ("Compute both $m$ and $n$.", 2),
    ("Find the two roots of $x^2 - 5x + 6 = 0$.", 2),
    ("What are both solutions of $x^2 = 9$?", 2),
    ("Find the smallest and largest values of $f(x) = x^2$ on $[-1, 2]$.", 2),
    ("Determine the maximum and the minimum of $\\sin x + \\cos x$.", 2),
    ("Find all real solutions to $x^3 = x$.", None),
    ("(a) Find the area of the triangle. (b) Find its perimeter.", 2),
    # one value, however many numbers the text names
    ("What is $2 + 3$?", 1),
    ("Find the sum of the two roots of $x^2 - 5x + 6 = 0$.", 1),
    ("Find the difference between the largest and smallest values of $f$.", 1),
    ("Find the sum of the maximum and minimum values of $f$.", 1),
    ("Find $x + y$ if $x$ and $y$ are positive.", 1),
    ("Find a number that is both even and prime.", 1),
    ("Let $a$ and $b$ be the roots of $x^2 - 5x + 6$. Find $a^2 + b^2$.", 1),
    ("Compute $f(a)$ and then simplify.", 1),
])
def test_how_many_values_a_question_asks_for(problem, values):
    assert quality.asked_values(problem) == values


def test_two_boxed_values_for_a_two_value_question_do_not_conflict():
    assert conflicting_boxes("So $x = \\boxed{5}$ and $y = \\boxed{3}$.", "Find $x$ and $y$ if $x+y=8$, $x-y=2$.") == []
    assert conflicting_boxes("The roots are \\boxed{2} and \\boxed{3}.", "Find the two roots of $x^2-5x+6=0$.") == []
    extremes = "Find the smallest and largest values of $x^2$ on [-1,2]."
    assert conflicting_boxes("min \\boxed{0}, max \\boxed{4}", extremes) == []
    # still a conflict: one value asked, or more distinct boxes than values asked
    assert conflicting_boxes("The roots are \\boxed{2} and \\boxed{3}.", "Find the sum of the two roots.")
    assert conflicting_boxes("\\boxed{2}, \\boxed{3}, no wait \\boxed{4}", "Find the two roots of $x^2-5x+6=0$.")


def test_the_filter_reads_the_question_before_calling_boxes_conflicting():
    prompt = [{"role": "user", "content": "Find $x$ and $y$ if $x + y = 8$ and $x - y = 2$. Please reason step by "
                                          "step, and put your final answer within \\boxed{}."}]
    two = r1_trace(prompt=prompt, answer_text="So $x = \\boxed{5}$ and $y = \\boxed{3}$.", reference="3")
    assert judge(two, FilterConfig()).reason == "kept"
    hedge = r1_trace(answer_text="So \\boxed{4}. Hmm, actually \\boxed{5}.")
    assert judge(hedge, FilterConfig()).reason == "conflicting_answers"


# --------------------------------------------------------------------------- cut off while thinking


def test_a_separate_reasoning_field_with_no_answer_has_not_closed_its_thinking():
    assert split_reasoning("", reasoning_field="Let me think about 2 + 3 and").think_closed is False
    assert split_reasoning("\n", reasoning_field="Let me think about 2 + 3 and").think_closed is False
    assert split_reasoning("\\boxed{5}", reasoning_field="2 + 3 = 5").think_closed is True
    assert split_reasoning("</think>", reasoning_field="2 + 3 = 5").think_closed is True  # closed, answered nothing
    assert split_reasoning("<think>still going", reasoning_field="2 + 3").think_closed is False


class Response(SimpleNamespace):
    """The parts of an httpx response the wire format reads."""


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
@pytest.mark.parametrize("content", [None, ""])
def test_a_server_truncation_mid_thinking_becomes_an_unclosed_trace(field, content):
    body = {"choices": [{"message": {"role": "assistant", "content": content, field: "Let me add 2 and 3, which"},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 64,
                      "completion_tokens_details": {"reasoning_tokens": 64}}}
    response = Response(status_code=200, headers={}, content=json.dumps(body).encode())
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    job = request_job(0, 0, 1, messages, SamplingParams(max_tokens=64), seed=1, model="m", max_tokens=64,
                      extra_body={})
    parsed, usage = parse_response(response, job, lambda s: s)
    [completion] = to_completions(parsed, usage, job)
    assert completion.finish_reason == "length" and completion.text == ""

    class Counter:
        name = "server"

        def count_tokens(self, text: str) -> int:
            return len(text.split())

    problem = Problem(id="p", problem="What is 2 + 3?", answer="5")
    trace = to_trace(problem, 0, messages, completion, Counter(), SamplingParams(max_tokens=64))
    assert trace.reasoning == "Let me add 2 and 3, which" and trace.answer_text == ""
    assert trace.think_closed is False
    assert judge(trace, FilterConfig(reject_truncated=False)).reason == "unclosed_think"


def test_every_reasoning_form_cut_off_mid_thinking_is_unclosed():
    forms = [Completion("<think>Let me add 2 and 3, which", "length"),
             Completion("Let me add 2 and 3, which", "length", prefilled_think=True),
             Completion("", "length", reasoning="Let me add 2 and 3, which")]
    for c in forms:
        split = split_reasoning(c.text, c.reasoning, c.prefilled_think)
        assert (split.reasoning, split.answer, split.think_closed) == ("Let me add 2 and 3, which", "", False), c


def test_one_value_written_in_two_forms_is_no_conflict_but_two_values_are():
    from distill.filter.quality import conflicting_boxes

    assert conflicting_boxes(r"so \boxed{2\sqrt{2}}, that is \boxed{\sqrt{8}}", "What is the diagonal?") == []
    assert conflicting_boxes(r"\boxed{3} or maybe \boxed{5}", "What is x?") != []
    assert conflicting_boxes(r"\boxed{red} or \boxed{blue}", "Which colour?") != []
