"""The adaptive progress line: what the teacher's spend is buying, as verdicts come in.

Verified traces per thousand teacher output tokens, output tokens (and, for a priced API, dollars) per
verified trace, and the problems done, open and unsolved.  Counts only this process's samples and
verdicts (a rerun's reused traces are not new spend).
"""

from __future__ import annotations

from typing import Any


class AdaptiveMeter:
    def __init__(self, problems: int, price: Any = None):
        self.problems = problems
        self.price = price  # a distill.teachers.pricing.PriceTable, or None
        self.completion_tokens = self.prompt_tokens = self.verified = 0
        self.closed = {"done": 0, "unsolved": 0, "skipped": 0}

    def add_traces(self, records: list[dict[str, Any]]) -> None:
        self.completion_tokens += sum(int(r.get("completion_tokens") or 0) for r in records)
        self.prompt_tokens += sum(int(r.get("prompt_tokens") or 0) for r in records)

    def add_verdict(self, ok: bool) -> None:
        self.verified += ok

    def close_problem(self, status: str) -> None:
        self.closed[status] = self.closed.get(status, 0) + 1

    def spend(self) -> float | None:
        """List price, every input a cache miss: an upper bound on the bill, as the fixed sampling meter."""
        from distill.teachers.pricing import cost

        return None if self.price is None else cost(self.prompt_tokens, self.completion_tokens, self.price)

    def fields(self) -> dict[str, Any]:
        per_k = 1000 * self.verified / self.completion_tokens if self.completion_tokens else None
        spend = self.spend()
        return {
            "verified/1k tok": round(per_k, 2) if per_k is not None else None,
            "tok/verified": round(self.completion_tokens / self.verified) if self.verified else None,
            "$/verified": f"${spend / self.verified:.4f}" if spend is not None and self.verified else None,
            "done": self.closed["done"],
            "open": self.problems - sum(self.closed.values()),
            "unsolved": self.closed["unsolved"],
        }
