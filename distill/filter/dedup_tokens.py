"""The tokens dedup and decontamination compare, in any script.

Why not an ASCII word pattern: it saw nothing of a Chinese or Russian problem but its LaTeX, so two
different Chinese problems were "exact duplicates" and a copied non-Latin evaluation problem was never
found.  Scripts that separate words by spaces give words; scripts that do not (Chinese, Japanese,
Thai, Lao, Khmer, Myanmar) give one token per character, as Chinese-text dedup usually does.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, kana, Han (BMP and beyond).
_SPACELESS = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
              "\uf900-\ufaff\U00020000-\U0003ffff")
_MATH_RE = re.compile(r"\$\$.+?\$\$|\$.+?\$|\\\[.+?\\\]|\\\(.+?\\\)", re.S)
_COMMAND_RE = re.compile(r"\\([a-z]+)")
MATH_BOUNDARY = "$"  # marks where a math span starts and ends in Text.marked (never a token in Text.words)
_COMMAND_ALIASES = {"dfrac": "frac", "tfrac": "frac", "dbinom": "binom", "tbinom": "binom", "le": "leq",
                    "ge": "geq", "leqslant": "leq", "geqslant": "geq", "ne": "neq", "lvert": "|", "rvert": "|"}
# Layout and font commands say nothing about the problem: ``\left( 3, \dfrac{\pi}{2} \right)`` is ``(3, \frac\pi2)``.
_LAYOUT_COMMANDS = frozenset({"left", "right", "big", "bigl", "bigr", "bigg", "biggl", "biggr", "displaystyle",
                              "textstyle", "text", "textrm", "mathrm", "mbox", "quad", "qquad", "limits",
                              "nolimits", "cdotp"})


def words(text: str) -> list[str]:
    r"""The tokens dedup compares: words, CJK/Thai characters, numbers, LaTeX commands, operators, math brackets.

    Text is NFKC-normalised and case-folded; other punctuation, ``$``, braces and layout commands
    (``\left``, ``\displaystyle``, ``\text``) vanish and ``\dfrac`` is ``\frac``.  ``\frac{1}{2}`` is
    frac 1 2, ``x^k, k > 0`` stays distinct from ``x^k, k < 0``, and parentheses count inside math
    only, so "(in meters)" and ", in meters" are the same words.
    """
    return tokens(text)[0]


def tokens(text: str) -> tuple[list[str], list[str]]:
    """:func:`words`, and the same with MATH_BOUNDARY around each math span: a short problem must line
    up with those boundaries to count as contained in a longer one."""
    prose_re, math_re = _token_res()
    text = _COMMAND_RE.sub(_command, unicodedata.normalize("NFKC", text).casefold().replace("\\$", " "))
    plain: list[str] = []
    marked: list[str] = []
    pos = 0
    for m in _MATH_RE.finditer(text):
        prose = prose_re.findall(text, pos, m.start())
        span = m.group()
        cut = 1 if span[0] == "$" and span[1] != "$" else 2  # $...$, or $$...$$ \[...\] \(...\)
        inner = math_re.findall(span, cut, len(span) - cut)
        plain += prose + inner
        marked += prose + [MATH_BOUNDARY, *inner, MATH_BOUNDARY] if inner else prose
        pos = m.end()
    prose = prose_re.findall(text, pos)
    return plain + prose, marked + prose


def _command(m: re.Match) -> str:
    name = _COMMAND_ALIASES.get(m.group(1), m.group(1))
    return " " if name in _LAYOUT_COMMANDS else f" {name} "


def join(tokens: Sequence[str]) -> str:
    """Space-padded, so a substring search only ever matches whole tokens."""
    return " " + " ".join(tokens) + " "


@lru_cache(maxsize=1)
def _token_res() -> tuple[re.Pattern, re.Pattern]:
    """The prose and math token patterns, built once: a word may carry combining marks (Devanagari
    vowel signs, Arabic harakat), which are not ``\\w`` to Python's ``re``."""
    marks, start, spaceless = [], None, re.compile(f"[{_SPACELESS}]")
    for cp in range(0x300, 0x10000):
        is_mark = unicodedata.category(chr(cp))[0] == "M" and not spaceless.match(chr(cp))
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            marks.append(f"\\u{start:04x}-\\u{cp - 1:04x}")
            start = None
    letter = rf"[^\W\d_{_SPACELESS}]"
    base = rf"[{_SPACELESS}]|\d+(?:\.\d+)?|{letter}(?:{letter}|[{''.join(marks)}])*|[-+*/=<>^!]"
    return re.compile(base), re.compile(base + r"|[()\[\]|]")
