"""The README's quickstart, as a user runs it: fresh teacher cache, the real CLI, the shipped config."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_cli


@pytest.mark.slow
def test_quickstart_distils_and_a_rerun_skips_every_stage(tmp_path):
    """What the quickstart does, not how fast: its wall time is measured by bench/quickstart.py."""
    env = {"DISTILL_CACHE": str(tmp_path / "cache")}  # as on a fresh machine: the teacher is trained too
    out = tmp_path / "runs"
    proc = run_cli("run", str(REPO / "configs" / "quickstart.yaml"), "--set", f"output_dir={out}", env=env,
                   timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]

    report = json.loads((out / "quickstart" / "report.json").read_text())
    p = report["pass_at_1"]
    assert 0.4 <= p["teacher"] <= 0.95, p
    assert p["student_base"] <= 0.05, p
    assert p["student"] >= 0.6 * p["teacher"], p
    assert p["student"] >= p["student_base"] + 0.3, p
    assert "student_4bit" in p
    assert report["funnel"]["kept"] < report["funnel"]["total"]  # the filter had real work
    assert "pass@1" in proc.stdout and "student_4bit" in proc.stdout

    again = run_cli("run", str(REPO / "configs" / "quickstart.yaml"), "--set", f"output_dir={out}", env=env)
    assert again.returncode == 0
    assert again.stdout.count("skipped (up to date)") == 5  # push, with no token, stays to be uploaded
    assert "written locally, not uploaded" in again.stdout
