from pathlib import Path

import pytest

from distill.config import RunConfig, apply_override, config_from_dict, load_config
from distill.errors import ConfigError, UserError

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    assert isinstance(load_config(path), RunConfig)


def test_typo_names_full_path_and_nearest_key():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x", "teacher": {"temprature": 0.5}})
    assert "teacher.temprature: unknown key (did you mean 'temperature'?)" in str(err.value)


def test_nested_typo_and_unknown_section():
    with pytest.raises(ConfigError, match=r"teacher\.toy\.model\.hiden_size: unknown key \(did you mean 'hidden_size'"):
        config_from_dict({"name": "x", "teacher": {"toy": {"model": {"hiden_size": 8}}}})
    with pytest.raises(ConfigError, match=r"trainer: unknown key"):
        config_from_dict({"name": "x", "trainer": {}})


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"teacher": {"samples_per_problem": "four"}}, "teacher.samples_per_problem: Input should be a valid integer"),
        ({"teacher": {"temperature": -1}}, "teacher.temperature: Input should be greater than or equal to 0"),
        ({"teacher": {"top_p": 1.5}}, "teacher.top_p"),
        ({"problems": {"min_digits": 5, "max_digits": 2}}, "problems: min_digits must not exceed max_digits"),
        ({"eval": {"models": ["teacher", "bogus"]}}, "eval.models.1"),
        ({"problems": {"source": "jsonl"}}, "needs train_path and heldout_path"),
        ({"student": {"method": "dpo"}}, "student.method"),
        ({"hub": {"repo_id": "no-slash"}}, "hub.repo_id"),
    ],
)
def test_bad_values_name_their_path(raw, fragment):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x", **raw})
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_name_is_reported():
    with pytest.raises(ConfigError, match="name: required key is missing"):
        config_from_dict({})


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    cfg = load_config(path, ["teacher.temperature=0.7", "eval.models=[teacher, student]",
                             "student.learning_rate=3e-3", "hub.repo_id=me/model"])
    assert cfg.teacher.temperature == 0.7
    assert cfg.eval.models == ["teacher", "student"]
    assert cfg.student.learning_rate == pytest.approx(3e-3)
    assert cfg.hub.repo_id == "me/model"


def test_override_typo_is_caught(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match="teacher.temprature: unknown key"):
        load_config(path, ["teacher.temprature=0.7"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["teacher.temperature"])


def test_override_into_a_scalar_is_an_error():
    raw = {"name": "x", "teacher": {"model": "toy"}}
    with pytest.raises(ConfigError, match="model is not a section"):
        apply_override(raw, "teacher.model.path=3")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


def test_readme_gpu_config_example_validates():
    import re

    import yaml

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"## A real GPU run.*?```yaml\n(.*?)```", readme, re.S).group(1)
    assert config_from_dict(yaml.safe_load(block)).teacher.backend == "vllm"
