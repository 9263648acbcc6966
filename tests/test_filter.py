import pytest

from distill.config import FilterConfig
from distill.filter.traces import filter_traces, judge
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


# --------------------------------------------------------------------------- reasons, order, batch


def test_reasons_cover_every_verdict_in_order():
    from distill.filter.traces import REASONS

    assert REASONS[:2] == ("contaminated", "duplicate_problem") and REASONS[-2:] == ("over_quota", "kept")
    for reason in ("too_short", "conflicting_answers", "language_mixing", "repetition", "error_infra"):
        assert reason in REASONS


def test_problem_level_reasons_come_first():
    cfg = FilterConfig()
    assert judge(make_trace(finish_reason="error"), cfg, "contaminated").reason == "contaminated"
    result = filter_traces([make_trace(), make_trace(problem_id="p2")], cfg, {"p2": "duplicate_problem"})
    assert result.funnel == {"total": 2, "duplicate_problem": 1, "kept": 1}


def test_quality_reasons_come_before_the_verifier():
    cfg = FilterConfig(min_completion_tokens=5)
    both_wrong_and_conflicting = make_trace(answer_text="\\boxed{3} or \\boxed{4}")
    assert judge(both_wrong_and_conflicting, cfg).reason == "conflicting_answers"
    assert judge(make_trace(completion_tokens=2), cfg).reason == "too_short"


def test_batch_filter_matches_judge_and_reports_rejections():
    cfg = FilterConfig(verify_timeout_s=1.0)
    traces = [
        make_trace(sample_index=0),
        make_trace(sample_index=1, answer_text="\\boxed{\\frac{6}{2}}"),
        make_trace(sample_index=2, answer_text="\\boxed{4}"),
        make_trace(sample_index=3, answer_text="no box"),
        make_trace(sample_index=4, answer_text="\\boxed{x + 3 - x}"),
        make_trace(sample_index=5, answer_text="\\boxed{\\int_0^{7} e^{-x^2} dx + 9^{9^{9^{9}}}}"),
    ]
    result = filter_traces(traces, cfg)
    assert [v.reason for v in result.verdicts] == ["kept", "kept", "wrong", "no_answer", "kept", "error_infra"]
    assert [v.reason for v in result.verdicts[:5]] == [judge(t, cfg).reason for t in traces[:5]]
    rejected = result.rejected()
    assert [(t.sample_index, v.reason) for t, v in rejected] == [(2, "wrong"), (3, "no_answer"), (5, "error_infra")]
    assert result.funnel["total"] == sum(v for k, v in result.funnel.items() if k != "total")


# --------------------------------------------------------------------------- the stage


GARDEN = ("A rectangular garden is 12 meters long and 8 meters wide. A path of uniform width is built around the "
          "garden, and the total area of the garden and the path is 192 square meters. What is the width of the "
          "path, in meters?")


def _write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_stage_filter_writes_rejections_contamination_and_duplicates(tiny_config, tmp_path):
    import json

    from distill.filter.stage import FILTER
    from distill.problems import problem_sets
    from distill.stage import Context
    from distill.progress import NullReporter
    from distill.records import read_jsonl
    from distill.shards import ShardStore
    from distill.store import RunStore

    train = _write_jsonl(tmp_path / "train.jsonl", [
        {"id": "t-garden", "problem": GARDEN.replace("is 12", "measures 12"), "answer": "2"},  # reworded held-out
        {"id": "t-sum", "problem": "What is the sum of 17 and 25?", "answer": "42"},
        {"id": "t-sum-again", "problem": "What is the sum of 17 and 25 ?", "answer": "42"},  # duplicate
        {"id": "t-aime", "problem": "Find the remainder when 7^{2024} is divided by 1000.", "answer": "401"},
        {"id": "t-ok", "problem": "How many primes are less than 30?", "answer": "10"},
    ])
    held = _write_jsonl(tmp_path / "held.jsonl", [{"id": "h-garden", "problem": GARDEN, "answer": "2"}])
    other = _write_jsonl(tmp_path / "aime_like.jsonl", [
        {"id": "X-1", "problem": "Find the remainder when $7^{2024}$ is divided by $1000$.", "answer": "401"}])
    config = tiny_config(problems__source="jsonl", problems__train_path=str(train),
                         problems__heldout_path=str(held), filter__decontaminate_against=[str(other)],
                         filter__max_per_problem=None)
    store = RunStore(config.run_dir)
    problems, _ = problem_sets(config)
    traces = [make_trace(problem_id=p.id, sample_index=s, reference=p.answer,
                         answer_text=f"\\boxed{{{p.answer if s == 0 else 0}}}") for p in problems for s in range(2)]
    ShardStore(store.stage_dir("sample") / "shards").commit(0, traces)
    outcome = FILTER.run(Context(config, store, NullReporter()))
    out = store.stage_dir("filter")
    funnel = json.loads((out / "funnel.json").read_text())["funnel"]
    assert funnel == {"total": 10, "contaminated": 4, "duplicate_problem": 2, "wrong": 2, "kept": 2}
    assert outcome.counts["contaminated_problems"] == 2 and outcome.counts["duplicate_problems"] == 1
    contamination = {(r["train_id"], r["eval_id"], r["benchmark"], r["kind"])
                     for r in read_jsonl(out / "contamination.jsonl")}
    assert contamination == {("t-garden", "h-garden", "held", "ngram"), ("t-aime", "X-1", "aime_like", "exact")}
    duplicates = [(r["problem_id"], r["duplicate_of"]) for r in read_jsonl(out / "duplicates.jsonl")]
    assert duplicates == [("t-sum-again", "t-sum")]
    rejected = list(read_jsonl(out / "rejected.jsonl"))
    assert len(rejected) == 8 and {r["reason"] for r in rejected} == {"contaminated", "duplicate_problem", "wrong"}
    assert all(r["answer_text"] and "reasoning" in r for r in rejected)  # whole traces, with their reasons
    assert {r["problem_id"] for r in read_jsonl(out / "kept.jsonl")} == {"t-sum", "t-ok"}


# --------------------------------------------------------------------------- pass-rate band, report files


def test_pass_rate_band_drops_always_and_never_solved_problems():
    right, wrong = "\\boxed{3}", "\\boxed{4}"
    traces = [make_trace(problem_id="easy", sample_index=i) for i in range(4)]
    traces += [make_trace(problem_id="hard", sample_index=i, answer_text=wrong) for i in range(4)]
    traces += [make_trace(problem_id="mid", sample_index=i, answer_text=a,
                          finish_reason="length" if i == 3 else "stop")  # truncated counts as unsolved
               for i, a in enumerate([right, right, wrong, right])]
    traces += [make_trace(problem_id="flaky", sample_index=0), make_trace(problem_id="flaky", sample_index=1,
                                                                          finish_reason="error")]
    result = filter_traces(traces, FilterConfig(pass_rate_band=(0.1, 0.9)))
    # a failed sampling call says nothing about difficulty: flaky is 1 of 1, always solved
    assert result.pass_rates == {"easy": 1.0, "hard": 0.0, "mid": 0.5, "flaky": 1.0}
    assert result.funnel == {"total": 14, "sampling_error": 1, "truncated": 1, "wrong": 5,
                             "outside_pass_rate_band": 5, "kept": 2}
    assert {t.problem_id for t in result.kept} == {"mid"}
    assert filter_traces(traces, FilterConfig()).funnel["kept"] == 7  # off by default


def test_pass_rate_band_is_validated_with_its_path():
    from distill.config import config_from_dict
    from distill.errors import ConfigError

    with pytest.raises(ConfigError, match="filter.pass_rate_band"):
        config_from_dict({"name": "x", "filter": {"pass_rate_band": [0.9, 0.1]}})
    with pytest.raises(ConfigError, match="filter.sandbox.tim_limit_s: unknown key"):
        config_from_dict({"name": "x", "filter": {"sandbox": {"tim_limit_s": 1}}})


def test_stage_filter_writes_summary_per_source_and_valid_plots(tiny_config):
    import json

    from PIL import Image

    from distill.filter.stage import FILTER
    from distill.problems import problem_sets
    from distill.stage import Context
    from distill.progress import NullReporter
    from distill.shards import ShardStore
    from distill.store import RunStore

    config = tiny_config(filter__pass_rate_band=[0.2, 0.8], filter__max_per_problem=None)
    store = RunStore(config.run_dir)
    problems, _ = problem_sets(config)
    traces = [make_trace(problem_id=p.id, sample_index=s, reference=p.answer, completion_tokens=10 + s,
                         answer_text=f"\\boxed{{{p.answer if s == 0 or i % 2 else 'x'}}}")
              for i, p in enumerate(problems) for s in range(2)]
    ShardStore(store.stage_dir("sample") / "shards").commit(0, traces)
    FILTER.run(Context(config, store, NullReporter()))
    out = store.stage_dir("filter")
    summary = json.loads((out / "funnel.json").read_text())
    n = len(problems)
    assert summary["funnel"]["total"] == 2 * n
    source = problems[0].source or "unknown"
    assert summary["by_source"][source]["total"] == 2 * n
    assert sum(summary["completion_tokens_by_source"][source].values()) == sum(t.completion_tokens for t in traces)
    assert summary["pass_rate"] == {"problems": n, "never_solved": 0, "always_solved": n // 2}
    assert summary["funnel"]["outside_pass_rate_band"] == 2 * (n // 2)  # both traces of each always-solved one
    assert summary["funnel"]["kept"] == n - n // 2  # one of two right: a pass rate of 0.5
    for name in ("funnel.png", "lengths.png"):
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
            assert image.size[0] > 100 and image.size[1] > 50
    assert not (out / "judge_audit.jsonl").exists()  # the judge is off by default


def test_filter_fingerprint_ignores_where_bwrap_lives_but_not_the_limits(tiny_config):
    from distill.runner import fingerprints

    base = fingerprints(tiny_config())["filter"]
    assert fingerprints(tiny_config(filter__sandbox={"bwrap": "/opt/bwrap", "workers": 3}))["filter"] == base
    assert fingerprints(tiny_config(filter__sandbox={"time_limit_s": 9.0}))["filter"] != base
    assert fingerprints(tiny_config(filter__pass_rate_band=[0.1, 0.9]))["filter"] != base
    assert fingerprints(tiny_config(filter__judge={"enabled": False, "model": "x"}))["filter"] == base
    assert fingerprints(tiny_config(filter__judge={"enabled": True}))["filter"] != base


def test_filter_fingerprint_ignores_operational_judge_settings(tiny_config):
    """Where the judge is reached, how fast, in what batches and at what price do not change the verdicts."""
    from distill.runner import fingerprints

    def fp(**judge):
        return fingerprints(tiny_config(filter__judge={"enabled": True, **judge}))["filter"]

    api = {"model": "judge-m", "backend": "openai"}
    base = fp(**api)
    moved = {"endpoints": ["https://elsewhere/v1"], "api_key_env": "OTHER_KEY", "max_concurrency": 3,
             "timeout_s": 5.0, "max_retries": 1, "backoff_base_s": 0.5, "backoff_max_s": 2.0,
             "prices": {"input_cache_hit_per_m": 0.1, "input_cache_miss_per_m": 1.0, "output_per_m": 2.0}}
    assert fp(**api, openai=moved, batch_size=3) == base
    assert fp(**api, openai={"reasoning_effort": "low"}) != base  # what the judge is asked does count
    assert fp(**api, openai={"served_model": "other"}) != base
    assert fp(**api, max_tokens=8) != base and fp(model="other-m", backend="openai") != base
    # the judge is the teacher: the teacher's settings count (upstream), the judge's backend options do not
    teacher = fp(model="teacher")
    assert fp(model="teacher", backend="vllm", openai={"reasoning_effort": "high"}) == teacher
    # another backend than openai: its openai options are not used
    assert fp(model="m", backend="vllm", openai={"reasoning_effort": "high"}) == fp(model="m", backend="vllm")


def test_filter_fingerprint_marks_runs_with_code_problems(tiny_config, tmp_path):
    """Code traces were once all error_infra: a run with code problems must not reuse such filter results,
    while math-only runs keep their fingerprints (their filter section gains nothing)."""
    import json

    from distill.filter.stage import FILTER

    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"id": "h", "problem": "9 * 9?", "answer": "81"}) + "\n")

    def run_with(name, rows):
        train = tmp_path / name
        train.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tiny_config(problems__source="jsonl", problems__train_path=str(train), problems__heldout_path=str(held))

    math_rows = [{"id": "m", "problem": "2 + 2?", "answer": "4"}]
    code_rows = math_rows + [{"id": "c", "problem": "Square n.", "kind": "code",
                              "tests": {"inputs": ["3\n"], "outputs": ["9\n"]}}]
    assert "code_verifier" not in FILTER.fingerprint_input(tiny_config())["filter"]  # generated arithmetic
    assert "code_verifier" not in FILTER.fingerprint_input(run_with("math.jsonl", math_rows))["filter"]
    assert FILTER.fingerprint_input(run_with("code.jsonl", code_rows))["filter"]["code_verifier"] == "bwrap-1"
