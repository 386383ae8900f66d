"""The DAMON monitoring core: region split/merge, ages, access-rate bookkeeping and interval tuning.

Mirrors ``mm/damon/core.c`` as of Linux v7.3-rc1 (with the v7.2 ``nr_accesses_bp`` moving sum kept, since
record consumers still read it). Every function names the kernel function it ports. Integer arithmetic follows
C truncating division on non-negative values; ``mult_frac()`` is reproduced exactly.

No module-level mutable state: the kernel's ``static last_nr_regions`` and split rotation live on the
:class:`~damon_bpf.engine.model.Ctx`, and randomness comes from ``ctx.rng``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from damon_bpf.engine.model import DAMON_MIN_REGION_SZ, AddrRange, Attrs, Ctx, Region, Target
from damon_bpf.errors import InvalidParamsError

__all__ = (
    "ULONG_MAX",
    "mult_frac",
    "align_down",
    "align_up",
    "damon_rand",
    "new_region",
    "add_region",
    "destroy_region",
    "split_region_at",
    "merge_two_regions",
    "merge_regions_of",
    "merge_regions",
    "split_regions_of",
    "split_some_regions",
    "split_regions",
    "set_regions",
    "region_sz_limit",
    "apply_min_nr_regions",
    "moving_sum",
    "mvsum",
    "nr_accesses_mvsum",
    "update_region_access_rate",
    "update_regions_access_rate",
    "reset_aggregated",
    "feed_loop_next_input",
    "intervals_score",
    "intervals_adaptation_bp",
    "tune_intervals",
    "update_monitoring_result",
    "set_attrs",
    "init_ctx",
)

ULONG_MAX = 2**64 - 1


def mult_frac(x: int, n: int, d: int) -> int:
    """``mult_frac(x, n, d)`` of ``include/linux/math.h``: x * n / d without intermediate overflow."""
    q, r = divmod(x, d)
    return q * n + r * n // d


def align_down(x: int, a: int) -> int:
    """``ALIGN_DOWN(x, a)``."""
    return x - x % a


def align_up(x: int, a: int) -> int:
    """``ALIGN(x, a)``."""
    return -(-x // a) * a


def damon_rand(ctx: Ctx, lo: int, hi: int) -> int:
    """``damon_rand(ctx, l, r)``: uniform in ``[lo, hi)``; ``lo`` when the range is empty."""
    if hi <= lo:
        return lo
    return ctx.rng.randrange(lo, hi)


def new_region(start: int, end: int) -> Region:
    """``damon_new_region()``: every counter starts at 0."""
    return Region(start, end)


def add_region(t: Target, r: Region) -> None:
    """``damon_add_region()``: append at the tail."""
    t.regions.append(r)


def destroy_region(t: Target, r: Region) -> None:
    """``damon_destroy_region()``."""
    for i, x in enumerate(t.regions):
        if x is r:
            del t.regions[i]
            return


def _copy_right(r: Region, start: int) -> Region:
    return Region(start, r.end, r.nr_accesses, r.nr_accesses_bp, r.age, r.last_nr_accesses)


def split_region_at(t: Target, r: Region, sz_r: int, idx: int | None = None) -> Region:
    """``damon_split_region_at()``: split *r* into ``[start, start+sz_r)`` and the rest; the new right-hand
    region inherits ``age``, ``nr_accesses``, ``nr_accesses_bp`` and ``last_nr_accesses`` and is inserted right
    after *r*. *idx*, when known, is *r*'s index in ``t.regions`` (saves a search)."""
    new = _copy_right(r, r.start + sz_r)
    r.end = new.start
    if idx is None:
        idx = next(i for i, x in enumerate(t.regions) if x is r)
    t.regions.insert(idx + 1, new)
    return new


def merge_two_regions(t: Target, l: Region, r: Region) -> None:
    """``damon_merge_two_regions()``: size-weighted averages of ``nr_accesses`` and ``age``; *r* is removed.
    ``l.last_nr_accesses`` is kept as it is."""
    sz_l = l.end - l.start
    sz_r = r.end - r.start
    total = sz_l + sz_r
    l.nr_accesses = (l.nr_accesses * sz_l + r.nr_accesses * sz_r) // total
    l.nr_accesses_bp = l.nr_accesses * 10000
    l.age = (l.age * sz_l + r.age * sz_r) // total
    l.end = r.end
    destroy_region(t, r)


def merge_regions_of(t: Target, thres: int, sz_limit: int, count_age: bool = True) -> None:
    """``damon_merge_regions_of()``: update each region's age (on the first pass only, as 7.3 does), then merge
    it into the previous one when they touch, their ``nr_accesses`` differ by at most *thres* and the merged size
    stays within *sz_limit*.

    Age rule (6.18+): reset to 0 when ``nr_accesses`` moved by more than *thres* since the last window or
    flipped between zero and non-zero; otherwise one more aggregation interval old.
    """
    out: list[Region] = []
    prev: Region | None = None
    for r in t.regions:
        if count_age:
            nr = r.nr_accesses
            last = r.last_nr_accesses
            if abs(nr - last) > thres or (nr == 0) != (last == 0):
                r.age = 0
            else:
                r.age += 1
        if (prev is not None and prev.end == r.start
                and abs(prev.nr_accesses - r.nr_accesses) <= thres
                and (prev.end - prev.start) + (r.end - r.start) <= sz_limit):
            sz_l = prev.end - prev.start
            sz_r = r.end - r.start
            total = sz_l + sz_r
            prev.nr_accesses = (prev.nr_accesses * sz_l + r.nr_accesses * sz_r) // total
            prev.nr_accesses_bp = prev.nr_accesses * 10000
            prev.age = (prev.age * sz_l + r.age * sz_r) // total
            prev.end = r.end
        else:
            out.append(r)
            prev = r
    t.regions[:] = out


def merge_regions(ctx: Ctx, threshold: int, sz_limit: int) -> None:
    """``kdamond_merge_regions()`` (7.3 loop): merge with *threshold*; while there are still more than
    ``max_nr_regions`` regions, retry with a doubled threshold, up to ``aggr/sample``. Ages are counted on the
    first pass only."""
    attrs = ctx.attrs
    max_thres = attrs.aggr_interval_us // (attrs.sample_interval_us or 1)
    count_age = True
    while True:
        for t in ctx.targets:
            merge_regions_of(t, threshold, sz_limit, count_age)
        count_age = False
        if ctx.nr_regions <= attrs.max_nr_regions or max_thres <= threshold:
            break
        threshold = max(1, threshold * 2) if threshold < max_thres // 2 else max_thres


def split_regions_of(ctx: Ctx, t: Target, nr_subs: int, min_region_sz: int | None = None) -> None:
    """``damon_split_regions_of()``: cut each original region into up to *nr_subs* pieces at random 10-90%
    points. A 3-way split cuts the left piece again, as the kernel does; regions of at most
    ``2 * min_region_sz`` are left alone."""
    mrs = ctx.min_region_sz if min_region_sz is None else min_region_sz
    rng = ctx.rng
    out: list[Region] = []
    for r in t.regions:
        sz = r.end - r.start
        tails: list[Region] = []
        i = 0
        while i < nr_subs - 1 and sz > 2 * mrs:
            i += 1
            sz_sub = rng.randrange(1, 10) * sz // 10
            sz_sub -= sz_sub % mrs
            if sz_sub == 0 or sz_sub >= sz:
                continue
            tails.append(_copy_right(r, r.start + sz_sub))
            r.end = r.start + sz_sub
            sz = sz_sub
        out.append(r)
        if tails:
            out.extend(reversed(tails))
    t.regions[:] = out


def split_some_regions(ctx: Ctx, step: int) -> None:
    """``damon_split_some_regions()`` (7.3): split one of every *step* regions (global index over all
    targets, from a rotating offset) in two at a random 10-90% point, skipping regions smaller than
    ``2 * min_region_sz``. Splitting 1/step of the regions with ``step = max // (max - nr)`` never exceeds
    ``max_nr_regions``."""
    mrs = ctx.min_region_sz
    offset = ctx.split_rotation % step
    ctx.split_rotation += 1
    gidx = 0
    rng = ctx.rng
    for t in ctx.targets:
        out: list[Region] = []
        for r in t.regions:
            out.append(r)
            if gidx % step == offset:
                sz = r.end - r.start
                if sz >= 2 * mrs:
                    sz_sub = rng.randrange(1, 10) * sz // 10
                    sz_sub -= sz_sub % mrs
                    if 0 < sz_sub < sz:
                        out.append(_copy_right(r, r.start + sz_sub))
                        r.end = r.start + sz_sub
            gidx += 1
        t.regions[:] = out


def split_regions(ctx: Ctx) -> None:
    """``kdamond_split_regions()`` (7.3): below ``max/2`` regions split every region in two (three when the
    count did not change since the last split and is below ``max/3``); between ``max/2`` and ``max`` split a
    fraction of them; at ``max`` do nothing."""
    nr = ctx.nr_regions
    mx = ctx.attrs.max_nr_regions
    if nr < mx:
        if nr > mx // 2:
            split_some_regions(ctx, mx // (mx - nr))
        else:
            nr_subs = 3 if (ctx.last_nr_regions == nr and nr < mx // 3) else 2
            for t in ctx.targets:
                split_regions_of(ctx, t, nr_subs)
    ctx.last_nr_regions = nr


def _intersect(r: Region, a: AddrRange) -> bool:
    return not (r.end <= a.start or a.end <= r.start)


def set_regions(t: Target, ranges: Sequence[AddrRange], min_region_sz: int = DAMON_MIN_REGION_SZ) -> None:
    """``damon_set_regions()``: make *t*'s regions cover exactly *ranges* (sorted, non-overlapping).

    Regions intersecting no range are removed; for each range, the first and last intersecting regions are
    stretched to the range's aligned edges and holes between them are filled with new regions; a range no
    region intersects gets one new region. Surviving regions keep their counters and age.
    """
    regions = [r for r in t.regions if any(_intersect(r, a) for a in ranges)]
    i = 0
    for rng_ in ranges:
        first = last = -1
        while i < len(regions):
            r = regions[i]
            if _intersect(r, rng_):
                if first < 0:
                    first = i
                last = i
            if r.start >= rng_.end:
                break
            i += 1
        if first < 0:
            regions.insert(i, Region(align_down(rng_.start, min_region_sz), align_up(rng_.end, min_region_sz)))
            i += 1
            continue
        regions[first].start = align_down(rng_.start, min_region_sz)
        regions[last].end = align_up(rng_.end, min_region_sz)
        # damon_fill_regions_holes()
        j = first
        while j < last:
            a, b = regions[j], regions[j + 1]
            if a.end < b.start:
                regions.insert(j + 1, Region(a.end, b.start))
                last += 1
                i += 1
                j += 1
            j += 1
    t.regions[:] = regions


def region_sz_limit(ctx: Ctx) -> int:
    """``damon_region_sz_limit()``: ``max(total size / min_nr_regions, min_region_sz)``."""
    sz = sum(r.end - r.start for t in ctx.targets for r in t.regions)
    if ctx.attrs.min_nr_regions:
        sz //= ctx.attrs.min_nr_regions
    return max(sz, ctx.min_region_sz)


def apply_min_nr_regions(ctx: Ctx) -> int:
    """``damon_apply_min_nr_regions()`` (7.1+): split every region larger than the aligned size limit so
    ``min_nr_regions`` holds; returns the limit, which is also the merge size limit."""
    max_region_sz = align_up(region_sz_limit(ctx), ctx.min_region_sz)
    for t in ctx.targets:
        if all(r.end - r.start <= max_region_sz for r in t.regions):
            continue
        out: list[Region] = []
        for r in t.regions:
            out.append(r)
            while r.end - r.start > max_region_sz:
                new = _copy_right(r, r.start + max_region_sz)
                r.end = new.start
                out.append(new)
                r = new
        t.regions[:] = out
    return max_region_sz


def moving_sum(mvsum_: int, nomvsum: int, len_window: int, new_value: int) -> int:
    """``damon_moving_sum()`` (<= 7.2): the pseudo moving sum used for ``nr_accesses_bp``."""
    return mvsum_ - nomvsum // len_window + new_value


def mvsum(current: int, last: int, left_window_bp: int) -> int:
    """``damon_mvsum()`` (7.3): ``current + last * left_window_bp / 10000``."""
    return current + mult_frac(last, left_window_bp, 10000)


def nr_accesses_mvsum(r: Region, ctx: Ctx) -> int:
    """``damon_nr_accesses_mvsum()`` (7.3): a moving sum of ``nr_accesses`` over the last aggregation
    window's length, computed on demand. DAMOS uses it to judge regions between aggregation boundaries."""
    window_len = ctx.attrs.max_nr_accesses
    passed = ctx.passed_sample_intervals
    nas = ctx.next_aggregation_sis
    if passed >= nas:
        return r.nr_accesses
    left = nas - passed
    if left >= window_len:
        # a whole window is left: nr_accesses belongs to the window that just ended and is not reset yet
        return r.last_nr_accesses
    return mvsum(r.nr_accesses, r.last_nr_accesses, mult_frac(left, 10000, window_len))


def update_region_access_rate(r: Region, accessed: bool, attrs: Attrs) -> None:
    """``damon_update_region_access_rate()``: one sampling interval's result for *r*."""
    len_window = attrs.max_nr_accesses if attrs.sample_interval_us else 1
    r.nr_accesses_bp = r.nr_accesses_bp - (r.last_nr_accesses * 10000) // len_window + (10000 if accessed else 0)
    if accessed:
        r.nr_accesses += 1


def update_regions_access_rate(regions: Sequence[Region], hits: Iterable[int], nr_samples: int,
                               attrs: Attrs) -> int:
    """Batch form of :func:`update_region_access_rate`: *hits[i]* of the last *nr_samples* sampling intervals
    saw an access to ``regions[i]``. Exactly equal to *nr_samples* single updates (the moving-sum decrement is
    constant within an aggregation window). Returns the maximum ``nr_accesses`` afterwards."""
    len_window = attrs.max_nr_accesses if attrs.sample_interval_us else 1
    mx = 0
    for r, h in zip(regions, hits):
        h = int(h)
        if h > nr_samples:
            raise InvalidParamsError(f"{h} hits in {nr_samples} sampling intervals")
        r.nr_accesses_bp += h * 10000 - nr_samples * ((r.last_nr_accesses * 10000) // len_window)
        nr = r.nr_accesses + h
        r.nr_accesses = nr
        if nr > mx:
            mx = nr
    return mx


def reset_aggregated(ctx: Ctx) -> int:
    """``kdamond_reset_aggregated()``: ``last_nr_accesses = nr_accesses; nr_accesses = 0``. A moving sum that
    drifted from ``nr_accesses * 10000`` is repaired, as ``damon_warn_fix_nr_accesses_corruption()`` does;
    returns how many were repaired."""
    nr_fixed = 0
    for t in ctx.targets:
        for r in t.regions:
            if r.nr_accesses_bp != r.nr_accesses * 10000:
                r.nr_accesses_bp = r.nr_accesses * 10000
                nr_fixed += 1
            r.last_nr_accesses = r.nr_accesses
            r.nr_accesses = 0
    return nr_fixed


def feed_loop_next_input(last_input: int, score: int) -> int:
    """``damon_feed_loop_next_input()``: proportional feedback towards a score of 10000 (the goal)."""
    goal = 10000
    min_input = 10000
    if score == goal:
        return last_input
    if score >= goal * 2:
        return min_input
    over = score > goal
    diff = score - goal if over else goal - score
    if last_input < ULONG_MAX // diff:
        compensation = last_input * diff // goal
    else:
        compensation = last_input // goal * diff
    if over:
        return max(last_input - compensation, min_input)
    if last_input < ULONG_MAX - compensation:
        return last_input + compensation
    return ULONG_MAX


def intervals_score(ctx: Ctx) -> int:
    """``damon_get_intervals_score()``: observed access events against the goal, in bp."""
    max_ev = 0
    ev = 0
    aggr_samples = ctx.attrs.aggr_samples
    for t in ctx.targets:
        for r in t.regions:
            sz = r.end - r.start
            max_ev += sz * aggr_samples
            ev += sz * r.nr_accesses
    target = max_ev * ctx.attrs.intervals_goal.access_bp // 10000
    return mult_frac(ev, 10000, target or 1)


def intervals_adaptation_bp(ctx: Ctx) -> int:
    """``damon_get_intervals_adaptation_bp()``: in [5000, 20000]; shrinking is limited to half per step."""
    adaptation_bp = feed_loop_next_input(100_000_000, intervals_score(ctx)) // 10000
    if adaptation_bp <= 10000:
        adaptation_bp = 5000 + adaptation_bp // 2
    return adaptation_bp


def tune_intervals(ctx: Ctx) -> bool:
    """``kdamond_tune_intervals()``: scale the sample interval (and the aggregation interval with it, keeping
    ``aggr_samples``) towards the access-ratio goal; returns whether the intervals changed."""
    adaptation_bp = intervals_adaptation_bp(ctx)
    if adaptation_bp == 10000:
        return False
    a = ctx.attrs
    g = a.intervals_goal
    sample = min(g.max_sample_us, a.sample_interval_us * adaptation_bp // 10000)
    sample = max(g.min_sample_us, sample)
    new = Attrs(
        sample_interval_us=sample,
        aggr_interval_us=sample * a.aggr_samples,
        ops_update_interval_us=a.ops_update_interval_us,
        min_nr_regions=a.min_nr_regions,
        max_nr_regions=a.max_nr_regions,
        intervals_goal=g,
        aggr_samples=a.aggr_samples,
    )
    set_attrs(ctx, new)
    return True


def _nr_accesses_for_new_attrs(nr: int, old: Attrs, new: Attrs) -> int:
    bp = mult_frac(nr, 10000, old.max_nr_accesses)
    return bp * new.max_nr_accesses // 10000


def update_monitoring_result(r: Region, old: Attrs, new: Attrs, aggregating: bool) -> None:
    """``damon_update_monitoring_result()``: rescale a region's counters to new intervals. In the middle of
    an aggregation window the window so far is dropped, as if ``kdamond_reset_aggregated()`` had run."""
    if not aggregating:
        r.nr_accesses = _nr_accesses_for_new_attrs(r.nr_accesses, old, new)
        r.nr_accesses_bp = r.nr_accesses * 10000
    else:
        r.last_nr_accesses = _nr_accesses_for_new_attrs(r.last_nr_accesses, old, new)
        r.nr_accesses_bp = r.last_nr_accesses * 10000
        r.nr_accesses = 0
    r.age = r.age * old.aggr_interval_us // new.aggr_interval_us


def set_attrs(ctx: Ctx, attrs: Attrs) -> None:
    """``damon_set_attrs()``: validate, re-base the deadlines, rescale regions and scheme apply deadlines.

    :raises InvalidParamsError: the kernel's ``-EINVAL`` cases
    """
    attrs.validate()
    si = attrs.sample_interval_us or 1
    aggregating = ctx.passed_sample_intervals < ctx.next_aggregation_sis
    if not attrs.aggr_samples:
        attrs.aggr_samples = attrs.aggr_interval_us // si
    ctx.next_aggregation_sis = ctx.passed_sample_intervals + attrs.aggr_interval_us // si
    ctx.next_ops_update_sis = ctx.passed_sample_intervals + attrs.ops_update_interval_us // si
    old = ctx.attrs
    if old.sample_interval_us and old.aggr_interval_us and attrs.sample_interval_us and attrs.aggr_interval_us:
        for t in ctx.targets:
            for r in t.regions:
                update_monitoring_result(r, old, attrs, aggregating)
    ctx.attrs = attrs
    for s in ctx.schemes:
        set_next_apply = getattr(s, "set_next_apply_sis", None)
        if set_next_apply is not None:
            set_next_apply(ctx)


def init_ctx(ctx: Ctx) -> None:
    """``kdamond_init_ctx()``: deadlines in sample-interval units from ``passed_sample_intervals = 0``."""
    a = ctx.attrs
    if not a.aggr_samples:
        a.aggr_samples = a.aggr_interval_us // (a.sample_interval_us or 1)
    si = a.sample_interval_us or 1
    ctx.passed_sample_intervals = 0
    ctx.next_aggregation_sis = a.aggr_interval_us // si
    ctx.next_ops_update_sis = a.ops_update_interval_us // si
    ctx.next_intervals_tune_sis = ctx.next_aggregation_sis * a.intervals_goal.aggrs
    for s in ctx.schemes:
        set_next_apply = getattr(s, "set_next_apply_sis", None)
        if set_next_apply is not None:
            set_next_apply(ctx)
