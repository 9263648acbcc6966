"""The README.md card of the published model (the traces' card is in :mod:`distill.publish.dataset_card`).

The YAML metadata is what the Hub indexes (licence, base model, ``model-index``
for the evaluation widget), so it is built with ``huggingface_hub``'s own card
classes (:class:`~huggingface_hub.ModelCardData` with
:class:`~huggingface_hub.EvalResult`) and written by
:class:`~huggingface_hub.ModelCard`, rather than templated by hand: the Hub and
the card classes then agree on every key.  The body states what the model is
and, just as plainly, what the numbers do *not* show.  :func:`settings_table`
and :func:`card_text` (from :mod:`distill.publish.card_format`) are shared with
the dataset card; the evaluation part (``model-index`` with every benchmark and
its k, the protocol) is :mod:`distill.publish.card_eval`.  The teacher is a
:class:`~distill.publish.licences.TeacherSource`: a model, an API model or a
published trace dataset, with its licence or "licence unknown".

``huggingface_hub`` is imported only when a card is rendered, so importing this
module needs nothing beyond the core install.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from distill.publish.card_eval import (benchmarks, check_scores, eval_caveats, evaluation_section,
                                       model_index_results, student_label)
from distill.publish.card_format import card_table, card_text, settings_table
from distill.publish.composition import COMPOSITION_HEADERS, composition_notes, composition_rows
from distill.publish.licences import TeacherSource, license_metadata, looks_like_repo_id, teacher_source

logger = logging.getLogger(__name__)

__all__ = ["CardInfo", "card_text", "render_model_card", "sampling_text", "settings_table"]

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
    ``eval_protocol`` holds run-wide evaluation settings and ``benchmark_protocols``
    each benchmark's own (``k``, ``temperature``, ``top_p``, ``max_tokens``,
    ``problems``).  ``teacher_source`` says what the teacher was and its licence;
    without it ``teacher`` is taken as a model name.
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
    teacher_source: TeacherSource | None = None
    benchmark_protocols: dict[str, dict] = field(default_factory=dict)
    sampling: str = ""  # how many traces each problem got from the teacher (sampling_text)
    composition: dict = field(default_factory=dict)  # a mixture run's filter/composition.json

    @property
    def source(self) -> TeacherSource:
        """The teacher as a :class:`TeacherSource`, from ``teacher_source`` or the ``teacher`` name."""
        return self.teacher_source or teacher_source("model", self.teacher)


# --------------------------------------------------------------------------- #
# Reading the card info
# --------------------------------------------------------------------------- #


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


def _datasets(info: CardInfo) -> list[str] | None:
    """The Hub datasets the model was trained on: the published kept traces and a Hub trace dataset teacher."""
    source = info.source
    names = [info.dataset_repo_id] if info.dataset_repo_id else []
    if source.kind == "dataset" and looks_like_repo_id(source.name):
        names.append(source.name)
    return list(dict.fromkeys(names)) or None


def _model_card_data(info: CardInfo, student: str | None):
    """The card metadata as a :class:`huggingface_hub.ModelCardData`.

    ``license``, ``base_model`` and ``datasets`` drive the Hub's licence badge and
    model tree; ``model-index`` (``eval_results``) feeds the evaluation widget, and
    it carries only the *student's* scores because the Hub attributes every entry
    to this repo: one entry per benchmark, each with its k and sampling settings.
    """
    from huggingface_hub import ModelCardData

    tags = ["distill", "reasoning", "knowledge-distillation", "chain-of-thought"]
    if any(name.endswith(".gguf") for name in info.extra_files):
        tags.append("gguf")
    eval_results = model_index_results(info, student)
    return ModelCardData(
        license=info.license,
        **license_metadata(info.base_model, info.license),
        base_model=info.base_model if looks_like_repo_id(info.base_model) else None,
        tags=tags,
        datasets=_datasets(info),
        pipeline_tag="text-generation",
        library_name="transformers",
        model_name=info.model_name if eval_results else None,
        eval_results=eval_results,
    )


def _intro(info: CardInfo) -> list[str]:
    source = info.source
    if info.composition:  # a mixture: several teachers and datasets, some sources perhaps unverified
        sources = ", ".join(f"{r['name']} ({r['kind']})" for r in info.composition.get("sources") or [])
        unverified = int(info.composition.get("unverified_traces") or 0)
        checked = ("every trace's final answer accepted by a verifier" if not unverified else
                   f"math, code and multiple-choice traces kept only when a verifier accepted their final answer; "
                   f"{unverified:,} traces from general sources were not verified")
        return [f"# {info.model_name}\n", f"**{info.model_name}** is a reasoning model fine-tuned from the base "
                f"model **{info.base_model}** on a mixture of teacher traces from {sources}: {checked}. See "
                "the training-set composition below. It was built with `distill`.\n"]
    if source.kind == "dataset":
        origin = (f"fine-tuned from the base model **{info.base_model}** on published reasoning traces, the "
                  f"dataset **{source.name}** (licence: {source.licence_text}), keeping only traces whose final answer "
                  "a verifier accepted")
    else:
        origin = (f"distilled from {source.label} (licence: {source.licence_text}) into the base model "
                  f"**{info.base_model}**: the base was fine-tuned on the teacher's step-by-step reasoning "
                  "traces, keeping only traces whose final answer a verifier accepted")
    return [f"# {info.model_name}\n", f"**{info.model_name}** is a reasoning model {origin}. "
                                      "It was built with `distill`.\n"]


def _model_section(info: CardInfo) -> list[str]:
    rows: list[list[Any]] = [["Base model", info.base_model], ["Teacher", info.source.label],
                             ["Teacher licence", info.source.licence_text]]
    if info.dataset_repo_id:
        rows.append(["Training traces", f"[{info.dataset_repo_id}](https://huggingface.co/datasets/{info.dataset_repo_id})"])
    if info.sampling:
        rows.append(["Teacher sampling", info.sampling])
    rows.append(["Licence", info.license])
    if info.extra_files:
        rows.append(["Extra files", ", ".join(f"`{name}`" for name in info.extra_files)])
    return ["## Model\n\n" + card_table(["Item", "Value"], rows) + "\n"]


def _training_section(info: CardInfo) -> list[str]:
    if info.training:
        return ["## Training\n", settings_table(["Setting", "Value"], info.training) + "\n"]
    return ["## Training\n", "No training settings were recorded.\n"]


def _funnel_section(info: CardInfo) -> list[str]:
    if not info.funnel:
        return ["## Data filter funnel\n", "No filter funnel was recorded.\n"]
    first = next(iter(info.funnel.values())) or 0
    rows = [[stage, count, f"{100.0 * count / first:.1f}%" if first else "–"] for stage, count in info.funnel.items()]
    return [
        "## Data filter funnel\n",
        "Teacher traces at each filter stage (the last stage is what the student was trained on).\n\n"
        + card_table(["Stage", "Traces", "Share of first stage"], rows)
        + "\n",
    ]


def _composition_section(info: CardInfo) -> list[str]:
    """A mixture's composition as reached (the same table as the run report), and how much went unverified."""
    if not info.composition:
        return []
    notes = "".join(f"- {note}\n" for note in composition_notes(info.composition))
    return ["## Training-set composition\n",
            "The sources the training set was drawn from, as reached after filtering.\n\n"
            + card_table(COMPOSITION_HEADERS, composition_rows(info.composition)) + "\n\n" + notes]


def _licence_section(info: CardInfo) -> list[str]:
    lic_text = f"Licence: `{info.license}`."
    link = license_metadata(info.base_model, info.license).get("license_link")
    if link:
        lic_text += f" See the [licence text]({link})."
    teacher = f"The training traces come from {info.source.label}; its licence: {info.source.licence_text}."
    return ["## Licence\n", f"{lic_text} {info.license_note}\n\n{teacher}\n"]


def _limits(info: CardInfo, student: str | None, benches: list[str]) -> list[str]:
    """The honest caveats: data size, evaluation noise, and what the model is not for."""
    n_train = _trained_examples(info)
    source = info.source
    stronger = "the model that wrote the traces" if source.kind == "dataset" else source.label
    if n_train is not None:
        lines = [
            f"- The student was fine-tuned on only {n_train:,} teacher traces; expect it to be far weaker "
            f"than {stronger} and to fail on problems unlike its training data."
        ]
    else:
        lines = ["- The number of training traces was not recorded."]
    if info.eval_results:
        lines += eval_caveats(info, student, benches)
    lines.append(
        "- Like its teacher, the model writes long reasoning and can state wrong answers confidently. "
        "Verify its outputs; do not use it for high-stakes decisions."
    )
    return lines


def sampling_text(teacher: dict[str, Any]) -> str:
    """The teacher's sampling mode for the card, from the run's ``teacher`` config section."""
    if teacher.get("kind") == "dataset":
        return ""
    s = teacher.get("sampling") or {}
    if s.get("mode") == "adaptive":
        text = (f"adaptive: rounds until {s.get('target_per_problem')} verified trace(s) per problem, at most "
                f"{s.get('max_per_problem')} samples; verified while sampling")
    else:
        text = f"fixed: {teacher.get('samples_per_problem')} samples per problem"
    scout = s.get("scout")
    if scout:
        text += (f"; scout {scout.get('model')} ({scout.get('samples')} samples) screened problems first, "
                 f"those it always solved: {str(scout.get('on_solved')).replace('_', ' ')}")
    return text


def render_model_card(info: CardInfo) -> str:
    """Render the model repo's README.md.

    The metadata comes from :func:`_model_card_data`: ``model-index`` carries only
    the student's scores, one entry per benchmark with its k; other rows (base,
    teacher) appear in the body table for comparison.
    """
    from huggingface_hub import ModelCard

    check_scores(info.eval_results)
    benches = benchmarks(info.eval_results)
    student = student_label(info)
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
        *evaluation_section(info, student, benches),
        *_funnel_section(info),
        *_composition_section(info),
        *_licence_section(info),
        "## Limitations\n",
        "\n".join(_limits(info, student, benches)) + "\n",
    ]
    return card_text(ModelCard, meta_yaml, body)
