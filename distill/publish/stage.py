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
    version = "1"
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
            return StageOutcome({"uploaded": False, "folder": str(folder), "base": base},
                                f"not uploaded ({why}); the upload folder is {folder}")
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

    cfg = ctx.config
    results = json.loads((ctx.store.stage_dir("eval") / "results.json").read_text())
    funnel = json.loads((ctx.store.stage_dir("filter") / "funnel.json").read_text())["funnel"]
    base_name = "toy (random init)" if cfg.student.model == "toy" else cfg.student.model
    license_id, license_note = hub.license_for_base(base_name)
    any_result = next(iter(results.values()), {})
    return hub.CardInfo(
        repo_id=cfg.hub.repo_id,
        model_name=cfg.hub.repo_id.split("/")[-1] if cfg.hub.repo_id else cfg.name,
        base_model=base_name,
        teacher=cfg.teacher.model if cfg.teacher.model != "toy" else "toy teacher (distill quickstart)",
        license=license_id,
        license_note=license_note,
        training=cfg.section("student"),
        eval_results={label: {r["benchmark"]: r["pass_at_1"]} for label, r in results.items()},
        eval_protocol={**any_result.get("params", {}), "problems": any_result.get("problems")},
        funnel=funnel,
        dataset_repo_id=f"{cfg.hub.repo_id}-traces" if cfg.hub.repo_id and cfg.hub.push_traces else None,
        extra_files=[],
    )


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
