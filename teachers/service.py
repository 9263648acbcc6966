"""The sampling service: problems in, normalised traces out, committed shard by shard.

Used for teacher sampling and for evaluation generation alike; a sampler is any
:class:`distill.teachers.sampling_types.Sampler`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Callable, Sequence

from distill.records import Problem, Trace
from distill.shards import ShardStore, plan_shards
from distill.teachers.prompts import build_prompt
from distill.teachers.reasoning import split_reasoning
from distill.teachers.sampling_types import Completion, Sampler, SamplingParams

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


def sample_problems(problems: Sequence[Problem], sampler: Sampler, params: SamplingParams,
                    retry_max_tokens: int | None = None) -> list[Trace]:
    """``params.n`` traces per problem, as one batch through the sampler.

    ``finish_reason=length`` is a final outcome; with ``retry_max_tokens`` each truncated sample
    gets exactly one more try at that budget, and whatever the retry returns is what is recorded
    (with the retry's own seed in ``trace.seed``).
    """
    prompts = [build_prompt(p) for p in problems]
    outputs = sampler.generate(prompts, params)
    retried = _retry_truncated(prompts, outputs, sampler, params, retry_max_tokens) if retry_max_tokens else {}
    traces = []
    for p, (problem, prompt, completions) in enumerate(zip(problems, prompts, outputs)):
        for i, completion in enumerate(completions):
            if (p, i) in retried:
                retry_params = replace(params, max_tokens=retry_max_tokens, seed=retried[(p, i)])
                trace = to_trace(problem, i, prompt, completion, sampler, retry_params)
                trace.sampling["retry_of_truncated"] = True
            else:
                trace = to_trace(problem, i, prompt, completion, sampler, params)
            traces.append(trace)
    return traces


def retry_seed(chunk_seed: int, sample_index: int) -> int:
    """The seed of the retry of sample ``sample_index``: fixed by (chunk seed, sample index) so a resumed
    chunk retries as the lost one would have, and distinct per sample index so two truncated samples
    of one problem (same prompt) are not retried into the same text."""
    return shard_seed(chunk_seed, 1_000_003 + sample_index)


def _retry_truncated(prompts: list, outputs: list[list[Completion]], sampler: Sampler, params: SamplingParams,
                     max_tokens: int) -> dict[tuple[int, int], int]:
    """Replace each truncated completion by one retry at ``max_tokens``, in place; returns the retried
    (prompt, sample) slots with the seed each retry used.

    One call per sample index (n=1, seed from :func:`retry_seed`): within a call every prompt is a
    different problem, and engines that seed per request (vLLM, llama.cpp, OpenAI ``seed``) would
    give one problem's retries the same text if they shared a call's seed.
    """
    slots = [(p, i) for p, row in enumerate(outputs) for i, c in enumerate(row) if c.finish_reason == "length"]
    if not slots or max_tokens <= params.max_tokens:
        return {}
    seeds: dict[tuple[int, int], int] = {}
    still_truncated = 0
    for i in sorted({i for _, i in slots}):
        picked = [p for p, j in slots if j == i]
        seed = retry_seed(params.seed, i)
        again = sampler.generate([prompts[p] for p in picked], replace(params, n=1, max_tokens=max_tokens, seed=seed))
        for p, row in zip(picked, again):
            outputs[p][i] = row[0]
            seeds[(p, i)] = seed
            still_truncated += row[0].finish_reason == "length"
    log.info("retried %d truncated samples at max_tokens=%d; %d still truncated", len(slots), max_tokens,
             still_truncated)
    return seeds


def sample_chunk(index: int, problems: Sequence[Problem], sampler: Sampler, params: SamplingParams,
                 retry_max_tokens: int | None = None) -> list[Trace]:
    """One chunk's traces, with the chunk's own seed, so whoever samples it (any process) samples the same."""
    return sample_problems(problems, sampler, replace(params, seed=shard_seed(params.seed, index)), retry_max_tokens)


def pending_chunks(problems: Sequence[Problem], store: ShardStore, shard_size: int,
                   select: Callable[[int], bool] | None = None) -> tuple[list[list[Problem]], list[int], set[int]]:
    """(all chunks, the indices still to sample that ``select`` accepts, those already committed)."""
    shards = plan_shards(list(problems), shard_size)
    done = store.committed()
    stale = sorted(i for i in done if i >= len(shards))
    if stale:
        raise RuntimeError(f"shard folder holds shards {stale} beyond the {len(shards)} planned; it is not this job's")
    todo = [i for i in range(len(shards)) if i not in done and (select is None or select(i))]
    return shards, todo, done


def run_sharded(problems: Sequence[Problem], sampler: Sampler, params: SamplingParams, store: ShardStore,
                shard_size: int, on_shard: ProgressFn | None = None, select: Callable[[int], bool] | None = None,
                retry_max_tokens: int | None = None,
                pending: tuple[list[list[Problem]], list[int], set[int]] | None = None) -> dict[str, int]:
    """Sample every shard not yet committed (and picked by ``select``); returns shard counts.

    ``pending`` is :func:`pending_chunks`' answer when the caller already has it (the pipeline sizes its
    progress bar from it), so the shard folder is listed once."""
    shards, todo, done = pending or pending_chunks(problems, store, shard_size, select)
    for index in todo:
        traces = sample_chunk(index, shards[index], sampler, params, retry_max_tokens)
        store.commit(index, traces)
        if on_shard:
            on_shard(len(shards[index]) * params.n, shard_stats(traces))
    return {"shards": len(shards), "resumed_shards": len(done), "sampled_shards": len(todo)}


def shard_stats(traces: Sequence[Trace]) -> dict:
    """What a committed chunk adds to the live progress line."""
    from distill.filter.verify import last_boxed, quick_check

    accepted = 0
    for t in traces:
        if t.finish_reason == "stop" and t.think_closed:
            boxed = last_boxed(t.answer_text)
            accepted += bool(boxed is not None and quick_check(boxed, t.reference))
    return {
        "traces": len(traces),
        "completion_tokens": sum(t.completion_tokens for t in traces),
        "prompt_tokens": sum(t.prompt_tokens for t in traces),
        "truncated": sum(t.finish_reason == "length" for t in traces),
        "failed": sum(t.finish_reason == "error" for t in traces),
        "accepted": accepted,
    }
