"""The pte source's probes and estimators (damon_bpf.ops.pte_sampling): the read schedule, first touches to the
kernel's nr_accesses scale, probe allocation over regions, and the working set from probe histories."""

from __future__ import annotations

import numpy as np
import pytest

from damon_bpf.ops.pte_sampling import BASE_PROBES, PAGE_SZ, ProbeSet, read_points, stochastic_round

MiB = 1 << 20


def test_read_points_are_the_first_interval_and_the_end() -> None:
    assert read_points(20) == (1, 20)
    assert read_points(1) == (1,)


def _probes(first: np.ndarray, region: np.ndarray) -> ProbeSet:
    n = first.size
    return ProbeSet(addr=np.arange(n, dtype=np.uint64), hist=np.zeros(n, np.uint64), nwin=np.zeros(n, np.int64),
                    first=first.astype(np.int64), valid=np.ones(n, bool), region=region.astype(np.int64))


@pytest.mark.parametrize("p", [0.02, 0.1, 0.3, 0.7, 1.0])
def test_rate_is_unbiased_for_alike_pages(p: float) -> None:
    """Pages accessed with chance p per interval: the share found accessed after the first interval, over many
    regions of 8 probes, is p (the kernel's expected nr_accesses / max), within 10%."""
    rng = np.random.default_rng(1)
    t = rng.geometric(p, size=(4000, 8))
    first = np.where(t == 1, 1, np.where(t <= 20, 20, 0))
    est, has = _probes(first.ravel(), np.repeat(np.arange(4000), 8)).access_rates(4000)
    assert has.all()
    assert abs(est.mean() - p) <= 0.1 * p


@pytest.mark.parametrize("hot", [0.5, 0.25, 0.1])
def test_rate_is_unbiased_for_a_hot_cold_mixture(hot: float) -> None:
    """A region whose pages are either always accessed or never reads the hot share of the intervals, as the
    kernel's expectation (the estimates from later first touches read such a region far colder)."""
    rng = np.random.default_rng(2)
    n = 4000 * 8
    first = np.where(rng.random(n) < hot, 1, 0)
    est, _ = _probes(first, np.repeat(np.arange(4000), 8)).access_rates(4000)
    assert abs(est.mean() - hot) <= 0.1 * hot
    cold = _probes(np.zeros(4), np.zeros(4)).access_rates(1)
    assert cold[0][0] == 0 and cold[1][0]


def test_invalid_probes_do_not_count() -> None:
    pr = ProbeSet(addr=np.arange(3, dtype=np.uint64), hist=np.zeros(3, np.uint64), nwin=np.zeros(3, np.int64),
                  first=np.array([1, 1, 0]), valid=np.array([False, False, True]), region=np.array([0, 1, 1]))
    est, has = pr.access_rates(2)
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


def test_allocate_gives_every_region_its_share_and_the_rest_by_size() -> None:
    rng = np.random.default_rng(3)
    starts, ends = _regions(1, 1, 98, 4 / 1024)  # the last is one page
    pr = ProbeSet()
    drawn = pr.allocate(starts, ends, 204, rng)
    assert drawn - 5 <= len(pr) <= drawn <= 204  # a page drawn twice is one probe
    reg = pr.regions_of(starts, ends)
    assert (reg >= 0).all() and (reg == pr.region).all()
    cnt = np.bincount(reg, minlength=4)
    assert cnt[3] == 1  # one page: one probe
    base = min(BASE_PROBES, 204 // 8)
    assert cnt[0] >= base and cnt[1] >= base
    assert 150 <= cnt[2] <= 180  # its base, and about 98% of the rest
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
