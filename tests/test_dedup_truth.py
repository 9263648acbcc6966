"""Dedup and decontamination tell problems apart in any script and find short evaluation problems
copied inside longer training problems, without flagging generic short questions (issue 14)."""

from __future__ import annotations

import json

import pytest

from distill.filter.dedup import Text, find_contamination, find_duplicates, words
from tests.conftest import SHARED_DATA


def t(id: str, text: str, source: str = "train", answer: str = "") -> Text:
    return Text.of(id, text, source, answer)


# Two different problems that share only their LaTeX: the ASCII-only tokeniser saw "x ^ 2 = 4 x" in both.
ZH_A = "已知$x^2=4$，求$x$的所有可能值之和。"
ZH_B = "已知$x^2=4$，且$x$为正数，求$x$的值。"
ZH_EVAL = "一个袋子里有三个红球和五个蓝球，从中随机取出两个球，求两个球颜色相同的概率。"
ZH_OTHER = "一个盒子里有四个白球和六个黑球，从中依次取出三个球，求取出的球中恰有一个白球的概率。"
RU_EVAL = "Найдите сумму всех натуральных делителей числа, которое равно произведению первых трёх простых чисел."


def test_unicode_words_keep_scripts_latex_commands_and_numbers():
    assert words("Найдите сумму") == ["найдите", "сумму"]
    assert words("हिन्दी में") == ["हिन्दी", "में"]  # combining vowel signs stay inside their word
    assert words("求$x$的值") == ["求", "x", "的", "值"]  # no spaces in Chinese: one token per character
    assert words("ราคา 12 บาท")[:4] == ["ร", "า", "ค", "า"]
    assert words("１２ apples") == ["12", "apples"]  # full-width digits are digits
    assert words(r"Compute $\dbinom{31}{28}$.") == ["compute", "binom", "31", "28"]
    assert words(r"$x^2+(2.6)x+3.6$") == ["x", "^", "2", "+", "(", "2.6", ")", "x", "+", "3.6"]
    assert words(r"$\left( 3, \frac{\pi}{2} \right)$") == words(r"$(3, \dfrac{\pi}{2})$")


def test_different_chinese_problems_are_not_duplicates():
    dups = find_duplicates([t("a", ZH_A, answer="0"), t("b", ZH_B, answer="2"), t("c", ZH_EVAL), t("d", ZH_OTHER)])
    assert dups == []
    copies = find_duplicates([t("a", ZH_EVAL), t("b", ZH_EVAL.replace("，", ", "))])
    assert [(d.problem_id, d.duplicate_of, d.kind) for d in copies] == [("b", "a", "exact")]


def test_parentheses_in_math_tell_problems_apart():
    dups = find_duplicates([t("a", r"What is $88 \div 4 \div 2$?"), t("b", r"What is $88 \div (4 \div 2)$?")])
    assert dups == []


def test_non_latin_evaluation_problems_copied_into_training_are_found():
    evals = [t("zh", ZH_EVAL, "bench-zh"), t("ru", RU_EVAL, "bench-ru")]
    train = [t("copy-zh", "第3题：" + ZH_EVAL + "请写出详细过程。"), t("other-zh", ZH_OTHER),
             t("copy-ru", "Задача 7. " + RU_EVAL), t("same-zh", ZH_EVAL)]
    found = {(m.train_id, m.eval_id, m.kind) for m in find_contamination(train, evals)}
    assert found == {("copy-zh", "zh", "ngram"), ("copy-ru", "ru", "ngram"), ("same-zh", "zh", "exact")}


SHORT_EVAL = r"Compute $\dbinom{31}{28}$."


@pytest.mark.parametrize("train_text", [
    r"Without using a calculator, compute $\dbinom{31}{28}$.",
    r"Problem 4. Compute $\dbinom{31}{28}$. Show your work and simplify fully.",
])
def test_a_short_evaluation_problem_inside_a_training_problem_is_found(train_text):
    matches = find_contamination([t("x", train_text)], [t("e", SHORT_EVAL, "math500")])
    assert [(m.train_id, m.eval_id, m.kind, m.score) for m in matches] == [("x", "e", "contained", 1.0)]


def test_a_short_training_problem_inside_an_evaluation_problem_is_found():
    evals = [t("e", r"Without using a calculator, compute $\dbinom{31}{28}$ and give the answer as an integer.", "b")]
    matches = find_contamination([t("x", SHORT_EVAL)], evals)
    assert [(m.train_id, m.kind) for m in matches] == [("x", "contained")]


@pytest.mark.parametrize("eval_text, train_text", [
    ("Compute $x$.", "Let $x = 3y$ and $y = 5$. Compute $x$."),  # too short to identify a problem
    ("Find $x+y$.", "Real numbers satisfy $x - y = 3$ and $xy = 10$. Find $x+y$."),  # no number: generic
    ("Evaluate $i^5$.", "Evaluate $i^5+i^{-25}+i^{45}$."),  # a prefix of a longer expression
    (SHORT_EVAL, r"Compute $\dbinom{31}{28} + \dbinom{31}{3}$."),
    (SHORT_EVAL, r"Compute $\dbinom{31}{280}$."),
])
def test_short_problems_do_not_match_generic_or_partial_text(eval_text, train_text):
    assert find_contamination([t("x", train_text)], [t("e", eval_text, "b")]) == []
    assert find_contamination([t("x", eval_text)], [t("e", train_text, "b")]) == []


def _jsonl(path) -> list[dict]:
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_short_math500_problem_planted_in_training_is_found():
    math500 = _jsonl(SHARED_DATA / "eval" / "math500.jsonl")
    train_rows = _jsonl(SHARED_DATA / "train" / "math_train.jsonl")[:1500]
    evals = [t(r["id"], r["problem"], "math500") for r in math500]
    short = [e for e in evals if len(e.words) < 8]
    assert len(short) >= 8
    train = [t(r["id"], r["problem"]) for r in train_rows]
    train += [t(f"planted-{i}", f"Problem {i + 1}. {e_row['problem']} Show all of your work.")
              for i, e_row in enumerate(r for r in math500 if len(words(r["problem"])) < 8)]
    found = {m.train_id: m for m in find_contamination(train, evals)}
    for i, e in enumerate(short):
        assert found[f"planted-{i}"].eval_id == e.id, e
    assert len({m for m in found if not m.startswith("planted-")}) < 0.02 * len(train_rows)
