"""DAMOS never changes what a process reads: the bundled workload in its integrity mode (``--verify``: every byte
a known pattern, checked at every phase end and at exit) runs under each DAMOS action damon-bpf applies here,
file-backed so that pageout really drops pages, and must exit 0 (issue #12)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damon_bpf.workload import disk_backed_dir

# actions the vaddr family applies on this machine (migrations need a second memory node; hugepage and
# nohugepage are refused: process_madvise() does not take them)
ACTIONS = ("pageout", "cold", "willneed", "lru_deprio", "collapse", "stat")


@pytest.mark.parametrize("action", ACTIONS)
def test_workload_data_survives_damos(action: str, tmp_path: Path) -> None:
    wl = subprocess.Popen([sys.executable, "-m", "damon_bpf.workload", "--pattern", "hotcold", "--scale", "0.25",
                           "--threads", "2", "--duration", "9s", "--verify", "--file-backed", disk_backed_dir()],
                          stderr=subprocess.PIPE, text=True)
    try:
        assert wl.stderr is not None
        first = wl.stderr.readline()
        assert "pid" in first, first
        time.sleep(0.5)
        mon = subprocess.run(
            [sys.executable, "-m", "damon_bpf", "monitor", str(wl.pid), "--source", "pte", "--sample", "5ms",
             "--aggr", "100ms", "--duration", "6s", "--json", "--damos_action", action,
             "--damos_access_rate", "0%", "100%", "--damos_age", "0", "max"],
            capture_output=True, text=True, timeout=60)
        assert mon.returncode == 0, mon.stderr
        last = json.loads(mon.stdout.strip().splitlines()[-1])
        (scheme,) = last["schemes"]
        assert scheme["action"] == action
        stats = scheme["stats"]
        assert stats["nr_tried"] > 0, stats
        if action in ("pageout", "cold", "willneed"):
            assert stats["sz_applied"] > 0, stats
        rest = wl.communicate(timeout=30)[1]
    finally:
        if wl.poll() is None:
            wl.kill()
            wl.wait()
    assert wl.returncode == 0, f"the workload's data changed under DAMOS {action}: {rest}"
    assert "no difference" in rest, rest
