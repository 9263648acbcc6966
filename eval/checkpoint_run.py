"""One saved checkpoint evaluated in a process of its own (``python -m distill.eval.checkpoint_run``), as
:mod:`distill.eval.checkpoints` starts it: the eval stage's own code (:func:`distill.eval.stage.evaluate_model`:
the config's benchmarks, protocol and samplers), ``result.json`` or ``failed.json`` in ``--out``."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.eval.checkpoints import FAILED, RESULT, protocol_key
from distill.store import write_json_atomic

log = logging.getLogger(__name__)


def evaluate_checkpoint(config_path: Path, model: Path, step: int, out: Path) -> dict[str, Any]:
    """One checkpoint through the eval stage's own code; ``result.json`` (or ``failed.json``) in ``out``."""
    from distill.config import load_config
    from distill.eval.stage import eval_benchmarks, evaluate_model
    from distill.stage import Context
    from distill.store import RunStore

    config = load_config(config_path)
    ctx = Context(config, RunStore(config.run_dir))
    try:
        benches = eval_benchmarks(ctx)
        grid = evaluate_model(ctx, f"step-{step}", str(model), benches, out / "by_benchmark")
    except BaseException as exc:
        write_json_atomic(out / FAILED, {"step": step, "error": f"{type(exc).__name__}: {exc}"})
        raise
    result = {"step": step, "primary": benches[0][1].name, "benchmarks": grid, "protocol": protocol_key(config)}
    write_json_atomic(out / RESULT, result)
    shutil.rmtree(model, ignore_errors=True)  # the weights were hard links or a copy; the checkpoint is the source
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.eval.checkpoint_run",
                                     description="evaluate one saved checkpoint with a run config's eval section")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--step", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate_checkpoint(args.config, args.model, args.step, args.out)
    except UserError as exc:
        log.error("%s", exc)
        return 2
    log.info("step %d: %s", args.step, {b: s["pass_at_1"] for b, s in result["benchmarks"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
