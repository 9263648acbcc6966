"""The notebooks run top to bottom in a real Jupyter kernel, as a person would run them.

quickstart.ipynb makes a small quickstart run; analyze_run.ipynb is then pointed at that run
(DISTILL_RUN_DIR), and separately left to make its own demo run. DISTILL_CACHE and the output
folders are temporary, so nothing lands in the checkout or the user's cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO

NOTEBOOKS = REPO / "notebooks"


def _kernel_available() -> bool:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return "python3" in KernelSpecManager().find_kernel_specs()
    except Exception:  # noqa: BLE001 - no jupyter_client, no kernel: the notebook tests skip
        return False


def execute(name: str, env: dict[str, str], cwd: Path, timeout: int = 900):
    """Run every cell of a notebook in a fresh python3 kernel; a cell that raises fails the test."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not _kernel_available():
        pytest.skip("no python3 Jupyter kernel (pip install ipykernel)")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [saved.get("PYTHONPATH")])])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def text_outputs(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(notebook) -> int:
    return sum("image/png" in out.get("data", {}) for c in notebook.cells for out in c.get("outputs", []))


@pytest.mark.parametrize("name", ["quickstart.ipynb", "analyze_run.ipynb"])
def test_committed_notebooks_have_no_outputs(name):
    notebook = json.loads((NOTEBOOKS / name).read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:80]


@pytest.mark.slow
def test_quickstart_notebook_then_analyze_its_run(tmp_path):
    env = {"DISTILL_CACHE": str(tmp_path / "cache"), "DISTILL_OUTPUT_DIR": str(tmp_path / "runs")}
    quick = execute("quickstart.ipynb", env, tmp_path)
    run_dir = tmp_path / "runs" / "quickstart-small"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s: e["status"] for s, e in manifest["stages"].items()} == {
        **dict.fromkeys(("sample", "filter", "train", "export", "eval"), "done"), "push": "incomplete"}  # no token
    out = text_outputs(quick)
    for model in ("teacher", "student_base", "student", "student_4bit"):
        assert model in out
    assert images(quick) == 2  # funnel and loss curve
    assert (run_dir / "report" / "report.html").is_file()
    assert not (REPO / "runs" / "quickstart-small").exists()

    analyzed = execute("analyze_run.ipynb", {**env, "DISTILL_RUN_DIR": str(run_dir)}, tmp_path)
    out = text_outputs(analyzed)
    # the quickstart config runs the thinking-budget sweep (eval.budget_sweep), so its curve is plotted too
    assert "quickstart-small" in out and "thinking-budget sweep: not run" not in out
    assert images(analyzed) == 3  # trace lengths, loss curve and accuracy vs thinking budget
    assert not (tmp_path / "runs" / "demo").exists()  # it analysed the given run, made none of its own


def test_analyze_notebook_makes_a_demo_run_without_a_run_dir(tmp_path, teacher_cache):
    # The demo's toy teacher is the one the tiny test config trains, so the session's cache can serve it:
    # DISTILL_CACHE/toy-teachers is where the toy teacher is looked for.
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "toy-teachers").symlink_to(teacher_cache, target_is_directory=True)
    env = {"DISTILL_CACHE": str(tmp_path / "cache"), "DISTILL_OUTPUT_DIR": str(tmp_path / "runs")}
    os.environ.pop("DISTILL_RUN_DIR", None)
    analyzed = execute("analyze_run.ipynb", env, tmp_path)
    assert (tmp_path / "runs" / "demo" / "report" / "report.html").is_file()
    out = text_outputs(analyzed)
    assert "Run('" in out and "eval: not run" not in out
