"""Publish a distilled student (and its training traces) to the Hugging Face Hub.

Three jobs live here, kept apart so each can be checked on its own:

* **Cards.** :func:`render_model_card` and :func:`render_dataset_card` build the
  README.md files.  The YAML front matter is what the Hub indexes (licence, base
  model, ``model-index`` for the leaderboard widgets), so it is built as data and
  dumped with ``yaml.safe_dump`` rather than templated by hand.  The body states
  what the model is and, just as plainly, what the numbers do *not* show.
* **The upload folder.** :func:`write_upload_folder` writes to disk exactly the
  bytes that would be pushed, so a run can be inspected (or pushed by hand with
  ``hf upload``) before anything leaves the machine.
* **The push.** :func:`push_folder` sends only files whose content differs from
  what the repo already holds, so re-running a finished push is free and makes no
  empty commit; it retries rate limits and server errors, never auth errors, and
  scrubs the token from every message it raises or logs.

This is a core module: it must not import the ``teachers``, ``students`` or
``eval`` packages.  ``huggingface_hub`` and ``pyarrow`` are imported lazily so
that rendering a card needs neither.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, TypeVar

import yaml

from distill.errors import DistillError, StageError, UserError
from distill.http_util import retry_after_seconds, scrub_secret
from distill.store import file_sha256, write_bytes_atomic

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "CardInfo",
    "HubError",
    "license_for_base",
    "render_model_card",
    "render_dataset_card",
    "write_upload_folder",
    "resolve_token",
    "push_folder",
    "scrub",
    "MODEL_FILE_PATTERNS",
    "DATASET_PARQUET_PATH",
]

# Files of a saved ``transformers`` model that belong on the Hub.  Optimizer
# states, training args and checkpoints do not: they are large and useless to
# anyone loading the model.
MODEL_FILE_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)

# One split, one shard: the layout ``datasets`` and the dataset viewer pick up
# without a loading script.
DATASET_PARQUET_PATH = "data/train-00000-of-00001.parquet"

# Local folders never pushed (git metadata, huggingface_hub's upload cache).
_IGNORED_DIRS = {".git", ".cache"}

# Retry-After values above this are clamped, so a misbehaving proxy cannot park a
# run for hours; the push fails after ``max_retries`` instead and can be rerun.
_RETRY_AFTER_CAP_S = 300.0

# Seam for tests: they replace it to record the waits instead of sleeping.
_sleep: Callable[[float], None] = time.sleep


class HubError(StageError):
    """A Hub call failed for good (not retryable, or out of retries).

    The message is already scrubbed of the token and the original exception is
    deliberately not chained, because its text (server message, request echo)
    is exactly what might carry the token.  ``status`` is the HTTP status when
    there was one.
    """

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__("push", message)


# --------------------------------------------------------------------------- #
# Card metadata and licences
# --------------------------------------------------------------------------- #


@dataclass
class CardInfo:
    """Everything a model card says, gathered by the caller from the run's records.

    ``eval_results`` maps a model label (the student, the base, the teacher...)
    to benchmark name to pass@1 as a fraction in 0..1.  The student's row is the
    one whose label equals ``model_name`` or ``repo_id`` or is ``"student"``.
    """

    repo_id: str | None
    model_name: str
    base_model: str
    teacher: str
    license: str
    license_note: str
    training: dict = field(default_factory=dict)
    eval_results: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_protocol: dict = field(default_factory=dict)
    funnel: dict[str, int] = field(default_factory=dict)
    dataset_repo_id: str | None = None
    extra_files: list[str] = field(default_factory=list)


# (pattern on the teacher name, licence id for data made by it, note)
_TEACHER_TERMS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"deepseek[-_ ]?r1", re.I),
        "mit",
        "DeepSeek-R1 outputs are MIT-licensed (DeepSeek-R1's MIT licence allows distillation and commercial use)",
    ),
    (
        re.compile(r"qwq", re.I),
        "apache-2.0",
        "QwQ is released under Apache-2.0, which places no extra terms on its outputs",
    ),
)

_QWEN_OTHER = {
    # size -> (license_name for the card metadata, human name, restriction)
    "3": ("qwen-research", "Qwen Research License", "non-commercial use only"),
    "72": ("qwen", "Qwen License", "services with over 100M monthly active users need a separate licence from Alibaba"),
}


def _teacher_terms(teacher: str) -> tuple[str, str]:
    """The licence id for data generated by ``teacher`` and a note on its terms.

    Why: the traces (and so the student) carry the teacher's output terms on top
    of the base model's licence, and the card must say so.
    """
    for pattern, lic, note in _TEACHER_TERMS:
        if pattern.search(teacher or ""):
            return lic, note
    name = teacher or "the teacher"
    return "other", f"check the terms of use of {name} before publishing models trained on its outputs"


def _qwen25_size(name: str) -> str | None:
    m = re.search(r"(\d+(?:\.\d+)?)b(?![a-z0-9])", name.lower())
    return m.group(1) if m else None


def license_for_base(base_model: str, teacher: str = "DeepSeek-R1") -> tuple[str, str]:
    """Return ``(licence id, note)`` for a student fine-tuned from ``base_model``.

    Why: a fine-tune inherits its base model's licence, and the Hub needs a
    licence id in the card metadata.  The mapping mirrors the DeepSeek-R1-Distill
    releases: Llama bases keep the Llama community licence, most Qwen2.5 sizes
    are Apache-2.0, but Qwen2.5-3B and -72B are under Qwen's own licences.  The
    note always carries the teacher's terms too, because the training data came
    from the teacher.
    """
    name = (base_model or "").lower()
    _, teacher_note = _teacher_terms(teacher)
    if re.search(r"llama[-_ ]?3\.1", name):
        lic = "llama3.1"
        base_note = (
            "The base model is under the Llama 3.1 Community License: redistributions must show "
            "'Built with Llama' and a derived model's name must begin with 'Llama'"
        )
    elif re.search(r"llama[-_ ]?3\.3", name):
        lic = "llama3.3"
        base_note = (
            "The base model is under the Llama 3.3 Community License: redistributions must show "
            "'Built with Llama' and a derived model's name must begin with 'Llama'"
        )
    elif re.search(r"llama[-_ ]?3\.2", name):
        lic = "llama3.2"
        base_note = "The base model is under the Llama 3.2 Community License"
    elif re.search(r"qwen[-_ ]?2\.5", name):
        size = _qwen25_size(name)
        if size in _QWEN_OTHER:
            _, human, restriction = _QWEN_OTHER[size]
            lic = "other"
            base_note = f"Base model under a qwen license: Qwen2.5-{size}B uses the {human} ({restriction}), not Apache-2.0"
        else:
            lic = "apache-2.0"
            base_note = "The Qwen2.5 base model is under Apache-2.0"
    else:
        lic = "other"
        base_note = "Unknown base model: check the base model's licence before publishing"
    return lic, f"{base_note}. Teacher terms: {teacher_note}."


def _license_meta(base_model: str, license_id: str) -> dict[str, str]:
    """``license_name`` / ``license_link`` for ``license: other`` where we know them.

    Why: the Hub shows "other" as an unnamed licence unless these are given.
    """
    if license_id != "other":
        return {}
    name = base_model.lower()
    if re.search(r"qwen[-_ ]?2\.5", name):
        size = _qwen25_size(name)
        if size in _QWEN_OTHER and _looks_like_repo_id(base_model):
            return {
                "license_name": _QWEN_OTHER[size][0],
                "license_link": f"https://huggingface.co/{base_model}/blob/main/LICENSE",
            }
    return {}


# --------------------------------------------------------------------------- #
# Card rendering
# --------------------------------------------------------------------------- #


def _looks_like_repo_id(value: str | None) -> bool:
    """True for ``owner/name`` ids; "toy (random init)" is not one and must not go in ``base_model``."""
    return bool(value) and re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", value or "") is not None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "benchmark"


def _cell(value: Any) -> str:
    """One markdown table cell: no pipes or newlines, compact JSON for structures."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    elif value is None:
        text = "–"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _front_matter(meta: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False) + "---\n"


def _pct(value: float) -> float:
    return round(100.0 * float(value), 2)


def _check_scores(results: dict[str, dict[str, float]]) -> None:
    for label, scores in results.items():
        for bench, value in scores.items():
            if value is None or not isinstance(value, (int, float)) or math.isnan(float(value)):
                raise UserError(f"eval_results[{label!r}][{bench!r}] is not a number: {value!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise UserError(
                    f"eval_results[{label!r}][{bench!r}] = {value!r} is outside 0..1 "
                    "(pass@1 must be a fraction, not a percent)"
                )


def _student_label(info: CardInfo) -> str | None:
    """Which row of ``eval_results`` is the model this card describes."""
    for cand in (info.model_name, info.repo_id, "student"):
        if cand and cand in info.eval_results:
            return cand
    students = [label for label in info.eval_results if "student" in label.lower()]
    if len(students) == 1:
        return students[0]
    if len(info.eval_results) == 1:
        return next(iter(info.eval_results))
    return None


def _benchmarks(results: dict[str, dict[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for scores in results.values():
        for bench in scores:
            seen.setdefault(bench, None)
    return list(seen)


def _n_problems(protocol: dict, bench: str) -> int | None:
    """Problems per benchmark, from ``n_problems`` / ``num_problems`` (an int or a dict per benchmark)."""
    for key in ("n_problems", "num_problems", "problems"):
        value = protocol.get(key)
        if isinstance(value, dict):
            value = value.get(bench)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _trained_examples(info: CardInfo) -> int | None:
    """How many traces the student saw: an explicit training count, else the funnel's last stage."""
    for key in ("train_examples", "num_examples", "n_examples", "train_traces", "examples"):
        value = info.training.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if "kept" in info.funnel:
        return int(info.funnel["kept"])
    if info.funnel:
        return int(list(info.funnel.values())[-1])
    return None


def render_model_card(info: CardInfo) -> str:
    """Render the model repo's README.md.

    Why the front matter looks the way it does: ``license``, ``base_model`` and
    ``datasets`` drive the Hub's licence badge and model tree; ``model-index``
    feeds the evaluation widget, and it carries only the *student's* scores
    because the Hub attributes every entry to this repo.  Other rows (base,
    teacher) appear in the body table for comparison.
    """
    _check_scores(info.eval_results)
    benches = _benchmarks(info.eval_results)
    student = _student_label(info)
    if info.eval_results and student is None:
        logger.warning(
            "model card for %s: no eval_results row is the student (labels: %s); model-index left out",
            info.model_name,
            ", ".join(info.eval_results),
        )

    meta: dict[str, Any] = {"license": info.license}
    meta.update(_license_meta(info.base_model, info.license))
    if _looks_like_repo_id(info.base_model):
        meta["base_model"] = info.base_model
    tags = ["distill", "reasoning", "knowledge-distillation", "chain-of-thought"]
    if any(name.endswith(".gguf") for name in info.extra_files):
        tags.append("gguf")
    meta["tags"] = tags
    if info.dataset_repo_id:
        meta["datasets"] = [info.dataset_repo_id]
    meta["pipeline_tag"] = "text-generation"
    meta["library_name"] = "transformers"
    if student is not None and info.eval_results.get(student):
        meta["model-index"] = [
            {
                "name": info.model_name,
                "results": [
                    {
                        "task": {"type": "text-generation"},
                        "dataset": {"name": bench, "type": _slug(bench)},
                        "metrics": [{"type": "pass@1", "value": _pct(score), "name": "pass@1"}],
                    }
                    for bench, score in info.eval_results[student].items()
                ],
            }
        ]

    out: list[str] = [_front_matter(meta)]
    out.append(f"# {info.model_name}\n")
    out.append(
        f"**{info.model_name}** is a reasoning model distilled from the teacher **{info.teacher}** into "
        f"the base model **{info.base_model}**: the base was fine-tuned on the teacher's step-by-step "
        "reasoning traces, keeping only traces whose final answer a verifier accepted. "
        "It was built with `distill`.\n"
    )

    rows: list[list[Any]] = [["Base model", info.base_model], ["Teacher", info.teacher]]
    if info.dataset_repo_id:
        rows.append(["Training traces", f"[{info.dataset_repo_id}](https://huggingface.co/datasets/{info.dataset_repo_id})"])
    rows.append(["Licence", info.license])
    if info.extra_files:
        rows.append(["Extra files", ", ".join(f"`{name}`" for name in info.extra_files)])
    out.append("## Model\n\n" + _table(["Item", "Value"], rows) + "\n")

    out.append("## Training\n")
    if info.training:
        out.append(_table(["Setting", "Value"], [[k, v] for k, v in info.training.items()]) + "\n")
    else:
        out.append("No training settings were recorded.\n")

    out.append("## Evaluation\n")
    if info.eval_results:
        header = ["Model"] + benches
        table_rows = []
        for label, scores in info.eval_results.items():
            shown = f"**{label}** (this model)" if label == student else label
            table_rows.append([shown] + [f"{_pct(scores[b]):.2f}" if b in scores else "–" for b in benches])
        out.append("pass@1 in percent.\n\n" + _table(header, table_rows) + "\n")
        protocol = info.eval_protocol
        if protocol:
            parts = []
            if "k" in protocol:
                parts.append(f"pass@1 is averaged over k={protocol['k']} samples per problem")
            sampling = [f"{key}={protocol[key]}" for key in ("temperature", "top_p", "max_tokens") if key in protocol]
            if sampling:
                parts.append("sampling with " + ", ".join(sampling))
            if parts:
                out.append("**Protocol.** " + "; ".join(parts) + ".\n")
            out.append(_table(["Setting", "Value"], [[k, v] for k, v in protocol.items()]) + "\n")
    else:
        out.append("No evaluation results were recorded for this model.\n")

    out.append("## Data filter funnel\n")
    if info.funnel:
        first = next(iter(info.funnel.values())) or 0
        funnel_rows = [
            [stage, count, f"{100.0 * count / first:.1f}%" if first else "–"] for stage, count in info.funnel.items()
        ]
        out.append(
            "Teacher traces at each filter stage (the last stage is what the student was trained on).\n\n"
            + _table(["Stage", "Traces", "Share of first stage"], funnel_rows)
            + "\n"
        )
    else:
        out.append("No filter funnel was recorded.\n")

    out.append("## Licence\n")
    lic_text = f"Licence: `{info.license}`."
    link = _license_meta(info.base_model, info.license).get("license_link")
    if link:
        lic_text += f" See the [licence text]({link})."
    out.append(f"{lic_text} {info.license_note}\n")

    out.append("## Limitations\n")
    out.append("\n".join(_limits(info, student, benches)) + "\n")
    return "\n".join(out)


def _limits(info: CardInfo, student: str | None, benches: list[str]) -> list[str]:
    """The honest caveats: data size, evaluation noise, and what the model is not for."""
    lines: list[str] = []
    n_train = _trained_examples(info)
    if n_train is not None:
        lines.append(
            f"- The student was fine-tuned on only {n_train:,} teacher traces; expect it to be far weaker "
            f"than {info.teacher} and to fail on problems unlike its training data."
        )
    else:
        lines.append("- The number of training traces was not recorded.")
    if info.eval_results:
        noted = False
        scores = info.eval_results.get(student or "", {})
        for bench in benches:
            n = _n_problems(info.eval_protocol, bench)
            if n is None:
                continue
            noted = True
            p = float(scores.get(bench, 0.5))
            half = 100.0 * 1.96 * math.sqrt(max(p * (1.0 - p), 1e-12) / n)
            lines.append(
                f"- {bench} has only {n} problems: one problem moves pass@1 by {100.0 / n:.1f} points, "
                f"and the 95% interval on this model's score is roughly ±{half:.1f} points."
            )
        if noted:
            lines.append("- Differences between rows smaller than those intervals are noise, not evidence.")
        else:
            lines.append(
                "- The number of problems per benchmark was not recorded; on small benchmarks (AIME has 30 "
                "problems) a single problem moves pass@1 by several points, so small differences are noise."
            )
        lines.append(
            "- Scores come from this project's own harness and answer checker with the protocol above; they "
            "are not directly comparable with numbers reported elsewhere under other prompts or settings."
        )
    lines.append(
        "- Like its teacher, the model writes long reasoning and can state wrong answers confidently. "
        "Verify its outputs; do not use it for high-stakes decisions."
    )
    return lines


def render_dataset_card(
    name: str,
    teacher: str,
    counts: dict,
    generation: dict,
    schema: dict[str, str],
) -> str:
    """Render the dataset repo's README.md for the published training traces.

    Why: the Hub's viewer and ``load_dataset`` find the parquet shard through the
    ``configs`` metadata, and people deciding whether to reuse the traces need the
    teacher, its terms, how they were generated and filtered, and the columns.
    """
    lic, teacher_note = _teacher_terms(teacher)
    rows = counts.get("rows")
    meta: dict[str, Any] = {
        "license": lic,
        "pretty_name": name,
        "tags": ["distill", "reasoning", "synthetic", "chain-of-thought"],
        "task_categories": ["text-generation"],
    }
    if isinstance(rows, int):
        meta["size_categories"] = [_size_category(rows)]
    meta["configs"] = [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    out = [_front_matter(meta), f"# {name}\n"]
    out.append(
        f"Reasoning traces generated by **{teacher}** and kept only when a verifier accepted the final "
        "answer. They are the supervised fine-tuning data of a student distilled with `distill`.\n"
    )
    out.append("## Counts\n")
    out.append((_table(["What", "Count"], [[k, v] for k, v in counts.items()]) if counts else "Not recorded.") + "\n")
    out.append("## Generation\n")
    out.append(
        (_table(["Setting", "Value"], [[k, v] for k, v in generation.items()]) if generation else "Not recorded.")
        + "\n"
    )
    out.append("## Schema\n")
    out.append((_table(["Column", "Type"], [[k, v] for k, v in schema.items()]) if schema else "Not recorded.") + "\n")
    out.append("## Licence\n")
    out.append(f"Licence: `{lic}`. {teacher_note}.\n")
    out.append("## Limitations\n")
    out.append(
        "- Every trace is model-generated. A verified final answer does not make the reasoning correct: "
        "steps can be wrong, redundant or lucky.\n"
        "- Problems whose answers the verifier cannot check were dropped, so the data leans towards "
        "problems with short, checkable answers.\n"
        "- Check the problem sources for overlap with any benchmark you evaluate on.\n"
    )
    return "\n".join(out)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


# --------------------------------------------------------------------------- #
# The upload folder
# --------------------------------------------------------------------------- #


def _safe_relpath(name: str) -> str:
    """Validate a path inside a repo: relative, posix, no ``..``."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or not p.parts or any(part in ("..", "") for part in p.parts) or name.startswith("/"):
        raise UserError(f"extra file name {name!r} must be a relative path inside the repo")
    return p.as_posix()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, and not at all when the bytes are already there (keeps re-runs cheap and idempotent)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    write_bytes_atomic(path, data)


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and file_sha256(dst) == file_sha256(src):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _model_files(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        raise UserError(f"model folder {model_dir} does not exist")
    found: dict[str, Path] = {}
    for pattern in MODEL_FILE_PATTERNS:
        for path in sorted(model_dir.glob(pattern)):
            if path.is_file():
                found[path.name] = path
    if "config.json" not in found:
        raise UserError(f"model folder {model_dir} has no config.json; is it a saved model?")
    if not any(name.endswith(".safetensors") for name in found):
        raise UserError(f"model folder {model_dir} has no *.safetensors weights")
    return [found[name] for name in sorted(found)]


def _prune(folder: Path, keep: set[str]) -> None:
    """Delete files under ``folder`` that are not in ``keep`` (left by an earlier run), then empty dirs."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() or path.is_symlink():
            if rel not in keep:
                logger.debug("removing stale file %s from the upload folder", path)
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _traces_table(traces: list[dict]):
    """Build an Arrow table column by column.

    Why column by column: nested fields (the chat ``prompt``, ``sampling``) stay
    nested when Arrow can type them, and a column it cannot type (mixed types
    across rows) falls back to JSON strings instead of failing the whole upload.
    """
    import pyarrow as pa

    rows = [dataclasses.asdict(t) if dataclasses.is_dataclass(t) else dict(t) for t in traces]
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, None)
    arrays, names = [], []
    for col in columns:
        values = [row.get(col) for row in rows]
        try:
            arr = pa.array(values)
            if pa.types.is_null(arr.type):
                arr = pa.array(values, type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            arr = pa.array(
                [None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True, default=str) for v in values],
                type=pa.string(),
            )
        arrays.append(arr)
        names.append(col)
    return pa.Table.from_arrays(arrays, names=names)


def _parquet_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_upload_folder(
    dest: Path,
    model_dir: Path | None,
    card: CardInfo,
    traces: list[dict] | None = None,
    extra: dict[str, Path] | None = None,
) -> dict:
    """Write exactly what would be uploaded, under ``dest/model`` and ``dest/dataset``.

    Why a folder on disk: it can be inspected (and diffed) before the push, and
    :func:`push_folder` then sends the folder as-is.  ``dest/model`` and
    ``dest/dataset`` are owned by this function: files in them that the current
    call does not produce are removed, so a re-run never uploads leftovers, and
    files already holding the right bytes are not rewritten (re-running is
    idempotent).

    Returns ``{"model_folder": str, "dataset_folder": str | None, "files": [...]}``
    where ``files`` are posix paths relative to ``dest``, sorted.
    """
    dest = Path(dest)
    model_folder = dest / "model"
    dataset_folder = dest / "dataset"
    extra = dict(extra or {})

    # Validate everything before writing anything.
    sources: dict[str, Path] = {}
    if model_dir is not None:
        for path in _model_files(Path(model_dir)):
            sources[path.name] = path
    for name, src in extra.items():
        rel = _safe_relpath(name)
        if rel == "README.md" or rel in sources:
            raise UserError(f"extra file {name!r} would overwrite a model file")
        src = Path(src)
        if not src.is_file():
            raise UserError(f"extra file {name!r}: {src} does not exist")
        sources[rel] = src

    extra_names = list(dict.fromkeys([*card.extra_files, *(_safe_relpath(n) for n in extra)]))
    info = dataclasses.replace(card, extra_files=extra_names)

    written_model: set[str] = set()
    for rel, src in sources.items():
        _copy_if_changed(src, model_folder / rel)
        written_model.add(rel)
    _write_if_changed(model_folder / "README.md", render_model_card(info).encode("utf-8"))
    written_model.add("README.md")
    _prune(model_folder, written_model)

    written_dataset: set[str] = set()
    if traces is not None:
        table = _traces_table(traces)
        _write_if_changed(dataset_folder / DATASET_PARQUET_PATH, _parquet_bytes(table))
        written_dataset.add(DATASET_PARQUET_PATH)
        counts: dict[str, int] = dict(card.funnel)
        counts["rows"] = table.num_rows
        if "problem_id" in table.column_names:
            counts["problems"] = len(set(table.column("problem_id").to_pylist()))
        generation: dict[str, Any] = {"teacher": card.teacher}
        samplings = [t.get("sampling") for t in traces if isinstance(t, dict) and t.get("sampling")]
        if samplings:
            first = samplings[0]
            if all(s == first for s in samplings):
                generation.update(first)
            else:
                generation["sampling"] = "varies between traces"
        schema = {f.name: str(f.type) for f in table.schema}
        ds_name = card.dataset_repo_id or f"{card.model_name}-traces"
        dataset_card = render_dataset_card(ds_name, card.teacher, counts, generation, schema)
        _write_if_changed(dataset_folder / "README.md", dataset_card.encode("utf-8"))
        written_dataset.add("README.md")
    _prune(dataset_folder, written_dataset)
    if traces is None and dataset_folder.is_dir() and not any(dataset_folder.iterdir()):
        dataset_folder.rmdir()

    files = sorted([f"model/{rel}" for rel in written_model] + [f"dataset/{rel}" for rel in written_dataset])
    logger.info("upload folder %s: %d files", dest, len(files))
    return {
        "model_folder": str(model_folder),
        "dataset_folder": str(dataset_folder) if traces is not None else None,
        "files": files,
    }


# --------------------------------------------------------------------------- #
# Token handling
# --------------------------------------------------------------------------- #

_HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9_\-]{6,}")


def scrub(text: str, token: str | None) -> str:
    """Remove ``token`` (and anything shaped like a Hub token or bearer header) from ``text``.

    Why more than the exact token: a server may echo a different credential, or
    a token may be cut or quoted differently inside an error.
    """
    return _HF_TOKEN_RE.sub("hf_***", scrub_secret(text, token))


def resolve_token(token_env: str = "HF_TOKEN") -> str | None:
    """The Hub token: ``$token_env`` if set and non-empty, else ``huggingface_hub.get_token()``.

    Why a named variable first: CI systems hand over a write token under their
    own name.  The fallback covers ``hf auth login`` and ``HF_TOKEN``.  The token
    is never logged; only where it came from is.
    """
    value = os.environ.get(token_env, "").strip()
    if value:
        logger.debug("Hub token taken from $%s", token_env)
        return value
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception as exc:  # e.g. a failed OIDC exchange
        raise UserError(f"could not read the Hugging Face token: {type(exc).__name__}") from None
    if token:
        logger.debug("Hub token taken from huggingface_hub.get_token()")
        return token
    logger.debug("no Hub token found ($%s unset, not logged in)", token_env)
    return None


# --------------------------------------------------------------------------- #
# Push
# --------------------------------------------------------------------------- #


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors worth retrying, whichever HTTP client huggingface_hub uses."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = importlib.import_module(module)
        except Exception:
            continue
        for attr in ("TransportError", "ConnectionError", "Timeout"):
            cls = getattr(mod, attr, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                types.append(cls)
    return tuple(types)


def _http_failure(exc: BaseException) -> tuple[int | None, float | None]:
    """Find the HTTP status and Retry-After behind ``exc``.

    Why walk the chain: the client wraps some failures (an LFS upload error is
    re-raised as RuntimeError from the HTTP error).
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            headers = getattr(response, "headers", None) or {}
            try:
                retry_after = retry_after_seconds(headers.get("Retry-After"))
            except Exception:
                retry_after = None
            return status, retry_after
        cur = cur.__cause__ or cur.__context__
    return None, None


def _is_transport_error(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, types):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d] for d = base * 2**attempt, capped."""
    delay = min(cap, base * (2**attempt))
    return delay / 2 + random.uniform(0, delay / 2)


def _with_retries(
    what: str,
    fn: Callable[[], T],
    *,
    token: str | None,
    max_retries: int,
    backoff_base: float,
    backoff_max: float,
) -> T:
    """Call ``fn``; retry on HTTP 429, 5xx and connection errors; raise :class:`HubError` otherwise.

    Why these and only these: 429 and 5xx are the server asking us to come back
    later; 400/401/403/404 will not change on retry and retrying auth failures
    only risks a lockout.  The raised error is built outside the ``except``
    block so it carries no chained exception that might hold the token.
    """
    attempt = 0
    delay = 0.0
    while True:
        failure: tuple[str, int | None] | None = None
        try:
            return fn()
        except DistillError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, then re-raised scrubbed
            status, retry_after = _http_failure(exc)
            retryable = status == 429 or (status is not None and 500 <= status <= 599)
            if status is None and _is_transport_error(exc, _transport_errors()):
                retryable = True
            message = scrub(f"{what} failed: {type(exc).__name__}: {exc}", token)
            if not retryable or attempt >= max_retries:
                if retryable:
                    message += f" (gave up after {max_retries} retries)"
                elif status in (401, 403):
                    message += " (check that the token is valid and has write access to this repo)"
                failure = (message, status)
            else:
                if retry_after is not None:
                    delay = min(retry_after, _RETRY_AFTER_CAP_S)
                else:
                    delay = _backoff_delay(attempt, backoff_base, backoff_max)
                logger.warning(
                    "%s: %s; retry %d/%d in %.1fs",
                    what,
                    f"HTTP {status}" if status is not None else scrub(type(exc).__name__, token),
                    attempt + 1,
                    max_retries,
                    delay,
                )
        if failure is not None:
            # Not logged at error level: the caller reports the raised error, once.
            logger.debug("%s", failure[0])
            raise HubError(failure[0], status=failure[1])
        _sleep(delay)
        attempt += 1


def _version() -> str:
    """distill's version for the User-Agent, so Hub-side logs can tell our traffic apart."""
    try:
        from importlib.metadata import version

        return version("distill")
    except Exception:
        return "unknown"


def _local_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in _IGNORED_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.name.startswith(".") and ".tmp-" in path.name:
            continue  # a half-written temp file from an interrupted write_upload_folder
        files[rel.as_posix()] = path
    return files


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256 of the content, git blob sha1): LFS entries compare the first, regular ones the second."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1()
    sha1.update(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _unchanged(remote: Any, path: Path, hashes: tuple[str, str]) -> bool:
    if remote is None or getattr(remote, "size", None) != path.stat().st_size:
        return False
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        return getattr(lfs, "sha256", None) == hashes[0]
    return getattr(remote, "blob_id", None) == hashes[1]


def push_folder(
    folder: Path,
    repo_id: str,
    token: str,
    private: bool = True,
    repo_type: str = "model",
    revision: str | None = None,
    max_retries: int = 5,
    *,
    endpoint: str | None = None,
    commit_message: str | None = None,
    backoff_base: float = 1.0,
    backoff_max: float = 60.0,
) -> dict:
    """Push ``folder`` to ``repo_id``, sending only files whose content changed.

    Steps: create the repo (``exist_ok``; an existing *public* repo is refused
    when ``private`` is asked for), create the branch when ``revision`` is
    not ``main``, list the remote tree and compare each local file's git blob
    sha1 (regular files) or sha256 (LFS files) with it, then one ``create_commit``
    with the changed files.  Nothing changed means no commit at all.  Remote
    files missing locally are left alone (never deleted).

    The endpoint is ``endpoint``, else ``$HF_ENDPOINT`` read *now*:
    ``huggingface_hub.constants.ENDPOINT`` is frozen at import time, which is too
    early for a caller (or a test) that sets the variable later.

    If a commit attempt fails with a retryable error, the diff is recomputed
    before trying again, so a commit that landed but whose answer was lost is not
    made twice.

    Returns ``{"url", "uploaded": [...], "skipped": [...], "commit": sha | None}``.
    Raises :class:`HubError` (token scrubbed) when the Hub refuses or keeps failing.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"upload folder {folder} does not exist")
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    if repo_type not in ("model", "dataset", "space"):
        raise UserError(f"repo_type must be model, dataset or space, not {repo_type!r}")
    local = _local_files(folder)
    if not local:
        raise UserError(f"upload folder {folder} is empty")

    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    api = HfApi(endpoint=endpoint, token=token, library_name="distill", library_version=_version())
    retry = dict(token=token, max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
    branch = revision if revision not in (None, "main") else None

    repo_url = _with_retries(
        f"create repo {repo_id}",
        lambda: api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True),
        **retry,
    )
    # create_repo ignores ``private`` for a repo that already exists: refuse to push
    # into a public repo when a private one was asked for, rather than publish by accident.
    existing = _with_retries(
        f"read repo info of {repo_id}", lambda: api.repo_info(repo_id, repo_type=repo_type), **retry
    )
    if private and getattr(existing, "private", None) is False:
        raise UserError(
            f"{repo_id} already exists and is public, but a private push was asked for; "
            "make the repo private on the Hub or push with private=False"
        )
    if branch is not None:
        _with_retries(
            f"create branch {branch} in {repo_id}",
            lambda: api.create_branch(repo_id, branch=branch, repo_type=repo_type, exist_ok=True),
            **retry,
        )

    hashes = {rel: _hashes(path) for rel, path in local.items()}

    def diff_and_commit() -> tuple[list[str], list[str], str | None]:
        remote = {
            entry.path: entry
            for entry in api.list_repo_tree(repo_id, recursive=True, repo_type=repo_type, revision=revision)
            if hasattr(entry, "blob_id")
        }
        changed = [rel for rel in local if not _unchanged(remote.get(rel), local[rel], hashes[rel])]
        skipped = [rel for rel in local if rel not in changed]
        if not changed:
            return [], skipped, None
        # Fresh operations on every attempt: the client mutates them and refuses to reuse committed ones.
        operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(local[rel])) for rel in changed]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {len(changed)} file(s) with distill",
            repo_type=repo_type,
            revision=revision,
        )
        return changed, skipped, getattr(info, "oid", None)

    uploaded, skipped, commit = _with_retries(f"push {folder} to {repo_id}", diff_and_commit, **retry)
    if commit is None:
        logger.info("push %s: nothing changed, %d files already on %s", repo_id, len(skipped), repo_id)
    else:
        logger.info("push %s: uploaded %d files, skipped %d, commit %s", repo_id, len(uploaded), len(skipped), commit)
    return {"url": str(repo_url), "uploaded": uploaded, "skipped": skipped, "commit": commit}
