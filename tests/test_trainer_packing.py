"""Packing and padding-free batches keep attention inside each sequence: a sequence's logits and loss
are the same whether it is alone or concatenated with others (tiny model, fp32, the real TRL collator)."""

from __future__ import annotations

import pytest
import torch

from distill.students.models import TinyModelSpec, build_tiny_model
from distill.students.trainer import TrainSettings, build_trainer
from tests.conftest import toy_sft_data


@pytest.fixture(scope="module")
def setup():
    tokenizer, examples = toy_sft_data(24, 5, 1, 3, "p")
    model = build_tiny_model(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                                           intermediate_size=128), tokenizer, seed=3).eval()
    return tokenizer, examples, model


def _padding_free_batch(rows, pad_id):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)(rows)


def test_a_sequence_packed_with_others_has_the_logits_it_has_alone(setup):
    tokenizer, examples, model = setup
    seqs = [tokenizer.apply_chat_template(e["prompt"] + e["completion"], tokenize=True, return_dict=True)["input_ids"]
            for e in examples[:3]]
    assert len({len(s) for s in seqs}) > 1
    batch = _padding_free_batch([{"input_ids": s} for s in seqs], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (1, sum(map(len, seqs))) and "attention_mask" not in batch
    with torch.no_grad():
        # use_cache=False as in training (TRL's compute_loss sets it): transformers looks for sequence
        # boundaries in position_ids only when no KV cache is being built
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([s])).logits[0] for s in seqs]
        # control: the same concatenation without the sequence boundaries attends across sequences
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    start = 0
    for s, ref in zip(seqs, alone):
        assert torch.allclose(packed[start:start + len(s)], ref, atol=1e-5), "attention crossed a boundary"
        start += len(s)
    second = slice(len(seqs[0]), len(seqs[0]) + len(seqs[1]))
    assert not torch.allclose(leaky[second], alone[1], atol=1e-3)  # the check above can fail


def test_packed_trainer_batch_loss_equals_the_token_weighted_loss_of_each_sequence_alone(tmp_path, setup):
    tokenizer, examples, model = setup
    settings = TrainSettings(packing=True, max_length=512, batch_size=1, max_steps=1, seed=0)
    trainer = build_trainer(model, tokenizer, examples[:6], tmp_path, settings)
    assert trainer.data_collator.padding_free  # BFD packing: boundaries travel as position_ids
    row = trainer.train_dataset[0]
    assert len(row["seq_lengths"]) > 1  # several traces share the row
    batch = trainer.data_collator([row])
    labels = batch["labels"][0]
    with torch.no_grad():
        packed_loss = trainer.compute_loss(trainer.model, dict(batch))  # the training step's own loss
        total, count, start = 0.0, 0, 0
        for n in row["seq_lengths"]:
            ids = batch["input_ids"][:, start:start + n]
            lab = labels[start:start + n]
            alone = model(input_ids=ids).logits[0]
            total += float(torch.nn.functional.cross_entropy(alone[:-1], lab[1:], ignore_index=-100, reduction="sum"))
            count += int((lab[1:] != -100).sum())
            start += n
    assert int((labels[1:] != -100).sum()) == count > 0
    assert float(packed_loss) == pytest.approx(total / count, rel=1e-5)


def test_warmup_is_a_share_of_the_steps_actually_run_after_packing(tmp_path, setup):
    """Packing puts several traces in a row, so an epoch has fewer steps than examples / batch size; the
    warmup must be a share of the steps the trainer really runs (so must it be for several processes)."""
    import copy
    import math

    tokenizer, examples, model = setup
    settings = TrainSettings(packing=True, max_length=512, batch_size=2, epochs=1, warmup_ratio=0.5,
                             lr_scheduler="constant_with_warmup", learning_rate=1e-3, logging_steps=1,
                             save_steps=1000, seed=0)
    trainer = build_trainer(copy.deepcopy(model).train(), tokenizer, examples, tmp_path, settings)
    trainer.train()
    steps = trainer.state.max_steps
    assert steps == math.ceil(len(trainer.train_dataset) / 2) < len(examples) / 2  # packed: fewer steps
    lrs = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]
    assert len(lrs) == steps
    # the lr logged at step k is the one step k used: below the peak for exactly the warmup steps
    warmup = math.ceil(0.5 * steps)
    assert lrs[0] == 0 and [lr < 1e-3 for lr in lrs] == [k <= warmup for k in range(1, steps + 1)]
    assert lrs[-1] == pytest.approx(1e-3)

