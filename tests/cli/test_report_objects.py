"""``damon-bpf report objects``: a record's hottest and coldest objects by name, from ``--maps``, damo's
``FILE.vmas`` side file or the live process, and the one-line errors when no mappings are known.

The record is synthetic: the distribution's libc placed at a load bias (the mappings the loader makes, built
from libc's own program headers), its 16 KiB ``__pthread_keys`` (in ``.bss``) accessed in every sampling
interval, and a 64 MiB anonymous mapping never accessed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.linux.elf import read_elf
from damon_bpf.results.records import Intervals, Record, RecordSnapshot, write_records
from tests.elf_maps import damo_vmas, loader_maps

LIBC = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                         "/lib64/libc.so.6") if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(LIBC is None, reason="no glibc at the usual paths")

BIAS = 0x7F12_3450_0000
COLD = (0x7F00_0000_0000, 0x7F00_0400_0000)
DEAD_PID = (1 << 22) + 12345  # above the kernel's largest pid_max: never a process


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damon_bpf", "report", "objects", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def record(tmp_path: Path) -> tuple[Path, Path, int]:
    assert LIBC is not None
    keys = next(y for y in read_elf(LIBC).symbols if y.name == "__pthread_keys")
    hot = BIAS + keys.value
    lines = [f"{COLD[0]:x}-{COLD[1]:x} rw-p 00000000 00:00 0 "] + loader_maps(LIBC, BIAS)
    maps = tmp_path / "maps.txt"
    maps.write_text("\n".join(lines) + "\n")
    lo = int(lines[1].split("-")[0], 16)
    hi = int(lines[-1].split()[0].split("-")[1], 16)
    regions = [(COLD[0], COLD[1], 0), (lo, hot, 0), (hot, hot + keys.size, 20), (hot + keys.size, hi, 0)]
    snaps = []
    for i in range(4):
        t0 = 1_700_000_000 * 10**9 + i * 100_000_000
        a = np.array(regions, dtype=np.int64)
        snaps.append(RecordSnapshot(t0, t0 + 100_000_000, a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy(),
                                    np.full(len(regions), i + 1, dtype=np.int64)))
    rec = tmp_path / "damon.data"
    write_records([Record(0, Intervals(5000, 100_000), snaps, pid=DEAD_PID)], str(rec))
    return rec, maps, hot


def _check(report: dict[str, object], hot_addr: int) -> None:
    [target] = report["targets"]  # type: ignore[index]
    hot, cold = target["hot"], target["cold"]
    assert hot[0]["object"]["name"] == "__pthread_keys" and hot[0]["object"]["addr"] == hot_addr
    assert hot[0]["object"]["section"] == ".bss" and hot[0]["access_rate"] == 1.0
    assert hot[0]["weighted_bytes"] == 16384
    assert cold[0]["object"]["name"] == "anonymous mmap" and cold[0]["object"]["addr"] == COLD[0]
    assert cold[0]["idle_bytes"] == COLD[1] - COLD[0] and cold[0]["age_us"] == 400_000


def test_maps_file(record: tuple[Path, Path, int]) -> None:
    rec, maps, hot = record
    r = cli("-i", str(rec), "--maps", str(maps), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    _check(report, hot)
    assert report["targets"][0]["mappings"] == str(maps)
    text = cli("-i", str(rec), "--maps", str(maps), "--top", "3")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0] == f"# target 0: pid {DEAD_PID}; mappings from {maps}"
    assert lines[1] == "# all of 4 snapshots; access rate: nr_accesses / max, byte-weighted"
    assert lines[4].split()[:5] == ["16.000", "KiB", "100.0%", "100.0%", "__pthread_keys"]
    cold_row = lines[lines.index("# coldest objects (idle bytes: bytes x (1 - access rate))") + 2]
    assert cold_row.split()[:6] == ["64.000", "MiB", "0.0%", "400", "ms", "anonymous"]


def test_damo_vmas_side_file(record: tuple[Path, Path, int]) -> None:
    rec, maps, hot = record
    vmas = damo_vmas(maps.read_text().splitlines())
    Path(str(rec) + ".vmas").write_text(json.dumps([{"time": 1.0, "procvmas": [{"pid": DEAD_PID, "vmas": []}]},
                                                    {"time": 2.0, "procvmas": [{"pid": DEAD_PID, "vmas": vmas}]}]))
    r = cli("-i", str(rec), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    _check(report, hot)
    assert report["targets"][0]["mappings"].endswith(".vmas (its last snapshot of pid %d)" % DEAD_PID)
    regions = cli("-i", str(rec), "--regions", "--top", "1", "--hot")
    assert regions.returncode == 0, regions.stderr
    assert regions.stdout.splitlines()[2].startswith(f"hot  [{hot:#x}-{hot + 16384:#x}) 16.000 KiB")
    assert "__pthread_keys (libc.so.6 .bss, 16.000 KiB at" in regions.stdout


def test_no_mappings_is_one_line(record: tuple[Path, Path, int], tmp_path: Path) -> None:
    rec, _, _ = record
    r = cli("-i", str(rec))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert f"no mappings for pid {DEAD_PID}" in r.stderr and ".vmas" in r.stderr and "--maps" in r.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = cli("-i", str(rec), "--maps", str(fifo))
    assert r.returncode == 2 and "a FIFO, not a regular file" in r.stderr
    bad = Path(str(rec) + ".vmas")
    bad.write_text('{"not": "a list"}')
    r = cli("-i", str(rec))
    assert r.returncode == 2 and "not damo's vmas format" in r.stderr
    r = cli("--pid", "1", "--maps", str(bad))
    assert r.returncode == 2 and "--maps is for records" in r.stderr
    r = cli("-i", str(rec), "--top", "0")
    assert r.returncode == 2


def test_a_target_without_mappings_is_left_out_with_a_note(record: tuple[Path, Path, int]) -> None:
    from damon_bpf.results.records import read_records

    rec, maps, hot = record
    [first] = read_records(str(rec))
    second = Record(1, first.intervals, first.snapshots, pid=DEAD_PID + 1)
    write_records([first, second], str(rec))
    vmas = damo_vmas(maps.read_text().splitlines())
    Path(str(rec) + ".vmas").write_text(json.dumps([{"time": 1.0, "procvmas": [{"pid": DEAD_PID, "vmas": vmas}]}]))
    r = cli("-i", str(rec), "--json")
    assert r.returncode == 0, r.stderr
    _check(json.loads(r.stdout), hot)
    assert f"note: a target left out: {rec}.vmas has no mappings of pid {DEAD_PID + 1}" in r.stderr
    r = cli("-i", str(rec), "--target", "1")
    assert r.returncode == 2 and f"has no mappings of pid {DEAD_PID + 1}" in r.stderr
