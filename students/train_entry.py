"""Training as a standalone process, so ``accelerate launch`` can run it on many GPUs (or CPU processes).

``distill run`` trains in its own process, on one device. For several GPUs (DDP, ZeRO-3,
FSDP2 with the configs in configs/accelerate/), launch the train step through accelerate,
then let ``distill run`` finish the pipeline:

    distill run CONFIG --until filter
    accelerate launch --config_file configs/accelerate/zero3.yaml -m students.train_entry --config CONFIG
    distill run CONFIG        # train resumes from the final checkpoint at once, then export, eval, ...

Every process runs the same code; the trainer shards the batches, and only the main
process writes the model and ``losses.json``. The low-level form trains a given base on a
JSONL file of conversational prompt/completion examples (what the tests use):

    python -m students.train_entry --examples ex.jsonl --base MODEL_DIR --output OUT \\
        --settings '{"max_steps": 10, "batch_size": 4}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("students.train_entry")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m students.train_entry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a run config; trains its student on the filter's kept traces")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--examples", help="JSONL of {prompt, completion} conversational examples")
    parser.add_argument("--base", help="base model folder (with its tokenizer)")
    parser.add_argument("--output", help="output folder (checkpoints/, model/, losses.json)")
    parser.add_argument("--settings", default="{}", help="JSON object of TrainSettings fields")
    args = parser.parse_args(argv)
    if not args.config and not (args.examples and args.base and args.output):
        parser.error("give --config CONFIG, or --examples, --base and --output")
    return args


def settings_from_json(text: str) -> Any:
    from students.trainer import TrainSettings

    raw = json.loads(text)
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SystemExit(f"--settings: unknown field(s) {', '.join(unknown)}")
    return TrainSettings(**raw)


def from_config(config_path: str, overrides: list[str]) -> tuple[list[dict], str, Path, Any]:
    """(examples, base, output folder, settings) of a run config whose filter stage has run."""
    from distill.config import load_config
    from distill.errors import UserError
    from distill.pipeline import train_settings
    from distill.records import Trace, read_records
    from students.trainer import to_training_example

    config = load_config(config_path, overrides)
    kept_path = config.run_dir / "filter" / "kept.jsonl"
    if not kept_path.is_file():
        raise UserError(f"{kept_path} not found: run `distill run {config_path} --until filter` first")
    kept = read_records([kept_path], Trace)
    examples = [to_training_example(t.prompt, t.reasoning, t.answer_text) for t in kept]
    base = config.student.model
    if base == "toy":
        base = str(config.run_dir / "train" / "base")
        if not (Path(base) / "config.json").is_file():
            raise UserError(f"{base} not found: the toy student's base is made by `distill run {config_path} "
                            "--until train` (or use a real student.model)")
    return examples, base, config.run_dir / "train", train_settings(config.student)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    from transformers import AutoTokenizer

    from distill.errors import UserError
    from students.precision import PrecisionError
    from students.preflight import run_preflight
    from students.trainer import TrainingOutOfMemoryError, train_sft

    try:
        if args.config:
            examples, base, output, settings = from_config(args.config, args.overrides)
        else:
            examples = [json.loads(line) for line in Path(args.examples).read_text().splitlines() if line.strip()]
            base, output, settings = args.base, Path(args.output), settings_from_json(args.settings)
        tokenizer = AutoTokenizer.from_pretrained(base)
        report = run_preflight(tokenizer, min(examples, key=lambda e: len(e["completion"][-1]["content"])), settings)
        if not report.ok:
            raise UserError(f"chat-template pre-flight failed: {report.reason}")
        result = train_sft(base, tokenizer, examples, output, settings)
    except (UserError, PrecisionError, TrainingOutOfMemoryError) as exc:
        log.error("%s", exc)
        return 2
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        (output / "losses.json").write_text(json.dumps({"losses": result.losses, "steps": result.steps,
                                                        "resumed_from": result.resumed_from}))
    log.info("done: %d steps, model in %s", result.steps, result.model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
