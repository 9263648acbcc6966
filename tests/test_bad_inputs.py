"""Bad input files and paths, as a user meets them through `distill run`: exit 2, one line naming the file (and
line) and what to do, never a traceback, and before any model is loaded or trained (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.problems import load_jsonl_problems
from distill.records import read_jsonl
from tests.conftest import run_cli, tiny_config_dict, write_yaml
from tests.test_cli import assert_one_line_error

GOOD = '{"id": "a", "problem": "What is 1 + 2?", "answer": "3"}\n'
HELD = '{"id": "h", "problem": "What is 2 + 2?", "answer": "4"}\n'


@pytest.fixture
def config_file(tmp_path):
    """A tiny run config whose toy teacher would be trained in a fresh (so far empty) cache folder."""
    def make(**section_updates):
        raw = tiny_config_dict(tmp_path, tmp_path / "toy-cache")
        for section, values in section_updates.items():
            raw[section] = {**raw.get(section, {}), **values}
        return write_yaml(tmp_path / "run.yaml", raw)

    return make


def _problem_files(tmp_path: Path, train: bytes | str, held: str = HELD) -> dict:
    (tmp_path / "train.jsonl").write_bytes(train if isinstance(train, bytes) else train.encode())
    (tmp_path / "held.jsonl").write_text(held)
    return {"source": "jsonl", "train_path": str(tmp_path / "train.jsonl"),
            "heldout_path": str(tmp_path / "held.jsonl"), "train_size": 10, "heldout_size": 1}


def _nothing_ran(tmp_path: Path) -> None:
    """The run stopped at the static checks: no run folder, no toy teacher trained."""
    assert not (tmp_path / "runs" / "tiny").exists()
    assert not any((tmp_path / "toy-cache").glob("*"))


# ---- problem files ---------------------------------------------------------------------------------------------

def test_malformed_problem_line_names_file_and_line(config_file, tmp_path):
    cfg = config_file(problems=_problem_files(tmp_path, GOOD + "\n" + '{"id": "b", "problem": "x" "answer": 1}\n'))
    proc = run_cli("run", str(cfg))
    assert_one_line_error(proc, f"{tmp_path / 'train.jsonl'}: line 3 is not valid JSON")
    _nothing_ran(tmp_path)


def test_malformed_last_line_without_newline_is_not_silently_dropped(config_file, tmp_path):
    cfg = config_file(problems=_problem_files(tmp_path, GOOD + '{"id": "b", "problem": "What'))
    assert_one_line_error(run_cli("run", str(cfg)), "train.jsonl: line 2 is not valid JSON")
    _nothing_ran(tmp_path)


def test_non_utf8_problem_file_names_file_and_line(config_file, tmp_path):
    latin1 = '{"id": "b", "problem": "Combien font 2 + 3 ? Réponds.", "answer": "5"}\n'.encode("latin-1")
    cfg = config_file(problems=_problem_files(tmp_path, GOOD.encode() + latin1))
    proc = run_cli("run", str(cfg))
    assert_one_line_error(proc, "train.jsonl: line 2 is not UTF-8")
    assert "save it as UTF-8" in proc.stderr
    _nothing_ran(tmp_path)


def test_a_line_that_is_not_an_object(config_file, tmp_path):
    cfg = config_file(problems=_problem_files(tmp_path, GOOD + '["What is 1 + 1?", "2"]\n'))
    assert_one_line_error(run_cli("run", str(cfg)), "train.jsonl: line 2 is a JSON array, not an object")
    _nothing_ran(tmp_path)


def test_duplicate_problem_ids_fail_before_the_toy_teacher_is_trained(config_file, tmp_path):
    rows = GOOD + '{"id": "b", "problem": "What is 1 + 4?", "answer": "5"}\n' \
                  '{"id": "a", "problem": "What is 1 + 5?", "answer": "6"}\n'
    cfg = config_file(problems=_problem_files(tmp_path, rows))
    proc = run_cli("run", str(cfg))
    assert_one_line_error(proc, "train.jsonl: line 3 repeats problem id 'a' (first on line 1)")
    _nothing_ran(tmp_path)


def test_missing_field_counts_lines_not_rows(tmp_path):
    (tmp_path / "p.jsonl").write_text("\n" + GOOD + "\n" + '{"id": "b", "problem": "x"}\n')
    with pytest.raises(UserError, match=r"p.jsonl: line 4 lacks field\(s\) answer"):
        load_jsonl_problems(tmp_path / "p.jsonl")


def test_a_bad_held_out_file_fails_at_once_too(config_file, tmp_path):
    cfg = config_file(problems=_problem_files(tmp_path, GOOD, held=HELD + "{oops\n"))
    assert_one_line_error(run_cli("run", str(cfg)), "held.jsonl: line 2 is not valid JSON")
    _nothing_ran(tmp_path)


def test_read_jsonl_keeps_tolerating_a_torn_tail_in_run_files(tmp_path):
    (tmp_path / "shard.jsonl").write_text('{"a": 1}\n{"a": 2')
    assert list(read_jsonl(tmp_path / "shard.jsonl")) == [{"a": 1}]
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        list(read_jsonl(tmp_path / "shard.jsonl", strict=True))


# ---- trace datasets --------------------------------------------------------------------------------------------

def _dataset_config(config_file, path: Path):
    return config_file(teacher={"kind": "dataset", "dataset": {"path": str(path)}})


def test_malformed_trace_dataset_line(config_file, tmp_path):
    good = json.dumps({"problem": "What is 1 + 2?", "answer": "3", "response": "<think>1+2=3</think> \\boxed{3}"})
    (tmp_path / "traces.jsonl").write_text(good + "\n" + good[:-5] + "\n" + good + "\n")
    proc = run_cli("run", str(_dataset_config(config_file, tmp_path / "traces.jsonl")))
    assert_one_line_error(proc, f"{tmp_path / 'traces.jsonl'}: line 2 is not valid JSON")
    assert "stage sample failed" not in proc.stderr


def test_non_utf8_trace_dataset(config_file, tmp_path):
    row = {"problem": "Combien font 1 + 2 ?", "answer": "3",
           "response": "<think>1+2=3, très simple</think> \\boxed{3}"}
    (tmp_path / "traces.jsonl").write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode("latin-1"))
    proc = run_cli("run", str(_dataset_config(config_file, tmp_path / "traces.jsonl")))
    assert_one_line_error(proc, "traces.jsonl: line 1 is not UTF-8")


def test_a_corrupt_parquet_trace_dataset(config_file, tmp_path):
    (tmp_path / "traces.parquet").write_bytes(b"PAR1 this is not parquet")
    proc = run_cli("run", str(_dataset_config(config_file, tmp_path / "traces.parquet")))
    assert_one_line_error(proc, "traces.parquet: not a readable Parquet file")


def test_a_missing_local_trace_dataset_fails_before_anything_runs(config_file, tmp_path):
    proc = run_cli("run", str(_dataset_config(config_file, tmp_path / "nope" / "traces.jsonl")))
    assert_one_line_error(proc, "teacher.dataset.path: no such file or folder")
    _nothing_ran(tmp_path)


# ---- the config file itself ------------------------------------------------------------------------------------

def test_non_utf8_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"name: tiny\n# caf\xe9 au lait\nteacher: {model: toy}\n")
    proc = run_cli("run", str(path))
    assert_one_line_error(proc, f"{path}: line 2 is not UTF-8")


# ---- local model paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, value", [("teacher", "./nope"), ("student", "/abs/nope"),
                                            ("student", "~/no-such-model-folder"), ("teacher", "models/missing")])
def test_a_missing_local_model_folder_is_named(config_file, tmp_path, section, value):
    (tmp_path / "models").mkdir()  # part of "models/missing" exists: a path, not a Hub id
    cfg = config_file(**{section: {"model": value}})
    proc = run_cli("run", str(cfg), cwd=tmp_path)
    assert_one_line_error(proc, f"{section}.model: no such folder {value!r}")
    assert "Repo id" not in proc.stderr
    _nothing_ran(tmp_path)


def test_a_hub_id_is_not_taken_for_a_path(tmp_path):
    from distill.input_checks import looks_like_local_path

    (tmp_path / "runs").mkdir()
    assert not looks_like_local_path("Qwen/Qwen2.5-Math-1.5B", cwd=tmp_path)
    assert not looks_like_local_path("deepseek-ai/DeepSeek-R1", cwd=tmp_path)
    assert looks_like_local_path("./Qwen2.5", cwd=tmp_path)
    assert looks_like_local_path("runs/student/final", cwd=tmp_path)  # part of it exists here
    assert looks_like_local_path("runs/student", cwd=tmp_path)
    assert looks_like_local_path("a/b/c", cwd=tmp_path)  # a Hub id has one slash


def test_validate_lists_what_is_missing_here_without_failing(config_file, tmp_path):
    """`distill validate` checks a config anywhere (the shipped recipes name data/ you prepare); `run` refuses."""
    cfg = config_file(problems={"source": "jsonl", "train_path": str(tmp_path / "absent.jsonl"),
                                "heldout_path": str(tmp_path / "absent2.jsonl")}, student={"model": "./nope"})
    proc = run_cli("validate", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "absent.jsonl" in proc.stdout and "student.model" in proc.stdout
    assert_one_line_error(run_cli("run", str(cfg)), "problems file not found")


def test_a_trace_row_without_the_problem_column_is_named():
    from distill.teachers.backends.trace_dataset import to_records

    rows = [{"problem": "What is 1 + 2?", "response": "<think>3</think> \\boxed{3}"}, {"response": "\\boxed{4}"}]
    with pytest.raises(UserError, match=r"traces.jsonl: row 2 has no 'problem' column"):
        to_records(rows, label="traces.jsonl")


def test_missing_or_bad_eval_files_fail_before_sampling(config_file, tmp_path):
    """An eval benchmark file or a decontamination set is read hours after sampling starts: check it first."""
    cfg = config_file(eval={"benchmarks": [{"name": "heldout"}, {"name": "mine", "file": str(tmp_path / "no.jsonl")}]})
    assert_one_line_error(run_cli("run", str(cfg), "--until", "sample"), "eval.benchmarks[1].file")
    _nothing_ran(tmp_path)
    (tmp_path / "aime.jsonl").write_text(HELD + HELD)
    cfg = config_file(filter={"decontaminate_against": [str(tmp_path / "aime.jsonl")]})
    assert_one_line_error(run_cli("run", str(cfg), "--until", "sample"), "aime.jsonl: line 2 repeats problem id 'h'")
    _nothing_ran(tmp_path)
