"""Rehearse a student recipe (``configs/r1-distill-*.yaml``): the real pipeline on tiny models of the real
architectures, in a rehearsal folder, stage by stage.

Two passes through :mod:`distill.pipeline`, because a random-weight teacher's traces never verify:

1. the teacher pass: the tiny teacher (R1's architecture) samples the rehearsal's problems through the
   configured backend, the filter judges what it wrote (it keeps nothing, rightly), and the eval stage
   evaluates the teacher;
2. the student pass: a handful of real worked solutions written as R1-format traces stand in for the
   teacher's (``teacher.kind: dataset``, listed), so the filter keeps them and the student (the base's
   architecture, tokenizer and template) trains, exports, is evaluated and pushed (written locally).

Each stage's row says what ran, the substitutions, and what the static checks found at full scale.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from distill.config import STAGES, RunConfig
from distill.errors import StageError, UserError
from distill.rehearse.report import StageRehearsal
from distill.rehearse.substitute import TRAIN_PROBLEMS, Substitutions

log = logging.getLogger(__name__)
TEACHER_PASS_STAGES = ("sample", "filter")


def build_tiny(model: str, models_dir: Path, subs: Substitutions, path: str) -> str:
    """A tiny random-weight model of ``model``'s architecture (cached in ``models_dir``), noted as a substitution."""
    from distill.rehearse.models import real_config, tokenizer_choice
    from distill.rehearse.shrink import DEFAULT_SHRINK, shrink_key, tiny_config, tiny_model_dir

    real = real_config(model)
    choice = tokenizer_choice(model)
    # the shrink's key in the folder's name: a changed shrink is a new path, so a rehearsal run again in the
    # same folder re-trains rather than skipping stages whose fingerprint (the model path) did not change
    name = f"{model.strip('/').replace('/', '--')}-{shrink_key(real, choice, DEFAULT_SHRINK)[:8]}"
    folder = tiny_model_dir(real, choice, models_dir / name)
    tiny = tiny_config(real)
    heads = f", {tiny['num_attention_heads']} heads x head_dim {tiny['head_dim']}" if tiny.get("head_dim") else ""
    subs.note(path, model, folder, f"random-weight {real.get('model_type')} of the same configuration at "
              f"{tiny['num_hidden_layers']} layers, hidden {tiny['hidden_size']}{heads}")
    if choice.substitution:
        subs.note(f"{path} (tokenizer)", choice.folder.name, choice.folder, choice.substitution)
    return str(folder)


def stand_in_traces(data: Path | None, out: Path, count: int = TRAIN_PROBLEMS) -> Path:
    """``count`` real worked solutions (GSM8K train, from ../shared/data) written as R1-format traces:
    ``<think>solution</think>`` then the boxed answer, one JSONL row each (the ``single`` layout)."""
    from distill.records import read_jsonl

    if data is None or not (data / "train" / "gsm8k_train.jsonl").is_file():
        raise UserError("rehearse: ../shared/data/train/gsm8k_train.jsonl is not here; the student pass needs a "
                        "few real worked solutions as stand-in traces")
    rows = []
    for row in read_jsonl(data / "train" / "gsm8k_train.jsonl"):
        reasoning = row["solution"].split("####")[0].strip()
        rows.append({"id": row["id"], "problem": row["problem"], "answer": row["answer"],
                     "generation": f"<think>\n{reasoning}\n</think>\n\nThe answer is $\\boxed{{{row['answer']}}}$."})
        if len(rows) == count:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


def run_pass(config: RunConfig, until: str) -> tuple[dict[str, Any], str | None]:
    """Run the pipeline up to ``until``; (manifest stages, the failed stage's one-line reason or None).

    ``static_checks=False``: the rehearsal lists what the static checks refuse (at full scale, before
    substituting) and then runs the stages anyway, so a stage that would also fail at run time shows that
    failure too.  The files the config names are still checked, as ``distill run`` checks them.
    """
    from distill import pipeline

    reason = None
    try:
        pipeline.run(config, until, static_checks=False)
    except (StageError, UserError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a rehearsal reports any failure as its stage's row
        log.exception("rehearsal pass failed")
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return _manifest_stages(config), reason


def stage_row(stage: str, entry: dict[str, Any] | None, reason: str | None, prefix: str = "") -> StageRehearsal:
    """A row from a manifest entry: done/incomplete -> its summary; failed -> its one-line error."""
    if not entry:
        return StageRehearsal(stage, f"{prefix}not reached" + (f" ({reason})" if reason else ""), ok=False)
    status, seconds = entry.get("status"), entry.get("seconds")
    if status == "failed":
        error = str(entry.get("error") or reason or "failed").splitlines()[0]
        return StageRehearsal(stage, f"{prefix}FAILED: {error}", ok=False, seconds=seconds)
    summary = str(entry.get("summary") or status)
    ok = status in ("done", "incomplete")
    return StageRehearsal(stage, f"{prefix}{summary}" + ("" if status == "done" else f" [{status}]"), ok=ok,
                          seconds=seconds)


def rehearse_student(real: RunConfig, subs: Substitutions, workdir: Path, data: Path | None,
                     until: str | None) -> list[StageRehearsal]:
    """Both passes for a student recipe; one row per stage up to ``until``."""
    last = STAGES.index(until) if until else len(STAGES) - 1
    wanted = STAGES[: last + 1]
    models = workdir / "models"
    teacher_rows = _teacher_pass(real, subs, workdir, models, wanted)
    if last < STAGES.index("train"):
        return [teacher_rows[s] for s in wanted]
    student_rows = _student_pass(real, subs, workdir, models, data, STAGES[last])
    rows = []
    for stage in wanted:
        row = student_rows.get(stage) or teacher_rows[stage]
        if stage in teacher_rows and stage in student_rows and stage in TEACHER_PASS_STAGES:
            first = teacher_rows[stage]
            row = StageRehearsal(stage, f"{first.ran}; then {row.ran}", ok=first.ok and row.ok,
                                 seconds=(first.seconds or 0) + (row.seconds or 0))
        elif stage == "eval" and "eval" in teacher_rows:
            first = teacher_rows["eval"]
            row = StageRehearsal(stage, f"{first.ran}; then {row.ran}", ok=first.ok and row.ok,
                                 seconds=(first.seconds or 0) + (row.seconds or 0))
        rows.append(row)
    return rows


def _teacher_pass(real: RunConfig, subs: Substitutions, workdir: Path, models: Path,
                  wanted: tuple[str, ...]) -> dict[str, StageRehearsal]:
    t = real.teacher
    rows: dict[str, StageRehearsal] = {}
    if t.kind != "model" or t.model == "toy":
        return {s: StageRehearsal(s, "teacher pass: skipped (no teacher model in the config)") for s in wanted}
    if t.backend == "openai":
        subs.set("teacher.backend", "vllm", "an HTTP teacher is rehearsed by `distill rehearse "
                 "configs/teachers/...`; here its declared model runs in-process")
    subs.set("teacher.model", build_tiny(t.model, models, subs, "teacher.model"), "tiny", old=t.model)
    subs.items.pop()  # build_tiny noted it with the architecture; the override itself is the same change
    cfg = subs.config(str(real.name))
    first = cfg.model_copy(update={"name": teacher_pass_name(cfg)})
    until = "filter" if "filter" in wanted else "sample"
    before = _manifest_stages(first)
    stages, reason = run_pass(first, until)
    for stage in ("sample", "filter")[: 2 if until == "filter" else 1]:
        reused = stages.get(stage) is not None and before.get(stage) == stages.get(stage)
        prefix = "teacher pass (reused: same teacher pass as an earlier rehearsal in this folder): " if reused \
            else "teacher pass: "
        rows[stage] = stage_row(stage, stages.get(stage), reason, prefix)
    if "eval" in wanted and "teacher" in real.eval.models and all(r.ok for r in rows.values()):
        eval_cfg = _with(first, eval={"models": ["teacher"]})
        stages, reason = run_pass(eval_cfg, "eval")
        reused = stages.get("eval") is not None and before.get("eval") == stages.get("eval")
        rows["eval"] = stage_row("eval", stages.get("eval"), reason, "teacher (reused): " if reused else "teacher: ")
    return rows


def teacher_pass_name(config: RunConfig) -> str:
    """The teacher pass's run folder, named by what it samples and judges (problems, teacher, filter), not by
    the recipe.  The six student recipes share one teacher section, as R1's six students shared one set of
    traces: rehearsed in one ``--workdir``, the first recipe samples and the rest reuse its traces through the
    pipeline's own fingerprints, the way a real run reuses paid traces."""
    import hashlib

    raw = config.model_dump(mode="json")
    key = json.dumps({k: raw.get(k) for k in ("problems", "teacher", "filter")}, sort_keys=True, default=str)
    return "teacher-pass-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _manifest_stages(config: RunConfig) -> dict[str, Any]:
    manifest = config.run_dir / "manifest.json"
    return json.loads(manifest.read_text(encoding="utf-8")).get("stages", {}) if manifest.is_file() else {}


def _student_pass(real: RunConfig, subs: Substitutions, workdir: Path, models: Path, data: Path | None,
                  until: str) -> dict[str, StageRehearsal]:
    traces = stand_in_traces(data, workdir / "stand_in_traces.jsonl")
    subs.note("teacher (student pass)", real.teacher.model, traces.name,
              f"{TRAIN_PROBLEMS} GSM8K worked solutions as R1-format traces (teacher.kind: dataset): a random-"
              "weight teacher's traces never verify, so nothing would be left to train on")
    subs.set("student.model", build_tiny(real.student.model, models, subs, "student.model"), "tiny",
             old=real.student.model)
    subs.items.pop()
    cfg = subs.config(str(real.name))
    student_cfg = _with(cfg, teacher={"kind": "dataset", "dataset": {"path": str(traces), "layout": "single"}},
                        eval={"models": [m for m in cfg.eval.models if m != "teacher"] or ["student"]})
    stages, reason = run_pass(student_cfg, until)
    last = STAGES.index(until)
    return {s: stage_row(s, stages.get(s), reason, "student pass: " if s in TEACHER_PASS_STAGES else "")
            for s in STAGES[: last + 1]}


def _with(config: RunConfig, **sections: dict[str, Any]) -> RunConfig:
    """``config`` with some section values replaced (validated again)."""
    from distill.config import config_from_dict

    raw = config.model_dump(mode="json")
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(raw[section].get(key), dict):
                raw[section][key].update(value)
            else:
                raw[section][key] = value
    return config_from_dict(raw, origin=f"{config.name} (rehearsal)")

