"""The llama.cpp backend (llama-cpp-python): evaluates a GGUF file as llama.cpp / Ollama users will run it.

Why a backend of its own: a GGUF export is only proven by running it in its
consumer.  Everything the model sees comes from the GGUF itself -- the chat
template (``tokenizer.chat_template``), the vocabulary and the end-of-turn
tokens -- so a template or tokenizer lost in export shows up as lost accuracy.

The template is rendered with transformers' Jinja renderer (the one
``apply_chat_template`` uses, which knows the ``{% generation %}`` tags our
training templates carry; a final assistant message is continued as
:func:`distill.teachers.chat_render.continuation_text` says), and the prompt is
tokenized by llama.cpp.  Sampling uses llama.cpp's own sampler with DeepSeek's
settings: temperature and top-p from :class:`SamplingParams`, top-k and min-p
off; each sample has its own seed (``seed + i``), as llama.cpp generates one
sequence at a time.  A prompt that leaves less than ``max_tokens`` of the
context gets error completions (``finish_reason="error"``, counted as failed),
never a silently shorter generation budget.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

from distill.teachers.chat_render import mark_think_open, render_state
from distill.teachers.sampling_types import Completion, Messages, SamplingParams, distinct_samples

log = logging.getLogger(__name__)


class LlamaCppSampler:
    def __init__(self, model: str, n_ctx: int = 0, n_threads: int | None = None, batch_size: int = 1,
                 dtype: str | None = None, verbose: bool = False, **_: Any):
        try:
            import llama_cpp
        except ImportError as exc:  # an optional engine: say how to get it
            raise ImportError("the llamacpp backend needs llama-cpp-python "
                              "(CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install llama-cpp-python)") from exc
        self.name = str(model)
        threads = n_threads or max(1, int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1))
        # n_ctx=0 takes the model's trained context length from the GGUF.
        self.llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   logits_all=False, verbose=verbose)
        meta = self.llm.metadata
        self.chat_template = meta.get("tokenizer.chat_template")
        if not self.chat_template:
            raise ValueError(f"{model} has no tokenizer.chat_template; the llamacpp backend needs one")
        self.n_ctx = self.llm.n_ctx()
        self._special = {}
        for key in ("bos", "eos"):
            idx = meta.get(f"tokenizer.ggml.{key}_token_id")
            self._special[f"{key}_token"] = self._piece(int(idx)) if idx is not None else None

    def _piece(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def render(self, messages: Messages) -> str:
        """The prompt text from the GGUF's own chat template, continuing a final assistant message."""
        return self.render_state(messages)[0]

    def render_state(self, messages: Messages) -> tuple[str, bool]:
        """(prompt text, whether it leaves a think block open), as :func:`~distill.teachers.chat_render.render_state`."""
        from transformers.utils.chat_template_utils import render_jinja_template

        def generation_prompt(conversation: Messages) -> str:
            rendered, _ = render_jinja_template(conversations=[conversation], chat_template=self.chat_template,
                                                add_generation_prompt=True, **self._special)
            return rendered[0]

        return render_state(generation_prompt, messages)

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        results = []
        for prompt in prompts:
            text, think_open = self.render_state(prompt)
            ids = self.tokenize(text)
            room = self.n_ctx - len(ids)
            if room < params.max_tokens:
                # Generating into the smaller room would end at the context, not at max_tokens, and count as
                # "length" (truncated, a wrong answer) although the model was never given its budget.
                reason = (f"context too small: the prompt of {len(ids)} tokens leaves {max(room, 0)} of llama.cpp's "
                          f"n_ctx={self.n_ctx} for max_tokens={params.max_tokens}")
                log.warning(reason)
                results.append([Completion(text="", finish_reason="error", prompt_tokens=len(ids), error=reason)
                                for _ in range(params.n)])
                continue
            distinct = [self._sample(ids, params, params.seed + i) for i in range(distinct_samples(params))]
            # greedy decoding: one sample, repeated (as the other backends do)
            results.append(mark_think_open([Completion(**vars(c)) for c in distinct
                                            for _ in range(params.n // len(distinct))], think_open))
        return results

    def _sample(self, ids: list[int], params: SamplingParams, seed: int) -> Completion:
        started = time.perf_counter()
        out = self.llm.create_completion(ids, max_tokens=params.max_tokens, temperature=params.temperature,
                                         top_p=params.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0, seed=seed)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        # + the end-of-turn token llama.cpp stopped on, counted as the other backends count it
        return Completion(text=choice["text"], finish_reason=finish, prompt_tokens=int(usage.get("prompt_tokens", len(ids))),
                          completion_tokens=int(usage.get("completion_tokens", 0)) + (finish == "stop"),
                          latency_s=time.perf_counter() - started)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()
