"""ProcessLock against real second processes: who holds it, timeouts, and a kill freeing it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainrank.index.errors import BrainrankError
from brainrank.index.locks import (
    LockBusyError,
    ProcessLock,
    describe_holder,
    holder_file,
    read_holder,
)
from brainrank.index.workspace import Workspace

# Takes the lock named by argv[1], says so, holds it argv[2] seconds, releases it and exits.
HOLDER = """\
import sys, time
from brainrank.index.locks import ProcessLock
lock = ProcessLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


@pytest.fixture
def hold(tmp_path):
    """Start a real process holding ``lock`` for ``seconds``; killed at teardown if still alive."""
    script = tmp_path / "hold_the_lock.py"
    script.write_text(HOLDER)
    procs = []

    def start(lock: Path, seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(lock), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held", "the holder process failed to start"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_waiter_names_the_holding_command_then_takes_the_lock_once_it_is_killed(tmp_path, hold):
    lock_path = tmp_path / "ws" / ".ingest.lock"
    proc = hold(lock_path, 600)
    note = read_holder(lock_path)
    assert note["pid"] == proc.pid and "hold_the_lock.py" in note["command"]

    waiter = ProcessLock(lock_path, timeout=0.3, what="another brainrank ingest is running")
    t = time.perf_counter()
    with pytest.raises(BrainrankError) as caught:
        waiter.acquire()
    assert time.perf_counter() - t >= 0.3
    message = str(caught.value)
    assert message.startswith("another brainrank ingest is running: ")
    assert str(lock_path) in message and f"pid {proc.pid} running `" in message
    assert f"hold_the_lock.py {lock_path} 600" in message  # the holder's sys.argv, joined
    assert "gave up after 0.3 s" in message
    assert isinstance(caught.value, LockBusyError) and caught.value.holder == note
    assert not waiter.held

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The kernel released the flock with the process; only its note is left, and it is stale.
    assert "now gone" in describe_holder(lock_path)
    with ProcessLock(lock_path, timeout=5) as lock:
        assert lock.held and read_holder(lock_path)["pid"] == os.getpid()
    assert not holder_file(lock_path).exists()


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(tmp_path, hold):
    lock_path = tmp_path / ".registry.lock"
    hold(lock_path, 1.0)
    with pytest.raises(LockBusyError):
        ProcessLock(lock_path, timeout=0).acquire()
    with ProcessLock(lock_path, timeout=60) as lock:
        assert lock.held


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    path = tmp_path / "x.lock"
    first = ProcessLock(path).acquire()
    second = ProcessLock(path, timeout=0, what="busy")
    assert not second.try_acquire()
    with pytest.raises(LockBusyError, match=rf"^busy: .*x\.lock is held by pid {os.getpid()} "):
        second.acquire()
    with pytest.raises(RuntimeError, match="not re-entrant"):
        first.acquire()
    note = json.loads(holder_file(path).read_text())
    assert note["command"] == " ".join(sys.argv) and note["started"]
    first.release()
    first.release()  # a second release does nothing
    assert second.try_acquire()
    second.release()
    assert not holder_file(path).exists()


def test_bad_timeouts_are_refused(tmp_path):
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="lock timeout"):
            ProcessLock(tmp_path / "x.lock", timeout=bad).acquire()


def test_a_missing_note_is_described_as_unknown(tmp_path):
    assert describe_holder(tmp_path / "x.lock") == "an unknown process (it left no holder note)"


def test_workspace_writer_lock_fails_fast_naming_the_writer(tmp_path, hold):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    proc = hold(ws.root / ".retrain.lock", 600)
    t = time.perf_counter()
    with pytest.raises(BrainrankError) as caught, ws.writer_lock("retrain"):
        pass
    assert time.perf_counter() - t < 5
    message = str(caught.value)
    assert message.startswith(f"another brainrank retrain is running on workspace {ws.root}")
    assert f"pid {proc.pid} running `" in message and "hold_the_lock.py" in message
    with ws.writer_lock("ingest"):  # another writer's lock is free
        pass
