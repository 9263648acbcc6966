"""A LOCAL STAND-IN for the Hugging Face Hub, for tests only.

This is NOT the Hugging Face Hub and does not talk to it.  It is a small
threaded HTTP server on 127.0.0.1 (random port) that answers just the endpoints
the real ``huggingface_hub`` client (2.x, httpx-based) calls when
``distill.publish.hub.push_folder`` runs: it keeps repos in memory so the real client
can be exercised end to end, offline, by pointing ``HF_ENDPOINT`` at
:attr:`HubStandIn.url`.

Implemented (shapes checked against huggingface_hub 2.4's source):

* ``POST /api/repos/create``                          create_repo (409 when it exists)
* ``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]``  repo_info / model_info
* ``GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]?recursive=&expand=``
                                                      list_repo_tree, paginated by Link header
* ``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``  get_paths_info (form body)
* ``GET  /api/{type}s/{ns}/{name}/refs``              list_repo_refs
* ``POST /api/{type}s/{ns}/{name}/branch/{branch}``   create_branch (409 when it exists)
* ``POST /api/{type}s/{ns}/{name}/preupload/{rev}``   upload mode + remote oid per file
* ``POST /api/{type}s/{ns}/{name}/commit/{rev}``      NDJSON commit: header, file (base64),
                                                      lfsFile, deletedFile, deletedFolder
* ``POST /api/validate-yaml``                         README front matter check (parses YAML)
* ``POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch`` and ``PUT``/verify on
  ``/__lfs/...``: the basic git-LFS transfer.  Only used when ``lfs_threshold``
  is set; note the real client prefers Xet for LFS files when ``hf_xet`` is
  installed, which this stand-in does NOT implement, so tests that want LFS must
  also disable Xet (``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``).

Not implemented: downloads (``resolve``), pull requests, Xet, deletes of repos,
gated/disabled repos, real permission models (any configured token can write
anywhere).

Every request is recorded (:attr:`HubStandIn.requests`) with method, path,
query, status and body size, and faults can be injected with
:meth:`HubStandIn.inject` (for example: answer the next request to ``/commit/``
with 429 and ``Retry-After: 0``, then one with 503).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.gguf filter=lfs diff=lfs merge=lfs -text\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass
class Blob:
    """A file in a commit: inline bytes (regular) or a reference into the LFS store."""

    size: int
    data: bytes | None = None  # regular files
    lfs_oid: str | None = None  # sha256, for LFS files

    @property
    def git_oid(self) -> str:
        if self.lfs_oid is not None:
            return git_blob_sha1(_lfs_pointer(self.lfs_oid, self.size))
        return git_blob_sha1(self.data or b"")

    @property
    def preupload_oid(self) -> str:
        """What the Hub's preupload endpoint reports: sha256 for LFS, git sha1 for regular files."""
        return self.lfs_oid if self.lfs_oid is not None else self.git_oid


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, Blob]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created_at: str = ""

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    body_size: int
    authorized: bool
    injected: bool = False


@dataclass
class Fault:
    status: int
    path: re.Pattern[str]
    method: str | None
    remaining: int
    retry_after: str | None
    message: str


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class HubStandIn:
    """The in-memory fake Hub.  Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        tokens: tuple[str, ...] = ("hf_testsecret123",),
        user: str = "standin-user",
        lfs_threshold: int | None = None,
        lfs_suffixes: tuple[str, ...] = (".safetensors", ".parquet", ".gguf", ".bin"),
        page_size: int = 1000,
        echo_token_in_errors: bool = False,
    ):
        self.tokens = set(tokens)
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.lfs_suffixes = lfs_suffixes
        self.page_size = page_size
        self.echo_token_in_errors = echo_token_in_errors
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- control
    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubStandIn":
        standin = self

        class Handler(_Handler):
            hub = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hub-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "HubStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def inject(
        self,
        status: int,
        path: str = ".*",
        *,
        method: str | None = None,
        times: int = 1,
        retry_after: float | str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path matches regex ``path`` with ``status``.

        Faults are consumed in the order they were added, so ``inject(429, "/commit/")``
        then ``inject(503, "/commit/")`` fails the first commit with 429 and the second with 503.
        """
        with self.lock:
            self.faults.append(
                Fault(
                    status=status,
                    path=re.compile(path),
                    method=method.upper() if method else None,
                    remaining=times,
                    retry_after=None if retry_after is None else str(retry_after),
                    message=message or f"injected {status}",
                )
            )

    # ---------------------------------------------------------------- queries
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The content of every file at ``revision`` (LFS files resolved from the LFS store)."""
        with self.lock:
            commit = self.repo(repo_id, repo_type).resolve(revision)
            assert commit is not None
            return {
                path: blob.data if blob.lfs_oid is None else self.lfs_store[blob.lfs_oid]
                for path, blob in commit.files.items()
            }

    def commit_count(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> int:
        with self.lock:
            repo = self.repo(repo_id, repo_type)
            n, sha = 0, repo.branches[revision]
            while sha is not None:
                n += 1
                sha = repo.commits[sha].parent
            return n

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many recorded requests match ``method`` and the regex ``path``."""
        with self.lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
            )

    # ---------------------------------------------------------------- internals
    def _new_commit(self, repo: Repo, parent: str | None, message: str, files: dict[str, Blob]) -> Commit:
        self._counter += 1
        seed = json.dumps([parent, message, sorted((p, b.git_oid) for p, b in files.items()), self._counter])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(sha=sha, parent=parent, message=message, files=files, date=_now())
        repo.commits[sha] = commit
        return commit

    def _upload_mode(self, path: str, size: int) -> str:
        if self.lfs_threshold is None or size == 0:
            return "regular"
        if size >= self.lfs_threshold or path.endswith(self.lfs_suffixes):
            return "lfs"
        return "regular"


def _tree_entries(files: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
    """Files and folders under ``base`` (direct children unless ``recursive``), folders first like the Hub."""
    prefix = base.strip("/") + "/" if base.strip("/") else ""
    folders: dict[str, list[str]] = {}
    out_files: list[dict] = []
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        parts = rest.split("/")
        for i in range(1, len(parts)):
            folder = prefix + "/".join(parts[:i])
            if recursive or i == 1:
                folders.setdefault(folder, []).append(path)
        if recursive or len(parts) == 1:
            out_files.append(_file_entry(path, files[path]))
    out_folders = [
        {
            "type": "directory",
            "oid": hashlib.sha1("".join(files[p].git_oid for p in sorted(paths)).encode()).hexdigest(),
            "size": 0,
            "path": folder,
        }
        for folder, paths in sorted(folders.items())
    ]
    return out_folders + out_files


def _file_entry(path: str, blob: Blob) -> dict:
    entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
    if blob.lfs_oid is not None:
        entry["lfs"] = {"oid": blob.lfs_oid, "size": blob.size, "pointerSize": len(_lfs_pointer(blob.lfs_oid, blob.size))}
    return entry


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet the server
        pass

    # every method goes through one dispatcher
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        merged = {"Content-Type": "application/json", "X-Request-Id": str(uuid.uuid4()), **(headers or {})}
        merged["Content-Length"] = str(len(body))
        self.send_response(status)
        for key, value in merged.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        path, query = split.path, split.query
        body = self._read_body()
        token = self._token()
        authorized = token is not None and token in hub.tokens
        record = RequestRecord(self.command, path, query, 0, len(body), authorized)
        with hub.lock:
            hub.requests.append(record)
            fault = next(
                (
                    f
                    for f in hub.faults
                    if f.remaining > 0 and f.path.search(path) and (f.method is None or f.method == self.command)
                ),
                None,
            )
            if fault is not None:
                fault.remaining -= 1
        if fault is not None:
            record.status, record.injected = fault.status, True
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(fault.status, {"error": fault.message}, headers)
            return
        try:
            status, payload, headers = self._route(self.command, path, parse_qs(query), body, token, authorized)
        except _HttpError as err:
            status, payload = err.status, {"error": err.message}
            headers = {"X-Error-Code": err.code} if err.code else {}
            if err.code:
                headers["X-Error-Message"] = err.message
        except Exception as exc:  # a stand-in bug: answer 500 rather than hang the client
            status, payload, headers = 500, {"error": f"stand-in failure: {type(exc).__name__}: {exc}"}, {}
        record.status = status
        self._send(status, payload, headers)

    def _require_auth(self, token: str | None, authorized: bool) -> None:
        if authorized:
            return
        message = "Invalid credentials in Authorization header"
        if token is None:
            message = "You must be authenticated to access this endpoint"
        elif self.hub.echo_token_in_errors:
            # Worst case on purpose: a server echoing the credential it was sent.
            message += f" (received 'Bearer {token}')"
        raise _HttpError(401, message)

    def _repo(self, repo_type: str, repo_id: str, token: str | None, authorized: bool, write: bool) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if write or (repo is not None and repo.private):
            self._require_auth(token, authorized)
        elif token is not None and not authorized:
            self._require_auth(token, authorized)
        if repo is None:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    # ------------------------------------------------------------ routes
    def _route(self, method: str, path: str, query: dict, body: bytes, token: str | None, authorized: bool):
        hub = self.hub
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(body)
        if path == "/api/repos/create" and method == "POST":
            self._require_auth(token, authorized)
            return self._create_repo(json.loads(body or b"{}"))
        if path.startswith("/__lfs/"):
            return self._lfs_object(method, path, body)
        m = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+)/([^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            repo_type = _TYPES[m.group(1)] if m.group(1) else "model"
            repo = self._repo(repo_type, f"{m.group(2)}/{m.group(3)}", token, authorized, write=True)
            return self._lfs_batch(repo, json.loads(body or b"{}"))
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(.*))?", path)
        if not m:
            raise _HttpError(404, f"stand-in has no route for {method} {path}")
        repo_type, repo_id, rest = _TYPES[m.group(1)], f"{m.group(2)}/{m.group(3)}", m.group(4) or ""
        segments = [unquote(s) for s in rest.split("/")] if rest else []
        with hub.lock:
            if method == "GET" and not segments:
                repo = self._repo(repo_type, repo_id, token, authorized, write=False)
                return self._repo_info(repo, "main")
            if method == "GET" and segments[0] == "revision" and len(segments) >= 2:
                repo = self._repo(repo_type, repo_id, token, authorized, write=False)
                return self._repo_info(repo, "/".join(segments[1:]))
            if method == "GET" and segments[0] == "tree" and len(segments) >= 2:
                repo = self._repo(repo_type, repo_id, token, authorized, write=False)
                return self._tree(repo, segments[1], "/".join(segments[2:]), query, path)
            if method == "POST" and segments[0] == "paths-info" and len(segments) == 2:
                repo = self._repo(repo_type, repo_id, token, authorized, write=False)
                return self._paths_info(repo, segments[1], parse_qs(body.decode()))
            if method == "GET" and segments == ["refs"]:
                repo = self._repo(repo_type, repo_id, token, authorized, write=False)
                return self._refs(repo)
            if method == "POST" and segments[0] == "branch" and len(segments) == 2:
                repo = self._repo(repo_type, repo_id, token, authorized, write=True)
                return self._create_branch(repo, segments[1], json.loads(body or b"{}"))
            if method == "POST" and segments[0] == "preupload" and len(segments) == 2:
                repo = self._repo(repo_type, repo_id, token, authorized, write=True)
                return self._preupload(repo, segments[1], json.loads(body or b"{}"))
            if method == "POST" and segments[0] == "commit" and len(segments) == 2:
                repo = self._repo(repo_type, repo_id, token, authorized, write=True)
                if query.get("create_pr"):
                    raise _HttpError(400, "the stand-in does not implement pull requests")
                return self._commit(repo, segments[1], body)
        raise _HttpError(404, f"stand-in has no route for {method} {path}")

    def _validate_yaml(self, body: bytes):
        content = json.loads(body or b"{}").get("content", "")
        if not content.startswith("---"):
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}, {}
        end = content.find("\n---", 3)
        if end < 0:
            return 400, {"errors": [{"message": "unterminated YAML front matter"}]}, {}
        try:
            meta = yaml.safe_load(content[3:end])
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}, {}
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "YAML metadata must be a mapping"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _create_repo(self, payload: dict):
        hub = self.hub
        repo_type = payload.get("type") or "model"
        name = payload.get("name")
        if not name or repo_type not in _URL_PREFIX:
            raise _HttpError(400, "invalid repo name or type")
        repo_id = f"{payload.get('organization') or hub.user}/{name}"
        url = f"{self._base()}/{_URL_PREFIX[repo_type]}{repo_id}"
        with hub.lock:
            if (repo_type, repo_id) in hub.repos:
                return 409, {"error": f"You already created this {repo_type} repo", "url": url}, {}
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
            first = hub._new_commit(
                repo, None, "initial commit", {".gitattributes": Blob(size=len(GITATTRIBUTES), data=GITATTRIBUTES)}
            )
            repo.branches["main"] = first.sha
            hub.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex}, {}

    def _repo_info(self, repo: Repo, revision: str):
        commit = self._commit_at(repo, revision)
        return (
            200,
            {
                "id": repo.repo_id,
                "_id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            },
            {},
        )

    def _tree(self, repo: Repo, revision: str, sub: str, query: dict, path: str):
        commit = self._commit_at(repo, revision)
        recursive = (query.get("recursive", ["false"])[0]).lower() in ("true", "1")
        entries = _tree_entries(commit.files, sub, recursive)
        if sub and not entries:
            raise _HttpError(404, f"{sub} does not exist on {revision}", "EntryNotFound")
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor : cursor + self.hub.page_size]
        headers = {}
        if cursor + self.hub.page_size < len(entries):
            nxt = f"{self._base()}{path}?recursive={str(recursive).lower()}&expand=false&cursor={cursor + len(page)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return 200, page, headers

    def _paths_info(self, repo: Repo, revision: str, form: dict):
        commit = self._commit_at(repo, revision)
        out = []
        for wanted in form.get("paths", []):
            wanted = wanted.strip("/")
            if wanted in commit.files:
                out.append(_file_entry(wanted, commit.files[wanted]))
            elif any(p.startswith(wanted + "/") for p in commit.files):
                out.append({"type": "directory", "oid": hashlib.sha1(wanted.encode()).hexdigest(), "path": wanted})
        return 200, out, {}

    def _refs(self, repo: Repo):
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in sorted(repo.branches.items())
        ]
        return 200, {"branches": branches, "tags": [], "converts": []}, {}

    def _create_branch(self, repo: Repo, branch: str, payload: dict):
        if branch in repo.branches:
            raise _HttpError(409, f"Reference refs/heads/{branch} already exists")
        start = self._commit_at(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.sha
        return 200, {}, {}

    def _preupload(self, repo: Repo, revision: str, payload: dict):
        commit = self._commit_at(repo, revision)
        files = []
        for item in payload.get("files", []):
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": self.hub._upload_mode(item["path"], int(item.get("size", 0))),
                    "shouldIgnore": False,
                    "oid": existing.preupload_oid if existing is not None else None,
                }
            )
        return 200, {"files": files, "commitOid": commit.sha}, {}

    def _commit(self, repo: Repo, revision: str, body: bytes):
        hub = self.hub
        if revision not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo.commits[repo.branches[revision]]
        files = dict(head.files)
        message = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                message = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent is not None and parent != head.sha:
                    raise _HttpError(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise _HttpError(400, "only base64 file content is supported")
                data = base64.b64decode(value["content"])
                files[value["path"]] = Blob(size=len(data), data=data)
            elif key == "lfsFile":
                oid = value["oid"]
                if oid not in hub.lfs_store:
                    raise _HttpError(422, f"LFS object {oid} was not uploaded")
                files[value["path"]] = Blob(size=len(hub.lfs_store[oid]), lfs_oid=oid)
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise _HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
            else:
                raise _HttpError(400, f"unknown commit operation {key!r}")
        if not message:
            raise _HttpError(400, "commit summary is required")
        commit = hub._new_commit(repo, head.sha, message, files)
        repo.branches[revision] = commit.sha
        url = f"{self._base()}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
        return 200, {"success": True, "commitOid": commit.sha, "commitUrl": url, "hookOutput": ""}, {}

    def _lfs_batch(self, repo: Repo, payload: dict):
        hub = self.hub
        if payload.get("operation") != "upload":
            raise _HttpError(400, "the stand-in only implements LFS uploads")
        objects = []
        with hub.lock:
            for obj in payload.get("objects", []):
                entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs_store:
                    entry["actions"] = {
                        "upload": {"href": f"{self._base()}/__lfs/{obj['oid']}"},
                        "verify": {"href": f"{self._base()}/__lfs/verify"},
                    }
                objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}

    def _lfs_object(self, method: str, path: str, body: bytes):
        hub = self.hub
        if method == "PUT":
            oid = path[len("/__lfs/") :]
            if hashlib.sha256(body).hexdigest() != oid:
                raise _HttpError(400, "uploaded content does not match its sha256")
            with hub.lock:
                hub.lfs_store[oid] = body
            return 200, None, {}
        if method == "POST" and path == "/__lfs/verify":
            payload = json.loads(body or b"{}")
            data = hub.lfs_store.get(payload.get("oid", ""))
            if data is None or len(data) != payload.get("size"):
                raise _HttpError(404, "object not found")
            return 200, {}, {}
        raise _HttpError(404, f"stand-in has no route for {method} {path}")


def point_client_at(monkeypatch, standin: "HubStandIn") -> None:
    """Point huggingface_hub's real client at the stand-in for one test."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_ENDPOINT", standin.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # constants are read when huggingface_hub is imported, possibly before this test.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
