"""Which licence a distilled student (and its training traces) is published under.

A fine-tune inherits its base model's licence, and distilled data carries the
teacher's terms of use on top.  The Hub needs a licence id in the card metadata
and people reusing the model need the terms spelled out, so both come from here:
:func:`license_for_base` for the model, :func:`teacher_source` for who wrote the
traces (a model, an API model or a published trace dataset) and under which terms.
Only teachers in the small table below have a known licence; any other is said
to be unknown rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TeacherSource", "license_for_base", "license_metadata", "looks_like_repo_id", "teacher_source",
           "teacher_terms"]

UNKNOWN_LICENCE = "licence unknown — check the source"

# (pattern on the teacher's model id, API model name or dataset id, licence id of data made by it, note,
#  the Hub id a local copy is shown as)
_TEACHER_TERMS: tuple[tuple[re.Pattern[str], str, str, str], ...] = (
    (re.compile(r"deepseek[-_ ]?r1", re.I), "mit",
     "DeepSeek-R1 outputs are MIT-licensed (DeepSeek-R1's MIT licence allows distillation and commercial use)", ""),
    (re.compile(r"qwq", re.I), "apache-2.0",
     "QwQ is released under Apache-2.0, which places no extra terms on its outputs", ""),
    (re.compile(r"qwen3", re.I), "apache-2.0",
     "Qwen3 is released under Apache-2.0, which places no extra terms on its outputs", ""),
    (re.compile(r"(^|/)openr1-math-220k$", re.I), "apache-2.0",
     "open-r1/OpenR1-Math-220k is released under Apache-2.0 (its traces were written by DeepSeek-R1)",
     "open-r1/OpenR1-Math-220k"),
    (re.compile(r"(^|/)openthoughts-114k$", re.I), "apache-2.0",
     "open-thoughts/OpenThoughts-114k is released under Apache-2.0 (its traces were written by DeepSeek-R1)",
     "open-thoughts/OpenThoughts-114k"),
    (re.compile(r"(^|/)bespoke-stratos-17k$", re.I), "apache-2.0",
     "bespokelabs/Bespoke-Stratos-17k is released under Apache-2.0 (its traces were written by DeepSeek-R1)",
     "bespokelabs/Bespoke-Stratos-17k"),
)

_KIND_WORDS = {"model": "the model", "api": "the API model", "dataset": "the dataset"}


@dataclass(frozen=True)
class TeacherSource:
    """Who wrote the training traces, as the cards name it: ``kind`` is model, api, dataset or toy.

    Why a record rather than a name: a card must say what the teacher *was* (a model
    id, a model behind an API, a dataset of someone else's traces) and under which
    terms, and a bare name such as "toy" or a file path says neither.
    """

    kind: str
    name: str
    licence: str | None  # a Hub licence id; None when unknown
    terms: str
    detail: str = ""  # e.g. the model id behind an API model name

    @property
    def label(self) -> str:
        """The teacher in one phrase: "the dataset X (published traces)", "the API model o3-mini"."""
        if self.kind == "toy":
            return "distill's embedded toy teacher"
        extra = " (published traces)" if self.kind == "dataset" else f" ({self.detail})" if self.detail else ""
        return f"{_KIND_WORDS.get(self.kind, 'the model')} {self.name}{extra}"

    @property
    def licence_text(self) -> str:
        """The licence id, or what to say without one (the toy teacher's outputs are distill's own)."""
        if self.kind == "toy":
            return "no third-party terms"
        return self.licence or UNKNOWN_LICENCE


def _known_terms(*names: str) -> tuple[str, str, str] | None:
    """(licence id, note, Hub id) of the first name the known table matches."""
    for name in names:
        for pattern, lic, note, hub_id in _TEACHER_TERMS:
            if name and pattern.search(name):
                return lic, note, hub_id
    return None


def _is_local(path: str) -> bool:
    return Path(path).is_absolute() or Path(path).exists() or path.startswith(".")


def _dataset_name(path: str) -> str:
    """A dataset's name as a card shows it: a Hub id as is, a local copy of a known dataset by its Hub id,
    any other local path by its last component only (the rest is the publisher's file system)."""
    if not _is_local(path):
        return path
    last = Path(path.rstrip("/\\")).name or path
    known = _known_terms(last)
    return known[2] if known and known[2] else last


def _card_licence(path: str) -> str | None:
    """The ``license`` in a local dataset folder's README front matter (the Hub's own layout), if any."""
    readme = Path(path) / "README.md"
    if not readme.is_file():
        return None
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(readme) or {}
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    lic = meta.get("license")
    return str(lic) if isinstance(lic, str) and lic.strip() else None


def teacher_source(kind: str, name: str, api_model: str | None = None) -> TeacherSource:
    """The teacher of a run: ``kind`` is the config's "model" or "dataset" (or "api" for a model behind an
    OpenAI-compatible server, whose ``api_model`` is the name sent to it); ``name`` the model id or the
    dataset path.  The licence comes from the known table, or a local dataset card, or is unknown."""
    if kind == "model" and name == "toy":
        return TeacherSource("toy", "toy", None,
                             "the toy teacher (trained by distill on generated arithmetic) puts no third-party "
                             "terms on its outputs")
    if kind == "dataset":
        shown = _dataset_name(name)
        known = _known_terms(shown, name)
        lic = _card_licence(name) if known is None else known[0]
        note = known[1] if known else (f"the dataset card gives the licence {lic}" if lic else
                                       f"check the licence of {shown} before publishing models trained on it")
        return TeacherSource("dataset", shown, lic, note)
    if kind == "api":
        served = api_model or name
        known = _known_terms(served, name)
        return TeacherSource("api", served, known[0] if known else None,
                             known[1] if known else f"check the terms of use of {served} before publishing "
                                                    "models trained on its outputs",
                             detail=name if served != name else "")
    known = _known_terms(name)
    return TeacherSource("model", name, known[0] if known else None,
                         known[1] if known else f"check the terms of use of {name} before publishing models "
                                                "trained on its outputs")


_QWEN_OTHER = {
    # size -> (license_name for the card metadata, human name, restriction)
    "3": ("qwen-research", "Qwen Research License", "non-commercial use only"),
    "72": ("qwen", "Qwen License", "services with over 100M monthly active users need a separate licence from Alibaba"),
}

_BUILT_WITH_LLAMA = (
    "redistributions must show 'Built with Llama' and a derived model's name must begin with 'Llama'"
)

# (pattern on the base model name, licence id, note) for bases whose licence does not depend on their size.
_LLAMA_BASES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"llama[-_ ]?3\.1"), "llama3.1",
     f"The base model is under the Llama 3.1 Community License: {_BUILT_WITH_LLAMA}"),
    (re.compile(r"llama[-_ ]?3\.3"), "llama3.3",
     f"The base model is under the Llama 3.3 Community License: {_BUILT_WITH_LLAMA}"),
    (re.compile(r"llama[-_ ]?3\.2"), "llama3.2", "The base model is under the Llama 3.2 Community License"),
)

_QWEN25_RE = re.compile(r"qwen[-_ ]?2\.5")


def teacher_terms(teacher: str | TeacherSource) -> tuple[str, str]:
    """The licence id for data generated by ``teacher`` and a note on its terms ("unknown" when not known).

    Why: the traces (and so the student) carry the teacher's output terms on top
    of the base model's licence, and the card must say so.
    """
    source = teacher if isinstance(teacher, TeacherSource) else teacher_source("model", teacher or "the teacher")
    if source.kind == "toy":
        return "other", source.terms
    return source.licence or "unknown", source.terms


def _qwen25_size(name: str) -> str | None:
    """The parameter count in billions as written in a Qwen2.5 name ("1.5", "72"), or None."""
    m = re.search(r"(\d+(?:\.\d+)?)b(?![a-z0-9])", name.lower())
    return m.group(1) if m else None


def _qwen25_licence(name: str) -> tuple[str, str]:
    """Most Qwen2.5 sizes are Apache-2.0; the 3B and 72B ones are under Qwen's own licences."""
    size = _qwen25_size(name)
    if size in _QWEN_OTHER:
        _, human, restriction = _QWEN_OTHER[size]
        return "other", f"Base model under a qwen license: Qwen2.5-{size}B uses the {human} ({restriction}), not Apache-2.0"
    return "apache-2.0", "The Qwen2.5 base model is under Apache-2.0"


def _base_licence(name: str) -> tuple[str, str]:
    """``(licence id, note)`` of the base model alone, from its lower-cased name."""
    for pattern, lic, note in _LLAMA_BASES:
        if pattern.search(name):
            return lic, note
    if _QWEN25_RE.search(name):
        return _qwen25_licence(name)
    return "other", "Unknown base model: check the base model's licence before publishing"


def license_for_base(base_model: str, teacher: str | TeacherSource = "DeepSeek-R1") -> tuple[str, str]:
    """Return ``(licence id, note)`` for a student fine-tuned from ``base_model``.

    Why: a fine-tune inherits its base model's licence, and the Hub needs a
    licence id in the card metadata.  The mapping mirrors the DeepSeek-R1-Distill
    releases: Llama bases keep the Llama community licence, most Qwen2.5 sizes
    are Apache-2.0, but Qwen2.5-3B and -72B are under Qwen's own licences.  The
    note always carries the teacher's terms too, because the training data came
    from the teacher: callers pass the run's real teacher (the default is only
    the teacher of the R1-Distill releases this mapping mirrors).
    """
    _, teacher_note = teacher_terms(teacher)
    lic, base_note = _base_licence((base_model or "").lower())
    return lic, f"{base_note}. Teacher terms: {teacher_note}."


def looks_like_repo_id(value: str | None) -> bool:
    """True for ``owner/name`` ids; "toy (random init)" is not one and must not go in ``base_model``."""
    return bool(value) and re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", value or "") is not None


def license_metadata(base_model: str, license_id: str) -> dict[str, str]:
    """``license_name`` / ``license_link`` for ``license: other`` where we know them.

    Why: the Hub shows "other" as an unnamed licence unless these are given.
    """
    if license_id != "other":
        return {}
    name = base_model.lower()
    if _QWEN25_RE.search(name):
        size = _qwen25_size(name)
        if size in _QWEN_OTHER and looks_like_repo_id(base_model):
            return {
                "license_name": _QWEN_OTHER[size][0],
                "license_link": f"https://huggingface.co/{base_model}/blob/main/LICENSE",
            }
    return {}
