"""The push stage: the student, its 4-bit variants, the kept traces and an honest model card, uploaded to
the Hub, or, without a repo id or token, written to the exact folder that would be uploaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.records import read_jsonl
from distill.stage import Context, StageBase, StageOutcome


class PushStage(StageBase):
    name = "push"
    section = "hub"
    version = "3"  # 3: composition, sampling mode and checkpoint sections in the card
    upstream = ("filter", "train", "export", "eval")

    def run(self, ctx: Context) -> StageOutcome:
        from distill.publish import hub

        cfg = ctx.config
        base = ctx.store.entry("train").get("counts", {}).get("base", cfg.student.model)
        card = _card_info(ctx)
        extra = _quantised_files(ctx, card)
        traces = list(read_jsonl(ctx.store.stage_dir("filter") / "kept.jsonl")) if cfg.hub.push_traces else None
        folder = ctx.out("push") / "upload"
        written = hub.write_upload_folder(folder, ctx.store.stage_dir("train") / "model", card, traces, extra)
        token = hub.resolve_token(cfg.hub.token_env)
        if not cfg.hub.repo_id or not token:
            why = "no hub.repo_id set" if not cfg.hub.repo_id else f"no token in ${cfg.hub.token_env} or the Hub login"
            # written locally, not uploaded: not done, so the next run (once a token is set) uploads it
            return StageOutcome({"uploaded": False, "folder": str(folder), "base": base},
                                f"written locally, not uploaded ({why}); the upload folder is {folder}",
                                final=False, blocking=False)
        pushed = hub.push_folder(Path(written["model_folder"]), cfg.hub.repo_id, token, private=cfg.hub.private,
                                 revision=cfg.hub.revision)
        counts: dict[str, Any] = {"uploaded": True, "model": pushed}
        if written.get("dataset_folder") and card.dataset_repo_id:
            counts["dataset"] = hub.push_folder(Path(written["dataset_folder"]), card.dataset_repo_id, token,
                                                private=cfg.hub.private, repo_type="dataset")
        return StageOutcome(counts, f"uploaded to {pushed['url']} ({len(pushed['uploaded'])} files sent)")


PUSH = PushStage()


def _card_info(ctx: Context) -> Any:
    """What the model card states, from the run's config and its eval and filter outputs."""
    from distill.publish import hub
    from distill.publish.card import sampling_text

    cfg = ctx.config
    grid = _eval_grid(ctx)
    funnel = json.loads((ctx.store.stage_dir("filter") / "funnel.json").read_text())["funnel"]
    base_name = "toy (random init)" if cfg.student.model == "toy" else cfg.student.model
    teacher = _teacher_source(cfg.teacher)
    license_id, license_note = hub.license_for_base(base_name, teacher)
    shared, per_bench = _protocols(grid)
    return hub.CardInfo(
        repo_id=cfg.hub.repo_id,
        model_name=cfg.hub.repo_id.split("/")[-1] if cfg.hub.repo_id else cfg.name,
        base_model=base_name,
        teacher=teacher.name,
        teacher_source=teacher,
        sampling=sampling_text(cfg.section("teacher")),
        license=license_id,
        license_note=license_note,
        training=cfg.section("student"),
        eval_results={label: {bench: s["pass_at_1"] for bench, s in per.items()} for label, per in grid.items()},
        eval_protocol=shared,
        benchmark_protocols=per_bench,
        funnel=funnel,
        composition=_composition(ctx),
        dataset_repo_id=f"{cfg.hub.repo_id}-traces" if cfg.hub.repo_id and cfg.hub.push_traces else None,
        extra_files=[],
    )


def _composition(ctx: Context) -> dict[str, Any]:
    """A mixture run's composition as reached (filter/composition.json); {} for a single source."""
    path = ctx.store.stage_dir("filter") / "composition.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _teacher_source(teacher: Any) -> Any:
    """The run's real teacher for the cards: a trace dataset, a model behind an API, or a model."""
    from distill.publish.licences import teacher_source

    if teacher.kind == "dataset":
        return teacher_source("dataset", teacher.dataset.path)
    if teacher.backend == "openai":
        return teacher_source("api", teacher.model, teacher.openai.served_model)
    return teacher_source("model", teacher.model)


def _eval_grid(ctx: Context) -> dict[str, dict[str, dict[str, Any]]]:
    """Model -> benchmark -> summary for every benchmark evaluated (``benchmarks.json``), or the primary
    benchmark alone (``results.json``) from an eval stage that wrote no grid."""
    out = ctx.store.stage_dir("eval")
    if (out / "benchmarks.json").is_file():
        return json.loads((out / "benchmarks.json").read_text())
    results = json.loads((out / "results.json").read_text())
    return {label: {summary["benchmark"]: summary} for label, summary in results.items()}


def _protocols(grid: dict[str, dict[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(run-wide settings, benchmark -> its k, sampling settings and problem count), from the student's
    protocol records where it was evaluated (the model the card describes), else any model's."""
    rows = grid.get("student") or next(iter(grid.values()), {})
    per_bench: dict[str, dict[str, Any]] = {}
    for bench, summary in rows.items():
        record, params = summary.get("protocol") or {}, summary.get("params") or {}
        per_bench[bench] = {"problems": summary.get("problems"), "k": record.get("k", params.get("n")),
                            **{key: record.get(key, params.get(key)) for key in ("temperature", "top_p", "max_tokens")}}
    first = (next(iter(rows.values()), {}).get("protocol") or {})
    shared = {key: first[key] for key in ("harness", "engine", "dtype", "seed") if key in first}
    return shared, per_bench


def _quantised_files(ctx: Context, card: Any) -> dict[str, Path]:
    """The 4-bit variants that ride along the student (repo path -> file), listed on the card too."""
    extra: dict[str, Path] = {}
    export_dir = ctx.store.stage_dir("export")
    for sub, pattern in (("gguf", "*.gguf"), ("nf4", "*")):
        folder = export_dir / sub
        for f in sorted(folder.glob(pattern)) if folder.is_dir() else []:
            if f.is_file():
                extra[f"{sub}/{f.name}"] = f
                card.extra_files.append(f"{sub}/{f.name}")
    return extra
