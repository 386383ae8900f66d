"""Pure parts of the BPF sources: the density estimator and the late-event carry between windows."""

from __future__ import annotations

import numpy as np

from damon_bpf.ops.bpf import BpfAccessOps, density_nr_accesses


def test_density_estimator_matches_poisson_sampling() -> None:
    # a 1 MiB region (256 pages), 20 sampling intervals of 5 ms, period 100: each event ~100 accesses
    n, s = 20, 0.005
    pages = 256
    for per_page_hz in (0.0, 1.0, 50.0, 200.0, 5000.0):
        events = per_page_hz * pages * n * s / 100
        got = int(density_nr_accesses([events], 100, [pages * 4096], n, s)[0])
        expect = round((1 - np.exp(-per_page_hz * s)) * n)
        assert got == expect, (per_page_hz, got, expect)
    # saturation and zero
    assert density_nr_accesses([10**9], 1000, [4096], 20, 0.005).tolist() == [20]
    assert density_nr_accesses([0, 0], 1, [4096, 8192], 20, 0.005).tolist() == [0, 0]


def test_density_is_monotonic_in_events_and_size() -> None:
    ev = np.arange(0, 2000, 50)
    a = density_nr_accesses(ev, 10007, np.full(ev.size, 1 << 20), 20, 0.005)
    assert (np.diff(a) >= 0).all()
    b = density_nr_accesses(np.full(5, 100), 10007, np.array([1, 2, 4, 8, 16]) << 20, 20, 0.005)
    assert (np.diff(b) <= 0).all()


def test_late_bits_move_to_overlapping_new_regions() -> None:
    ops = BpfAccessOps()
    ops._last_nr_samples = 4
    # old table: 3 regions; old region 1 got events in intervals 4 and 5 (after its 4-interval window)
    old = [(np.array([0, 100, 200], np.uint64), np.array([100, 200, 300], np.uint64))]
    bits = np.zeros((3, 1), dtype=np.uint64)
    bits[1, 0] = (1 << 4) | (1 << 5) | (1 << 1)  # bit 1 is inside the old window: not carried
    # new table: old region 1 was split in two, old 0 and 2 merged with neighbours differently
    new = [(np.array([0, 150, 180], np.uint64), np.array([150, 180, 300], np.uint64))]
    carry = ops._carry_late(bits, old, new)
    assert carry is not None
    # interval 4 of the old window = 0 of the new one, 5 = 1
    assert carry[:, 0].tolist() == [0b11, 0b11, 0b11]
    # a late bit of a region that no new region overlaps is dropped
    carry2 = ops._carry_late(bits, old, [(np.array([400], np.uint64), np.array([500], np.uint64))])
    assert carry2 is not None and not carry2.any()
    # no late bits at all: nothing to carry
    bits[1, 0] = 1 << 3
    assert ops._carry_late(bits, old, new) is None


def test_late_bits_across_words() -> None:
    ops = BpfAccessOps()
    ops._last_nr_samples = 60
    old = [(np.array([0], np.uint64), np.array([100], np.uint64))]
    bits = np.zeros((1, 2), dtype=np.uint64)
    bits[0, 0] = (1 << 59) | (1 << 61)  # 59: in the window; 61: late, new interval 1
    bits[0, 1] = 1 << 6  # interval 70: late, new interval 10
    carry = ops._carry_late(bits, old, old)
    assert carry is not None
    assert carry.tolist() == [[(1 << 1) | (1 << 10), 0]]


def test_nr_accesses_counts_interval_bits_and_carry() -> None:
    from damon_bpf.probes.access import Drained

    ops = BpfAccessOps()
    bits = np.zeros((3, 2), dtype=np.uint64)
    bits[0] = [0b1011, 0]
    bits[1] = [np.uint64(1) << np.uint64(63), 0b111]  # interval 63, 64, 65, 66
    bits[2] = [0, np.uint64(1) << np.uint64(40)]  # interval 104: past a 70-interval window
    d = Drained(nr_events=np.zeros(3, np.uint64), nr_writes=np.zeros(3, np.uint64), bits=bits)
    assert ops.nr_accesses_of(None, d, 70).tolist() == [3, 4, 0]  # type: ignore[arg-type]
    assert ops.nr_accesses_of(None, d, 64).tolist() == [3, 1, 0]  # type: ignore[arg-type]
    ops._carry = np.array([[0b100, 0], [1, 0], [1, 0]], dtype=np.uint64)
    assert ops.nr_accesses_of(None, d, 70).tolist() == [4, 5, 1]  # type: ignore[arg-type]
    empty = Drained(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros((0, 2), np.uint64))
    assert ops.nr_accesses_of(None, empty, 70).tolist() == []  # type: ignore[arg-type]


def test_late_bits_of_merged_regions_and_several_targets() -> None:
    ops = BpfAccessOps()
    ops._last_nr_samples = 2
    # target 0: old regions 0 and 1 were merged into one new region; target 1: its only region was split
    old = [(np.array([0, 100], np.uint64), np.array([100, 200], np.uint64)),
           (np.array([1000], np.uint64), np.array([2000], np.uint64))]
    new = [(np.array([0], np.uint64), np.array([200], np.uint64)),
           (np.array([1000, 1500], np.uint64), np.array([1500, 2000], np.uint64))]
    bits = np.array([[1 << 2], [1 << 3], [(1 << 4) | 1]], dtype=np.uint64)
    carry = ops._carry_late(bits, old, new)
    assert carry is not None
    assert carry[:, 0].tolist() == [0b11, 1 << 2, 1 << 2]


class _FakeProbe:
    def __init__(self, slots: list[int], ips: list[int], counts: list[int], gen: int, ip_entries: int = 16) -> None:
        from types import SimpleNamespace

        self.config = SimpleNamespace(ip_entries=ip_entries, regions_pow2=16)
        self.gen = gen
        self._drain = (np.array(slots, np.uint32), np.array(ips, np.uint64), np.array(counts, np.uint64))
        self.counted = 1
        self.drains = 0

    def nr_counted(self) -> int:
        return self.counted

    def drain_ips(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.drains += 1
        out, self._drain = self._drain, (np.zeros(0, np.uint32), np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        return out


def test_ip_attribution_per_target_and_generation() -> None:
    ops = BpfAccessOps()
    ops._tables = [(np.array([0, 100], np.uint64), np.array([100, 200], np.uint64)),
                   (np.array([1000], np.uint64), np.array([2000], np.uint64))]
    # generation 1: slots 16 + i; slot 16 + 3 is past the tables, slot 2 is the other generation's
    ops.probe = _FakeProbe([16 + 1, 16 + 2, 2, 16 + 0, 16 + 3], [11, 22, 33, 44, 55], [1, 2, 3, 4, 5], gen=1)
    ops._collect_ips()
    assert ops.last_ips == [[(100, 200, 11, 1), (0, 100, 44, 4)], [(1000, 2000, 22, 2)]]
    # the program counted nothing since: the map is not drained again
    ops._collect_ips()
    assert ops.probe.drains == 1 and ops.last_ips == [[], []]
    ops.probe.counted = 2
    ops._collect_ips()
    assert ops.probe.drains == 2
    # one target
    ops._tables = ops._tables[:1]
    ops.probe = _FakeProbe([17, 16], [7, 8], [9, 10], gen=1)
    ops._collect_ips()
    assert ops.last_ips == [[(100, 200, 7, 9), (0, 100, 8, 10)]]
