"""Eval numbers that tell the truth (issue 14): a verifier that cannot run is not a wrong answer, cons@k votes on
equivalent answers, and the 95% interval over a few dozen problems uses the t distribution (and says so)."""

from __future__ import annotations

import json
import math
import random
import sys
from types import SimpleNamespace

import pytest

from distill.records import Problem
from distill.eval.protocol import evaluate
from distill.teachers.sampler import Completion, SamplingParams
from tests.conftest import WordTokenSampler

CODE_TESTS = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})
GOOD_CODE = "<think>x</think>```python\na, b = map(int, input().split())\nprint(a + b)\n```"


class Scripted(WordTokenSampler):
    """Fixed completions per problem text (a stand-in for a model; the scoring path is the real one)."""

    name = "scripted"

    def __init__(self, by_problem):
        self.by_problem = by_problem

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            text = prompt[0]["content"]
            key = next(k for k in self.by_problem if text.startswith(k))
            out.append([Completion(t, "stop", completion_tokens=5) for t in self.by_problem[key]])
        return out


def _no_sandbox():
    from distill.config import SandboxConfig

    return SandboxConfig(bwrap="/nonexistent/bwrap")  # a machine without bubblewrap


# --------------------------------------------------------------------------- verifier failures are not wrong answers

def test_no_sandbox_is_a_verifier_failure_not_a_wrong_answer():
    """Before: the code problem's two right programs counted as wrong, pass@1 0.5 and nothing reported."""
    problems = [Problem("m", "What is 1 + 1?", "2"), Problem("c", "Add two numbers", CODE_TESTS, kind="code")]
    sampler = Scripted({"What is 1 + 1": ["<think>x</think>\\boxed{2}"] * 2, "Add two numbers": [GOOD_CODE] * 2})
    result = evaluate(sampler, problems, SamplingParams(n=2), "m", "mixed", sandbox=_no_sandbox())
    s = result.score
    assert s.verifier_failed == 2 and s.samples == 4 and s.problems == 2
    assert s.pass_at_1 == 1.0  # over the scored samples: the unscored ones are left out, not counted wrong
    summary = result.summary()
    assert summary["verifier_failed"] == 2
    assert "sandbox" in next(iter(summary["verifier_failure_causes"]))
    rows = [r for r in result.samples if r["problem_id"] == "c"]
    assert all(r["correct"] is None and r["status"] == "error_infra" for r in rows)


def test_math_verify_timeout_is_a_verifier_failure(monkeypatch):
    import distill.filter.verify as verify

    monkeypatch.setattr(verify, "run_math_jobs", lambda jobs, *a, **k: ["error_infra"] * len(jobs))
    problems = [Problem("a", "What is x?", "1+y"), Problem("b", "What is 2 + 2?", "4")]
    sampler = Scripted({"What is x": ["<think>x</think>\\boxed{y+1}"] * 4,  # needs math-verify, which "times out"
                        "What is 2 + 2": ["<think>x</think>\\boxed{4}"] * 3 + ["<think>x</think>\\boxed{5}"]})
    s = evaluate(sampler, problems, SamplingParams(n=4), "m", "toy").score
    assert (s.verifier_failed, s.samples) == (4, 8)
    assert s.pass_at_1 == pytest.approx(0.75)  # problem b alone; before: (0 + 0.75) / 2


def _ctx(tmp_path, share=0.05):
    from distill.config import EvalConfig, FilterConfig
    from distill.progress import NullReporter

    config = SimpleNamespace(eval=EvalConfig(max_verifier_failure_share=share, samples_per_problem=2),
                             filter=FilterConfig(sandbox=_no_sandbox()))
    return SimpleNamespace(config=config, reporter=NullReporter())


def _code_bench():
    from distill.eval.benchmarks import LoadedBenchmark
    from distill.config import BenchmarkConfig

    problems = [Problem("m", "What is 1 + 1?", "2"), Problem("c", "Add two numbers", CODE_TESTS, kind="code")]
    return BenchmarkConfig(name="lcb"), LoadedBenchmark("lcb", "file", "code", "lcb", problems, {})


def test_eval_stage_fails_when_the_verifier_cannot_score_too_many_samples(tmp_path):
    from distill.errors import UserError
    from distill.eval.stage import _evaluate_one

    sampler = Scripted({"What is 1 + 1": ["<think>x</think>\\boxed{2}"] * 2, "Add two numbers": [GOOD_CODE] * 2})
    done = tmp_path / "by_benchmark" / "lcb" / "student.json"
    with pytest.raises(UserError) as err:
        _evaluate_one(_ctx(tmp_path), sampler, ("transformers", "float32"), "student", "/m", _code_bench(), done)
    msg = str(err.value)
    assert "student" in msg and "lcb" in msg and "2 of 4" in msg and "50%" in msg
    assert "sandbox" in msg and "max_verifier_failure_share" in msg
    assert not done.is_file()  # a resumed run evaluates it again
    assert done.with_name("samples-student.jsonl").is_file()  # the samples stay for a look


def test_eval_stage_accepts_a_share_within_the_limit(tmp_path):
    from distill.eval.stage import _evaluate_one

    sampler = Scripted({"What is 1 + 1": ["<think>x</think>\\boxed{2}"] * 2, "Add two numbers": [GOOD_CODE] * 2})
    done = tmp_path / "student.json"
    summary = _evaluate_one(_ctx(tmp_path, share=0.5), sampler, ("transformers", "float32"), "student", "/m",
                            _code_bench(), done)
    assert summary["verifier_failed"] == 2 and json.loads(done.read_text())["verifier_failed"] == 2
    assert summary["protocol"]["verifier_failed"].startswith("left out")


def test_max_verifier_failure_share_default():
    from distill.config import EvalConfig

    assert EvalConfig().max_verifier_failure_share == 0.05
    with pytest.raises(ValueError):
        EvalConfig(max_verifier_failure_share=1.5)


# --------------------------------------------------------------------------- cons@k on equivalence classes

def test_cons_at_k_votes_on_equivalent_answers():
    """1/2, 0.5 and \\frac{1}{2} are one answer with three votes; before, the two 3s won the raw-string vote."""
    problems = [Problem("a", "What is half?", "1/2")]
    sampler = Scripted({"What is half": ["<think>x</think>\\boxed{3}", "<think>x</think>\\boxed{1/2}",
                                         "<think>x</think>\\boxed{0.5}", "<think>x</think>\\boxed{\\frac{1}{2}}",
                                         "<think>x</think>\\boxed{3}"]})
    s = evaluate(sampler, problems, SamplingParams(n=5), "m", "toy").score
    assert s.pass_at_1 == pytest.approx(0.6) and s.cons_at_k == 1.0


def test_equivalence_votes_are_deterministic_and_ties_go_to_the_first_seen():
    from distill.eval.scoring import majority_correct, verifier_equivalence

    same = verifier_equivalence("math")
    # {2, 2.0} two votes, {1/2, 0.5} two votes: a tie, the class seen first wins
    answers, correct = ["2", "1/2", "2.0", "0.5"], [False, True, False, True]
    assert majority_correct(answers, correct, same) is False
    assert majority_correct(answers[1:] + answers[:1], correct[1:] + correct[:1], same) is True
    assert majority_correct(["y+1", "1+y", "3"], [True, True, False], same) is True  # math-verify decides
    assert majority_correct(["", ""], [False, False], same) is False


# --------------------------------------------------------------------------- the t interval

def _per_problem(n=30, seed=1):
    rng = random.Random(seed)
    return [[rng.random() < 0.4 for _ in range(4)] for _ in range(n)]


def test_interval_uses_the_t_distribution_and_says_so():
    from scipy import stats

    from distill.eval.scoring import pass_at_1, score

    correct = _per_problem()
    means = [sum(c) / len(c) for c in correct]
    n, mean = len(means), sum(means) / len(means)
    se = math.sqrt(sum((m - mean) ** 2 for m in means) / (n - 1) / n)
    half = stats.t.ppf(0.975, n - 1) * se
    got = pass_at_1(correct)
    assert got[0] == pytest.approx(mean)
    assert (got[1], got[2]) == pytest.approx((mean - half, mean + half))  # before: 1.96 * se, too narrow
    s = score(correct, [[""] * 4] * n)
    assert s.ci_method == "t" and (s.ci95_low, s.ci95_high) == pytest.approx((mean - half, mean + half))


def test_interval_without_scipy_is_a_seeded_bootstrap(monkeypatch):
    from distill.eval.scoring import score

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    correct = _per_problem()
    a, b = score(correct, [[""] * 4] * 30), score(correct, [[""] * 4] * 30)
    assert a.ci_method == "bootstrap" and (a.ci95_low, a.ci95_high) == (b.ci95_low, b.ci95_high)
    assert a.ci95_low < a.pass_at_1 < a.ci95_high


def test_results_table_caption_names_the_interval_method():
    from distill.eval.table import r1_distill_table

    summary = {"pass_at_1": 0.5, "ci95_low": 0.4, "ci95_high": 0.6, "cons_at_k": 0.5, "ci_method": "t",
               "verifier_failed": 3, "samples": 120, "params": {"n": 4}}
    text = r1_distill_table({"student": {"mine": summary}}, "Qwen/Qwen2.5-Math-1.5B")
    assert "t distribution" in text
    assert "3 of 120" in text and "verifier" in text


def test_report_names_the_interval_method_and_unjudged_samples(tmp_path):
    from distill.publish.report import write_report
    from tests.conftest import write_yaml

    folder = tmp_path / "run"
    (folder / "eval").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"stages": {"eval": {"status": "done", "seconds": 3.0}}}))
    write_yaml(folder / "config.yaml", {"name": "run", "student": {"model": "toy"}})
    params = {"n": 4, "temperature": 0.6, "top_p": 0.95, "max_tokens": 1024, "seed": 0}
    summary = {"benchmark": "lcb", "pass_at_1": 0.5, "ci95_low": 0.3, "ci95_high": 0.7, "cons_at_k": 0.5,
               "problems": 30, "samples": 120, "truncated": 0, "verifier_failed": 5, "ci_method": "t",
               "params": params}
    (folder / "eval" / "results.json").write_text(json.dumps({"student": summary}))
    md = write_report(folder).markdown.read_text()
    assert "t distribution" in md
    assert "5 of 120" in md and "left out of pass@1" in md


def test_eval_fingerprint_ignores_the_threshold_and_keeps_sandbox_limits(tiny_config):
    from distill.eval.stage import EVAL

    base = EVAL.fingerprint_input(tiny_config())
    assert base == EVAL.fingerprint_input(tiny_config(eval__max_verifier_failure_share=0.5))
    assert "sandbox" not in base and base == EVAL.fingerprint_input(tiny_config(filter__sandbox__bwrap="/opt/bwrap"))
    assert EVAL.fingerprint_input(tiny_config(filter__sandbox__time_limit_s=9.0))["sandbox"]["time_limit_s"] == 9.0
