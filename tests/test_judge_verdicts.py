"""The LLM judge reads one structured verdict from its final answer, and nothing else (issue 14).

A judge that says "The answer is not correct." has not said CORRECT; a judge that was cut off while
still thinking has said nothing.  Such replies are undecided: the trace is rejected with its own
reason (``judge_undecided``), counted, and written to the audit.
"""

from __future__ import annotations

import pytest

from distill.config import FilterConfig, JudgeConfig
from distill.filter.judge import PROMPT, LLMJudge, _read_reply
from distill.filter.traces import REASONS, filter_traces
from distill.teachers.sampler import Completion, SamplingParams
from tests.test_records_and_verify import make_trace


class ReplyJudge:
    """Sampler protocol: the scripted (text, finish_reason) for the first key found in the answer."""

    name = "reply-judge"

    def __init__(self, replies: dict[str, tuple[str, str]]) -> None:
        self.replies = replies
        self.prompts: list[str] = []

    def generate(self, prompts, params):
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            self.prompts.append(text)
            answer = text.split("Solution's final answer:\n", 1)[1]
            reply, finish = next(r for key, r in self.replies.items() if key in answer)
            out.append([Completion(reply, finish)])
        return out


def judge_for(sampler) -> LLMJudge:
    return LLMJudge(sampler, SamplingParams(n=1, temperature=0.0, max_tokens=64))


@pytest.mark.parametrize("reply", [
    "The answer is not correct.",
    "INCORRECT\n\nThe correct answer is 8.",
    "CORRECT\n\nWait, the solution says 7 but the reference is 8.",
    "<think>The answer 3 matches the reference, so VERDICT: CORRECT",  # cut off mid-thinking
    "<think>VERDICT: CORRECT</think>",  # a verdict only inside the thinking
    "<think>compare</think>\nThe solution's answer is correct, it equals the reference.",
    "VERDICT: CORRECT\nVERDICT: INCORRECT",  # contradicts itself
    "VERDICT: not CORRECT",
    "",
])
def test_replies_without_a_final_structured_verdict_are_undecided(reply):
    assert _read_reply(reply)[0] is None


@pytest.mark.parametrize("reply, verdict", [
    ("VERDICT: CORRECT", True),
    ("VERDICT: INCORRECT", False),
    ("<think>3 and 3.0 are equal</think>\nBoth are three.\n\nVERDICT: CORRECT\n", True),
    ("<think>CORRECT? no</think>\n**VERDICT: INCORRECT**", False),
    ("The reference is 8, the solution says 7.\nVerdict: incorrect.", False),
    ("VERDICT: CORRECT\n\nVERDICT: CORRECT", True),
])
def test_a_final_verdict_line_is_read(reply, verdict):
    assert _read_reply(reply)[0] is verdict


def test_a_reply_cut_off_by_the_token_limit_is_undecided():
    """A judge template that opens the think block in the prompt leaves no <think> in the reply to see."""
    assert _read_reply("The answer matches, so\nVERDICT: CORRECT", "length")[0] is None
    assert _read_reply("The answer matches, so\nVERDICT: CORRECT", "stop")[0] is True


def test_the_prompt_asks_for_exactly_the_verdict_line_that_is_read():
    assert "VERDICT: CORRECT" in PROMPT and "VERDICT: INCORRECT" in PROMPT
    assert _read_reply("VERDICT: CORRECT")[0] is True


def test_undecided_replies_reject_the_trace_with_their_own_reason_and_are_audited():
    traces = [
        make_trace(sample_index=0, answer_text="So the answer is 3."),  # no box; judge: structured correct
        make_trace(sample_index=1, answer_text="So the answer is 4."),  # no box; judge: prose "not correct"
        make_trace(sample_index=2, answer_text="So the answer is 5."),  # no box; judge cut off mid-thinking
        make_trace(sample_index=3, answer_text="\\boxed{3}"),  # rule: correct; audited, judge undecided
    ]
    sampler = ReplyJudge({
        "answer is 3": ("<think>same</think>\nVERDICT: CORRECT", "stop"),
        "answer is 4": ("INCORRECT\n\nThe correct answer is 3.", "stop"),
        "answer is 5": ("<think>Let me compare 5 with 3. VERDICT: CORRECT or", "length"),
        "boxed{3}": ("The answer is not correct.", "stop"),
    })
    cfg = FilterConfig(judge=JudgeConfig(enabled=True, audit_fraction=1.0))
    result = filter_traces(traces, cfg, llm_judge=judge_for(sampler))
    assert [v.reason for v in result.verdicts] == ["kept", "judge_undecided", "judge_undecided", "kept"]
    assert "judge_undecided" in REASONS and result.funnel["judge_undecided"] == 2
    assert result.judge_stats["undecided"] == 3 and "unreadable" not in result.judge_stats
    audit = {row["sample_index"]: row for row in result.audit}
    assert {i for i, row in audit.items() if row["judge"] == "undecided"} == {1, 2, 3}
    assert audit[1]["used"] and audit[1]["final"] == "judge_undecided"
    assert not audit[3]["used"] and audit[3]["final"] == "kept"  # the rule's verdict stands
    assert "not correct" in audit[3]["judge_reply"]


def test_an_undecided_trace_says_nothing_about_its_problems_pass_rate():
    traces = [make_trace(sample_index=0, answer_text="\\boxed{3}"),
              make_trace(sample_index=1, answer_text="So it is 3.")]
    sampler = ReplyJudge({"boxed": ("VERDICT: CORRECT", "stop"), "So it is": ("hmm", "stop")})
    result = filter_traces(traces, FilterConfig(judge=JudgeConfig(enabled=True)), llm_judge=judge_for(sampler))
    assert [v.reason for v in result.verdicts] == ["kept", "judge_undecided"]
    assert result.pass_rates == {"p1": 1.0}
