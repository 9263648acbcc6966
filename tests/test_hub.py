"""Tests for distill.publish.hub: cards, the upload folder, and push_folder.

Pushes run the real ``huggingface_hub`` client against ``tests/hub_standin.py``,
a local in-memory stand-in for the Hub (not the Hub itself): nothing leaves
127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_standin import HubStandIn, point_client_at  # noqa: E402

from distill.publish import hub  # noqa: E402
from distill.errors import UserError  # noqa: E402

TOKEN = "hf_testsecret123"
STUDENT = "R1-Distill-Qwen-1.5B-mini"
REPO = "me/r1-distill-mini"


# --------------------------------------------------------------------- fixtures


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end])


def make_card(**overrides) -> hub.CardInfo:
    lic, note = hub.license_for_base("Qwen/Qwen2.5-Math-1.5B")
    values = dict(
        repo_id=REPO,
        model_name=STUDENT,
        base_model="Qwen/Qwen2.5-Math-1.5B",
        teacher="DeepSeek-R1",
        license=lic,
        license_note=note,
        training={"epochs": 3, "learning_rate": 1e-5, "max_seq_len": 16384, "lora": {"r": 16, "alpha": 32}},
        eval_results={
            STUDENT: {"AIME 2024": 0.28889, "MATH-500": 0.79},
            "Qwen2.5-Math-1.5B (base)": {"AIME 2024": 0.0333, "MATH-500": 0.352},
            "DeepSeek-R1 (teacher)": {"AIME 2024": 0.798},
        },
        eval_protocol={
            "k": 4,
            "temperature": 0.6,
            "top_p": 0.95,
            "max_tokens": 32768,
            "n_problems": {"AIME 2024": 30, "MATH-500": 500},
        },
        funnel={"generated": 4000, "finished": 3600, "correct": 2500, "kept": 2400},
        dataset_repo_id="me/r1-traces",
        extra_files=[],
    )
    values.update(overrides)
    return hub.CardInfo(**values)


def make_traces(n: int = 6) -> list[dict]:
    return [
        {
            "problem_id": f"p{i // 2}",
            "sample_index": i % 2,
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "reasoning": f"{i} plus {i} is {2 * i}.",
            "answer_text": f"\\boxed{{{2 * i}}}",
            "finish_reason": "stop",
            "think_closed": True,
            "completion_tokens": 10 + i,
            "teacher": "DeepSeek-R1",
            "sampling": {"temperature": 0.6, "top_p": 0.95},
        }
        for i in range(n)
    ]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "student"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 8}))
    (d / "generation_config.json").write_text(json.dumps({"temperature": 0.6}))
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16384}))
    # Training leftovers that must never be uploaded.
    (d / "optimizer.pt").write_bytes(b"junk")
    (d / "training_args.bin").write_bytes(b"junk")
    (d / "checkpoint-10").mkdir()
    (d / "checkpoint-10" / "model.safetensors").write_bytes(b"old")
    return d


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model-q8_0.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Record push_folder's backoff waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(hub, "_sleep", waits.append)
    return waits


@pytest.fixture
def standin(monkeypatch, sleeps):
    with HubStandIn(tokens=(TOKEN,)) as server:
        point_client_at(monkeypatch, server)
        yield server


@pytest.fixture
def upload(tmp_path: Path, model_dir: Path, gguf: Path) -> dict:
    return hub.write_upload_folder(
        tmp_path / "upload",
        model_dir,
        make_card(),
        traces=make_traces(),
        extra={"gguf/model-q8_0.gguf": gguf},
    )


# --------------------------------------------------------------------- cards


def test_model_card_front_matter_has_student_model_index():
    text = hub.render_model_card(make_card())
    meta = _front_matter(text)
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "Qwen/Qwen2.5-Math-1.5B"
    assert {"distill", "reasoning"} <= set(meta["tags"])
    assert meta["datasets"] == ["me/r1-traces"]
    (entry,) = meta["model-index"]
    assert entry["name"] == STUDENT
    results = {r["dataset"]["name"]: r for r in entry["results"]}
    assert set(results) == {"AIME 2024", "MATH-500"}  # the student's benchmarks only
    aime = results["AIME 2024"]
    assert aime["task"] == {"type": "text-generation"}
    assert aime["dataset"]["type"] == "aime-2024"
    assert aime["metrics"] == [{"type": "pass@1", "value": 28.89, "name": "pass@1",
                                "args": {"k": 4, "temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}}]
    assert results["MATH-500"]["metrics"][0]["value"] == 79.0


def test_model_card_body_is_complete_and_honest():
    text = hub.render_model_card(make_card())
    body = text.split("\n---\n", 1)[1]
    # eval table: every label x benchmark, in percent, missing cells marked
    assert "| **R1-Distill-Qwen-1.5B-mini** (this model) | 28.89 | 79.00 |" in body
    assert "| Qwen2.5-Math-1.5B (base) | 3.33 | 35.20 |" in body
    assert "| DeepSeek-R1 (teacher) | 79.80 | – |" in body
    for section in ("## Training", "## Evaluation", "## Data filter funnel", "## Licence", "## Limitations"):
        assert section in body
    assert "| learning_rate | 1e-05 |" in body
    assert "| kept | 2400 | 60.0% |" in body
    assert "k=4" in body and "temperature=0.6" in body and "max_tokens=32768" in body
    assert "2,400 teacher traces" in body
    assert "AIME 2024 has only 30 problems" in body
    assert "MIT" in body  # teacher terms in the licence section


def test_model_card_toy_base_and_no_student_row():
    card = make_card(
        base_model="toy (random init)",
        license="other",
        license_note=hub.license_for_base("toy (random init)")[1],
        eval_results={"base": {"gsm8k": 0.1}, "teacher": {"gsm8k": 0.9}},
        eval_protocol={},
        funnel={},
        dataset_repo_id=None,
    )
    meta = _front_matter(hub.render_model_card(card))
    assert "base_model" not in meta  # not a Hub id: the Hub would reject it
    assert "model-index" not in meta  # no row is the student
    assert "datasets" not in meta
    assert meta["license"] == "other"


def test_model_card_rejects_percent_scores():
    with pytest.raises(UserError, match="outside 0..1"):
        hub.render_model_card(make_card(eval_results={STUDENT: {"AIME 2024": 28.9}}))


def test_dataset_card_front_matter():
    text = hub.render_dataset_card(
        "me/r1-traces", "DeepSeek-R1", {"rows": 2400, "problems": 600}, {"temperature": 0.6}, {"problem_id": "string"}
    )
    meta = _front_matter(text)
    assert meta["license"] == "mit"
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    assert meta["size_categories"] == ["1K<n<10K"]
    assert "| problem_id | string |" in text


# --------------------------------------------------------------------- licences

R1_DISTILL_BASES = {
    "Qwen/Qwen2.5-Math-1.5B": "apache-2.0",
    "Qwen/Qwen2.5-Math-7B": "apache-2.0",
    "meta-llama/Llama-3.1-8B": "llama3.1",
    "Qwen/Qwen2.5-14B": "apache-2.0",
    "Qwen/Qwen2.5-32B": "apache-2.0",
    "meta-llama/Llama-3.3-70B-Instruct": "llama3.3",
}


@pytest.mark.parametrize("base,expected", sorted(R1_DISTILL_BASES.items()))
def test_licence_for_r1_distill_bases(base, expected):
    lic, note = hub.license_for_base(base)
    assert lic == expected
    assert "DeepSeek-R1" in note and "MIT" in note


@pytest.mark.parametrize("base", ["Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-72B-Instruct"])
def test_licence_qwen_licence_sizes(base):
    lic, note = hub.license_for_base(base)
    assert lic == "other"
    assert "qwen license" in note.lower()
    assert "MIT" in note
    meta = _front_matter(hub.render_model_card(make_card(base_model=base, license=lic, license_note=note)))
    assert meta["license_link"] == f"https://huggingface.co/{base}/blob/main/LICENSE"


def test_licence_unknown_base():
    lic, note = hub.license_for_base("toy (random init)")
    assert lic == "other"
    assert "check the base model's licence" in note
    assert "MIT" in note


# --------------------------------------------------------------------- upload folder


def test_write_upload_folder_files(tmp_path, upload):
    assert upload["files"] == [
        "dataset/README.md",
        "dataset/data/train-00000-of-00001.parquet",
        "model/README.md",
        "model/config.json",
        "model/generation_config.json",
        "model/gguf/model-q8_0.gguf",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/tokenizer_config.json",
    ]
    dest = tmp_path / "upload"
    assert upload["model_folder"] == str(dest / "model")
    assert upload["dataset_folder"] == str(dest / "dataset")
    on_disk = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert on_disk == upload["files"]  # exactly what would be uploaded, nothing else

    import pyarrow.parquet as pq

    table = pq.read_table(dest / "dataset" / "data" / "train-00000-of-00001.parquet")
    assert table.num_rows == 6
    assert table.column("prompt").to_pylist()[0] == [{"role": "user", "content": "What is 0 + 0?"}]
    ds_meta = _front_matter((dest / "dataset" / "README.md").read_text())
    assert ds_meta["license"] == "mit"
    assert "| problems | 3 |" in (dest / "dataset" / "README.md").read_text()
    readme = (dest / "model" / "README.md").read_text()
    assert "gguf" in _front_matter(readme)["tags"]
    assert "`gguf/model-q8_0.gguf`" in readme


def test_write_upload_folder_is_idempotent(tmp_path, model_dir, gguf, upload):
    dest = tmp_path / "upload"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dest.rglob("*") if p.is_file()}
    (dest / "model" / "stale.txt").write_text("left over by an earlier run")
    again = hub.write_upload_folder(
        dest, model_dir, make_card(), traces=make_traces(), extra={"gguf/model-q8_0.gguf": gguf}
    )
    assert again == upload
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dest.rglob("*") if p.is_file()}
    assert after == before  # same bytes, untouched files, stale file gone

    # Without traces the dataset folder goes away: it would no longer be uploaded.
    third = hub.write_upload_folder(dest, model_dir, make_card(), extra={"gguf/model-q8_0.gguf": gguf})
    assert third["dataset_folder"] is None
    assert not (dest / "dataset").exists()


def test_write_upload_folder_rejects_bad_input(tmp_path, model_dir):
    with pytest.raises(UserError, match="no config.json"):
        hub.write_upload_folder(tmp_path / "u", tmp_path, make_card())
    with pytest.raises(UserError, match="relative path"):
        hub.write_upload_folder(tmp_path / "u", model_dir, make_card(), extra={"../x.gguf": model_dir / "config.json"})
    with pytest.raises(UserError, match="does not exist"):
        hub.write_upload_folder(tmp_path / "u", model_dir, make_card(), extra={"a.gguf": tmp_path / "missing"})


# --------------------------------------------------------------------- push


def _local_bytes(folder: str) -> dict[str, bytes]:
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_push_uploads_the_folder(standin, upload):
    result = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
    local = _local_bytes(upload["model_folder"])
    assert sorted(result["uploaded"]) == sorted(local)
    assert result["skipped"] == []
    assert result["url"] == f"{standin.url}/{REPO}"
    remote = standin.files(REPO)
    assert {k: v for k, v in remote.items() if k != ".gitattributes"} == local
    assert standin.repo(REPO).private is True
    assert standin.commit_count(REPO) == 2  # the repo's initial commit + ours
    assert result["commit"] == standin.repo(REPO).branches["main"]
    # the commit went as NDJSON with base64 regular files
    assert standin.count("POST", r"/api/models/me/r1-distill-mini/commit/main$") == 1


def test_second_push_sends_nothing(standin, upload):
    first = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
    n_before = len(standin.requests)
    second = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
    assert second["uploaded"] == []
    assert sorted(second["skipped"]) == sorted(first["uploaded"])
    assert second["commit"] is None
    assert standin.commit_count(REPO) == 2  # no new commit
    later = standin.requests[n_before:]
    assert [(r.method, r.path) for r in later] == [
        ("POST", "/api/repos/create"),  # exists: 409, accepted
        ("GET", f"/api/models/{REPO}"),  # still private?
        ("GET", f"/api/models/{REPO}/tree/main"),
    ]
    assert all(r.body_size < 200 for r in later)  # no file content sent


def test_push_sends_only_changed_files(standin, upload):
    folder = Path(upload["model_folder"])
    hub.push_folder(folder, REPO, TOKEN)
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nOne more line.\n")
    result = hub.push_folder(folder, REPO, TOKEN)
    assert result["uploaded"] == ["README.md"]
    assert "model.safetensors" in result["skipped"]
    assert standin.commit_count(REPO) == 3
    assert standin.files(REPO)["README.md"].endswith(b"One more line.\n")


def test_push_dataset_to_a_branch(standin, upload):
    result = hub.push_folder(
        Path(upload["dataset_folder"]), "me/r1-traces", TOKEN, repo_type="dataset", revision="v1", private=False
    )
    assert sorted(result["uploaded"]) == ["README.md", "data/train-00000-of-00001.parquet"]
    assert result["url"] == f"{standin.url}/datasets/me/r1-traces"
    repo = standin.repo("me/r1-traces", "dataset")
    assert repo.private is False
    assert set(standin.files("me/r1-traces", "dataset", "v1")) == {
        ".gitattributes",
        "README.md",
        "data/train-00000-of-00001.parquet",
    }
    assert set(standin.files("me/r1-traces", "dataset", "main")) == {".gitattributes"}
    again = hub.push_folder(
        Path(upload["dataset_folder"]), "me/r1-traces", TOKEN, repo_type="dataset", revision="v1", private=False
    )
    assert again["uploaded"] == [] and again["commit"] is None


def test_retries_429_then_503_and_honours_retry_after(standin, upload, sleeps):
    standin.inject(429, r"^/api/repos/create$", retry_after=7)
    standin.inject(429, r"/commit/main$", retry_after=0)
    standin.inject(503, r"/commit/main$")
    result = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN, backoff_base=0.5)
    assert result["commit"] is not None
    assert standin.commit_count(REPO) == 2  # exactly one commit landed
    assert standin.count("POST", r"^/api/repos/create$") == 2
    assert standin.count("POST", r"/commit/main$") == 3
    assert 7 <= sleeps[0] <= 7 * 1.25  # Retry-After honoured, then spread (http_util.retry_wait)
    assert 0 <= sleeps[1] <= 0.25
    assert 0.5 <= sleeps[2] <= 1.0  # jittered backoff for the 503: uniform in [d/2, d], d = base * 2
    assert all(not f.remaining for f in standin.faults)


def test_gives_up_after_max_retries(standin, upload, sleeps):
    standin.inject(503, r"/commit/main$", times=10)
    with pytest.raises(hub.HubError) as err:
        hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN, max_retries=2, backoff_base=0.01)
    assert err.value.status == 503
    assert "gave up after 2 retries" in str(err.value)
    assert standin.count("POST", r"/commit/main$") == 3
    assert len(sleeps) == 2


def test_connection_errors_are_retried(monkeypatch, sleeps, upload):
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(hub.HubError) as err:
        hub.push_folder(
            Path(upload["model_folder"]), REPO, TOKEN, endpoint=f"http://127.0.0.1:{port}", max_retries=2
        )
    assert err.value.status is None
    assert "gave up after 2 retries" in str(err.value)
    assert len(sleeps) == 2


def test_401_is_not_retried(monkeypatch, sleeps, upload):
    with HubStandIn(tokens=("hf_someoneelse00",)) as server:
        point_client_at(monkeypatch, server)
        with pytest.raises(hub.HubError) as err:
            hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
        assert err.value.status == 401
        assert sleeps == []
        assert server.count("POST", r"^/api/repos/create$") == 1
        assert server.count(path=r"/commit/") == 0


def test_refuses_private_push_into_existing_public_repo(standin, upload):
    hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN, private=False)
    with pytest.raises(UserError, match="is public"):
        hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN, private=True)
    assert standin.commit_count(REPO) == 2


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_on_commit_are_not_retried(standin, upload, sleeps, status):
    standin.inject(status, r"/commit/main$", times=5)
    with pytest.raises(hub.HubError) as err:
        hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
    assert err.value.status == status
    assert standin.count("POST", r"/commit/main$") == 1
    assert sleeps == []


def test_push_follows_tree_pagination(monkeypatch, sleeps, upload):
    with HubStandIn(tokens=(TOKEN,), page_size=2) as server:
        point_client_at(monkeypatch, server)
        hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
        second = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
        assert second["uploaded"] == []
        assert server.count("GET", r"/tree/main$") >= 2 + 4  # several pages per listing


def test_push_with_lfs_files(monkeypatch, sleeps, upload):
    """Basic git-LFS flow (Xet disabled: the stand-in does not implement Xet)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with HubStandIn(tokens=(TOKEN,), lfs_threshold=10**9) as server:
        point_client_at(monkeypatch, server)
        first = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
        assert "model.safetensors" in first["uploaded"]
        assert server.count("PUT", r"^/__lfs/") == 2  # model.safetensors and the .gguf
        head = server.repo(REPO).resolve("main")
        assert head.files["model.safetensors"].lfs_oid is not None
        assert server.files(REPO)["model.safetensors"] == (Path(upload["model_folder"]) / "model.safetensors").read_bytes()
        second = hub.push_folder(Path(upload["model_folder"]), REPO, TOKEN)
        assert second["uploaded"] == [] and second["commit"] is None  # LFS entries compared by sha256


# --------------------------------------------------------------------- tokens


def test_scrub():
    assert hub.scrub(f"bad token {TOKEN}!", TOKEN) == "bad token ***!"
    assert TOKEN not in hub.scrub(f"Authorization: Bearer {TOKEN}", None)
    assert "hf_other1234567" not in hub.scrub("echo hf_other1234567", TOKEN)
    assert hub.scrub("nothing secret", TOKEN) == "nothing secret"


def test_resolve_token(monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("MY_HF_TOKEN", f"  {TOKEN}\n")
    assert hub.resolve_token("MY_HF_TOKEN") == TOKEN
    monkeypatch.setenv("MY_HF_TOKEN", "")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_fromlogin0001")
    assert hub.resolve_token("MY_HF_TOKEN") == "hf_fromlogin0001"
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert hub.resolve_token("MY_HF_TOKEN") is None


def test_token_never_leaks(monkeypatch, tmp_path, model_dir, gguf, sleeps, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, including huggingface_hub's and the HTTP client's
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    token = hub.resolve_token()
    assert token == TOKEN

    dest = tmp_path / "upload"
    result = hub.write_upload_folder(dest, model_dir, make_card(), traces=make_traces(), extra={"g.gguf": gguf})
    with HubStandIn(tokens=(TOKEN,)) as server:
        point_client_at(monkeypatch, server)
        server.inject(429, r"/commit/main$", retry_after=0)
        hub.push_folder(Path(result["model_folder"]), REPO, token)
        hub.push_folder(Path(result["dataset_folder"]), "me/r1-traces", token, repo_type="dataset")

    texts: list[str] = []
    # A server that rejects the token and echoes it back: the worst case.
    with HubStandIn(tokens=(), echo_token_in_errors=True) as server:
        point_client_at(monkeypatch, server)
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        with pytest.raises(HfHubHTTPError) as raw:  # the client's own error does carry it...
            HfApi(endpoint=server.url, token=TOKEN).create_repo(REPO)
        assert TOKEN in str(raw.value)
        with pytest.raises(hub.HubError) as err:  # ...ours must not
            hub.push_folder(Path(result["model_folder"]), REPO, token)
        exc = err.value
        assert exc.__cause__ is None and exc.__context__ is None
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        assert "***" in str(exc)  # the echoed token was there and was scrubbed

    for path in dest.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    records = [r for r in caplog.records if r.name != "test"]
    assert records, "expected log records"
    for record in records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        assert TOKEN not in text, record.name
    for text in texts:
        assert TOKEN not in text
    assert TOKEN not in caplog.text


def test_pipeline_push_uploads_student_4bit_and_traces_and_never_writes_the_token(
        standin, monkeypatch, tmp_path, teacher_cache):
    """The whole tiny pipeline against the stand-in: what lands on the 'Hub', and no token anywhere on disk."""
    from distill.config import config_from_dict
    from distill.pipeline import run
    from tests.conftest import tiny_config_dict

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)  # no token from a Hub login either
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["hub"] = {"repo_id": "me/tiny-student", "private": True}
    config = config_from_dict(raw)
    run(config)  # no token: written locally, not uploaded, and not done
    push = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["push"]
    assert push["status"] == "incomplete" and push["counts"]["uploaded"] is False

    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the token is set later: the next run uploads
    run(config)

    model_files = standin.files("me/tiny-student")
    assert {"README.md", "config.json", "model.safetensors"} <= set(model_files)
    assert any(name.startswith("gguf/") and name.endswith(".gguf") for name in model_files)
    assert any(name.startswith("nf4/") and name.endswith(".safetensors") for name in model_files)
    assert any(name.endswith(".parquet") for name in standin.files("me/tiny-student-traces", "dataset"))
    push = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["push"]
    assert push["status"] == "done" and push["counts"]["uploaded"] is True

    leaked = [p for p in config.run_dir.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []
