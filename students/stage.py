"""The train stage: the student fine-tuned on the kept traces, in this process or in every process of an
``accelerate launch`` (the export stage, its sibling, is ``distill.students.export.stage``)."""

from __future__ import annotations

from typing import Any

from distill.errors import UserError
from distill.records import Trace, read_records
from distill.stage import Context, StageBase, StageOutcome
from distill.store import write_json_atomic


class TrainStage(StageBase):
    name = "train"
    section = "student"
    version = "2"  # 2: ZeRO-3 keeps the full vocabulary, FSDP2 on CPU, end-of-turn EOS in generation_config, tracking
    upstream = ("filter",)

    def fingerprint_input(self, config: Any) -> dict[str, Any]:
        """The student section less what changes no weight (trackers, checkpoint pushes: train_extras.py)."""
        from distill.students.train_extras import OPERATIONAL_KEYS

        section = config.section("student")
        for key in OPERATIONAL_KEYS:
            section.pop(key, None)
        return {"student": section}

    def check(self, config: Any) -> None:
        from distill.students.train_extras import check_train_extras

        check_train_extras(config)

    def prepare(self, ctx: Context) -> None:
        student_base(ctx)  # built once, by the main process, before every process loads it

    def run(self, ctx: Context) -> StageOutcome:
        from transformers import AutoTokenizer

        from distill.students.trainer import to_training_example, train_settings_from_config

        kept = read_records([ctx.store.stage_dir("filter") / "kept.jsonl"], Trace)
        if not kept:
            raise UserError("train: the filter kept no traces; nothing to train on (see filter/funnel.json)")
        examples = [to_training_example(t.prompt, t.reasoning, t.answer_text) for t in kept]
        base = student_base(ctx)
        tokenizer = AutoTokenizer.from_pretrained(base)
        settings = train_settings_from_config(ctx.config.student)
        _preflight(ctx, tokenizer, examples, settings)
        result = _train(ctx, base, tokenizer, examples, settings)
        write_json_atomic(ctx.out("train") / "losses.json", {"losses": result.losses, "steps": result.steps})
        first = result.losses[0][1] if result.losses else float("nan")
        final = result.losses[-1][1] if result.losses else float("nan")
        counts = {"examples": len(examples), "steps": result.steps, "first_loss": first, "final_loss": final,
                  "resumed_from": result.resumed_from, "base": base}
        return StageOutcome(counts, f"{result.steps} steps on {len(examples)} traces, loss {first:.3f} -> {final:.3f}")


def _train(ctx: Context, base: str, tokenizer: Any, examples: list[dict], settings: Any) -> Any:
    """train_sft with a progress task; precision and out-of-memory failures are the user's to fix (exit 2)."""
    from distill.students.plan import oom_remedies
    from distill.students.precision import PrecisionError
    from distill.students.train_extras import train_callbacks
    from distill.students.trainer import TrainingOutOfMemoryError, train_sft

    task = ctx.reporter.task("training student", None)
    last = [0]

    def on_log(step: int, total: int, logs: dict) -> None:
        task.advance(step - last[0], total=total, loss=logs.get("loss"))
        last[0] = step

    callbacks = train_callbacks(ctx)  # trackers, checkpoint pushes and evaluations (before any step is spent)
    try:
        return train_sft(base, tokenizer, examples, ctx.out("train"), settings, on_log=on_log,
                         remedies=lambda: oom_remedies(ctx.config), callbacks=callbacks)
    except (PrecisionError, TrainingOutOfMemoryError) as exc:
        raise UserError(f"train: {exc}") from None
    finally:
        task.close()


def _preflight(ctx: Context, tokenizer: Any, examples: list[dict], settings: Any) -> None:
    """Render the shortest kept trace as the trainer will; refuse to train on a template that loses the
    reasoning, the EOS or the prompt/inference match (students/preflight.py says why each matters)."""
    from distill.students.preflight import PreflightError, check_or_raise

    try:
        check_or_raise(tokenizer, examples, settings, report_path=ctx.out("train") / "preflight.txt")
    except PreflightError as exc:
        raise UserError(f"train: {exc} (see train/preflight.txt or `distill check-template CONFIG`)") from None


def student_base(ctx: Context) -> str:
    """The student's starting point: a real base model, or a tiny random one sharing the teacher's tokenizer."""
    cfg = ctx.config
    if cfg.student.model != "toy":
        return cfg.student.model
    base = ctx.out("train") / "base"
    if (base / "config.json").is_file():
        return str(base)
    from transformers import AutoTokenizer

    from distill.students.models import TinyModelSpec, build_tiny_model
    from distill.teachers.models import teacher_path

    tokenizer = AutoTokenizer.from_pretrained(teacher_path(ctx))
    model = build_tiny_model(TinyModelSpec(**cfg.student.toy.model_dump()), tokenizer, seed=cfg.student.seed)
    tmp = base.with_name("base.tmp")
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    tmp.rename(base)
    return str(base)


TRAIN = TrainStage()
