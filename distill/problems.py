"""Problem sources: a procedural arithmetic generator and JSONL files.

The generator writes worked solutions in a fixed column-addition style.  They
are what the embedded toy teacher is trained on, so the quickstart has a
teacher whose reasoning is real (every step checkable) and whose answers are
verifiable by the same math verifier a real run uses.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from distill.errors import UserError
from distill.records import Problem, read_jsonl_lines

if TYPE_CHECKING:
    from distill.config import ProblemsConfig, RunConfig

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "Please reason step by step, and put the letter of your final answer within \\boxed{}."
# The code verifier reads the last fenced ```python block (distill.filter.code_tests.extract_code), so a code
# problem asks for exactly that; a boxed answer would contradict the problem's own code-block instruction.
CODE_INSTRUCTION = "Please reason step by step, then give your complete solution as a single Python code block."
# A general (writing, factual QA, translation) prompt is sent as it is: there is no answer format to ask for.
_INSTRUCTIONS = {"multiple_choice": CHOICE_INSTRUCTION, "code": CODE_INSTRUCTION, "general": ""}


def build_prompt(problem: Problem) -> list[dict[str, str]]:
    """The chat prompt for a problem, following DeepSeek's advice for R1: no system prompt,
    the instruction after the problem; math and multiple-choice answers in ``\\boxed{}``, code in a
    fenced python block; a general prompt goes as written."""
    instruction = _INSTRUCTIONS.get(problem.kind, MATH_INSTRUCTION)
    content = f"{problem.problem} {instruction}" if instruction else problem.problem
    return [{"role": "user", "content": content}]


def addition_solution(a: int, b: int, slip_column: int | None = None, slip: int = 1) -> tuple[str, str]:
    """Column addition, least significant digit first, one line per column; returns (solution, result).

    ``slip_column`` makes that column's sum off by ``slip`` -- the kind of arithmetic slip a
    real teacher makes -- and the rest of the solution follows from it consistently, so
    only a verifier that checks the final answer catches it.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    lines = [f"{a} + {b}"]
    carry = 0
    written = []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        total = x + y + carry
        if i == slip_column:
            total = total + slip if total + slip >= 0 else total + 1
        lines.append(f"{x}+{y}+{carry}={total} carry {total // 10}")
        written.append(str(total % 10))
        carry = total // 10
    if carry:
        lines.append(f"write {carry}")
        written.append(str(carry))
    result = "".join(reversed(written)).lstrip("0") or "0"
    lines.append(f"so the answer is {result}")
    return "\n".join(lines), result


def final_answer_text(answer: str) -> str:
    return f"The answer is \\boxed{{{answer}}}."


def generate_arithmetic(count: int, seed: int, min_digits: int, max_digits: int, id_prefix: str) -> list[Problem]:
    """``count`` distinct addition problems; operand lengths are uniform in [min_digits, max_digits]."""
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    problems: list[Problem] = []
    capacity = sum(10 if d == 1 else 9 * 10 ** (d - 1) for d in range(min_digits, max_digits + 1)) ** 2
    if count > capacity // 2:
        raise UserError(f"problems: cannot draw {count} distinct problems with {min_digits}-{max_digits} digits")
    while len(problems) < count:
        a = _draw(rng, min_digits, max_digits)
        b = _draw(rng, min_digits, max_digits)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        problems.append(
            Problem(
                id=f"{id_prefix}-{len(problems):05d}",
                problem=f"What is {a} + {b}?",
                answer=str(a + b),
                source="arithmetic",
                solution=addition_solution(a, b)[0],
            )
        )
    return problems


def _draw(rng: random.Random, min_digits: int, max_digits: int) -> int:
    digits = rng.randint(min_digits, max_digits)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def split_train_heldout(problems: list[Problem], heldout: int) -> tuple[list[Problem], list[Problem]]:
    return problems[heldout:], problems[:heldout]


def load_jsonl_problems(path: Path, limit: int | None = None, kind: str = "math") -> list[Problem]:
    """Read problems in the uniform schema (``id``, ``problem``, ``answer``, ...).

    Every fault is a :class:`UserError` naming the file and line: a line that is not JSON, not UTF-8
    or not an object, a missing field, and an id seen before (traces, verdicts and the eval are keyed
    by problem id, so a repeated id would silently merge two problems' samples).
    """
    if not path.is_file():
        raise UserError(f"problems file not found: {path}")
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for i, (number, row) in enumerate(read_jsonl_lines(path, strict=True)):
        if limit is not None and len(problems) >= limit:
            break
        problem = _problem_from_row(row, path, i, number, kind)
        if problem.id in first_line:
            raise UserError(f"{path}: line {number} repeats problem id {problem.id!r} (first on line "
                            f"{first_line[problem.id]}); give every problem its own id")
        first_line[problem.id] = number
        problems.append(problem)
    return problems


def _problem_from_row(row: dict, path: Path, index: int, number: int, kind: str) -> Problem:
    row_kind = str(row.get("kind", kind))
    # A code problem may carry its tests instead of an answer (the tests become its reference).
    needed = ("problem",) if row_kind == "code" and row.get("tests") is not None else ("problem", "answer")
    missing = [k for k in needed if k not in row]
    if missing:
        raise UserError(f"{path}: line {number} lacks field(s) {', '.join(missing)}")
    return Problem(
        id=str(row.get("id", f"{path.stem}-{index}")),
        problem=str(row["problem"]),
        answer=str(row.get("answer", "") or ""),
        kind=row_kind,
        source=str(row.get("source", path.stem)),
        solution=str(row.get("solution", "") or ""),
        tests=row.get("tests"),
    )


def problem_sets(config: "RunConfig") -> tuple[list[Problem], list[Problem]]:
    """(train, held-out), disjoint; the generator draws them from one pool of distinct problems."""
    p = config.problems
    if p.source == "arithmetic":
        pool = generate_arithmetic(p.train_size + p.heldout_size, p.seed, p.min_digits, p.max_digits, "arith")
        heldout, train = pool[: p.heldout_size], pool[p.heldout_size :]
        for i, prob in enumerate(heldout):
            prob.id = f"heldout-{i:05d}"
        for i, prob in enumerate(train):
            prob.id = f"train-{i:05d}"
    else:
        assert p.train_path is not None and p.heldout_path is not None
        train = load_jsonl_problems(p.train_path, limit=p.train_size)
        heldout = load_jsonl_problems(p.heldout_path, limit=p.heldout_size)
        held_texts = {h.problem.strip() for h in heldout}
        train = [t for t in train if t.problem.strip() not in held_texts]
    if not train:
        raise UserError("problems: the training problem set is empty")
    if not heldout:
        raise UserError("problems: the held-out problem set is empty")
    return train, heldout


def heldout_name(problems: "ProblemsConfig") -> str:
    """The name the run's held-out set goes by (decontamination matches, eval benchmark): ``heldout`` for
    generated arithmetic, else the held-out file's stem."""
    return "heldout" if problems.source == "arithmetic" else problems.heldout_path.stem
