"""A prompt that ends inside ``<think>`` (the R1 / R1-Distill template's prefill): a truncated trace is all reasoning.

The real R1-Distill-Qwen tokenizer (../shared/data/tokenizers) with its upstream template revision, whose
generation prompt is ``<｜Assistant｜><think>\\n``, and the training template the student is saved with,
through each in-process backend: transformers and vLLM for real on a tiny random model of the
R1-Distill-Qwen-1.5B architecture, llama.cpp's completion handling with its real rendered prompt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from distill.records import Problem
from distill.students.arch_configs import published_config
from distill.teachers.chat_render import render_prompt_state, render_state
from distill.teachers.reasoning import split_reasoning
from distill.teachers.sampling_types import SamplingParams
from distill.teachers.service import to_trace
from tests.conftest import REPO, SHARED_DATA

TOKENIZER = SHARED_DATA / "tokenizers" / "deepseek-r1-distill-qwen"
pytestmark = pytest.mark.skipif(not TOKENIZER.is_dir(), reason="../shared/data/tokenizers absent")
PROMPT = [{"role": "user", "content": "What is 2 + 3? Put the answer in \\boxed{}."}]
TRUNCATED = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=6, seed=0)


def upstream_revision(original: str) -> str:
    """The stock template's later upstream revision: the generation prompt prefills ``<think>\\n``."""
    stock = "{{'<｜Assistant｜>'}}{% endif %}"
    assert original.endswith(stock)
    return original[: -len(stock)] + "{{'<｜Assistant｜><think>\\n'}}{% endif %}"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    tok.chat_template = upstream_revision(tok.chat_template)
    return tok


def test_the_rendered_prompt_says_whether_it_leaves_think_open(tokenizer):
    from distill.students.templates import R1_DISTILL_TRAINING_TEMPLATE

    text, open_ = render_prompt_state(tokenizer, PROMPT)
    assert text.endswith("<｜Assistant｜><think>\n") and open_
    stock = json.loads((TOKENIZER / "tokenizer_config.json").read_text())["chat_template"]
    render = (lambda template: lambda m: tokenizer.apply_chat_template(m, chat_template=template, tokenize=False,
                                                                        add_generation_prompt=True))
    assert render_state(render(stock), PROMPT) == (render(stock)(PROMPT), False)  # original release: no prefill
    assert render_state(render(R1_DISTILL_TRAINING_TEMPLATE), PROMPT)[1]  # the template students are saved with
    # continuing an assistant message: open until it closes its thinking
    assert render_prompt_state(tokenizer, [*PROMPT, {"role": "assistant", "content": "<think>\nI add"}])[1]
    assert not render_prompt_state(tokenizer, [*PROMPT, {"role": "assistant",
                                                         "content": "<think>\nI add\n</think>\n\n"}])[1]


@pytest.fixture(scope="module")
def tiny_model(tokenizer, tmp_path_factory):
    """R1-Distill-Qwen-1.5B's published configuration shrunk by the rehearsal's own :func:`tiny_model_dir`
    (its 12 heads and 2 KV heads, untied 151,936-token vocabulary, RoPE kept; 2 layers, head_dim 32), saved with
    the real tokenizer and the upstream template revision that prefills ``<think>``."""
    from transformers import AutoModelForCausalLM

    from distill.rehearse.shrink import TokenizerChoice, tiny_model_dir

    choice = TokenizerChoice(TOKENIZER, overrides={"chat_template": tokenizer.chat_template})
    folder = tiny_model_dir(published_config("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"), choice,
                            tmp_path_factory.mktemp("r1-distill-tiny") / "model")
    return folder, AutoModelForCausalLM.from_pretrained(str(folder), dtype="float32")


def _assert_truncated_thinking_is_reasoning(completion, sampler) -> None:
    assert completion.finish_reason == "length" and completion.prefilled_think
    assert "<think>" not in completion.text and "</think>" not in completion.text
    trace = to_trace(Problem(id="p", problem="2+3", answer="5"), 0, PROMPT, completion, sampler, TRUNCATED)
    assert (trace.think_closed, trace.answer_text) == (False, "")
    assert trace.reasoning == completion.text.strip()


def test_transformers_backend_files_a_truncated_prefilled_trace_as_reasoning(tokenizer, tiny_model):
    from distill.teachers.backends.hf import TransformersSampler

    folder, model = tiny_model
    sampler = TransformersSampler(str(folder), model_obj=model, tokenizer=tokenizer, dtype="float32", device="cpu")
    [[completion]] = sampler.generate([PROMPT], TRUNCATED)
    _assert_truncated_thinking_is_reasoning(completion, sampler)
    # the same text without the flag is what the old split made of it: the thinking filed as the answer
    assert split_reasoning(completion.text).answer == completion.text.strip()


def test_llamacpp_backend_marks_a_prompt_its_template_prefills(tokenizer):
    """llama.cpp's generate with the GGUF's chat template rendered for real; the engine's reply stands in."""
    from distill.teachers.backends.llamacpp import LlamaCppSampler

    class Engine:  # what llama_cpp.Llama.create_completion returns for a generation cut at max_tokens
        def tokenize(self, data, add_bos=False, special=True):
            return tokenizer(data.decode("utf-8"), add_special_tokens=False)["input_ids"]

        def create_completion(self, ids, **_):
            self.prompt = tokenizer.decode(ids)
            return {"choices": [{"text": "Okay, so I need to add", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": len(ids), "completion_tokens": 6}}

    sampler = LlamaCppSampler.__new__(LlamaCppSampler)
    sampler.llm, sampler.n_ctx, sampler.chat_template = Engine(), 4096, tokenizer.chat_template
    sampler._special = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token}
    sampler.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    sampler.name = "gguf"
    [[completion]] = sampler.generate([PROMPT], TRUNCATED)
    assert sampler.llm.prompt.endswith("<｜Assistant｜><think>\n")
    _assert_truncated_thinking_is_reasoning(completion, sampler)


VLLM_SCRIPT = r"""
import json, sys
from distill.teachers.sampler import SamplingParams, make_sampler
sampler = make_sampler("vllm", sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=256)
prompt = [{"role": "user", "content": "What is 2 + 3? Put the answer in \\boxed{}."}]
[[c]] = sampler.generate([prompt], SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=6, seed=0))
sampler.close()
print("RESULT " + json.dumps(c.__dict__))
"""


@pytest.mark.slow
def test_vllm_backend_files_a_truncated_prefilled_trace_as_reasoning(tiny_model):
    pytest.importorskip("vllm")
    folder, _ = tiny_model
    proc = subprocess.run([sys.executable, "-c", VLLM_SCRIPT, str(folder)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    fields = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    from distill.teachers.sampling_types import Completion

    counter = SimpleNamespace(name="vllm", count_tokens=lambda text: len(text.split()))
    _assert_truncated_thinking_is_reasoning(Completion(**fields), counter)
