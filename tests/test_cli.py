"""The CLI as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, run_cli, tiny_config_dict, write_yaml


def assert_one_line_error(proc, fragment: str):
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture
def config_file(tmp_path, teacher_cache):
    def make(**section_updates):
        raw = tiny_config_dict(tmp_path, teacher_cache)
        for section, values in section_updates.items():
            raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
        return write_yaml(tmp_path / "run.yaml", raw)

    return make


def test_help_needs_no_heavy_imports():
    code = ("import sys; from distill.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'vllm', 'transformers', 'trl') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "HEAVY []" in out.stdout


def test_validate_ok(config_file):
    proc = run_cli("validate", str(config_file()))
    assert proc.returncode == 0 and "ok" in proc.stdout


def test_validate_refuses_unknown_benchmark(config_file):
    proc = run_cli("validate", str(config_file(eval={"benchmarks": [{"name": "aime2042"}]})))
    assert_one_line_error(proc, "eval.benchmarks: unknown benchmark 'aime2042'")


def test_validate_needs_no_heavy_imports(config_file):
    import subprocess
    import sys

    code = ("import sys; from distill.cli import main\n"
            f"rc = main(['validate', {str(config_file())!r}])\n"
            "heavy = [m for m in ('torch', 'vllm', 'transformers', 'trl', 'datasets') if m in sys.modules]\n"
            "print('RC', rc, 'HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "RC 0 HEAVY []" in out.stdout, out.stdout + out.stderr


def test_misspelt_key(config_file):
    proc = run_cli("validate", str(config_file(teacher={"temprature": 0.6})))
    assert_one_line_error(proc, "teacher.temprature: unknown key (did you mean 'temperature'?)")


def test_wrong_type_via_set(config_file):
    proc = run_cli("run", str(config_file()), "--set", "eval.samples_per_problem=many")
    assert_one_line_error(proc, "eval.samples_per_problem")


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("run", str(tmp_path / "missing.yaml")), "config file not found")


def test_unknown_stage(config_file):
    assert_one_line_error(run_cli("run", str(config_file()), "--until", "deploy"), "unknown stage 'deploy'")


def test_missing_problem_file(config_file, tmp_path):
    cfg = config_file(problems={"source": "jsonl", "train_path": str(tmp_path / "none.jsonl"),
                                "heldout_path": str(tmp_path / "none2.jsonl")})
    assert_one_line_error(run_cli("run", str(cfg)), "problems file not found")


def test_empty_problem_set(config_file, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "held.jsonl").write_text('{"problem": "What is 1 + 2?", "answer": "3"}\n')
    cfg = config_file(problems={"source": "jsonl", "train_path": str(tmp_path / "empty.jsonl"),
                                "heldout_path": str(tmp_path / "held.jsonl")})
    assert_one_line_error(run_cli("run", str(cfg)), "training problem set is empty")


def test_bad_argument_exits_2():
    proc = run_cli("run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_show_on_a_non_run_folder(tmp_path):
    assert_one_line_error(run_cli("show", str(tmp_path)), "not a run folder")


def test_run_until_filter_then_show(config_file):
    cfg = config_file()
    proc = run_cli("run", str(cfg), "--until", "filter")
    assert proc.returncode == 0, proc.stderr
    assert "sample" in proc.stdout and "filter" in proc.stdout
    run_dir = cfg.parent / "runs" / "tiny"
    shown = run_cli("show", str(run_dir))
    assert shown.returncode == 0 and "filter funnel" in shown.stdout


def test_stage_failure_exits_1_and_names_stage_and_log(config_file, tmp_path):
    broken = tmp_path / "broken-teacher"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    proc = run_cli("run", str(config_file(teacher={"model": str(broken)})))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "stage sample failed" in proc.stderr and "run.log" in proc.stderr
    log = (tmp_path / "runs" / "tiny" / "logs" / "run.log").read_text()
    assert "Traceback" in log  # the details are kept for the user, in the log
