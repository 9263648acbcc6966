"""Benchmark registry: local files (shared/data/eval) and Hub-format fixtures through ``load_dataset``.

The Hub itself cannot be reached from tests, so each Hub benchmark is checked on a
local folder written in that dataset's column layout (parquet shards, and a README
``configs:`` block where the dataset has a named config), loaded through the same
``datasets.load_dataset`` call the run-time path makes.  GPQA items here are made up.
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, write_hub_parquet
from distill.errors import UserError
from distill.eval.benchmarks import (
    DEEPSEEK_LCB_WINDOW,
    REGISTRY,
    decode_lcb_tests,
    get_benchmark,
    gsm8k_final_answer,
    load_benchmark,
    load_hub,
    shuffle_choices,
)

EVAL_DIR = SHARED_DATA / "eval"

# (benchmark, rows, a known id, its answer) -- from shared/data/SOURCES.md
LOCAL_EXPECTED = [
    ("aime2024", 30, "AIME-2024-I-1", "204"),
    ("aime2025", 30, "AIME-2025-I-1", "70"),
    ("amc23", 40, "AMC23-0", "27"),
    ("gsm8k", 1319, "gsm8k-test-0", "18"),
    ("math500", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
]


@pytest.mark.parametrize("name,rows,known_id,answer", LOCAL_EXPECTED)
def test_local_file_loaders(name, rows, known_id, answer):
    bench = get_benchmark(name)
    if not (EVAL_DIR / bench.local_file).is_file():
        pytest.skip(f"{EVAL_DIR / bench.local_file} absent")
    loaded = load_benchmark(name, source="local", data_dir=EVAL_DIR)
    assert len(loaded.problems) == rows
    assert len({p.id for p in loaded.problems}) == rows
    by_id = {p.id: p for p in loaded.problems}
    assert by_id[known_id].answer == answer
    assert all(p.kind == "math" and p.problem.strip() and p.answer for p in loaded.problems)
    info = loaded.describe()
    assert info["version"] == bench.version and info["source"] == "local" and len(info["sha256"]) == 64
    limited = load_benchmark(name, source="auto", data_dir=EVAL_DIR, limit=3)
    assert [p.id for p in limited.problems] == [p.id for p in loaded.problems[:3]]


def test_auto_prefers_local_and_falls_back_to_hub(tmp_path, monkeypatch):
    (tmp_path / "amc23.jsonl").write_text(json.dumps({"id": "x", "problem": "1+1?", "answer": 2.0}) + "\n")
    loaded = load_benchmark("amc23", data_dir=tmp_path)
    assert loaded.source["source"] == "local" and loaded.problems[0].answer == "2"
    calls = []
    monkeypatch.setattr("distill.eval.benchmarks.load_hub", lambda *a, **k: calls.append(a) or "hub")
    assert load_benchmark("aime2024", data_dir=tmp_path) == "hub" and calls


# --------------------------------------------------------------------------- Hub-format fixtures


HUB_ROWS = {
    "aime2024": [{"id": 60, "problem": "Find x if x+1=205.", "solution": "x=204", "answer": "204",
                  "url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1",
                  "year": "2024"}],
    "aime2025": [{"problem_idx": 16, "problem": "Compute 7*10.", "answer": 70}],
    "math500": [{"problem": "Convert (0,3) to polar.", "solution": "r=3", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
                 "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"}],
    "gsm8k": [{"question": "Janet has 16 eggs, eats 3, bakes 4, sells the rest at $2.",
               "answer": "16-3-4=9\n9*2=18\n#### 1,018"}],
    "amc23": [{"id": 0, "question": "Alicia and Beth ...", "answer": 27.0, "url": "u"}],
}


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_layout_loaders(name, tmp_path):
    bench = get_benchmark(name)
    folder = write_hub_parquet(tmp_path / name, HUB_ROWS[name], bench.hub.split, bench.hub.name)
    loaded = load_hub(bench, path=str(folder))
    assert len(loaded.problems) == 1
    p = loaded.problems[0]
    expected = {"aime2024": ("AIME-2024-I-1", "204"), "aime2025": ("AIME-2025-II-1", "70"),
                "math500": ("test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
                "gsm8k": ("gsm8k-test-0", "1018"), "amc23": ("AMC23-0", "27")}[name]
    assert (p.id, p.answer) == expected
    assert p.kind == "math" and p.source == bench.display
    assert loaded.source["source"] == "hub" and loaded.source["path"] == str(folder)


def test_hub_layout_mismatch_is_a_clear_user_error(tmp_path):
    folder = write_hub_parquet(tmp_path / "bad", [{"prompt": "x", "label": "1"}], "test")
    with pytest.raises(UserError, match="not in the expected layout.*problem"):
        load_hub(get_benchmark("math500"), path=str(folder))
    with pytest.raises(UserError, match="cannot load Hub dataset"):
        load_hub(get_benchmark("math500"), path=str(tmp_path / "missing"))


def _made_up_gpqa(n: int) -> list[dict]:
    """Invented multiple-choice items in GPQA's column layout (never real GPQA questions)."""
    return [{"Record ID": f"rec{i}", "Question": f"Which made-up compound number {i} is inert?",
             "Correct Answer": f"right-{i}", "Incorrect Answer 1": f"wrong-a-{i}",
             "Incorrect Answer 2": f"wrong-b-{i}", "Incorrect Answer 3": f"wrong-c-{i}"} for i in range(n)]


def test_gpqa_multiple_choice_shuffled_with_fixed_seed(tmp_path):
    bench = get_benchmark("gpqa_diamond")
    folder = write_hub_parquet(tmp_path / "gpqa", _made_up_gpqa(40), bench.hub.split, bench.hub.name)
    first = load_hub(bench, path=str(folder), seed=0)
    again = load_hub(bench, path=str(folder), seed=0)
    other = load_hub(bench, path=str(folder), seed=1)
    assert [p.answer for p in first.problems] == [p.answer for p in again.problems]
    assert [p.answer for p in first.problems] != [p.answer for p in other.problems]
    letters = Counter(p.answer for p in first.problems)
    assert set(letters) == set("ABCD")  # the right answer is not always listed first
    for i, p in enumerate(first.problems):
        assert p.kind == "multiple_choice"
        line = next(ln for ln in p.problem.splitlines() if ln.startswith(f"{p.answer}. "))
        assert line == f"{p.answer}. right-{i}"
    assert first.source["shuffle_seed"] == 0 and first.source["config"] == "gpqa_diamond"
    # the shared verifier scores the letter
    from distill.filter.verify import verify_answer

    assert verify_answer("multiple_choice", f"so \\boxed{{{first.problems[0].answer}}}", first.problems[0].answer).correct


def test_shuffle_choices_is_a_permutation():
    shown, letter = shuffle_choices("c", ["w1", "w2", "w3"], "k", 7)
    assert sorted(shown) == ["c", "w1", "w2", "w3"] and shown["ABCD".index(letter)] == "c"


def test_livecodebench_layout_and_private_tests(tmp_path):
    bench = get_benchmark("livecodebench")
    private = [{"input": "5\n", "output": "25\n", "testtype": "stdin"}]
    packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(private)))).decode()
    row = {"question_title": "square", "question_content": "Read n, print n*n.", "platform": "atcoder",
           "question_id": "abc001_a", "contest_id": "abc001", "contest_date": "2024-08-01T00:00:00",
           "starter_code": "", "difficulty": "easy",
           "public_test_cases": json.dumps([{"input": "3\n", "output": "9\n", "testtype": "stdin"}]),
           "private_test_cases": packed, "metadata": "{}"}
    folder = _write_lcb(tmp_path / "lcb", {"test6.jsonl": [row]})
    loaded = load_hub(bench, path=str(folder))
    p = loaded.problems[0]
    assert p.kind == "code" and p.id == "lcb-abc001_a" and "```python" in p.problem
    ref = json.loads(p.answer)
    assert [t["input"] for t in ref["cases"]] == ["3\n", "5\n"] and ref["fn_name"] is None
    # scored by the shared verifier in the sandbox: a right and a wrong program
    from distill.filter.sandbox import parse_tests
    from distill.filter.verify import verify_answer

    assert parse_tests(p.answer).style == "stdio" and len(parse_tests(p.answer).cases) == 2
    right = "```python\nn = int(input())\nprint(n * n)\n```"
    wrong = "```python\nn = int(input())\nprint(n + n)\n```"
    ok, bad = verify_answer("code", right, p.answer), verify_answer("code", wrong, p.answer)
    if ok.status == "error_infra":
        pytest.skip(f"sandbox unavailable here: {ok.detail}")
    assert ok.correct and not bad.correct and bad.extracted == "wrong_answer"


def _lcb_row(qid: str, date: str, private: str = "") -> dict:
    return {"question_title": qid, "question_content": f"Problem {qid}: read n, print n*n.", "platform": "atcoder",
            "question_id": qid, "contest_id": qid, "contest_date": f"{date}T00:00:00", "starter_code": "",
            "difficulty": "easy", "public_test_cases": json.dumps([{"input": "3\n", "output": "9\n",
                                                                     "testtype": "stdin"}]),
            "private_test_cases": private, "metadata": "{}"}


def _write_lcb(folder: Path, by_file: dict[str, list[dict]]) -> Path:
    """code_generation_lite's layout: one JSONL per release (test.jsonl .. test6.jsonl), each with rows."""
    folder.mkdir(parents=True, exist_ok=True)
    filler = _lcb_row("filler", "2023-05-01")  # the json builder wants every listed file to hold rows
    for name in get_benchmark("livecodebench").hub.data_files:
        rows = by_file.get(name) or [filler]
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_livecodebench_window_spans_every_release_file(tmp_path):
    """DeepSeek's window (2024-08-01..2025-01-31) picks problems from older and newer release files alike."""
    folder = _write_lcb(tmp_path / "lcb", {
        "test.jsonl": [_lcb_row("old", "2023-06-01")],
        "test4.jsonl": [_lcb_row("aug", "2024-08-01"), _lcb_row("jul", "2024-07-31")],
        "test5.jsonl": [_lcb_row("jan", "2025-01-31")],
        "test6.jsonl": [_lcb_row("feb", "2025-02-01"), _lcb_row("nov", "2024-11-15")],
    })
    bench = get_benchmark("livecodebench")
    loaded = load_hub(bench, path=str(folder))
    assert sorted(p.id for p in loaded.problems) == ["lcb-aug", "lcb-jan", "lcb-nov"]
    assert loaded.source["window"] == "2024-08-01..2025-01-31" and bench.version == "2"
    assert loaded.describe()["window"] == "2024-08-01..2025-01-31"  # goes into the protocol record
    assert "2024-08-01..2025-01-31" in bench.description
    other = load_benchmark("livecodebench", source="hub", hub_path=str(folder), window="2025-02-01..2025-05-01")
    assert [p.id for p in other.problems] == ["lcb-feb"] and other.source["window"] == "2025-02-01..2025-05-01"
    with pytest.raises(UserError, match="FIRST..LAST"):
        load_hub(bench, path=str(folder), window="2025-02-01..2024-01-01")
    with pytest.raises(UserError, match="livecodebench only"):
        load_hub(get_benchmark("math500"), path=str(folder), window=DEEPSEEK_LCB_WINDOW)


def test_table_shows_deepseeks_livecodebench_number_only_for_their_window():
    from distill.eval.table import r1_distill_table

    def summary(window):
        return {"pass_at_1": 0.2, "ci95_low": 0.1, "ci95_high": 0.3, "cons_at_k": 0.2, "params": {"n": 1},
                "protocol": {"benchmark": {"name": "livecodebench", "window": window}}}

    same = r1_distill_table({"student": {"livecodebench": summary(DEEPSEEK_LCB_WINDOW)}},
                            "Qwen/Qwen2.5-Math-1.5B")
    assert "| DeepSeek-R1-Distill-Qwen-1.5B (published) ← compare | 16.9 |" in same
    other = r1_distill_table({"student": {"livecodebench": summary("2025-02-01..2025-05-01")}},
                             "Qwen/Qwen2.5-Math-1.5B")
    assert "| DeepSeek-R1-Distill-Qwen-1.5B (published) ← compare | – |" in other
    assert "window differs" in other


@pytest.mark.parametrize("payload", [
    base64.b64encode(b"not zlib at all").decode(),  # zlib.error
    base64.b64encode(zlib.compress(b"\x80\x04garbage")).decode(),  # pickle.UnpicklingError
    base64.b64encode(zlib.compress(pickle.dumps(Path("/")))).decode(),  # a pickled object: refused
])
def test_corrupt_lcb_private_tests_are_one_line_user_errors(tmp_path, payload):
    folder = _write_lcb(tmp_path / "lcb", {"test5.jsonl": [_lcb_row("bad", "2024-09-01", private=payload)]})
    with pytest.raises(UserError, match="row .* not in the expected layout") as err:
        load_hub(get_benchmark("livecodebench"), path=str(folder))
    assert "\n" not in str(err.value)
    local = tmp_path / "mine.jsonl"  # the same row in a user's local file
    local.write_text(json.dumps(_lcb_row("bad", "2024-09-01", private=payload)) + "\n")
    with pytest.raises(UserError, match="line 1 is not in the expected layout"):
        load_benchmark("mine", file=local, kind="code")


def test_lcb_private_tests_refuse_pickled_objects():
    evil = base64.b64encode(zlib.compress(pickle.dumps(Path("/")))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        decode_lcb_tests(evil)


def test_user_file_benchmark(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps({"id": f"m{i}", "problem": f"{i}+1?", "answer": str(i + 1)}) for i in range(5)))
    loaded = load_benchmark("mine", file=f, limit=4)
    assert [p.answer for p in loaded.problems] == ["1", "2", "3", "4"]
    assert loaded.version == "user" and loaded.source["user_file"]
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        load_benchmark("nope")
    with pytest.raises(UserError, match="no local file"):
        load_benchmark("gpqa_diamond", source="local", data_dir=tmp_path)


def test_registry_is_complete_and_versioned():
    assert set(REGISTRY) == {"aime2024", "aime2025", "math500", "gsm8k", "amc23", "gpqa_diamond", "livecodebench"}
    for b in REGISTRY.values():
        assert b.version and b.hub is not None and b.default_k >= 1
    assert REGISTRY["gpqa_diamond"].local_file is None  # never a local copy of GPQA
    assert gsm8k_final_answer("x\n#### 2,500") == "2500"
