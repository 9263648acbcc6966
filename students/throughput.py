"""Measure training throughput of the three batch layouts the trainer offers, on the same data.

R1 traces are long-tailed: most are a few thousand tokens, a few run to 32k. Padding
every sequence of a batch to the longest one (naive) then spends most of the compute
on pad tokens. Two layouts avoid that, both through TRL's own code paths:

- ``padding_free``: each batch's sequences are concatenated into one row without pads,
  ``position_ids`` restart at every sequence and the attention mask is built from them
  (transformers' packed-sequence masks, or FlashAttention's varlen kernels), so no token
  attends across sequences;
- ``packing``: TRL's best-fit-decreasing packing puts whole sequences into rows of
  ``max_length`` ahead of time, then trains them padding-free in the same way.

``measure`` trains with ``SFTTrainer`` on pre-tokenized random token ids (no tokenizer
or download needed) and reports real (non-pad) tokens per second and the share of the
batch slots that held real tokens, excluding the first steps (warm-up, compilation).
The bench scripts (bench/train.py, bench/gpu_train.py) print it; nothing here prints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

MODES = ("naive", "padding_free", "packing")


def r1_like_lengths(n: int, max_length: int, median: float | None = None, sigma: float = 0.8,
                    min_length: int = 32, seed: int = 0) -> list[int]:
    """``n`` sequence lengths drawn from a lognormal shaped like R1 trace lengths.

    R1's competition-math traces have a median of several thousand tokens and a tail to
    the 32k limit (lognormal with sigma ~0.8 fits that shape); ``median`` defaults to
    max_length / 6, which puts ~1-2% of the sample at the cap, as with 32k traces.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    median = median or max_length / 6
    raw = rng.lognormal(mean=math.log(median), sigma=sigma, size=n)
    return [int(x) for x in np.clip(raw, min_length, max_length)]


def token_rows(lengths: list[int], vocab_size: int, pad_id: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Pre-tokenized rows of random ids (never the pad id) with those lengths."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for n in lengths:
        ids = rng.integers(1, vocab_size, size=n)
        ids[ids == pad_id] = 1 if pad_id != 1 else 2
        rows.append({"input_ids": ids.tolist()})
    return rows


@dataclass
class ModeResult:
    mode: str
    batch: str  # what one step holds
    steps: int
    measured_steps: int
    seconds: float
    real_tokens: int
    slot_tokens: int
    tokens_per_second: float
    real_share: float
    peak_memory_gb: float | None

    def as_row(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _CountingCollator:
    """Wraps the trainer's collator and records (real, slot) tokens of every batch it builds."""

    def __init__(self, inner: Any, pad_id: int):
        self.inner = inner
        self.pad_id = pad_id
        self.batches: list[tuple[int, int]] = []

    def __call__(self, rows):
        batch = self.inner(rows)
        ids = batch["input_ids"]
        if "attention_mask" in batch:
            real = int(batch["attention_mask"].sum())
        else:
            real = int((ids != self.pad_id).sum())
        self.batches.append((real, ids.numel()))
        return batch

    def __getattr__(self, name):
        return getattr(self.inner, name)


def measure(mode: str, model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], max_length: int,
            batch_size: int, output_dir: str, warmup_steps: int = 2, gradient_checkpointing: bool = False,
            bf16: bool = False, learning_rate: float = 1e-4) -> ModeResult:
    """Train one epoch over ``rows`` in ``mode`` and time every step after ``warmup_steps``.

    ``batch_size`` is sequences per step for naive and padding-free; packing gets the
    number of ``max_length`` rows holding about as many real tokens.
    """
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    mean_len = sum(len(r["input_ids"]) for r in rows) / len(rows)
    per_step = batch_size if mode != "packing" else max(1, round(batch_size * mean_len / max_length))
    times: list[float] = []

    class _Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_train_begin(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    args = SFTConfig(
        output_dir=output_dir, num_train_epochs=1, per_device_train_batch_size=per_step, learning_rate=learning_rate,
        max_length=None if mode == "padding_free" else max_length, packing=mode == "packing",
        packing_strategy="bfd", padding_free=mode == "padding_free", gradient_checkpointing=gradient_checkpointing,
        bf16=bf16, fp16=False, save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=0, data_seed=0,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[_Clock()])
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    counter = _CountingCollator(trainer.data_collator, tokenizer.pad_token_id)
    trainer.data_collator = counter
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steps = len(times) - 1
    if steps <= warmup_steps:
        raise ValueError(f"{mode}: only {steps} steps; give more rows or a smaller batch to measure past warm-up")
    measured = counter.batches[warmup_steps:steps]
    seconds = times[-1] - times[warmup_steps]
    real = sum(r for r, _ in measured)
    slots = sum(s for _, s in measured)
    peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    what = f"{per_step} seq" if mode != "packing" else f"{per_step} x {max_length}-token rows"
    return ModeResult(mode=mode, batch=what, steps=steps, measured_steps=len(measured), seconds=seconds,
                      real_tokens=real, slot_tokens=slots, tokens_per_second=real / seconds,
                      real_share=real / slots, peak_memory_gb=peak)
