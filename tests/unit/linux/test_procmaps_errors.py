"""The /proc permission message says what actually denied the read (issue #12): without CAP_SYS_PTRACE it names
what is needed; with it (root), it does not tell the caller to become what it already is."""

from __future__ import annotations

import errno

import pytest

from damon_bpf.errors import PermissionDeniedError, TargetGoneError
from damon_bpf.linux import procmaps


@pytest.mark.parametrize("has_cap", [True, False])
def test_permission_message_follows_the_callers_capabilities(monkeypatch: pytest.MonkeyPatch, has_cap: bool) -> None:
    monkeypatch.setattr(procmaps, "_has_cap_sys_ptrace", lambda: has_cap)
    err = procmaps._proc_error(PermissionError(errno.EACCES, "Permission denied"), 1, "maps")
    assert isinstance(err, PermissionDeniedError)
    msg = str(err)
    assert msg.startswith("cannot read /proc/1/maps: Permission denied")
    if has_cap:
        assert "although this process has CAP_SYS_PTRACE" in msg and "needs root" not in msg
    else:
        assert "needs root or CAP_SYS_PTRACE" in msg


def test_gone_and_capability_read() -> None:
    assert isinstance(procmaps._proc_error(FileNotFoundError(errno.ENOENT, "x"), 7, "maps"), TargetGoneError)
    with open("/proc/self/status") as f:
        eff = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    assert procmaps._has_cap_sys_ptrace() == bool(eff >> 19 & 1)
