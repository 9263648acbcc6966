"""A stage's code cannot change without its version: the version is in the stage's fingerprint, so a
forgotten bump would reuse what the old code made (a fixed verifier's filter results, for one)."""

from __future__ import annotations

from distill.stage_code import code_hash, recorded, source_digest, stale_stages


def test_every_stage_version_matches_its_code():
    stale = stale_stages()
    assert not stale, (f"the code of {', '.join(stale)} changed: bump `version` in its stage.py, then run "
                       "`python -m distill.stage_code` to record the new code hash")


def test_the_code_hash_ignores_formatting_comments_and_docstrings_but_not_logic():
    code = 'def f(x):\n    """Why."""\n    return x + 1\n'
    same = '# a comment\n\ndef f( x ):\n    """Another why."""\n\n    return x+1  # note\n'
    other = 'def f(x):\n    """Why."""\n    return x + 2\n'
    assert source_digest(code) == source_digest(same) != source_digest(other)
    assert code_hash("filter") == recorded()["filter"]["code"] != code_hash("eval")
