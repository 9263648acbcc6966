"""An optional LLM judge for the answers the rule-based verifier cannot decide.

Why only there: rules are exact, cheap and reproducible, a judge is none of these,
so it never overrides a rule that reached a verdict.  It sees the traces whose
verifier status is listed in ``filter.judge.on`` -- ``no_answer`` (the answer states
a result in prose, no ``\\boxed{}``), ``error_infra`` (math-verify timed out) -- for
math and multiple choice; code is the sandbox's alone.  Optionally it also judges a
share of rule-decided traces (``audit_fraction``) so the two can be compared; there
the rule's verdict stands.  Every disagreement between rule and judge is returned
for ``judge_audit.jsonl``.

The judge talks to a model through the project's one Sampler interface
(teachers/sampler.py: ``generate(prompts, params)``); this core module never imports
``teachers``: the pipeline builds the sampler and its SamplingParams and passes them in.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from distill.filter.quality import prompt_text
from distill.records import Trace, Verdict

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

JUDGE_KINDS = ("math", "multiple_choice")
PROMPT = """You are grading the final answer of a solution against the reference answer.

Problem:
{problem}

Reference answer: {reference}

Solution's final answer:
{answer}

Is the solution's final answer equivalent to the reference answer? Think briefly, then end your reply with \
exactly one of these two lines as its last line:
VERDICT: CORRECT
VERDICT: INCORRECT"""
# A verdict line: "VERDICT: CORRECT" (the label optional, case and markdown emphasis ignored), alone on its line.
_VERDICT_LINE_RE = re.compile(r"^(?:(?:final\s+)?verdict\s*[:：]\s*)?(correct|incorrect)\s*\.?$", re.IGNORECASE)
_MARKDOWN_RE = re.compile(r"[*_`#>]")
MAX_ANSWER_CHARS = 4000


@dataclass
class LLMJudge:
    """A Sampler plus the sampling parameters to call it with (greedy, short)."""

    sampler: Any  # distill.teachers.sampler.Sampler
    params: Any  # distill.teachers.sampler.SamplingParams with n=1

    def decide(self, items: Sequence[tuple[str, str, str]]) -> list[tuple[bool | None, str]]:
        """(verdict, reply) per (problem, reference, answer): True correct, False incorrect, None undecided."""
        if not items:
            return []
        prompts = [[{"role": "user", "content": PROMPT.format(problem=p, reference=r, answer=a[-MAX_ANSWER_CHARS:])}]
                   for p, r, a in items]
        outputs = self.sampler.generate(prompts, self.params)
        return [_read_reply(completions[0].text, completions[0].finish_reason) if completions else (None, "")
                for completions in outputs]


def _read_reply(text: str, finish_reason: str = "stop") -> tuple[bool | None, str]:
    """The verdict on the last line of the judge's final answer; None (undecided) when there is none.

    Why so strict: a judge that writes "The answer is not correct." or "INCORRECT ... The
    correct answer is 8." has not given a verdict a word search can read safely, and a
    judge cut off while thinking (an unclosed ``<think>``, or ``finish_reason`` length,
    which is all a template that opens the think block in the prompt leaves to see) has
    given none.  Only the text after the last ``</think>`` counts; its last non-empty line
    must be a verdict line, and no other verdict line there may say the opposite.
    """
    reply = text[-500:]
    if finish_reason == "length":
        return None, reply
    if THINK_CLOSE in text:
        final = text.rsplit(THINK_CLOSE, 1)[1]
    elif text.lstrip().startswith(THINK_OPEN):
        return None, reply
    else:
        final = text
    lines = [_MARKDOWN_RE.sub("", line).strip() for line in final.splitlines()]
    lines = [line for line in lines if line]
    words = {m.group(1).upper() for m in map(_VERDICT_LINE_RE.match, lines) if m}
    last = _VERDICT_LINE_RE.match(lines[-1]) if lines else None
    if last is None or len(words) != 1:
        return None, reply
    return last.group(1).upper() == "CORRECT", reply


def apply_judge(judge: LLMJudge, traces: list[Trace], verdicts: list[Verdict], verified: set[int],
                cfg: Any, recheck: Optional[Callable[[Trace], Optional[str]]] = None,
                ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Let the judge decide the undecided traces (in place) and audit a sample of the decided ones.

    ``verified`` holds the indices that reached the verifier: an undecided trace is one
    there with a status in ``cfg.on`` (an ``error_infra`` from a problem-level reason or
    a failed sampling call is not the verifier's, so it is never judged), or a
    ``no_answer`` from the format check.  Returns (disagreements, counts).

    A reply with no readable verdict (:func:`_read_reply`) is undecided: a trace it was
    to decide is rejected as ``judge_undecided``, an audited one keeps the rule's verdict,
    and both are written to the audit.

    ``recheck`` (the filter's quality checks after the answer's format) runs first on the
    ``no_answer`` traces: the format check stopped at the missing box, so a looping or
    language-mixing trace never met those checks, and a judge's "correct" must not keep
    it.  When one trips, its reason stands and the trace is not judged.
    """
    undecided = [i for i, v in enumerate(verdicts) if traces[i].kind in JUDGE_KINDS and v.reason in cfg.on
                 and (i in verified or v.reason == "no_answer")]
    rejected_first = 0
    if recheck is not None:
        for i in [i for i in undecided if verdicts[i].reason == "no_answer"]:
            reason = recheck(traces[i])
            if reason is not None:
                verdicts[i].reason = reason
                undecided.remove(i)
                rejected_first += 1
    rng = random.Random(cfg.seed)
    decided = [i for i in sorted(verified) if traces[i].kind in JUDGE_KINDS and verdicts[i].reason in ("kept", "wrong")]
    audited = [i for i in decided if rng.random() < cfg.audit_fraction]
    chosen = undecided + audited
    replies = judge.decide([(prompt_text(traces[i].prompt), traces[i].reference, traces[i].answer_text)
                            for i in chosen])
    audit: list[dict[str, Any]] = []
    stats: Counter[str] = Counter(judged=len(chosen), audited=len(audited))
    if rejected_first:
        stats["rejected_by_quality_checks"] = rejected_first
    for n, (i, (says, reply)) in enumerate(zip(chosen, replies)):
        v = verdicts[i]
        rule_reason = v.reason
        used = n < len(undecided)
        if says is None:
            stats["undecided"] += 1
            if used:
                v.ok, v.reason = False, "judge_undecided"
            audit.append(_audit_row(traces[i], rule_reason, "undecided", used, v.reason, reply))
            continue
        if used:
            stats["judge_correct" if says else "judge_incorrect"] += 1
            if says:
                v.ok, v.reason = True, "kept"
            elif rule_reason == "error_infra":
                v.reason = "wrong"
        if says != (rule_reason == "kept"):
            stats["disagreements"] += 1
            audit.append(_audit_row(traces[i], rule_reason, "correct" if says else "incorrect", used, v.reason, reply))
    return audit, dict(stats)


def _audit_row(t: Trace, rule: str, says: str, used: bool, final: str, reply: str) -> dict[str, Any]:
    """One line of ``judge_audit.jsonl``: what the rule said, what the judge said, which one stood."""
    return {"problem_id": t.problem_id, "sample_index": t.sample_index, "kind": t.kind, "rule": rule,
            "judge": says, "used": used, "final": final, "reference": t.reference, "answer": t.answer_text[-1000:],
            "judge_reply": reply}
