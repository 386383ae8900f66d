"""damon_bpf.linux.proc_events on this kernel: the process-events connector follows real forks and exits (root).

The follower's roots are processes these tests start; the test process itself keeps spawning unrelated
processes meanwhile, which must not be reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from damon_bpf.linux.proc_events import ChangeKind, ChildFollower, ProcChange, scan_descendants

FORK, EXEC, EXIT = ChangeKind.FORK, ChangeKind.EXEC, ChangeKind.EXIT
T = TypeVar("T")

# The root: says it is ready (its exec is over: no late exec event), waits for a line on stdin (the follower
# listens by then), starts a thread (not a process: not reported), forks a child that forks a grandchild and exits
# before it (the orphan is re-parented, but still followed), reports both pids on stdout, and exits on a second
# line.
FAMILY = r"""
import os, sys, threading, time
print("ready", flush=True)
sys.stdin.readline()
t = threading.Thread(target=time.sleep, args=(0.2,))
t.start()
r, w = os.pipe()
child = os.fork()
if child == 0:
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(0.6)
        os._exit(0)
    os.write(w, b"%d\n" % grandchild)
    time.sleep(0.2)
    os._exit(3)
grandchild = int(os.read(r, 64))
print(child, grandchild, flush=True)
t.join()
os.waitpid(child, 0)
sys.stdin.readline()
"""


def wait_for(fn: Callable[[], T], timeout_s: float = 5.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def collect(f: ChildFollower, until: Callable[[list[ProcChange]], bool], timeout_s: float = 5.0,
            spawn_unrelated: list[int] | None = None) -> list[ProcChange]:
    changes: list[ProcChange] = []
    deadline = time.monotonic() + timeout_s
    while not until(changes) and time.monotonic() < deadline:
        if spawn_unrelated is not None:
            p = subprocess.Popen(["true"])
            spawn_unrelated.append(p.pid)
            p.wait()
        changes += f.poll(timeout_s=0.05)
    return changes


def test_follows_children_and_grandchildren() -> None:
    root = subprocess.Popen([sys.executable, "-c", FAMILY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert root.stdin is not None and root.stdout is not None
    unrelated: list[int] = []
    try:
        assert root.stdout.readline() == "ready\n"
        with ChildFollower([root.pid]) as f:
            assert f.tracked() == {root.pid}
            root.stdin.write("go\n")
            root.stdin.flush()
            child, grandchild = map(int, root.stdout.readline().split())

            def both_exited(changes: list[ProcChange]) -> bool:
                return {c.pid for c in changes if c.kind is EXIT} >= {child, grandchild}

            changes = collect(f, both_exited, spawn_unrelated=unrelated)
            forks = [(c.pid, c.ppid) for c in changes if c.kind is FORK]
            exits = [(c.pid, c.ppid) for c in changes if c.kind is EXIT]
            assert forks == [(child, root.pid), (grandchild, child)], changes
            assert sorted(exits) == sorted([(child, root.pid), (grandchild, child)]), changes
            assert all(c.kind is not EXEC for c in changes), changes
            assert unrelated and not {c.pid for c in changes} & set(unrelated)
            assert f.tracked() == {root.pid}
            assert f.nr_overruns == 0

            root.stdin.write("exit\n")
            root.stdin.flush()
            root.wait(timeout=5)
            changes = collect(f, lambda cs: bool(cs))
            assert changes == [ProcChange(EXIT, root.pid, 0)]
            assert f.tracked() == set()
    finally:
        root.kill()
        root.wait()


def test_exec_reported() -> None:
    root = subprocess.Popen(["bash", "-c", "echo ready; read; /bin/true; read"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert root.stdin is not None and root.stdout is not None
    try:
        assert root.stdout.readline() == "ready\n"
        with ChildFollower([root.pid]) as f:
            root.stdin.write("\n")
            root.stdin.flush()
            changes = collect(f, lambda cs: any(c.kind is EXIT for c in cs))
            assert len(changes) == 3, changes
            child = changes[0].pid
            assert changes == [ProcChange(FORK, child, root.pid), ProcChange(EXEC, child, root.pid),
                               ProcChange(EXIT, child, root.pid)]
            root.stdin.write("\n")
            root.stdin.flush()
            root.wait(timeout=5)
    finally:
        root.kill()
        root.wait()


def test_existing_descendants_found() -> None:
    # bash -> sleep, both already running when following starts
    root = subprocess.Popen(["bash", "-c", "sleep 30 & wait"])
    try:
        # once the child runs sleep, its exec is over: no late exec event
        kids = wait_for(lambda: {p for p in scan_descendants([root.pid]) if comm(p) == "sleep"})
        assert len(kids) == 1
        (sleeper,) = kids
        assert {root.pid, sleeper} <= scan_descendants([os.getpid()])
        with ChildFollower([root.pid]) as f:
            assert f.tracked() == {root.pid, sleeper}
            os.kill(sleeper, signal.SIGTERM)
            changes = collect(f, lambda cs: any(c.pid == root.pid for c in cs))
            assert changes == [ProcChange(EXIT, sleeper, root.pid), ProcChange(EXIT, root.pid, 0)], changes
    finally:
        root.kill()
        root.wait()


def test_overrun_resyncs_from_proc() -> None:
    # A tiny receive buffer and a stalled listener (its lock held) lose events; the follower must notice
    # (ENOBUFS), count it, and find the new descendant by scanning /proc.
    root = subprocess.Popen(
        ["bash", "-c", "echo ready; read; sleep 30 & for i in $(seq 40); do /bin/true; done; wait"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert root.stdin is not None and root.stdout is not None
    try:
        assert root.stdout.readline() == "ready\n"
        with ChildFollower([root.pid], rcvbuf_bytes=1) as f:
            with f._cond:  # stall the listener: it blocks on the lock with events queueing in the socket
                root.stdin.write("\n")
                root.stdin.flush()
                sleeper = wait_for(lambda: [p for p in scan_descendants([root.pid]) if comm(p) == "sleep"])
                assert sleeper
                time.sleep(0.2)  # let the loop finish
            changes = collect(f, lambda cs: f.nr_overruns > 0 and any(c.pid == sleeper[0] for c in cs),
                              timeout_s=3)
            assert f.nr_overruns > 0
            assert sleeper[0] in f.tracked(), changes
            assert ProcChange(FORK, sleeper[0], root.pid) in changes
    finally:
        root.kill()
        root.wait()
        for p in scan_descendants([os.getpid()]):
            if p != root.pid:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.nokernel
def test_scan_descendants_of_self_has_no_strangers() -> None:
    # runs anywhere: our own descendants are the processes we started
    p = subprocess.Popen(["sleep", "5"])
    try:
        assert p.pid in wait_for(lambda: scan_descendants([os.getpid()]))
        assert os.getppid() not in scan_descendants([os.getpid()])
    finally:
        p.kill()
        p.wait()
