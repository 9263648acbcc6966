"""Data mixtures: several sources (the toy teacher, a published trace dataset, an unverifiable general set)
screened together, each verified by its kind, drawn to the configured composition and reported.

The teacher is counted at the sampler (every prompt x sample it is asked for is a paid trace), so "changing a
share re-samples nothing" and "adding a source samples only it" are counted, not inferred."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from distill.config import config_from_dict
from distill.errors import ConfigError, UserError
from distill.mixture.compose import draw, largest_remainder, take
from distill.pipeline import run
from distill.records import Trace
from tests.conftest import run_cli, tiny_config_dict, write_yaml


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _published_rows(count: int) -> list[dict]:
    """OpenR1-style rows (a published trace dataset) in the toy teacher's format: a right and a wrong generation."""
    from distill.problems import addition_solution

    rows = []
    for i in range(count):
        a, b = 10 + i, 20 + 3 * i  # two-digit sums: not among the one-digit arithmetic source's problems
        right, total = addition_solution(a, b)
        wrong, slipped = addition_solution(a, b, slip_column=0)
        rows.append({"uuid": f"pub-{i}", "problem": f"What is {a} + {b}?", "answer": total, "generations": [
            f"<think>\n{right}\n</think>\n\nThe answer is \\boxed{{{total}}}.",
            f"<think>\n{wrong}\n</think>\n\nThe answer is \\boxed{{{slipped}}}."]})
    return rows


GENERAL = [("Write a haiku about rain.", "rain taps the roof\nsoft grey morning hums\npuddles hold the sky"),
           ("What is the capital of France?", "The capital of France is Paris."),
           ("Translate 'good night' into French.", "Bonne nuit."),
           ("Name a primary colour.", "Red is a primary colour."),
           ("Give a synonym for 'happy'.", "Joyful."),
           ("Write a greeting for a birthday card.", "Happy birthday, and many happy returns of the day!")]


@pytest.fixture
def mixture_files(tmp_path):
    """The inputs of the mixture runs below: a published dataset, a general set, an extra JSONL math source
    (with a copy of an arithmetic problem and of a held-out problem), and two eval files."""
    from distill.problems import problem_sets

    plain = config_from_dict(tiny_config_dict(tmp_path, tmp_path))
    train, heldout = problem_sets(plain)
    published = _published_rows(8)
    taken = {p.problem for p in train + heldout}
    fresh = [{"id": f"new-{a}{b}", "problem": f"What is {a} + {b}?", "answer": str(a + b)}
             for a in range(10) for b in range(10) if f"What is {a} + {b}?" not in taken][:6]
    bench = _jsonl(tmp_path / "bench.jsonl", [{"id": "b0", "problem": published[0]["problem"],
                                               "answer": published[0]["answer"]}])
    against = _jsonl(tmp_path / "against.jsonl", [{"id": "g0", "problem": GENERAL[2][0], "answer": "Bonne nuit"}])
    return {
        "published": _jsonl(tmp_path / "published.jsonl", published),
        "general": _jsonl(tmp_path / "general.jsonl", [
            {"id": f"gen-{i}", "problem": p, "response": f"<think>\nThinking about: {p}\n</think>\n\n{a}"}
            for i, (p, a) in enumerate(GENERAL)]),
        "extra": _jsonl(tmp_path / "extra.jsonl", [
            {"id": "copy", "problem": train[0].problem, "answer": train[0].answer},
            {"id": "leak", "problem": heldout[0].problem, "answer": heldout[0].answer},
            *fresh]),
        "bench": bench, "against": against, "arith_first": train[0].problem, "heldout_first": heldout[0].problem,
    }


def _mixture_raw(tmp_path, teacher_cache, files, shares=(0.5, 0.3, 0.2), extra: bool = False) -> dict:
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["filter"]["decontaminate_against"] = [str(files["against"])]
    raw["eval"]["benchmarks"] = [{"name": "heldout"}, {"name": "bench", "file": str(files["bench"])}]
    sources = [
        {"name": "arith", "kind": "math", "share": shares[0],
         "problems": {"source": "arithmetic", "size": 24, "min_digits": 1, "max_digits": 1}},
        {"name": "pub", "kind": "math", "share": shares[1],
         "teacher": {"kind": "dataset", "dataset": {"path": str(files["published"])}}},
        {"name": "gen", "kind": "general", "share": shares[2],
         "teacher": {"kind": "dataset", "dataset": {"path": str(files["general"])}}},
    ]
    if extra:
        sources.append({"name": "extra", "kind": "math", "share": shares[3],
                        "problems": {"source": "jsonl", "path": str(files["extra"])}})
    raw["mixture"] = {"sources": sources, "seed": 3}
    return raw


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _manifest(config) -> dict:
    return json.loads((config.run_dir / "manifest.json").read_text())


# --------------------------------------------------------------------------- config checks, before anything runs


@pytest.mark.parametrize("mixture, message", [
    ({"sources": [{"name": "a", "kind": "poetry", "share": 1.0, "problems": {}}]},
     "mixture.sources.0.kind: Input should be 'math', 'code', 'multiple_choice' or 'general'"),
    ({"sources": [{"name": "a", "kind": "math", "share": 0.5, "problems": {}},
                  {"name": "b", "kind": "math", "share": 0.4, "problems": {}}]}, "shares must sum to 1"),
    ({"sources": [{"name": "a", "kind": "math", "share": 0.5, "problems": {}},
                  {"name": "b", "kind": "math", "count": 40, "problems": {}}]}, "every source a share or every"),
    ({"sources": [{"name": "a", "kind": "math", "share": 1.0}]}, "sources.0 (a): no problems for the run's teacher"),
    ({"sources": [{"name": "a", "kind": "math", "problems": {}}]}, "give exactly one of share or count"),
    ({"sources": [{"name": "a", "kind": "math", "count": 5, "problems": {}},
                  {"name": "a", "kind": "general", "count": 5, "problems": {}}]}, "names must differ (a repeated)"),
    ({"sources": []}, "mixture.sources: List should have at least 1 item"),
])
def test_a_bad_mixture_is_one_config_error(mixture, message):
    with pytest.raises(ConfigError, match=None) as err:
        config_from_dict({"name": "m", "mixture": mixture})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_empty_source_fails_validate_and_run_with_one_line_before_sampling(tmp_path, teacher_cache):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    raw = tiny_config_dict(tmp_path, teacher_cache)
    raw["mixture"] = {"sources": [
        {"name": "arith", "kind": "math", "share": 0.5, "problems": {"source": "arithmetic", "size": 10}},
        {"name": "nothing", "kind": "math", "share": 0.5, "problems": {"source": "jsonl", "path": str(empty)}}]}
    config = write_yaml(tmp_path / "m.yaml", raw)
    for command in ("validate", "run"):
        out = run_cli(command, str(config))
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0
        assert "mixture.sources.1 (nothing): no problems in" in out.stderr
    assert not (tmp_path / "runs" / "tiny" / "trace_store").exists()  # nothing sampled, no teacher trained
    raw["mixture"]["sources"][1]["problems"]["path"] = str(tmp_path / "missing.jsonl")
    out = run_cli("run", str(write_yaml(tmp_path / "m.yaml", raw)))
    assert out.returncode == 2 and "mixture.sources.1 (nothing).problems.path" in out.stderr


def test_a_config_without_a_mixture_keeps_its_fingerprints(tiny_config):
    from distill.filter.stage import FILTER
    from distill.teachers.stage import SAMPLE

    config = tiny_config()
    assert config.mixture is None
    assert set(SAMPLE.fingerprint_input(config)) == {"problems", "teacher"}
    assert set(FILTER.fingerprint_input(config)) == {"filter"}


# --------------------------------------------------------------------------- the draw


def _traces(source: str, tokens: list[int]) -> list[Trace]:
    return [Trace(f"{source}/p{i}", 0, [], "r", "a", "stop", True, completion_tokens=n) for i, n in enumerate(tokens)]


def _mixture(shares=None, counts=None, mix_by="traces", total=None, seed=0):
    names = ["a", "b", "c"]
    sources = [{"name": n, "kind": "math", "problems": {},
                **({"share": shares[i]} if shares else {"count": counts[i]})} for i, n in enumerate(names)]
    return config_from_dict({"name": "m", "mixture": {"sources": sources, "mix_by": mix_by, "total": total,
                                                      "seed": seed}}).mixture


def test_largest_remainder_sums_to_the_total():
    for total in (0, 1, 7, 100, 1001):
        parts = largest_remainder(total, [0.5, 0.3, 0.2])
        assert sum(parts) == total and all(abs(p - total * s) < 1 for p, s in zip(parts, [0.5, 0.3, 0.2]))


def test_shares_by_traces_are_met_within_rounding_and_the_draw_is_seeded():
    pools = {"a": _traces("a", [10] * 100), "b": _traces("b", [10] * 31), "c": _traces("c", [10] * 500)}
    mixture = _mixture(shares=[0.5, 0.3, 0.2])
    drawn, goal = draw(pools, mixture)
    total = sum(len(d) for d in drawn.values())
    assert total == 103  # the largest set the shares allow: b's 31 traces are 30% of 103
    for name, share in zip("abc", (0.5, 0.3, 0.2)):
        assert abs(len(drawn[name]) - share * total) <= 1 and len(drawn[name]) == goal[name]
    again, _ = draw(pools, mixture)
    assert {n: [t.key for t in d] for n, d in again.items()} == {n: [t.key for t in d] for n, d in drawn.items()}
    other, _ = draw(pools, _mixture(shares=[0.5, 0.3, 0.2], seed=1))
    assert [t.key for t in other["c"]] != [t.key for t in drawn["c"]]
    capped, _ = draw(pools, _mixture(shares=[0.5, 0.3, 0.2], total=50))
    assert [len(capped[n]) for n in "abc"] == [25, 15, 10]
    assert {t.key for t in capped["c"]} <= {t.key for t in drawn["c"]}  # a smaller target: a prefix


def test_shares_by_tokens_are_met_within_half_a_trace():
    pools = {"a": _traces("a", [100 + (i * 37) % 400 for i in range(200)]), "b": _traces("b", [3000] * 20),
             "c": _traces("c", [50] * 300)}
    mixture = _mixture(shares=[0.6, 0.3, 0.1], mix_by="tokens")
    drawn, goal = draw(pools, mixture)
    reached = {n: sum(t.completion_tokens for t in d) for n, d in drawn.items()}
    for name in "abc":
        largest = max(t.completion_tokens for t in pools[name])
        assert abs(reached[name] - goal[name]) <= largest / 2
    total = sum(reached.values())
    assert abs(reached["b"] / total - 0.3) < 0.03


def test_counts_take_what_there_is_and_say_how_short():
    from distill.mixture.compose import composition

    pools = {"a": _traces("a", [5] * 10), "b": _traces("b", [5] * 3), "c": _traces("c", [5] * 8)}
    mixture = _mixture(counts=[4, 6, 8])
    drawn, goal = draw(pools, mixture)
    assert [len(drawn[n]) for n in "abc"] == [4, 3, 8]
    comp = composition(mixture, pools, drawn, goal, {})
    assert [r.get("short_by") for r in comp["sources"]] == [None, 3, None]
    assert comp["traces"] == 15 and comp["kinds"]["math"]["share_traces"] == 1.0


def test_take_by_tokens_stops_nearest_the_target():
    traces = _traces("a", [40, 40, 40, 40])
    assert len(take(traces, 100, "tokens")) == 2  # 80 is nearer 100 than 120 is
    assert len(take(traces, 110, "tokens")) == 3
    assert take(traces, 0, "tokens") == []


# --------------------------------------------------------------------------- the pipeline


def test_a_mixture_run_screens_verifies_and_draws_each_source(tmp_path, teacher_cache, mixture_files, counted):
    files = mixture_files
    config = config_from_dict(_mixture_raw(tmp_path, teacher_cache, files, (0.4, 0.2, 0.1, 0.3), extra=True))
    run(config, until="filter")
    prompts = set(counted)
    # only the model-teacher sources are sampled, and extra's copy of an arithmetic problem shares its traces
    assert sum(counted.values()) == (24 + len(_rows(files["extra"])) - 1) * 2
    assert all("What is" in p for p in prompts)

    out = config.run_dir / "filter"
    kept = _rows(out / "kept.jsonl")
    verdicts = {(v["problem_id"], v["sample_index"]): v["reason"] for v in _rows(out / "verdicts.jsonl")}
    # cross-source duplicates: the later source's copy goes, the first source's stays
    duplicates = _rows(out / "duplicates.jsonl")
    assert {"problem_id": "extra/copy", "duplicate_of": "arith/train-00000", "kind": "exact", "score": 1.0} \
        in duplicates
    # contamination of every source against every eval set: held-out, decontaminate_against, benchmark files
    contaminated = {(m["train_id"], m["benchmark"]) for m in _rows(out / "contamination.jsonl")}
    assert {("extra/leak", "heldout"), ("gen/gen-2", "against"), ("pub/pub-0", "bench")} <= contaminated
    for pid in ("extra/copy", "extra/leak", "gen/gen-2", "pub/pub-0"):
        assert not any(t["problem_id"] == pid for t in kept)
    assert {verdicts[(pid, 0)] for pid in ("extra/leak", "gen/gen-2", "pub/pub-0")} == {"contaminated"}
    # general traces are never verified: usable ones are 'unverified' (or not drawn), never 'kept'
    general = {k: r for k, r in verdicts.items() if k[0].startswith("gen/")}
    assert general and "kept" not in general.values() and "unverified" in general.values()
    assert all(r["kind"] == "general" for r in kept if r["problem_id"].startswith("gen/"))

    comp = json.loads((out / "composition.json").read_text())
    by_name = {r["name"]: r for r in comp["sources"]}
    assert sum(r["traces"] for r in comp["sources"]) == len(kept) == comp["traces"]
    assert comp["unverified_traces"] == by_name["gen"]["traces"] and not by_name["gen"]["verified"]
    for name, share in (("arith", 0.4), ("pub", 0.2), ("gen", 0.1), ("extra", 0.3)):
        assert abs(by_name[name]["traces"] - share * comp["traces"]) <= 1, (name, comp)
    assert Counter(t["problem_id"].split("/")[0] for t in kept) == {n: r["traces"] for n, r in by_name.items()
                                                                    if r["traces"]}
    manifest = _manifest(config)
    assert manifest["stages"]["filter"]["counts"]["composition"] == comp
    assert manifest["stages"]["filter"]["counts"]["cross_source_duplicates"] >= 1
    assert set(manifest["stages"]["sample"]["counts"]["sources"]) == {"arith", "pub", "gen", "extra"}
    funnel = json.loads((out / "funnel.json").read_text())
    assert sum(v for k, v in funnel["funnel"].items() if k != "total") == funnel["funnel"]["total"]
    assert set(funnel["by_source"]) == {"arith", "pub", "gen", "extra"}


def test_a_share_change_resamples_nothing_and_a_new_source_samples_only_itself(
        tmp_path, teacher_cache, mixture_files, counted):
    files = mixture_files
    first = config_from_dict(_mixture_raw(tmp_path, teacher_cache, files, (0.5, 0.3, 0.2)))
    run(first, until="filter")
    assert sum(counted.values()) == 24 * 2
    before = json.loads((first.run_dir / "filter" / "composition.json").read_text())

    counted.clear()
    changed = config_from_dict(_mixture_raw(tmp_path, teacher_cache, files, (0.7, 0.2, 0.1)))
    run(changed, until="filter")
    assert sum(counted.values()) == 0
    assert _manifest(changed)["stages"]["sample"]["fingerprint"] == _manifest(first)["stages"]["sample"]["fingerprint"]
    after = json.loads((changed.run_dir / "filter" / "composition.json").read_text())
    assert [r["configured"] for r in after["sources"]] != [r["configured"] for r in before["sources"]]

    counted.clear()
    grown = config_from_dict(_mixture_raw(tmp_path, teacher_cache, files, (0.4, 0.2, 0.1, 0.3), extra=True))
    run(grown, until="filter")
    extra = {r["problem"] for r in _rows(files["extra"])}
    asked = {prompt.split(" Please reason")[0] for prompt in counted}
    assert asked == extra - {files["arith_first"]}  # the copy of an arithmetic problem shares its stored traces
    assert sum(counted.values()) == 2 * len(asked)


def test_the_report_and_the_card_show_the_composition(tmp_path, teacher_cache, mixture_files):
    from distill.publish.card import CardInfo, render_model_card
    from distill.publish.report import build_report, render_markdown

    config = config_from_dict(_mixture_raw(tmp_path, teacher_cache, mixture_files))
    run(config, until="filter")
    report = build_report(config.run_dir)
    section = report.section("composition")
    assert section.status == "ok"
    table = next(b for b in section.blocks if hasattr(b, "rows"))
    comp = json.loads((config.run_dir / "filter" / "composition.json").read_text())
    names = [row[0] for row in table.rows]
    assert names[:3] == ["arith", "pub", "gen"] and "total" in names
    assert table.rows[2][1] == "general (unverified)"
    md = render_markdown(report)
    assert "## Training-set composition" in md and "| arith | math | toy |" in md
    assert table.rows[-1][0] == "total" and table.rows[-1][4] == f"{comp['traces']:,}"
    card = render_model_card(CardInfo(repo_id=None, model_name="m", base_model="b", teacher="toy", license="mit",
                                      license_note="", composition=comp, funnel={"total": 1, "kept": 1}))
    assert "## Training-set composition" in card and "were not verified" in card
    assert f"{comp['unverified_traces']:,} of {comp['traces']:,} training traces come from general sources" in card
