"""damon_bpf.linux.process: the one liveness check by pid, on fake ``/proc`` contents and on real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from damon_bpf.linux import process

from ..ops.helpers import fake_stat, write_fake_proc


def test_is_running_on_fake_proc(tmp_path: Path) -> None:
    root = str(tmp_path)
    write_fake_proc(tmp_path, 42, "", fake_stat(42, starttime=7))
    assert process.is_running(42, proc_root=root)
    assert process.is_running(42, 7, root)
    assert not process.is_running(42, 8, root)  # another process got the pid
    assert process.start_time(42, root) == 7
    for state in ("Z", "X", "x"):  # exited
        write_fake_proc(tmp_path, 42, "", fake_stat(42, state=state))
        assert not process.is_running(42, proc_root=root)
    assert not process.is_running(43, proc_root=root) and process.start_time(43, root) is None
    assert not process.is_running(0) and not process.is_running(-1)
    write_fake_proc(tmp_path, 44, "", "garbage")
    assert process.is_running(44, proc_root=root)  # cannot tell: running


def test_is_running_and_comm_of_real_processes() -> None:
    me = os.getpid()
    assert process.is_running(me, process.start_time(me))
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert process.is_running(child.pid) and process.comm(child.pid) == "sleep"
        child.kill()
        while process.is_running(child.pid):  # a zombie until reaped: not running
            os.sched_yield()
    finally:
        child.kill()
        child.wait()
    assert process.comm(child.pid) == ""
