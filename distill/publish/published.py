"""DeepSeek's published R1-Distill numbers, and which of them a run's benchmark and student compare to.

Why a module of its own: the run report (:mod:`distill.publish.report`) and the
eval stage's results table (:mod:`distill.eval.table`) both put these numbers
beside a run's own; keeping them here - a leaf that imports neither - lets both
read one copy without the eval package importing the report.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "PUBLISHED_BENCHMARKS",
    "PUBLISHED_PROTOCOL",
    "PUBLISHED_R1_DISTILL",
    "PUBLISHED_SOURCE",
    "canonical_benchmark",
    "published_model_for",
]

PUBLISHED_SOURCE = ("DeepSeek-AI 2025, \"DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via "
                    "Reinforcement Learning\", arXiv:2501.12948, Table 5")
PUBLISHED_PROTOCOL = "pass@1 averaged over k = 4-64 samples, temperature 0.6, top-p 0.95, up to 32,768 generated tokens"

# DeepSeek-R1 paper, Table 5 (distilled models).  Percent.  "AIME 2024 cons@64" is the only
# consensus number the paper reports; CodeForces ratings are left out (no benchmark here
# produces one).
PUBLISHED_R1_DISTILL: dict[str, dict[str, Any]] = {
    "DeepSeek-R1-Distill-Qwen-1.5B": {"base": "Qwen2.5-Math-1.5B", "AIME 2024": 28.9, "AIME 2024 cons@64": 52.7,
                                      "MATH-500": 83.9, "GPQA Diamond": 33.8, "LiveCodeBench": 16.9},
    "DeepSeek-R1-Distill-Qwen-7B": {"base": "Qwen2.5-Math-7B", "AIME 2024": 55.5, "AIME 2024 cons@64": 83.3,
                                    "MATH-500": 92.8, "GPQA Diamond": 49.1, "LiveCodeBench": 37.6},
    "DeepSeek-R1-Distill-Qwen-14B": {"base": "Qwen2.5-14B", "AIME 2024": 69.7, "AIME 2024 cons@64": 80.0,
                                     "MATH-500": 93.9, "GPQA Diamond": 59.1, "LiveCodeBench": 53.1},
    "DeepSeek-R1-Distill-Qwen-32B": {"base": "Qwen2.5-32B", "AIME 2024": 72.6, "AIME 2024 cons@64": 83.3,
                                     "MATH-500": 94.3, "GPQA Diamond": 62.1, "LiveCodeBench": 57.2},
    "DeepSeek-R1-Distill-Llama-8B": {"base": "Llama-3.1-8B", "AIME 2024": 50.4, "AIME 2024 cons@64": 80.0,
                                     "MATH-500": 89.1, "GPQA Diamond": 49.0, "LiveCodeBench": 39.6},
    "DeepSeek-R1-Distill-Llama-70B": {"base": "Llama-3.3-70B-Instruct", "AIME 2024": 70.0,
                                      "AIME 2024 cons@64": 86.7, "MATH-500": 94.5, "GPQA Diamond": 65.2,
                                      "LiveCodeBench": 57.5},
}
PUBLISHED_BENCHMARKS = ("AIME 2024", "MATH-500", "GPQA Diamond", "LiveCodeBench")

_BENCHMARK_ALIASES = (  # (substring of the squashed name, canonical name); first match wins
    ("aime2024", "AIME 2024"), ("aime24", "AIME 2024"),
    ("math500", "MATH-500"),
    ("gpqadiamond", "GPQA Diamond"), ("gpqa", "GPQA Diamond"),
    ("livecodebench", "LiveCodeBench"), ("lcb", "LiveCodeBench"),
)


def canonical_benchmark(name: str) -> str | None:
    """The Table 5 benchmark a held-out set's name refers to, or None.

    Why fuzzy: the benchmark is named after the held-out file (``math500.jsonl`` ->
    ``math500``, ``aime_2024`` ...), so spelling varies; ``heldout`` (the arithmetic
    quickstart) matches nothing and gets no published number.
    """
    squashed = re.sub(r"[^a-z0-9]", "", (name or "").lower())
    for needle, canonical in _BENCHMARK_ALIASES:
        if needle in squashed:
            return canonical
    return None


def published_model_for(student_model: str) -> str | None:
    """The R1-Distill model whose published numbers a student from ``student_model`` compares to.

    Matched on family and size (Qwen2.5 1.5B/7B/14B/32B, Llama 8B/70B), since that is
    what the comparison is about; the report names DeepSeek's exact base beside it
    when the run used a different variant (say Qwen2.5-7B-Instruct instead of -Math-7B).
    """
    name = (student_model or "").lower()
    if "r1-distill" in name:
        for published in PUBLISHED_R1_DISTILL:
            if published.lower().split("/")[-1] in name:
                return published
    size = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z0-9])", name)
    if not size:
        return None
    s = size.group(1)
    if "qwen" in name and s in ("1.5", "7", "14", "32"):
        return f"DeepSeek-R1-Distill-Qwen-{s}B"
    if "llama" in name and s in ("8", "70"):
        return f"DeepSeek-R1-Distill-Llama-{s}B"
    return None
