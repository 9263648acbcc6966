"""The ``accelerate launch`` of the train stage, and its CPU equivalent (``tests/test_sharded_cpu.py`` launches
the shipped ZeRO-3 and FSDP2 configs through it; ``distill rehearse`` trains in one process).

Users launch sharded training with a shipped accelerate config::

    accelerate launch --config_file configs/accelerate/zero3.yaml -m distill.students.train_entry --config CONFIG

On a machine without GPUs the same config runs as a few CPU processes once the settings that only exist
on GPUs are replaced by their CPU equivalents; everything else (the distributed type, ZeRO stage, FSDP
version, sharding, state-dict type, 16-bit consolidated save) stays as shipped, so a rehearsal exercises
the code path the cluster runs. :func:`cpu_launch` returns the adapted config, the environment the
processes need and the list of substitutions, each with its reason.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the entry point every process of a launch runs (distill.students.train_entry)
TRAIN_ENTRY = "distill.students.train_entry"


@dataclass
class CpuLaunch:
    """A shipped accelerate config adapted to CPU processes: what to write, export, and report."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    substitutions: list[str] = field(default_factory=list)  # "key: shipped -> cpu (why)"

    def write(self, path: Path) -> Path:
        import yaml

        path.write_text(yaml.safe_dump(self.config, sort_keys=True))
        return path


def cpu_launch(shipped: dict[str, Any], num_processes: int = 2, port: int | None = None) -> CpuLaunch:
    """``shipped`` (an accelerate config as loaded from YAML) adapted to ``num_processes`` CPU processes on
    this machine, communicating over gloo.

    What changes, and why: bf16/fp16 mixed precision becomes fp32 (CPUs without AMX have no fast bf16 and
    some die with SIGILL); the machine and process counts become one machine of ``num_processes``; the GPU
    ids and node addresses go; DeepSpeed runs on its CPU accelerator (``DS_ACCELERATOR=cpu``, which picks
    gloo); each process computes on one thread so the processes do not oversubscribe the cores.
    """
    config = dict(shipped)
    launch = CpuLaunch(config=config, env={"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})

    def substitute(key: str, value: Any, why: str) -> None:
        old = config.get(key)
        if old == value:
            return
        if value is None:
            config.pop(key, None)
            launch.substitutions.append(f"{key}: {old} -> (removed) ({why})")
        else:
            config[key] = value
            launch.substitutions.append(f"{key}: {old} -> {value} ({why})")

    substitute("mixed_precision", "no", "fp32 compute on CPU: bf16 is slow or unsupported (SIGILL) there")
    substitute("downcast_bf16", "no", "no bf16 on CPU")
    substitute("num_machines", 1, "one machine")
    substitute("machine_rank", 0, "one machine")
    substitute("num_processes", num_processes, f"{num_processes} CPU processes")
    substitute("gpu_ids", None, "no GPUs")
    substitute("main_process_ip", None, "one machine: the processes meet on localhost")
    substitute("main_process_port", port or free_port(), "a free local port")
    substitute("use_cpu", False, "accelerate's use_cpu starts one process; the distributed type stays")
    if config.get("distributed_type") == "DEEPSPEED":
        launch.env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator: gloo, no CUDA ops
        launch.substitutions.append("env DS_ACCELERATOR: cuda -> cpu (DeepSpeed's CPU accelerator, over gloo)")
        ds = dict(config.get("deepspeed_config") or {})
        ds["deepspeed_multinode_launcher"] = "standard"
        config["deepspeed_config"] = ds
    return launch


def launch_command(config_file: Path, entry_args: list[str], python: str = sys.executable) -> list[str]:
    """``accelerate launch --config_file CONFIG -m distill.students.train_entry ARGS`` with this interpreter."""
    return [python, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "-m", TRAIN_ENTRY,
            *entry_args]


def load_accelerate_config(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def free_port() -> int:
    """A TCP port free on localhost now, so concurrent launches on one machine do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def allow_fsdp_on_cpu() -> bool:
    """Let accelerate run an FSDP launch on CPU processes (gloo); True when it applied.

    accelerate turns ``distributed_type: FSDP`` on only for GPU-family process groups
    (``AcceleratorState``: MULTI_GPU, MULTI_XPU, ...), so on a machine without an accelerator an FSDP
    config silently trains as plain data parallelism (every process a full replica) and the sharded
    code paths (``fully_shard``, the sharded checkpoints, the gathered final save) never run. torch's
    FSDP2 ``fully_shard`` itself runs over gloo, so for an FSDP launch on a machine with no CUDA this
    wraps ``AcceleratorState.__init__`` to finish what accelerate does for GPUs: the FSDP distributed
    type with the plugin it built from the launch's config. A no-op with CUDA or outside an FSDP launch.
    """
    import os

    import torch

    if torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    from accelerate import state as accelerate_state
    from accelerate.utils import DistributedType

    cls = accelerate_state.AcceleratorState
    if getattr(cls.__init__, "_distill_cpu_fsdp", False):
        return True
    original = cls.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if self.distributed_type == DistributedType.MULTI_CPU and plugin is not None:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin
            accelerate_state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    init._distill_cpu_fsdp = True
    cls.__init__ = init
    return True
