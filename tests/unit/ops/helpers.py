"""Shared helpers for the ops tests: a fake clock, fake /proc contents and child processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


class FakeClock:
    """A CLOCK_MONOTONIC stand-in whose sleep advances time instead of waiting; *on_sleep* runs after each."""

    def __init__(self, start_ns: int = 10**12, on_sleep=None) -> None:  # type: ignore[no-untyped-def]
        self.now = start_ns
        self.nr_sleeps = 0
        self.on_sleep = on_sleep

    def clock_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(round(seconds * 1e9))
        self.nr_sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep(self)


def fake_stat(pid: int, comm: str = "fake", state: str = "S", flags: int = 0x400000, starttime: int = 1000) -> str:
    """A ``/proc/<pid>/stat`` line with the fields the ops read (3 state, 9 flags, 22 starttime)."""
    return (f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {starttime} "
            f"1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")


def write_fake_proc(root: Path, pid: int, maps: str, stat: str | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "maps").write_text(maps)
    (d / "stat").write_text(stat if stat is not None else fake_stat(pid))


def spawn_sleeper(seconds: int = 30) -> subprocess.Popen[bytes]:
    """A ``sleep`` child that has finished starting (sleeping in nanosleep, its mappings settled)."""
    p = subprocess.Popen(["sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            with open(f"/proc/{p.pid}/wchan") as f:
                wchan = f.read()
        except OSError:
            wchan, state = "", ""
        # wchan reads "0" where the kernel hides it; the state alone must do then
        if state == "S" and ("sleep" in wchan or not wchan.strip("0\n")):
            break
        time.sleep(0.002)
    return p


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid
