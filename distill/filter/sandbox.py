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
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from distill.filter import sandbox_cgroup
from distill.config import SandboxConfig

log = logging.getLogger(__name__)

OUTCOMES = ("pass", "wrong_answer", "TLE", "MLE", "OLE", "runtime_error", "blocked", "error_infra")
NOBODY = 65534
# bwrap and the interpreter take ~50 ms to start; the wall clock allows this on top of the time limit.
STARTUP_GRACE_S = 0.5
STDERR_KEEP = 8192
RESULT_MARK = "\n@@distill-result@@"
PROBE_PROGRAM = "print('ok')"
PROBE_TIME_LIMIT_S = 5.0
# Setups (bwrap, python, uid, limits) whose probe passed in this process: probed once, not per answer.
_PROBED_OK: set[str] = set()
_PROBED_LOCK = threading.Lock()

# --------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class
    input: Any  # stdin text (stdio) or a list of arguments (call)
    output: Any  # expected stdout text (stdio) or return value (call)


@dataclass(frozen=True)
class TestSuite:
    __test__ = False  # not a pytest class
    style: str  # stdio | call
    cases: tuple[TestCase, ...]
    fn_name: str | None = None


def parse_tests(spec: Any) -> TestSuite:
    """A :class:`TestSuite` from any of the formats datasets ship (ValueError if it is none of them).

    - ours: ``{"style": "stdio"|"call", "fn_name": ..., "cases": [{"input": ..., "output": ...}]}``
    - APPS / TACO ``input_output``: ``{"inputs": [...], "outputs": [...], "fn_name"?: ...}``; with
      ``fn_name`` each input is the argument list (APPS wraps expected values in a list: both match)
    - LiveCodeBench: a list of ``{"input", "output", "testtype": "stdin"|"functional"}`` (or
      ``{"fn_name": ..., "cases": [...]}`` around it); functional inputs are one JSON value per line
    A JSON string of any of these is parsed first.
    """
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tests are not JSON: {exc}") from None
    fn_name = None
    if isinstance(spec, dict) and "inputs" in spec and "outputs" in spec:
        fn_name = spec.get("fn_name")
        if len(spec["inputs"]) != len(spec["outputs"]):
            raise ValueError("tests: inputs and outputs differ in length")
        cases = [{"input": i, "output": o} for i, o in zip(spec["inputs"], spec["outputs"])]
        style = "call" if fn_name else "stdio"
    elif isinstance(spec, dict) and "cases" in spec:
        fn_name = spec.get("fn_name") or spec.get("func_name")
        cases = spec["cases"]
        style = spec.get("style") or _lcb_style(cases) or ("call" if fn_name else "stdio")
    elif isinstance(spec, list):
        cases, style = spec, _lcb_style(spec) or "stdio"
    else:
        raise ValueError("tests: expected {inputs, outputs}, {cases: [...]} or a list of cases")
    if style not in ("stdio", "call"):
        raise ValueError(f"tests: unknown style {style!r}")
    if style == "call" and not fn_name:
        raise ValueError("tests: function-call tests need fn_name")
    if not cases:
        raise ValueError("tests: no test cases")
    return TestSuite(style, tuple(_case(c, style) for c in cases), fn_name)


def _lcb_style(cases: Sequence[Any]) -> str | None:
    types = {c.get("testtype") for c in cases if isinstance(c, dict)} - {None}
    if not types:
        return None
    return "call" if types == {"functional"} else "stdio"


def _case(raw: Any, style: str) -> TestCase:
    if not isinstance(raw, dict) or "input" not in raw or "output" not in raw:
        raise ValueError("tests: each case needs input and output")
    inp, out = raw["input"], raw["output"]
    if style == "stdio":
        return TestCase(_as_text(inp), _as_text(out))
    if isinstance(inp, str):  # LiveCodeBench: one JSON argument per line
        inp = [json.loads(line) for line in inp.splitlines() if line.strip()]
    if isinstance(out, str):
        try:
            out = json.loads(out)
        except json.JSONDecodeError:
            pass
    if not isinstance(inp, list):
        inp = [inp]
    return TestCase(inp, out)


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- code and output


_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(answer_text: str) -> str | None:
    """The last fenced ```python block of the answer (else the last untagged block); None if there is none."""
    blocks = _FENCE_RE.findall(answer_text)
    tagged = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
    plain = [code for lang, code in blocks if not lang]
    chosen = tagged or plain
    if not chosen or not chosen[-1].strip():
        return None
    return chosen[-1]


def same_stdout(actual: str, expected: str) -> bool:
    """Token-wise equality, as judges compare: whitespace and line ends do not matter; floats within 1e-6.

    Integers compare exactly: a relative tolerance would let ``999999999`` pass for
    ``1000000000`` (modular answers, large counts), so the tolerance applies only when
    a token is written as a float (it has ``.``, ``e`` or ``E``).
    """
    a, b = actual.split(), expected.split()
    if a == b:
        return True
    if len(a) != len(b):
        return False
    return all(x == y or _close(x, y) for x, y in zip(a, b))


_INT_TOKEN_RE = re.compile(r"[+-]?\d+")


def _close(x: str, y: str) -> bool:
    if _INT_TOKEN_RE.fullmatch(x) and _INT_TOKEN_RE.fullmatch(y):
        return int(x) == int(y)  # "007" is 7; but 10**9 is not 10**9 - 1
    if not any(c in token for token in (x, y) for c in ".eE"):
        return False  # neither is written as a float: "inf"/"nan" words and the like compare as text
    try:
        u, v = float(x), float(y)
    except ValueError:
        return False
    return math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-6)


def same_value(actual: Any, expected: Any) -> bool:
    """Return-value equality (tuples are lists, floats within 1e-6, integers exact).

    APPS's ``[expected]`` wrapping also matches."""
    return _same(actual, expected) or (isinstance(expected, list) and len(expected) == 1 and _same(actual, expected[0]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # exact: a tolerance would take 10**9 + 7 for 10**9
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


# The function-call driver: loads the solution as a module (its `if __name__ == "__main__"` block stays
# quiet), calls the function with the JSON arguments read from stdin and prints the result after a mark.
CALL_DRIVER = r'''
import json, sys
ns = {"__name__": "solution"}
with open("/box/solution.py", encoding="utf-8") as fh:
    exec(compile(fh.read(), "solution.py", "exec"), ns)
name = sys.argv[1]
fn = ns.get(name)
if not callable(fn) and isinstance(ns.get("Solution"), type):
    fn = getattr(ns["Solution"](), name, None)
if not callable(fn):
    sys.exit("no function %r in the solution" % name)
result = fn(*json.loads(sys.stdin.read()))
def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(plain(x) for x in v)
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    return v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)
sys.stdout.write(MARK + json.dumps(plain(result)) + "\n")
'''.replace("MARK", repr(RESULT_MARK))


# --------------------------------------------------------------------------- one execution


@dataclass(frozen=True)
class RunResult:
    """One sandboxed process: its outcome before comparing output (``ok`` means it exited 0)."""

    outcome: str  # ok | TLE | MLE | OLE | runtime_error | blocked | error_infra
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    detail: str = ""


@dataclass(frozen=True)
class CodeResult:
    """The verdict on a program against a whole test suite: the first failing case decides."""

    outcome: str  # one of OUTCOMES
    passed: int
    total: int
    detail: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "pass"


# An exception that means "the sandbox said no", not "the program is wrong".
_BLOCKED_RE = re.compile(
    r"^(?:PermissionError|BlockingIOError|ConnectionRefusedError|socket\.gaierror|OSError: \[Errno (?:1|11|13|30|99|101)\]"
    r"|\w*Error: \[Errno (?:1|11|13|30|99|101|111)\])")
# CPython ignores SIGXFSZ, so a write past RLIMIT_FSIZE raises EFBIG (27); a full /tmp or /dev/shm raises ENOSPC (28).
_FILE_LIMIT_RE = re.compile(r"^\w*Error: \[Errno (?:27|28)\]")
_EXC_LINE_RE = re.compile(r"^[\w.]+(?:Error|Exception|Exit)\b.*$|^[\w.]+: .*$", re.MULTILINE)


def _python_binds(python: str) -> list[str]:
    """Read-only binds that make ``python`` usable inside the sandbox besides ``/usr``."""
    real = os.path.realpath(python)
    if real.startswith("/usr/"):
        return []
    prefix = os.path.dirname(os.path.dirname(real))  # <prefix>/bin/python3.x -> <prefix>
    return ["--ro-bind", prefix, prefix]


def default_python() -> str:
    """The interpreter run inside the sandbox: the system one under /usr (readable by nobody), else this one."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


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
                self._probe = run.detail or _last_exception(run.stderr) or f"{run.outcome}, exit code {run.exit_code}"
        self._probed = True
        return self._probe

    # ---- command line

    def command(self, box: str, argv: Sequence[str], status_fd: int) -> list[str]:
        c = self.cfg
        cpu = max(1, math.ceil(c.time_limit_s))
        binds = ["--ro-bind", "/usr", "/usr"]
        for name in ("lib", "lib64", "bin", "sbin"):
            target = os.readlink(f"/{name}") if os.path.islink(f"/{name}") else None
            if target is not None:
                binds += ["--symlink", target, f"/{name}"]
            elif os.path.isdir(f"/{name}"):
                binds += ["--ro-bind", f"/{name}", f"/{name}"]
        return [
            self.cfg.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
            "--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox",
            *binds, "--proc", "/proc",
            # /dev is a tmpfs of bwrap's at the kernel's default size (half the RAM, not counted by RLIMIT_AS):
            # read-only, its device nodes still work; /dev/shm (semaphores) gets a capped tmpfs of its own
            "--dev", "/dev", "--remount-ro", "/dev", "--size", str(c.tmpfs_mb * 1024 * 1024), "--tmpfs", "/dev/shm",
            "--size", str(c.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp", "--chdir", "/tmp",
            *_python_binds(self.python),  # after the /tmp tmpfs, which would hide an interpreter under /tmp
            "--ro-bind", box, "/box", "--remount-ro", "/", "--json-status-fd", str(status_fd),
            "--", "prlimit", f"--cpu={cpu}:{cpu + 1}", f"--as={c.memory_mb * 1024 * 1024}",
            f"--nproc={c.nproc}", f"--fsize={c.max_file_mb * 1024 * 1024}", f"--nofile={c.nofile}",
            "--core=0", "--", self.python, "-I", "/box/main.py", *argv,
        ]

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
                _kill_group(proc)
                os.close(status_r)
                return RunResult("error_infra", None, "", "", 0.0, f"sandbox could not join its memory cgroup: {exc}")
        try:
            out, err, status, killed_for = self._collect(proc, status_r, started + limit + STARTUP_GRACE_S)
        finally:
            _kill_group(proc)
            os.close(status_r)
        wall = time.monotonic() - started
        oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        return self._classify(proc.returncode, out, err, status, killed_for, wall, oom_kills)

    def _collect(self, proc: subprocess.Popen, status_r: int, deadline: float):
        """Read stdout (capped), the stderr tail and bwrap's status until exit, the deadline or the cap."""
        cap = self.cfg.max_output_bytes
        out, err_tail, err_total, status = bytearray(), bytearray(), 0, bytearray()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        sel.register(status_r, selectors.EVENT_READ, "status")
        killed_for = None
        try:
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    killed_for = "TLE"
                    break
                for key, _ in sel.select(timeout=min(remaining, 0.5)):
                    fd = key.fd if key.data == "status" else key.fileobj.fileno()
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.data == "out":
                        out += chunk
                    elif key.data == "err":
                        err_total += len(chunk)
                        err_tail = (err_tail + chunk)[-STDERR_KEEP:]
                    else:
                        status += chunk
                if len(out) > cap or err_total > cap:
                    killed_for = "OLE"
                    break
        finally:
            sel.close()
        if killed_for is None:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed_for = "TLE"
        return bytes(out[: cap + 1]), bytes(err_tail), bytes(status), killed_for

    def _classify(self, returncode: int | None, out: bytes, err: bytes, status: bytes, killed_for: str | None,
                  wall: float, oom_kills: int = 0) -> RunResult:
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        started = b'"child-pid"' in status
        exit_code = _status_exit_code(status)
        code = exit_code if exit_code is not None else returncode

        def result(outcome: str, detail: str = "") -> RunResult:
            return RunResult(outcome, code, stdout, stderr, wall, detail)

        if not started and killed_for is None:
            line = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {returncode}"
            return result("error_infra", f"sandbox failed to start: {line}")
        if killed_for is None and _setup_failed(exit_code, returncode, stdout, stderr):
            return result("error_infra", f"sandbox failed to set up: {stderr.strip().splitlines()[0][:300]}")
        if killed_for == "OLE":
            return result("OLE", f"output over {self.cfg.max_output_bytes} bytes")
        if killed_for == "TLE":
            return result("TLE", f"killed after {wall:.2f}s of wall clock")
        if oom_kills:
            return result("MLE", f"over the sandbox's {self.cfg.memory_mb} MB: {oom_kills} process(es) killed")
        if code == 128 + signal.SIGXCPU:
            return result("TLE", "CPU time limit")
        if code == 128 + signal.SIGXFSZ:
            return result("OLE", "file size limit")
        if code == 0:
            return result("ok")
        last = _last_exception(stderr)
        if "MemoryError" in last or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
            return result("MLE", last or "out of memory")
        if _FILE_LIMIT_RE.match(last):
            return result("OLE", f"file size limit: {last}")
        if _BLOCKED_RE.match(last):
            return result("blocked", last)
        if code is not None and code > 128:
            return result("runtime_error", f"killed by signal {code - 128}")
        return result("runtime_error", last or f"exit code {code}")

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


def _status_exit_code(status: bytes) -> int | None:
    m = re.search(rb'"exit-code"\s*:\s*(-?\d+)', status)
    return int(m.group(1)) if m else None


def _setup_failed(exit_code: int | None, returncode: int | None, stdout: str, stderr: str) -> bool:
    """Did bwrap or prlimit fail before the program started (after bwrap had reported its child)?

    bwrap dies with exit 1 and a ``bwrap: `` message and, unlike a program that ran,
    writes no exit code to its status fd; prlimit that cannot exec the interpreter
    exits 126/127 with ``prlimit: failed to execute``.
    """
    if stdout:
        return False
    if exit_code is None and returncode == 1 and stderr.startswith("bwrap: "):
        return True
    return exit_code in (126, 127) and stderr.startswith("prlimit: failed to execute")


def _last_exception(stderr: str) -> str:
    """The final ``SomeError: message`` line of a traceback, '' when there is none."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines[-20:]):
        if _EXC_LINE_RE.match(line) and not line.startswith(("File ", "Traceback")):
            return line[:300]
    return lines[-1][:300] if lines else ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL bwrap's process group (bwrap's death tears down the sandbox's pid namespace) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        log.error("sandbox process %d did not exit after SIGKILL", proc.pid)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


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

