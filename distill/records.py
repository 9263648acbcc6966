"""The records that flow between stages: Problem, Trace and Verdict.

They are plain dataclasses that serialise to flat JSON objects, so a shard of
them is a JSONL file that ``datasets.load_dataset("json", data_files=...)``
and pandas read directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from distill.errors import UserError

T = TypeVar("T")


@dataclass
class Problem:
    """A prompt with a verifiable reference answer."""

    id: str
    problem: str
    answer: str
    kind: str = "math"  # math | multiple_choice | code
    source: str = ""
    solution: str = ""  # a reference worked solution, when one exists
    # Code problems: the tests (APPS/TACO ``{inputs, outputs, fn_name?}``, LiveCodeBench cases, or
    # ``{style, fn_name, cases}``; see distill.filter.sandbox.parse_tests).  They also become ``answer`` as JSON,
    # because the reference travels as ``answer`` to traces and to the verifier.
    tests: Any = None

    def __post_init__(self) -> None:
        """A code problem's tests are its reference, even when the row also has an ``answer``.

        The sandbox grades code against tests only; an ``answer`` beside them (often a
        reference program) would otherwise stand in for the tests and fail every trace.
        It moves to ``solution`` when that is empty, so it is not lost.
        """
        if self.kind != "code" or self.tests is None:
            return
        reference = self.tests if isinstance(self.tests, str) else json.dumps(self.tests, ensure_ascii=False)
        if self.answer and not _same_json(self.answer, reference) and not self.solution:
            self.solution = self.answer
        self.answer = reference

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Problem":
        return _from_dict(cls, data)


@dataclass
class Trace:
    """One sampled completion of one problem, with the reasoning split out."""

    problem_id: str
    sample_index: int
    prompt: list[dict[str, str]]
    reasoning: str
    answer_text: str
    finish_reason: str  # stop | length | error
    think_closed: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    answer_tokens: int = 0
    teacher: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    reference: str = ""
    kind: str = "math"
    latency_s: float = 0.0
    error: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.sample_index)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trace":
        return _from_dict(cls, data)


@dataclass
class Verdict:
    """The filter's decision on one trace: ``ok`` or the first reason it was rejected."""

    problem_id: str
    sample_index: int
    ok: bool
    reason: str  # "kept" or a rejection reason
    extracted: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        return _from_dict(cls, data)


def _same_json(a: str, b: str) -> bool:
    """Do two texts hold the same JSON value (a problem read back holds its tests as ``answer`` already)?"""
    if a == b:
        return True
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def to_dict(record: Any) -> dict[str, Any]:
    return asdict(record)


def write_jsonl_atomic(path: Path, records: Iterable[Any]) -> int:
    """Write records to ``path`` via a temp file and rename, so readers never see half a shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            data = record if isinstance(record, dict) else to_dict(record)
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return count


class BadJSONLError(UserError, ValueError):
    """A JSONL file that cannot be read as one JSON object per line; the message names the file and line.

    A UserError, so the CLI prints it as one line and exits 2; still a ValueError, as the json
    module's own error was, for callers that catch that.
    """


def read_jsonl(path: Path, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file.

    A run's own files may end in a torn (unterminated, unparsable) last line after a crash mid-write,
    which is ignored unless ``strict``; a user's file (problems, traces) is read ``strict``, so a bad
    last line is an error rather than a silently lost row.  Any other bad line is a :class:`BadJSONLError`.
    """
    for _, row in read_jsonl_lines(path, strict):
        yield row


def read_jsonl_lines(path: Path, strict: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, so a caller's own errors can name the line too."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            line = _decode_line(path, number, raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                if not strict and not raw.endswith(b"\n"):
                    return  # a torn final line from a crash mid-write
                raise BadJSONLError(f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                                    "fix or remove that line (JSON Lines: one JSON object per line)") from None
            if not isinstance(row, dict):
                raise BadJSONLError(f"{path}: line {number} is a JSON {_json_kind(row)}, not an object; "
                                    "each line must be one JSON object such as {\"problem\": ..., \"answer\": ...}")
            yield number, row


def _decode_line(path: Path, number: int, raw: bytes) -> str:
    """A line as text; a file saved in another encoding (Latin-1, UTF-16) is named with the line to fix."""
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise BadJSONLError(f"{path}: line {number} is not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} "
                            "of the line); save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None


def _json_kind(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


def read_records(paths: Iterable[Path], cls: type[T]) -> list[T]:
    out: list[T] = []
    for path in paths:
        out.extend(cls.from_dict(d) for d in read_jsonl(path))  # type: ignore[attr-defined]
    return out
