"""Chat-template pre-flight: the loss covers reasoning, answer and EOS, and inference sees the training prefix.

Real tokenizers come from ../shared/data/tokenizers (see ../shared/data/SOURCES.md); the tests that
need one skip when it is absent. The toy tokenizer tests always run.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest

from distill.students.preflight import PreflightError, check_or_raise, run_preflight, sample_example
from distill.students.templates import (R1_DISTILL_TRAINING_TEMPLATE, apply_training_template, detect_family,
                                drops_reasoning, select_template)
from distill.students.toy_tokenizer import CHATML_TEMPLATE, build_toy_tokenizer
from distill.students.trainer import TrainSettings
from tests.conftest import SHARED_DATA

TOKENIZERS = SHARED_DATA / "tokenizers"

# ChatML that ignores add_generation_prompt: the inference prompt never opens the assistant turn.
NO_GENERATION_PROMPT = CHATML_TEMPLATE.split("{%- if add_generation_prompt %}")[0]
# ChatML whose generation prompt names another role than the trained assistant turn.
MISMATCHED_GENERATION_PROMPT = CHATML_TEMPLATE.replace("{{- '<|im_start|>assistant\\n' }}",
                                                       "{{- '<|im_start|>model\\n' }}")


def load_shared(name: str):
    """A real tokenizer from the shared data folder, or a skip if it (or what loading it needs) is absent."""
    folder = TOKENIZERS / name
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip(f"{folder} is absent")
    if name.startswith("llama") and importlib.util.find_spec("tiktoken") is None:
        pytest.skip("loading the Llama-3.1 tokenizer needs the tiktoken package")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def toy():
    ex = sample_example()
    text = ex["prompt"][0]["content"] + ex["completion"][0]["content"]
    return build_toy_tokenizer([text] * 20)


@pytest.fixture(scope="module")
def qwen():
    return load_shared("qwen2.5-instruct")


@pytest.fixture(scope="module")
def r1():
    return load_shared("deepseek-r1-distill-qwen")


@pytest.fixture(scope="module")
def llama():
    return load_shared("llama-3.1-instruct")


def with_template(tokenizer, template: str):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def failed(report) -> set[str]:
    return {c.name for c in report.failures}


def test_toy_tokenizer_passes(toy):
    report = run_preflight(toy)
    assert report.ok, report.render()
    assert report.trained_text.startswith("<think>\n") and report.trained_text.rstrip().endswith("<|im_end|>")
    assert report.masked_text.endswith("<|im_start|>assistant\n")
    assert "What is 17 + 25?" in report.masked_text and "What is" not in report.trained_text
    assert report.input_ids[:len(report.generation_prompt_ids)] == report.generation_prompt_ids


def test_render_is_plain_text_with_both_sides(toy):
    text = run_preflight(toy).render()
    assert "masked  (no loss):" in text and "trained (loss):" in text and "verdict: ok" in text
    assert "\x1b" not in text  # no terminal colour codes: readable in a log file


@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_real_templates_keep_the_think_block(request, name):
    tokenizer = request.getfixturevalue(name)
    report = run_preflight(tokenizer)
    assert report.ok, report.render()
    assert report.trained_text.startswith("<think>\n")
    assert report.pad != report.eos


def test_r1_distill_passes_with_the_training_variant(r1):
    """The shipped R1-Distill tokenizer has pad = eos and the stock template; ``auto`` fixes both."""
    assert r1.pad_token == r1.eos_token and drops_reasoning(r1.chat_template)
    report = run_preflight(r1)
    assert report.ok, report.render()
    assert "training-variant" in report.template
    assert report.masked_text.endswith("<｜Assistant｜><think>\n")  # prefilled at inference, as upstream does
    assert report.trained_text.startswith("Add the ones") and "</think>" in report.trained_text
    assert report.trained_text.endswith("<｜end▁of▁sentence｜>")
    assert r1.chat_template != R1_DISTILL_TRAINING_TEMPLATE  # the caller's tokenizer is left alone


def test_stock_r1_distill_template_fails_on_dropped_reasoning(r1):
    report = run_preflight(r1, settings=TrainSettings(chat_template="tokenizer"))
    assert "reasoning_trained" in failed(report)
    assert "drops it from the assistant turn" in report.reason
    assert "\n" not in report.reason


def test_stock_r1_template_is_caught_without_shared_data(toy):
    """TRL ships the later upstream R1-Distill template (generation prompt '<｜Assistant｜><think>\\n')."""
    from trl.chat_template_utils import deepseek_r1_distill_chat_template

    tok = with_template(toy, deepseek_r1_distill_chat_template)
    report = run_preflight(tok, settings=TrainSettings(chat_template="tokenizer"))
    assert {"reasoning_trained", "prefix_matches"} <= failed(report), report.render()


def test_pad_equal_to_eos_fails(toy, monkeypatch):
    """If the trainer ever stopped replacing a pad that equals EOS, the pre-flight says so."""
    import distill.students.trainer

    monkeypatch.setattr(distill.students.trainer, "ensure_distinct_pad", lambda tokenizer: None)
    tok = copy.deepcopy(toy)
    tok.pad_token = tok.eos_token
    report = run_preflight(tok)
    assert failed(report) == {"pad_distinct"}, report.render()
    assert "pad token is the EOS token" in report.reason


def test_template_without_generation_prompt_fails(toy):
    report = run_preflight(with_template(toy, NO_GENERATION_PROMPT), settings=TrainSettings(chat_template="tokenizer"))
    assert "opens_assistant_turn" in failed(report), report.render()
    assert "add_generation_prompt" in report.reason


def test_generation_prompt_that_differs_from_training_fails(toy):
    tok = with_template(toy, MISMATCHED_GENERATION_PROMPT)
    report = run_preflight(tok, settings=TrainSettings(chat_template="tokenizer"))
    assert "prefix_matches" in failed(report), report.render()
    assert "'model\\n'" in report.reason


def test_eos_outside_the_turn_fails(toy):
    """A template that never emits the EOS token: the student would never learn to stop."""
    tok = with_template(toy, CHATML_TEMPLATE.replace("'<|im_end|>' }}{% endgeneration %}", "'' }}{% endgeneration %}"))
    report = run_preflight(tok, settings=TrainSettings(chat_template="tokenizer"))
    assert "eos_trained" in failed(report), report.render()


def test_example_cut_away_by_max_length_is_reported(toy):
    report = run_preflight(toy, settings=TrainSettings(max_length=20))
    assert [c.name for c in report.failures] == ["kept_by_trainer"], report.render()
    assert "max_length 20" in report.reason


def test_check_or_raise_gives_one_line(toy):
    tok = with_template(toy, MISMATCHED_GENERATION_PROMPT)
    with pytest.raises(PreflightError) as err:
        check_or_raise(tok, settings=TrainSettings(chat_template="tokenizer"))
    assert "\n" not in str(err.value) and "prefix_matches" in str(err.value)


def test_family_detection(toy, qwen, r1, llama):
    assert [detect_family(t) for t in (toy, qwen, r1, llama)] == ["chatml", "chatml", "r1_distill", "llama3"]
    assert select_template(qwen).source == "tokenizer"
    assert select_template(r1).source == "training-variant"


def test_r1_training_variant_strips_history_but_keeps_the_final_turn(r1):
    tok = copy.deepcopy(r1)
    apply_training_template(tok)
    messages = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nold\n</think>\n\nA1"},
                {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "<think>\nnew\n</think>\n\nA2"}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert "old" not in text and "A1" in text  # earlier turns render as upstream renders history
    assert "<think>\nnew\n</think>\n\nA2<｜end▁of▁sentence｜>" in text


def test_base_checkpoint_eos_becomes_the_end_of_turn_token(qwen):
    """Qwen2.5 base models ship eos <|endoftext|>; the student must learn to end turns with <|im_end|>."""
    tok = copy.deepcopy(qwen)
    tok.eos_token = "<|endoftext|>"
    apply_training_template(tok)
    assert tok.eos_token == "<|im_end|>"
    assert run_preflight(qwen).ok


def test_tokenizer_without_template_gets_its_family_built_in(llama):
    tok = copy.deepcopy(llama)
    tok.chat_template = None
    selection = select_template(tok)
    assert (selection.family, selection.source) == ("llama3", "built-in")
    assert run_preflight(tok).ok


def test_check_template_cli(tmp_path, capsys):
    from distill.cli import main
    from tests.conftest import REPO

    assert main(["check-template", str(REPO / "configs" / "quickstart.yaml"),
                 "--set", f"output_dir={tmp_path}"]) == 0
    assert "verdict: ok" in capsys.readouterr().out
    assert main(["check-template", str(REPO / "configs" / "quickstart.yaml"), "--set", f"output_dir={tmp_path}",
                 "--set", "student.chat_template=r1_distill"]) == 2
    captured = capsys.readouterr()
    assert "verdict: FAILED" in captured.out
    assert "chat-template pre-flight failed" in captured.err and "eos_trained" in captured.err


def test_train_stage_runs_the_preflight_and_refuses_a_bad_template(tiny_config):
    """stage_train renders a kept trace first: it records the rendering and stops before training on a
    template that would lose the EOS (here the R1 template forced onto the toy's ChatML vocabulary)."""
    from distill.errors import UserError
    from distill.pipeline import run

    config = tiny_config(student__chat_template="r1_distill")
    with pytest.raises(UserError, match="pre-flight failed: .*eos_trained"):
        run(config, until="train")
    preflight = config.run_dir / "train" / "preflight.txt"
    assert "verdict: FAILED" in preflight.read_text()
    assert not (config.run_dir / "train" / "model").exists()

    run(config.model_copy(update={"student": config.student.model_copy(update={"chat_template": "auto"})}),
        until="train")
    assert "verdict: ok" in preflight.read_text()
    assert (config.run_dir / "train" / "model").is_dir()
