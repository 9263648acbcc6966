"""Reading an answer: the final boxed expression of a math answer, the letter a multiple-choice answer chooses.

Also :class:`Check`, the verdict every verifier returns, and the multiple-choice verdict itself
(a letter needs no worker process).  Nothing here imports math-verify or the sandbox, so the
quality checks and the teacher service read answers without either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATUSES = ("correct", "wrong", "no_answer", "error_infra")


@dataclass(frozen=True)
class Check:
    """A verifier's verdict on one answer; ``status`` keeps infrastructure errors apart from wrong answers."""

    correct: bool
    extracted: str  # the final answer we read, "" if none; for code, the sandbox outcome
    status: str  # correct | wrong | no_answer | error_infra
    detail: str = ""  # code: which test failed and how


# --------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_BRACE_RE = re.compile(r"[{}]")


def _box_at(text: str, start: int) -> tuple[str, int] | None:
    r"""(content, end) of the box whose command ends at ``start``; None if unclosed or empty-handed.

    Handles ``\boxed{...}`` with nested braces and the brace-less ``\boxed 5`` form.
    """
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        m = re.match(r"\s+(\S+)", text[start:])  # "\boxed 5" form
        if not m:
            return None
        return m.group(1).rstrip(".$"), start + m.end()
    depth = 0
    for m in _BRACE_RE.finditer(text, i):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[i + 1 : m.start()].strip(), m.end()
    return None


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces balanced; None if absent or unclosed."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    found = _box_at(text, idx + (len("\\boxed") if text.startswith("\\boxed", idx) else len("\\fbox")))
    return None if found is None else found[0]


def all_boxed(text: str) -> list[str]:
    """Contents of every closed box, in order; boxes nested inside another are part of the outer one."""
    found: list[str] = []
    pos = 0
    for m in _BOX_RE.finditer(text):
        if m.start() < pos:
            continue
        box = _box_at(text, m.end())
        if box is not None:
            found.append(box[0])
            pos = box[1]
    return found


# --------------------------------------------------------------------------- multiple choice

# A choice is a capital letter standing alone: "(B)", "B.", "B:", "B" -- never the article "a" or a unit "J".
# A bare "I" followed on its line by a word or an apostrophe is the pronoun ("Answer: I am sure", "I'm"),
# never option I; "(I)", "I." and a line ending in "I" still choose it.
_CHOICE = r"\(?([A-HJ]|I(?![ \t]*[A-Za-z'\u2019]))\)?(?![A-Za-z0-9])"
_BOXED_CHOICE_RE = re.compile(r"^\s*" + _CHOICE)
_STATED_CHOICE_RE = re.compile(r"(?i:answer)(?:\s*(?i:is))?[\s:*]*" + _CHOICE)
_LAST_LINE_CHOICE_RE = re.compile(r"^\W*" + _CHOICE + r"\W*$")


def chosen_letter(answer_text: str) -> str | None:
    r"""The letter an answer chooses, or None.

    Read strictly, because a loose read inflates multiple-choice scores: the letter that opens
    ``\boxed{}`` (``\boxed{\text{B. 4 J}}`` is B, not the unit J); without a box, the last
    "answer is (X)" / "Answer: X", else a final line that is only a letter. Lower-case letters never
    count, so "I pick a value" chooses nothing, and neither does the pronoun in "Answer: I am sure".
    """
    boxed = last_boxed(answer_text)
    if boxed is not None:
        inner = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", boxed)
        m = _BOXED_CHOICE_RE.match(inner)
        return m.group(1) if m else None
    stated = _STATED_CHOICE_RE.findall(answer_text)
    if stated:
        return stated[-1]
    lines = [line for line in answer_text.strip().splitlines() if line.strip()]
    m = _LAST_LINE_CHOICE_RE.match(lines[-1]) if lines else None
    return m.group(1) if m else None


def verify_choice(answer_text: str, reference: str) -> Check:
    choice = chosen_letter(answer_text)
    if choice is None:
        return Check(False, "", "no_answer")
    ok = choice == reference.strip().upper()
    return Check(ok, choice, "correct" if ok else "wrong")
