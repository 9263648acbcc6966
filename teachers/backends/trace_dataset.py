"""Published teacher traces as a teacher: distil from traces you did not generate.

Reads a Hub dataset, a local folder in the Hub layout, or one JSONL/Parquet file,
and maps each row into our :class:`~distill.records.Problem` and
:class:`~distill.records.Trace` records through the same reasoning capture as
sampled traces (:func:`distill.teachers.reasoning.split_reasoning`), so the filter, the
trainer and the report cannot tell the difference.  Two layouts:

* **openr1** (OpenR1-Math-220k and kin): one row per problem, ``generations`` is
  a list of completions (each opening with ``<think>``), with per-generation
  ``finish_reasons`` and ``correctness_math_verify`` lists when published;
* **single**: one completion per row, ``response`` (or ``generation``), with the
  reasoning inline or in a separate ``reasoning`` column.

Sky-T1 / Bespoke-Stratos markers (``<|begin_of_thought|>`` ...) are rewritten to
``<think>`` first, which is how those datasets relate to raw R1 output.  When a
row does not say why a generation ended, an unclosed think block is recorded as
``length`` (the usual cause) and a closed one as ``stop``.  Token counts are
exact with ``teacher.dataset.tokenizer``, estimated otherwise.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from distill.errors import UserError
from distill.input_checks import DATA_SUFFIXES, looks_like_local_path
from distill.problems import build_prompt
from distill.records import Problem, Trace, read_jsonl
from distill.shards import ShardStore
from distill.teachers.reasoning import split_reasoning
from distill.teachers.service import pending_chunks

log = logging.getLogger(__name__)

# our field -> the column names published datasets use for it, in order of preference
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("uuid", "id", "problem_id"),
    "problem": ("problem", "question", "prompt"),
    "answer": ("answer", "reference_answer", "gt", "ground_truth"),
    "solution": ("solution",),
    "generations": ("generations",),
    "response": ("response", "generation", "completion", "output"),
    "reasoning": ("reasoning", "reasoning_content"),
    "finish_reasons": ("finish_reasons", "finish_reason"),
    "correct": ("correctness_math_verify", "correct"),
    "source": ("source",),
    "model": ("model",),
}
FIELDS = tuple(DEFAULT_COLUMNS)
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
MARKERS = {"<|begin_of_thought|>": "<think>", "<|end_of_thought|>": "</think>", "<|begin_of_solution|>": "",
           "<|end_of_solution|>": ""}


def load_rows(path: str, name: str | None = None, split: str = "train", limit: int | None = None) -> list[dict]:
    """Rows of a JSONL/Parquet file, a local folder (Hub layout) or a Hub dataset id."""
    local = Path(path).expanduser()
    if local.is_file():
        rows = _read_file(local)
    elif local.is_dir():
        rows = _read_with_datasets(str(local), name, split)
    elif HUB_ID.fullmatch(path) and not looks_like_local_path(path) and not path.endswith(DATA_SUFFIXES):
        rows = _read_with_datasets(path, name, split)
    else:
        raise UserError(f"teacher.dataset.path: no such file or folder: {path}")
    return rows[:limit] if limit else rows


def _read_file(path: Path) -> list[dict]:
    suffix = path.suffix
    if suffix in (".jsonl", ".json"):
        return list(read_jsonl(path, strict=True))  # a bad line names the file and line; none is dropped
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"teacher.dataset.path: {path}: not a readable Parquet file ({exc}); check the file "
                            "or convert it again") from None
    raise UserError(f"teacher.dataset.path: {path.name}: expected a .jsonl or .parquet file")


def _read_with_datasets(path: str, name: str | None, split: str) -> list[dict]:
    try:
        from datasets import load_dataset

        return load_dataset(path, name, split=split).to_list()
    except Exception as exc:  # missing files, bad splits, and the Hub client's own types (offline, gated, missing)
        raise UserError(f"teacher.dataset: cannot load {path!r} (split {split!r}): {type(exc).__name__}: {exc}") \
            from None


def resolve_columns(columns: Sequence[str], overrides: dict[str, str]) -> dict[str, str]:
    """Our field -> the row's column, from the overrides first, then the usual names."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise UserError(f"teacher.dataset.columns: unknown field(s) {unknown}; fields are {', '.join(FIELDS)}")
    present = set(columns)
    mapping: dict[str, str] = {}
    for field, names in DEFAULT_COLUMNS.items():
        if field in overrides:
            if overrides[field] not in present:
                raise UserError(f"teacher.dataset.columns.{field}: no column {overrides[field]!r} "
                                f"(columns: {', '.join(sorted(present))})")
            mapping[field] = overrides[field]
            continue
        found = next((n for n in names if n in present), None)
        if found:
            mapping[field] = found
    if "problem" not in mapping:
        raise UserError(f"teacher.dataset: no problem column (columns: {', '.join(sorted(present))}); "
                        "set teacher.dataset.columns.problem")
    if "generations" not in mapping and "response" not in mapping:
        raise UserError("teacher.dataset: no generations or response column; set teacher.dataset.columns")
    return mapping


def to_records(rows: Sequence[dict], columns: dict[str, str] | None = None, layout: str = "auto",
               label: str = "dataset", count_tokens: Callable[[str], int] | None = None
               ) -> tuple[list[Problem], dict[str, list[Trace]]]:
    """Problems in first-seen order, and their traces (sample indices 0..k-1 per problem)."""
    if not rows:
        raise UserError(f"teacher.dataset: {label} has no rows")
    cols = resolve_columns(list(rows[0]), columns or {})
    if layout == "auto":
        layout = "openr1" if "generations" in cols else "single"
    if layout == "openr1" and "generations" not in cols:
        raise UserError("teacher.dataset.layout 'openr1' needs a generations column")
    count = count_tokens or _estimate
    problems: dict[str, Problem] = {}
    traces: dict[str, list[Trace]] = {}
    by_text: dict[str, str] = {}
    for i, row in enumerate(rows):
        problem = _problem(row, cols, i, label)
        pid = by_text.get(problem.problem) if layout == "single" else None
        if pid is None:  # the single layout repeats a problem once per response: group them
            pid = problem.id if problem.id not in problems else f"{problem.id}-{i}"
            problem.id = pid
            problems[pid] = problem
            traces[pid] = []
            by_text.setdefault(problem.problem, pid)
        for text, reasoning, finish, correct in _generations(row, cols, layout):
            traces[pid].append(_trace(problems[pid], len(traces[pid]), text, reasoning, finish, correct,
                                      _text(row.get(cols.get("model", ""), "")) or label, label, count))
    return list(problems.values()), traces


def _problem(row: dict, cols: dict[str, str], index: int, label: str) -> Problem:
    if cols["problem"] not in row:  # columns are resolved from the first row; a later one may lack them
        raise UserError(f"teacher.dataset: {label}: row {index + 1} has no {cols['problem']!r} column; give every "
                        "row the problem column")
    pid = _text(row.get(cols["id"])) if "id" in cols else ""
    return Problem(id=pid or f"{Path(label).stem or 'row'}-{index:06d}", problem=_text(row[cols["problem"]]),
                   answer=_text(row.get(cols.get("answer", ""), "")), kind="math",
                   source=_text(row.get(cols.get("source", ""), "")) or label,
                   solution=_text(row.get(cols.get("solution", ""), "")))


def _generations(row: dict, cols: dict[str, str], layout: str) -> Iterable[tuple[str, str | None, str | None, Any]]:
    """(text, separate reasoning, published finish reason, published correctness) per generation."""
    if layout == "openr1":
        texts = list(row.get(cols["generations"]) or [])
        finishes = _as_list(row.get(cols.get("finish_reasons", "")), len(texts))
        correct = _as_list(row.get(cols.get("correct", "")), len(texts))
        for text, finish, ok in zip(texts, finishes, correct):
            yield _text(text), None, finish, ok
        return
    reasoning = row.get(cols["reasoning"]) if "reasoning" in cols else None
    yield (_text(row.get(cols["response"])), _text(reasoning) if reasoning else None,
           row.get(cols["finish_reasons"]) if "finish_reasons" in cols else None,
           row.get(cols["correct"]) if "correct" in cols else None)


def _trace(problem: Problem, index: int, text: str, reasoning: str | None, finish: Any, correct: Any,
           teacher: str, label: str, count: Callable[[str], int]) -> Trace:
    for marker, replacement in MARKERS.items():
        text = text.replace(marker, replacement)
    split = split_reasoning(text, reasoning)
    finish_reason = str(finish) if finish in ("stop", "length") else ("stop" if split.think_closed else "length")
    reasoning_tokens = count(split.reasoning) if split.reasoning else 0
    answer_tokens = count(split.answer) if split.answer else 0
    prompt = build_prompt(problem)
    sampling: dict[str, Any] = {"dataset": label}
    if correct is not None:
        sampling["published_correct"] = bool(correct)
    return Trace(problem_id=problem.id, sample_index=index, prompt=prompt, reasoning=split.reasoning,
                 answer_text=split.answer, finish_reason=finish_reason, think_closed=split.think_closed,
                 prompt_tokens=count(prompt[-1]["content"]), completion_tokens=reasoning_tokens + answer_tokens,
                 reasoning_tokens=reasoning_tokens, answer_tokens=answer_tokens, teacher=teacher,
                 sampling=sampling, reference=problem.answer, kind=problem.kind)


def _as_list(value: Any, length: int) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value) + [None] * (length - len(value))
    return [value] * length


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _estimate(text: str) -> int:
    from distill.teachers.backends.openai_wire import estimate_tokens

    return estimate_tokens(text)


def load_trace_dataset(options: dict[str, Any], limit: int | None = None) -> tuple[list[Problem], dict[str, list[Trace]]]:
    """The run's problems and traces from ``teacher.dataset`` options (see TraceDatasetOptions)."""
    path = options["path"]
    rows = load_rows(path, options.get("name"), options.get("split", "train"), options.get("limit") or limit)
    count = None
    if options.get("tokenizer"):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(options["tokenizer"])
        count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    problems, traces = to_records(rows, options.get("columns") or {}, options.get("layout", "auto"), path, count)
    log.info("trace dataset %s: %d problems, %d traces", path, len(problems), sum(map(len, traces.values())))
    return problems, traces


def commit_dataset_chunks(traces: dict[str, list[Trace]], problems: Sequence[Problem], store: ShardStore,
                          shard_size: int, select: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Commit the dataset's traces in the same chunks as sampling would, so resume and the filter work alike."""
    chunks, todo, done = pending_chunks(problems, store, shard_size, select)
    for index in todo:
        store.commit(index, [t for p in chunks[index] for t in traces[p.id]])
    return {"shards": len(chunks), "resumed_shards": len(done), "sampled_shards": len(todo),
            "traces": sum(len(traces[p.id]) for p in problems), "teacher": "dataset"}
