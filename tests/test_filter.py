import pytest

from distill.config import FilterConfig
from distill.filter import filter_traces, judge
from tests.test_records_and_verify import make_trace


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({}, "kept"),
        ({"finish_reason": "length"}, "truncated"),
        ({"finish_reason": "error"}, "sampling_error"),
        ({"think_closed": False}, "unclosed_think"),
        ({"reasoning": "", "reasoning_tokens": 0}, "empty_reasoning"),
        ({"answer_text": "I believe 3"}, "no_answer"),
        ({"answer_text": "\\boxed{4}"}, "wrong"),
        ({"completion_tokens": 10_000}, "too_long"),
    ],
)
def test_each_reason_trips_on_its_fixture(fields, reason):
    cfg = FilterConfig(max_completion_tokens=1000)
    verdict = judge(make_trace(**fields), cfg)
    assert verdict.reason == reason
    assert verdict.ok is (reason == "kept")


def test_funnel_adds_up_and_quota_keeps_shortest():
    traces = [make_trace(sample_index=i, completion_tokens=100 - i) for i in range(4)]
    traces.append(make_trace(sample_index=4, answer_text="\\boxed{9}"))
    result = filter_traces(traces, FilterConfig(max_per_problem=2, selection="shortest"))
    assert result.funnel == {"total": 5, "wrong": 1, "over_quota": 2, "kept": 2}
    assert [t.sample_index for t in result.kept] == [2, 3]
    assert sum(v for k, v in result.funnel.items() if k != "total") == 5


def test_truncation_can_be_allowed():
    assert judge(make_trace(finish_reason="length"), FilterConfig(reject_truncated=False)).reason == "kept"
