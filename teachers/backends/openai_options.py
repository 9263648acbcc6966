"""The OpenAI-compatible backend's settings: one typed options object, and the reasoning-effort token caps.

:class:`OpenAISamplerOptions` has the fields (and defaults) of the pydantic
``teacher.openai`` config section (:class:`distill.config.OpenAIOptions`), so a
sampler is built from ``section.model_dump()`` through
:meth:`OpenAISamplerOptions.from_mapping`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:8000/v1"

# reasoning_effort -> cap on max_tokens.  OpenAI-compatible servers (DeepSeek, vLLM) have no separate
# thinking budget, and max_tokens counts reasoning + answer, so the effort caps the whole completion:
# low ~ a short check, medium ~ a typical competition-math trace, high = R1's own 32k generation limit.
EFFORT_MAX_TOKENS: dict[str, int] = {"low": 1024, "medium": 8192, "high": 32768}


@dataclass
class OpenAISamplerOptions:
    """How :class:`~distill.teachers.backends.openai_http.OpenAISampler` reaches its server(s) and spends budget.

    ``endpoints=None`` means the local vLLM server's default URL; ``prices`` is a
    price mapping (:func:`distill.teachers.pricing.table_from_options`);
    ``effort_max_tokens`` is a mapping of caps or the path of a budget sweep's file
    (:func:`effort_caps`).  ``timeout_s`` bounds a whole response and must exceed
    the longest generation: one still running then is recorded as failed with
    reason ``timeout`` and not retried (a retry would regenerate the longest
    traces and lose them again); ``backoff_max_s`` caps the backoff and a
    server's Retry-After alike (:func:`distill.http_util.retry_wait`).
    """

    endpoints: Sequence[str] | None = None
    api_key_env: str = "OPENAI_API_KEY"
    served_model: str | None = None
    max_concurrency: int = 64
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    reasoning_effort: str | None = None
    send_n: bool = False
    prices: Mapping[str, Any] | None = None
    tokenizer: str | None = None
    extra_body: Mapping[str, Any] | None = None
    trust_env: bool = True
    effort_max_tokens: Mapping[str, int] | str | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> "OpenAISamplerOptions":
        """The options from a config dict (``teacher.openai.model_dump()`` or keyword arguments).

        Keys that are not options (a transformers ``batch_size`` a caller passes to
        every backend alike) are ignored, as the keyword constructor always did.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(set(options) - known)
        if ignored:
            log.debug("openai backend: ignoring options %s", ", ".join(ignored))
        return cls(**{k: v for k, v in options.items() if k in known})

    def endpoint_urls(self) -> list[str]:
        """The base URLs without a trailing slash; at least one is required."""
        urls = [u.rstrip("/") for u in ([DEFAULT_ENDPOINT] if self.endpoints is None else self.endpoints)]
        if not urls:
            raise ValueError("openai backend: at least one endpoint is needed")
        return urls


def effort_caps(spec: Mapping[str, int] | str | None) -> dict[str, int]:
    """The max_tokens cap per reasoning_effort level: the defaults, a mapping, or a sweep's file.

    A path names the ``reasoning_effort.json`` that ``eval.budget_sweep`` writes: its thinking
    budgets were measured on the curve, and each cap adds the sweep's answer allowance, because
    here max_tokens bounds thinking and answer together.
    """
    if spec is None:
        return dict(EFFORT_MAX_TOKENS)
    if isinstance(spec, str):
        spec = _sweep_caps(spec)
    caps = {**EFFORT_MAX_TOKENS, **{str(k): int(v) for k, v in spec.items()}}
    if unknown := set(caps) - set(EFFORT_MAX_TOKENS):
        raise ValueError(f"effort budgets: unknown level(s) {sorted(unknown)}; use low, medium, high")
    if any(v < 1 for v in caps.values()):
        raise ValueError("effort budgets must be at least 1 token")
    return caps


def _sweep_caps(path: str) -> dict[str, int]:
    """Each level's thinking budget from a budget sweep's ``reasoning_effort.json``, plus its answer allowance."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        thinking = data["max_thinking_tokens"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"effort budgets file {path}: not a budget sweep's reasoning_effort.json ({exc})") from None
    answer = int(data.get("answer_tokens", 0))
    return {level: int(tokens) + answer for level, tokens in thinking.items()}


def check_reasoning_effort(level: str | None) -> None:
    """A reasoning_effort is one of low / medium / high, or unset."""
    if level is not None and level not in EFFORT_MAX_TOKENS:
        raise ValueError(f"reasoning_effort must be one of {sorted(EFFORT_MAX_TOKENS)}, got {level!r}")
