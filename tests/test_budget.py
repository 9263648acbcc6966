"""Budget forcing: the thinking never exceeds the cap, and the answer after the forced </think> is scored."""

from __future__ import annotations

import json

import pytest

from tests.conftest import WordTokenSampler, tiny_config_dict
from distill.records import Problem
from distill.eval.budget import (
    FORCED_CLOSE,
    BudgetForcedSampler,
    budget_sweep,
    reasoning_effort_budgets,
    write_sweep,
)
from distill.teachers.sampler import Completion, SamplingParams


class WordSampler(WordTokenSampler):
    """Deterministic: one word = one token.  Thinks ``think_words`` words, then answers the sum.

    When continued after a forced ``</think>`` it answers at once; it records every call.
    """

    name = "words"

    def __init__(self, think_words: int = 10):
        self.think_words = think_words
        self.calls: list[tuple[list, SamplingParams]] = []

    def _answer(self, prompt) -> str:
        a, b = (int(x) for x in prompt[0]["content"].split("What is ")[1].split("?")[0].split(" + "))
        return f"The answer is \\boxed{{{a + b}}}."

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        out = []
        for prompt in prompts:
            if prompt[-1]["role"] == "assistant":  # a continuation
                words = self._answer(prompt).split()
            else:
                words = ["<think>"] + [f"w{i}" for i in range(self.think_words)] + ["</think>"] + \
                    self._answer(prompt).split()
            cut = words[: params.max_tokens]
            finish = "length" if len(words) > params.max_tokens else "stop"
            out.append([Completion(" ".join(cut), finish, completion_tokens=len(cut)) for _ in range(params.n)])
        return out


PROBLEMS = [Problem(id=f"p{i}", problem=f"What is {i} + {i + 1}?", answer=str(2 * i + 1)) for i in range(4)]


@pytest.mark.parametrize("budget", [1, 3, 11, 12, 50])
def test_cap_and_forced_answer_with_a_counting_sampler(budget):
    inner = WordSampler(think_words=10)
    forced = BudgetForcedSampler(inner, budget, answer_tokens=8)
    params = SamplingParams(n=2, max_tokens=1000)
    out = forced.generate([[{"role": "user", "content": p.problem}] for p in PROBLEMS], params)
    assert inner.calls[0][1].max_tokens == budget  # the thinking call is capped
    for row in out:
        assert len(row) == 2
        for c in row:
            thinking = c.text.split("</think>")[0]
            assert inner.count_tokens(thinking) <= budget
            assert "</think>" in c.text and "\\boxed{" in c.text.split("</think>")[1]
    # 12 words = <think> + 10 + </think>: budgets below that are forced, 12 cuts only the answer
    assert forced.stats.forced == (8 if budget < 12 else 0)
    assert forced.stats.answer_continued == (8 if budget == 12 else 0)
    if forced.stats.forced:
        assert len(inner.calls) == 3  # one continuation call per sample index, each with its own seed
        (p0, c0), (p1, c1) = inner.calls[1], inner.calls[2]
        assert c0.max_tokens == c1.max_tokens == 8 and c0.n == c1.n == 1 and c0.seed != c1.seed
        assert len(p0) == len(p1) == len(PROBLEMS) and p0[0][-1]["content"].endswith(FORCED_CLOSE)


def test_sweep_scores_the_forced_answer_and_derives_efforts(tmp_path):
    sweep = budget_sweep(WordSampler(10), PROBLEMS, SamplingParams(n=2, max_tokens=1000), [2, 8, 64],
                         "words", "toy", answer_tokens=8)
    by_budget = {p["budget"]: p for p in sweep["points"]}
    assert by_budget[2]["forced"] == 8 and by_budget[2]["pass_at_1"] == 1.0  # answered after the forced close
    assert by_budget[2]["max_thinking_tokens"] <= 2 and by_budget[64]["forced"] == 0
    assert sweep["reasoning_effort"]["low"] == 2
    paths = write_sweep(sweep, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [p["budget"] for p in data["points"]] == [2, 8, 64] and "mean_tokens" in data["points"][0]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["effort"].read_text())["max_thinking_tokens"] == {"low": 2, "medium": 2, "high": 2}


def test_reasoning_effort_budgets():
    pts = [{"budget": 16, "pass_at_1": 0.1}, {"budget": 64, "pass_at_1": 0.45}, {"budget": 256, "pass_at_1": 0.6},
           {"budget": 1024, "pass_at_1": 0.62}]
    effort = reasoning_effort_budgets(pts)
    assert (effort["low"], effort["medium"], effort["high"]) == (64, 256, 256)
    zero = reasoning_effort_budgets([{"budget": 8, "pass_at_1": 0.0}, {"budget": 32, "pass_at_1": 0.0}])
    assert zero["high"] == 32 and "note" in zero


@pytest.mark.slow
def test_budget_forcing_through_the_transformers_sampler(tmp_path, teacher_cache):
    """The real toy teacher, real generate(): thinking is capped in tokens and the forced answer is scored."""
    from distill.config import config_from_dict
    from distill.problems import problem_sets
    from distill.filter.verify import verify_answer
    from distill.students.toy import ensure_toy_teacher
    from distill.teachers.backends.hf import TransformersSampler
    from distill.teachers.prompts import build_prompt

    cfg = config_from_dict(tiny_config_dict(tmp_path, teacher_cache))
    _, heldout = problem_sets(cfg)
    path = ensure_toy_teacher(cfg.teacher.toy.model_dump(mode="json"), 1, 1, heldout, teacher_cache)
    sampler = TransformersSampler(str(path), batch_size=32)
    params = SamplingParams(n=2, temperature=0.6, max_tokens=200, seed=0)
    prefix = "The answer is \\boxed{"
    try:
        sweep = budget_sweep(sampler, heldout, params, [4, 16, 200], "toy-teacher", "heldout", answer_tokens=16,
                             answer_prefix=prefix)
        forced = BudgetForcedSampler(sampler, 16, answer_tokens=16, answer_prefix=prefix)
        out = forced.generate([build_prompt(p) for p in heldout], params)
    finally:
        sampler.close()
    low, mid, high = sweep["points"]
    assert low["forced"] == low["samples"] == 2 * len(heldout)  # every worked solution is longer than 4 tokens
    assert low["max_thinking_tokens"] <= 4 and mid["max_thinking_tokens"] <= 16
    assert high["forced"] == 0 and high["within_budget"] == high["samples"]
    extracted = []
    for p, row in zip(heldout, out):
        for c in row:
            assert c.thinking_tokens <= 16  # generated tokens before the forced </think>
            if c.forced:
                answer = c.text.split("</think>", 1)[1]
                assert answer.startswith("\n\n" + prefix)
                extracted.append(verify_answer(p.kind, answer, p.answer).extracted)
    # the forced answers reach the verifier: it extracts the boxed number the model wrote after the prefix
    assert any(extracted)
    assert high["pass_at_1"] > 0 and high["mean_tokens"] > low["mean_tokens"]


class TemplateSampler(WordTokenSampler):
    """Renders every prompt with a real tokenizer's chat template (as the transformers/vLLM backends do) and
    answers from a script: the thinking is cut at the budget, a continuation answers.  It records the
    rendered prompts, which is what the model would see."""

    name = "template"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.rendered: list[str] = []

    def generate(self, prompts, params):
        from distill.teachers.sampler import render_prompt

        out = []
        for prompt in prompts:
            self.rendered.append(render_prompt(self.tokenizer, prompt))
            if prompt[-1]["role"] == "assistant":
                out.append([Completion("The answer is \\boxed{5}.", "stop", completion_tokens=6)] * params.n)
            else:  # R1-Distill's generation prompt opened the think block: the text has no <think>
                out.append([Completion("I add 2 and 3 and", "length", completion_tokens=params.max_tokens)] * params.n)
        return out


@pytest.fixture(scope="module")
def toy_tokenizer():
    from distill.students.toy_tokenizer import build_toy_tokenizer

    return build_toy_tokenizer(["What is 2 + 3? I add 2 and 3 and get 5. The answer is 5."] * 5)


def _r1_stock_template():
    from trl.chat_template_utils import deepseek_r1_distill_chat_template  # the upstream R1-Distill template

    return deepseek_r1_distill_chat_template


@pytest.mark.parametrize("template", ["r1_distill_training", "r1_stock"])
def test_forced_continuation_keeps_the_prefilled_think(toy_tokenizer, template):
    """The continuation is the generation prompt (ending '<｜Assistant｜><think>\\n') + the reasoning + the forced
    close: '<think>' once, and the stock template (which cuts assistant content at '</think>') works too."""
    import copy

    from distill.students.templates import R1_DISTILL_TRAINING_TEMPLATE

    tok = copy.deepcopy(toy_tokenizer)
    tok.chat_template = R1_DISTILL_TRAINING_TEMPLATE if template == "r1_distill_training" else _r1_stock_template()
    inner = TemplateSampler(tok)
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    out = BudgetForcedSampler(inner, 5, answer_tokens=8).generate([prompt], SamplingParams(n=1, max_tokens=100))
    first, cont = inner.rendered
    assert first.endswith("<｜Assistant｜><think>\n")
    assert cont == first + "I add 2 and 3 and" + FORCED_CLOSE
    assert cont.count("<think>") == 1 and cont.count("</think>") == 1
    c = out[0][0]
    assert c.forced and c.text == "I add 2 and 3 and" + FORCED_CLOSE + "The answer is \\boxed{5}."  # no opener added
    from distill.teachers.reasoning import split_reasoning

    split = split_reasoning(c.text, c.reasoning, c.prefilled_think)
    assert (split.reasoning, split.answer, split.think_closed) == ("I add 2 and 3 and", "The answer is \\boxed{5}.", True)


def test_continuation_of_a_text_that_opened_its_own_think_block(toy_tokenizer):
    """ChatML: the model writes '<think>' itself; the continuation carries its text verbatim, no second opener."""
    from distill.teachers.sampler import continuation_text, render_prompt

    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    head = render_prompt(toy_tokenizer, prompt)
    assert head.endswith("<|im_start|>assistant\n")
    cont = render_prompt(toy_tokenizer, [*prompt, {"role": "assistant", "content": "<think>\nI add" + FORCED_CLOSE}])
    assert cont == head + "<think>\nI add" + FORCED_CLOSE
    # a generation prompt that already opened the block is not opened twice, whatever the spacing
    assert continuation_text("A<think>\n", "<think>\nx") == "A<think>\nx"
    assert continuation_text("A<think>\n", "x") == "A<think>\nx"
    assert continuation_text("A\n", "<think>\nx") == "A\n<think>\nx"
