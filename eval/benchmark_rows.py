"""Turning a benchmark dataset's rows into :class:`distill.records.Problem` records, one layout per dataset.

Each Hub benchmark (:data:`distill.eval.benchmarks.REGISTRY`) names one converter
here: it reads that dataset's own columns, normalises the reference answer
(AMC's float answers, GSM8K's ``#### N`` line), shuffles multiple-choice options
reproducibly (GPQA) and decodes LiveCodeBench's test payloads.  A converter's
failure is one of :data:`BAD_ROW_ERRORS`, which the loaders report as one line
naming the row.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
import random
import re
import zlib
from typing import Any, Protocol

from distill.records import Problem

Row = dict[str, Any]


class BenchmarkInfo(Protocol):
    """What a row converter reads of its benchmark (a :class:`distill.eval.benchmarks.Benchmark`)."""

    @property
    def kind(self) -> str: ...

    @property
    def display(self) -> str: ...


# --------------------------------------------------------------------------- answer normalisation


def integer_string(value: Any) -> str:
    """``27.0`` -> ``"27"``; other values as strings (AMC23 answers are floats on the Hub)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"-?\d+\.0+", text):
        return text.split(".")[0]
    return text


def gsm8k_final_answer(solution: str) -> str:
    """The number after ``####`` in a GSM8K solution, without thousands commas."""
    if "####" not in solution:
        raise ValueError("GSM8K answer has no '####' line")
    return solution.split("####")[-1].strip().replace(",", "")


def _require(row: Row, *keys: str) -> None:
    missing = [k for k in keys if k not in row or row[k] is None]
    if missing:
        raise KeyError(f"row lacks column(s) {', '.join(missing)}; present: {', '.join(sorted(row))}")


# --------------------------------------------------------------------------- Hub row converters

_AIME_URL = re.compile(r"(\d{4})_AIME_(I{1,2})_Problems/Problem_(\d+)")


def _aime_id(row: Row, index: int, year: str) -> str:
    m = _AIME_URL.search(str(row.get("url") or ""))
    if m:
        return f"AIME-{m.group(1)}-{m.group(2)}-{m.group(3)}"
    return f"AIME-{year}-{row.get('id', index)}"


def aime2024_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """HuggingFaceH4/aime_2024: id, problem, solution, answer, url, year."""
    _require(row, "problem", "answer")
    return Problem(id=_aime_id(row, index, "2024"), problem=str(row["problem"]), answer=integer_string(row["answer"]),
                   kind=bench.kind, source=bench.display, solution=str(row.get("solution") or ""))


def aime2025_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """MathArena/aime_2025 (the source of shared/data's copy): problem_idx 1-30 (I then II), problem, answer."""
    _require(row, "problem", "answer")
    number = int(row.get("problem_idx") or index + 1)
    exam, n = ("I", number) if number <= 15 else ("II", number - 15)
    return Problem(id=f"AIME-2025-{exam}-{n}", problem=str(row["problem"]), answer=integer_string(row["answer"]),
                   kind=bench.kind, source=bench.display)


def math500_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """HuggingFaceH4/MATH-500: problem, solution, answer, subject, level, unique_id."""
    _require(row, "problem", "answer")
    return Problem(id=str(row.get("unique_id") or f"math500-{index}"), problem=str(row["problem"]),
                   answer=str(row["answer"]), kind=bench.kind, source=bench.display,
                   solution=str(row.get("solution") or ""))


def gsm8k_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """openai/gsm8k (config ``main``): question, answer (worked solution ending in ``#### N``)."""
    _require(row, "question", "answer")
    return Problem(id=f"gsm8k-test-{index}", problem=str(row["question"]), answer=gsm8k_final_answer(row["answer"]),
                   kind=bench.kind, source=bench.display, solution=str(row["answer"]))


def amc23_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """math-ai/amc23: id, question, answer (float), url."""
    _require(row, "question", "answer")
    return Problem(id=f"AMC23-{row.get('id', index)}", problem=str(row["question"]),
                   answer=integer_string(row["answer"]), kind=bench.kind, source=bench.display)


LETTERS = "ABCDEFGHIJ"


def shuffle_choices(correct: str, incorrect: list[str], key: str, seed: int) -> tuple[list[str], str]:
    """(options in shown order, letter of the correct one), fixed by (seed, item key).

    Why per item and not one global permutation: a global one would put every
    correct answer under the same letter whenever the source lists it first
    (GPQA does), and a model biased towards a letter would look good or bad.
    """
    options = [correct, *incorrect]
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    order = list(range(len(options)))
    random.Random(int.from_bytes(digest[:8], "little")).shuffle(order)
    shown = [options[i] for i in order]
    return shown, LETTERS[order.index(0)]


def multiple_choice_text(question: str, options: list[str]) -> str:
    return question.strip() + "\n\n" + "\n".join(f"{LETTERS[i]}. {o.strip()}" for i, o in enumerate(options))


def gpqa_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """Idavidrein/gpqa (config ``gpqa_diamond``): Question, Correct Answer, Incorrect Answer 1-3, Record ID."""
    _require(row, "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    key = str(row.get("Record ID") or index)
    incorrect = [str(row[f"Incorrect Answer {i}"]) for i in (1, 2, 3)]
    options, letter = shuffle_choices(str(row["Correct Answer"]), incorrect, key, seed)
    return Problem(id=f"gpqa-{key}", problem=multiple_choice_text(str(row["Question"]), options), answer=letter,
                   kind=bench.kind, source=bench.display)


class _StrOnlyUnpickler(pickle.Unpickler):
    """LiveCodeBench pickles a plain JSON string; refusing every class makes loading it safe."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a benchmark file")


def decode_lcb_tests(value: Any) -> list[dict[str, Any]]:
    """LiveCodeBench test cases: a JSON list, or base64(zlib(pickle(JSON string))) for the private ones."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    text = str(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    raw = zlib.decompress(base64.b64decode(text))
    inner = _StrOnlyUnpickler(io.BytesIO(raw)).load()
    if not isinstance(inner, (str, bytes)):
        raise ValueError(f"private test cases unpickle to {type(inner).__name__}, not a JSON string")
    return json.loads(inner)


# What a row in the wrong layout (or with a corrupt LiveCodeBench test payload) raises while it is
# converted: each becomes one UserError line naming the row, never a traceback.
BAD_ROW_ERRORS = (KeyError, ValueError, zlib.error, pickle.UnpicklingError, EOFError)


def code_answer(tests: list[dict[str, Any]], fn_name: str | None) -> str:
    """The reference for a code problem: its tests (and entry function) as one JSON string.

    The layout is LiveCodeBench's cases inside ``{"fn_name", "cases"}``, which the
    shared verifier's ``code`` kind parses (:func:`distill.filter.sandbox.parse_tests`).
    """
    norm = [{"input": t["input"], "output": t["output"], "testtype": t.get("testtype", "stdin")} for t in tests]
    return json.dumps({"fn_name": fn_name, "cases": norm}, ensure_ascii=False)  # distill.filter.sandbox.parse_tests reads it


def code_prompt(question: str, starter_code: str) -> str:
    """LiveCodeBench's prompt shape: the statement, then how the program must read input / be defined."""
    if starter_code.strip():
        how = ("You will use the following starter code to write the solution to the problem and enclose "
               f"your code within delimiters.\n```python\n{starter_code.rstrip()}\n```")
    else:
        how = ("Read the inputs from stdin, solve the problem and write the answer to stdout. Enclose your "
               "code within delimiters as follows.\n```python\n# YOUR CODE HERE\n```")
    return f"{question.strip()}\n\n{how}"


def lcb_row(row: Row, index: int, bench: BenchmarkInfo, seed: int) -> Problem:
    """livecodebench/code_generation_lite: question_content, starter_code, public/private_test_cases, metadata."""
    _require(row, "question_content", "public_test_cases")
    tests = decode_lcb_tests(row["public_test_cases"]) + decode_lcb_tests(row.get("private_test_cases"))
    meta = row.get("metadata") or "{}"
    meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
    return Problem(id=f"lcb-{row.get('question_id', index)}",
                   problem=code_prompt(str(row["question_content"]), str(row.get("starter_code") or "")),
                   answer=code_answer(tests, meta.get("func_name")), kind=bench.kind, source=bench.display)
