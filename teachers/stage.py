"""The sample stage: the teacher writes traces for the run's training problems (or a published trace
dataset is imported), committed chunk by chunk so a killed run resumes without losing or duplicating one."""

from __future__ import annotations

from typing import Any, Callable

from distill.shards import ShardStore
from distill.stage import Context, StageBase, StageOutcome
from distill.store import content_hashes, files_sha256
from distill.teachers.adaptive_stage import rounds_figures, sampling_output_settings, uses_rounds
from distill.teachers.models import price_table, teacher_for_sampling, teacher_output_settings


class SampleStage(StageBase):
    name = "sample"
    section = "teacher"
    version = "3"  # 3: adaptive sampling in rounds, verdicts stored while sampling, mixture sources, <think> prefill
    upstream = ()

    def fingerprint_input(self, config: Any) -> dict[str, Any]:
        if config.mixture is not None:  # each source's teacher and problems (distill/mixture/sources.py)
            from distill.mixture.sources import sample_fingerprint

            return sample_fingerprint(config)
        p, t = config.problems, config.teacher
        inputs = content_hashes([p.train_path, p.heldout_path] if p.source == "jsonl" else [])
        if t.kind == "dataset":
            inputs.update(content_hashes([t.dataset.path]))
        fp_input = {"problems": config.section("problems"),
                    "teacher": sampling_output_settings(config, teacher_output_settings(config))}
        if inputs:  # problem files by content: an edited file re-runs the stage (and samples only what changed)
            fp_input["input_files"] = inputs
        return fp_input

    def run(self, ctx: Context) -> StageOutcome:
        if ctx.config.mixture is not None:  # every source through sample_chunks, then one view
            from distill.mixture.sampling import sample_mixture

            return sample_mixture(ctx, sample_chunks, sampling_totals)
        if ctx.partition is not None:
            k, n = ctx.partition
            info = sample_chunks(ctx, select=lambda i: i % n == k)
            info.pop("traces", None)
            return StageOutcome(info, f"shard {k}/{n}: {info.get('sampled_traces', info.get('sampled_shards', 0))} sampled", final=False)
        return _check_and_summarise(ctx, sample_chunks(ctx))


SAMPLE = SampleStage()


def _check_and_summarise(ctx: Context, info: dict[str, Any]) -> StageOutcome:
    """Every expected trace in the run's view exactly once, then the manifest's totals; with more failed
    samples than ``teacher.max_failure_share`` the stage is not final (the next run samples them again)."""
    t = ctx.config.teacher
    train, _ = ctx.problems()
    rows = ShardStore(ctx.out("sample") / "shards").read_all()
    keys = {(r["problem_id"], r["sample_index"]) for r in rows}
    view_size = info.pop("expected_traces", None)  # the rounds path: what each problem's rounds left it
    expected = len(train) * t.samples_per_problem if t.kind == "model" else info.pop("traces")
    if uses_rounds(t):
        expected = view_size
    if len(keys) != len(rows) or len(rows) != expected:
        raise RuntimeError(f"sampling committed {len(rows)} traces ({len(keys)} unique), expected {expected}")
    totals = sampling_totals(rows, price_table(ctx.config))
    counts = {"problems": len(train) if t.kind == "model" else len({k[0] for k in keys}), "traces": len(rows),
              **totals, "teacher": info.pop("teacher"), **info}
    if "verified_traces" in counts:  # adaptive: what the spend bought
        counts.update(rounds_figures(counts))
    failed = sum(totals["failures"].values())
    if t.kind == "model" and failed > t.max_failure_share * len(rows):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(totals["failures"].items()))
        return StageOutcome(counts, f"{failed} of {len(rows)} samples failed ({reasons}); fix the cause and run "
                                    "again: only the failed samples are sampled again", final=False)
    rounds = (f"; {counts['verified_traces']} verified, problems {counts['problems_done']} done, "
              f"{counts['problems_open']} open, {counts['problems_unsolved']} unsolved"
              if "verified_traces" in counts else "")
    return StageOutcome(counts, f"{len(rows)} traces from {counts['problems']} problems "
                                f"({totals['truncated']} truncated, {failed} failed){rounds}",
                        output_hash=_output_hash(ctx))


def _output_hash(ctx: Context) -> str:
    """What the stages after sampling read of it: the traces, and the problems they screen and evaluate
    against (the held-out file by content, the problems section), so an edited held-out set re-runs them."""
    import hashlib
    import json

    p = ctx.config.problems
    held = content_hashes([p.heldout_path] if p.source == "jsonl" else [])
    extra = json.dumps({"problems": ctx.config.section("problems"), "heldout": held}, sort_keys=True, default=str)
    traces = files_sha256(ShardStore(ctx.out("sample") / "shards").paths())
    return hashlib.sha256((traces + extra).encode()).hexdigest()


def sample_chunks(ctx: Context, select: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Sample (or, for a trace dataset, import) what the run needs and the store lacks, then write the run's
    view (``sample/shards``) from the store.

    ``select`` lets a Slurm array task own the problems ``i % n == k`` (``distill teacher sample --shard k/n``):
    ownership by problem, not by chunk, so tasks that plan at different moments never overlap.
    """
    t = ctx.config.teacher
    train, _ = ctx.problems()
    if t.kind == "dataset":
        from distill.teachers.backends.trace_dataset import commit_dataset_chunks

        shards = ShardStore(ctx.out("sample") / "shards")
        info = commit_dataset_chunks(ctx.cache["dataset_traces"], train, shards, t.shard_size, select)
        return {**info, "teacher": f"dataset:{t.dataset.path}"}
    from distill.teachers.keyed_sampling import sample_missing, write_run_view

    path = teacher_for_sampling(ctx)
    owned = [p for i, p in enumerate(train) if select is None or select(i)]
    if uses_rounds(t):  # adaptive rounds and/or the scout's screen (teachers/adaptive_stage.py)
        from distill.teachers.adaptive_stage import sample_with_rounds

        return {"teacher": path, **sample_with_rounds(ctx, path, owned, train, write_view=select is None)}
    info = sample_missing(ctx, path, owned)
    if select is None:
        info.update(write_run_view(ctx, path, train))
    return {"teacher": path, **info}


def sampling_totals(rows: list[dict[str, Any]], price: Any = None) -> dict[str, Any]:
    """What the manifest records for a sampling job: tokens, truncations, failures by reason and cost."""
    failures: dict[str, int] = {}
    for r in rows:
        if r["finish_reason"] == "error":
            reason = (r.get("error") or "unknown").split(":", 1)[0].strip() or "unknown"
            failures[reason] = failures.get(reason, 0) + 1
    totals: dict[str, Any] = {
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "retried_truncated": sum(bool((r.get("sampling") or {}).get("retry_of_truncated")) for r in rows),
        "failures": failures,
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in rows),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in rows),
        "reasoning_tokens": sum(r.get("reasoning_tokens", 0) for r in rows),
        "cost_usd": None,
    }
    if price is not None:
        from distill.teachers.pricing import cost

        totals["cost_usd"] = round(cost(totals["prompt_tokens"], totals["completion_tokens"], price), 8)
    return totals
