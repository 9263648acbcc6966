"""Publish a distilled student (and its training traces) to the Hugging Face Hub.

The publish stage has three jobs, each in its own module:

* **Cards** (:mod:`distill.publish.card`, :mod:`distill.publish.dataset_card`):
  the README.md files, with metadata built by ``huggingface_hub``'s card
  classes; licences come from :mod:`distill.publish.licences`.
* **The upload folder** (:mod:`distill.publish.upload`): exactly the bytes that
  would be pushed, written to disk first so a run can be inspected (or pushed by
  hand with ``hf upload``) before anything leaves the machine.
* **The push** (this module): :func:`push_folder` sends only files whose content
  differs from what the repo already holds, so re-running a finished push is
  free and makes no empty commit; it retries rate limits and server errors
  (:func:`distill.http_util.call_with_retries`, waiting as
  :func:`distill.http_util.retry_wait` says), never auth errors, and scrubs
  the token from every message it raises or logs.

The card and upload-folder names stay importable from here
(``hub.CardInfo``, ``hub.write_upload_folder``...), which is how the pipeline
uses them.

This is a core module: it must not import the ``teachers``, ``students`` or
``eval`` packages.  ``huggingface_hub`` and ``pyarrow`` are imported lazily so
that importing it needs neither.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from distill.errors import StageError, UserError
from distill.http_util import RetryPolicy, call_with_retries, scrub_secret
from distill.publish.card import CardInfo, render_model_card
from distill.publish.dataset_card import render_dataset_card
from distill.publish.licences import license_for_base
from distill.publish.upload import DATASET_PARQUET_PATH, MODEL_FILE_PATTERNS, write_upload_folder

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

# Local folders never pushed (git metadata, huggingface_hub's upload cache).
_IGNORED_DIRS = {".git", ".cache"}

_AUTH_HINT = "check that the token is valid and has write access to this repo"

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


@dataclass(frozen=True)
class _Target:
    """One push: the repo, its type and branch, and how its Hub calls are retried."""

    api: Any = field(repr=False)  # huggingface_hub.HfApi, which holds the token
    repo_id: str
    repo_type: str
    revision: str | None
    token: str = field(repr=False)
    policy: RetryPolicy = RetryPolicy()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` with the Hub's retry rules; failures raise :class:`HubError`, token scrubbed."""
        return call_with_retries(
            what,
            fn,
            self.policy,
            scrub=lambda text: scrub(text, self.token),
            make_error=lambda message, status: HubError(message, status=status),
            auth_hint=_AUTH_HINT,
            sleep=lambda seconds: _sleep(seconds),  # looked up per call, so tests can replace _sleep
            log=logger,
        )


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


def _local_files_to_push(folder: Path, token: str, repo_type: str) -> dict[str, Path]:
    """Check the push's arguments and list the folder's files; refuses before any Hub call."""
    if not folder.is_dir():
        raise UserError(f"upload folder {folder} does not exist")
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    if repo_type not in ("model", "dataset", "space"):
        raise UserError(f"repo_type must be model, dataset or space, not {repo_type!r}")
    local = _local_files(folder)
    if not local:
        raise UserError(f"upload folder {folder} is empty")
    return local


def _ensure_repo(target: _Target, private: bool) -> str:
    """Create the repo (and branch) if needed; refuse a public repo when a private push was asked for.

    Returns the repo URL.
    """
    api, repo_id, repo_type = target.api, target.repo_id, target.repo_type
    repo_url = target.call(
        f"create repo {repo_id}",
        lambda: api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True),
    )
    # create_repo ignores ``private`` for a repo that already exists: refuse to push
    # into a public repo when a private one was asked for, rather than publish by accident.
    existing = target.call(f"read repo info of {repo_id}", lambda: api.repo_info(repo_id, repo_type=repo_type))
    if private and getattr(existing, "private", None) is False:
        raise UserError(
            f"{repo_id} already exists and is public, but a private push was asked for; "
            "make the repo private on the Hub or push with private=False"
        )
    branch = target.revision if target.revision not in (None, "main") else None
    if branch is not None:
        target.call(
            f"create branch {branch} in {repo_id}",
            lambda: api.create_branch(repo_id, branch=branch, repo_type=repo_type, exist_ok=True),
        )
    return str(repo_url)


def _diff_and_commit(
    target: _Target, local: dict[str, Path], hashes: dict[str, tuple[str, str]], commit_message: str | None
) -> tuple[list[str], list[str], str | None]:
    """One attempt: list the remote tree, commit the files that differ; ``(uploaded, skipped, commit sha)``.

    Why the diff is inside the attempt: a commit that landed but whose answer was
    lost must show up as "nothing changed" on the retry, not be made twice.
    """
    from huggingface_hub import CommitOperationAdd

    api = target.api
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(
            target.repo_id, recursive=True, repo_type=target.repo_type, revision=target.revision
        )
        if hasattr(entry, "blob_id")
    }
    changed = [rel for rel in local if not _unchanged(remote.get(rel), local[rel], hashes[rel])]
    skipped = [rel for rel in local if rel not in changed]
    if not changed:
        return [], skipped, None
    # Fresh operations on every attempt: the client mutates them and refuses to reuse committed ones.
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(local[rel])) for rel in changed]
    info = api.create_commit(
        target.repo_id,
        operations,
        commit_message=commit_message or f"Upload {len(changed)} file(s) with distill",
        repo_type=target.repo_type,
        revision=target.revision,
    )
    return changed, skipped, getattr(info, "oid", None)


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
    from huggingface_hub import HfApi

    folder = Path(folder)
    local = _local_files_to_push(folder, token, repo_type)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    target = _Target(
        api=HfApi(endpoint=endpoint, token=token, library_name="distill", library_version=_version()),
        repo_id=repo_id,
        repo_type=repo_type,
        revision=revision,
        token=token,
        policy=RetryPolicy(max_retries, backoff_base, backoff_max),  # Retry-After capped at 300 s, then jittered
    )
    repo_url = _ensure_repo(target, private)
    hashes = {rel: _hashes(path) for rel, path in local.items()}
    uploaded, skipped, commit = target.call(
        f"push {folder} to {repo_id}", lambda: _diff_and_commit(target, local, hashes, commit_message)
    )
    if commit is None:
        logger.info("push %s: nothing changed, %d files already on %s", repo_id, len(skipped), repo_id)
    else:
        logger.info("push %s: uploaded %d files, skipped %d, commit %s", repo_id, len(uploaded), len(skipped), commit)
    return {"url": repo_url, "uploaded": uploaded, "skipped": skipped, "commit": commit}
