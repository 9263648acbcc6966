"""Budget forcing: cap the thinking at B tokens, force ``</think>``, let the model answer, score the answer.

Why: a reasoning model's accuracy depends on how long it may think.  Sweeping
the cap gives the accuracy-versus-tokens curve, and the budgets behind
``reasoning_effort`` low / medium / high are read off that curve instead of
being guessed (s1, Muennighoff et al. 2025, call the technique budget forcing).

How, through the shared Sampler only:

1. generate with ``max_tokens = B``;
2. a sample that stopped by itself within B is kept as it is;
3. a sample cut at B whose text already closed ``</think>`` (only its answer was
   cut) is continued for the answer;
4. a sample cut at B inside its thinking gets ``\\n</think>\\n\\n`` (and an
   optional answer prefix) appended and is continued for at most
   ``answer_tokens`` more: the prompt's last message is the assistant's text so
   far, which every backend continues instead of opening a new turn
   (:func:`distill.teachers.sampler.continues_final_message`): the generation prompt,
   then the text verbatim, so templates that rewrite assistant content (the
   stock R1 one) or prefill ``<think>\\n`` (R1-Distill) continue exactly the
   context the model thought in.

Engines that return the reasoning in a separate field (the DeepSeek API's
``reasoning_content``) cannot be budget-forced this way: the text to continue is
not theirs to give back.  transformers, vLLM, llama.cpp and OpenAI-compatible
servers that return the think block inline (vLLM without a reasoning parser) can.

The answer after the forced ``</think>`` is scored by the shared verifier like
any other, and a continuation that hits ``answer_tokens`` counts as truncated
(wrong), as in the plain protocol.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from distill.records import Problem
from distill.eval.protocol import evaluate
from distill.teachers.reasoning import THINK_CLOSE, THINK_OPEN
from distill.teachers.sampler import Completion, Messages, Sampler, SamplingParams

log = logging.getLogger(__name__)

FORCED_CLOSE = "\n" + THINK_CLOSE + "\n\n"

# reasoning_effort level -> share of the sweep's best pass@1 its budget must reach
DEFAULT_EFFORT_FRACTIONS = {"low": 0.5, "medium": 0.8, "high": 0.95}


@dataclass
class BudgetStats:
    samples: int = 0
    forced: int = 0  # cut inside the thinking: </think> was appended
    answer_continued: int = 0  # thinking closed within B, the answer was cut and continued
    within_budget: int = 0  # stopped by itself within B tokens
    max_thinking_tokens: int = 0  # generated tokens before </think> (or the cut), as the backend counted them


@dataclass
class ForcedCompletion(Completion):
    """A completion with how many tokens it thought (as generated, before ``</think>`` or the cut)."""

    thinking_tokens: int = 0
    forced: bool = False


@dataclass
class BudgetForcedSampler:
    """A :class:`~distill.teachers.sampler.Sampler` whose samples never think for more than ``budget`` tokens."""

    inner: Sampler
    budget: int
    answer_tokens: int = 64
    answer_prefix: str = ""
    stats: BudgetStats = field(default_factory=BudgetStats)

    def __post_init__(self) -> None:
        if self.budget < 1 or self.answer_tokens < 1:
            raise ValueError("budget and answer_tokens must be at least 1")
        self.name = f"{self.inner.name} (thinking <= {self.budget} tokens)"

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        """The inner sampler belongs to the caller, which closes it once after the whole sweep."""

    def generate(self, prompts: Sequence[Messages], params: SamplingParams) -> list[list[Completion]]:
        first = self.inner.generate(prompts, dataclasses.replace(params, max_tokens=min(self.budget, params.max_tokens)))
        results: list[list[Completion]] = [list(row) for row in first]
        continuations: list[Messages] = []
        slots: list[tuple[int, int, str, bool, bool]] = []
        for p, row in enumerate(first):
            for i, c in enumerate(row):
                self.stats.samples += 1
                closed = THINK_CLOSE in c.text
                # generated tokens are what the cap limits; re-encoding the decoded text may count differently,
                # so the thinking before </think> is counted but never above what was generated
                thinking = c.completion_tokens
                if closed:
                    thinking = min(thinking, self.count_tokens(c.text.split(THINK_CLOSE, 1)[0]))
                self.stats.max_thinking_tokens = max(self.stats.max_thinking_tokens, thinking)
                results[p][i] = ForcedCompletion(**dataclasses.asdict(c), thinking_tokens=thinking)
                if c.finish_reason != "length":
                    self.stats.within_budget += 1
                    continue
                forced = not closed
                prefix = c.text + (FORCED_CLOSE + self.answer_prefix if forced else "")
                # The model thought after an opener its prompt prefilled (R1-Distill's '<think>\n'), which is
                # not in its text: the continuation must carry it, once (a backend rendering the generation
                # prompt drops it again there; an OpenAI server then continues a think block).
                opener = "" if c.text.lstrip().startswith(THINK_OPEN) else THINK_OPEN + "\n"
                continuations.append([*prompts[p], {"role": "assistant", "content": opener + prefix}])
                slots.append((p, i, prefix, forced, bool(opener)))
        if continuations:
            forced_tokens = self.count_tokens(FORCED_CLOSE + self.answer_prefix)
            # One call per sample index, each with its own seed: engines that seed per request (vLLM,
            # llama.cpp) would otherwise give two samples cut at the same text the same answer.
            second: list[list[Completion]] = [[] for _ in slots]
            for i in sorted({slot[1] for slot in slots}):
                picked = [j for j, slot in enumerate(slots) if slot[1] == i]
                cont_params = dataclasses.replace(params, n=1, max_tokens=self.answer_tokens,
                                                  seed=params.seed + 7919 + i)
                for j, row in zip(picked, self.inner.generate([continuations[j] for j in picked], cont_params)):
                    second[j] = row
            for (p, i, prefix, forced, opened), row in zip(slots, second):
                c1, c2 = first[p][i], row[0]
                self.stats.forced += forced
                self.stats.answer_continued += not forced
                results[p][i] = dataclasses.replace(
                    results[p][i], forced=forced, text=prefix + c2.text, finish_reason=c2.finish_reason,
                    completion_tokens=c1.completion_tokens + (forced_tokens if forced else 0) + c2.completion_tokens,
                    prefilled_think=c1.prefilled_think or opened, latency_s=c1.latency_s + c2.latency_s,
                    error=c1.error or c2.error)
        return results


def reasoning_effort_budgets(points: Sequence[dict[str, Any]],
                             fractions: dict[str, float] | None = None) -> dict[str, Any]:
    """low / medium / high: the smallest budget whose pass@1 reaches that share of the best budget's.

    When no budget scores above zero the curve says nothing; every level then
    gets the largest budget and ``note`` says why.
    """
    fractions = fractions or DEFAULT_EFFORT_FRACTIONS
    pts = sorted(points, key=lambda p: p["budget"])
    if not pts:
        raise ValueError("no sweep points")
    best = max(p["pass_at_1"] for p in pts)
    out: dict[str, Any] = {"fractions": dict(fractions), "best_pass_at_1": best}
    if best <= 0:
        out.update({level: pts[-1]["budget"] for level in fractions})
        out["note"] = "no budget scored above 0; every level uses the largest budget"
        return out
    for level, frac in fractions.items():
        out[level] = next(p["budget"] for p in pts if p["pass_at_1"] >= frac * best - 1e-12)
    return out


def budget_sweep(sampler: Sampler, problems: Sequence[Problem], params: SamplingParams, budgets: Sequence[int],
                 model_label: str, benchmark: str, answer_tokens: int = 64, answer_prefix: str = "",
                 fractions: dict[str, float] | None = None) -> dict[str, Any]:
    """Evaluate ``problems`` under each thinking budget; the result is what ``eval/budget_sweep.json`` holds."""
    if not budgets:
        raise ValueError("budget sweep needs at least one budget")
    points = []
    for budget in sorted(set(int(b) for b in budgets)):
        forced = BudgetForcedSampler(sampler, budget, answer_tokens, answer_prefix)
        result = evaluate(forced, problems, params, model_label, benchmark)
        rows = result.samples
        n = max(1, len(rows))
        points.append({
            "budget": budget,
            "pass_at_1": result.score.pass_at_1,
            "ci95_low": result.score.ci95_low,
            "ci95_high": result.score.ci95_high,
            "cons_at_k": result.score.cons_at_k,
            "truncated": result.score.truncated,
            "failed": result.score.failed,
            "mean_tokens": sum(r["completion_tokens"] for r in rows) / n,
            "mean_thinking_tokens": sum(r.get("reasoning_tokens", 0) for r in rows) / n,
            "max_thinking_tokens": forced.stats.max_thinking_tokens,
            "forced": forced.stats.forced,
            "answer_continued": forced.stats.answer_continued,
            "within_budget": forced.stats.within_budget,
            "samples": len(rows),
        })
        log.info("budget %d: pass@1 %.3f, %d of %d samples forced", budget, result.score.pass_at_1,
                 forced.stats.forced, len(rows))
    return {
        "model": model_label,
        "benchmark": benchmark,
        "params": params.as_dict(),
        "answer_tokens": answer_tokens,
        "answer_prefix": answer_prefix,
        "forced_close": FORCED_CLOSE,
        "points": points,
        "reasoning_effort": reasoning_effort_budgets(points, fractions),
    }


def write_sweep(sweep: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``budget_sweep.json`` (read by distill report), its PNG curve and ``reasoning_effort.json``."""
    from distill.publish.charts import budget_chart
    from distill.store import write_bytes_atomic, write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "budget_sweep.json", "effort": out_dir / "reasoning_effort.json",
             "png": out_dir / "budget_sweep.png"}
    write_json_atomic(paths["json"], sweep)
    effort = sweep["reasoning_effort"]
    write_json_atomic(paths["effort"], {"model": sweep["model"], "benchmark": sweep["benchmark"],
                                        "answer_tokens": sweep["answer_tokens"],
                                        "max_thinking_tokens": {k: effort[k] for k in ("low", "medium", "high")
                                                                if k in effort}, **effort})
    try:
        png = budget_chart(sweep["model"], sweep["points"])
    except ImportError:
        log.warning("matplotlib is not installed: no budget_sweep.png")
        paths.pop("png")
    else:
        write_bytes_atomic(paths["png"], png)
    log.info("budget sweep written to %s", json.dumps({k: str(v) for k, v in paths.items()}))
    return paths
