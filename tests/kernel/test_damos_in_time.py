"""DAMOS in time with the default monitor (issue #16, goal 5): the README's pageout recipe, ``monitor PID
--damos_action pageout --damos_access_rate 0% 0% --damos_age TIME max`` with no interval options (the pte source
chooses its intervals and changes them while it runs), pages out cold file-backed memory within twice its age."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from damon_bpf.workload import disk_backed_dir

MiB = 1 << 20
_CHILD = r"""
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
size = int(sys.argv[2]) << 20
os.ftruncate(fd, size)
m = mmap.mmap(fd, size)
for i in range(0, size, 4096):
    m[i] = 1
m.flush()
print("ready", flush=True)
sys.stdin.readline()
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            return int(line.split()[1])
    raise AssertionError("no Rss line")


def test_pageout_recipe_with_the_defaults_cuts_rss_within_twice_its_age() -> None:
    age_s, size_mib = 3, 128
    with tempfile.TemporaryDirectory(dir=disk_backed_dir()) as tmp:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, os.path.join(tmp, "cold.dat"), str(size_mib)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            rss0 = _rss_kib(child.pid)
            assert rss0 >= size_mib * 1024 * 0.9, rss0
            mon = subprocess.Popen(
                [sys.executable, "-m", "damon_bpf", "monitor", str(child.pid), "--json", "--duration", "12s",
                 "--damos_action", "pageout", "--damos_access_rate", "0%", "0%", "--damos_age", f"{age_s}s", "max"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert mon.stdout is not None
            first = mon.stdout.readline()  # the first snapshot: monitoring has begun (the BPF compile is done)
            assert first, mon.stderr.read() if mon.stderr else ""
            t0 = json.loads(first)["time"]
            dropped_at = None
            intervals = set()
            for line in mon.stdout:
                snap = json.loads(line)
                intervals.add(snap["aggr_us"])
                if dropped_at is None and _rss_kib(child.pid) < rss0 * 0.5:
                    dropped_at = snap["time"] - t0
            rc = mon.wait(timeout=30)
            err = mon.stderr.read() if mon.stderr else ""
            assert rc == 0, err
            assert dropped_at is not None, f"RSS never halved: {_rss_kib(child.pid)} of {rss0} KiB; {err}"
            assert dropped_at <= 2 * age_s, (dropped_at, sorted(intervals))
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
