"""The sampling service: problems in, normalised traces out, committed shard by shard.

Used for teacher sampling and for evaluation generation alike; a sampler is any
:class:`teachers.sampler.Sampler`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Callable, Sequence

from distill.records import Problem, Trace
from distill.shards import ShardStore, plan_shards
from teachers.prompts import build_prompt
from teachers.reasoning import split_reasoning
from teachers.sampler import Completion, Sampler, SamplingParams

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, dict], None]


def shard_seed(base_seed: int, shard_index: int) -> int:
    """A seed fixed by (run seed, shard) so a resumed shard samples what the lost one would have."""
    digest = hashlib.sha256(f"{base_seed}:{shard_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def to_trace(problem: Problem, index: int, prompt: list[dict[str, str]], completion: Completion,
             sampler: Sampler, params: SamplingParams) -> Trace:
    split = split_reasoning(completion.text, completion.reasoning, completion.prefilled_think)
    reasoning_tokens = sampler.count_tokens(split.reasoning) if split.reasoning else 0
    answer_tokens = sampler.count_tokens(split.answer) if split.answer else 0
    return Trace(
        problem_id=problem.id,
        sample_index=index,
        prompt=prompt,
        reasoning=split.reasoning,
        answer_text=split.answer,
        finish_reason=completion.finish_reason,
        think_closed=split.think_closed,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        reasoning_tokens=reasoning_tokens,
        answer_tokens=answer_tokens,
        teacher=sampler.name,
        sampling={k: v for k, v in params.as_dict().items() if k != "seed"},
        seed=params.seed,
        reference=problem.answer,
        kind=problem.kind,
        latency_s=round(completion.latency_s, 4),
        error=completion.error,
    )


def sample_problems(problems: Sequence[Problem], sampler: Sampler, params: SamplingParams) -> list[Trace]:
    """``params.n`` traces per problem, as one batch through the sampler."""
    prompts = [build_prompt(p) for p in problems]
    outputs = sampler.generate(prompts, params)
    traces = []
    for problem, prompt, completions in zip(problems, prompts, outputs):
        for i, completion in enumerate(completions):
            traces.append(to_trace(problem, i, prompt, completion, sampler, params))
    return traces


def run_sharded(problems: Sequence[Problem], sampler: Sampler, params: SamplingParams, store: ShardStore,
                shard_size: int, on_shard: ProgressFn | None = None) -> dict[str, int]:
    """Sample every shard not yet committed; returns how many shards were done now and before."""
    shards = plan_shards(list(problems), shard_size)
    done = store.committed()
    stale = sorted(i for i in done if i >= len(shards))
    if stale:
        raise RuntimeError(f"shard folder holds shards {stale} beyond the {len(shards)} planned; it is not this job's")
    for index, shard in enumerate(shards):
        if index in done:
            continue
        traces = sample_problems(shard, sampler, replace(params, seed=shard_seed(params.seed, index)))
        store.commit(index, traces)
        if on_shard:
            on_shard(len(shard) * params.n, _shard_stats(traces))
    return {"shards": len(shards), "resumed_shards": len(done)}


def _shard_stats(traces: list[Trace]) -> dict:
    return {
        "completion_tokens": sum(t.completion_tokens for t in traces),
        "truncated": sum(t.finish_reason == "length" for t in traces),
    }
