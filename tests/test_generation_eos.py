"""The saved student stops at the end of its turn with a plain `generate()`.

A base checkpoint's generation_config.json names its end-of-document token (Qwen2.5-Math: `<|endoftext|>`,
Llama-3.1-8B: `<|end_of_text|>`); the student learns to end its turn with the chat template's end-of-turn
token (`<|im_end|>`, `<|eot_id|>`, `<｜end▁of▁sentence｜>`). The save path must write a generation config
whose EOS includes that token (and the tokenizer's EOS), with a pad token that is not it.

Real tokenizers from ../shared/data/tokenizers (skipped when absent); each tiny student is trained one
step and saved by `train_sft` (the real save path, full and QLoRA). Random weights never choose the end-of-turn token, so
a logits processor forces it as the third new token: `generate()` must stop right there.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.conftest import SHARED_DATA

TOKENIZERS = SHARED_DATA / "tokenizers"
# tokenizer folder, architecture, the base model's own generation EOS, the template's end-of-turn token
CASES = {
    "qwen2.5-instruct": ("qwen2", "<|endoftext|>", "<|im_end|>"),  # Qwen2.5-Math-1.5B/7B bases
    "llama-3.1-instruct": ("llama", "<|end_of_text|>", "<|eot_id|>"),  # Llama-3.1-8B base
    "deepseek-r1-distill-qwen": ("qwen2", "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
}
FORCED_AT = 3


def load_tokenizer(name: str):
    folder = TOKENIZERS / name
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    if name.startswith("llama") and importlib.util.find_spec("tiktoken") is None:
        pytest.skip("the Llama-3.1 tokenizer.model needs tiktoken")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


class ForceTokenAt:
    """A logits processor that makes ``token_id`` the ``step``-th new token (counting from 1)."""

    def __init__(self, prompt_length: int, token_id: int, step: int):
        self.prompt_length, self.token_id, self.step = prompt_length, token_id, step

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_length == self.step - 1:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.token_id] = 0.0
        return scores


def new_tokens(model, tokenizer, end_id: int) -> list[int]:
    from transformers import LogitsProcessorList

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = prompt["input_ids"]
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False,
                         logits_processor=LogitsProcessorList([ForceTokenAt(ids.shape[1], end_id, FORCED_AT)]))
    return out[0, ids.shape[1]:].tolist()


def base_folder(tmp_path, name: str):
    """A tiny random base of the family's architecture, saved with the base model's generation EOS."""
    from distill.students.models import TinyModelSpec, build_tiny_model

    architecture, base_eos, _ = CASES[name]
    tokenizer = load_tokenizer(name)
    spec = TinyModelSpec(architecture=architecture, hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                         intermediate_size=128)
    model = build_tiny_model(spec, tokenizer, seed=0)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(base_eos)
    model.generation_config.pad_token_id = None
    folder = tmp_path / "base"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "qlora"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_trained_student_stops_at_its_end_of_turn_token(tmp_path, name, method):
    """Both save paths: the trained model itself (full; TRL mirrors the tokenizer's EOS onto it), and the
    adapters merged into the base reloaded from disk (QLoRA here, and every sharded LoRA run), which
    carries the base's generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.students.trainer import TrainSettings, to_training_example, train_sft

    base = base_folder(tmp_path, name)
    _, base_eos, end = CASES[name]
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    examples = [to_training_example(prompt, "2 plus 3 is 5.", "The answer is 5.")] * 2
    result = train_sft(str(base), AutoTokenizer.from_pretrained(str(base)), examples, tmp_path / "train",
                       TrainSettings(method=method, max_steps=1, batch_size=2, max_length=128, save_steps=1000,
                                     logging_steps=1))

    student = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(result.model_dir))
    end_id, base_eos_id = tokenizer.convert_tokens_to_ids(end), tokenizer.convert_tokens_to_ids(base_eos)
    eos = student.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    assert eos[0] == end_id and tokenizer.eos_token_id in eos and base_eos_id in eos, (eos, end_id)
    pad = student.generation_config.pad_token_id
    assert pad is not None and pad != end_id and pad < len(tokenizer)
    assert student.config.pad_token_id == pad

    generated = new_tokens(student, tokenizer, end_id)
    assert len(generated) == FORCED_AT and generated[-1] == end_id, generated

    if end_id != base_eos_id:  # the defect this guards: with the base's config generation runs on
        base_model = AutoModelForCausalLM.from_pretrained(str(base))
        assert len(new_tokens(base_model, tokenizer, end_id)) > FORCED_AT


@pytest.mark.parametrize("name", list(CASES))
def test_the_generation_config_adds_the_templates_end_of_turn_to_the_bases_eos(name):
    from transformers import GenerationConfig

    from distill.students.templates import apply_training_template
    from distill.students.train_save import end_of_turn_token, student_generation_config
    from distill.students.trainer import ensure_distinct_pad

    tokenizer = load_tokenizer(name)
    _, base_eos, end = CASES[name]
    apply_training_template(tokenizer)  # what the trainer does before it trains and saves
    ensure_distinct_pad(tokenizer)
    assert end_of_turn_token(tokenizer) == end

    class Base:
        generation_config = GenerationConfig(eos_token_id=tokenizer.convert_tokens_to_ids(base_eos))

    config = student_generation_config(Base(), tokenizer)
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    expected = list(dict.fromkeys([tokenizer.convert_tokens_to_ids(end), tokenizer.eos_token_id,
                                   tokenizer.convert_tokens_to_ids(base_eos)]))
    assert eos == expected
    assert config.pad_token_id == tokenizer.pad_token_id and config.pad_token_id != eos[0]
    assert Base.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids(base_eos)  # not edited in place
