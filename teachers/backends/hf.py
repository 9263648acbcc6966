"""The transformers backend: local models on CPU or GPU, for small teachers, students and tests."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Sequence

from distill.teachers.chat_render import mark_think_open, render_prompt_state
from distill.teachers.sampling_types import Completion, Messages, SamplingParams, distinct_samples

log = logging.getLogger(__name__)


class TransformersSampler:
    """Batched ``model.generate`` with left padding and the tokenizer's chat template."""

    def __init__(self, model: str, batch_size: int = 32, dtype: str = "float32", device: str | None = None,
                 model_obj: Any = None, tokenizer: Any = None, **_: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = str(model)
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
        self.tokenizer.padding_side = "left"
        if model_obj is not None:
            self.model = model_obj
        else:
            torch_dtype = getattr(torch, dtype)
            self.model = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch_dtype)
            if not _is_quantized(self.model):
                self.model.to(self.device)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.eos_ids.discard(None)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        import torch

        torch.manual_seed(params.seed)
        rendered = [render_prompt_state(self.tokenizer, p) for p in prompts]
        texts = [text for text, _ in rendered]
        results: list[list[Completion]] = []
        per_batch = max(1, self.batch_size // max(1, distinct_samples(params)))
        for start in range(0, len(texts), per_batch):
            results.extend(self._generate_batch(texts[start : start + per_batch], params))
        # a prompt that ends inside <think> (the R1 template's prefill): the text has no opener of its own
        return [mark_think_open(group, think_open) for group, (_, think_open) in zip(results, rendered)]

    def _generate_batch(self, texts: list[str], params: SamplingParams) -> list[list[Completion]]:
        import torch

        started = time.perf_counter()
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sample = params.temperature > 0
        gen_kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens,
            do_sample=sample,
            num_return_sequences=distinct_samples(params),  # greedy: one sample, repeated below
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
        )
        if sample:
            gen_kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        elapsed = time.perf_counter() - started
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        per_prompt = distinct_samples(params)
        grouped: list[list[Completion]] = []
        for i, row in enumerate(new_tokens.tolist()):
            completion = self._to_completion(row, prompt_lens[i // per_prompt], elapsed / len(new_tokens))
            if i % per_prompt == 0:
                grouped.append([])
            grouped[-1].extend(dataclasses.replace(completion) for _ in range(params.n // per_prompt))
        return grouped

    def _to_completion(self, ids: list[int], prompt_tokens: int, latency: float) -> Completion:
        stop_at = next((j for j, t in enumerate(ids) if t in self.eos_ids), None)
        if stop_at is None:
            body, finish = ids, "length"
            body = [t for t in body if t != self.tokenizer.pad_token_id]
        else:
            body, finish = ids[:stop_at], "stop"
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=len(body) + (finish == "stop"), latency_s=latency)

    def close(self) -> None:
        self.model = None


def _is_quantized(model: Any) -> bool:
    return getattr(model, "quantization_config", None) is not None or getattr(model, "is_loaded_in_4bit", False)
