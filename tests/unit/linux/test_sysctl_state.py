"""The sysctl records in the state folder (issue #17): only damon-bpf's own sysctls and values are restored, only
from files the folder's owner wrote, and sessions in several processes share a change (the last one restores).

The sysctls here are files in a temporary folder (``sysctl._path`` replaced), and no watchdog is started: nothing
touches the machine's sysctls. The real ones are tests/kernel/test_sysctl.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux import sysctl
from damon_bpf.linux.process import start_time
from damon_bpf.linux.sysctl import SysctlOverride, restore_stale

DEAD = 2**22 + 11  # above pid_max's default: no such process


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    for name, value in (("kernel.numa_balancing", "0"), ("kernel.bpf_stats_enabled", "0"),
                        ("kernel.task_delayacct", "0"), ("kernel.core_pattern", "core")):
        (proc / name).write_text(value + "\n")
    monkeypatch.setattr(sysctl, "_path", lambda name: proc / name)
    monkeypatch.setattr(sysctl, "start_watchdog", lambda state_dir=None: None)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


def value(state: Path, name: str) -> str:
    return (state.parent / "proc" / name).read_text().strip()


def put(state: Path, filename: str, content: dict[str, object], mode: int = 0o600) -> Path:
    p = state / filename
    p.write_text(json.dumps(content))
    os.chmod(p, mode)
    return p


def test_only_damon_bpfs_sysctls_and_values_are_restored(fake: Path, caplog: pytest.LogCaptureFixture) -> None:
    # whoever can write in the state folder must not get a root write of kernel.core_pattern or kernel.modprobe
    bad = [
        put(fake, "sysctl-kernel.core_pattern.json", {"name": "kernel.core_pattern", "value": "core",
                                                      "original": "|/tmp/evil", "holders": [{"pid": DEAD}]}),
        put(fake, "sysctl-kernel.numa_balancing.json", {"name": "kernel.numa_balancing", "value": "1",
                                                        "original": "|/tmp/evil", "holders": [{"pid": DEAD}]}),
        put(fake, f"sysctl-kernel.core_pattern-{DEAD}.json", {"pid": DEAD, "name": "kernel.core_pattern",
                                                              "original": "|/tmp/evil"}),
        put(fake, f"sysctl-kernel.modprobe-{DEAD}.json", {"pid": DEAD, "name": "kernel.modprobe",
                                                          "original": "/tmp/evil"}),
    ]
    assert restore_stale(fake) == []
    assert value(fake, "kernel.core_pattern") == "core" and value(fake, "kernel.numa_balancing") == "0"
    assert "not a value damon-bpf sets or restores" in caplog.text
    assert all(p.exists() for p in bad)
    with pytest.raises(InvalidParamsError, match="does not change sysctl kernel.core_pattern"):
        SysctlOverride("kernel.core_pattern", "|/tmp/evil", fake)


def test_records_that_are_not_the_owners_regular_files_are_ignored(fake: Path, tmp_path: Path) -> None:
    rec = {"name": "kernel.numa_balancing", "value": "1", "original": "3", "holders": [{"pid": DEAD}]}
    put(fake, "sysctl-kernel.numa_balancing.json", rec, mode=0o666)  # others could have written it
    assert restore_stale(fake) == [] and value(fake, "kernel.numa_balancing") == "0"
    (fake / "sysctl-kernel.numa_balancing.json").unlink()
    elsewhere = put(tmp_path, "elsewhere.json", rec)
    (fake / "sysctl-kernel.numa_balancing.json").symlink_to(elsewhere)
    assert restore_stale(fake) == [] and value(fake, "kernel.numa_balancing") == "0"


def test_a_dead_sessions_change_is_restored(fake: Path) -> None:
    put(fake, "sysctl-kernel.numa_balancing.json", {"name": "kernel.numa_balancing", "value": "1",
                                                    "original": "2", "holders": [{"pid": DEAD}]})
    put(fake, f"sysctl-kernel.task_delayacct-{DEAD}.json", {"pid": DEAD, "name": "kernel.task_delayacct",
                                                            "original": "1"})  # an older version's record
    assert sorted(restore_stale(fake)) == ["kernel.numa_balancing", "kernel.task_delayacct"]
    assert value(fake, "kernel.numa_balancing") == "2" and value(fake, "kernel.task_delayacct") == "1"
    assert not [p for p in fake.iterdir() if p.name.startswith("sysctl-")]


def test_a_live_sessions_change_stays(fake: Path) -> None:
    me = {"pid": os.getpid(), "starttime": start_time(os.getpid())}
    put(fake, "sysctl-kernel.numa_balancing.json", {"name": "kernel.numa_balancing", "value": "1",
                                                    "original": "0", "holders": [me]})
    (fake.parent / "proc" / "kernel.numa_balancing").write_text("1\n")
    assert restore_stale(fake) == [] and value(fake, "kernel.numa_balancing") == "1"
    # the same pid with another start time is another process: its holder is gone
    put(fake, "sysctl-kernel.numa_balancing.json", {"name": "kernel.numa_balancing", "value": "1",
                                                    "original": "0", "holders": [dict(me, starttime=1)]})
    assert restore_stale(fake) == ["kernel.numa_balancing"] and value(fake, "kernel.numa_balancing") == "0"


def _other_session(fake: Path) -> subprocess.Popen[str]:
    # a live process, standing for another damon-bpf session that holds kernel.numa_balancing=1
    child = subprocess.Popen([sys.executable, "-c", "import time; print(1, flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "1"
    put(fake, "sysctl-kernel.numa_balancing.json", {"name": "kernel.numa_balancing", "value": "1", "original": "0",
                                                    "holders": [{"pid": child.pid, "starttime": start_time(child.pid)}]})
    (fake.parent / "proc" / "kernel.numa_balancing").write_text("1\n")
    return child


def test_sessions_in_two_processes_share_a_change(fake: Path) -> None:
    # issue #17 item 6: the first session to end switched kernel.numa_balancing off under the second
    child = _other_session(fake)
    try:
        ov = SysctlOverride("kernel.numa_balancing", "1", fake).apply()
        assert ov.original == "0"
        rec = json.loads((fake / "sysctl-kernel.numa_balancing.json").read_text())
        assert [h["pid"] for h in rec["holders"]] == [child.pid, os.getpid()]
        ov.restore()  # the other session still needs it
        assert value(fake, "kernel.numa_balancing") == "1"
        rec = json.loads((fake / "sysctl-kernel.numa_balancing.json").read_text())
        assert [h["pid"] for h in rec["holders"]] == [child.pid]
        ov2 = SysctlOverride("kernel.numa_balancing", "1", fake).apply()
        child.kill()
        child.wait()
        ov2.restore()  # now the last one: the original comes back
        assert value(fake, "kernel.numa_balancing") == "0"
        assert not (fake / "sysctl-kernel.numa_balancing.json").exists()
    finally:
        child.kill()
        child.wait()


def test_another_value_held_by_another_session_is_refused(fake: Path) -> None:
    child = _other_session(fake)
    try:
        with pytest.raises(InvalidParamsError,
                           match=f"kernel.numa_balancing is held at 1 by damon-bpf session {child.pid}; cannot set "
                                 "it to 2 at the same time"):
            SysctlOverride("kernel.numa_balancing", "2", fake).apply()
        assert value(fake, "kernel.numa_balancing") == "1"
    finally:
        child.kill()
        child.wait()
    assert restore_stale(fake) == ["kernel.numa_balancing"] and value(fake, "kernel.numa_balancing") == "0"


def test_the_first_override_records_before_it_changes(fake: Path) -> None:
    with SysctlOverride("kernel.bpf_stats_enabled", "1", fake) as ov:
        assert value(fake, "kernel.bpf_stats_enabled") == "1" and ov.original == "0"
        rec = json.loads((fake / "sysctl-kernel.bpf_stats_enabled.json").read_text())
        assert rec["original"] == "0" and rec["holders"][0]["pid"] == os.getpid()
        assert oct((fake / "sysctl-kernel.bpf_stats_enabled.json").stat().st_mode & 0o777) == "0o600"
    assert value(fake, "kernel.bpf_stats_enabled") == "0"
    assert not (fake / "sysctl-kernel.bpf_stats_enabled.json").exists()


def test_held_sysctls(fake: Path, tmp_path: Path) -> None:
    # what the bench's guard reads: which sysctls live sessions hold, at which values, and who holds them
    assert sysctl.held_sysctls(tmp_path / "none") == [] and sysctl.held_sysctls(fake) == []
    put(fake, "sysctl-kernel.task_delayacct.json", {"name": "kernel.task_delayacct", "value": "1",
                                                    "original": "0", "holders": [{"pid": DEAD}]})
    assert sysctl.held_sysctls(fake) == []  # only a dead session held it
    child = _other_session(fake)
    try:
        with SysctlOverride("kernel.numa_balancing", "1", fake):
            assert sysctl.held_sysctls(fake) == [
                sysctl.HeldSysctl("kernel.numa_balancing", "1", "0", (child.pid, os.getpid()))]
    finally:
        child.kill()
        child.wait()
