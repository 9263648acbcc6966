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


def conflicting_boxes(answer_text: str, problem: str = "") -> list[str]:
    r"""The distinct boxed answers when the answer boxes more of them than the problem asks for; [] otherwise.

    Two boxes agree when their loose spellings match or the fast numeric check says they
    are equal (``\frac{1}{2}`` and ``0.5``).  Boxes too different to compare cheaply
    count as disagreeing: the grader reads only the last one, so a trace that boxes
    two candidates teaches hedging even when the last is right.  A problem that asks for
    several values (:func:`asked_values`: "find $x$ and $y$", "the two roots") may box
    that many; one that asks for all of its solutions may box any number.
    """
    boxes = [b for b in all_boxed(answer_text) if b.strip()]
    distinct: list[str] = []
    for box in boxes:
        if not any(_loose(box) == _loose(d) or _same_value(box, d) for d in distinct):
            distinct.append(box)
    allowed = asked_values(problem) if len(distinct) > 1 else 1
    return distinct if allowed is not None and len(distinct) > allowed else []


def _same_value(a: str, b: str) -> bool:
    """Two boxes hold one value unless the exact fast path proves them different; forms it cannot decide
    (``2\\sqrt{2}`` and ``\\sqrt{8}``) count as the same when both are math, so a correct trace that writes
    its answer twice is not rejected as conflicting, while two different words still conflict."""
    verdict = quick_check(a, b)
    if verdict is not None:
        return verdict
    return all(re.search(r"[\d\\^]", x) for x in (a, b))


_COUNT_WORDS = {"both": 2, "two": 2, "three": 3, "four": 4}
_ASK = r"\b(?:find|compute|determine|calculate|solve\s+for|what\s+are|give|list|enter|state)\s+"
_VAR = r"(?<![\w\\])\$?\s*[A-Za-z](?:_\{?\w+\}?)?\s*\$?(?![\w(^+\-*/=])"
_VAR_RE = re.compile(_VAR)
_ASK_RE = re.compile(_ASK, re.IGNORECASE)
_ASK_ALL_RE = re.compile(_ASK + r"(?:all|every|the\s+(?:roots|solutions|zeros|zeroes))\b", re.IGNORECASE)
_ASK_COUNT_RE = re.compile(_ASK + r"(?:the\s+|all\s+)?(both|two|three|four)\s+(?:\w+\s+){0,2}?"
                           r"(?:roots|solutions|zeros|zeroes|values|numbers|integers|answers|points)\b", re.IGNORECASE)
_ASK_VARS_RE = re.compile(_ASK + r"(?:the\s+values?\s+of\s+)?(?:both\s+)?(" + _VAR + r"(?:\s*,\s*" + _VAR + r")*\s*,?\s*and\s+"
                          + _VAR + ")", re.IGNORECASE)
_EXTREMES_RE = re.compile(
    r"\b(?:smallest|least|minimum|lowest)\b[^.?!]{0,40}?\band\b[^.?!]{0,40}?\b(?:largest|greatest|maximum|highest)\b|"
    r"\b(?:largest|greatest|maximum|highest)\b[^.?!]{0,40}?\band\b[^.?!]{0,40}?\b(?:smallest|least|minimum|lowest)\b",
    re.IGNORECASE)
_ONE_OF_RE = re.compile(r"\b(?:sum|difference|product|ratio|quotient|average|mean|between|total|number)\b",
                        re.IGNORECASE)
_PART_RE = re.compile(r"(?:^|\s)\(([a-e])\)\s")


def asked_values(problem: str) -> int | None:
    """How many separate values the problem asks for: 1 unless its text says so plainly; None for "all of them".

    Conservative by design, so a hedging trace is not excused by accident: only a verb
    that asks for them ("find $x$ and $y$", "what are the two roots", "find all real
    solutions", "determine the maximum and the minimum") or lettered parts "(a) ... (b)"
    count, and a sentence that combines them into one value ("the sum of the two roots",
    "the difference between the largest and smallest") stays at 1.
    """
    for sentence in re.split(r"(?<=[.?!])\s+", problem):
        if _ASK_ALL_RE.search(sentence):
            return None
    found = 1
    for sentence in re.split(r"(?<=[.?!])\s+", problem):
        if (m := _ASK_COUNT_RE.search(sentence)) and not _ONE_OF_RE.search(sentence[: m.end()]):
            found = max(found, _COUNT_WORDS[m.group(1).lower()])
        if (m := _ASK_VARS_RE.search(sentence)) and not _ONE_OF_RE.search(sentence[: m.end()]):
            found = max(found, len(_VAR_RE.findall(m.group(1))))
        if (m := _EXTREMES_RE.search(sentence)) and _ASK_RE.search(sentence[: m.start()]) and \
                not _ONE_OF_RE.search(sentence[: m.end()]):
            found = max(found, 2)
    parts = set(_PART_RE.findall(problem))
    if {"a", "b"} <= parts:
        found = max(found, len(parts))
    return found


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


# Environments whose rows repeat by structure: matrices, arrays (synthetic division), tables.
_TABLE_ENVS = r"array|tabular\*?|tabularx|matrix|[pbBvV]matrix|smallmatrix"
_TABLE_RE = re.compile(r"\\begin\{(" + _TABLE_ENVS + r")\}(.{0,20000}?)\\end\{\1\}", re.DOTALL)
_MARKDOWN_ROW_RE = re.compile(r"^[ \t]*\|.*\|[ \t]*$", re.MULTILINE)
_SPACE_RE = re.compile(r"\s+")


def fold_tables(text: str) -> str:
    r"""The text with each row of a LaTeX table or matrix, and each markdown table row, written as one word.

    Why: a row is a unit of meaning, not a run of words.  Split at spaces, a matrix's
    rows of ``0 & 0 & 0`` or the coefficient row a synthetic division copies into every
    try are long runs of the same few words, and the repetition check would call them a
    loop.  As one word per row, a table repeats only where its rows do: the same row
    many times over, or the same table with the same words around it again and again,
    which is a loop and still counts as one.
    """
    def fold(m: re.Match[str]) -> str:
        rows = [_SPACE_RE.sub("", row) for row in m.group(2).split("\\\\")]
        return " ".join([f"\\begin{{{m.group(1)}}}", *[row for row in rows if row], f"\\end{{{m.group(1)}}}"])

    text = _TABLE_RE.sub(fold, text)
    return _MARKDOWN_ROW_RE.sub(lambda m: _SPACE_RE.sub("", m.group()), text)


def repetition(text: str, n: int = 20, min_count: int = 3) -> Repetition:
    """How much of the text repeats, with table rows folded into single words first (:func:`fold_tables`)."""
    ids = _word_ids(fold_tables(text))
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
