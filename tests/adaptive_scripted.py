"""A scripted teacher for the adaptive sampling tests: known outcomes per problem and sample, no model.

``ScriptedSampler`` answers "What is a + b?" prompts with a well-formed trace whose boxed answer is right or
wrong as the script says: ``script(problem_text, j)`` for the ``j``-th sample this process has produced for
that prompt (the rounds ask for a problem's indices in increasing order, so ``j`` is the sample index within
one process).  Every call is appended to a log (fsync'd), so a test counts what the teacher was asked for even
across a SIGKILL.  Run as a script (``python tests/adaptive_scripted.py CONFIG LOG [DELAY]``) it runs the
sample stage with the scripted teacher, for the SIGKILL test.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from distill.teachers.sampling_types import Completion

SUM_RE = re.compile(r"What is (\d+) \+ (\d+)\?")


def problem_text(prompt: list[dict[str, str]]) -> str:
    return prompt[-1]["content"]


class ScriptedSampler:
    def __init__(self, script: Callable[[str, int], bool], log: Path | None = None, delay_s: float = 0.0,
                 name: str = "scripted"):
        self.name, self.script, self.log, self.delay_s = name, script, log, delay_s
        self.produced: Counter = Counter()  # prompt -> samples produced so far (in this process)

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            text = problem_text(prompt)
            a, b = map(int, SUM_RE.search(text).groups())
            row = []
            for _ in range(params.n):
                j = self.produced[text]
                self.produced[text] += 1
                answer = a + b if self.script(text, j) else a + b + 1
                body = f"<think>\nadd {a} and {b} column by column, carry none\n</think>\n\nThe answer is \\boxed{{{answer}}}."
                row.append(Completion(body, "stop", prompt_tokens=10, completion_tokens=len(body.split())))
            out.append(row)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.writelines(f"{self.name}\t{problem_text(p)}\t{params.n}\n" for p in prompts)
                fh.flush()
                os.fsync(fh.fileno())
        if self.delay_s:
            time.sleep(self.delay_s)
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def asked(log: Path, who: str = "scripted") -> Counter:
    """prompt -> samples asked for, from a sampler's log."""
    out: Counter = Counter()
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            name, text, n = line.split("\t")
            if name == who:
                out[text] += int(n)
    return out


def operands(text: str) -> tuple[int, int]:
    a, b = map(int, SUM_RE.search(text).groups())
    return a, b


def even_sum_solved(text: str, j: int) -> bool:
    """The SIGKILL test's script: problems with an even sum are always solved, the others never."""
    a, b = operands(text)
    return (a + b) % 2 == 0


def install(script: Callable[[str, int], bool], log: Path | None = None, delay_s: float = 0.0) -> None:
    """Every sampler built through the factory becomes the scripted one (in this process)."""
    import distill.teachers.sampler as sampler_module

    def make(backend, model, **options):
        return ScriptedSampler(script, log, delay_s, name="scout" if "scout" in model else "scripted")

    sampler_module.make_sampler = make


def main() -> None:
    from distill.config import load_config
    from distill.pipeline import run

    config, log = Path(sys.argv[1]), Path(sys.argv[2])
    install(even_sum_solved, log, float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    run(load_config(config), until="sample")


if __name__ == "__main__":
    main()
