"""What a hosted teacher costs: a price table per model and the cost of a completion.

A distillation run can buy hundreds of millions of tokens, so the run should be
able to say what it spent.  :class:`distill.teachers.sampling_types.Completion` has no cost
field (traces stay engine-neutral); cost is computed here, from token counts.

Default prices are DeepSeek's, from the DeepSeek API pricing page
(https://api-docs.deepseek.com/quick_start/pricing) **as published early 2025**
(after the February 2025 discount period ended).  DeepSeek has changed them
since (e.g. with V3.1/V3.2 in late 2025, which also dropped the off-peak
discount), so treat them as an example and override them in the run config
(``teacher.openai.prices``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Any, Mapping

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class PriceTable:
    """USD per million tokens; an off-peak window (UTC, may wrap past midnight) takes a discount off all three."""

    input_cache_hit_per_m: float
    input_cache_miss_per_m: float
    output_per_m: float
    off_peak_discount: float = 0.0  # fraction off, e.g. 0.75 = pay a quarter
    off_peak_start_utc: str = "16:30"
    off_peak_end_utc: str = "00:30"

    def discount_at(self, when: datetime | None) -> float:
        """The fraction off at ``when``; no time given means list price (the conservative estimate)."""
        if when is None or not self.off_peak_discount:
            return 0.0
        return self.off_peak_discount if _in_window(when, self.off_peak_start_utc, self.off_peak_end_utc) else 0.0


# DeepSeek API, as published early 2025; override in config.  Off-peak 16:30-00:30 UTC:
# deepseek-chat 50% off, deepseek-reasoner 75% off (both then cost 0.035 / 0.135 / 0.55).
DEEPSEEK_PRICES: dict[str, PriceTable] = {
    "deepseek-reasoner": PriceTable(input_cache_hit_per_m=0.14, input_cache_miss_per_m=0.55, output_per_m=2.19,
                                    off_peak_discount=0.75),
    "deepseek-chat": PriceTable(input_cache_hit_per_m=0.07, input_cache_miss_per_m=0.27, output_per_m=1.10,
                                off_peak_discount=0.50),
}


def price_table_for(model: str) -> PriceTable | None:
    """The built-in table for a served model name (``deepseek-reasoner``), or None when we know no price."""
    return DEEPSEEK_PRICES.get(model.rsplit("/", 1)[-1].lower())


def table_from_options(options: Mapping[str, Any] | None, model: str) -> PriceTable | None:
    """Config prices win over the built-in table; None when neither knows the model."""
    if options:
        return PriceTable(**dict(options))
    return price_table_for(model)


def cost(prompt_tokens: int, completion_tokens: int, table: PriceTable, when: datetime | None = None,
         cached_prompt_tokens: int = 0) -> float:
    """USD for one request: cache-hit and cache-miss input, output (reasoning included), less any off-peak discount.

    ``cached_prompt_tokens`` is the part of ``prompt_tokens`` served from the
    provider's context cache (DeepSeek's ``prompt_cache_hit_tokens``); unknown
    means all input is priced as a cache miss, an upper bound.
    """
    hit = max(0, min(cached_prompt_tokens, prompt_tokens))
    miss = prompt_tokens - hit
    list_price = (hit * table.input_cache_hit_per_m + miss * table.input_cache_miss_per_m
                  + completion_tokens * table.output_per_m) / PER_MILLION
    return list_price * (1.0 - table.discount_at(when))


def _in_window(when: datetime, start: str, end: str) -> bool:
    """Whether ``when`` (naive = UTC) falls in [start, end) UTC; a window with end <= start wraps midnight."""
    utc = when.astimezone(timezone.utc) if when.tzinfo else when
    now = utc.time().replace(tzinfo=None)
    lo, hi = _parse_hhmm(start), _parse_hhmm(end)
    if lo < hi:
        return lo <= now < hi
    return now >= lo or now < hi


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
