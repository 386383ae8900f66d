"""A monitor killed with SIGKILL leaves nothing behind: its child dies with it, the sysctls it changed come back
within a second (its watchdog), its BPF programs are gone, and the next read of its record shows every
snapshot the journal had (issue #12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from damon_bpf.linux.sysctl import read_sysctl
from damon_bpf.results.records import JOURNAL_SUFFIX, read_records, recover

BPF_STATS = "kernel.bpf_stats_enabled"


def _our_bpf_progs() -> set[str]:
    # program ids of the fault source's programs loaded right now
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":", 1)[0] for line in out.splitlines() if "on_fault" in line}


def _wait(cond, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            break
        time.sleep(0.02)
    return time.monotonic() - t0


def _nr_journal_snapshots(journal: Path) -> int:
    if not journal.exists():
        return 0
    n = 0
    for line in journal.read_text().splitlines():
        try:
            n += json.loads(line).get("type") == "snapshot"
        except ValueError:  # a line being written
            pass
    return n


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_of_record_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "killed.data"
    before = read_sysctl(BPF_STATS)
    progs_before = _our_bpf_progs()
    child_code = "import time\nb = bytearray(32 << 20)\nwhile True:\n    b[::4096] = b'x' * (len(b) // 4096)\n    time.sleep(0.01)\n"
    rec = subprocess.Popen([sys.executable, "-m", "damon_bpf", "record", "--source", "fault", "--aggr", "100ms",
                            "--flush", "60s", "-o", str(out), "--", sys.executable, "-c", child_code],
                           stderr=subprocess.PIPE, text=True)
    try:
        assert rec.stderr is not None
        # a killed recording of an earlier run may be completed (and said so) before this one starts
        lines = [rec.stderr.readline()]
        while "recording pid" not in lines[-1] and lines[-1] and len(lines) < 20:
            lines.append(rec.stderr.readline())
        line = lines[-1]
        assert "recording pid" in line, "".join(lines)
        child = int(line.split("recording pid", 1)[1].split()[0])
        journal = Path(str(out) + JOURNAL_SUFFIX)
        # wait until the journal holds a few snapshots more than the body (rewrites only every 60 s)
        t_journal = _wait(lambda: _nr_journal_snapshots(journal) >= 12, 30)
        assert t_journal < 30, "the journal did not get 12 snapshots in 30 s"
        assert read_sysctl(BPF_STATS) == "1"  # the session turned BPF run-time stats on
        assert _our_bpf_progs() - progs_before
    finally:
        rec.send_signal(signal.SIGKILL)
        rec.wait()
    _wait(lambda: not _alive(child), 5)
    assert not _alive(child), "the command started with 'record --' outlived the SIGKILLed monitor"
    _wait(lambda: read_sysctl(BPF_STATS) == before, 5)
    assert read_sysctl(BPF_STATS) == before, f"{BPF_STATS} was left at 1 after the monitor was killed"
    # the kernel drops a program when its last reference goes; the perf event of a tracepoint lets go of it
    # a little after the process is reaped (tens of milliseconds here), so wait, but not long (the waits bound
    # how long each takes; how fast they are is the soak's figure, not a test's: scripts/soak.py)
    _wait(lambda: not (_our_bpf_progs() - progs_before), 5)
    assert not (_our_bpf_progs() - progs_before), "BPF programs of the killed monitor are still loaded"
    # the record: its body was written once (at start), the journal has the rest; reading completes it
    nr_journal = sum(len(r.snapshots) for r in recover(str(out) + JOURNAL_SUFFIX))
    assert nr_journal >= 12
    told: list[int] = []
    records = read_records(str(out), on_recover=lambda path, n: told.append(n))
    assert sum(len(r.snapshots) for r in records) == nr_journal
    assert told and told[0] > 0
    # the file itself now holds them (damo reads it), and a second read has nothing left to recover
    again: list[int] = []
    assert sum(len(r.snapshots) for r in read_records(str(out), on_recover=lambda p, n: again.append(n))) \
        == nr_journal
    assert again == []
    r = subprocess.run([sys.executable, "-m", "damon_bpf", "report", "wss", "-i", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(out) > 0
