"""The optional LLM judge (distill/judge.py): it decides only what the rules could not, and every
rule-versus-judge disagreement is written out.

``ScriptedJudge`` is a local stand-in for an API judge model (which tests cannot reach): a
real implementation of the Sampler protocol whose replies are scripted per answer.
"""

from __future__ import annotations

import json

import pytest

from distill.config import FilterConfig, JudgeConfig
from distill.filter.traces import filter_traces
from distill.filter.judge import LLMJudge, _read_reply
from distill.teachers.sampler import Completion, SamplingParams
from tests.test_records_and_verify import make_trace


class ScriptedJudge:
    """Sampler protocol: replies CORRECT when the answer contains the reference, unless scripted otherwise."""

    name = "scripted-judge"

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.overrides = overrides or {}
        self.prompts: list[str] = []
        self.closed = False

    def generate(self, prompts, params):
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            self.prompts.append(text)
            reference = text.split("Reference answer: ", 1)[1].split("\n", 1)[0]
            answer = text.split("Solution's final answer:\n", 1)[1].rsplit("\n\nIs the solution", 1)[0]
            reply = next((r for key, r in self.overrides.items() if key in answer), None)
            if reply is None:
                reply = "<think>compare</think>\nCORRECT" if reference in answer else "It differs.\nINCORRECT"
            out.append([Completion(reply, "stop")] * params.n)
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        self.closed = True


def judge_for(sampler) -> LLMJudge:
    return LLMJudge(sampler, SamplingParams(n=1, temperature=0.0, max_tokens=64))


def test_judge_decides_only_what_the_rules_cannot_and_audits_disagreements():
    traces = [
        make_trace(sample_index=0, answer_text="So the answer is 3."),  # no box: rules cannot read it
        make_trace(sample_index=1, answer_text="So the answer is 5."),  # no box, and wrong
        make_trace(sample_index=2, answer_text="\\boxed{3}"),  # rule: correct
        make_trace(sample_index=3, answer_text="\\boxed{7}"),  # rule: wrong
        make_trace(sample_index=4, answer_text="maybe 3 or so"),  # unreadable reply
        make_trace(sample_index=5, finish_reason="length", answer_text="3"),  # truncated: never judged
    ]
    sampler = ScriptedJudge({"maybe": "hmm, hard to say", "\\boxed{7}": "CORRECT"})
    cfg = FilterConfig(judge=JudgeConfig(enabled=True, audit_fraction=1.0))
    result = filter_traces(traces, cfg, llm_judge=judge_for(sampler))
    reasons = [v.reason for v in result.verdicts]
    assert reasons == ["kept", "no_answer", "kept", "wrong", "judge_undecided", "truncated"]
    assert len(sampler.prompts) == 5 and all("Reference answer: 3" in p for p in sampler.prompts)
    audit = {row["sample_index"]: row for row in result.audit}
    assert set(audit) == {0, 3, 4}  # rule and judge disagree there, and the undecided reply is audited
    assert audit[0]["rule"] == "no_answer" and audit[0]["judge"] == "correct" and audit[0]["used"]
    assert audit[3]["rule"] == "wrong" and audit[3]["judge"] == "correct" and not audit[3]["used"]  # rule stands
    assert result.judge_stats == {"judged": 5, "audited": 2, "judge_correct": 1, "judge_incorrect": 1,
                                  "undecided": 1, "disagreements": 2}


def test_judge_off_or_not_listed_changes_nothing():
    traces = [make_trace(answer_text="So the answer is 3.")]
    assert filter_traces(traces, FilterConfig()).funnel == {"total": 1, "no_answer": 1}
    sampler = ScriptedJudge()
    cfg = FilterConfig(judge=JudgeConfig(enabled=True, on=["error_infra"]))
    assert filter_traces(traces, cfg, llm_judge=judge_for(sampler)).funnel == {"total": 1, "no_answer": 1}
    assert sampler.prompts == []


@pytest.mark.parametrize("reply, verdict", [("CORRECT", True), ("incorrect.", False), ("<think>CORRECT?</think> INCORRECT", False),
                                            ("no idea", None), ("<think>INCORRECT</think>", None)])
def test_reading_the_reply(reply, verdict):
    assert _read_reply(reply)[0] is verdict


@pytest.mark.slow
def test_judge_config_runs_end_to_end_with_the_toy_teacher(tiny_config):
    """filter.judge with model 'teacher': the pipeline builds the toy teacher's sampler and closes it."""
    from distill.pipeline import run

    config = tiny_config(filter__judge={"enabled": True, "model": "teacher", "audit_fraction": 0.25,
                                        "max_tokens": 8})
    run(config, until="filter")
    out = config.run_dir / "filter"
    summary = json.loads((out / "funnel.json").read_text())
    assert summary["judge"]["judged"] >= 1  # the toy teacher rarely says CORRECT/INCORRECT: mostly unreadable
    assert (out / "judge_audit.jsonl").is_file()


def test_judge_cannot_keep_an_unboxed_trace_the_quality_checks_reject():
    """The format check stops at the missing box; the checks after it still run before the judge may keep it."""
    loop = "Let me add the two numbers again to be completely sure of it. " * 40
    traces = [make_trace(sample_index=0, reasoning=loop, answer_text="So the answer is 3."),  # looping, unboxed
              make_trace(sample_index=1, reasoning="Two plus one is three.", answer_text="So the answer is 3.")]
    assert [v.reason for v in filter_traces(traces, FilterConfig()).verdicts] == ["no_answer", "no_answer"]
    sampler = ScriptedJudge()
    result = filter_traces(traces, FilterConfig(judge=JudgeConfig(enabled=True)), llm_judge=judge_for(sampler))
    assert [v.reason for v in result.verdicts] == ["repetition", "kept"]
    assert len(sampler.prompts) == 1  # the looping trace was never sent to the judge
    assert result.judge_stats["rejected_by_quality_checks"] == 1
