"""`distill report` and the Python API, on one real tiny run (module-scoped) and on damaged copies of it.

What a person relies on: the report of a finished run shows every chart and table, the
HTML is one self-contained file whose images all load in a real browser, a partial or
damaged run folder still gets a report ("not run", never a traceback), and the API hands
back the run's traces, verdicts and eval samples as datasets/pandas objects.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distill import api
from distill.errors import ConfigError, UserError
from distill.publish.report import (build_report, canonical_benchmark, published_model_for, render_html, write_report)
from tests.conftest import REPO, tiny_config_dict, write_yaml

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FULL_CHARTS = {"stage_seconds", "funnel", "trace_lengths", "loss", "eval"}


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def tiny_run(module_tmp, teacher_cache) -> api.Run:
    """A complete tiny pipeline run (~20 s), made through the public API."""
    raw = tiny_config_dict(module_tmp, teacher_cache, name="full")
    raw["student"]["max_steps"] = 20  # the trainer logs the loss every 10 steps: two points for the curve
    return api.run(raw)


@pytest.fixture(scope="module")
def partial_run(module_tmp, teacher_cache) -> tuple[api.Run, dict]:
    """The same tiny config stopped after the filter, made with run_stage (upstream sample runs first)."""
    raw = tiny_config_dict(module_tmp, teacher_cache, name="partial")
    return api.run_stage(raw, "filter"), raw


def copy_run(run: api.Run, dest: Path) -> Path:
    shutil.copytree(run.path, dest, ignore=shutil.ignore_patterns("checkpoint-*", "report"))
    return dest


def statuses(report) -> dict[str, str]:
    return {s.key: s.status for s in report.sections}


# --------------------------------------------------------------------------- the report of a full run


def test_full_run_report_has_every_chart_and_table(tiny_run, tmp_path):
    files = write_report(tiny_run.path, tmp_path / "out")
    assert files.html == tmp_path / "out" / "report.html" and files.markdown.name == "report.md"
    assert {p.stem for p in files.images} == FULL_CHARTS
    for png in files.images:
        assert png.read_bytes().startswith(PNG_MAGIC) and png.parent == files.markdown.parent

    report = build_report(tiny_run.path)
    assert statuses(report) == {"overview": "ok", "stages": "ok", "funnel": "ok", "lengths": "ok", "loss": "ok",
                                "eval": "ok", "export": "ok", "budget": "not run"}
    md = files.markdown.read_text()
    for name in FULL_CHARTS:
        assert f"({name}.png)" in md
    for model in ("teacher", "student_base", "student", "student_4bit"):
        assert re.search(rf"^\| {model} \| heldout \| \d+\.\d \| ", md, re.M), model
    funnel = tiny_run.funnel()
    assert f"| kept | {funnel['kept']:,} |" in md and f"| total | {funnel['total']:,} |" in md
    assert "| nf4 | nf4 |" in md and "| gguf | model-f32.gguf |" in md
    assert "## Accuracy vs thinking budget" in md and "*status: not run*" in md
    assert "no published comparison" in md  # the arithmetic held-out set is no DeepSeek benchmark


def test_html_is_self_contained(tiny_run, tmp_path):
    html = write_report(tiny_run.path, tmp_path).html.read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(srcs) == len(FULL_CHARTS)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "<link" not in html and not re.search(r"<script[^>]*\ssrc=", html)
    assert not re.search(r'(src|href)="(https?:|//)', html)
    assert "url(" not in html  # no CSS fetches either


def test_budget_sweep_is_plotted_when_present(tiny_run, tmp_path):
    folder = copy_run(tiny_run, tmp_path / "run")
    sweep = {"model": "student", "points": [{"budget": 16, "pass_at_1": 0.1, "mean_tokens": 15.2},
                                            {"budget": 64, "pass_at_1": 0.3, "mean_tokens": 40.0},
                                            {"budget": 256, "pass_at_1": 0.35, "mean_tokens": 51.5}]}
    (folder / "eval" / "budget_sweep.json").write_text(json.dumps(sweep))
    files = write_report(folder)
    assert files.html.parent == folder / "report"
    report = build_report(folder)
    budget = report.section("budget")
    assert budget.status == "ok" and [c.name for c in budget.charts] == ["budget_sweep"]
    md = files.markdown.read_text()
    assert "(budget_sweep.png)" in md and "| 256 | 35.0 | 51.5 |" in md


# --------------------------------------------------------------------------- partial and damaged runs


def test_partial_run_reports_missing_stages_as_not_run(partial_run, tmp_path):
    run, _ = partial_run
    assert run.stages == {"sample": "done", "filter": "done", "train": "not run", "export": "not run",
                          "eval": "not run", "push": "not run"}
    files = write_report(run.path, tmp_path)
    report = build_report(run.path)
    assert statuses(report) == {"overview": "ok", "stages": "ok", "funnel": "ok", "lengths": "ok",
                                "loss": "not run", "eval": "not run", "export": "not run", "budget": "not run"}
    assert {p.stem for p in files.images} == {"stage_seconds", "funnel", "trace_lengths"}
    assert files.html.read_text().count(">not run</span>") == 4


def test_damaged_files_become_section_statuses_not_crashes(tiny_run, tmp_path):
    folder = copy_run(tiny_run, tmp_path / "run")
    (folder / "eval" / "results.json").unlink()  # a crash between the per-model files and results.json
    (folder / "eval" / "student.json").write_text("{not json")
    (folder / "train" / "losses.json").write_text('{"losses": [], "steps": 0}')
    (folder / "export" / "export.json").write_text("[1, 2")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["stages"]["eval"].update(status="failed", error="RuntimeError: boom")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    files = write_report(folder)
    report = build_report(folder)
    assert statuses(report)["eval"] == "partial" and statuses(report)["loss"] == "partial"
    assert statuses(report)["export"] == "unreadable"
    md = files.markdown.read_text()
    assert "| student_4bit | heldout |" in md and "| student | heldout |" not in md
    assert "error: RuntimeError: boom" in md and "JSONDecodeError" in md

    shutil.rmtree(folder / "sample")
    (folder / "filter" / "verdicts.jsonl").write_text('{"problem_id": "x", "sample_index": 0, "reason": "kept"}\n{"tor')
    assert statuses(build_report(folder))["lengths"] == "not run"


def test_a_folder_with_only_a_manifest_and_a_non_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.json").write_text(json.dumps({"created": "now", "stages": {}}))
    report = build_report(tmp_path / "empty")
    assert set(statuses(report).values()) == {"ok", "not run"}
    assert statuses(report)["stages"] == "not run"
    render_html(report)
    with pytest.raises(UserError, match="not a run folder"):
        write_report(tmp_path)


def test_published_r1_distill_numbers_beside_matching_benchmarks(tmp_path):
    folder = tmp_path / "r1-repro"
    (folder / "eval").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"stages": {"eval": {"status": "done", "seconds": 3.0}}}))
    write_yaml(folder / "config.yaml", {"name": "r1-repro", "student": {"model": "Qwen/Qwen2.5-Math-1.5B"},
                                        "teacher": {"model": "deepseek-ai/DeepSeek-R1"}})
    params = {"n": 64, "temperature": 0.6, "top_p": 0.95, "max_tokens": 32768, "seed": 0}

    def summary(bench, p):
        return {"benchmark": bench, "pass_at_1": p, "ci95_low": p - 0.05, "ci95_high": p + 0.05, "cons_at_k": p + 0.1,
                "problems": 30, "samples": 30 * 64, "truncated": 3, "params": params}

    (folder / "eval" / "results.json").write_text(json.dumps({
        "student": {"aime2024": summary("aime2024", 0.25), "math500": summary("math500", 0.8)},
        "student_base": {"aime2024": summary("aime2024", 0.02)},
    }))
    md = write_report(folder).markdown.read_text()
    assert "DeepSeek-R1-Distill-Qwen-1.5B pass@1 (published)" in md
    assert re.search(r"^\| student \| aime2024 \(AIME 2024\) \| 25\.0 \| .* \| 28\.9 \| 52\.7 \|$", md, re.M)
    assert re.search(r"^\| student \| math500 \(MATH-500\) \| 80\.0 \| .* \| 83\.9 \| – \|$", md, re.M)
    assert re.search(r"^\| student_base \| aime2024 \(AIME 2024\) \| 2\.0 \| .* \| – \| – \|$", md, re.M)
    assert "DeepSeek-AI 2025" in md and "Table 5" in md
    # the reference table lists every distilled model for the matched benchmarks
    assert re.search(r"^\| DeepSeek-R1-Distill-Llama-70B \| Llama-3.3-70B-Instruct \| 70\.0 \| 94\.5 \| 86\.7 \|$",
                     md, re.M)


@pytest.mark.parametrize("name, canonical", [("aime2024", "AIME 2024"), ("AIME_24", "AIME 2024"),
                                             ("math500", "MATH-500"), ("MATH-500-test", "MATH-500"),
                                             ("gpqa_diamond", "GPQA Diamond"), ("livecodebench_v5", "LiveCodeBench"),
                                             ("heldout", None), ("aime2025", None), ("math", None)])
def test_canonical_benchmark(name, canonical):
    assert canonical_benchmark(name) == canonical


@pytest.mark.parametrize("base, published", [
    ("Qwen/Qwen2.5-Math-1.5B", "DeepSeek-R1-Distill-Qwen-1.5B"), ("Qwen/Qwen2.5-Math-7B", "DeepSeek-R1-Distill-Qwen-7B"),
    ("Qwen/Qwen2.5-14B", "DeepSeek-R1-Distill-Qwen-14B"), ("Qwen/Qwen2.5-32B", "DeepSeek-R1-Distill-Qwen-32B"),
    ("meta-llama/Llama-3.1-8B", "DeepSeek-R1-Distill-Llama-8B"),
    ("meta-llama/Llama-3.3-70B-Instruct", "DeepSeek-R1-Distill-Llama-70B"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Qwen-7B"),
    ("toy", None), ("Qwen/Qwen2.5-0.5B", None), ("/data/my-model", None)])
def test_published_model_for(base, published):
    assert published_model_for(base) == published


# --------------------------------------------------------------------------- the CLI


def test_cli_report(tiny_run, tmp_path, capsys):
    from distill.cli import main

    assert main(["report", str(tiny_run.path), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "funnel.png").is_file()
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_import_and_help_stay_light():
    code = ("import sys, distill\n"
            "from distill.cli import main\n"
            "distill.open_run, distill.run, distill.run_stage, distill.load_config, distill.write_report\n"
            "try:\n    main(['report', '--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pandas', 'matplotlib') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "--out DIR" in out.stdout


# --------------------------------------------------------------------------- headless Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium_run(html: Path, tmp: Path, *mode: str) -> subprocess.CompletedProcess:
    browser = _chromium()
    assert browser
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'chromium-profile'}", *mode, html.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    html = write_report(tiny_run.path, tmp_path / "report").html
    shot = tmp_path / "report.png"
    proc = _chromium_run(html, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000")
    assert shot.is_file(), proc.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 50_000  # a page, not a blank

    dom = _chromium_run(html, tmp_path, "--virtual-time-budget=5000", "--dump-dom").stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    assert 'data-images-ok="true"' in body.group(0), body.group(0)
    assert f'data-images="{len(FULL_CHARTS)}"' in body.group(0)
    assert "Run report: full" in dom

    # the check can fail: a chart whose data does not decode is reported as not loaded
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]{40}", "base64,AAAA", html.read_text(), count=1))
    dom = _chromium_run(broken, tmp_path, "--virtual-time-budget=5000", "--dump-dom").stdout
    assert 'data-images-ok="false"' in dom


# --------------------------------------------------------------------------- the Python API


def test_api_reads_every_stage_output(tiny_run):
    run = api.open_run(tiny_run.path)
    assert run.stages == {**dict.fromkeys(("sample", "filter", "train", "export", "eval"), "done"),
                          "push": "incomplete"}  # no token: written locally, uploaded by a later run
    traces = run.traces()
    assert len(traces) == 48 and {"reasoning", "answer_text", "completion_tokens"} <= set(traces.column_names)
    df = run.traces(as_="pandas")
    assert df.shape[0] == 48 and sorted(df.sample_index.unique()) == [0, 1]
    assert len(run.traces(as_="records")) == 48
    funnel = run.funnel()
    assert len(run.kept()) == funnel["kept"] == len(run.kept(as_="pandas"))
    verdicts = run.verdicts(as_="pandas")
    assert len(verdicts) == 48 and (verdicts.reason == "kept").sum() == funnel["kept"]
    assert run.eval_models() == ["student", "student_4bit", "student_base", "teacher"]
    samples = run.eval_samples("student", as_="pandas")
    assert len(samples) == 6 * 2 and {"correct", "extracted", "reference"} <= set(samples.columns)
    assert len(run.eval_samples("teacher")) == 12
    results = run.results()
    assert set(results) == {"teacher", "student_base", "student", "student_4bit"}
    table = run.results(as_="pandas")
    assert table.loc["student", "pass_at_1"] == pytest.approx(results["student"]["pass_at_1"])
    assert run.summary["pass_at_1"]["student"] == round(results["student"]["pass_at_1"], 4)
    assert run.manifest["stages"]["train"]["status"] == "done"
    assert run.losses() and run.losses()[0][0] > 0
    assert "nf4" in run.export_info()
    assert run.config.run_dir == run.path and run.config.name == "full"
    files = run.report()
    assert files.html == run.path / "report" / "report.html" and files.html.is_file()
    with pytest.raises(api.StageNotRun, match="models evaluated: student"):
        run.eval_samples("gpt-5")
    with pytest.raises(UserError, match="as_="):
        run.traces(as_="polars")
    with pytest.raises(UserError, match="not a run folder"):
        api.open_run(run.path.parent)


def test_api_on_a_partial_run(partial_run):
    run, raw = partial_run
    assert len(run.traces()) == 48 and len(run.verdicts()) == 48
    for read in (run.results, run.losses, lambda: run.eval_samples("student"), run.export_info):
        with pytest.raises(FileNotFoundError):  # StageNotRun is both a UserError and a FileNotFoundError
            read()
    with pytest.raises(api.StageNotRun, match="stage eval"):
        run.results()

    # run_stage(force=True) re-runs exactly that stage; its upstream stays as it was
    marker = run.path / "filter" / "marker"
    marker.write_text("x")
    shard_mtimes = {p: p.stat().st_mtime_ns for p in (run.path / "sample" / "shards").glob("*.jsonl")}
    again = api.run_stage(raw, "filter", force=True)
    assert not marker.exists() and again.status("filter") == "done"
    assert {p: p.stat().st_mtime_ns for p in shard_mtimes} == shard_mtimes
    assert again.status("train") == "not run"
    with pytest.raises(UserError, match="unknown stage"):
        api.run_stage(raw, "distil")


def test_load_config_overrides(tmp_path, teacher_cache):
    path = write_yaml(tmp_path / "run.yaml", tiny_config_dict(tmp_path, teacher_cache))
    config = api.load_config(path, {"teacher.temperature": 0.7, "student.learning_rate": 1e-5,
                                    "eval.models": ["teacher", "student"], "output_dir": tmp_path / "elsewhere"})
    assert config.teacher.temperature == 0.7 and config.student.learning_rate == 1e-5
    assert config.eval.models == ["teacher", "student"] and config.run_dir == tmp_path / "elsewhere" / "tiny"
    assert api.load_config(path, ["filter.max_per_problem=1"]).filter.max_per_problem == 1
    with pytest.raises(ConfigError, match="teacher.temprature: unknown key"):
        api.load_config(path, {"teacher.temprature": 0.7})
    with pytest.raises(UserError, match="config file not found"):
        api.load_config(tmp_path / "missing.yaml")
    from distill.api import _as_config

    assert _as_config(config, {"name": "other"}).name == "other" and config.name == "tiny"
