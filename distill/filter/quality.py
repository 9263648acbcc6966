"""Quality checks on a trace that need no verifier: each answers one question cheaply.

A trace can reach the right final answer and still be bad training data: a student
copies loops, switches into another script mid-thought, or learns to box two
different answers and let the grader pick.  These functions measure those faults;
:mod:`distill.filter.traces` turns the measurements into named rejection reasons using
thresholds from :class:`distill.config.FilterConfig`.

All of them are linear in the text (numpy for the n-gram work), because the filter
runs them on every trace, and R1 traces run to tens of thousands of words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from distill.filter.answers import all_boxed, chosen_letter, last_boxed
from distill.filter.code_tests import extract_code
from distill.filter.math_fast import normalise_answer, quick_check

# --------------------------------------------------------------------------- answer format


def has_final_answer(kind: str, answer_text: str) -> bool:
    r"""Whether the answer states a final answer the verifier can read (a non-empty ``\boxed{}`` for math,
    a letter for multiple choice, a fenced python block for code)."""
    if kind == "multiple_choice":
        return chosen_letter(answer_text) is not None
    if kind == "code":
        return extract_code(answer_text) is not None
    box = last_boxed(answer_text)
    return box is not None and bool(box.strip())


def _loose(answer: str) -> str:
    """A forgiving spelling for comparing two boxes of one answer: no braces, no ``x =`` prefix."""
    s = normalise_answer(answer).replace("{", "").replace("}", "")
    return re.sub(r"^[A-Za-z]\w{0,2}=", "", s)


def conflicting_boxes(answer_text: str) -> list[str]:
    r"""The distinct boxed answers when the answer boxes more than one; [] when they all agree.

    Two boxes agree when their loose spellings match or the fast numeric check says they
    are equal (``\frac{1}{2}`` and ``0.5``).  Boxes too different to compare cheaply
    count as disagreeing: the grader reads only the last one, so a trace that boxes
    two candidates teaches hedging even when the last is right.
    """
    boxes = [b for b in all_boxed(answer_text) if b.strip()]
    distinct: list[str] = []
    for box in boxes:
        if not any(_loose(box) == _loose(d) or quick_check(box, d) is True for d in distinct):
            distinct.append(box)
    return distinct if len(distinct) > 1 else []


# --------------------------------------------------------------------------- repetition


@dataclass(frozen=True)
class Repetition:
    words: int
    repeated_fraction: float  # share of words inside an n-gram that occurs at least `min_count` times
    tail_loop_words: int  # length of the periodic block run that ends the text (0 if none)
    tail_period: int  # words per repeated block in that run
    tail_repeats: float  # how many copies of the block the run holds


def _word_ids(text: str) -> np.ndarray:
    vocab: dict[str, int] = {}
    return np.fromiter((vocab.setdefault(w, len(vocab)) for w in text.split()), dtype=np.uint64)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A rolling polynomial hash of every n-word window (uint64 arithmetic wraps, which is fine for hashing)."""
    count = len(ids) - n + 1
    h = np.zeros(count, dtype=np.uint64)
    base = np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * base + ids[k : k + count] + np.uint64(1)
    return h


def repeated_fraction(ids: np.ndarray, n: int, min_count: int = 3) -> float:
    """Share of words covered by n-grams occurring ``min_count``+ times: near 1 in a loop, low in real reasoning.

    R1 repeats short phrases ("Wait,", "Let me check") all the time; only long n-grams
    (20 words by default) repeated several times mark text the model is cycling through.
    """
    if len(ids) < n * min_count:
        return 0.0
    hashes = _ngram_hashes(ids, n)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    starts = np.flatnonzero(counts[inverse] >= min_count)
    if not len(starts):
        return 0.0
    cover = np.zeros(len(ids) + 1, dtype=np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    return float(np.count_nonzero(np.cumsum(cover)[: len(ids)])) / len(ids)


def tail_loop(ids: np.ndarray, max_period: int = 400, window: int = 1600) -> tuple[int, int]:
    """(span, period) of the longest periodic run ending the text: a block repeated until the text stopped.

    For a period p the run is how far back ``word[i] == word[i - p]`` holds from the end,
    plus one block.  Only periods at which the last word recurs can qualify, so only
    those are tried, within the last ``window`` words.  The final word itself is left
    out: a generation cut off by the token limit usually ends mid-word.
    """
    tail = ids[-window - 1 : -1]
    if len(tail) < 2:
        return 0, 0
    last = len(tail) - 1
    periods = last - np.flatnonzero(tail[:-1] == tail[-1])
    best_span, best_period = 0, 0
    for p in sorted(int(p) for p in periods if p <= max_period and 2 * p <= len(tail)):
        same = tail[p:] == tail[:-p]
        broken = np.flatnonzero(~same[::-1])
        run = int(broken[0]) if len(broken) else len(same)
        span = run + p
        if run >= p and span > best_span:  # at least two full copies
            best_span, best_period = span, p
    return best_span, best_period


def repetition(text: str, n: int = 20, min_count: int = 3) -> Repetition:
    ids = _word_ids(text)
    if not len(ids):
        return Repetition(0, 0.0, 0, 0, 0.0)
    span, period = tail_loop(ids)
    return Repetition(len(ids), repeated_fraction(ids, n, min_count), span, period, span / period if period else 0.0)


def is_looping(rep: Repetition, n: int, max_repeated_fraction: float | None, tail_repeats: int | None) -> bool:
    """The repetition verdict: too much of the text in repeated long n-grams, or a tail that is one block over and over.

    A tail loop must span at least ``n`` words, so "Wait, wait, wait." is not one.
    """
    if max_repeated_fraction is not None and rep.repeated_fraction > max_repeated_fraction:
        return True
    return tail_repeats is not None and rep.tail_loop_words >= n and rep.tail_repeats >= tail_repeats


# --------------------------------------------------------------------------- language mixing

# Letters by script.  Greek is left out on purpose: math reasoning is full of alpha, pi, theta.
SCRIPTS: dict[str, str] = {
    "latin": r"A-Za-z\u00C0-\u024F\u1E00-\u1EFF",
    "cyrillic": r"\u0400-\u052F",
    "cjk": r"\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF",
    "hangul": r"\u1100-\u11FF\uAC00-\uD7AF",
    "arabic": r"\u0600-\u06FF\u0750-\u077F",
    "hebrew": r"\u0590-\u05FF",
    "devanagari": r"\u0900-\u097F",
    "thai": r"\u0E00-\u0E7F",
}
# A word of an alphabetic script is a run of its letters; CJK and Thai write no spaces, so each
# character counts as a word (one Han character carries about a word's meaning).
_CHAR_WORD_SCRIPTS = {"cjk", "thai"}
_WORD_RES = {
    name: re.compile(f"[{chars}]" if name in _CHAR_WORD_SCRIPTS else f"[{chars}]+") for name, chars in SCRIPTS.items()
}


def script_words(text: str) -> dict[str, int]:
    """Words per script (see SCRIPTS), counting CJK/Thai characters as words."""
    return {name: len(rx.findall(text)) for name, rx in _WORD_RES.items()}


def dominant_script(text: str) -> str | None:
    counts = script_words(text)
    name, words = max(counts.items(), key=lambda kv: kv[1])
    return name if words else None


def foreign_script_fraction(prompt: str, text: str) -> float:
    """Share of the text's words written in a script other than the prompt's.

    With a non-Latin prompt, Latin words are not counted as foreign: LaTeX commands
    and variable names are Latin in any language.
    """
    own = dominant_script(prompt) or "latin"
    counts = script_words(text)
    total = sum(counts.values())
    if not total:
        return 0.0
    neutral = {own, "latin"}
    return sum(v for k, v in counts.items() if k not in neutral) / total


def prompt_text(messages: list[dict[str, str]]) -> str:
    """The user turns of a chat prompt, which set the language the reasoning should be in."""
    return "\n".join(m.get("content", "") for m in messages if m.get("role", "user") == "user")
