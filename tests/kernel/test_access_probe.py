"""The in-kernel aggregation program (bpf/pagefault.bpf.c) and its loader, on real page faults."""

from __future__ import annotations

import ctypes
import mmap
import os
import time

import numpy as np
import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.probes.access import AccessProbe, AccessProbeConfig

MiB = 1 << 20


def _touch(m: mmap.mmap, start: int, length: int) -> None:
    for off in range(start, start + length, 4096):
        m[off] = 1


@pytest.fixture
def probe():
    p = AccessProbe(AccessProbeConfig(max_regions=64, max_intervals=64)).open()
    p.attach_page_faults()
    p.set_target(os.getpid(), 0)
    yield p
    p.close()


def test_regions_intervals_and_generations(probe: AccessProbe) -> None:
    m = mmap.mmap(-1, 64 * MiB)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    starts = np.array([base + i * 8 * MiB for i in range(8)], dtype=np.uint64)
    ends = starts + 8 * MiB
    g = probe.publish([(starts, ends)], time.monotonic_ns(), 20_000_000)
    _touch(m, 1 * 8 * MiB, MiB)  # 256 pages in region 1, interval 0
    time.sleep(0.045)
    _touch(m, 5 * 8 * MiB, 64 * 4096)  # 64 pages in region 5, interval 2
    d = probe.read()
    assert d.nr_events.tolist() == [0, 256, 0, 0, 0, 64, 0, 0]
    assert d.nr_writes.tolist() == [0, 256, 0, 0, 0, 64, 0, 0]
    hits0 = d.interval_hits(0, 1)
    assert hits0[1] == 1 and hits0[5] == 0
    assert d.interval_hits(2, 4)[5] == 1
    # switch generations: new faults go to the new table, the old counters are read and reset
    g2 = probe.publish([(starts[:4], ends[:4])], time.monotonic_ns(), 20_000_000)
    assert g2 != g
    _touch(m, 2 * 8 * MiB, 8 * 4096)
    _touch(m, 6 * 8 * MiB, 8 * 4096)  # region 6 is no longer published: outside every region
    assert probe.read().nr_events.tolist() == [0, 0, 8, 0]
    old = probe.read(g, zero=True)
    assert old.nr_events.sum() == 320
    assert probe.read(g).nr_events.sum() == 0
    st = probe.stats()
    assert st["counted"] >= 328 and st["no_region"] >= 8
    assert probe.nr_counted() == st["counted"]  # nothing else faults in our regions meanwhile
    # the counters and the tables are the maps' memory, mapped: what bcc's own lookup sees
    ncpu = probe.config.cpus
    r = probe.config.regions_pow2
    table = probe.bpf[b"agg_regions"]
    assert table[ctypes.c_uint32(g2 * r)].start == int(starts[0])
    assert table[ctypes.c_uint32(g2 * r + 3)].end == int(ends[3])
    counters = probe.bpf[b"agg_counters"]
    assert sum(counters[ctypes.c_uint32(c * 2 * r + g2 * r + 2)].nr_events for c in range(ncpu)) == 8
    slots, ips, counts = probe.drain_ips()
    assert counts.sum() >= 328 and (ips > 0).all()
    assert probe.drain_ips()[0].size == 0  # drained
    # the bitmaps alone, and the reset (as for the idle generation at a publish)
    bits = probe.take_bits(g2)
    assert bits.shape == (4, probe.config.bitmap_words) and bits[2].any() and not bits[[0, 1, 3]].any()
    assert probe.read(g2).nr_events.sum() == 0 and not probe.take_bits(g2).any()


def test_other_processes_are_not_counted(probe: AccessProbe) -> None:
    probe.publish([(np.array([0], np.uint64), np.array([1 << 47], np.uint64))], time.monotonic_ns(), 10**7)
    before = probe.stats()["events"]
    rc = os.system("python3 -c 'b = bytearray(64 << 20)' >/dev/null 2>&1")
    assert rc == 0
    assert probe.stats()["events"] - before < 100  # the child's ~16k faults are not ours


def test_rate_limit_drops_and_counts() -> None:
    with AccessProbe(AccessProbeConfig(max_regions=16, rate_limit=1000, rate_burst=100)) as p:
        p.attach_page_faults()
        p.set_target(os.getpid(), 0)
        m = mmap.mmap(-1, 64 * MiB)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        p.publish([(np.array([base], np.uint64), np.array([base + 64 * MiB], np.uint64))], time.monotonic_ns(),
                  10**8)
        t0 = time.monotonic()
        _touch(m, 0, 64 * MiB)
        dt = time.monotonic() - t0
        st = p.stats()
        assert st["dropped_rate_limit"] > 0
        ncpu = os.cpu_count() or 1
        assert st["counted"] <= ncpu * (100 + 1000 * dt) + 10
        # every event is counted, dropped or outside the regions (give or take the few the stats read itself
        # races with: the per-CPU counters are not read atomically)
        assert abs(st["counted"] + st["dropped_rate_limit"] + st["no_region"] - st["events"]) <= 5


def test_table_too_large_is_refused(probe: AccessProbe) -> None:
    s = np.arange(0, 200 * 4096, 4096, dtype=np.uint64)
    with pytest.raises(InvalidParamsError):
        probe.publish([(s, s + 4096)], 0, 10**6)
