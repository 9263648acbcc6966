"""Run model-written code against tests inside a bubblewrap sandbox, and say how it went.

Why a real sandbox: the filter runs whatever a teacher wrote, thousands of times, on
the machine that holds the run's data and tokens.  Each test case runs in a fresh
``bwrap`` process with no network (every namespace unshared), a read-only view of
``/usr`` (and the interpreter's prefix) only, a private tmpfs as its working folder,
an empty environment, an unprivileged uid, and rlimits on CPU, address space,
processes, file size and open files.  The parent reads at most
``max_output_bytes`` of output and kills the process group at the wall-clock limit.

When this process is root, bwrap itself is started as ``nobody`` (uid 65534): a user
namespace created by root maps the sandbox to host uid 0, for which Linux does not
enforce ``RLIMIT_NPROC``, so a fork bomb would only be stopped by the clock.

Every run ends in one outcome:

``pass``, ``wrong_answer``, ``TLE`` (wall or CPU limit), ``MLE`` (MemoryError under the
address-space limit), ``OLE`` (output or file size over its cap), ``runtime_error``,
``blocked`` (the sandbox refused something: network, a read-only file system, a
process limit, a permission), and ``error_infra`` when the sandbox itself could not
start (no bwrap, bwrap failing to set up) -- never a pass or a fail.

Tests come in the two styles of APPS, TACO and LiveCodeBench (see :func:`parse_tests`):
stdin/stdout, where the program reads the input and its printed output is compared
token by token; and function calls, where a named function (or a ``Solution`` method,
LeetCode style) is called with JSON arguments and its return value compared.
Expected outputs never enter the sandbox, so a program cannot read them back.

This module runs programs (:class:`Sandbox`) and test suites (:func:`check_code`); the parts live in
:mod:`~distill.filter.code_tests` (test specs, the answer's code, output comparison),
:mod:`~distill.filter.sandbox_process` (the bwrap command line, reading output, killing) and
:mod:`~distill.filter.sandbox_outcome` (result records and exit classification).  Every name
they offer callers stays importable from here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Sequence

from distill.config import SandboxConfig
from distill.filter import sandbox_cgroup
from distill.filter.code_tests import (CALL_DRIVER, RESULT_MARK, TestCase, TestSuite, extract_code, parse_tests,
                                       same_stdout, same_value)
from distill.filter.sandbox_outcome import OUTCOMES, CodeResult, RunResult, classify_run, last_exception
from distill.filter.sandbox_process import (NOBODY, STARTUP_GRACE_S, STDERR_KEEP, bwrap_command, collect_output,
                                            default_python, kill_group)

__all__ = [
    "CALL_DRIVER", "NOBODY", "OUTCOMES", "RESULT_MARK", "STARTUP_GRACE_S", "STDERR_KEEP", "CodeResult", "RunResult",
    "Sandbox", "TestCase", "TestSuite", "check_code", "default_python", "extract_code", "parse_tests", "same_stdout",
    "same_value",
]

log = logging.getLogger(__name__)

PROBE_PROGRAM = "print('ok')"
PROBE_TIME_LIMIT_S = 5.0
# Setups (bwrap, python, uid, limits) whose probe passed in this process: probed once, not per answer.
_PROBED_OK: set[str] = set()
_PROBED_LOCK = threading.Lock()


class Sandbox:
    """Runs programs in bubblewrap under the limits of a :class:`~distill.config.SandboxConfig`."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.python = self.cfg.python or default_python()
        self.as_nobody = os.geteuid() == 0
        # as root, each run gets a memory cgroup: memory_mb then bounds all its processes and tmpfs pages together
        self.cgroups = sandbox_cgroup.controller()[0] if self.as_nobody else None
        self._probe: str | None = None  # why the probe failed; checked once per Sandbox
        self._probed = False
        self._probe_lock = threading.Lock()  # one Sandbox serves a batch's threads: they wait for one probe

    # ---- probe

    def setup_problem(self) -> str | None:
        """Why this sandbox cannot run Python at all, or None when ``print('ok')`` runs.

        Why a probe: bwrap reports the child's pid before it mounts anything, so a setup
        failure after that (a ``--ro-bind`` source that is missing or unreadable by
        nobody, prlimit or python that cannot be executed) looks like a program that
        exited 1.  Run once per Sandbox (and once per process for a setup that worked),
        a failed probe makes every run ``error_infra`` with its reason, never wrong.
        """
        with self._probe_lock:
            return self._setup_problem_once()

    def _setup_problem_once(self) -> str | None:
        if self._probed:
            return self._probe
        key = json.dumps([self.cfg.model_dump(mode="json"), self.python, self.as_nobody], sort_keys=True)
        with _PROBED_LOCK:
            known_good = key in _PROBED_OK
        if not known_good:
            run = self._run_program(PROBE_PROGRAM, "", (), None, max(self.cfg.time_limit_s, PROBE_TIME_LIMIT_S))
            if run.outcome == "ok" and run.stdout.strip() == "ok":
                with _PROBED_LOCK:
                    _PROBED_OK.add(key)
            else:
                self._probe = run.detail or last_exception(run.stderr) or f"{run.outcome}, exit code {run.exit_code}"
        self._probed = True
        return self._probe

    # ---- command line

    def command(self, box: str, argv: Sequence[str], status_fd: int) -> list[str]:
        return bwrap_command(self.cfg, self.python, box, argv, status_fd)

    # ---- running

    def run(self, program: str, stdin: str = "", argv: Sequence[str] = (), files: dict[str, str] | None = None,
            time_limit_s: float | None = None) -> RunResult:
        """Run ``program`` as ``/box/main.py`` (``files`` beside it) with ``stdin``; never raises for what it does."""
        problem = self.setup_problem()
        if problem is not None:
            return RunResult("error_infra", None, "", "", 0.0, f"sandbox failed its probe run: {problem}")
        return self._run_program(program, stdin, argv, files, time_limit_s or self.cfg.time_limit_s)

    def _run_program(self, program: str, stdin: str, argv: Sequence[str], files: dict[str, str] | None,
                     limit: float) -> RunResult:
        box = tempfile.mkdtemp(prefix="distill-box-")
        try:
            os.chmod(box, 0o755)
            for name, text in {"main.py": program, **(files or {})}.items():
                path = os.path.join(box, name)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.chmod(path, 0o644)
            stdin_path = os.path.join(box, ".stdin")
            with open(stdin_path, "w", encoding="utf-8") as fh:
                fh.write(stdin)
            os.chmod(stdin_path, 0o644)  # the cgroup path's shell opens it as nobody
            return self._execute(box, argv, stdin_path, limit)
        finally:
            shutil.rmtree(box, ignore_errors=True)

    def _execute(self, box: str, argv: Sequence[str], stdin_path: str, limit: float) -> RunResult:
        started = time.monotonic()
        try:
            cgroup = sandbox_cgroup.RunCgroup(self.cgroups, self.cfg.memory_mb * 1024 * 1024) if self.cgroups else None
        except OSError as exc:
            return RunResult("error_infra", None, "", "", 0.0, f"sandbox could not create its memory cgroup: {exc}")
        try:
            return self._execute_in(box, argv, stdin_path, limit, started, cgroup)
        finally:
            if cgroup is not None:
                cgroup.remove()

    def _execute_in(self, box: str, argv: Sequence[str], stdin_path: str, limit: float, started: float,
                    cgroup: sandbox_cgroup.RunCgroup | None) -> RunResult:
        status_r, status_w = os.pipe()
        command = self.command(box, argv, status_w)
        if cgroup is not None:
            # a shell that waits until it is in the cgroup, then becomes bwrap: every later process starts inside
            command = ["/bin/sh", "-c", 'read -r _ && exec "$@" < "$0"', stdin_path, *command]
        try:
            with open(stdin_path, "rb") as stdin:
                proc = subprocess.Popen(
                    command, stdin=subprocess.PIPE if cgroup is not None else stdin, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, pass_fds=(status_w,), start_new_session=True, env={"PATH": "/usr/bin:/bin"},
                    **({"user": NOBODY, "group": NOBODY, "extra_groups": []} if self.as_nobody else {}))
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(status_r)
            os.close(status_w)
            return RunResult("error_infra", None, "", "", 0.0, f"sandbox could not start: {exc}")
        os.close(status_w)
        if cgroup is not None:
            try:
                cgroup.add(proc.pid)
                proc.stdin.write(b"go\n")
                proc.stdin.close()
            except OSError as exc:
                kill_group(proc)
                os.close(status_r)
                return RunResult("error_infra", None, "", "", 0.0, f"sandbox could not join its memory cgroup: {exc}")
        try:
            out, err, status, killed_for = collect_output(proc, status_r, started + limit + STARTUP_GRACE_S,
                                                         self.cfg.max_output_bytes)
        finally:
            kill_group(proc)
            os.close(status_r)
        wall = time.monotonic() - started
        oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        return classify_run(self.cfg, proc.returncode, out, err, status, killed_for, wall, oom_kills)

    # ---- test suites

    def run_tests(self, code: str, suite: TestSuite, stop_at_first_failure: bool = True) -> CodeResult:
        """Run ``code`` on each case of ``suite`` (at most ``max_tests``); the first failing case decides."""
        cases = suite.cases[: self.cfg.max_tests] if self.cfg.max_tests else suite.cases
        passed, wall, first_fail = 0, 0.0, None
        for i, case in enumerate(cases):
            outcome, detail, seconds = self._run_case(code, suite, case)
            wall += seconds
            if outcome == "error_infra":
                return CodeResult("error_infra", passed, len(cases), detail, wall)
            if outcome == "pass":
                passed += 1
                continue
            if first_fail is None:
                first_fail = (outcome, f"test {i + 1} of {len(cases)}: {outcome}" + (f": {detail}" if detail else ""))
            if stop_at_first_failure:
                break
        if first_fail is not None:
            return CodeResult(first_fail[0], passed, len(cases), first_fail[1], wall)
        return CodeResult("pass", passed, len(cases), "", wall)

    def _run_case(self, code: str, suite: TestSuite, case: TestCase) -> tuple[str, str, float]:
        if suite.style == "stdio":
            run = self.run(code, stdin=case.input)
            if run.outcome != "ok":
                return run.outcome, run.detail, run.wall_s
            if same_stdout(run.stdout, case.output):
                return "pass", "", run.wall_s
            return "wrong_answer", f"expected {_short(case.output)}, got {_short(run.stdout)}", run.wall_s
        run = self.run(CALL_DRIVER, stdin=json.dumps(case.input), argv=[suite.fn_name or ""],
                       files={"solution.py": code})
        if run.outcome != "ok":
            return run.outcome, run.detail, run.wall_s
        _, mark, rest = run.stdout.rpartition(RESULT_MARK)
        try:
            value = json.loads(rest) if mark else None
        except json.JSONDecodeError:
            return "wrong_answer", "unreadable return value", run.wall_s
        if mark and same_value(value, case.output):
            return "pass", "", run.wall_s
        return "wrong_answer", f"expected {_short(json.dumps(case.output))}, got {_short(rest.strip())}", run.wall_s


def _short(text: str, n: int = 80) -> str:
    text = text.strip()
    return repr(text if len(text) <= n else text[:n] + "…")



def check_code(answer_text: str, tests: Any, cfg: SandboxConfig | None = None,
               box: Sandbox | None = None) -> tuple[str, CodeResult | None]:
    """(status, result) for a code answer: status is correct | wrong | no_answer | error_infra, as verify uses.

    ``box`` is a Sandbox shared by a batch, so its setup probe (and a failed probe's reason) is found once
    for the batch rather than once per answer; without it a Sandbox is built from ``cfg``."""
    code = extract_code(answer_text)
    if code is None:
        return "no_answer", None
    try:
        suite = parse_tests(tests)
    except (ValueError, TypeError, AttributeError) as exc:
        return "error_infra", CodeResult("error_infra", 0, 0, f"bad tests: {exc}")
    result = (box or Sandbox(cfg)).run_tests(code, suite)
    if result.outcome == "error_infra":
        log.warning("code sandbox unavailable: %s", result.detail)
        return "error_infra", result
    return ("correct" if result.ok else "wrong"), result

