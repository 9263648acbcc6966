"""The upload folder: exactly the bytes a push would send, written to disk first.

:func:`write_upload_folder` fills ``dest/model`` (the model's files, the extra
files such as GGUF exports, and the model card) and ``dest/dataset`` (the
training traces as one parquet shard, and the dataset card).  A folder on disk
can be inspected, diffed or pushed by hand with ``hf upload`` before anything
leaves the machine; :func:`distill.publish.hub.push_folder` then sends it as-is.

``pyarrow`` is imported only when traces are written.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from distill.errors import UserError
from distill.publish.card import CardInfo, render_model_card
from distill.publish.dataset_card import render_dataset_card
from distill.store import copy_file_atomic, file_sha256, write_bytes_atomic

logger = logging.getLogger(__name__)

__all__ = ["MODEL_FILE_PATTERNS", "DATASET_PARQUET_PATH", "write_upload_folder"]

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


# --------------------------------------------------------------------------- #
# Files on disk
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
    """Copy atomically, and not at all when ``dst`` already holds the same content."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and file_sha256(dst) == file_sha256(src):
        return
    copy_file_atomic(src, dst)


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


# --------------------------------------------------------------------------- #
# The model folder
# --------------------------------------------------------------------------- #


def _model_files(model_dir: Path) -> list[Path]:
    """The files of a saved model that belong on the Hub; refuses a folder that is not a saved model."""
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


def _model_sources(model_dir: Path | None, extra: dict[str, Path]) -> dict[str, Path]:
    """Repo path -> local file for the model repo, all validated before anything is written."""
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
    return sources


def _write_model_folder(folder: Path, sources: dict[str, Path], info: CardInfo) -> set[str]:
    """Copy the model files, write the model card, drop leftovers; return the repo paths written."""
    written: set[str] = set()
    for rel, src in sources.items():
        _copy_if_changed(src, folder / rel)
        written.add(rel)
    _write_if_changed(folder / "README.md", render_model_card(info).encode("utf-8"))
    written.add("README.md")
    _prune(folder, written)
    return written


# --------------------------------------------------------------------------- #
# The dataset folder
# --------------------------------------------------------------------------- #


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


def _dataset_counts(card: CardInfo, table) -> dict[str, int]:
    """The dataset card's counts: the filter funnel, then the rows (and distinct problems) published."""
    counts: dict[str, int] = dict(card.funnel)
    counts["rows"] = table.num_rows
    if "problem_id" in table.column_names:
        counts["problems"] = len(set(table.column("problem_id").to_pylist()))
    return counts


def _generation_settings(teacher: str, traces: list[dict]) -> dict[str, Any]:
    """The teacher and its sampling settings, when every trace that records them used the same ones."""
    generation: dict[str, Any] = {"teacher": teacher}
    samplings = [t.get("sampling") for t in traces if isinstance(t, dict) and t.get("sampling")]
    if samplings:
        first = samplings[0]
        if all(s == first for s in samplings):
            generation.update(first)
        else:
            generation["sampling"] = "varies between traces"
    return generation


def _write_dataset_folder(folder: Path, card: CardInfo, traces: list[dict]) -> set[str]:
    """Write the traces' parquet shard and the dataset card; return the repo paths written."""
    table = _traces_table(traces)
    _write_if_changed(folder / DATASET_PARQUET_PATH, _parquet_bytes(table))
    schema = {f.name: str(f.type) for f in table.schema}
    ds_name = card.dataset_repo_id or f"{card.model_name}-traces"
    source = card.source
    dataset_card = render_dataset_card(
        ds_name, source, _dataset_counts(card, table), _generation_settings(source.label, traces), schema
    )
    _write_if_changed(folder / "README.md", dataset_card.encode("utf-8"))
    return {DATASET_PARQUET_PATH, "README.md"}


# --------------------------------------------------------------------------- #
# The whole upload folder
# --------------------------------------------------------------------------- #


def write_upload_folder(
    dest: Path,
    model_dir: Path | None,
    card: CardInfo,
    traces: list[dict] | None = None,
    extra: dict[str, Path] | None = None,
) -> dict:
    """Write exactly what would be uploaded, under ``dest/model`` and ``dest/dataset``.

    Why a folder on disk: it can be inspected (and diffed) before the push, and
    :func:`~distill.publish.hub.push_folder` then sends the folder as-is.
    ``dest/model`` and ``dest/dataset`` are owned by this function: files in them
    that the current call does not produce are removed, so a re-run never uploads
    leftovers, and files already holding the right bytes are not rewritten
    (re-running is idempotent).

    Returns ``{"model_folder": str, "dataset_folder": str | None, "files": [...]}``
    where ``files`` are posix paths relative to ``dest``, sorted.
    """
    dest = Path(dest)
    model_folder = dest / "model"
    dataset_folder = dest / "dataset"
    extra = dict(extra or {})

    sources = _model_sources(model_dir, extra)  # validate everything before writing anything
    extra_names = list(dict.fromkeys([*card.extra_files, *(_safe_relpath(n) for n in extra)]))
    written_model = _write_model_folder(model_folder, sources, dataclasses.replace(card, extra_files=extra_names))

    written_dataset = _write_dataset_folder(dataset_folder, card, traces) if traces is not None else set()
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
