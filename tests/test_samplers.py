"""The transformers sampler behind the Sampler interface: n per prompt, greedy and sampled, finish reasons."""

from __future__ import annotations

import pytest

from distill.students.models import TinyModelSpec, build_tiny_model
from distill.students.toy_tokenizer import build_toy_tokenizer
from distill.teachers.backends.hf import TransformersSampler
from distill.teachers.sampler import SamplingParams


@pytest.fixture(scope="module")
def sampler():
    tok = build_toy_tokenizer(["What is 1 + 2? <think>\n1+2+0=3 carry 0\n</think>\n\n\\boxed{3}"] * 20)
    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           intermediate_size=64), tok)
    return TransformersSampler("tiny", model_obj=model, tokenizer=tok, batch_size=8)


PROMPTS = [[{"role": "user", "content": "What is 1 + 2?"}], [{"role": "user", "content": "What is 3 + 4?"}]]


def test_greedy_with_n_returns_n_identical_samples(sampler):
    out = sampler.generate(PROMPTS, SamplingParams(n=3, temperature=0.0, max_tokens=8, seed=0))
    assert [len(c) for c in out] == [3, 3]
    for completions in out:
        assert len({c.text for c in completions}) == 1
        assert completions[0] is not completions[1]


def test_sampled_n_per_prompt_and_length_finish(sampler):
    out = sampler.generate(PROMPTS, SamplingParams(n=2, temperature=0.6, top_p=0.95, max_tokens=5, seed=1))
    assert [len(c) for c in out] == [2, 2]
    for c in (c for group in out for c in group):
        assert c.finish_reason in ("stop", "length")
        assert c.prompt_tokens > 0 and c.completion_tokens <= 5
        if c.finish_reason == "length":
            assert c.completion_tokens == 5


def test_same_seed_same_samples(sampler):
    a = sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=3))
    b = sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=3))
    assert [[c.text for c in g] for g in a] == [[c.text for c in g] for g in b]


def test_greedy_batches_are_not_divided_by_n(sampler, monkeypatch):
    """Greedy n copies are generated once, so a batch holds batch_size prompts; sampled ones hold batch_size // n."""
    from distill.teachers.sampler import distinct_samples

    assert distinct_samples(SamplingParams(n=3, temperature=0.0)) == 1
    assert distinct_samples(SamplingParams(n=3, temperature=0.6)) == 3
    batches: list[int] = []
    generate_batch = sampler._generate_batch
    monkeypatch.setattr(sampler, "batch_size", 2)
    monkeypatch.setattr(sampler, "_generate_batch", lambda texts, p: batches.append(len(texts)) or generate_batch(texts, p))
    assert [len(c) for c in sampler.generate(PROMPTS, SamplingParams(n=2, temperature=0.0, max_tokens=4))] == [2, 2]
    assert [len(c) for c in sampler.generate(PROMPTS, SamplingParams(n=2, temperature=0.6, max_tokens=4))] == [2, 2]
    assert batches == [2, 1, 1]
