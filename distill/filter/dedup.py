r"""Duplicate training problems and training problems that leak evaluation problems.

Why both: a problem repeated in training is over-weighted in SFT (and its traces
crowd out others under a per-problem quota), and a training problem that is an
evaluation problem in other words inflates every score reported on that benchmark.

Four kinds of match, strongest first:

* ``exact`` -- the same tokens after normalisation (case, spacing, punctuation, ``$``).
* ``contained`` -- a problem shorter than n tokens appears whole inside the other one
  (see :func:`find_contamination` for the rule that keeps generic short questions out).
* ``ngram`` -- a long token n-gram shared with an evaluation problem, as in the
  DeepSeek-R1 / Open-R1 decontamination (8-grams there; 13-grams in GPT-3's).  A
  copied problem keeps long verbatim runs however it is reworded around them.
* ``fuzzy`` -- MinHash LSH over token 3-gram shingles finds candidates whose
  estimated Jaccard similarity passes the threshold; the exact Jaccard of the
  shingle sets is then computed, so every reported score is exact.

Tokens (:func:`words`): a word in scripts that separate words by spaces, one character in
scripts that do not (Chinese, Japanese, Thai, ...), numbers ("3.6" is one token), LaTeX
command names, operator signs, and brackets inside math (``$88 \div (4 \div 2)$`` is not
``$88 \div 4 \div 2$``).  Numbers are tokens, so "What is 12 + 34?" and "What is 12 + 35?"
stay distinct.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from distill.filter.dedup_tokens import join, tokens, words  # noqa: F401 (words: the API)
from distill.filter.math_fast import normalise_answer

NUM_PERM = 128
SHINGLE_WORDS = 3
# A problem shorter than the n-gram matches inside a longer one only with this many tokens and a number.
MIN_CONTAINED = 3


@dataclass(frozen=True)
class Text:
    """A problem as dedup sees it: an id, where it comes from, its tokens and (if known) its answer.

    ``marked`` is the tokens joined by spaces with ``$`` where a math span starts or ends: a short
    problem is found inside a longer one in that form, so ``Evaluate $i^5$.`` is not inside
    ``Evaluate $i^5+i^{-25}$.``."""

    id: str
    source: str
    words: tuple[str, ...]
    answer: str = ""  # normalised reference answer; "" when unknown
    marked: str = ""

    @classmethod
    def of(cls, id: str, text: str, source: str = "", answer: str = "") -> "Text":
        toks, marked = tokens(text)
        return cls(id, source, tuple(toks), normalise_answer(answer) if answer else "", join(marked))


@dataclass(frozen=True)
class Match:
    """One training problem matching one evaluation problem (a row of contamination.jsonl)."""

    train_id: str
    eval_id: str
    benchmark: str
    kind: str  # exact | contained | ngram | fuzzy
    score: float  # 1.0 for exact and contained; shared n-grams / n-grams of the shorter problem (ngram); Jaccard (fuzzy)
    shared_ngrams: int = 0
    jaccard: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Duplicate:
    """A training problem that repeats an earlier one (a row of duplicates.jsonl)."""

    problem_id: str
    duplicate_of: str
    kind: str  # exact | near
    score: float  # Jaccard of word 3-gram shingles (1.0 for exact)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ngrams(seq: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """Token n-grams; a text shorter than n tokens is its own single n-gram (so short problems still match whole)."""
    if not seq:
        return set()
    if len(seq) < n:
        return {tuple(seq)}
    return {tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)}


def shingles(seq: Sequence[str], k: int = SHINGLE_WORDS) -> set[str]:
    return {" ".join(g) for g in ngrams(seq, k)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _minhash(shingle_sets: list[set[str]]):
    from datasketch import MinHash

    return MinHash.bulk([[s.encode() for s in sh] for sh in shingle_sets], num_perm=NUM_PERM)


# --------------------------------------------------------------------------- contamination


class EvalIndex:
    """Evaluation problems indexed for the three kinds of match."""

    def __init__(self, problems: Iterable[Text], ngram: int = 8, min_overlap: float = 0.5,
                 fuzzy_threshold: float | None = 0.7) -> None:
        from datasketch import MinHashLSH

        self.n = ngram
        self.min_overlap = min_overlap
        self.fuzzy_threshold = fuzzy_threshold
        self.items: dict[str, Text] = {}
        self._exact: dict[tuple[str, ...], list[str]] = {}
        self._grams: dict[tuple[str, ...], list[str]] = {}
        self._shingles: dict[str, set[str]] = {}
        self._gram_count: dict[str, int] = {}
        self._short: dict[str, list[tuple[str, str]]] = {}  # first token -> (key, marked) of short eval problems
        for p in problems:
            key = _key(p)
            if key in self.items or not p.words:
                continue
            self.items[key] = p
            self._exact.setdefault(p.words, []).append(key)
            grams = ngrams(p.words, ngram)
            self._gram_count[key] = len(grams)
            for g in grams:
                self._grams.setdefault(g, []).append(key)
            self._shingles[key] = shingles(p.words)
            if _containable(p, ngram):
                self._short.setdefault(p.words[0], []).append((key, _marked(p)))
        # Every evaluation problem in one string, for finding a short training problem inside any of them.
        self._keys = list(self.items)
        self._starts, offset = [], 0
        for key in self._keys:
            self._starts.append(offset)
            offset += len(_marked(self.items[key])) + 1
        self._haystack = "\n".join(_marked(self.items[k]) for k in self._keys)
        self._lsh = None
        if fuzzy_threshold is not None and self.items:
            self._lsh = MinHashLSH(threshold=fuzzy_threshold, num_perm=NUM_PERM)
            keys = list(self._shingles)
            for key, mh in zip(keys, _minhash([self._shingles[k] for k in keys])):
                self._lsh.insert(key, mh)

    def __len__(self) -> int:
        return len(self.items)

    def match(self, problem: Text, minhash=None, own: set[str] | None = None) -> list[Match]:
        """Every evaluation problem this training problem matches, strongest kind per pair.

        ``own`` is the problem's shingle set when the caller has it already (screening computes it once
        for contamination and duplicates alike)."""
        grams = ngrams(problem.words, self.n)
        shared: dict[str, int] = {}
        for g in grams:
            for key in self._grams.get(g, ()):
                shared[key] = shared.get(key, 0) + 1
        exact = set(self._exact.get(problem.words, ()))
        contained = self._contained(problem)
        fuzzy: set[str] = set()
        if self._lsh is not None and minhash is not None:
            fuzzy = set(self._lsh.query(minhash))
        if own is None:
            own = shingles(problem.words)
        out = []
        for key in sorted(exact | contained | set(shared) | fuzzy):
            ev = self.items[key]
            jac = jaccard(own, self._shingles[key])
            n_shared = shared.get(key, 0)
            overlap = n_shared / min(len(grams), self._gram_count[key]) if grams else 0.0
            if key in exact:
                kind, score = "exact", 1.0
            elif key in contained:
                kind, score = "contained", 1.0
            elif overlap >= self.min_overlap:
                kind, score = "ngram", overlap
            elif self.fuzzy_threshold is not None and jac >= self.fuzzy_threshold:
                kind, score = "fuzzy", jac
            else:
                continue  # boilerplate overlap ("... relatively prime positive integers. Find m+n.") or an LSH miss
            out.append(Match(problem.id, ev.id, ev.source, kind, round(score, 4), n_shared, round(jac, 4)))
        return out

    def _contained(self, problem: Text) -> set[str]:
        """Evaluation problems found whole inside this one, or holding this one whole (both shorter than n)."""
        found: set[str] = set()
        haystack = _marked(problem)
        for token in set(problem.words):
            found.update(key for key, needle in self._short.get(token, ()) if needle in haystack)
        if _containable(problem, self.n):
            at = self._haystack.find(haystack)
            while at >= 0:
                found.add(self._keys[bisect.bisect_right(self._starts, at) - 1])
                at = self._haystack.find(haystack, at + 1)
        return found


def _containable(p: Text, n: int) -> bool:
    """Whether a problem is specific enough to be searched for inside longer ones.

    Only problems shorter than the n-gram need it (longer ones share n-grams).  "Compute $x$." and
    "Find $x+y$." end many unrelated problems, so a contained problem needs MIN_CONTAINED tokens and a
    number ("Compute $\\dbinom{31}{28}$." has both); the ``$`` marks in :attr:`Text.marked` keep it
    from matching the start of a longer expression.
    """
    return MIN_CONTAINED <= len(p.words) < n and any(w[0].isdigit() for w in p.words)


def _marked(p: Text) -> str:
    return p.marked or join(p.words)


def _key(p: Text) -> str:
    return f"{p.source}\x00{p.id}"


def find_contamination(train: Sequence[Text], eval_problems: Iterable[Text], ngram: int = 8,
                       min_overlap: float = 0.5, fuzzy_threshold: float | None = 0.7,
                       shingle_sets: Sequence[set[str]] | None = None, minhashes: Sequence[Any] | None = None,
                       ) -> list[Match]:
    """All matches between training and evaluation problems, in training order.

    ``min_overlap`` is the share of the shorter problem's n-grams that must be shared.
    Open-R1's rule, any one shared 8-gram (``min_overlap`` near 0), flags 12% of the
    MATH + GSM8K + AIME training problems in shared/data against MATH-500, GSM8K, AIME
    and AMC, mostly through boilerplate ("can be written as m/n where m and n are
    relatively prime positive integers"); 0.5 flags 0.4%: copies, reworded copies and
    same-template siblings with other numbers.

    A problem shorter than ``ngram`` tokens has no n-gram to share with a longer one, so it is also
    searched for whole (``contained``): an evaluation problem inside a training problem, or a short
    training problem inside an evaluation problem.  To keep generic short questions from matching
    everything, the shorter problem needs at least ``MIN_CONTAINED`` (3) tokens and a number, and
    its math spans must line up with the other problem's (``Text.marked``).  On shared/data, "What is
    $a+b$?" would otherwise sit inside 15 MATH training problems; "Compute $\\dbinom{31}{28}$." and
    "Simplify $\\sqrt{242}$." qualify, "Evaluate $i^5$." does not match "Evaluate $i^5+i^{-25}$.".

    ``shingle_sets`` and ``minhashes`` (one per training problem) are passed in by a caller that has
    them already, so screening shingles and hashes the training set once.
    """
    index = EvalIndex(eval_problems, ngram, min_overlap, fuzzy_threshold)
    if not len(index) or not train:
        return []
    sh = list(shingle_sets) if shingle_sets is not None else [shingles(t.words) for t in train]
    if fuzzy_threshold is None:
        hashes: Sequence[Any] = [None] * len(train)
    else:
        hashes = minhashes if minhashes is not None else _minhash(sh)
    matches: list[Match] = []
    for problem, own, mh in zip(train, sh, hashes):
        matches.extend(index.match(problem, mh, own))
    return matches


# --------------------------------------------------------------------------- duplicates


def find_duplicates(problems: Sequence[Text], near_threshold: float | None = 0.7,
                    shingle_sets: Sequence[set[str]] | None = None,
                    minhashes: Sequence[Any] | None = None) -> list[Duplicate]:
    """Problems repeating an earlier one in the sequence; the first of each group is the one kept.

    Greedy in order: a problem is compared with the problems kept so far, so every
    duplicate names a kept problem and no chain of near-matches links two distant texts.
    Near matches must also have the same answer when both answers are known: MATH is
    full of templated siblings ("arrange the letters of TOOT" / "... of MADAM") that
    differ in a word and are different problems.

    ``shingle_sets`` and ``minhashes`` as in :func:`find_contamination`.
    """
    from datasketch import MinHashLSH

    first_by_words: dict[tuple[str, ...], str] = {}
    kept_shingles: dict[str, set[str]] = {}
    kept_answers: dict[str, str] = {}
    lsh = MinHashLSH(threshold=near_threshold, num_perm=NUM_PERM) if near_threshold is not None else None
    sh = list(shingle_sets) if shingle_sets is not None else [shingles(p.words) for p in problems]
    if lsh is None:
        hashes: Sequence[Any] = [None] * len(problems)
    else:
        hashes = minhashes if minhashes is not None else _minhash(sh)
    out: list[Duplicate] = []
    for p, own, mh in zip(problems, sh, hashes):
        if p.words in first_by_words:
            out.append(Duplicate(p.id, first_by_words[p.words], "exact", 1.0))
            continue
        if lsh is not None and own:
            candidates = [c for c in lsh.query(mh) if _same_answer(p.answer, kept_answers[c])]
            best = _best_near(own, candidates, kept_shingles, near_threshold)
            if best is not None:
                out.append(Duplicate(p.id, best[0], "near", round(best[1], 4)))
                continue
        if p.words:
            first_by_words[p.words] = p.id
        if lsh is not None and own and p.id not in kept_shingles:
            kept_shingles[p.id] = own
            kept_answers[p.id] = p.answer
            lsh.insert(p.id, mh)
    return out


def _same_answer(a: str, b: str) -> bool:
    """Unknown answers never tell two problems apart; known ones must match."""
    return not (a and b and a != b)


def _best_near(own: set[str], candidates: list[str], kept: dict[str, set[str]],
               threshold: float | None) -> tuple[str, float] | None:
    scored = [(c, jaccard(own, kept[c])) for c in candidates]
    scored = [s for s in scored if threshold is not None and s[1] >= threshold]
    return min(scored, key=lambda s: (-s[1], s[0])) if scored else None


# --------------------------------------------------------------------------- the filter stage's view


@dataclass
class Screening:
    """Problem-level verdicts for the filter: which training problems to drop, and every match behind them."""

    reasons: dict[str, str]  # problem id -> contaminated | duplicate_problem
    contamination: list[Match]
    duplicates: list[Duplicate]


def screen_problems(train: Sequence[Any], eval_sets: dict[str, Sequence[Any]], *, dedup: bool = True,
                    near_threshold: float | None = 0.7, ngram: int = 8, min_overlap: float = 0.5,
                    fuzzy_threshold: float | None = 0.7) -> Screening:
    """Decontaminate ``train`` (Problems) against named evaluation sets and find duplicates among them.

    A contaminated problem is reported as contaminated even when it also repeats
    another training problem: contamination is the fault that must not go unseen.
    """
    texts = [Text.of(p.id, p.problem, "train", p.answer) for p in train]
    evals = [Text.of(p.id, p.problem, name) for name, problems in eval_sets.items() for p in problems]
    # Shingles and MinHashes of the training set, computed once for both searches (MinHash is the costly part).
    sh = [shingles(t.words) for t in texts]
    needs_hashes = (evals and fuzzy_threshold is not None) or (dedup and near_threshold is not None)
    hashes = _minhash(sh) if needs_hashes and texts else None
    contamination = find_contamination(texts, evals, ngram, min_overlap, fuzzy_threshold,
                                       shingle_sets=sh, minhashes=hashes) if evals else []
    duplicates = find_duplicates(texts, near_threshold, shingle_sets=sh, minhashes=hashes) if dedup else []
    reasons = {d.problem_id: "duplicate_problem" for d in duplicates}
    reasons.update({m.train_id: "contaminated" for m in contamination})
    return Screening(reasons, contamination, duplicates)


def screen_run(train: Sequence[Any], heldout: dict[str, Sequence[Any]], cfg: Any) -> Screening:
    """The filter stage's screening: ``heldout`` (name -> Problems) when ``cfg.decontaminate_heldout``,
    plus every file in ``cfg.decontaminate_against`` (uniform JSONL schema, named by file stem)."""
    from distill.problems import load_jsonl_problems

    eval_sets: dict[str, Sequence[Any]] = dict(heldout) if cfg.decontaminate_heldout else {}
    for path in cfg.decontaminate_against:
        eval_sets[path.stem] = load_jsonl_problems(path)
    return screen_problems(train, eval_sets, dedup=cfg.dedup_problems, near_threshold=cfg.near_duplicate_threshold,
                           ngram=cfg.decontam_ngram, min_overlap=cfg.decontam_min_overlap,
                           fuzzy_threshold=cfg.decontam_fuzzy_threshold)
