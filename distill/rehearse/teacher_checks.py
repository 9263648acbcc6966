"""The teacher server of a recipe, checked statically against the real model before anything is rented.

``distill teacher serve CONFIG --dry-run`` prints the command a GPU node runs; this module builds the
same command (:func:`dry_run_command`, the same call the CLI makes) and checks it and the recipe's
sampling side against the teacher's real ``config.json`` (``distill.students.arch_configs``):

* the model's shapes: tensor/pipeline parallel sizes against heads and layers, ``max_model_len`` against
  its positions, the generation (and the truncation retry) inside the context -- the shared
  :func:`distill.scale_checks.served_model_errors`;
* the server: GPUs per replica against Ray scale-out workers, a multi-node size without Ray, the name
  the server serves against the name the sampler asks for, a loopback endpoint on another port than the
  server's, a reasoning parser vLLM does not have, and every flag of the command against vLLM's own
  argument parser (a flag a vLLM release dropped fails here, not at 3 a.m. on the cluster).

Each problem is one line naming the config path and the fix.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

GPUS_PER_NODE = 8  # the nodes the recipes name (8xH100, 8xH200)
LOOPBACK = {"127.0.0.1", "localhost", "0.0.0.0", "::1"}


def dry_run_command(config: Any) -> list[str] | None:
    """The server command ``distill teacher serve CONFIG --dry-run`` prints (as a GPU node runs it), or None
    when the recipe samples a remote API (an ``openai`` teacher with no ``serve`` section: nothing to serve)."""
    from distill.teachers.serve import server_command

    teacher = config.teacher
    if teacher.kind != "model" or not serves_locally(config):
        return None
    return server_command(teacher, teacher.model, launcher="cli", cpu=False)


def serves_locally(config: Any) -> bool:
    """Whether the recipe runs the teacher itself: an in-process engine, or an endpoint its own
    ``distill teacher serve`` starts (the config sets ``teacher.serve``); an API endpoint is someone else's."""
    t = config.teacher
    if t.backend != "openai":
        return True
    return "serve" in t.model_fields_set


def static_problems(config: Any, real_cfg: dict[str, Any] | None) -> list[str]:
    """Every full-scale problem of the teacher's serving and sampling settings, one line each."""
    t = config.teacher
    out: list[str] = []
    if real_cfg is not None and serves_locally(config):
        from distill.scale_checks import served_model_errors

        options = t.vllm.model_dump()
        out += served_model_errors("teacher.vllm", t.model, real_cfg, options, ("teacher.max_tokens", t.max_tokens))
        if t.retry_truncated.enabled:
            out += served_model_errors("teacher.vllm", t.model, real_cfg, options,
                                       ("teacher.retry_truncated.max_tokens", t.retry_truncated.max_tokens))
    out += _placement_problems(config)
    if t.backend == "openai" and serves_locally(config):
        out += _endpoint_problems(config)
    cmd = dry_run_command(config)
    if cmd is not None and t.serve.engine == "vllm":
        out += vllm_flag_problems(cmd, t.serve.reasoning_parser)
    return list(dict.fromkeys(out))


def _placement_problems(config: Any) -> list[str]:
    """GPUs per engine against the scale-out workers and the node; multi-node sizes need Ray."""
    t = config.teacher
    per_engine = t.vllm.tensor_parallel_size * t.vllm.pipeline_parallel_size
    out = []
    if t.backend == "vllm" and t.scale_out.backend == "ray" and t.scale_out.gpus_per_worker != per_engine:
        out.append(f"teacher.scale_out.gpus_per_worker: {t.scale_out.gpus_per_worker:g} GPUs per Ray worker, but "
                   f"each engine needs tensor_parallel_size x pipeline_parallel_size = {per_engine}; set it to "
                   f"{per_engine}")
    if serves_locally(config) and per_engine > GPUS_PER_NODE and t.backend == "openai" \
            and t.serve.engine == "vllm" and t.serve.distributed_executor_backend != "ray":
        out.append(f"teacher.serve.distributed_executor_backend: one engine spans {per_engine} GPUs (more than a "
                   f"{GPUS_PER_NODE}-GPU node) and only Ray reaches the other nodes; set it to ray")
    if t.backend == "vllm" and per_engine > GPUS_PER_NODE:
        out.append(f"teacher.vllm: an in-process engine of {per_engine} GPUs spans nodes; serve it "
                   "(`distill teacher serve`, teacher.serve.distributed_executor_backend: ray) and sample with "
                   "teacher.backend: openai")
    return out


def _endpoint_problems(config: Any) -> list[str]:
    """The sampler must ask the server it samples for the name that server serves, on its port."""
    from distill.teachers.serve import served_name

    t = config.teacher
    out = []
    asked = t.openai.served_model or t.model
    served = served_name(t)
    if asked != served:
        out.append(f"teacher.openai.served_model: the sampler asks for {asked!r} but `distill teacher serve` "
                   f"serves {served!r} (teacher.serve.served_model_name); make them equal")
    for i, endpoint in enumerate(t.openai.endpoints):
        url = urlparse(endpoint)
        if url.hostname in LOOPBACK and url.port is not None and url.port != t.serve.port:
            out.append(f"teacher.openai.endpoints[{i}]: {endpoint} is this machine on port {url.port}, but the "
                       f"server listens on {t.serve.port} (teacher.serve.port); use the same port")
    return out


def vllm_flag_problems(cmd: list[str], reasoning_parser: str | None) -> list[str]:
    """Flags of the server command that this vLLM's own argument parser refuses, and an unknown reasoning
    parser; nothing when vLLM is not installed here (the cluster's vLLM then decides)."""
    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.reasoning import ReasoningParserManager
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # no vLLM here, or another release's layout: the real server checks them
        log.info("vLLM's argument parser is not importable here; the server's flags are not checked")
        return []
    out = []
    args = cmd[3:] if cmd[:2] == ["vllm", "serve"] else cmd[cmd.index("--model") + 2:]
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve", exit_on_error=False))
    try:
        _known, unknown = parser.parse_known_args(["--model", "m", *args])
    except Exception as exc:  # argparse.ArgumentError: a bad value
        unknown, out = [], [f"teacher.serve: vLLM refuses the server command: {exc}"]
    flags = [a for a in unknown if a.startswith("--")]
    if flags:
        out.append(f"teacher.serve.extra_args: vLLM does not know {', '.join(flags)}; remove or correct them")
    if reasoning_parser:
        try:
            ReasoningParserManager.get_reasoning_parser(reasoning_parser)
        except KeyError:
            out.append(f"teacher.serve.reasoning_parser: vLLM has no parser {reasoning_parser!r}; use deepseek_r1")
    return out
