"""SIGKILL during round 2 of adaptive sampling, then the same command again: no sample or verdict lost or
duplicated, and the teacher asked only for the keys the store lacked.  A real subprocess (the sample stage
with the scripted teacher of tests/adaptive_scripted.py), really killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.adaptive_scripted import asked, even_sum_solved
from tests.conftest import REPO, write_yaml

PROBLEMS = 16


def stored_rows(store: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((store / "chunks").glob("*.jsonl")) for line in p.read_text().splitlines()]


def start(config: Path, log: Path, delay_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "adaptive_scripted.py"), str(config), str(log),
                             str(delay_s)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.slow
def test_sigkill_during_round_two_then_rerun_loses_and_duplicates_nothing(tmp_path):
    raw = {"name": "killed", "output_dir": str(tmp_path / "runs"),
           "problems": {"source": "arithmetic", "train_size": PROBLEMS, "heldout_size": 4, "min_digits": 1,
                        "max_digits": 2, "seed": 0},
           "teacher": {"model": "scripted/teacher", "max_tokens": 64, "shard_size": 2,
                       "sampling": {"mode": "adaptive", "target_per_problem": 1, "max_per_problem": 8}}}
    config = write_yaml(tmp_path / "run.yaml", raw)
    store = tmp_path / "runs" / "killed" / "trace_store"
    log = tmp_path / "teacher.log"
    proc = start(config, log, delay_s=0.4)  # slow enough a teacher to land the kill inside round 2
    deadline = time.time() + 240
    while not (store / "chunks").is_dir() or not any(r["sample_index"] == 1 for r in stored_rows(store)):
        assert proc.poll() is None, f"finished before round 2: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "round 2 never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = stored_rows(store)
    keys_at_kill = Counter(r["trace_key"] for r in at_kill)
    assert max(r["sample_index"] for r in at_kill) < 7, "the run got past round 2 before the kill"
    asked_before = asked(log)

    rerun = start(config, log, delay_s=0.0)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-3000:]

    rows = stored_rows(store)
    keys = Counter(r["trace_key"] for r in rows)
    assert max(keys.values()) == 1  # no sample stored twice
    assert all(keys_at_kill[k] == 1 and k in keys for k in keys_at_kill)  # none lost
    # the rounds' outcome is the uninterrupted one: an even sum is solved at once, an odd one never (8 samples)
    from distill.problems import problem_sets
    from distill.config import load_config
    from distill.teachers.prompts import build_prompt

    train, _ = problem_sets(load_config(config))
    texts = {p.id: build_prompt(p)[-1]["content"] for p in train}
    want = {text: 1 if even_sum_solved(text, 0) else 8 for text in texts.values()}
    prompts = Counter(r["prompt"][-1]["content"] for r in rows)
    assert prompts == Counter(want)
    # the rerun asked the teacher for exactly the keys the store lacked at the kill
    stored_at_kill = Counter(r["prompt"][-1]["content"] for r in at_kill)
    asked_after = asked(log) - asked_before
    assert asked_after == Counter({t: n - stored_at_kill[t] for t, n in want.items() if n > stored_at_kill[t]})
    # one verdict per stored trace: one verdict file per chunk, a line per trace, none doubled
    verdicts = [json.loads(line) for p in sorted((store / "verdicts").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert len(list((store / "verdicts").glob("*.jsonl"))) == len(list((store / "chunks").glob("*.jsonl")))
    assert Counter(v["key"] for v in verdicts) == keys
    manifest = json.loads((tmp_path / "runs" / "killed" / "manifest.json").read_text())
    counts = manifest["stages"]["sample"]["counts"]
    assert manifest["stages"]["sample"]["status"] == "done"
    assert sorted(counts["unsolved"]) == sorted(pid for pid, t in texts.items() if not even_sum_solved(t, 0))
    assert counts["reused_traces"] >= len(keys_at_kill)


@pytest.mark.slow
def test_the_quickstart_samples_adaptively_with_one_set_and_the_report_shows_coverage(tmp_path):
    """The shipped quickstart with one --set (fewer problems and --until filter keep it short; the toy teacher
    is the quickstart's own, cached after its first training)."""
    from tests.conftest import run_cli

    out = tmp_path / "runs"
    proc = run_cli("run", str(REPO / "configs" / "quickstart.yaml"), "--set", "teacher.sampling.mode=adaptive",
                   "--set", f"output_dir={out}", "--set", "problems.train_size=150", "--until", "filter",
                   timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "quickstart"
    counts = json.loads((run_dir / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert counts["sampling_mode"] == "adaptive"
    assert counts["problems_done"] + counts["problems_unsolved"] == 150 and counts["problems_open"] == 0
    assert counts["traces"] < 150 * 8  # the verdicts stopped the easy problems early
    filt = json.loads((run_dir / "manifest.json").read_text())["stages"]["filter"]["counts"]
    assert 0 < filt["reused_verdicts"] <= counts["traces"]  # every trace that reached the verifier
    assert json.loads((run_dir / "report.json").read_text())["sampling"]["verified_traces"] > 0
    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr[-2000:]
    md = (run_dir / "report" / "report.md").read_text()
    section = md.split("## Coverage vs teacher tokens", 1)[1].split("\n## ", 1)[0]
    assert "adaptive, target 1 verified, at most 8 per problem" in section
    assert f"{counts['problems_done']} / 0 / {counts['problems_unsolved']}" in section
    assert "coverage.png" in section or "matplotlib" in section
