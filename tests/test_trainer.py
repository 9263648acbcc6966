"""The student trainer: tiny Qwen2 and Llama students learn, and the loss covers exactly the assistant turn."""

from __future__ import annotations

import pytest
import torch

from distill.students.models import TinyModelSpec, build_tiny_model, count_parameters
from distill.students.toy_tokenizer import build_toy_tokenizer
from distill.students.trainer import TrainSettings, build_trainer, ensure_distinct_pad, latest_complete_checkpoint, train_sft
from tests.conftest import toy_sft_data


@pytest.fixture(scope="module")
def data():
    tokenizer, examples = toy_sft_data(64, 3, 1, 2, "t")
    return tokenizer, examples


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_student_learns(tmp_path, data, arch):
    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(architecture=arch, hidden_size=64, num_layers=1, num_heads=2,
                                           num_kv_heads=1, intermediate_size=128), tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_sft(model, tokenizer, examples, tmp_path, TrainSettings(
        max_steps=30, learning_rate=3e-3, batch_size=8, max_length=256, logging_steps=5, save_steps=100))
    assert result.steps == 30
    first, last = result.losses[0][1], result.losses[-1][1]
    assert last < 0.6 * first, result.losses
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    changed = sum(not torch.equal(before[k], v) for k, v in trained.state_dict().items() if k in before)
    assert changed >= len(before) - 1
    assert trained.config.model_type == arch


def test_loss_covers_assistant_turn_and_eos_only(tmp_path, data):
    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           intermediate_size=64), tokenizer)
    trainer = build_trainer(model, tokenizer, examples[:2], tmp_path, TrainSettings(max_steps=1, batch_size=2))
    row = trainer.train_dataset[0]
    ids = row["input_ids"]
    mask = [label != -100 for label in row["labels"]]  # TRL's labels: -100 where the loss is masked
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    masked = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert trained.startswith("<think>\n") and "</think>" in trained and "\\boxed{" in trained
    assert "<|im_end|>" in trained  # EOS is trained, so the student learns to stop
    assert "What is" in masked and "What is" not in trained  # the prompt is not
    assert masked.endswith("<|im_start|>assistant\n")  # training prefix == the inference generation prompt
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_pad_equal_to_eos_is_replaced(data):
    tokenizer, _ = data
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.pad_token = tok.eos_token
    ensure_distinct_pad(tok)
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id


def test_incomplete_checkpoint_is_ignored(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10')  # torn
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text('{"global_step": 5}')
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-5"


def test_student_quickstart_shape_is_under_half_the_teacher():
    from distill.config import load_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    tok = build_toy_tokenizer(["What is 1 + 2? <think>\n1+2+0=3 carry 0\n</think>\n\n\\boxed{3}"] * 10)
    teacher = build_tiny_model(TinyModelSpec(**cfg.teacher.toy.model.model_dump()), tok)
    student = build_tiny_model(TinyModelSpec(**cfg.student.toy.model_dump()), tok)
    assert count_parameters(student) <= 0.5 * count_parameters(teacher)


def test_non_finite_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path, data):
    from distill.students.trainer import NonFiniteLossError

    tokenizer, examples = data
    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           intermediate_size=64), tokenizer)
    calls = {"n": 0}

    def poison_after_step_4(module, inputs, output):  # from the 5th forward on, the model goes NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 4 else output

    model.model.norm.register_forward_hook(poison_after_step_4)
    with pytest.raises(NonFiniteLossError) as err:
        train_sft(model, tokenizer, examples, tmp_path, TrainSettings(
            max_steps=20, learning_rate=1e-3, batch_size=4, max_length=256, logging_steps=1, save_steps=2,
            max_nonfinite_steps=3))
    message = str(err.value)
    assert "not finite for 3 logged steps in a row" in message and "checkpoint-4" in message
    assert latest_complete_checkpoint(tmp_path / "checkpoints").name == "checkpoint-4"
    assert not (tmp_path / "model").exists()  # no final model from a diverged run
