"""The README.md card of the published model (the traces' card is in :mod:`distill.publish.dataset_card`).

The YAML metadata is what the Hub indexes (licence, base model, ``model-index``
for the evaluation widget), so it is built with ``huggingface_hub``'s own card
classes (:class:`~huggingface_hub.ModelCardData` with
:class:`~huggingface_hub.EvalResult`) and written by
:class:`~huggingface_hub.ModelCard`, rather than templated by hand: the Hub and
the card classes then agree on every key.  The body states what the model is
and, just as plainly, what the numbers do *not* show.  :func:`settings_table`
and :func:`card_text` are shared with the dataset card.

``huggingface_hub`` is imported only when a card is rendered, so importing this
module needs nothing beyond the core install.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from distill.errors import UserError
from distill.publish.licences import license_metadata, looks_like_repo_id
from distill.publish.tables import markdown_table

logger = logging.getLogger(__name__)

__all__ = ["CardInfo", "render_model_card"]

# Key order of the model card's YAML header (ModelCardData attribute names; the Hub
# writes ``model_name`` + ``eval_results`` as ``model-index``, last).
_MODEL_META_ORDER = [
    "license", "license_name", "license_link", "base_model", "tags", "datasets",
    "pipeline_tag", "library_name", "model_name", "eval_results",
]


@dataclass
class CardInfo:
    """Everything a model card says, gathered by the caller from the run's records.

    ``eval_results`` maps a model label (the student, the base, the teacher...)
    to benchmark name to pass@1 as a fraction in 0..1.  The student's row is the
    one whose label equals ``model_name`` or ``repo_id`` or is ``"student"``.
    """

    repo_id: str | None
    model_name: str
    base_model: str
    teacher: str
    license: str
    license_note: str
    training: dict = field(default_factory=dict)
    eval_results: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_protocol: dict = field(default_factory=dict)
    funnel: dict[str, int] = field(default_factory=dict)
    dataset_repo_id: str | None = None
    extra_files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- #
# Small formatting helpers
# --------------------------------------------------------------------------- #


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "benchmark"


def _dataset_types(benches: list[str]) -> dict[str, str]:
    """Benchmark name -> model-index ``dataset.type``: its slug, made unique.

    Why unique: huggingface_hub merges results that share a task and dataset type,
    so "AIME 2024" and "aime-2024" would otherwise become one entry.
    """
    types: dict[str, str] = {}
    for bench in benches:
        slug, n = _slug(bench), 2
        while slug in types.values():
            slug, n = f"{_slug(bench)}-{n}", n + 1
        types[bench] = slug
    return types


def _cell_text(value: Any) -> str:
    """One table cell's text (escaping is markdown_table's job): ``%g`` floats, compact JSON structures."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if value is None:
        return "–"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """The project's markdown table with the cards' cell formatting."""
    return markdown_table(headers, rows, cell=_cell_text)


def settings_table(headers: list[str], settings: dict) -> str:
    """A two-column key/value table of ``settings``."""
    return _table(headers, [[k, v] for k, v in settings.items()])


def _pct(value: float) -> float:
    return round(100.0 * float(value), 2)


def card_text(card_class: type, meta_yaml: str, body: list[str]) -> str:
    """The README.md text: ``meta_yaml`` as the header, then the body sections, through ``card_class``.

    ``card_class`` is huggingface_hub's ModelCard or DatasetCard, which parses the
    header with its card-data class and writes it back in the Hub's format.  The
    body starts with an empty line after the closing ``---``, as the cards always have.
    """
    card = card_class("---\n" + meta_yaml + "\n---\n\n" + "\n".join(body))
    return str(card)


# --------------------------------------------------------------------------- #
# Reading the card info
# --------------------------------------------------------------------------- #


def _check_scores(results: dict[str, dict[str, float]]) -> None:
    for label, scores in results.items():
        for bench, value in scores.items():
            if value is None or not isinstance(value, (int, float)) or math.isnan(float(value)):
                raise UserError(f"eval_results[{label!r}][{bench!r}] is not a number: {value!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise UserError(
                    f"eval_results[{label!r}][{bench!r}] = {value!r} is outside 0..1 "
                    "(pass@1 must be a fraction, not a percent)"
                )


def _student_label(info: CardInfo) -> str | None:
    """Which row of ``eval_results`` is the model this card describes."""
    for cand in (info.model_name, info.repo_id, "student"):
        if cand and cand in info.eval_results:
            return cand
    students = [label for label in info.eval_results if "student" in label.lower()]
    if len(students) == 1:
        return students[0]
    if len(info.eval_results) == 1:
        return next(iter(info.eval_results))
    return None


def _benchmarks(results: dict[str, dict[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for scores in results.values():
        for bench in scores:
            seen.setdefault(bench, None)
    return list(seen)


def _n_problems(protocol: dict, bench: str) -> int | None:
    """Problems per benchmark, from ``n_problems`` / ``num_problems`` (an int or a dict per benchmark)."""
    for key in ("n_problems", "num_problems", "problems"):
        value = protocol.get(key)
        if isinstance(value, dict):
            value = value.get(bench)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _trained_examples(info: CardInfo) -> int | None:
    """How many traces the student saw: an explicit training count, else the funnel's last stage."""
    for key in ("train_examples", "num_examples", "n_examples", "train_traces", "examples"):
        value = info.training.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if "kept" in info.funnel:
        return int(info.funnel["kept"])
    if info.funnel:
        return int(list(info.funnel.values())[-1])
    return None


# --------------------------------------------------------------------------- #
# The model card
# --------------------------------------------------------------------------- #


def _model_card_data(info: CardInfo, student: str | None):
    """The card metadata as a :class:`huggingface_hub.ModelCardData`.

    ``license``, ``base_model`` and ``datasets`` drive the Hub's licence badge and
    model tree; ``model-index`` (``eval_results``) feeds the evaluation widget, and
    it carries only the *student's* scores because the Hub attributes every entry
    to this repo.
    """
    from huggingface_hub import EvalResult, ModelCardData

    tags = ["distill", "reasoning", "knowledge-distillation", "chain-of-thought"]
    if any(name.endswith(".gguf") for name in info.extra_files):
        tags.append("gguf")
    eval_results = None
    if student is not None and info.eval_results.get(student):
        scores = info.eval_results[student]
        eval_results = [
            EvalResult(task_type="text-generation", dataset_type=slug, dataset_name=bench,
                       metric_type="pass@1", metric_value=_pct(scores[bench]), metric_name="pass@1")
            for bench, slug in _dataset_types(list(scores)).items()
        ]
    return ModelCardData(
        license=info.license,
        **license_metadata(info.base_model, info.license),
        base_model=info.base_model if looks_like_repo_id(info.base_model) else None,
        tags=tags,
        datasets=[info.dataset_repo_id] if info.dataset_repo_id else None,
        pipeline_tag="text-generation",
        library_name="transformers",
        model_name=info.model_name if eval_results else None,
        eval_results=eval_results,
    )


def _intro(info: CardInfo) -> list[str]:
    return [
        f"# {info.model_name}\n",
        f"**{info.model_name}** is a reasoning model distilled from the teacher **{info.teacher}** into "
        f"the base model **{info.base_model}**: the base was fine-tuned on the teacher's step-by-step "
        "reasoning traces, keeping only traces whose final answer a verifier accepted. "
        "It was built with `distill`.\n",
    ]


def _model_section(info: CardInfo) -> list[str]:
    rows: list[list[Any]] = [["Base model", info.base_model], ["Teacher", info.teacher]]
    if info.dataset_repo_id:
        rows.append(["Training traces", f"[{info.dataset_repo_id}](https://huggingface.co/datasets/{info.dataset_repo_id})"])
    rows.append(["Licence", info.license])
    if info.extra_files:
        rows.append(["Extra files", ", ".join(f"`{name}`" for name in info.extra_files)])
    return ["## Model\n\n" + _table(["Item", "Value"], rows) + "\n"]


def _training_section(info: CardInfo) -> list[str]:
    if info.training:
        return ["## Training\n", settings_table(["Setting", "Value"], info.training) + "\n"]
    return ["## Training\n", "No training settings were recorded.\n"]


def _protocol_summary(protocol: dict) -> list[str]:
    """The "**Protocol.**" sentence (when there is something to say) and the protocol's settings table."""
    parts = []
    if "k" in protocol:
        parts.append(f"pass@1 is averaged over k={protocol['k']} samples per problem")
    sampling = [f"{key}={protocol[key]}" for key in ("temperature", "top_p", "max_tokens") if key in protocol]
    if sampling:
        parts.append("sampling with " + ", ".join(sampling))
    out = ["**Protocol.** " + "; ".join(parts) + ".\n"] if parts else []
    return out + [settings_table(["Setting", "Value"], protocol) + "\n"]


def _evaluation_section(info: CardInfo, student: str | None, benches: list[str]) -> list[str]:
    """Every row of ``eval_results`` (the student marked) by benchmark, in percent, then the protocol."""
    if not info.eval_results:
        return ["## Evaluation\n", "No evaluation results were recorded for this model.\n"]
    table_rows = []
    for label, scores in info.eval_results.items():
        shown = f"**{label}** (this model)" if label == student else label
        table_rows.append([shown] + [f"{_pct(scores[b]):.2f}" if b in scores else "–" for b in benches])
    out = ["## Evaluation\n", "pass@1 in percent.\n\n" + _table(["Model"] + benches, table_rows) + "\n"]
    if info.eval_protocol:
        out += _protocol_summary(info.eval_protocol)
    return out


def _funnel_section(info: CardInfo) -> list[str]:
    if not info.funnel:
        return ["## Data filter funnel\n", "No filter funnel was recorded.\n"]
    first = next(iter(info.funnel.values())) or 0
    rows = [[stage, count, f"{100.0 * count / first:.1f}%" if first else "–"] for stage, count in info.funnel.items()]
    return [
        "## Data filter funnel\n",
        "Teacher traces at each filter stage (the last stage is what the student was trained on).\n\n"
        + _table(["Stage", "Traces", "Share of first stage"], rows)
        + "\n",
    ]


def _licence_section(info: CardInfo) -> list[str]:
    lic_text = f"Licence: `{info.license}`."
    link = license_metadata(info.base_model, info.license).get("license_link")
    if link:
        lic_text += f" See the [licence text]({link})."
    return ["## Licence\n", f"{lic_text} {info.license_note}\n"]


def _eval_caveats(info: CardInfo, student: str | None, benches: list[str]) -> list[str]:
    """How much one problem moves each score, and that the harness is our own."""
    lines: list[str] = []
    scores = info.eval_results.get(student or "", {})
    for bench in benches:
        n = _n_problems(info.eval_protocol, bench)
        if n is None:
            continue
        p = float(scores.get(bench, 0.5))
        half = 100.0 * 1.96 * math.sqrt(max(p * (1.0 - p), 1e-12) / n)
        lines.append(
            f"- {bench} has only {n} problems: one problem moves pass@1 by {100.0 / n:.1f} points, "
            f"and the 95% interval on this model's score is roughly ±{half:.1f} points."
        )
    if lines:
        lines.append("- Differences between rows smaller than those intervals are noise, not evidence.")
    else:
        lines.append(
            "- The number of problems per benchmark was not recorded; on small benchmarks (AIME has 30 "
            "problems) a single problem moves pass@1 by several points, so small differences are noise."
        )
    lines.append(
        "- Scores come from this project's own harness and answer checker with the protocol above; they "
        "are not directly comparable with numbers reported elsewhere under other prompts or settings."
    )
    return lines


def _limits(info: CardInfo, student: str | None, benches: list[str]) -> list[str]:
    """The honest caveats: data size, evaluation noise, and what the model is not for."""
    n_train = _trained_examples(info)
    if n_train is not None:
        lines = [
            f"- The student was fine-tuned on only {n_train:,} teacher traces; expect it to be far weaker "
            f"than {info.teacher} and to fail on problems unlike its training data."
        ]
    else:
        lines = ["- The number of training traces was not recorded."]
    if info.eval_results:
        lines += _eval_caveats(info, student, benches)
    lines.append(
        "- Like its teacher, the model writes long reasoning and can state wrong answers confidently. "
        "Verify its outputs; do not use it for high-stakes decisions."
    )
    return lines


def render_model_card(info: CardInfo) -> str:
    """Render the model repo's README.md.

    The metadata comes from :func:`_model_card_data`: ``model-index`` carries only
    the student's scores; other rows (base, teacher) appear in the body table for
    comparison.
    """
    from huggingface_hub import ModelCard

    _check_scores(info.eval_results)
    benches = _benchmarks(info.eval_results)
    student = _student_label(info)
    if info.eval_results and student is None:
        logger.warning(
            "model card for %s: no eval_results row is the student (labels: %s); model-index left out",
            info.model_name,
            ", ".join(info.eval_results),
        )
    meta_yaml = _model_card_data(info, student).to_yaml(original_order=_MODEL_META_ORDER)
    body = [
        *_intro(info),
        *_model_section(info),
        *_training_section(info),
        *_evaluation_section(info, student, benches),
        *_funnel_section(info),
        *_licence_section(info),
        "## Limitations\n",
        "\n".join(_limits(info, student, benches)) + "\n",
    ]
    return card_text(ModelCard, meta_yaml, body)
