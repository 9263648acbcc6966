"""The model card tells the truth: the real teacher (a model, an API model or a trace dataset) with its
licence, every benchmark with its k in ``model-index``, and the evaluation protocol.

The fast tests write a run folder by hand (the files the earlier stages leave: the filter funnel, the
eval results and the model x benchmark grid, a saved model) and run the push stage without a token,
which writes the exact upload folder.  The last test runs the whole pipeline from a published trace
dataset with two benchmarks and pushes to the local Hub stand-in (``tests/hub_standin.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_standin import HubStandIn, point_client_at  # noqa: E402

from distill.publish import hub  # noqa: E402

TOKEN = "hf_cardtruth123"
UNKNOWN = "licence unknown — check the source"


# --------------------------------------------------------------------- a run folder written by hand


def _summary(label: str, bench: str, pass_at_1: float, k: int, problems: int, max_tokens: int = 48) -> dict:
    """One model x benchmark summary as the eval stage writes it (``EvalResult.summary()`` + protocol)."""
    return {"model": label, "benchmark": bench, "pass_at_1": pass_at_1, "ci95_low": 0.0, "ci95_high": 1.0,
            "cons_at_k": pass_at_1, "problems": problems, "samples": problems * k, "truncated": 0, "failed": 0,
            "params": {"n": k, "temperature": 0.6, "top_p": 0.95, "max_tokens": max_tokens, "seed": 0},
            "path": "x", "protocol": {"harness": "1", "k": k, "seed": 0, "temperature": 0.6, "top_p": 0.95,
                                      "max_tokens": max_tokens, "dtype": "float32", "engine": "transformers",
                                      "benchmark": {"name": bench, "problems": problems}}}


GRID = {
    "student": {"heldout": _summary("student", "heldout", 0.5, 2, 6),
                "math500": _summary("student", "math500", 0.25, 4, 8, max_tokens=64)},
    "student_base": {"heldout": _summary("student_base", "heldout", 0.0, 2, 6),
                     "math500": _summary("student_base", "math500", 0.125, 4, 8, max_tokens=64)},
}


def _write_run(config) -> None:
    """The files the push stage reads from the stages before it."""
    run = Path(config.run_dir)
    (run / "filter").mkdir(parents=True)
    (run / "filter" / "funnel.json").write_text(json.dumps({"funnel": {"total": 40, "kept": 20}}))
    (run / "filter" / "kept.jsonl").write_text(json.dumps({"problem_id": "p0", "sample_index": 0}) + "\n")
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text(json.dumps({k: v["heldout"] for k, v in GRID.items()}))
    (run / "eval" / "benchmarks.json").write_text(json.dumps(GRID))
    model = run / "train" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 16)


def _push_folder(tiny_config, monkeypatch, tmp_path, **overrides) -> Path:
    """Run the push stage without a token on a hand-written run folder; return the upload folder."""
    from distill.progress import NullReporter
    from distill.publish.stage import PUSH
    from distill.stage import Context
    from distill.store import RunStore

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cached login either
    config = tiny_config(**overrides)
    _write_run(config)
    outcome = PUSH.run(Context(config, RunStore(config.run_dir), NullReporter()))
    assert outcome.counts["uploaded"] is False
    return Path(outcome.counts["folder"])


def _meta_and_body(text: str) -> tuple[dict, str]:
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    return card.data.to_dict(), text.split("\n---\n", 1)[1]


def _dataset_teacher(tmp_path: Path) -> dict:
    return {"teacher__kind": "dataset",
            "teacher__dataset": {"path": str(tmp_path / "hub" / "open-r1" / "OpenR1-Math-220k")}}


# --------------------------------------------------------------------- the teacher and its licence


def test_a_trace_dataset_run_credits_the_dataset_and_its_licence(tiny_config, monkeypatch, tmp_path):
    folder = _push_folder(tiny_config, monkeypatch, tmp_path, **_dataset_teacher(tmp_path))
    meta, body = _meta_and_body((folder / "model" / "README.md").read_text())
    assert "toy teacher" not in body.lower()  # the student is a toy here; the teacher is the dataset
    assert "open-r1/OpenR1-Math-220k" in body
    assert "| Teacher | the dataset open-r1/OpenR1-Math-220k (published traces) |" in body
    assert "| Teacher licence | apache-2.0 |" in body
    assert "open-r1/OpenR1-Math-220k" in meta["datasets"]  # the Hub's model tree links the training data
    dataset_meta, dataset_body = _meta_and_body((folder / "dataset" / "README.md").read_text())
    assert dataset_meta["license"] == "apache-2.0"
    assert "open-r1/OpenR1-Math-220k" in dataset_body


@pytest.mark.parametrize("teacher,licence,absent", [
    ({"teacher__model": "Qwen/QwQ-32B"}, "apache-2.0", "DeepSeek-R1"),
    ({"teacher__model": "acme/secret-reasoner"}, UNKNOWN, "MIT"),
    ({"teacher__model": "o3-mini", "teacher__backend": "openai"}, UNKNOWN, "MIT"),
])
def test_the_card_states_the_real_teachers_terms_not_deepseeks(tiny_config, monkeypatch, tmp_path, teacher,
                                                              licence, absent):
    folder = _push_folder(tiny_config, monkeypatch, tmp_path, **teacher)
    _, body = _meta_and_body((folder / "model" / "README.md").read_text())
    assert f"| Teacher licence | {licence} |" in body
    assert absent not in body
    _, dataset_body = _meta_and_body((folder / "dataset" / "README.md").read_text())
    assert absent not in dataset_body


def test_an_api_teacher_is_named_as_an_api_model(tiny_config, monkeypatch, tmp_path):
    folder = _push_folder(tiny_config, monkeypatch, tmp_path, teacher__model="deepseek-ai/DeepSeek-R1",
                          teacher__backend="openai", teacher__openai={"served_model": "deepseek-reasoner"})
    _, body = _meta_and_body((folder / "model" / "README.md").read_text())
    assert "| Teacher | the API model deepseek-reasoner (deepseek-ai/DeepSeek-R1) |" in body
    assert "| Teacher licence | mit |" in body


def test_known_and_unknown_teacher_sources():
    from distill.publish.licences import teacher_source

    assert teacher_source("dataset", "open-r1/OpenR1-Math-220k").licence == "apache-2.0"
    assert teacher_source("model", "deepseek-ai/DeepSeek-R1").licence == "mit"
    unknown = teacher_source("dataset", "someone/some-traces")
    assert unknown.licence is None and unknown.licence_text == UNKNOWN
    toy = teacher_source("model", "toy")
    assert "toy" in toy.label and "DeepSeek" not in toy.terms


def test_a_local_dataset_folder_card_gives_its_licence(tmp_path):
    from distill.publish.licences import teacher_source

    folder = tmp_path / "my-traces"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicence_note: x\nlicense: cc-by-4.0\n---\n# traces\n")
    assert teacher_source("dataset", str(folder)).licence == "cc-by-4.0"


# --------------------------------------------------------------------- every benchmark, its k, the protocol


def test_every_benchmark_reaches_model_index_with_its_k(tiny_config, monkeypatch, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    folder = _push_folder(tiny_config, monkeypatch, tmp_path)
    readme = folder / "model" / "README.md"
    card = ModelCard.load(readme)
    by_bench = {r.dataset_name: r for r in card.data.eval_results}
    assert set(by_bench) == {"heldout", "math500"}
    assert by_bench["heldout"].metric_value == 50.0 and by_bench["heldout"].metric_args["k"] == 2
    assert by_bench["math500"].metric_value == 25.0 and by_bench["math500"].metric_args["k"] == 4
    assert by_bench["math500"].metric_args["max_tokens"] == 64
    name, results = model_index_to_eval_results(metadata_load(readme)["model-index"])
    assert len(results) == 2 and {r.metric_args["k"] for r in results} == {2, 4}


def test_the_card_states_the_protocol_and_the_k_sentence(tiny_config, monkeypatch, tmp_path):
    folder = _push_folder(tiny_config, monkeypatch, tmp_path)
    _, body = _meta_and_body((folder / "model" / "README.md").read_text())
    assert "pass@1 is the mean over the k samples of each problem" in body
    assert "| heldout | 6 | 2 | 0.6 | 0.95 | 48 |" in body
    assert "| math500 | 8 | 4 | 0.6 | 0.95 | 64 |" in body
    assert "| **student** (this model) | 50.00 | 25.00 |" in body
    assert "heldout has only 6 problems" in body and "math500 has only 8 problems" in body


# --------------------------------------------------------------------- the whole pipeline, pushed


def test_pushed_card_of_a_trace_dataset_run_with_two_benchmarks(monkeypatch, tmp_path, teacher_cache):
    """Done-when of issue 14: the dataset as teacher with its licence, both benchmarks with k in
    ``model-index``, and huggingface_hub's own parser reads the pushed card back."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from distill.config import config_from_dict
    from distill.pipeline import run
    from tests.conftest import tiny_config_dict, write_hub_parquet
    from tests.test_trace_dataset import _toy_rows

    folder = write_hub_parquet(tmp_path / "hub" / "open-r1" / "OpenR1-Math-220k", _toy_rows(12))
    sums = tmp_path / "sums.jsonl"
    sums.write_text("".join(json.dumps({"id": f"s{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(3)))
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["teacher"].update(kind="dataset", dataset={"path": str(folder)}, shard_size=6)
    raw["filter"]["decontaminate_heldout"] = False
    raw["export"] = {"nf4": False, "gguf": False}
    raw["eval"].update(models=["student"], benchmarks=[{"name": "heldout"}, {"name": "sums", "file": str(sums),
                                                                              "k": 3}])
    raw["hub"] = {"repo_id": "me/from-traces", "private": True}
    with HubStandIn(tokens=(TOKEN,)) as standin:
        point_client_at(monkeypatch, standin)
        monkeypatch.setattr(hub, "_sleep", lambda s: None)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        run(config_from_dict(raw))
        readme_bytes = standin.files("me/from-traces")["README.md"]
        dataset_readme = standin.files("me/from-traces-traces", "dataset")["README.md"].decode()
    readme = tmp_path / "pushed-README.md"
    readme.write_bytes(readme_bytes)
    card = ModelCard.load(readme)
    assert "open-r1/OpenR1-Math-220k" in card.data.datasets
    assert "| Teacher | the dataset open-r1/OpenR1-Math-220k (published traces) |" in card.text
    assert "| Teacher licence | apache-2.0 |" in card.text
    by_bench = {r.dataset_name: r.metric_args["k"] for r in card.data.eval_results}
    assert by_bench == {"heldout": 2, "sums": 3}
    _, results = model_index_to_eval_results(metadata_load(readme)["model-index"])
    assert {r.dataset_name for r in results} == {"heldout", "sums"}
    assert "pass@1 is the mean over the k samples of each problem" in card.text
    assert "license: apache-2.0" in dataset_readme
