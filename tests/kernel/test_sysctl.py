"""Sysctl overrides: shared within a process and across processes (the last restore puts the value back; issue #17),
refused at a conflicting value, and restored by the watchdog when the process is SIGKILLed (issue #12)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.sysctl import SysctlOverride, read_sysctl

NAME = "kernel.bpf_stats_enabled"


def test_overrides_share_the_change() -> None:
    before = read_sysctl(NAME)
    other = "0" if before == "1" else "1"
    a = SysctlOverride(NAME, other).apply()
    b = SysctlOverride(NAME, other).apply()
    try:
        assert read_sysctl(NAME) == other and a.original == before and b.original == before
        with pytest.raises(InvalidParamsError):
            SysctlOverride(NAME, before).apply()
        a.restore()
        assert read_sysctl(NAME) == other  # b still needs it
        a.restore()  # idempotent: does not count twice
        assert read_sysctl(NAME) == other
    finally:
        b.restore()
        a.restore()
    assert read_sysctl(NAME) == before


def test_watchdog_restores_after_sigkill() -> None:
    before = read_sysctl(NAME)
    other = "0" if before == "1" else "1"
    code = (f"from damon_bpf.linux.sysctl import SysctlOverride\nimport time\n"
            f"SysctlOverride({NAME!r}, {other!r}).apply()\nprint('set', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "set"
    assert read_sysctl(NAME) == other
    p.kill()
    t0 = time.monotonic()
    while read_sysctl(NAME) != before and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    dt = time.monotonic() - t0
    p.wait()
    assert read_sysctl(NAME) == before
    assert dt < 1.0, f"restored only after {dt:.2f} s"


def _session(value: str) -> subprocess.Popen[str]:
    # another damon-bpf process holding NAME at *value* until its standard input closes
    code = (f"import sys\nfrom damon_bpf.linux.sysctl import SysctlOverride\n"
            f"o = SysctlOverride({NAME!r}, {value!r}).apply()\nprint('set', flush=True)\nsys.stdin.read()\n"
            f"o.restore()\nprint('restored', flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "set"
    return p


def test_sessions_in_two_processes_share_the_change() -> None:
    # issue #17 item 6: the first of two --numa-hint-faults sessions to exit put the sysctls back under the other
    before = read_sysctl(NAME)
    other = "0" if before == "1" else "1"
    p = _session(other)
    try:
        assert read_sysctl(NAME) == other
        with pytest.raises(InvalidParamsError, match=f"held at {other} by damon-bpf session {p.pid}; cannot set"):
            SysctlOverride(NAME, before).apply()
        mine = SysctlOverride(NAME, other).apply()
        assert mine.original == before
        p.communicate("", timeout=10)  # the first session ends first: the sysctl stays, this one needs it
        assert p.returncode == 0
        assert read_sysctl(NAME) == other
        mine.restore()  # the last one restores
        assert read_sysctl(NAME) == before
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
