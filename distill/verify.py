"""The one verifier that decides "correct", for the filter and for evaluation alike.

Math answers are the last ``\\boxed{}`` of the text after ``</think>``, compared
to the reference with math-verify.  Multiple choice compares the chosen letter.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    correct: bool
    extracted: str  # the final answer we read, "" if none
    status: str  # correct | wrong | no_answer | error_infra


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces balanced; None if absent or unclosed."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        rest = text[idx + len("\\boxed") :]
        m = re.match(r"\s+(\S+)", rest)  # "\boxed 5" form
        return m.group(1).rstrip(".$") if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def all_boxed(text: str) -> list[str]:
    found = []
    rest = text
    while True:
        box = last_boxed(rest)
        if box is None:
            return list(reversed(found))
        found.append(box)
        rest = rest[: max(rest.rfind("\\boxed"), rest.rfind("\\fbox"))]


def verify_math(answer_text: str, reference: str) -> Check:
    extracted = last_boxed(answer_text)
    if extracted is None or not extracted.strip():
        return Check(False, "", "no_answer")
    try:
        correct = _math_equal(extracted, reference)
    except Exception as exc:  # math-verify failing is infrastructure, not a wrong answer
        log.debug("math-verify error on %r vs %r: %s", extracted, reference, exc)
        return Check(False, extracted, "error_infra")
    return Check(correct, extracted, "correct" if correct else "wrong")


def _math_equal(extracted: str, reference: str) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold = parse(f"${reference}$", extraction_config=configs, parsing_timeout=5)
    pred = parse(f"${extracted}$", extraction_config=configs, parsing_timeout=5)
    if not gold or not pred:
        return _normalise(extracted) == _normalise(reference)
    return bool(verify(gold, pred, timeout_seconds=5))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", "", text).strip("$.").lower()


LETTER_RE = re.compile(r"\b([A-J])\b")


def verify_choice(answer_text: str, reference: str) -> Check:
    boxed = last_boxed(answer_text)
    source = boxed if boxed is not None else answer_text
    m = re.search(r"(?:answer(?: is)?:?\s*\(?)([A-J])\b", source, re.IGNORECASE) if boxed is None else None
    letters = LETTER_RE.findall(source.upper()) if m is None else [m.group(1).upper()]
    if not letters:
        return Check(False, "", "no_answer")
    choice = letters[-1]
    ok = choice == reference.strip().upper()
    return Check(ok, choice, "correct" if ok else "wrong")


def verify_answer(kind: str, answer_text: str, reference: str) -> Check:
    """Dispatch by problem kind; the single entry point for filter and eval."""
    if kind == "multiple_choice":
        return verify_choice(answer_text, reference)
    if kind == "math":
        return verify_math(answer_text, reference)
    return Check(False, "", "error_infra")
