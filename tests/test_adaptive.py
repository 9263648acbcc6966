"""Adaptive sampling with online verification: the round logic against a scripted teacher with known outcomes,
verdicts reused by the filter, a stored chunk without verdicts verified again (never re-sampled), the scout's
screen, the config's checks and the sample fingerprint of runs made before the setting."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from distill.config import config_from_dict
from distill.errors import ConfigError
from distill.pipeline import run
from distill.teachers.adaptive_plan import round_ends
from tests.adaptive_scripted import asked, install, operands


@pytest.fixture(autouse=True)
def _real_sampler_factory_after_each_test(monkeypatch):
    """install() swaps the process's sampler factory for the scripted teacher; recording the real one here puts
    it back after each test, so no later test in the session samples from the script."""
    import distill.teachers.sampler as sampler_module

    monkeypatch.setattr(sampler_module, "make_sampler", sampler_module.make_sampler)


PROBLEMS = 24


def scripted_config(tmp_path: Path, name: str = "adaptive", **sampling) -> object:
    raw = {
        "name": name, "output_dir": str(tmp_path / "runs"),
        "problems": {"source": "arithmetic", "train_size": PROBLEMS, "heldout_size": 4, "min_digits": 1,
                     "max_digits": 2, "seed": 0},
        "teacher": {"model": "scripted/teacher", "samples_per_problem": 4, "max_tokens": 64, "shard_size": 5,
                    "sampling": {"mode": "adaptive", **sampling}},
        "filter": {"max_per_problem": 2},
    }
    return config_from_dict(raw)


def pattern(text: str) -> str:
    a, b = operands(text)
    return ("always", "never", "third", "sixth")[(a * 7 + b) % 4]


def script(text: str, j: int) -> bool:
    """Known outcomes: always right, never right, right from the 3rd sample on, right only at the 6th."""
    return {"always": True, "never": False, "third": j >= 2, "sixth": j == 5}[pattern(text)]


def view_counts(config) -> Counter:
    rows = [json.loads(line) for p in sorted((config.run_dir / "sample" / "shards").glob("*.jsonl"))
            for line in p.read_text().splitlines()]
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys))
    return Counter(r["problem_id"] for r in rows)


def prompts_by_id(config) -> dict[str, str]:
    from distill.problems import problem_sets
    from distill.teachers.prompts import build_prompt

    train, _ = problem_sets(config)
    return {p.id: build_prompt(p)[-1]["content"] for p in train}  # the prompt as the teacher sees it


def test_round_ends_follow_the_config():
    assert round_ends(1, 8) == [1, 2, 4, 8]
    assert round_ends(2, 6, [2, 3]) == [2, 5, 6]
    assert round_ends(1, 3, [1]) == [1, 2, 3]
    assert round_ends(4, 4) == [4]


def test_rounds_give_each_problem_exactly_the_samples_its_verdicts_call_for(tmp_path):
    log = tmp_path / "teacher.log"
    install(script, log)
    config = scripted_config(tmp_path)  # target 1, max 8: rounds end at 1, 2, 4, 8 samples
    run(config, until="sample")
    texts = prompts_by_id(config)
    want = {"always": 1, "never": 8, "third": 4, "sixth": 8}
    assert set(pattern(t) for t in texts.values()) == set(want)  # every pattern is among the problems
    counts = view_counts(config)
    assert {pid: counts[pid] for pid in texts} == {pid: want[pattern(t)] for pid, t in texts.items()}
    assert asked(log) == Counter({t: want[pattern(t)] for t in texts.values()})  # the teacher: exactly those
    sample = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["sample"]["counts"]
    unsolved = sorted(pid for pid, t in texts.items() if pattern(t) == "never")
    assert sorted(sample["unsolved"]) == unsolved
    assert sample["problems_unsolved"] == len(unsolved)
    assert sample["problems_done"] == PROBLEMS - len(unsolved) and sample["problems_open"] == 0
    assert sample["verified_traces"] == sum(1 if pattern(t) != "third" else 2 for t in texts.values()
                                            if pattern(t) != "never")
    assert sample["verified_per_1k_tokens"] > 0 and sample["tokens_per_verified"] > 0
    assert sample["sampling_mode"] == "adaptive"

    # the filter reuses every verdict made while sampling and agrees with them
    run(config, until="filter")
    filt = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["filter"]["counts"]
    assert filt["reused_verdicts"] == sum(counts.values())
    kept = [json.loads(line) for line in (config.run_dir / "filter" / "kept.jsonl").read_text().splitlines()]
    assert {k["problem_id"] for k in kept} == {pid for pid, t in texts.items() if pattern(t) != "never"}

    # the report's coverage section: problems with a verified trace against the teacher's tokens
    from distill.publish.coverage_section import coverage_section
    from distill.publish.report import build_report
    from distill.publish.run_folder import RunFolder

    section = next(s for s in build_report(config.run_dir).sections if s.key == "coverage")
    rows = dict((r[0], r[1]) for r in section.blocks[0].rows)
    done = PROBLEMS - len(unsolved)
    assert rows["problems covered"].startswith(f"{done} of {PROBLEMS} ")
    assert rows["teacher output tokens"] == f"{sample['completion_tokens']:,}"
    assert rows["problems done / open / unsolved"] == f"{done} / 0 / {len(unsolved)}"
    assert rows["sampling"].startswith("adaptive, target 1 verified, at most 8 per problem")
    assert any(b.text.startswith(f"{len(unsolved)} unsolved") for b in section.blocks if hasattr(b, "text"))
    fixed = scripted_config(tmp_path, name="fixed")
    fixed.teacher.sampling.mode = "fixed"
    run(fixed, until="filter")
    assert coverage_section(RunFolder(fixed.run_dir)) is None  # fixed runs: the funnel says it all


def test_a_larger_target_and_explicit_rounds(tmp_path):
    log = tmp_path / "teacher.log"
    install(script, log)
    config = scripted_config(tmp_path, target_per_problem=2, max_per_problem=6, rounds=[2, 3])  # ends 2, 5, 6
    run(config, until="sample")
    texts = prompts_by_id(config)
    # always: 2 right in round 1; third: right at 2, 3, 4 -> 2 verified after round 2 (5 samples);
    # sixth: one right (index 5) within 6 -> unsolved; never: unsolved at 6
    want = {"always": 2, "never": 6, "third": 5, "sixth": 6}
    counts = view_counts(config)
    assert {pid: counts[pid] for pid in texts} == {pid: want[pattern(t)] for pid, t in texts.items()}
    sample = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert sorted(sample["unsolved"]) == sorted(pid for pid, t in texts.items() if pattern(t) in ("never", "sixth"))


def test_a_chunk_without_verdicts_is_verified_again_and_nothing_is_resampled(tmp_path):
    log = tmp_path / "teacher.log"
    install(script, log)
    config = scripted_config(tmp_path)
    run(config, until="sample")
    store = config.run_dir / "trace_store"
    verdict_files = sorted((store / "verdicts").glob("*.jsonl"))
    chunks = sorted((store / "chunks").glob("*.jsonl"))
    assert len(verdict_files) == len(chunks)  # one verdict file per committed chunk
    for path in verdict_files:  # ... covering every line of it
        chunk = store / "chunks" / (path.name.split(".", 1)[0] + ".jsonl")
        assert len(path.read_text().splitlines()) == len(chunk.read_text().splitlines())
    lost = verdict_files[len(verdict_files) // 2]
    lost_rows = lost.read_bytes()
    lost.unlink()  # as if killed between a chunk's commit and its verdicts
    calls_before = sum(asked(log).values())
    run(config, until="sample", force=["sample"])
    assert sum(asked(log).values()) == calls_before  # the teacher was not asked again
    assert lost.read_bytes() == lost_rows  # the same verdicts, made again
    assert len(list((store / "chunks").glob("*.jsonl"))) == len(chunks)


def test_the_scout_screen_skips_what_it_always_solves(tmp_path):
    log = tmp_path / "teacher.log"
    install(script, log)
    config = scripted_config(tmp_path, scout={"model": "scripted/scout", "samples": 2, "on_solved": "skip"})
    run(config, until="sample")
    texts = prompts_by_id(config)
    counts = view_counts(config)
    # the scout (same script) always solves "always" problems: the teacher never sees them
    assert all(counts[pid] == 0 for pid, t in texts.items() if pattern(t) == "always")
    assert asked(log, "scout") == Counter({t: 2 for t in texts.values()})
    teacher = asked(log)
    assert all(t not in teacher for t in texts.values() if pattern(t) == "always")
    sample = json.loads((config.run_dir / "manifest.json").read_text())["stages"]["sample"]["counts"]
    assert sample["scout_solved_every_time"] == sum(pattern(t) == "always" for t in texts.values())

    config = scripted_config(tmp_path, name="one", scout={"model": "scripted/scout", "samples": 2,
                                                          "on_solved": "one_teacher_sample"})
    run(config, until="sample")
    counts = view_counts(config)
    assert all(counts[pid] == 1 for pid, t in texts.items() if pattern(t) == "always")


@pytest.mark.parametrize("sampling, message", [
    ({"mode": "adaptive", "target_per_problem": 9}, "target_per_problem (9) must not exceed max_per_problem (8)"),
    ({"mode": "adaptive", "rounds": [1, 0]}, "rounds must be a non-empty list of positive sample counts"),
    ({"mode": "sometimes"}, "teacher.sampling.mode"),
    ({"scout": {"samples": 2}}, "teacher.sampling.scout.model"),
])
def test_bad_sampling_settings_fail_with_one_line(sampling, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x", "teacher": {"sampling": sampling}})
    assert message in str(err.value) and "\n" not in str(err.value).strip()


def test_a_missing_local_scout_folder_is_named_before_anything_runs(tmp_path):
    from tests.conftest import run_cli, tiny_config_dict, write_yaml
    from tests.test_cli import assert_one_line_error

    raw = tiny_config_dict(tmp_path, tmp_path / "toy-cache")
    raw["teacher"]["sampling"] = {"mode": "adaptive", "scout": {"model": "./no-such-scout"}}
    proc = run_cli("run", str(write_yaml(tmp_path / "run.yaml", raw)), cwd=tmp_path)
    assert_one_line_error(proc, "teacher.sampling.scout.model: no such folder './no-such-scout'")
    assert not any((tmp_path / "toy-cache").glob("*")), "nothing was trained before the check"
    served = {**raw["teacher"]["sampling"], "scout": {"model": "./no-such-scout", "backend": "openai"}}
    raw["teacher"]["sampling"] = served  # a served scout's model is the server's name, not a path
    from distill.input_checks import check_inputs

    assert not [m for m in check_inputs(config_from_dict(raw)) if "scout" in m]


def test_fixed_mode_keeps_the_fingerprints_of_runs_made_before_the_setting(tmp_path):
    from distill.teachers.stage import SAMPLE

    base = {"name": "x", "output_dir": str(tmp_path)}
    before = SAMPLE.fingerprint_input(config_from_dict(base))
    assert "sampling" not in before["teacher"]
    same = SAMPLE.fingerprint_input(config_from_dict({**base, "teacher": {"sampling": {"verify_workers": 3}}}))
    assert same == before
    adaptive = SAMPLE.fingerprint_input(config_from_dict({**base, "teacher": {"sampling": {"mode": "adaptive"}}}))
    assert adaptive["teacher"]["sampling"]["mode"] == "adaptive" and adaptive != before


def test_slurm_array_tasks_each_run_their_problems_rounds_and_the_run_after_them_samples_nothing(tmp_path):
    from distill.pipeline import sample_partition

    log = tmp_path / "teacher.log"
    install(script, log)
    config = scripted_config(tmp_path)
    for k in range(2):
        sample_partition(config, k, 2)
    texts = prompts_by_id(config)
    want = {"always": 1, "never": 8, "third": 4, "sixth": 8}
    assert asked(log) == Counter({t: want[pattern(t)] for t in texts.values()})  # each problem's rounds once
    calls = sum(asked(log).values())
    run(config, until="sample")
    assert sum(asked(log).values()) == calls  # the run after the tasks replays the rounds from the store
    counts = view_counts(config)
    assert {pid: counts[pid] for pid in texts} == {pid: want[pattern(t)] for pid, t in texts.items()}
