"""Chat-template pre-flight: render one example exactly as the trainer will, and check the loss mask.

A wrong template fails silently: the loss still falls, and only the finished student
shows the damage (it never reasons, never stops, or sees a different prompt at
inference than in training). So before training we build the real
``SFTTrainer`` (``distill.students.trainer.build_trainer``) on a one-example dataset with a
tiny throwaway model -- the same tokenization, template swap, EOS and pad handling,
truncation and label masking as the run, so the check can never drift from it --
and read back its ``labels`` column (-100 where the loss is masked).

The run may train only if all of these hold:

- ``pad_distinct``: pad != EOS (else padding and EOS are confused and students never stop);
- ``prefix_matches``: ``apply_chat_template(prompt, add_generation_prompt=True)`` is, token
  for token, what precedes the first trained token -- the context at inference is
  the context in training;
- ``opens_assistant_turn``: the trained part starts with the assistant's reply, not with
  role markup that the inference prompt already contains or leaves out;
- ``prompt_masked``: no prompt token carries loss;
- ``reasoning_trained``, ``answer_trained``: the think block and the answer carry loss;
- ``eos_trained``: the end-of-turn (EOS) token carries loss, so the student learns to stop;
- ``kept_by_trainer`` (reported only when it fails): the trainer keeps the example at all --
  TRL drops examples in which truncation to max_length leaves no token with loss.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import UserError

log = logging.getLogger(__name__)

SAMPLE_PROMPT = [{"role": "user", "content": "What is 17 + 25? Please reason step by step, and put your final "
                                             "answer within \\boxed{}."}]
SAMPLE_REASONING = "Add the ones: 7 + 5 = 12, write 2 and carry 1.\nAdd the tens: 1 + 2 + 1 = 4.\nSo 17 + 25 = 42."
SAMPLE_ANSWER = "The sum is \\boxed{42}."


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found; for a failure, the one-line reason


@dataclass
class PreflightReport:
    """What the trainer would see for one example, and the verdict."""

    template: str  # TemplateSelection.describe()
    eos: str
    pad: str | None
    input_ids: list[int]
    labels: list[int]
    generation_prompt_ids: list[int]
    masked_text: str
    trained_text: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def reason(self) -> str:
        """All failures on one line ('' when it passed)."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failures)

    def render(self) -> str:
        """A plain-text view (no colour markup) of which tokens carry loss, for the CLI and logs."""
        trained = sum(label != -100 for label in self.labels)
        lines = [
            f"template: {self.template}",
            f"eos: {self.eos!r}   pad: {self.pad!r}",
            f"tokens: {len(self.input_ids)} ({len(self.input_ids) - trained} masked, {trained} trained)",
            f"masked  (no loss): {self.masked_text!r}",
            f"trained (loss):    {self.trained_text!r}",
            "checks:",
        ]
        lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]
        lines.append("verdict: ok" if self.ok else f"verdict: FAILED ({len(self.failures)} check(s))")
        return "\n".join(lines)


class PreflightError(UserError):
    """The chat template would train the student wrongly; the message is the one-line reason (a user
    error: exit code 2, no traceback)."""


def sample_example() -> dict[str, Any]:
    """A short arithmetic example in the trainer's format, for configs with no traces yet."""
    from distill.students.trainer import to_training_example

    return to_training_example(SAMPLE_PROMPT, SAMPLE_REASONING, SAMPLE_ANSWER)


def check_config(config: Any, tokenizer_path: str | None = None) -> PreflightReport:
    """The pre-flight of a run config: its student tokenizer and template choice, on the shortest kept
    trace of the run when the filter has run, else on a built-in sample."""
    from distill.students.train_settings import train_settings_from_config  # as training builds them

    return run_preflight(load_student_tokenizer(config, tokenizer_path), _run_example(config),
                         train_settings_from_config(config.student))


def load_student_tokenizer(config: Any, path: str | None = None) -> Any:
    """The tokenizer the student trains with: ``path``, else student.model; for the toy student the
    run's saved base, else a toy tokenizer built from the sample (same ChatML template and tokens)."""
    from transformers import AutoTokenizer

    from distill.errors import UserError

    if path is None and config.student.model == "toy":
        base = config.run_dir / "train" / "base"
        if not (base / "tokenizer_config.json").is_file():
            from distill.students.toy_tokenizer import build_toy_tokenizer

            return build_toy_tokenizer([SAMPLE_PROMPT[0]["content"], SAMPLE_REASONING, SAMPLE_ANSWER] * 20)
        path = str(base)
    path = path or config.student.model
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load the student tokenizer {path!r} ({first}); pass --tokenizer with a "
                        "local folder") from None


def _run_example(config: Any) -> dict[str, Any]:
    kept = config.run_dir / "filter" / "kept.jsonl"
    if not kept.is_file():
        return sample_example()
    from distill.records import Trace, read_records
    from distill.students.trainer import to_training_example

    traces = read_records([kept], Trace)
    if not traces:
        return sample_example()
    shortest = min(traces, key=lambda t: len(t.reasoning) + len(t.answer_text))
    return to_training_example(shortest.prompt, shortest.reasoning, shortest.answer_text)


def run_preflight(tokenizer: Any, example: dict[str, Any] | None = None, settings: Any = None) -> PreflightReport:
    """Render ``example`` through ``build_trainer`` (on a copy of ``tokenizer``) and check its loss mask.

    ``settings`` are the run's ``TrainSettings`` (template choice, max_length,
    packing matter); the training-only knobs are reset so nothing heavy is built.
    """
    from distill.students.templates import select_template
    from distill.students.trainer import TrainSettings

    example = example or sample_example()
    settings = _preflight_settings(settings or TrainSettings())
    selection = select_template(tokenizer, settings.chat_template)
    tok = copy.deepcopy(tokenizer)  # build_trainer sets template, EOS and pad on the tokenizer it gets
    with _no_progress_bars():
        row, trainer_tok, collator_pad = _trainer_row(tok, example, settings)
    if row is None:  # TRL drops examples in which no token carries loss (e.g. all past max_length)
        ids = list(trainer_tok.apply_chat_template(example["prompt"] + example["completion"], tokenize=True,
                                                   return_dict=False))
        row = {"input_ids": ids, "labels": [-100] * len(ids)}
    report = analyse(trainer_tok, example, row["input_ids"], row["labels"], selection.describe(), collator_pad)
    if not any(label != -100 for label in row["labels"]):  # every other check would fail for this one reason
        report.checks = [Check("kept_by_trainer", False, "the trainer drops this example: no token carries loss "
                                                         f"within max_length {settings.max_length}"),
                         *[c for c in report.checks if c.name in ("pad_distinct", "prompt_masked")]]
    return report


def check_or_raise(tokenizer: Any, examples: list[dict[str, Any]] | None = None, settings: Any = None,
                   report_path: Path | None = None) -> PreflightReport:
    """The pre-flight before training: ``run_preflight`` on the shortest of ``examples`` (the check is
    about the template, not about traces longer than max_length), the rendering written to
    ``report_path`` when given (passed or not), raising :class:`PreflightError` with the one-line reason
    when a check fails."""
    example = min(examples, key=lambda e: len(e["completion"][-1]["content"])) if examples else None
    report = run_preflight(tokenizer, example, settings)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.render() + "\n", encoding="utf-8")
    if not report.ok:
        raise PreflightError(f"chat-template pre-flight failed: {report.reason}")
    log.info("chat-template pre-flight passed (%s)", report.template)
    return report


def analyse(tokenizer: Any, example: dict[str, Any], input_ids: list[int], labels: list[int],
            template: str = "", collator_pad: int | None = None) -> PreflightReport:
    """Check one tokenized example (``labels`` -100 where masked) against the inference rendering."""
    prompt = example["prompt"]
    content = example["completion"][-1]["content"]
    gen_ids = list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                 return_dict=False))
    trained_mask = [label != -100 for label in labels]
    first = trained_mask.index(True) if any(trained_mask) else len(input_ids)
    decode = _decoder(tokenizer)
    trained_text = decode([t for t, m in zip(input_ids, trained_mask) if m])
    masked_text = decode([t for t, m in zip(input_ids, trained_mask) if not m])
    reasoning, answer = _split_completion(content)
    full_text = decode(input_ids)
    checks = [
        _check_pad(tokenizer, collator_pad),
        _check_prefix(input_ids, first, gen_ids, decode),
        _check_opens_turn(decode(gen_ids), decode(input_ids[first:]), content),
        _check_prompt_masked(prompt, trained_text, first),
        _check_part("reasoning", reasoning, trained_text, full_text),
        _check_part("answer", answer, trained_text, full_text),
        _check_eos(tokenizer, input_ids, trained_mask),
    ]
    return PreflightReport(template=template, eos=tokenizer.eos_token, pad=tokenizer.pad_token,
                           input_ids=list(input_ids), labels=list(labels), generation_prompt_ids=gen_ids,
                           masked_text=masked_text, trained_text=trained_text, checks=checks)


def _preflight_settings(settings: Any) -> Any:
    """The run's settings with everything that costs time or memory turned off."""
    return dataclasses.replace(settings, method="full", max_steps=1, epochs=1.0, batch_size=1, grad_accum=1,
                               gradient_checkpointing=False, save_steps=10**9, logging_steps=1,
                               dtype="fp32", use_liger_kernel=False, rope=None, attention="auto")


def _trainer_row(tokenizer: Any, example: dict[str, Any], settings: Any) -> tuple[dict[str, Any] | None, Any,
                                                                                 int | None]:
    """Row 0 of the trainer's prepared dataset (None if it dropped the example), the trainer's tokenizer
    and its collator's pad id."""
    from distill.students.models import TinyModelSpec, build_tiny_model
    from distill.students.trainer import build_trainer

    spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32,
                         max_position_embeddings=max(2048, settings.max_length))
    model = build_tiny_model(spec, tokenizer)
    with tempfile.TemporaryDirectory(prefix="distill-preflight-") as tmp:
        trainer = build_trainer(model, tokenizer, [example], Path(tmp), settings)
        row = dict(trainer.train_dataset[0]) if len(trainer.train_dataset) else None
        collator_pad = getattr(trainer.data_collator, "pad_token_id", None)
        return row, trainer.processing_class, collator_pad


@contextlib.contextmanager
def _no_progress_bars():
    """datasets draws a bar per map(); a one-row pre-flight is not worth four bars on the terminal."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def _decoder(tokenizer: Any):
    def decode(ids: list[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return decode


def _split_completion(content: str) -> tuple[str, str]:
    """(reasoning, answer) of ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``."""
    head, sep, tail = content.partition("</think>")
    if not sep:
        return "", content.strip()
    return head.replace("<think>", "", 1).strip(), tail.strip()


def _clip(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _squash(text: str) -> str:
    return " ".join(text.split())


def _check_pad(tokenizer: Any, collator_pad: int | None) -> Check:
    eos = tokenizer.eos_token_id
    pads = {p for p in (tokenizer.pad_token_id, collator_pad) if p is not None}
    if not pads:
        return Check("pad_distinct", False, "no pad token is set")
    if eos in pads:
        return Check("pad_distinct", False, f"the pad token is the EOS token {tokenizer.eos_token!r}, so padding "
                                            "and end-of-turn are confused and the student may never learn to stop")
    return Check("pad_distinct", True, f"pad {tokenizer.pad_token!r} != eos {tokenizer.eos_token!r}")


def _check_prefix(input_ids: list[int], first: int, gen_ids: list[int], decode) -> Check:
    prefix = list(input_ids[:first])
    if prefix == gen_ids:
        return Check("prefix_matches", True, f"generation prompt == training prefix ({len(gen_ids)} tokens)")
    same = 0
    for a, b in zip(prefix, gen_ids):
        if a != b:
            break
        same += 1
    return Check("prefix_matches", False,
                 f"the inference prompt (add_generation_prompt=True) is not the training prefix: after "
                 f"{same} common tokens inference continues with {_clip(decode(gen_ids[same:]))!r} but training "
                 f"conditions on {_clip(decode(prefix[same:]))!r}")


def _check_opens_turn(gen_text: str, trained_text: str, content: str) -> Check:
    """The trained part must start with the reply (or its continuation when the prompt prefills some of it)."""
    prefilled = max(j for j in range(min(len(content), 64) + 1) if gen_text.endswith(content[:j]))
    expected = content[prefilled:].lstrip()[:16]
    if trained_text.lstrip().startswith(expected):
        where = f" (the prompt prefills {content[:prefilled]!r})" if prefilled else ""
        return Check("opens_assistant_turn", True, f"loss starts at the reply{where}")
    if expected not in trained_text:
        return Check("opens_assistant_turn", False, f"the reply does not start with {expected!r} where the loss "
                                                    "starts: the template rewrites or cuts the assistant content")
    return Check("opens_assistant_turn", False,
                 f"loss starts at {_clip(trained_text)!r}, before the reply {expected!r}: the generation prompt does "
                 "not open the assistant turn (does the template handle add_generation_prompt?)")


def _check_prompt_masked(prompt: list[dict[str, str]], trained_text: str, first: int) -> Check:
    user = [m["content"] for m in prompt if m.get("role") == "user"]
    leaked = [u for u in user if _squash(u)[:40] and _squash(u)[:40] in _squash(trained_text)]
    if first == 0 or leaked:
        return Check("prompt_masked", False, "prompt tokens carry loss (the student would learn to write prompts)")
    return Check("prompt_masked", True, f"{first} prompt tokens masked")


def _check_part(name: str, text: str, trained_text: str, full_text: str) -> Check:
    label = f"{name}_trained"
    if not text:
        return Check(label, False, f"the example has no {name}")
    needle = _squash(text)
    if needle in _squash(trained_text):
        return Check(label, True, f"{name} carries loss")
    if needle not in _squash(full_text):
        why = ("the chat template drops it from the assistant turn (the stock DeepSeek-R1-Distill template keeps "
               "only the text after '</think>'; use student.chat_template: auto or r1_distill)"
               if name == "reasoning" else "the chat template drops it from the assistant turn")
        return Check(label, False, f"{name} is not trained: {why}")
    return Check(label, False, f"{name} is rendered but masked from the loss")


def _check_eos(tokenizer: Any, input_ids: list[int], trained_mask: list[bool]) -> Check:
    eos_id, eos = tokenizer.eos_token_id, tokenizer.eos_token
    positions = [i for i, t in enumerate(input_ids) if t == eos_id]
    if any(trained_mask[i] for i in positions):
        return Check("eos_trained", True, f"{eos!r} carries loss")
    if not positions:
        return Check("eos_trained", False, f"the EOS token {eos!r} never appears in the rendered turn, so the student "
                                           "never learns to emit it (is EOS the template's end-of-turn token?)")
    return Check("eos_trained", False, f"the EOS token {eos!r} is masked from the loss (truncated by max_length, or "
                                       "the template puts it outside the assistant turn)")
