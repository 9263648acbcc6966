"""A registry of versioned evaluation benchmarks, loadable from local files or Hub datasets.

Why a registry: a number is only comparable with another (or with DeepSeek's
published table) when the problems, the answer normalisation and the prompt are
the same.  Each :class:`Benchmark` pins them under a ``version`` that goes into
every results file; bump it when a loader changes what a model is asked or what
counts as the reference answer.

Two sources per benchmark, both yielding :class:`distill.records.Problem`:

* a local JSONL file in the uniform schema (``id``, ``problem``, ``answer`` ...)
  as in ``shared/data/eval`` -- fully offline;
* a Hub dataset, read at run time with ``datasets.load_dataset(path, name,
  split=..., revision=...)`` and converted row by row from that dataset's own
  column layout.  GPQA-Diamond is gated and is only ever read this way: its
  questions must never be written into this project.

Multiple-choice items (GPQA) get their options shuffled with a fixed seed per
item, so the letter of the right answer is spread over A-D and reproducible.
Code items (LiveCodeBench) carry their tests as JSON in ``Problem.answer``; the
verifier's ``code`` kind runs them in the sandbox.  The converters from each dataset's own
row layout live in :mod:`distill.eval.benchmark_rows`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from distill.errors import UserError
from distill.eval.benchmark_rows import (  # noqa: F401 - re-exported: callers import them from here
    BAD_ROW_ERRORS, LETTERS, Row, aime2024_row, aime2025_row, amc23_row, code_answer, code_prompt,
    decode_lcb_tests, gpqa_row, gsm8k_final_answer, gsm8k_row, integer_string, lcb_row, math500_row,
    multiple_choice_text, shuffle_choices)
from distill.records import Problem, read_jsonl
from distill.store import file_sha256

log = logging.getLogger(__name__)

RowConverter = Callable[[Row, int, "Benchmark", int], Problem]


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the Hugging Face Hub and how ``load_dataset`` is called for it.

    ``data_files`` (relative to the repo) switches to the generic ``json`` builder
    over ``hf://`` paths, for repos whose loading script ``datasets`` no longer runs
    (LiveCodeBench).
    """

    path: str
    split: str
    name: Optional[str] = None
    revision: Optional[str] = None
    data_files: tuple[str, ...] = ()
    gated: bool = False
    # A column of ISO dates ("2024-08-01T00:00:00"): the benchmark is the rows dated inside a window.
    date_column: Optional[str] = None
    default_window: Optional[str] = None  # "first..last", both days included


# DeepSeek-R1's LiveCodeBench numbers (R1 and R1-Distill tables) are over the problems dated
# 2024-08-01 .. 2025-01-31; a number over another window is not comparable with theirs.
DEEPSEEK_LCB_WINDOW = "2024-08-01..2025-01-31"
# code_generation_lite's release files: test.jsonl holds release v1, each testN.jsonl the problems
# release vN added; together they are every problem of release v6.
LCB_RELEASE_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
_WINDOW = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


def parse_window(window: str) -> tuple[str, str]:
    """``"2024-08-01..2025-01-31"`` -> ``("2024-08-01", "2025-01-31")``; a bad window is a UserError."""
    m = _WINDOW.match(window.strip())
    if not m or m.group(1) > m.group(2):
        raise UserError(f"date window {window!r} must read FIRST..LAST with ISO days, e.g. {DEEPSEEK_LCB_WINDOW}")
    return m.group(1), m.group(2)


@dataclass(frozen=True)
class Benchmark:
    name: str
    version: str
    kind: str  # math | multiple_choice | code
    display: str  # the name DeepSeek's table uses (report.canonical_benchmark matches it)
    hub: Optional[HubSource]
    local_file: Optional[str]  # file name in the eval data folder (uniform schema)
    hub_row: Optional[RowConverter] = None  # converts a row of the Hub layout; None without a Hub source
    default_k: int = 4  # CPU-friendly default; DeepSeek's k is in ``protocol_k``
    # The R1-Distill model cards: "generate 64 responses per query to estimate pass@1" (the paper
    # says k = 4-64 by test-set size without a per-benchmark table), so ``k: deepseek`` is 64.
    protocol_k: int = 64
    description: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


# --------------------------------------------------------------------------- the registry

REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("aime2024", "1", "math", "AIME 2024", HubSource("HuggingFaceH4/aime_2024", "train"),
                  "aime2024.jsonl", aime2024_row, default_k=4,
                  description="30 problems of AIME 2024 I and II; integer answers"),
        Benchmark("aime2025", "1", "math", "AIME 2025", HubSource("MathArena/aime_2025", "train"),
                  "aime2025.jsonl", aime2025_row, default_k=4,
                  description="30 problems of AIME 2025 I and II; integer answers"),
        Benchmark("math500", "1", "math", "MATH-500", HubSource("HuggingFaceH4/MATH-500", "test"),
                  "math500.jsonl", math500_row, default_k=1,
                  description="OpenAI's PRM800K 500-problem MATH test subset; LaTeX answers"),
        Benchmark("gsm8k", "1", "math", "GSM8K", HubSource("openai/gsm8k", "test", name="main"),
                  "gsm8k_test.jsonl", gsm8k_row, default_k=1,
                  description="GSM8K test, 1319 problems; numeric answers"),
        Benchmark("amc23", "1", "math", "AMC23", HubSource("math-ai/amc23", "test"),
                  "amc23.jsonl", amc23_row, default_k=4,
                  description="the 40 AMC 2023 problems of Qwen2.5-Math's eval; numeric answers"),
        Benchmark("gpqa_diamond", "1", "multiple_choice", "GPQA Diamond",
                  HubSource("Idavidrein/gpqa", "train", name="gpqa_diamond", gated=True),
                  None, gpqa_row, default_k=1,
                  description="198 graduate-level multiple-choice questions (gated; read at run time only)"),
        Benchmark("livecodebench", "2", "code", "LiveCodeBench",
                  HubSource("livecodebench/code_generation_lite", "train", data_files=LCB_RELEASE_FILES,
                            date_column="contest_date", default_window=DEEPSEEK_LCB_WINDOW),
                  None, lcb_row, default_k=1,
                  description="LiveCodeBench code generation: the problems of every release file (test.jsonl .. "
                              "test6.jsonl) whose contest_date is in the window (default "
                              f"{DEEPSEEK_LCB_WINDOW}, DeepSeek-R1's); scored by running tests"),
    )
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown benchmark {name!r}; registered: {', '.join(REGISTRY)}") from None


@dataclass
class LoadedBenchmark:
    """Problems plus what is needed to say exactly which problems they were."""

    name: str
    version: str
    kind: str
    display: str
    problems: list[Problem]
    source: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "display": self.display,
                "problems": len(self.problems), **self.source}


@functools.lru_cache(maxsize=8)
def _local_code_benchmark(source: str) -> Benchmark:
    """What ``lcb_row`` reads (kind, display) for a local file in the LiveCodeBench layout: built once per
    source, not once per row."""
    return Benchmark(source, "local", "code", source, None, None)


def uniform_row(row: Row, index: int, kind: str, source: str, path: Path) -> Problem:
    """A row of the uniform JSONL schema (shared/data/eval) as a Problem."""
    if "question_content" in row:  # a LiveCodeBench-layout row in a local file
        return lcb_row(row, index, _local_code_benchmark(source), 0)
    missing = [k for k in ("problem", "answer") if k not in row]
    if missing:
        raise UserError(f"{path}: line {index + 1} lacks field(s) {', '.join(missing)}")
    answer = row["answer"]
    if kind == "code" and not isinstance(answer, str):
        answer = json.dumps(answer, ensure_ascii=False)
    return Problem(id=str(row.get("id", f"{path.stem}-{index}")), problem=str(row["problem"]),
                   answer=integer_string(answer) if kind == "math" else str(answer),
                   kind=str(row.get("kind", kind)), source=str(row.get("source", source)),
                   solution=str(row.get("solution", "") or ""))


def load_local(bench: Benchmark, path: Path, limit: int | None = None) -> LoadedBenchmark:
    """Read a benchmark from a JSONL file in the uniform schema."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"benchmark {bench.name}: file not found: {path}")
    problems = []
    for i, row in enumerate(read_jsonl(path, strict=True)):
        try:
            problems.append(uniform_row(row, i, bench.kind, bench.display, path))
        except BAD_ROW_ERRORS as exc:
            raise UserError(f"{path}: line {i + 1} is not in the expected layout: {type(exc).__name__}: {exc}") \
                from None
    problems = problems[:limit] if limit else problems
    return LoadedBenchmark(bench.name, bench.version, bench.kind, bench.display, problems,
                           {"source": "local", "path": str(path), "sha256": file_sha256(path)})


def load_hub(bench: Benchmark, limit: int | None = None, seed: int = 0, path: str | None = None,
             revision: str | None = None, window: str | None = None) -> LoadedBenchmark:
    """Read a benchmark with ``datasets.load_dataset`` and convert each row from the Hub layout.

    ``path`` replaces the Hub repo id (a local folder in the Hub layout loads
    through the same call); ``revision`` overrides the registry's pin; ``window``
    (``FIRST..LAST``) overrides the date window of a dated benchmark (LiveCodeBench).
    """
    if bench.hub is None or bench.hub_row is None:
        raise UserError(f"benchmark {bench.name} has no Hub source")
    hub = bench.hub
    if window is not None and hub.date_column is None:
        raise UserError(f"benchmark {bench.name} has no dates; a date window applies to livecodebench only")
    window = window or hub.default_window
    first, last = parse_window(window) if window else (None, None)
    import datasets

    repo = path or hub.path
    rev = revision if revision is not None else hub.revision
    try:
        if hub.data_files:  # the json builder reads the same files from the Hub or a local copy
            base = path if path is not None else f"hf://datasets/{repo}" + (f"@{rev}" if rev else "")
            ds = datasets.load_dataset("json", data_files=[f"{base}/{f}" for f in hub.data_files], split=hub.split)
        else:
            ds = datasets.load_dataset(repo, hub.name, split=hub.split, revision=rev)
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: one clear line for the user
        hint = " (gated: accept its terms on the Hub and log in with `hf auth login`)" if hub.gated else ""
        raise UserError(f"benchmark {bench.name}: cannot load Hub dataset {repo!r}{hint}: "
                        f"{type(exc).__name__}: {exc}") from None
    problems = []
    for i, row in enumerate(ds):
        if limit and len(problems) >= limit:
            break
        if first is not None:
            day = str(row.get(hub.date_column) or "")[:10]
            if not day:
                raise UserError(f"benchmark {bench.name}: row {i} of {repo!r} has no {hub.date_column}")
            if not first <= day <= last:
                continue
        try:
            problems.append(bench.hub_row(row, i, bench, seed))
        except BAD_ROW_ERRORS as exc:
            raise UserError(f"benchmark {bench.name}: row {i} of {repo!r} is not in the expected layout: "
                            f"{type(exc).__name__}: {exc}") from None
    source = {"source": "hub", "path": repo, "config": hub.name, "split": hub.split, "revision": rev,
              "fingerprint": getattr(ds, "_fingerprint", None)}
    if bench.kind == "multiple_choice":
        source["shuffle_seed"] = seed
    if window:
        source["window"] = f"{first}..{last}"  # eval/table.py shows DeepSeek's number only for their window
        source["data_files"] = list(hub.data_files)
    return LoadedBenchmark(bench.name, bench.version, bench.kind, bench.display, problems, source)


def load_benchmark(name: str, *, source: str = "auto", data_dir: Path | None = None, file: Path | None = None,
                   kind: str = "math", limit: int | None = None, seed: int = 0, hub_path: str | None = None,
                   revision: str | None = None, window: str | None = None) -> LoadedBenchmark:
    """Load a registered benchmark (or a user's JSONL ``file``) as problems.

    ``source``: ``local`` reads ``data_dir/<local_file>``; ``hub`` calls
    ``load_dataset``; ``auto`` prefers the local file when it exists.  A name
    that is not registered needs ``file`` (a user benchmark in the uniform schema).
    """
    if window is not None and (file is not None or source == "local"):
        raise UserError(f"benchmark {name}: a date window applies to the Hub copy of livecodebench only")
    if file is not None:
        bench = REGISTRY.get(name) or Benchmark(name, "user", kind, name, None, Path(file).name)
        loaded = load_local(bench, Path(file), limit)
        if name not in REGISTRY:
            loaded.source["user_file"] = True
        return loaded
    bench = get_benchmark(name)
    local = Path(data_dir) / bench.local_file if (data_dir is not None and bench.local_file) else None
    if source == "local" or (source == "auto" and local is not None and local.is_file()):
        if local is None:
            raise UserError(f"benchmark {name}: no local file (set eval.data_dir; GPQA/LiveCodeBench load from the Hub)")
        return load_local(bench, local, limit)
    if source not in ("auto", "hub"):
        raise UserError(f"benchmark {name}: source must be auto, local or hub, not {source!r}")
    return load_hub(bench, limit, seed, hub_path, revision, window)

