"""``damon-bpf import`` of a real perf recording: ``perf record -e page-faults -d -p PID`` of a process that
faults continuously in a hot part of its memory, then the record and its code attribution.

Needs root (``perf record`` of another process, the kernel-test gate) and ``perf`` (``linux-perf``); without
perf the tests skip, or fail under ``DAMON_BPF_REQUIRE_KERNEL=1``. Only software page faults are exercised here
(the development machine has no PMU): with ``-c 1`` every fault is a sample (the interval-hit rule), with perf's
default frequency mode each sample carries a period (the density estimate).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from damon_bpf.engine import Attrs
from tests.conftest import kernel_required

MiB = 1 << 20

# Maps 64 MiB, prints its address, waits for a line on stdin (perf is attached by then), touches all of it once,
# then keeps dropping (MADV_DONTNEED) and re-touching random pages of the first 8 MiB: a continuous fault signal
# in the hot part, none in the rest after the first touch.
CHILD = r"""
import mmap, ctypes, random, sys, time
SIZE, HOT = 64 << 20, 8 << 20
m = mmap.mmap(-1, SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(addr, SIZE, flush=True)
sys.stdin.readline()
for off in range(0, SIZE, 4096):
    m[off] = 1
pages = HOT // 4096
while True:
    m.madvise(mmap.MADV_DONTNEED, 0, HOT)
    for p in random.sample(range(pages), 64):
        m[p * 4096] = 2
    time.sleep(0.002)
"""


def _perf() -> str:
    perf = shutil.which("perf")
    if perf is None:
        msg = "perf is not installed (apt install linux-perf)"
        if kernel_required():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return perf


class _Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        a, size = self.proc.stdout.readline().split()
        self.addr, self.size = int(a), int(size)
        self.hot_end = self.addr + 8 * MiB
        self.pid = self.proc.pid

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _record(perf: str, child: _Child, out: Path, extra: list[str], seconds: float = 2.0) -> None:
    p = subprocess.Popen([perf, "record", "-e", "page-faults", "-d", *extra, "-p", str(child.pid), "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # perf attached before the child starts touching
    child.go()
    time.sleep(seconds)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, -signal.SIGINT), err  # perf re-raises SIGINT after writing the file
    assert "Captured and wrote" in err, err
    assert out.exists() and out.stat().st_size > 0, err


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Child, Path, Path]]:
    perf = _perf()
    d = tmp_path_factory.mktemp("perf")
    exact, freq = d / "exact.data", d / "freq.data"
    child = _Child()
    child2 = None
    try:
        _record(perf, child, exact, ["-c", "1"])
        child2 = _Child()
        _record(perf, child2, freq, [])
        yield child, exact, freq
    finally:
        child.close()
        if child2 is not None:
            child2.close()


def _hot_cold(path: str, addr: int, hot_end: int, end: int, last: int = 5) -> tuple[float, float, int]:
    from damon_bpf.attribution import load_record

    (rr,) = load_record(path)
    hot, cold = [], []
    for _, s, e, nr, _ in rr.snapshots[-last:]:
        def mean(lo: int, hi: int) -> float:
            ov = np.maximum(0, np.minimum(e, hi) - np.maximum(s, lo))
            return float((nr * ov).sum() / max(ov.sum(), 1))
        hot.append(mean(addr, hot_end))
        cold.append(mean(hot_end, end))
    return float(np.mean(hot)), float(np.mean(cold)), len(rr.snapshots)


def test_import_exact_page_faults(recordings: tuple[_Child, Path, Path], tmp_path: Path) -> None:
    from damon_bpf.cli.import_perf import import_perf

    child, exact, _ = recordings
    out = tmp_path / "damon.data"
    res = import_perf(str(exact), str(out), Attrs(sample_interval_us=5_000, aggr_interval_us=100_000,
                                                  ops_update_interval_us=1_000_000), pids=[child.pid], seed=0)
    r = res.replay
    assert r.pids == [child.pid] and not r.density and r.nr_samples[0] > 1000
    assert 1.5 <= (r.end_ns - r.start_ns) / 1e9 <= 4.0
    hot, cold, nr = _hot_cold(str(out), child.addr, child.hot_end, child.addr + child.size)
    assert nr >= 15
    # hot: up to ~30k faults/s over 2048 pages (fewer on a loaded machine), most sampling intervals see some;
    # cold: touched once at the start, nothing since
    assert hot >= 2 and cold <= 0.5 and hot >= 4 * cold, (hot, cold)
    # the sidecar: code attribution for the hot range, with perf's names
    side = Path(str(out) + ".attribution")
    lines = side.read_text().splitlines()
    assert lines and '"ips"' in lines[0] and f'"pid":{child.pid}' in lines[0]


def test_import_frequency_mode_uses_density(recordings: tuple[_Child, Path, Path], tmp_path: Path) -> None:
    from damon_bpf.cli import main

    _, _, freq = recordings
    out = tmp_path / "freq.damon"
    assert main(["import", str(freq), "-o", str(out), "--seed", "0"]) == 0
    from damon_bpf.attribution import read_attribution

    lines = read_attribution(str(out) + ".attribution")
    pid = lines[0]["pid"]
    # the second child's address is not known here: find its 64 MiB area as the biggest sampled range
    from damon_bpf.attribution import load_record

    (rr,) = load_record(str(out))
    _, s, e, nr, _ = rr.snapshots[-1]
    assert nr.max() > 0 and pid > 0
    hot_bytes = int(((e - s) * (nr > 0)).sum())
    assert 1 * MiB <= hot_bytes <= 24 * MiB, hot_bytes  # the 8 MiB hot part, give or take region edges


def test_import_then_report_code(recordings: tuple[_Child, Path, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from damon_bpf.cli import import_perf as imp
    from damon_bpf.cli import report_code

    child, exact, _ = recordings
    out = tmp_path / "damon.data"
    p = argparse.ArgumentParser()
    imp.add_arguments(p)
    assert imp.run(p.parse_args([str(exact), "-o", str(out), "--pid", str(child.pid)])) == 0
    p = argparse.ArgumentParser()
    report_code.add_arguments(p)
    folded = tmp_path / "out.folded"
    assert report_code.run(p.parse_args(["-i", str(out), "--top", "2", "--folded", str(folded)])) == 0
    text = capsys.readouterr().out
    assert "# hottest regions" in text and "# coldest regions" in text
    rows = folded.read_text().splitlines()
    assert rows and all(r.rsplit(" ", 1)[1].isdigit() and r.count(";") >= 2 for r in rows)
    # the child is python: its faulting code is in the interpreter (perf names it, or bcc while it runs)
    assert "python" in text


def test_damo_reads_the_imported_record(recordings: tuple[_Child, Path, Path], tmp_path: Path) -> None:
    from damon_bpf.cli.import_perf import import_perf

    child, exact, _ = recordings
    out = tmp_path / "damon.data"
    import_perf(str(exact), str(out), Attrs(ops_update_interval_us=1_000_000), pids=[child.pid], attribution=False)
    damo = Path(sys.executable).with_name("damo")
    if not damo.exists():
        pytest.skip("damo is not installed in this environment")
    for cmd in (["report", "heatmap"], ["report", "access"]):
        p = subprocess.run([str(damo), *cmd, "--input", str(out)], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, TERM="dumb"))
        assert p.returncode == 0, (cmd, p.stderr)
