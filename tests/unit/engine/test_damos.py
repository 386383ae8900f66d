"""DAMOS core: ports of the DAMOS cases of core-kunit.h, and the per-apply-interval algorithm of
mm/damon/core.c's DAMOS functions on small explicit vectors."""

from __future__ import annotations

import random

import pytest

from damon_bpf.engine import damos
from damon_bpf.engine.damos import (
    AccessPattern,
    Action,
    Filter,
    FilterType,
    Quota,
    QuotaGoal,
    QuotaGoalMetric,
    Scheme,
    Watermarks,
    WmarkMetric,
)
from damon_bpf.engine.model import Attrs, Ctx, Region, Target
from damon_bpf.engine.ops import Applied, BaseOperations
from damon_bpf.errors import InvalidParamsError


class RecordingOps(BaseOperations):
    """Applies every action fully (or *fail_frac* of it) and records what it was asked to do."""

    name = "rec"
    supported_actions = frozenset(a.value for a in Action)

    def __init__(self, fail_frac: float = 0.0, score: int | None = None) -> None:
        self.applied: list[tuple[int, int, str]] = []
        self.fail_frac = fail_frac
        self.score = score

    def apply_scheme(self, ctx, target, region, scheme):  # type: ignore[no-untyped-def]
        self.applied.append((region.start, region.end, scheme.action.value))
        return Applied(int((region.end - region.start) * (1 - self.fail_frac)))

    def get_scheme_score(self, ctx, target, region, scheme):  # type: ignore[no-untyped-def]
        if self.score is not None:
            return self.score
        return min(99, region.age)  # older = higher priority, enough to test the histogram


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


def make_ctx(regions: list[tuple[int, int, int, int]], ops: BaseOperations | None = None,
             schemes: list[Scheme] | None = None) -> Ctx:
    """regions: (start, end, nr_accesses, age); at an aggregation boundary, min_region_sz 1."""
    ctx = Ctx(attrs=Attrs(sample_interval_us=5000, aggr_interval_us=100000), ops=ops or RecordingOps(),
              min_region_sz=1, rng=random.Random(0))
    ctx.targets.append(Target(regions=[Region(s, e, nr_accesses=n, last_nr_accesses=n, age=a)
                                       for s, e, n, a in regions]))
    ctx.clock_ns = Clock()
    ctx.passed_sample_intervals = 20
    ctx.next_aggregation_sis = 20
    ctx.schemes = schemes or []
    for s in ctx.schemes:
        s.next_apply_sis = 20
    return ctx


def test_damos_test_filter_out() -> None:
    f = Filter(FilterType.ADDR, matching=True, allow=False, addr_start=2, addr_end=6)
    ctx = make_ctx([(3, 5, 0, 0)])
    t = ctx.targets[0]
    # region in the range
    assert damos._core_filter_match(ctx, 0, t, 0, f)
    assert t.nr_regions == 1
    # region before the range
    t.regions = [Region(1, 2)]
    assert not damos._core_filter_match(ctx, 0, t, 0, f)
    assert t.nr_regions == 1
    # region after the range
    t.regions = [Region(6, 8)]
    assert not damos._core_filter_match(ctx, 0, t, 0, f)
    assert t.nr_regions == 1
    # region started before the range: split, the left piece does not match
    t.regions = [Region(1, 4)]
    assert not damos._core_filter_match(ctx, 0, t, 0, f)
    assert [(r.start, r.end) for r in t.regions] == [(1, 2), (2, 4)]
    # region started in the range: split at its end, the left piece matches
    t.regions = [Region(2, 8)]
    assert damos._core_filter_match(ctx, 0, t, 0, f)
    assert [(r.start, r.end) for r in t.regions] == [(2, 6), (6, 8)]


def test_damon_test_set_filters_default_reject() -> None:
    s = Scheme()
    damos.set_filters_default_reject(s)
    assert (s.core_filters_default_reject, s.ops_filters_default_reject) == (False, False)
    target_filter = Filter(FilterType.TARGET, matching=True, allow=True)
    s.filters.append(target_filter)
    damos.set_filters_default_reject(s)
    assert (s.core_filters_default_reject, s.ops_filters_default_reject) == (True, False)
    target_filter.allow = False
    damos.set_filters_default_reject(s)
    assert (s.core_filters_default_reject, s.ops_filters_default_reject) == (False, False)
    s.filters.append(Filter(FilterType.ANON, matching=True, allow=True))
    damos.set_filters_default_reject(s)
    assert (s.core_filters_default_reject, s.ops_filters_default_reject) == (False, True)
    target_filter.allow = True
    damos.set_filters_default_reject(s)
    assert (s.core_filters_default_reject, s.ops_filters_default_reject) == (False, True)


def test_damos_test_new_filter() -> None:
    # damos_new_filter() + damos_add_filter(): a filter starts as given, and damos_filter_for_ops() puts addr
    # and target filters (and 7.2's probe_hits_wsum) in the core layer and every other type in the ops layer,
    # each list in insertion order
    f = Filter(FilterType.ANON, True, False)
    assert (f.type, f.matching, f.allow) == (FilterType.ANON, True, False)
    core_types = {FilterType.ADDR, FilterType.TARGET, FilterType.PROBE_HITS_WSUM}
    assert damos.CORE_FILTER_TYPES == core_types
    fs = [Filter(t, matching=bool(i % 2)) for i, t in enumerate(FilterType)]
    s = Scheme(filters=fs)
    assert s.core_filters == [x for x in fs if x.type in core_types]
    assert s.ops_filters == [x for x in fs if x.type not in core_types]
    assert all(x.core == (x.type in core_types) for x in fs)


def test_scheme_dict_shape() -> None:
    s = Scheme(pattern=AccessPattern(1, 2, 3, 4, 5, 6), action=Action.PAGEOUT, apply_interval_us=1000000,
               wmarks=Watermarks(WmarkMetric.FREE_MEM_RATE, 900, 100, 50, 10))
    d = s.to_dict()
    assert d["action"] == "pageout" and d["apply_interval_us"] == 1000000
    assert d["access_pattern"] == {"sz_bytes": {"min": 1, "max": 2},
                                   "nr_accesses": {"min": "3 samples", "max": "4 samples"},
                                   "age": {"min": "5 aggr_intervals", "max": "6 aggr_intervals"}}
    assert d["watermarks"] == {"metric": "free_mem_rate", "interval_us": 900, "high_permil": 100,
                               "mid_permil": 50, "low_permil": 10}


def test_pattern_bounds_are_inclusive_and_validated() -> None:
    p = AccessPattern(min_sz_bytes=10, max_sz_bytes=20, min_nr_accesses=0, max_nr_accesses=0, min_age_region=5,
                      max_age_region=5)
    assert p.matches(10, 0, 5) and p.matches(20, 0, 5)
    assert not p.matches(21, 0, 5) and not p.matches(10, 1, 5) and not p.matches(10, 0, 4)
    with pytest.raises(InvalidParamsError):
        AccessPattern(min_sz_bytes=5, max_sz_bytes=4).validate()


def test_apply_matches_pattern_resets_age_and_counts_stats() -> None:
    s = Scheme(pattern=AccessPattern(max_nr_accesses=0, min_age_region=3), action=Action.PAGEOUT)
    ctx = make_ctx([(0, 100, 0, 5), (100, 200, 4, 9), (200, 300, 0, 1), (300, 400, 0, 3)], schemes=[s])
    damos.apply_schemes(ctx)
    ops = ctx.ops
    assert ops.applied == [(0, 100, "pageout"), (300, 400, "pageout")]  # type: ignore[attr-defined]
    assert [r.age for r in ctx.targets[0].regions] == [0, 9, 1, 0]
    assert (s.stat.nr_tried, s.stat.sz_tried, s.stat.nr_applied, s.stat.sz_applied) == (2, 200, 2, 200)
    assert s.stat.nr_snapshots == 1
    assert [(r.start, r.end) for r in s.tried_regions] == [(0, 100), (300, 400)]
    # the next apply comes one aggregation interval later
    assert s.next_apply_sis == 40


def test_stat_action_keeps_age() -> None:
    s = Scheme(action=Action.STAT)
    ctx = make_ctx([(0, 100, 0, 5)], schemes=[s])
    damos.apply_schemes(ctx)
    assert ctx.targets[0].regions[0].age == 5 and s.stat.nr_tried == 1


def test_not_due_scheme_does_nothing() -> None:
    s = Scheme(action=Action.PAGEOUT)
    ctx = make_ctx([(0, 100, 0, 5)], schemes=[s])
    s.next_apply_sis = 21
    damos.apply_schemes(ctx)
    assert s.stat.nr_tried == 0


def test_size_quota_split_to_fit_and_resume_next_window() -> None:
    q = Quota(sz=150, reset_interval_ms=1000)
    s = Scheme(action=Action.PAGEOUT, quota=q)
    ops = RecordingOps(score=50)
    ctx = make_ctx([(0, 100, 0, 5), (100, 200, 0, 5), (200, 300, 0, 5), (300, 400, 0, 5)], ops=ops, schemes=[s])
    damos.apply_schemes(ctx)
    # 100 + the first 50 of the second region (split to fit); the quota is then full
    assert ops.applied == [(0, 100, "pageout"), (100, 150, "pageout")]
    assert q.charged_sz == 150 and q.esz == 150
    assert q.charge_target_from == 0 and q.charge_addr_from == 150
    assert damos.quota_is_full(q, 1)
    # same window: nothing more
    s.next_apply_sis = ctx.passed_sample_intervals
    damos.apply_schemes(ctx)
    assert len(ops.applied) == 2
    # next window: resumes after 150 instead of starting from the head again
    ctx.clock_ns.ns += 2 * 10**9  # type: ignore[attr-defined]
    s.next_apply_sis = ctx.passed_sample_intervals
    damos.apply_schemes(ctx)
    assert ops.applied[2:] == [(150, 200, "pageout"), (200, 300, "pageout")]
    assert s.stat.qt_exceeds == 1
    assert q.total_charged_sz == 150


def test_quota_histogram_prefers_high_scores() -> None:
    q = Quota(sz=200, reset_interval_ms=1000)
    s = Scheme(action=Action.PAGEOUT, quota=q)
    ops = RecordingOps()  # score = age
    ctx = make_ctx([(0, 100, 0, 1), (100, 200, 0, 50), (200, 300, 0, 2), (300, 400, 0, 40)], ops=ops,
                   schemes=[s])
    damos.apply_schemes(ctx)
    assert q.min_score == 40  # the two oldest regions fill the quota
    assert ops.applied == [(100, 200, "pageout"), (300, 400, "pageout")]


def test_time_quota_uses_measured_throughput() -> None:
    q = Quota(ms=2)
    s = Scheme(action=Action.PAGEOUT, quota=q)
    ctx = make_ctx([(0, 4096, 0, 1)], schemes=[s])
    damos.set_effective_quota(ctx, s)
    assert q.esz == 4096 * 1024 * 2  # 4 MiB/ms assumed before anything was charged
    q.total_charged_sz, q.total_charged_ns = 10 << 20, 5_000_000  # 10 MiB in 5 ms: 2 MiB/ms
    damos.set_effective_quota(ctx, s)
    assert q.esz == (10 << 20) * 1_000_000 // 5_000_000 * 2


def test_quota_goal_consist_feedback_and_temporal() -> None:
    g = QuotaGoal(QuotaGoalMetric.USER_INPUT, target_value=1000, current_value=0)
    q = Quota(goals=[g], reset_interval_ms=10)
    s = Scheme(action=Action.PAGEOUT, quota=q)
    ctx = make_ctx([(0, 4096, 0, 1)], schemes=[s])
    sizes = []
    for _ in range(4):
        damos.set_effective_quota(ctx, s)
        sizes.append(q.esz)
    assert sizes == [2, 4, 8, 16]  # score 0: the input doubles from 1 byte
    g.current_value = 3000  # over-achieving by more than 2x: back to the minimum
    damos.set_effective_quota(ctx, s)
    assert q.esz == 1
    q.goal_tuner = "temporal"
    q.sz = 1 << 20
    g.current_value = 500
    damos.set_effective_quota(ctx, s)
    assert q.esz == 1 << 20
    g.current_value = 1000
    damos.set_effective_quota(ctx, s)
    assert q.esz == 0


def test_metrics_come_from_the_injected_provider() -> None:
    g = QuotaGoal(QuotaGoalMetric.SOME_MEM_PSI_US, target_value=100)
    s = Scheme(action=Action.PAGEOUT, quota=Quota(goals=[g]))
    ctx = make_ctx([(0, 4096, 0, 1)], schemes=[s])
    ctx.damos_metric = lambda goal, scheme: 50
    assert damos.quota_score(ctx, s) == 5000 and g.current_value == 50


def test_fail_charge_ratio() -> None:
    q = Quota(sz=10**6, fail_charge_num=1, fail_charge_denom=1024)
    damos.charge_quota(q, 1000 << 20, 700 << 20)
    assert q.charged_sz == (700 << 20) + (300 << 10)


def test_watermarks_activate_between_low_and_mid() -> None:
    s = Scheme(wmarks=Watermarks(WmarkMetric.FREE_MEM_RATE, interval_us=5000, high=800, mid=500, low=100))
    ctx = make_ctx([(0, 4096, 0, 1)], schemes=[s])
    free = {"v": 900}
    ctx.damos_metric = lambda w, sc: free["v"]
    assert damos.wmark_wait_us(ctx, s) == 5000 and not s.wmarks.activated  # above high
    free["v"] = 600
    assert damos.wmark_wait_us(ctx, s) == 5000 and not s.wmarks.activated  # between mid and high: stay off
    free["v"] = 400
    assert damos.wmark_wait_us(ctx, s) == 0 and s.wmarks.activated  # below mid: on
    free["v"] = 700
    assert damos.wmark_wait_us(ctx, s) == 0 and s.wmarks.activated  # stays on until above high
    free["v"] = 50
    assert damos.wmark_wait_us(ctx, s) == 5000 and not s.wmarks.activated  # below low: off
    assert damos.wait_activation_us(ctx) == 5000
    ctx.schemes.append(Scheme())  # a scheme without watermarks keeps the context active
    assert damos.wait_activation_us(ctx) == 0


def test_core_filters_addr_and_target() -> None:
    s = Scheme(action=Action.PAGEOUT, filters=[Filter(FilterType.ADDR, matching=True, allow=False,
                                                      addr_start=150, addr_end=250)])
    ctx = make_ctx([(0, 100, 0, 1), (100, 200, 0, 1), (200, 300, 0, 1)], schemes=[s])
    damos.apply_schemes(ctx)
    assert ctx.ops.applied == [(0, 100, "pageout"), (100, 150, "pageout"), (250, 300, "pageout")]  # type: ignore
    # rejected parts are not "tried"
    assert s.stat.nr_tried == 3
    # the filter split the regions at its edges; applied pieces got age 0, rejected ones kept theirs; merge-back
    # leaves them apart here because the region size limit (total / min_nr_regions = 30) is smaller
    assert [(r.start, r.end, r.age) for r in ctx.targets[0].regions] == [
        (0, 100, 0), (100, 150, 0), (150, 200, 1), (200, 250, 1), (250, 300, 0)]
    s2 = Scheme(action=Action.STAT, filters=[Filter(FilterType.TARGET, matching=True, allow=True, target_idx=1)])
    ctx2 = make_ctx([(0, 100, 0, 1)], schemes=[s2])
    damos.apply_schemes(ctx2)
    assert s2.stat.nr_tried == 0  # target 0 does not match an allow filter for target 1: default reject


def test_merge_back_joins_equal_neighbours_within_the_size_limit() -> None:
    s = Scheme(action=Action.PAGEOUT, quota=Quota(sz=250, reset_interval_ms=1000))
    ops = RecordingOps(score=50)
    ctx = make_ctx([(0, 1000, 0, 3)], ops=ops, schemes=[s])
    ctx.attrs.min_nr_regions = 3  # size limit 333
    damos.apply_schemes(ctx)
    # split to fit 250; the applied piece has age 0, the rest keeps age 3: different, no merge-back
    assert [(r.start, r.end, r.age) for r in ctx.targets[0].regions] == [(0, 250, 0), (250, 1000, 3)]
    t = ctx.targets[0]
    t.regions = [Region(0, 100, age=2), Region(100, 200, age=2), Region(200, 300, age=2), Region(300, 400, age=5)]
    damos._merge_back(t, 250)
    assert [(r.start, r.end) for r in t.regions] == [(0, 200), (200, 300), (300, 400)]


def test_max_nr_snapshots_stops_the_scheme() -> None:
    s = Scheme(action=Action.STAT, max_nr_snapshots=2)
    ctx = make_ctx([(0, 100, 0, 1), (100, 200, 0, 1)], schemes=[s])
    for _ in range(4):
        s.next_apply_sis = ctx.passed_sample_intervals
        damos.apply_schemes(ctx)
    assert s.stat.nr_snapshots == 2 and s.stat.nr_tried == 4


def test_mvsum_is_used_between_aggregations() -> None:
    s = Scheme(pattern=AccessPattern(min_nr_accesses=10), action=Action.STAT, apply_interval_us=50000)
    ctx = make_ctx([(0, 100, 2, 1)], schemes=[s])
    t = ctx.targets[0]
    t.regions = [Region(0, 100, nr_accesses=2, last_nr_accesses=20, age=1)]
    ctx.passed_sample_intervals = 10
    ctx.next_aggregation_sis = 20  # half the window left: 2 + 20 * 0.5 = 12
    s.next_apply_sis = 10
    damos.apply_schemes(ctx)
    assert s.stat.nr_tried == 1 and s.tried_regions[0].nr_accesses == 12


@pytest.mark.parametrize("seed", range(8))
def test_quota_adherence_over_many_windows(seed: int) -> None:
    """Bytes tried (so also applied) within each reset window never exceed the size quota, and the time quota
    converted through the measured throughput is honoured too."""
    rng = random.Random(seed)
    sz_quota = rng.choice([4096, 3 * 4096, 10 * 4096, 64 * 4096])
    regions = []
    addr = 0
    for _ in range(rng.randint(5, 40)):
        sz = rng.randint(1, 16) * 4096
        regions.append((addr, addr + sz, 0, rng.randint(0, 20)))
        addr += sz
    s = Scheme(action=Action.PAGEOUT, quota=Quota(sz=sz_quota, reset_interval_ms=100))
    ops = RecordingOps(score=None)
    ctx = make_ctx(regions, ops=ops, schemes=[s])
    ctx.min_region_sz = 4096
    per_window: dict[int, int] = {}
    for step in range(60):
        ctx.clock_ns.ns += 20_000_000  # type: ignore[attr-defined]  # 5 applies per 100 ms window
        before = len(ops.applied)
        s.next_apply_sis = ctx.passed_sample_intervals
        damos.apply_schemes(ctx)
        window = s.quota.charged_from_ms
        assert window is not None
        per_window[window] = per_window.get(window, 0) + sum(e - b for b, e, _ in ops.applied[before:])
    assert per_window and max(per_window.values()) <= sz_quota
    assert sum(per_window.values()) > 0
    # the time quota: with 1 ms and a measured throughput, esz never exceeds throughput x ms
    q = Quota(ms=1, reset_interval_ms=100)
    s2 = Scheme(action=Action.PAGEOUT, quota=q)
    q.total_charged_sz, q.total_charged_ns = 1 << 20, 4_000_000  # 1 MiB in 4 ms: 256 KiB/ms
    damos.set_effective_quota(ctx, s2)
    assert q.esz == (1 << 20) * 1_000_000 // 4_000_000


# -- kernel rules the audit found missing (issue #9), each against the kernel function named ---------------

def test_time_quota_floor_keeps_a_slow_scheme_alive() -> None:
    # damos_set_effective_quota(): after the time quota, esz is at least min_region_sz; otherwise a measured
    # throughput below one region per quota ms leaves esz < min_region_sz, the quota is "full" from the start,
    # nothing is ever charged again and the throughput can never recover
    q = Quota(ms=1, reset_interval_ms=100)
    s = Scheme(action=Action.PAGEOUT, quota=q)
    ctx = make_ctx([(0, 8192, 0, 1)], schemes=[s])
    ctx.min_region_sz = 4096
    q.total_charged_sz, q.total_charged_ns = 4096, 10**9  # 4 KiB in 1 s: 4 bytes per ms
    q.charged_from_ms = 0  # a past charge window
    damos.set_effective_quota(ctx, s)
    assert q.esz == 4096
    assert not damos.quota_is_full(q, ctx.min_region_sz)
    damos.apply_schemes(ctx)
    assert ctx.ops.applied == [(0, 4096, "pageout")]  # type: ignore[attr-defined]


def test_quota_histogram_skips_core_filtered_regions() -> None:
    # damos_adjust_quota() (7.1): regions the core filters reject are not counted; counting a rejected oldest
    # region would set min_score to its score and nothing else could apply
    q = Quota(sz=100, reset_interval_ms=1000)
    s = Scheme(action=Action.PAGEOUT, quota=q,
               filters=[Filter(FilterType.ADDR, matching=True, allow=False, addr_start=100, addr_end=200)])
    ops = RecordingOps()  # score = age
    ctx = make_ctx([(0, 100, 0, 10), (100, 200, 0, 90), (200, 300, 0, 5)], ops=ops, schemes=[s])
    damos.apply_schemes(ctx)
    assert q.min_score == 10
    assert ops.applied == [(0, 100, "pageout")]


def test_quota_histogram_filter_split_counts_only_allowed_part() -> None:
    # an addr filter splits a region straddling its edge in the histogram walk too; only the allowed part
    # counts, so the quota needs the next bucket
    q = Quota(sz=100, reset_interval_ms=1000)
    s = Scheme(action=Action.PAGEOUT, quota=q,
               filters=[Filter(FilterType.ADDR, matching=True, allow=False, addr_start=0, addr_end=50)])
    ops = RecordingOps()
    ctx = make_ctx([(0, 100, 0, 30), (100, 200, 0, 20)], ops=ops, schemes=[s])
    damos.apply_schemes(ctx)
    assert q.min_score == 20  # 50 bytes at score 30 are not enough for the 100-byte quota
    assert ops.applied == [(50, 100, "pageout"), (100, 150, "pageout")]


def test_sz_tried_uses_size_before_the_filter_split() -> None:
    # damos_apply_scheme(): sz is taken before damos_core_filter_out() may split the region, and it is what
    # sz_tried counts and the quota is charged; the ops get the allowed piece only
    s = Scheme(action=Action.PAGEOUT,
               filters=[Filter(FilterType.ADDR, matching=True, allow=True, addr_start=0, addr_end=4096)])
    ops = RecordingOps(score=50)
    ctx = make_ctx([(0, 8192, 0, 1)], ops=ops, schemes=[s])
    damos.apply_schemes(ctx)
    assert ops.applied == [(0, 4096, "pageout")]
    assert (s.stat.nr_tried, s.stat.sz_tried, s.stat.sz_applied) == (1, 8192, 4096)
    # with a quota, the histogram walk of damos_adjust_quota() has split the region at the filter's edge
    # already, so the apply sees the piece and charges its size
    q = Quota(sz=10**6, reset_interval_ms=1000)
    s2 = Scheme(action=Action.PAGEOUT, quota=q, filters=list(s.filters))
    ops2 = RecordingOps(score=50)
    ctx2 = make_ctx([(0, 8192, 0, 1)], ops=ops2, schemes=[s2])
    damos.apply_schemes(ctx2)
    assert ops2.applied == [(0, 4096, "pageout")]
    assert (s2.stat.sz_tried, q.charged_sz) == (4096, 4096)


def test_merge_back_runs_when_nothing_matches() -> None:
    # the merge-back of kdamond_apply_schemes() walks every region of a valid target, whatever the schemes
    # wanted: split neighbours with equal counters join again even when no region matched any pattern
    s = Scheme(pattern=AccessPattern(min_nr_accesses=50), action=Action.PAGEOUT)
    ctx = make_ctx([(0, 100, 0, 4), (100, 200, 0, 4), (200, 300, 0, 4)], schemes=[s])
    ctx.attrs.min_nr_regions = 3
    ctx.targets[0].regions = [Region(0, 50, age=4), Region(50, 100, age=4), Region(100, 300, age=4)]
    damos.apply_schemes(ctx)
    assert ctx.ops.applied == []  # type: ignore[attr-defined]
    assert [(r.start, r.end) for r in ctx.targets[0].regions] == [(0, 100), (100, 300)]


def test_pattern_matches_uses_the_mvsum_of_the_region() -> None:
    s = Scheme(pattern=AccessPattern(min_nr_accesses=3, max_nr_accesses=3), action=Action.STAT)
    ctx = make_ctx([(0, 100, 9, 1)], schemes=[s])
    ctx.targets[0].regions = [Region(0, 100, nr_accesses=9, last_nr_accesses=3, age=1)]
    ctx.passed_sample_intervals = 0
    ctx.next_aggregation_sis = 20  # a whole window left: nr_accesses is not reset yet, the last window counts
    s.next_apply_sis = 0
    damos.apply_schemes(ctx)
    assert s.stat.nr_tried == 1 and s.tried_regions[0].nr_accesses == 3


def test_quota_full_when_less_than_a_region_is_left() -> None:
    # damos_quota_is_full() (7.2): a remainder below min_region_sz counts as full, so no zero-sized
    # split-to-fit attempt is "tried" after it
    q = Quota(sz=2 * 4096 + 1808, reset_interval_ms=1000)
    s = Scheme(action=Action.PAGEOUT, quota=q)
    ops = RecordingOps(score=50)
    ctx = make_ctx([(i * 4096, (i + 1) * 4096, 0, 5) for i in range(4)], ops=ops, schemes=[s])
    ctx.min_region_sz = 4096
    damos.apply_schemes(ctx)
    assert ops.applied == [(0, 4096, "pageout"), (4096, 8192, "pageout")]
    assert q.charged_sz == 8192 and damos.quota_is_full(q, 4096) and not damos.quota_is_full(q, 1024)
    assert s.stat.nr_tried == 2


def test_deactivated_watermarks_wait_at_exactly_mid() -> None:
    # damos_wmark_wait_us(): an inactive scheme stays off while mid <= metric <= high, both ends included
    s = Scheme(wmarks=Watermarks(WmarkMetric.FREE_MEM_RATE, interval_us=7000, high=800, mid=500, low=100))
    ctx = make_ctx([(0, 4096, 0, 1)], schemes=[s])
    value = {"v": 900}
    ctx.damos_metric = lambda w, sc: value["v"]
    assert damos.wmark_wait_us(ctx, s) == 7000 and not s.wmarks.activated
    for v, wait in ((800, 7000), (500, 7000), (499, 0)):
        value["v"] = v
        assert damos.wmark_wait_us(ctx, s) == wait, v
    assert s.wmarks.activated
    value["v"] = 100  # exactly low: still active
    assert damos.wmark_wait_us(ctx, s) == 0
