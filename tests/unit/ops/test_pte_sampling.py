"""The pte source's probes and estimators (damon_bpf.ops.pte_sampling): the read schedule, first touches to the
kernel's nr_accesses scale, probe allocation over regions, and the working set from probe histories."""

from __future__ import annotations

import numpy as np
import pytest

from damon_bpf.ops.pte_sampling import (
    PAGE_SZ,
    ProbeSet,
    first_touch_g,
    rate_from_first_touch_mean,
    read_points,
    stochastic_round,
)

MiB = 1 << 20


def test_read_points_start_at_every_interval_and_end_at_the_window() -> None:
    assert read_points(20) == (1, 2, 3, 5, 8, 13, 20)
    assert read_points(1) == (1,)
    assert read_points(5) == (1, 2, 3, 5)
    for n in range(1, 200):
        pts = read_points(n)
        assert pts[0] == 1 and pts[-1] == n and list(pts) == sorted(set(pts))
        assert len(pts) <= 3 + 2 * np.log(n + 1) / np.log(1.6)  # logarithmic in n


@pytest.mark.parametrize("points", [20, read_points(20), read_points(7)])
def test_g_is_increasing_and_inverted_exactly(points: int | tuple[int, ...]) -> None:
    p = np.linspace(0, 1, 101)
    g = first_touch_g(p, points)
    assert g[0] == 0 and g[-1] == 1 and np.all(np.diff(g) >= 0)
    assert np.all(g >= p - 1e-9)  # 1/r overstates p for a single page: what the inversion undoes
    back = rate_from_first_touch_mean(g, points)
    assert np.allclose(back, p, atol=2e-3)


@pytest.mark.parametrize("p", [0.02, 0.1, 0.3, 0.7, 1.0])
def test_first_touch_estimate_is_close_to_p_for_alike_pages(p: float) -> None:
    """Homogeneous pages accessed with chance p per interval: the estimate from 8 probes per region, averaged
    over many regions, is within 15% of p (the kernel's expected nr_accesses / max)."""
    rng = np.random.default_rng(1)
    pts = read_points(20)
    r = np.array(pts)
    t = rng.geometric(p, size=(4000, 8))
    first = np.where(t <= 20, r[np.minimum(np.searchsorted(r, t), r.size - 1)], 0)
    pr = ProbeSet(addr=np.arange(first.size, dtype=np.uint64), hist=np.zeros(first.size, np.uint64),
                  nwin=np.zeros(first.size, np.int64), first=first.ravel().astype(np.int64),
                  valid=np.ones(first.size, bool), region=np.repeat(np.arange(4000), 8))
    est, has = pr.access_rates(4000, pts)
    assert has.all()
    assert abs(est.mean() - p) <= 0.15 * p


def test_first_touch_estimate_of_a_hot_cold_mixture() -> None:
    """Half the probes always touched (read 1), half never: the region reads about 0.3 of the intervals (the
    kernel: 0.5); pooling first touches would read it almost cold."""
    n = 1000
    first = np.tile([1, 0], n // 2)
    pr = ProbeSet(addr=np.arange(n, dtype=np.uint64), hist=np.zeros(n, np.uint64), nwin=np.zeros(n, np.int64),
                  first=first.astype(np.int64), valid=np.ones(n, bool), region=np.zeros(n, np.int64))
    est, _ = pr.access_rates(1, read_points(20))
    assert 0.2 <= est[0] <= 0.4
    cold = ProbeSet(addr=np.arange(4, dtype=np.uint64), hist=np.zeros(4, np.uint64), nwin=np.zeros(4, np.int64),
                    first=np.zeros(4, np.int64), valid=np.ones(4, bool), region=np.zeros(4, np.int64))
    assert cold.access_rates(1, read_points(20))[0][0] == 0


def test_invalid_probes_do_not_count() -> None:
    pr = ProbeSet(addr=np.arange(3, dtype=np.uint64), hist=np.zeros(3, np.uint64), nwin=np.zeros(3, np.int64),
                  first=np.array([1, 1, 0]), valid=np.array([False, False, True]), region=np.array([0, 1, 1]))
    est, has = pr.access_rates(2, read_points(20))
    assert has.tolist() == [False, True] and est[1] == 0


def test_stochastic_round_keeps_the_mean() -> None:
    rng = np.random.default_rng(2)
    x = np.full(100_000, 2.3)
    r = stochastic_round(x, rng)
    assert set(np.unique(r).tolist()) == {2, 3}
    assert abs(r.mean() - 2.3) < 0.01


def _regions(*sizes_mib: float) -> tuple[np.ndarray, np.ndarray]:
    starts, ends, a = [], [], 0x7F00_0000_0000
    for s in sizes_mib:
        starts.append(a)
        a += int(s * MiB)
        ends.append(a)
        a += 16 * MiB  # a gap between regions
    return np.array(starts, np.int64), np.array(ends, np.int64)


def test_allocate_gives_every_region_a_probe_and_the_rest_by_size() -> None:
    rng = np.random.default_rng(3)
    starts, ends = _regions(1, 1, 98, 4 / 1024)  # the last is one page
    pr = ProbeSet()
    drawn = pr.allocate(starts, ends, 204, rng)
    assert drawn - 5 <= len(pr) <= drawn <= 204  # a page drawn twice is one probe
    reg = pr.regions_of(starts, ends)
    assert (reg >= 0).all() and (reg == pr.region).all()
    cnt = np.bincount(reg, minlength=4)
    assert cnt[3] == 1 and cnt[0] >= 1 and cnt[1] >= 1
    assert 180 <= cnt[2] <= 205  # about 200 * 98/100
    assert (np.diff(pr.addr.astype(np.int64)) > 0).all()  # in order, each page once
    assert (pr.addr.astype(np.int64) % PAGE_SZ == 0).all()


def test_allocate_keeps_old_probes_and_drops_the_youngest() -> None:
    rng = np.random.default_rng(4)
    starts, ends = _regions(8)
    pr = ProbeSet()
    pr.allocate(starts, ends, 40, rng)
    before = set(pr.addr.tolist())
    pr.nwin[:] = 5
    pr.nwin[:10] = 9  # the ten oldest
    old = set(pr.addr[:10].tolist())
    assert pr.allocate(starts, ends, 10, rng) == 0  # fewer wanted: drop, draw nothing
    assert set(pr.addr.tolist()) == old
    pr.allocate(starts, ends, 40, rng)
    assert old <= set(pr.addr.tolist()) and len(pr) >= 38 and set(pr.addr.tolist()) != before


def test_allocate_follows_splits_merges_and_unmaps() -> None:
    rng = np.random.default_rng(5)
    starts, ends = _regions(8, 8)
    pr = ProbeSet()
    pr.allocate(starts, ends, 64, rng)
    # the second region is gone (unmapped), the first split in two
    mid = starts[0] + 4 * MiB
    s2, e2 = np.array([starts[0], mid]), np.array([mid, ends[0]])
    pr.allocate(s2, e2, 64, rng)
    a = pr.addr.astype(np.int64)
    assert ((a >= starts[0]) & (a < ends[0])).all()
    assert np.bincount(pr.regions_of(s2, e2), minlength=2).min() >= 1


def test_touched_share_uses_the_windows_covering_the_span() -> None:
    # region 0: probe 0 touched 3 windows ago only, probe 1 in the last window; region 1: never
    pr = ProbeSet(addr=np.array([0x1000, 0x2000, 0x9000], np.uint64), hist=np.array([0b100, 0b001, 0], np.uint64),
                  nwin=np.array([10, 10, 10]), first=np.zeros(3, np.int64), valid=np.ones(3, bool),
                  region=np.array([0, 0, 1]))
    starts, ends = np.array([0x1000, 0x9000]), np.array([0x3000, 0xA000])
    share1, has = pr.touched_share(starts, ends, 1)
    assert share1.tolist() == [0.5, 0.0] and has.all()
    share3, _ = pr.touched_share(starts, ends, 3)
    assert share3.tolist() == [1.0, 0.0]
    # a probe without the history asked for counts only where its region has no probe with it
    pr.nwin[:] = [1, 5, 1]
    share3, has = pr.touched_share(starts, ends, 3)
    assert share3.tolist() == [1.0, 0.0] and has.tolist() == [True, True]


def test_end_window_shifts_touches_into_history() -> None:
    pr = ProbeSet(addr=np.array([1, 2], np.uint64), hist=np.array([0b1, 0], np.uint64), nwin=np.array([1, 0]),
                  first=np.array([3, 0]), valid=np.array([True, False]), region=np.zeros(2, np.int64))
    pr.end_window()
    assert pr.hist.tolist() == [0b11, 0] and pr.nwin.tolist() == [2, 0]
