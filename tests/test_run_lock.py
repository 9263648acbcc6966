"""The run folder's lock: a second `distill run` on one folder is refused with a one-line error naming the
holder (exit 2) and the folder stays intact; Slurm array tasks share the lock with each other but not with a
`distill run`; the main process of an accelerate launch holds it, the other ranks do not; the lock of a
SIGKILLed process is taken over."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from distill.config import STAGES
from distill.errors import UserError
from distill.run_lock import LOCK_NAME, read_holder, run_lock
from tests.conftest import REPO, run_cli, tiny_config_dict, write_yaml

HOLD = ("import sys, time\nfrom distill.run_lock import run_lock\n"
        "with run_lock(sys.argv[1], exclusive=sys.argv[2] == 'x', command='holder ' + sys.argv[2]):\n"
        "    print('locked', flush=True)\n    time.sleep(600)\n")


def hold(run_dir, mode: str = "x") -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock (``x`` exclusive, ``s`` shared) until it is stopped."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), mode], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "locked", line + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    proc.send_signal(signum)
    proc.wait(timeout=30)


def wait_for_holder(run_dir, pid: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = read_holder(run_dir / LOCK_NAME)
        if holder and holder["pid"] == pid:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never took the lock of {run_dir}")


def test_a_second_distill_run_on_one_folder_exits_2_naming_the_holder_and_the_folder_stays_intact(
        tmp_path, teacher_cache):
    raw = tiny_config_dict(tmp_path, teacher_cache)
    config = write_yaml(tmp_path / "run.yaml", raw)
    run_dir = tmp_path / "runs" / "tiny"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "distill.cli", "run", str(config), "--until", "eval"], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_holder(run_dir, first.pid, first)
    second = run_cli("run", str(config), "--until", "eval", env={"OMP_NUM_THREADS": "1"})
    assert first.poll() is None, "the first run ended before the second tried: the test proves nothing"
    assert second.returncode == 2, second.stderr + second.stdout
    lines = [line for line in second.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"is in use by pid {first.pid} (distill run {config}" in lines[0], lines[0]
    assert "wait for it or stop it" in lines[0]

    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err + out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    upto_eval = STAGES[: STAGES.index("eval") + 1]
    assert [manifest["stages"][s]["status"] for s in upto_eval] == ["done"] * len(upto_eval)
    third = run_cli("run", str(config), "--until", "eval", env={"OMP_NUM_THREADS": "1"})
    assert third.returncode == 0, third.stderr + third.stdout
    assert json.loads((run_dir / "manifest.json").read_text())["stages"] == manifest["stages"]  # nothing re-ran
    log = (run_dir / "logs" / "run.log").read_text()
    assert all(f"stage {s} skipped" in log for s in upto_eval)
    assert read_holder(run_dir / LOCK_NAME) is None  # released and cleared: nothing to block a later run


def test_the_lock_of_a_sigkilled_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold(run_dir)
    with pytest.raises(UserError, match=rf"is in use by pid {holder.pid} \(holder x\) since "):
        with run_lock(run_dir):
            pass
    stop(holder, signal.SIGKILL)
    assert f'"pid": {holder.pid}' in (run_dir / LOCK_NAME).read_text()  # its record is left behind...
    assert read_holder(run_dir / LOCK_NAME) is None  # ...read as the record of a dead process
    with run_lock(run_dir):  # and its lock is gone: the kernel dropped it with the process
        assert read_holder(run_dir / LOCK_NAME)["pid"] == os.getpid()
        assert f'"pid": {holder.pid}' not in (run_dir / LOCK_NAME).read_text()


def test_shared_holders_coexist_and_an_exclusive_one_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    tasks = [hold(run_dir, "s"), hold(run_dir, "s")]  # two Slurm array tasks at once
    try:
        with run_lock(run_dir, exclusive=False):  # and a third
            pass
        with pytest.raises(UserError) as refused:
            with run_lock(run_dir, exclusive=True):
                pass
        message = str(refused.value)
        assert f"in use by pid {tasks[1].pid} (holder s)" in message and "and 1 more" in message, message
    finally:
        for task in tasks:
            stop(task)
    with run_lock(run_dir, exclusive=True):
        pass


def test_an_exclusive_holder_refuses_a_shared_one(tmp_path):
    run_dir = tmp_path / "run"
    holder = hold(run_dir, "x")
    try:
        with pytest.raises(UserError, match=f"in use by pid {holder.pid}"):
            with run_lock(run_dir, exclusive=False):
                pass
    finally:
        stop(holder)


def test_an_error_in_the_block_releases_the_lock(tmp_path):
    with pytest.raises(RuntimeError):
        with run_lock(tmp_path):
            raise RuntimeError("stage failed")
    with run_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_a_file_system_without_flock_runs_unlocked_with_a_warning(tmp_path, monkeypatch, caplog):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING), run_lock(tmp_path):
        pass
    assert "cannot lock" in caplog.text


def test_distill_run_is_refused_while_array_tasks_sample(tiny_config):
    from distill.pipeline import run

    config = tiny_config()
    task = hold(config.run_dir, "s")
    try:
        with pytest.raises(UserError, match=f"in use by pid {task.pid}"):
            run(config)
    finally:
        stop(task)
    assert not (config.run_dir / "manifest.json").exists()  # refused before it touched the folder


def test_an_array_task_is_refused_while_distill_run_holds_the_folder(tiny_config):
    from distill.pipeline import sample_partition

    config = tiny_config()
    running = hold(config.run_dir, "x")
    try:
        with pytest.raises(UserError, match=f"in use by pid {running.pid}"):
            sample_partition(config, 0, 2)
    finally:
        stop(running)
    assert not (config.run_dir / "manifest.json").exists()


def _finished_until_train(tmp_path, teacher_cache):
    from distill.config import load_config
    from distill.runner import fingerprints
    from distill.store import RunStore

    config_path = write_yaml(tmp_path / "run.yaml", tiny_config_dict(tmp_path, teacher_cache))
    config = load_config(config_path, [])
    fps, store = fingerprints(config), RunStore(config.run_dir)
    for stage in ("sample", "filter", "train"):
        store.begin(stage, fps[stage])
        store.finish(stage, {}, 1.0, f"{stage} summary")
    return config_path, config


def test_the_main_process_of_an_accelerate_launch_takes_the_lock(tmp_path, teacher_cache, caplog):
    from distill.students.train_entry import main

    config_path, config = _finished_until_train(tmp_path, teacher_cache)
    running = hold(config.run_dir, "x")
    try:
        with caplog.at_level(logging.ERROR):
            assert main(["--config", str(config_path)]) == 2
        assert f"is in use by pid {running.pid}" in caplog.text
    finally:
        stop(running)
    assert main(["--config", str(config_path)]) == 0


def test_the_other_ranks_of_a_launch_take_no_lock(tmp_path, teacher_cache, monkeypatch):
    """Rank 0 holds the folder for the whole launch; the other ranks must not be refused by it."""
    import accelerate

    from distill.students.train_entry import main

    class OtherRank:
        is_main_process = False

        def __init__(self, **kwargs):
            pass

        def wait_for_everyone(self):
            pass

    monkeypatch.setattr(accelerate, "PartialState", OtherRank)
    config_path, config = _finished_until_train(tmp_path, teacher_cache)
    rank0 = hold(config.run_dir, "x")
    try:
        assert main(["--config", str(config_path)]) == 0
    finally:
        stop(rank0)
