"""The code sandbox (distill/sandbox.py): attacks are contained and classified, and the host is unchanged.

Every attack runs as a real program in a real bubblewrap sandbox.  Tests that need
bwrap skip with the reason when it is missing or cannot create namespaces here; the
error_infra tests (no sandbox can start) run everywhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest

from distill.config import FilterConfig, SandboxConfig
from distill.filter.sandbox import (Sandbox, TestCase, TestSuite, check_code, extract_code, parse_tests, same_stdout,
                             same_value)
from distill.filter.verify import verify_answer, verify_batch, verify_code_batch

REPO = Path(__file__).resolve().parent.parent
FAST = SandboxConfig(time_limit_s=1.0, memory_mb=256, max_output_bytes=100_000, nproc=16)


def _sandbox_problem() -> str | None:
    """Why sandboxed tests cannot run here, or None when they can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    probe = Sandbox(FAST).run("print('ok')")
    if probe.outcome != "ok" or probe.stdout.strip() != "ok":
        return f"bwrap cannot create a sandbox here: {probe.detail or probe.stderr.strip()[-200:]}"
    return None


SKIP = _sandbox_problem()
needs_bwrap = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}\n```\n"


def stdio(*pairs: tuple[str, str]) -> TestSuite:
    return TestSuite("stdio", tuple(TestCase(i, o) for i, o in pairs))


def sandbox_processes() -> list[str]:
    """Host processes that belong to a sandbox run (bwrap or the program in /box), after a moment to die."""
    deadline = time.monotonic() + 2.0
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"/box/main.py" in cmd or b"31337.5" in cmd:
                found.append(f"{pid}: {cmd.replace(bytes(1), b' ')[:120]!r}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def box_dirs() -> set[str]:
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("distill-box-*")}


@pytest.fixture
def host_unchanged():
    """Asserts after the test that no sandbox process or folder is left and this process is unharmed."""
    before, dirs = sandbox_processes(), box_dirs()
    yield
    assert sandbox_processes() == before == []
    assert box_dirs() <= dirs  # each run's /box folder is removed
    os.kill(os.getpid(), 0)  # still here


# --------------------------------------------------------------------------- attacks


@needs_bwrap
@pytest.mark.parametrize("program, expected", [
    ("import os\nwhile True:\n    os.fork()", {"blocked", "TLE"}),
    # a bomb that swallows the process-limit error and leaves sleepers: only the clock can end it
    ("import os\nwhile True:\n    try:\n        if os.fork() == 0:\n            os.execv('/bin/sleep', ['sleep', '31337.5'])\n"
     "    except OSError:\n        pass", {"TLE"}),
])
def test_fork_bomb_is_contained(program, expected, host_unchanged):
    started = time.monotonic()
    run = Sandbox(FAST).run(program)
    assert run.outcome in expected, run
    assert time.monotonic() - started < FAST.time_limit_s + 2.0


@needs_bwrap
@pytest.mark.parametrize("program", ["x = []\nwhile True:\n    x.append(bytearray(10**7))", "s = ' ' * 10**11"])
def test_memory_bomb_is_mle(program, host_unchanged):
    run = Sandbox(FAST).run(program)
    assert run.outcome == "MLE", run


@needs_bwrap
@pytest.mark.parametrize("program", ["while True:\n    pass", "import time\ntime.sleep(60)",
                                     "import sys\nsys.stdin.read()\nwhile True: pass"])
def test_infinite_loop_is_tle_within_the_limit(program, host_unchanged):
    started = time.monotonic()
    run = Sandbox(FAST).run(program, stdin="1\n")
    assert run.outcome == "TLE", run
    assert time.monotonic() - started < FAST.time_limit_s + 1.5


@needs_bwrap
def test_writing_outside_its_temp_dir_leaves_the_host_unchanged(host_unchanged):
    marker = f"distill-sandbox-marker-{uuid.uuid4().hex}"
    host_tmp, repo_file = Path("/tmp") / marker, REPO / marker
    # /tmp inside is its private tmpfs: the write succeeds there and never reaches the host's /tmp
    run = Sandbox(FAST).run(f"open('/tmp/{marker}', 'w').write('x')\nprint('written')")
    assert run.outcome == "ok" and run.stdout.strip() == "written"
    assert not host_tmp.exists()
    # the repository is not mounted at all; /usr and the program's own folder are read-only
    assert Sandbox(FAST).run(f"open({str(repo_file)!r}, 'w').write('x')").outcome == "runtime_error"
    for target in (f"/usr/{marker}", f"/box/{marker}", f"/{marker}"):
        run = Sandbox(FAST).run(f"open({target!r}, 'w').write('x')")
        assert run.outcome in ("blocked", "runtime_error"), run
        assert "Read-only" in run.detail or "Permission" in run.detail or "No such file" in run.detail
    assert not repo_file.exists() and not host_tmp.exists() and not Path(f"/usr/{marker}").exists()
    # a file over the size limit is stopped
    big = Sandbox(SandboxConfig(time_limit_s=1.0, max_file_mb=1)).run("open('/tmp/big', 'wb').write(b'x' * 3_000_000)")
    assert big.outcome == "OLE" and "File too large" in big.detail, big
    # a full /tmp is the same: more written than the sandbox allows
    full = Sandbox(SandboxConfig(time_limit_s=1.0, tmpfs_mb=1, max_file_mb=8)).run(
        "open('/tmp/big', 'wb').write(b'x' * 3_000_000)")
    assert full.outcome == "OLE" and "No space left" in full.detail, full


@needs_bwrap
def test_memory_of_all_its_processes_together_is_capped(host_unchanged):
    """RLIMIT_AS is per process: four children of 150 MB each fit it, but not the run's 256 MB memory cgroup."""
    from distill.filter import sandbox_cgroup

    controller, why = sandbox_cgroup.controller()
    if controller is None or os.geteuid() != 0:
        pytest.skip(f"no per-run memory cgroup here ({why or 'not root'}): memory is capped per process only")
    program = ("import os, time\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
               "        block = b'x' * (150 << 20)\n        time.sleep(0.5)\n        os._exit(0)\n    kids.append(pid)\n"
               "print([os.waitpid(k, 0)[1] for k in kids])")
    sandbox = Sandbox(SandboxConfig(time_limit_s=5.0, memory_mb=256, nproc=16))
    run = sandbox.run(program)
    assert run.outcome == "MLE" and "process(es) killed" in run.detail, run
    one = sandbox.run("block = b'x' * (150 << 20)\nprint('ok')")  # one such child alone is fine
    assert one.outcome == "ok", one
    assert not list(controller.parent.glob("run-*"))  # each run's cgroup is removed


@needs_bwrap
def test_dev_is_read_only_and_dev_shm_is_capped(host_unchanged):
    """/dev and /dev/shm are tmpfs, host RAM that RLIMIT_AS does not count: neither may grow unbounded."""
    sandbox = Sandbox(SandboxConfig(time_limit_s=2.0, tmpfs_mb=4, max_file_mb=64))
    run = sandbox.run("open('/dev/x', 'w').write('x')")
    assert run.outcome == "blocked" and "Read-only" in run.detail, run
    over = sandbox.run("open('/dev/shm/x', 'wb').write(b'x' * (8 << 20))")  # 8 MB into a 4 MB /dev/shm
    assert over.outcome == "OLE" and "No space left" in over.stderr, over
    within = sandbox.run("open('/dev/shm/x', 'wb').write(b'x' * (1 << 20))\nprint('ok')")
    assert within.outcome == "ok", within
    devices = sandbox.run("open('/dev/null', 'w').write('x')\nprint(len(open('/dev/zero', 'rb').read(3)), "
                          "len(open('/dev/urandom', 'rb').read(3)))\nimport multiprocessing\nmultiprocessing.Lock()")
    assert devices.outcome == "ok" and devices.stdout.split() == ["3", "3"], devices


@needs_bwrap
def test_secrets_in_the_environment_and_token_files_are_unreachable(tmp_path, monkeypatch, host_unchanged):
    secret = f"hf_secret_{uuid.uuid4().hex}"
    home = tmp_path / "home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text(secret)
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HOME", str(home))
    env = Sandbox(FAST).run("import os\nprint(os.environ.get('HF_TOKEN'))\nprint(sorted(os.environ))")
    assert env.outcome == "ok" and secret not in env.stdout and "HF_TOKEN" not in env.stdout
    for path in (home / ".cache" / "huggingface" / "token", Path("/root/.cache/huggingface/token")):
        run = Sandbox(FAST).run(f"print(open({str(path)!r}).read())")
        assert run.outcome in ("runtime_error", "blocked"), run
        assert secret not in run.stdout + run.stderr
    # graded against the token itself, a program that prints what it can find never passes
    steal = ("import glob, os\nprint(os.environ.get('HF_TOKEN', ''))\n"
             f"for p in glob.glob('/proc/*/environ') + glob.glob({str(home)!r} + '/.cache/*/token'):\n"
             "    print(open(p).read())")
    result = Sandbox(FAST).run_tests(steal, stdio(("", secret)))
    assert result.outcome == "wrong_answer", result


@needs_bwrap
def test_network_is_blocked_and_a_loopback_listener_gets_nothing(host_unchanged):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        run = Sandbox(FAST).run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).send(b'hi')")
        assert run.outcome == "blocked", run
        with pytest.raises(socket.timeout):
            listener.accept()
    dns = Sandbox(FAST).run("import socket\nsocket.create_connection(('example.com', 80), timeout=1)")
    assert dns.outcome == "blocked", dns


@needs_bwrap
@pytest.mark.parametrize("program", [
    "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)",  # a gigabyte
    "import sys\nwhile True:\n    print('y' * 1000, file=sys.stderr)",
])
def test_printing_a_gigabyte_is_ole(program, host_unchanged):
    started = time.monotonic()
    run = Sandbox(FAST).run(program)
    assert run.outcome == "OLE", run
    assert len(run.stdout) <= FAST.max_output_bytes + 1
    assert time.monotonic() - started < 2.0


@needs_bwrap
@pytest.mark.parametrize("program", [
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\nprint('x')",
    "import os, signal\nfor pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
    "    try:\n        os.kill(int(pid), signal.SIGKILL)\n    except OSError:\n        pass\nprint('x')",
    "import os, signal\nos.killpg(0, signal.SIGKILL)",
])
def test_killing_its_parent_only_hurts_itself(program, host_unchanged):
    result = Sandbox(FAST).run_tests(program, stdio(("", "never")))
    assert result.outcome in ("runtime_error", "blocked", "wrong_answer"), result
    assert Sandbox(FAST).run("print(2)").stdout.strip() == "2"  # the sandbox still works afterwards


@needs_bwrap
def test_it_runs_unprivileged_with_nothing_but_usr(host_unchanged):
    run = Sandbox(FAST).run("import os\nprint(os.getuid(), os.getgid(), sorted(os.listdir('/')), os.getcwd())")
    uid, gid, *rest = run.stdout.split(" ", 2)
    assert (uid, gid) == ("65534", "65534")
    assert "work" not in rest[0] and "root" not in rest[0] and "home" not in rest[0]


# --------------------------------------------------------------------------- judging solutions


@needs_bwrap
def test_correct_and_wrong_solutions_in_stdin_stdout_style(host_unchanged):
    tests = {"inputs": ["1 2\n", "10 -3\n", "0 0\n"], "outputs": ["3\n", "7", "0\n"]}
    good = fenced("a, b = map(int, input().split())\nprint(a + b)")
    assert check_code(good, tests, FAST)[1].ok
    status, result = check_code(fenced("a, b = map(int, input().split())\nprint(a * b)"), tests, FAST)
    assert status == "wrong" and result.outcome == "wrong_answer" and result.passed == 0
    assert result.detail.startswith("test 1 of 3: wrong_answer")
    crash = check_code(fenced("raise ValueError('boom')"), tests, FAST)[1]
    assert crash.outcome == "runtime_error" and "ValueError: boom" in crash.detail
    assert check_code(fenced("print(("), tests, FAST)[1].outcome == "runtime_error"  # a syntax error
    # LiveCodeBench's list of stdin cases
    lcb = [{"input": "2 2\n", "output": "4\n", "testtype": "stdin"}]
    assert check_code(good, lcb, FAST)[1].ok


@needs_bwrap
def test_correct_and_wrong_solutions_in_function_call_style(host_unchanged):
    apps = {"fn_name": "pair", "inputs": [[1, 2], [3, 4]], "outputs": [[[1, 2]], [[3, 4]]]}  # APPS wraps results
    assert check_code(fenced("def pair(a, b):\n    return (a, b)"), apps, FAST)[1].ok
    leetcode = {"style": "call", "fn_name": "twoSum", "cases": [{"input": [[2, 7, 11, 15], 9], "output": [0, 1]},
                                                               {"input": [[3, 3], 6], "output": [0, 1]}]}
    solution = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
                "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
                "                return [seen[target - x], i]\n            seen[x] = i\n"
                "if __name__ == '__main__':\n    input()  # never run: the solution is loaded as a module")
    assert check_code(fenced(solution), leetcode, FAST)[1].ok
    wrong = check_code(fenced("class Solution:\n    def twoSum(self, nums, target):\n        return [0, 0]"),
                       leetcode, FAST)[1]
    assert wrong.outcome == "wrong_answer" and wrong.passed == 0
    missing = check_code(fenced("def other():\n    pass"), leetcode, FAST)[1]
    assert missing.outcome == "runtime_error" and "no function" in missing.detail
    lcb = {"fn_name": "add", "cases": [{"input": "1\n2", "output": "3", "testtype": "functional"}]}
    assert check_code(fenced("def add(a, b):\n    return a + b"), lcb, FAST)[1].ok
    # a program cannot pass by printing: only the returned value counts
    assert not check_code(fenced("def add(a, b):\n    print(3)"), lcb, FAST)[1].ok


@needs_bwrap
def test_the_one_verifier_runs_code_in_the_sandbox(host_unchanged):
    tests = '{"inputs": ["5\\n"], "outputs": ["25\\n"]}'  # what Problem.answer holds for a code problem
    good, slow = fenced("n = int(input())\nprint(n * n)"), fenced("while True: pass")
    check = verify_answer("code", good, tests, sandbox=FAST)
    assert check.correct and check.status == "correct" and check.extracted == "pass"
    checks = verify_batch([("code", good, tests), ("math", "\\boxed{4}", "4"), ("code", slow, tests),
                           ("code", "no code here", tests)], sandbox=FAST)
    assert [c.status for c in checks] == ["correct", "correct", "wrong", "no_answer"]
    assert checks[2].extracted == "TLE" and checks[2].detail.startswith("test 1 of 1: TLE")
    parallel = verify_code_batch([(good, tests)] * 4, SandboxConfig(time_limit_s=1.0, workers=2))
    assert all(c.correct for c in parallel)


@needs_bwrap
def test_attacks_running_beside_honest_programs_do_not_disturb_them(host_unchanged):
    """Two sandboxes at once, three rounds: bombs next to correct solutions, each judged on its own."""
    tests = {"inputs": ["4\n"], "outputs": ["16\n"]}
    good = fenced("n = int(input())\nprint(n * n)")
    attacks = {"import os\nwhile True:\n    os.fork()": {"blocked", "TLE"},
               "x = []\nwhile True:\n    x.append(bytearray(10**7))": {"MLE"},
               "import sys\nwhile True:\n    sys.stdout.write('z' * 65536)": {"OLE"}}
    items = [pair for program in attacks for pair in ((fenced(program), tests), (good, tests))] * 3
    checks = verify_code_batch(items, SandboxConfig(time_limit_s=1.0, memory_mb=256, max_output_bytes=100_000,
                                                    workers=2))
    expected = [outcomes for program, outcomes in attacks.items() for outcomes in (outcomes, {"pass"})] * 3
    assert [c.extracted in e for c, e in zip(checks, expected)] == [True] * len(items), checks
    assert [c.correct for c in checks] == [False, True] * (len(items) // 2)


@needs_bwrap
def test_filter_verifies_code_traces_in_the_sandbox(host_unchanged):
    from distill.filter.traces import filter_traces
    from distill.records import Problem
    from tests.test_records_and_verify import make_trace

    problem = Problem("c1", "Square n.", "", kind="code", tests={"inputs": ["3\n"], "outputs": ["9\n"]})
    assert problem.answer == '{"inputs": ["3\\n"], "outputs": ["9\\n"]}'
    answers = [fenced("print(int(input()) ** 2)"), fenced("print(int(input()) * 2)"), fenced("import os\nos.fork()\n"
                                                                                            "while True: pass")]
    traces = [make_trace(problem_id="c1", sample_index=i, kind="code", reference=problem.answer, answer_text=a)
              for i, a in enumerate(answers)]
    result = filter_traces(traces, FilterConfig(sandbox=FAST))
    assert result.funnel == {"total": 3, "wrong": 2, "kept": 1}
    assert result.details[("c1", 1)].startswith("wrong_answer") and result.details[("c1", 2)].startswith("TLE")


@needs_bwrap
def test_code_problems_from_jsonl_go_through_the_filter_stage(tiny_config, tmp_path, host_unchanged):
    """A JSONL code problem (tests as its answer) -> traces -> stage_filter: kept, and rejected with the detail."""
    import json

    from distill.filter.stage import FILTER
    from distill.problems import problem_sets
    from distill.stage import Context
    from distill.progress import NullReporter
    from distill.records import read_jsonl
    from distill.shards import ShardStore
    from distill.store import RunStore
    from tests.test_records_and_verify import make_trace

    tests = {"fn_name": "double", "inputs": [[2], [5]], "outputs": [4, 10]}
    rows = [{"id": "double", "problem": "Write double(n).", "answer": json.dumps(tests), "kind": "code"},
            {"id": "sum", "problem": "What is 2 + 2?", "answer": "4"}]
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    held.write_text(json.dumps({"id": "h", "problem": "What is 9 times 9?", "answer": "81"}) + "\n")
    config = tiny_config(problems__source="jsonl", problems__train_path=str(train), problems__heldout_path=str(held),
                         filter__max_per_problem=None, filter__sandbox={"time_limit_s": 1.0})
    store = RunStore(config.run_dir)
    problems, _ = problem_sets(config)
    by_id = {p.id: p for p in problems}
    answers = [fenced("def double(n):\n    return 2 * n"), fenced("def double(n):\n    return n + 2")]
    traces = [make_trace(problem_id="double", sample_index=i, kind="code", reference=by_id["double"].answer,
                         answer_text=a) for i, a in enumerate(answers)]
    traces.append(make_trace(problem_id="sum", reference="4", answer_text="\\boxed{4}"))
    ShardStore(store.stage_dir("sample") / "shards").commit(0, traces)
    FILTER.run(Context(config, store, NullReporter()))
    out = store.stage_dir("filter")
    summary = json.loads((out / "funnel.json").read_text())
    assert summary["funnel"] == {"total": 3, "wrong": 1, "kept": 2}
    assert summary["sandbox_outcomes"] == {"pass": 1, "wrong_answer": 1}
    [rejected] = list(read_jsonl(out / "rejected.jsonl"))
    assert rejected["sample_index"] == 1 and rejected["detail"].startswith("wrong_answer: test 2 of 2")


# --------------------------------------------------------------------------- no sandbox: error_infra


@pytest.mark.parametrize("bwrap", ["/nonexistent/bwrap", "/bin/false"])
def test_a_sandbox_that_cannot_start_is_error_infra_never_pass_or_fail(bwrap):
    cfg = SandboxConfig(bwrap=bwrap)
    status, result = check_code(fenced("print(3)"), {"inputs": [""], "outputs": ["3"]}, cfg)
    assert status == "error_infra" and result.outcome == "error_infra"
    assert "sandbox" in result.detail
    check = verify_answer("code", fenced("print(3)"), '{"inputs": [""], "outputs": ["3"]}', sandbox=cfg)
    assert check.status == "error_infra" and not check.correct


@pytest.fixture
def copied_python():
    """A copy of the system interpreter in a folder of its own, outside /usr (removed afterwards)."""
    import sys
    import tempfile

    source = os.path.realpath("/usr/bin/python3") if os.path.exists("/usr/bin/python3") else sys.executable
    folder = Path(tempfile.mkdtemp(prefix="distill-test-python-"))
    (folder / "bin").mkdir()
    shutil.copy2(source, folder / "bin" / "python3")
    folder.chmod(0o755)
    yield folder
    if folder.exists():
        folder.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


@needs_bwrap
@pytest.mark.parametrize("python", ["/opt/nonexistent/bin/python3", "/usr/bin/no-such-python"])
def test_a_python_the_sandbox_cannot_start_is_error_infra_not_wrong(python, host_unchanged):
    cfg = SandboxConfig(python=python, time_limit_s=1.0)
    status, result = check_code(fenced("print(3)"), {"inputs": [""], "outputs": ["3"]}, cfg)
    assert (status, result.outcome) == ("error_infra", "error_infra"), result
    assert "probe" in result.detail and ("bwrap: " in result.detail or "prlimit: " in result.detail)


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs bwrap as nobody")
def test_a_python_nobody_cannot_read_is_error_infra(copied_python, host_unchanged):
    copied_python.chmod(0o700)
    cfg = SandboxConfig(python=str(copied_python / "bin" / "python3"), time_limit_s=1.0)
    status, result = check_code(fenced("print(3)"), {"inputs": [""], "outputs": ["3"]}, cfg)
    assert (status, result.outcome) == ("error_infra", "error_infra"), result


@needs_bwrap
def test_a_setup_failure_after_a_good_probe_is_error_infra(copied_python, host_unchanged):
    """The probe passed, then the interpreter went away: bwrap's own failure is still not the program's."""
    sandbox = Sandbox(SandboxConfig(python=str(copied_python / "bin" / "python3"), time_limit_s=1.0))
    assert sandbox.run("print(1)").stdout.strip() == "1"
    shutil.rmtree(copied_python)
    run = sandbox.run("print(1)")
    assert run.outcome == "error_infra" and run.detail.startswith("sandbox failed to set up: bwrap: "), run
    # a program that only pretends to be bwrap failing is judged as the program it is
    assert Sandbox(FAST).run("import sys\nsys.stderr.write('bwrap: x')\nsys.exit(1)").outcome == "runtime_error"


def test_error_infra_traces_are_counted_apart_in_the_filter():
    from distill.filter.traces import filter_traces
    from tests.test_records_and_verify import make_trace

    trace = make_trace(kind="code", reference='{"inputs": [""], "outputs": ["3"]}', answer_text=fenced("print(3)"))
    result = filter_traces([trace], FilterConfig(sandbox=SandboxConfig(bwrap="/nonexistent/bwrap")))
    assert result.funnel == {"total": 1, "error_infra": 1}


# --------------------------------------------------------------------------- parsing (no sandbox)


def test_extract_code_takes_the_last_python_block():
    text = "```python\nprint(1)\n```\nthen\n```py\nprint(2)\n```\n```text\nnot code\n```"
    assert extract_code(text) == "print(2)\n"
    assert extract_code("```\nprint(3)\n```") == "print(3)\n"
    assert extract_code("no code") is None and extract_code("```python\n\n```") is None


def test_parse_tests_reads_apps_livecodebench_and_our_format():
    assert parse_tests('{"inputs": ["1\\n"], "outputs": ["2\\n"]}') == stdio(("1\n", "2\n"))
    call = parse_tests({"inputs": [[1, 2]], "outputs": [3], "fn_name": "f"})
    assert call.style == "call" and call.fn_name == "f" and call.cases == (TestCase([1, 2], 3),)
    lcb = parse_tests({"fn_name": "f", "cases": [{"input": "[1, 2]\n\"a\"", "output": "true", "testtype": "functional"}]})
    assert lcb.cases == (TestCase([[1, 2], "a"], True),)
    ours = parse_tests({"style": "stdio", "cases": [{"input": ["1", "2"], "output": "3"}]})
    assert ours.cases == (TestCase("1\n2", "3"),)
    for bad in ("not json", {"inputs": [1], "outputs": []}, {"style": "call", "cases": [{"input": 1, "output": 1}]},
                {"cases": []}, 42):
        with pytest.raises(ValueError):
            parse_tests(bad)


def test_output_comparison():
    assert same_stdout("3 \n4\n", "3\n4") and same_stdout("0.3333333", "0.33333334")
    assert not same_stdout("3", "4") and not same_stdout("3 4", "3")
    assert same_value((1, 2), [1, 2]) and same_value(3, [3]) and same_value(0.1 + 0.2, 0.3)
    assert not same_value(True, 1) and not same_value([1], [1, 2]) and not same_value("1", 1)


@pytest.mark.parametrize("actual, expected, same", [
    ("1000000000", "999999999", False),  # integers compare exactly, however large
    ("1000000007", "1000000000", False),
    ("-5", "-5", True),
    ("007", "7", True),
    ("+3", "3", True),
    ("0.3333333", "0.33333334", True),  # floats within 1e-6
    ("1000000000.0", "999999999.5", True),  # one side written as a float: the tolerance applies
    ("1e9", "1000000000", True),
    ("1E9", "999999999", True),
    ("0.5", "0.6", False),
    ("nan", "NaN", False),  # words, not floats
    ("abc", "abd", False),
])
def test_stdout_tokens_integers_are_exact_floats_tolerant(actual, expected, same):
    assert same_stdout(actual, expected) is same


@pytest.mark.parametrize("actual, expected, same", [
    (10**9, 10**9 + 7, False),
    (10**18, 10**18 + 1, False),
    (123, 123, True),
    ([10**9], [10**9 + 1], False),
    (1e9, 10**9 + 1, True),  # one side is a float: the tolerance applies
    (0.1 + 0.2, 0.3, True),
    (2, 2.0, True),
    (0.5, 0.6, False),
])
def test_return_values_integers_are_exact_floats_tolerant(actual, expected, same):
    assert same_value(actual, expected) is same
