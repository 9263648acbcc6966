"""The ``filter`` section of the run config: quality checks, dedup, the code sandbox and the LLM judge.

Import these from ``distill.config``; this module only keeps that file short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from distill.config_base import Strict
from distill.config_teacher import OpenAIOptions


class SandboxConfig(Strict):
    """Limits of the bubblewrap sandbox that runs code answers against their tests (distill/sandbox.py)."""

    bwrap: str = Field("bwrap", description="the bubblewrap executable (Debian package 'bubblewrap')")
    python: Optional[str] = Field(None, description="interpreter inside the sandbox (default /usr/bin/python3); "
                                                   "run as root, it must be readable by uid 65534")
    time_limit_s: float = Field(2.0, gt=0, description="wall clock per test case (CPU limit: its ceiling)")
    memory_mb: int = Field(512, ge=64, description="address-space limit per process; over it is MLE. As root with a "
                                                   "memory cgroup, also the memory of the whole run (all its processes "
                                                   "and tmpfs); without one a sandbox may use nproc x memory_mb, times "
                                                   "the workers running at once")
    max_output_bytes: int = Field(1_000_000, ge=1024, description="stdout read before the program is killed (OLE)")
    nproc: int = Field(16, ge=2, description="processes the program may have at once")
    max_file_mb: int = Field(16, ge=1, description="largest file it may write")
    nofile: int = Field(64, ge=16, description="open files")
    tmpfs_mb: int = Field(64, ge=1, description="size of its private /tmp, and of its /dev/shm (/dev is read-only)")
    max_tests: Optional[int] = Field(None, ge=1, description="run at most this many test cases per problem")
    workers: Optional[int] = Field(None, ge=1, description="sandboxes run at once (default: CPUs, at most 8)")


class JudgeConfig(Strict):
    """An LLM judge for answers the rule-based verifier cannot decide (no readable answer, verifier timeout)."""

    enabled: bool = False
    model: str = Field("teacher", min_length=1, description="'teacher' (the run's teacher), a folder or a model id")
    backend: Literal["transformers", "vllm", "openai"] = "openai"
    openai: OpenAIOptions = OpenAIOptions()
    on: list[Literal["no_answer", "error_infra"]] = Field(
        ["no_answer", "error_infra"], description="verifier statuses handed to the judge (math and multiple choice)")
    audit_fraction: float = Field(0.0, ge=0, le=1, description="also judge this share of rule-decided traces, "
                                                               "for the disagreement audit only")
    max_tokens: int = Field(1024, ge=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 0


class FilterConfig(Strict):
    reject_truncated: bool = True
    require_closed_think: bool = True
    min_reasoning_tokens: int = Field(1, ge=0)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    max_per_problem: Optional[int] = Field(None, ge=1, description="keep at most this many correct traces a problem")
    selection: Literal["first", "shortest", "random"] = "first"
    seed: int = 0
    # quality (distill/quality.py); None switches a check off
    min_completion_tokens: int = Field(0, ge=0, description="reject shorter completions as too_short")
    reject_conflicting_answers: bool = True
    repetition_ngram: int = Field(20, ge=2, description="words in the n-grams that mark a repetition loop")
    max_repeated_fraction: Optional[float] = Field(
        0.3, gt=0, le=1, description="reject when more of the reasoning lies in n-grams seen 3+ times")
    tail_loop_repeats: Optional[int] = Field(
        4, ge=2, description="reject when the reasoning ends in this many copies of one block")
    max_foreign_script: Optional[float] = Field(
        0.01, ge=0, le=1, description="reject when more of the reasoning's words are in another script than the prompt's")
    verify_timeout_s: float = Field(5.0, gt=0, description="math-verify time per answer before error_infra")
    # duplicates and contamination (distill/dedup.py)
    dedup_problems: bool = True
    near_duplicate_threshold: Optional[float] = Field(
        0.7, gt=0, le=1, description="word 3-gram Jaccard for near-duplicate training problems (same answer)")
    decontaminate_heldout: bool = True
    decontaminate_against: list[Path] = Field(default_factory=list, description="eval JSONL files (uniform schema)")
    decontam_ngram: int = Field(8, ge=1)
    decontam_min_overlap: float = Field(
        0.5, gt=0, le=1, description="share of the shorter problem's n-grams shared to count as contaminated")
    decontam_fuzzy_threshold: Optional[float] = Field(0.7, gt=0, le=1, description="word 3-gram Jaccard")
    # selection by difficulty: drop problems the teacher always or never solves
    pass_rate_band: Optional[tuple[float, float]] = Field(
        None, description="[low, high]: keep problems whose share of correct traces lies in it, e.g. [0.1, 0.9]")
    sandbox: SandboxConfig = SandboxConfig()
    judge: JudgeConfig = JudgeConfig()

    @field_validator("pass_rate_band")
    @classmethod
    def _check_band(cls, band: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if band is not None and not 0 <= band[0] <= band[1] <= 1:
            raise ValueError("must be [low, high] with 0 <= low <= high <= 1")
        return band
