"""Training as a standalone process, so ``accelerate launch`` can run it on many GPUs (or CPU processes).

``distill run`` trains in its own process, on one device. For several GPUs (DDP, ZeRO-3,
FSDP2 with the configs in configs/accelerate/), launch the train step through accelerate,
then let ``distill run`` finish the pipeline:

    distill run CONFIG --until filter
    accelerate launch --config_file configs/accelerate/zero3.yaml -m distill.students.train_entry --config CONFIG
    distill run CONFIG        # the train stage is done: export, eval, push

Every process runs the pipeline's train stage; the trainer shards the batches, only the
main process writes the model and the run's manifest, and a relaunch after a crash resumes
from the newest complete checkpoint. The low-level form trains a given base on a
JSONL file of conversational prompt/completion examples (what the tests use):

    python -m distill.students.train_entry --examples ex.jsonl --base MODEL_DIR --output OUT \\
        --settings '{"max_steps": 10, "batch_size": 4}'

On a machine without GPUs the shipped configs run as CPU processes once adapted by
``distill.students.train_launch.cpu_launch`` (fp32, gloo, DeepSpeed's CPU accelerator); an FSDP
launch there needs :func:`~distill.students.train_launch.allow_fsdp_on_cpu`, which ``main`` applies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("distill.students.train_entry")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m distill.students.train_entry", description=__doc__,
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
    """The TrainSettings of ``--settings``; bad JSON or an unknown field is a UserError (exit 2)."""
    from distill.errors import UserError
    from distill.students.trainer import TrainSettings

    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--settings: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise UserError("--settings: expected a JSON object of TrainSettings fields")
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"--settings: unknown field(s) {', '.join(unknown)}")
    return TrainSettings(**raw)


def run_train_stage(config_path: str, overrides: list[str]) -> str:
    """Run the pipeline's train stage of a config in this process (one of several under accelerate).

    The one stage runner does the bookkeeping: the main process registers the stage in the run's
    manifest (keeping the checkpoints of an earlier attempt with the same fingerprint, so a relaunch
    resumes) and builds a toy base if needed; every process then trains; the main process marks the
    stage done, so the next ``distill run`` goes straight on to export.

    The main process holds the run folder's exclusive lock from before the stage begins until it ends,
    for the whole launch: a ``distill run`` on the folder meanwhile is refused.  The other ranks take
    none (they would be refused by their own main process); if the main one is refused, it exits 2
    and the launcher stops the others.
    """
    import contextlib

    from accelerate import PartialState

    from distill.config import load_config
    from distill.run_lock import run_lock
    from distill.runner import run_in_launch
    from distill.runner import Launch

    import torch

    config = load_config(config_path, overrides)
    # cpu=True on a machine without CUDA: otherwise accelerate sees no GPUs and no process group
    # (the trainer itself sets one up later, too late for the barrier after the main process begins)
    state = PartialState(cpu=not torch.cuda.is_available())
    launch = Launch(main=state.is_main_process, barrier=state.wait_for_everyone)
    with run_lock(config.run_dir, exclusive=True) if state.is_main_process else contextlib.nullcontext():
        info = run_in_launch(config, "train", launch)
    if info.get("already_done"):
        log.info("stage train skipped (fingerprint unchanged): %s is done", config.run_dir / "train")
    return info["summary"]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    from transformers import AutoTokenizer

    from distill.students.train_launch import allow_fsdp_on_cpu

    if allow_fsdp_on_cpu():  # a rehearsal or test of an FSDP config on a machine without GPUs
        log.info("FSDP on CPU processes (gloo): accelerate's FSDP path enabled for a machine without CUDA")

    from distill.errors import UserError
    from distill.students.precision import PrecisionError
    from distill.students.preflight import check_or_raise
    from distill.students.trainer import TrainingOutOfMemoryError, train_sft

    try:
        if args.config:
            log.info("train stage done: %s", run_train_stage(args.config, args.overrides))
            return 0
        examples = [json.loads(line) for line in Path(args.examples).read_text().splitlines() if line.strip()]
        base, output, settings = args.base, Path(args.output), settings_from_json(args.settings)
        tokenizer = AutoTokenizer.from_pretrained(base)
        check_or_raise(tokenizer, examples, settings)  # a PreflightError is a UserError: exit 2
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


def end_process_group() -> None:
    """Tear down the launch's process group: DeepSpeed's CPU accelerator (gloo) aborts the processes at
    exit when it is still up, turning a finished run into a failed launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        code = main()
    finally:
        end_process_group()
    sys.exit(code)
