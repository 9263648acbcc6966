"""The embedded toy teacher: a tiny LM trained once on procedural worked solutions, then cached.

It makes the quickstart a real distillation offline: a teacher that reasons
step by step in ``<think>`` and is right only part of the time at T=0.6, so the
filter has real work and the student has something to learn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import random
import re

from distill.problems import MATH_INSTRUCTION, addition_solution, build_prompt, final_answer_text, generate_arithmetic
from distill.records import Problem
from distill.students.models import TinyModelSpec, build_tiny_model
from distill.students.toy_tokenizer import build_toy_tokenizer
from distill.students.trainer import TrainSettings, to_training_example, train_sft

log = logging.getLogger(__name__)
TOY_TEACHER_VERSION = "1"


def default_cache_dir() -> Path:
    base = os.environ.get("DISTILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "distill"
    )
    return Path(base) / "toy-teachers"


def toy_teacher_key(cfg: dict[str, Any], min_digits: int, max_digits: int, exclude: Sequence[Problem]) -> str:
    payload = {
        "version": TOY_TEACHER_VERSION,
        "cfg": {k: v for k, v in cfg.items() if k != "cache_dir"},
        "digits": [min_digits, max_digits],
        "exclude": sorted(p.problem for p in exclude),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def ensure_toy_teacher(cfg: dict[str, Any], min_digits: int, max_digits: int, exclude: Sequence[Problem],
                       cache_dir: Path | None = None,
                       on_log: Callable[[int, int, dict[str, float]], None] | None = None) -> Path:
    """Return the folder of the cached toy teacher, training it first if needed.

    ``exclude`` holds the held-out problems: the teacher never trains on them.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = toy_teacher_key(cfg, min_digits, max_digits, exclude)
    final = cache_dir / key
    if (final / "config.json").is_file() and (final / "DONE").is_file():
        log.info("toy teacher cached at %s", final)
        return final
    work = cache_dir / f".{key}.work"
    excluded = {p.problem for p in exclude}
    pool = generate_arithmetic(cfg["train_problems"] + len(excluded), cfg["seed"], min_digits, max_digits, "toy")
    pool = [p for p in pool if p.problem not in excluded][: cfg["train_problems"]]
    pool = with_slips(pool, cfg.get("slip_rate", 0.0), cfg["seed"])
    corpus = [worked_text(p) for p in pool]
    tokenizer = build_toy_tokenizer(corpus, vocab_size=cfg["vocab_size"])
    spec = TinyModelSpec(**cfg["model"])
    model = build_tiny_model(spec, tokenizer, seed=cfg["seed"])
    examples = [worked_example(p) for p in pool]
    settings = TrainSettings(max_steps=cfg["train_steps"], learning_rate=cfg["learning_rate"],
                             batch_size=cfg["batch_size"], max_length=1024, warmup_ratio=0.05,
                             save_steps=max(50, cfg["train_steps"] // 4), logging_steps=25, seed=cfg["seed"])
    log.info("training toy teacher (%d problems, %d steps) into %s", len(pool), cfg["train_steps"], final)
    result = train_sft(model, tokenizer, examples, work, settings, on_log=on_log)
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    result.model_dir.rename(final)
    (final / "DONE").write_text(json.dumps({"losses": result.losses[-5:], "steps": result.steps}))
    shutil.rmtree(work, ignore_errors=True)
    return final


OPERANDS_RE = re.compile(r"What is (\d+) \+ (\d+)\?")


def with_slips(pool: list[Problem], slip_rate: float, seed: int) -> list[Problem]:
    """Give a ``slip_rate`` share of the worked solutions one arithmetic slip (a column sum off by one).

    This is what makes the toy teacher fallible in a controlled way: trained to
    convergence on these, it slips at roughly this rate when sampled, so the filter
    has wrong-but-well-formed traces to catch, as with a real teacher.
    """
    rng = random.Random(seed + 1)
    out = []
    for p in pool:
        m = OPERANDS_RE.match(p.problem)
        if m is None or rng.random() >= slip_rate:
            out.append(p)
            continue
        a, b = int(m.group(1)), int(m.group(2))
        column = rng.randrange(max(len(m.group(1)), len(m.group(2))))
        solution, result = addition_solution(a, b, slip_column=column, slip=rng.choice((-1, 1)))
        out.append(Problem(id=p.id, problem=p.problem, answer=result, source=p.source, solution=solution))
    return out


def worked_example(problem: Problem) -> dict[str, Any]:
    return to_training_example(build_prompt(problem), problem.solution, final_answer_text(problem.answer))


def worked_text(problem: Problem) -> str:
    return f"{problem.problem} {MATH_INSTRUCTION}\n<think>\n{problem.solution}\n</think>\n\n" + final_answer_text(
        problem.answer
    )
