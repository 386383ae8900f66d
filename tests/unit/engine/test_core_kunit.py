"""Ports of mm/damon/tests/core-kunit.h, one test per kunit case, keeping the kernel's names and vectors.

Every port calls the engine's own code (the array forms the kdamond runs), never a copy kept for tests.
Kunit cases about kernel-only machinery are left out, with the reason: damos_walk() (damon_test_walk_control_
obsolete; damon-bpf has no walk requests) and the damon_commit_*() family (damos_test_commit_*,
damon_test_commit_target_regions; damon-bpf never updates a running context's parameters in place: a new
configuration means a new context, so a commit path would be code only its tests call). DAMOS cases live with
the DAMOS tests. min_region_sz is 1 unless the kernel test sets it, as the kernel's DAMON_MIN_REGION is 1 under
kunit.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from damon_bpf.engine import core, ops as ops_mod
from damon_bpf.engine.damos import Action, Scheme, apply_schemes
from damon_bpf.engine.model import AddrRange, Attrs, Ctx, Region, Target
from damon_bpf.errors import InvalidParamsError


def new_ctx(**kw: object) -> Ctx:
    return Ctx(min_region_sz=1, rng=random.Random(42), **kw)  # type: ignore[arg-type]


def target_of(pairs: list[tuple[int, int]]) -> Target:
    return Target(regions=[Region(s, e) for s, e in pairs])


def test_damon_test_regions() -> None:
    r = Region(1, 2)
    assert (r.start, r.end, r.nr_accesses, r.nr_accesses_bp, r.age, r.last_nr_accesses) == (1, 2, 0, 0, 0, 0)
    t = Target()
    assert t.nr_regions == 0
    t.regions = [r]
    assert t.nr_regions == 1 and t.regions[0].to_dict() == r.to_dict()
    t.ra.delete(0)
    assert t.nr_regions == 0


def test_damon_test_target() -> None:
    # damon_add_target()/damon_destroy_target(): what the core derives from the target list follows it
    c = new_ctx()
    c.attrs.min_nr_regions = 4
    assert c.nr_regions == 0 and core.region_sz_limit(c) == 1
    t1, t2 = target_of([(0, 100)]), target_of([(1000, 1300), (2000, 2100)])
    c.targets.append(t1)
    assert c.nr_regions == 1 and core.region_sz_limit(c) == 100 // 4
    c.targets.append(t2)
    assert c.nr_regions == 3 and core.region_sz_limit(c) == 500 // 4
    c.targets.remove(t1)
    assert c.nr_regions == 2 and core.region_sz_limit(c) == 400 // 4


def test_damon_test_aggregate() -> None:
    ctx = new_ctx()
    saddr = [[10, 20, 30], [5, 42, 49], [13, 33, 55]]
    eaddr = [[15, 27, 40], [31, 45, 55], [23, 44, 66]]
    accesses = [[42, 95, 84], [10, 20, 30], [0, 1, 2]]
    for it in range(3):
        ctx.targets.append(Target(regions=[Region(saddr[it][ir], eaddr[it][ir], nr_accesses=accesses[it][ir],
                                                  nr_accesses_bp=accesses[it][ir] * 10000) for ir in range(3)]))
    assert core.reset_aggregated(ctx) == 0  # no moving sum needed repair
    assert len(ctx.targets) == 3
    for it, t in enumerate(ctx.targets):
        assert t.nr_regions == 3
        for ir, r in enumerate(t.regions):
            assert r.nr_accesses == 0
            assert r.last_nr_accesses == accesses[it][ir]
            assert (r.start, r.end) == (saddr[it][ir], eaddr[it][ir])


def test_damon_test_split_at() -> None:
    t = Target(regions=[Region(0, 100, nr_accesses=42, last_nr_accesses=15, age=10)])
    core.split_region_at(t, 0, 25)
    assert t.nr_regions == 2
    r, r_new = t.regions
    assert (r.start, r.end) == (0, 25)
    assert (r_new.start, r_new.end) == (25, 100)
    assert r.nr_accesses == r_new.nr_accesses == 42
    assert r.last_nr_accesses == r_new.last_nr_accesses == 15
    assert r.age == r_new.age == 10


def test_damon_test_merge_two() -> None:
    # damon_merge_two_regions() as damon_merge_regions_of() performs it (ages left alone: count_age=False)
    t = Target(regions=[Region(0, 100, nr_accesses=10, age=9), Region(100, 300, nr_accesses=20, age=21)])
    core.merge_regions_of(t, 10, 300, False)
    assert t.nr_regions == 1
    r = t.regions[0]
    assert (r.start, r.end) == (0, 300)
    assert r.nr_accesses == 16
    assert r.nr_accesses_bp == 160000
    assert r.age == 17


def test_damon_test_merge_regions_of() -> None:
    sa = [0, 100, 114, 122, 130, 156, 170, 184, 230]
    ea = [100, 112, 122, 130, 156, 170, 184, 230, 10170]
    nrs = [0, 0, 10, 10, 20, 30, 1, 2, 5]
    saddrs = [0, 114, 130, 156, 170, 230]
    eaddrs = [112, 130, 156, 170, 230, 10170]
    t = Target(regions=[Region(s, e, nr_accesses=nr) for s, e, nr in zip(sa, ea, nrs)])
    core.merge_regions_of(t, 9, 9999, True)
    assert t.nr_regions == 6
    assert [(r.start, r.end) for r in t.regions] == list(zip(saddrs, eaddrs))


def test_damon_test_split_regions_of() -> None:
    c = new_ctx()
    t = target_of([(0, 22)])
    core.split_regions_of(c, t, 2, 1)
    assert 1 <= t.nr_regions <= 2

    t = target_of([(0, 220)])
    core.split_regions_of(c, t, 4, 1)
    assert 1 <= t.nr_regions <= 4

    t = target_of([(0, 220), (300, 400), (500, 700)])
    core.split_regions_of(c, t, 4, 5)
    assert 3 <= t.nr_regions <= 12
    for r in t.regions:
        assert r.sz % 5 == 0
    # the pieces still tile the original ranges exactly
    covered = [(r.start, r.end) for r in t.regions]
    assert covered[0][0] == 0 and covered[-1][1] == 700
    assert sum(e - s for s, e in covered) == 220 + 100 + 200


def test_damon_test_split_above_half_progresses() -> None:
    c = new_ctx()
    c.min_region_sz = 1
    c.attrs.min_nr_regions = 10
    c.attrs.max_nr_regions = 1500
    t = Target(regions=[Region(i * 100, i * 100 + 100, nr_accesses=0 if i & 1 else 100, age=5)
                        for i in range(760)])
    c.targets.append(t)
    nr_before = t.nr_regions
    assert nr_before > c.attrs.max_nr_regions // 2
    core.split_regions(c)
    nr_after = t.nr_regions
    assert nr_after > nr_before
    assert nr_after <= c.attrs.max_nr_regions


def test_damon_test_ops_registration() -> None:
    ops_mod.register_ops("kunit-vaddr", ops_mod.BaseOperations)
    try:
        assert ops_mod.is_registered_ops("kunit-vaddr")
        assert isinstance(ops_mod.select_ops("kunit-vaddr"), ops_mod.BaseOperations)
        # Double-registration is prohibited
        with pytest.raises(InvalidParamsError):
            ops_mod.register_ops("kunit-vaddr", ops_mod.BaseOperations)
        # Unknown ops id cannot be selected
        with pytest.raises(InvalidParamsError):
            ops_mod.select_ops("kunit-no-such-ops")
        # Registration should succeed after unregistration
        ops_mod.unregister_ops("kunit-vaddr")
        ops_mod.register_ops("kunit-vaddr", ops_mod.BaseOperations)
        with pytest.raises(InvalidParamsError):
            ops_mod.register_ops("kunit-vaddr", ops_mod.BaseOperations)
    finally:
        ops_mod.unregister_ops("kunit-vaddr")


@pytest.mark.parametrize(
    "old, new, min_region_sz, expect",
    [
        # Initial build up on empty target.
        ([], [(5, 15), (15, 25)], 1, [(5, 15), (15, 25)]),
        # Un-intersecting regions should be removed.
        ([(4, 16), (24, 32)], [(18, 23)], 1, [(18, 23)]),
        # Holes should be filled up with new regions.
        ([(4, 16), (24, 32)], [(8, 28)], 1, [(8, 16), (16, 24), (24, 28)]),
        # New regions should be able to be appended.
        ([(0, 4), (4, 17)], [(0, 15), (25, 40)], 1, [(0, 4), (4, 15), (25, 40)]),
        # New regions should be able to be inserted.
        ([(0, 4), (42, 52)], [(0, 15), (25, 40), (44, 50)], 1, [(0, 15), (25, 40), (44, 50)]),
    ],
)
def test_damon_test_set_regions(old: list[tuple[int, int]], new: list[tuple[int, int]], min_region_sz: int,
                                expect: list[tuple[int, int]]) -> None:
    t = target_of(old)
    core.set_regions(t, [AddrRange(s, e) for s, e in new], min_region_sz)
    assert [(r.start, r.end) for r in t.regions] == expect

@pytest.mark.parametrize("ranges", [
    [(10, 10)],  # empty
    [(20, 10)],  # inverted
    [(0, 20), (10, 30)],  # overlapping
    [(30, 40), (0, 10)],  # out of order
])
def test_set_regions_rejects_invalid_ranges(ranges: list[tuple[int, int]]) -> None:
    t = target_of([(0, 8)])
    with pytest.raises(InvalidParamsError):
        core.set_regions(t, [AddrRange(s, e) for s, e in ranges], 1)
    assert [(r.start, r.end) for r in t.regions] == [(0, 8)]


def test_damon_test_update_monitoring_result() -> None:
    old = Attrs(sample_interval_us=10, aggr_interval_us=1000)
    c = new_ctx()
    c.targets.append(Target(regions=[Region(3, 7, nr_accesses=15, last_nr_accesses=15, age=20)]))

    def update(new: Attrs, aggregating: bool = False) -> Region:
        c.attrs = old
        core.update_monitoring_results(c, new, aggregating)
        return c.targets[0].regions[0]

    r = update(Attrs(sample_interval_us=100, aggr_interval_us=10000))
    assert (r.nr_accesses, r.age) == (15, 2)
    r = update(Attrs(sample_interval_us=1, aggr_interval_us=1000))
    assert (r.nr_accesses, r.age) == (150, 2)
    r = update(Attrs(sample_interval_us=1, aggr_interval_us=100))
    assert (r.nr_accesses, r.age) == (150, 20)
    # 7.3 ("always update ->last_nr_accesses for intervals change"): the last window is rescaled too
    assert r.last_nr_accesses == 150
    # in the middle of a window the count so far is dropped, as kdamond_reset_aggregated() would
    r = update(Attrs(sample_interval_us=10, aggr_interval_us=2000), aggregating=True)
    assert (r.nr_accesses, r.last_nr_accesses, r.nr_accesses_bp, r.age) == (0, 300, 3000000, 10)


def test_damon_test_set_attrs() -> None:
    c = new_ctx()
    valid = dict(min_nr_regions=10, max_nr_regions=1000, sample_interval_us=5000, aggr_interval_us=100000)
    core.set_attrs(c, Attrs(**valid))  # type: ignore[arg-type]
    for change in ({"min_nr_regions": 1}, {"max_nr_regions": 9}, {"aggr_interval_us": 4999}):
        with pytest.raises(InvalidParamsError):
            core.set_attrs(c, Attrs(**{**valid, **change}))  # type: ignore[arg-type]
    # a valid change re-bases the deadlines and rescales the regions through the same path
    c.targets.append(Target(regions=[Region(0, 4096, nr_accesses=10, last_nr_accesses=8, age=6)]))
    c.passed_sample_intervals = c.next_aggregation_sis = 40
    core.set_attrs(c, Attrs(**{**valid, "aggr_interval_us": 200000}))  # type: ignore[arg-type]
    r = c.targets[0].regions[0]
    assert (r.nr_accesses, r.last_nr_accesses, r.age) == (20, 16, 3)
    assert (c.next_aggregation_sis, c.next_ops_update_sis) == (40 + 40, 40 + 12000)


def test_damon_test_moving_sum() -> None:
    # The <= 7.2 kunit vector of damon_moving_sum(), on the pseudo moving sum the engine still keeps in
    # nr_accesses_bp (record consumers read it): nomvsum = last_nr_accesses * 10000 = 50000, window of 10.
    attrs = Attrs(sample_interval_us=10, aggr_interval_us=100)
    t = Target(regions=[Region(0, 4096, nr_accesses_bp=50000, last_nr_accesses=5)])
    new_values = [10000, 0, 10000, 0, 0, 0, 10000, 0, 0, 0]
    expects = [55000, 50000, 55000, 50000, 45000, 40000, 45000, 40000, 35000, 30000]
    for v, e in zip(new_values, expects):
        core.update_regions_access_rate(t, [v // 10000], 1, attrs)
        assert int(t.ra.nr_accesses_bp[0]) == e
    assert int(t.ra.nr_accesses[0]) == 3


@pytest.mark.parametrize("current, last, left_bp, expect", [
    (0, 49, 10000, 49), (3, 10, 7000, 10), (3, 10, 5000, 8), (32, 100, 1000, 42), (42, 49, 0, 42),
])
def test_damon_test_mvsum(current: int, last: int, left_bp: int, expect: int) -> None:
    assert core.mvsum(current, last, left_bp) == expect
    arr = core.mvsum(np.array([current, current], dtype=np.int64), np.array([last, last], dtype=np.int64),
                     left_bp)
    assert arr.tolist() == [expect, expect]


@pytest.mark.parametrize("passed, next_aggr, nr, last, expect", [
    (0, 10, 5, 3, 3),  # full window left, unreset
    (0, 10, 0, 7, 7),  # full window left, reset
    (5, 10, 3, 10, 8),  # half window left
    (8, 10, 3, 10, 5),  # 20% window left
    (10, 10, 42, 49, 42),  # no window left
    (0, 15, 2, 10, 17),  # more than a window left (intervals changed): no shortcut, 2 + 10 * 1.5
    (12, 10, 4, 9, 4),  # past the boundary, not reset yet
])
def test_damon_test_nr_accesses_mvsum(passed: int, next_aggr: int, nr: int, last: int, expect: int) -> None:
    c = new_ctx()
    c.attrs.sample_interval_us = 1
    c.attrs.aggr_interval_us = 10
    c.passed_sample_intervals = passed
    c.next_aggregation_sis = next_aggr
    r = Region(0, 4096, nr_accesses=nr, last_nr_accesses=last)
    assert core.region_nr_accesses_mvsum(c, r) == expect
    t = Target(regions=[r, Region(4096, 8192, nr_accesses=nr, last_nr_accesses=last)])
    assert core.target_nr_accesses_mvsum(c, t).tolist() == [expect, expect]


def test_damon_test_commit_ctx_min_region_sz() -> None:
    # damon_test_commit_ctx: only a power of two min_region_sz is allowed (checked here when a context starts)
    c = new_ctx()
    c.min_region_sz = 4096
    c.validate()
    for bad in (4095, 0, -4096):
        c.min_region_sz = bad
        with pytest.raises(InvalidParamsError):
            c.validate()


def test_damon_test_feed_loop_next_input() -> None:
    last_input = 900000
    assert core.feed_loop_next_input(last_input, 200) > last_input
    assert core.feed_loop_next_input(last_input, 250000000) < last_input
    assert core.feed_loop_next_input(last_input, 200) > core.feed_loop_next_input(last_input, 2000)
    # the exact values of the formula: last * (goal - score) / goal added or subtracted, at least 10000
    assert core.feed_loop_next_input(last_input, 200) == 900000 + 900000 * 9800 // 10000
    assert core.feed_loop_next_input(last_input, 15000) == 900000 - 900000 * 5000 // 10000
    assert core.feed_loop_next_input(last_input, 10000) == last_input
    assert core.feed_loop_next_input(last_input, 20000) == 10000
    assert core.feed_loop_next_input(10001, 19999) == 10000


@pytest.mark.parametrize("sz, min_region_sz, min_nr_regions, max_sz_expect, nr_expect", [
    (10, 1, 10, 1, 10),  # common, expected setup
    (10, 1, 15, 1, 10),  # no zero size limit
    (10, 2, 2, 6, 2),  # max size should be aligned by min_region_sz
    (10, 2, 10, 2, 5),  # when min_nr_regions and min_region_sz conflict, min_region_sz wins
])
def test_damon_test_apply_min_nr_regions(sz: int, min_region_sz: int, min_nr_regions: int,
                                         max_sz_expect: int, nr_expect: int) -> None:
    c = new_ctx()
    c.targets.append(target_of([(0, sz)]))
    c.min_region_sz = min_region_sz
    c.attrs.min_nr_regions = min_nr_regions
    assert core.apply_min_nr_regions(c) == max_sz_expect
    assert c.targets[0].nr_regions == nr_expect


def test_damon_test_is_last_region() -> None:
    # damon_is_last_region() decides when a DAMOS snapshot of a target is complete: once per target per
    # apply interval, at its last region, whichever regions the scheme applied to
    c = new_ctx()
    c.targets = [Target(regions=[Region(i * 2, (i + 1) * 2) for i in range(4)]), target_of([(100, 104)])]
    s = Scheme(action=Action.STAT)
    c.schemes = [s]
    c.ops = ops_mod.BaseOperations()
    apply_schemes(c)
    assert s.stat.nr_snapshots == 2 and s.stat.nr_tried == 5
    s.next_apply_sis = 0
    apply_schemes(c)
    assert s.stat.nr_snapshots == 4


def test_damon_test_rand() -> None:
    # damon_rand(1, 10) picks the split point of damon_split_regions_of(): every 10%..90% point occurs, no
    # other, and the context's seeded generator makes the choice reproducible
    def cuts(seed: int) -> list[int]:
        c = Ctx(min_region_sz=1, rng=random.Random(seed))
        out = []
        for _ in range(400):
            t = target_of([(0, 1000)])
            core.split_regions_of(c, t, 2, 1)
            assert t.nr_regions == 2
            out.append(t.regions[0].end)
        return out

    first = cuts(7)
    assert set(first) == {100 * k for k in range(1, 10)}
    assert cuts(7) == first and cuts(8) != first


# -- vectors beyond core-kunit.h, from the formulas of mm/damon/core.c -------------------------------------

def test_merge_age_rules() -> None:
    # 6.18+: age resets when nr_accesses moves beyond the threshold or flips between zero and non-zero.
    vals = [(5, 5, 3), (5, 20, 3), (0, 1, 3), (0, 0, 3)]  # (nr, last, age)
    t = Target(regions=[Region(s, s + 10, nr_accesses=nr, last_nr_accesses=last, age=age)
                        for s, (nr, last, age) in zip([0, 20, 40, 60], vals)])
    core.merge_regions_of(t, 2, 10**9, True)
    assert [r.age for r in t.regions] == [4, 0, 0, 4]


def test_merge_regions_doubles_threshold_until_max() -> None:
    c = new_ctx()
    c.attrs = Attrs(sample_interval_us=1, aggr_interval_us=100, min_nr_regions=3, max_nr_regions=5)
    t = Target(regions=[Region(i * 10, i * 10 + 10, nr_accesses=(i * 7) % 40) for i in range(20)])
    c.targets.append(t)
    core.merge_regions(c, 1, 10**9)
    assert t.nr_regions <= 5


def test_split_three_way_cuts_left_piece() -> None:
    c = new_ctx()
    c.attrs.max_nr_regions = 1000
    t = target_of([(0, 1000)])
    c.targets.append(t)
    c.last_nr_regions = 1  # unchanged count since the last split, below max/3: three pieces
    core.split_regions(c)
    assert t.nr_regions == 3
    a, b, rest = t.regions
    assert a.start == 0 and a.end == b.start and b.end == rest.start and rest.end == 1000
    # the right remainder comes from the first cut (10..90% of 1000), the middle from cutting the left piece
    assert rest.start % 100 == 0 and 100 <= rest.start <= 900
    assert b.end - a.start == rest.start


def test_split_in_two_when_the_count_changed() -> None:
    # kdamond_split_regions(): three pieces only when the region count did not change since the last split;
    # otherwise two, and the count is remembered for the next call
    c = new_ctx()
    t = target_of([(0, 1000)])
    c.targets.append(t)
    c.last_nr_regions = 5
    core.split_regions(c)
    assert t.nr_regions == 2 and c.last_nr_regions == 1
    c.last_nr_regions = 2
    core.split_regions(c)
    assert t.nr_regions in (3, 4, 5, 6) and c.last_nr_regions == 2
    c.attrs.max_nr_regions = 5  # at or above max/3 (and max/2): split in two, never three
    t.regions = [Region(i * 100, i * 100 + 100) for i in range(2)]
    c.last_nr_regions = 2
    core.split_regions(c)
    assert t.nr_regions <= 4


def test_update_regions_access_rate_batch_equals_single_samples() -> None:
    # a batch of nr_samples equals that many one-sample updates (the moving-sum decrement is constant within
    # a window), which is what lets batched ops sleep to the next boundary
    attrs = Attrs(sample_interval_us=5000, aggr_interval_us=100000)
    pattern = [[True, False, True, True], [False] * 4, [True] * 4]

    def fresh() -> Target:
        return Target(regions=[Region(i * 10, i * 10 + 10, last_nr_accesses=7, nr_accesses_bp=70000)
                               for i in range(3)])

    one_by_one, batched = fresh(), fresh()
    for k in range(4):
        core.update_regions_access_rate(one_by_one, [int(p[k]) for p in pattern], 1, attrs)
    assert core.update_regions_access_rate(batched, [sum(p) for p in pattern], 4, attrs) == 4
    assert [(r.nr_accesses, r.nr_accesses_bp) for r in one_by_one.regions] == [
        (r.nr_accesses, r.nr_accesses_bp) for r in batched.regions] == [
        (3, 70000 + 3 * 10000 - 4 * 3500), (0, 70000 - 4 * 3500), (4, 70000 + 4 * 10000 - 4 * 3500)]
    with pytest.raises(InvalidParamsError):
        core.update_regions_access_rate(batched, [5, 0, 0], 4, attrs)


def test_tune_intervals_directions() -> None:
    def ctx_with(nr: int) -> Ctx:
        c = new_ctx()
        c.attrs = Attrs(sample_interval_us=5000, aggr_interval_us=100000, aggr_samples=20)
        c.attrs.intervals_goal.access_bp = 400
        c.attrs.intervals_goal.aggrs = 3
        c.attrs.intervals_goal.min_sample_us = 1000
        c.attrs.intervals_goal.max_sample_us = 1_000_000
        t = Target(regions=[Region(0, 4096 * 100, nr_accesses=nr)])
        c.targets.append(t)
        return c

    idle = ctx_with(0)  # no access observed: intervals double
    assert core.tune_intervals(idle)
    assert idle.attrs.sample_interval_us == 10000 and idle.attrs.aggr_interval_us == 200000
    busy = ctx_with(20)  # 100% >= 2x the 4% goal: intervals shrink by half at most
    assert core.tune_intervals(busy)
    # feed loop returns its minimum input (1 bp after scaling) -> 5000 + 0 bp -> half
    assert busy.attrs.sample_interval_us == 2500
    assert busy.attrs.aggr_interval_us == busy.attrs.sample_interval_us * 20
