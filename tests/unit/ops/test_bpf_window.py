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
    carry = np.zeros((3, 64), dtype=bool)
    ops._carry_late(bits, old, new, carry)
    assert carry[:, 0].tolist() == [True, True, True]  # interval 4 of the old window = 0 of the new one
    assert carry[:, 1].tolist() == [True, True, True]
    assert not carry[:, 2:].any()
    # a late bit of a region that no new region overlaps is dropped
    carry2 = np.zeros((1, 64), dtype=bool)
    ops._carry_late(bits, old, [(np.array([400], np.uint64), np.array([500], np.uint64))], carry2)
    assert not carry2.any()
