"""The DAMON monitoring core: region split/merge, ages, access-rate bookkeeping and interval tuning.

Every function names the kernel function it ports; the release followed is stated once, in
:mod:`damon_bpf.engine` (``KERNEL_RELEASE``), with the deliberate differences. Integer arithmetic follows C
truncating division on non-negative values; ``mult_frac()`` is reproduced exactly. Each rule has one
implementation: the array form the loop runs is also what the tests call.

No module-level mutable state: the kernel's ``static last_nr_regions`` and split rotation live on the
:class:`~damon_bpf.engine.model.Ctx`, and randomness comes from ``ctx.rng``.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.model import DAMON_MIN_REGION_SZ, AddrRange, Attrs, Ctx, Region, Target
from damon_bpf.engine.regions import COLUMNS, RegionArray
from damon_bpf.errors import InvalidParamsError

__all__ = (
    "ULONG_MAX",
    "mult_frac",
    "align_down",
    "align_up",
    "split_region_at",
    "merge_regions_of",
    "merge_regions",
    "split_regions_of",
    "split_some_regions",
    "split_regions",
    "set_regions",
    "region_sz_limit",
    "apply_min_nr_regions",
    "mvsum",
    "nr_accesses_mvsum",
    "region_nr_accesses_mvsum",
    "target_nr_accesses_mvsum",
    "update_regions_access_rate",
    "reset_aggregated",
    "feed_loop_next_input",
    "intervals_score",
    "intervals_adaptation_bp",
    "tune_intervals",
    "apply_source_intervals",
    "update_monitoring_results",
    "set_attrs",
    "init_ctx",
    "next_boundary_sis",
)

ULONG_MAX = 2**64 - 1


Num = TypeVar("Num", int, npt.NDArray[np.int64])


def mult_frac(x: Num, n: int, d: int) -> Num:
    """``mult_frac(x, n, d)`` of ``include/linux/math.h``: x * n / d without intermediate overflow; *x* may be
    an ``int64`` array."""
    q, r = divmod(x, d)
    return q * n + r * n // d


def align_down(x: int, a: int) -> int:
    """``ALIGN_DOWN(x, a)``."""
    return x - x % a


def align_up(x: int, a: int) -> int:
    """``ALIGN(x, a)``."""
    return -(-x // a) * a


def split_region_at(t: Target, idx: int, sz_r: int) -> None:
    """``damon_split_region_at()``: split region *idx* into ``[start, start+sz_r)`` and the rest; the new
    right-hand region (``idx + 1``) inherits ``age``, ``nr_accesses``, ``nr_accesses_bp`` and
    ``last_nr_accesses``."""
    ra = t.ra
    row = [int(getattr(ra, c)[idx]) for c in COLUMNS]
    row[0] += sz_r
    ra.end[idx] = row[0]
    ra.insert(idx + 1, row, like=idx)


def merge_regions_of(t: Target, thres: int, sz_limit: int, count_age: bool = True) -> None:
    """``damon_merge_regions_of()``: update each region's age (on the first pass only, as 7.3 does), then merge
    it into the previous one when they touch, their ``nr_accesses`` differ by at most *thres* and the merged size
    stays within *sz_limit*.

    Age rule (6.18+): reset to 0 when ``nr_accesses`` moved by more than *thres* since the last window or
    flipped between zero and non-zero; otherwise one more aggregation interval old.

    The walk is sequential because every merge changes the left region's (truncated) average, but a merge
    chain can only start at a pair that qualifies on its own counts: the walk starts at the first such pair.
    """
    ra = t.ra
    n = len(ra)
    if n == 0:
        return
    nr = ra.nr_accesses
    if count_age:
        last = ra.last_nr_accesses
        reset = (np.abs(nr - last) > thres) | ((nr == 0) != (last == 0))
        ra.age = np.where(reset, 0, ra.age + 1)
    if n < 2:
        return
    s_, e_ = ra.start, ra.end
    sz = e_ - s_
    cand = (e_[:-1] == s_[1:]) & (np.abs(nr[:-1] - nr[1:]) <= thres) & (sz[:-1] + sz[1:] <= sz_limit)
    first = int(np.argmax(cand))
    if not cand[first]:
        return
    S = s_.tolist()
    E = e_.tolist()
    NR = nr.tolist()
    AGE = ra.age.tolist()
    # probe hits (7.2): merged size-weighted per slot like nr_accesses; skipped while all are zero
    PH = ra.probe_hits.tolist() if ra.probe_hits.any() else None
    keep = list(range(first + 1))
    merged = []
    p = first
    lo, hi = -thres, thres
    for i in range(first + 1, n):
        ep = E[p]
        if ep == S[i]:
            d = NR[p] - NR[i]
            if lo <= d <= hi:
                szl = ep - S[p]
                szr = E[i] - S[i]
                tot = szl + szr
                if tot <= sz_limit:
                    NR[p] = (NR[p] * szl + NR[i] * szr) // tot
                    AGE[p] = (AGE[p] * szl + AGE[i] * szr) // tot
                    if PH is not None:
                        PH[p] = [(a * szl + b * szr) // tot for a, b in zip(PH[p], PH[i])]
                    E[p] = E[i]
                    merged.append(p)
                    continue
        keep.append(i)
        p = i
    k = np.array(keep, dtype=np.int64)
    new = RegionArray.__new__(RegionArray)
    new.start = s_[k]
    new.end = np.array(E, dtype=np.int64)[k]
    new.nr_accesses = np.array(NR, dtype=np.int64)[k]
    new.age = np.array(AGE, dtype=np.int64)[k]
    bp = ra.nr_accesses_bp.copy()
    if merged:
        m = np.array(merged, dtype=np.int64)
        # damon_merge_two_regions() sets nr_accesses_bp to nr_accesses * 10000
        bp[m] = np.array(NR, dtype=np.int64)[m] * 10000
    new.nr_accesses_bp = bp[k]
    new.last_nr_accesses = ra.last_nr_accesses[k]
    new.probe_hits = (np.array(PH, dtype=np.int64) if PH is not None else ra.probe_hits)[k]
    new.last_probe_hits = ra.last_probe_hits[k]  # kept from the left region, as last_nr_accesses
    ra.assign(new)


def merge_regions(ctx: Ctx, threshold: int, sz_limit: int) -> None:
    """``kdamond_merge_regions()`` (7.3 loop): merge with *threshold*; while there are still more than
    ``max_nr_regions`` regions, retry with a doubled threshold, up to ``aggr/sample``. Ages are counted on the
    first pass only."""
    attrs = ctx.attrs
    max_thres = attrs.aggr_interval_us // attrs.sample_us_nonzero
    count_age = True
    while True:
        for t in ctx.targets:
            merge_regions_of(t, threshold, sz_limit, count_age)
        count_age = False
        if ctx.nr_regions <= attrs.max_nr_regions or max_thres <= threshold:
            break
        threshold = max(1, threshold * 2) if threshold < max_thres // 2 else max_thres


def _np_rng(ctx: Ctx) -> np.random.Generator:
    # a numpy generator seeded once from the context's RNG, so a seeded ctx.rng makes every split reproducible
    gen = ctx.np_rng
    if gen is None:
        gen = ctx.np_rng = np.random.Generator(np.random.PCG64(ctx.rng.getrandbits(64)))
    return gen


def _split_points(gen: np.random.Generator, sz: npt.NDArray[np.int64], mrs: int) -> npt.NDArray[np.int64]:
    # the size of the left piece of each region: damon_rand(1, 10) * sz / 10, aligned down to min_region_sz
    sub = gen.integers(1, 10, size=sz.size, dtype=np.int64) * sz // 10
    return sub - sub % mrs


def _cut(ra: RegionArray, sub: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_]) -> RegionArray:
    """Cut region ``i`` in two at ``start + sub[i]`` where ``valid[i]``; every piece inherits its origin's
    counters and age (``damon_split_region_at()``)."""
    counts = valid + 1
    first = np.cumsum(counts) - counts  # index of each region's first piece
    second = first[valid] + 1
    n_out = len(ra) + len(second)
    cut = ra.start + sub
    starts = np.empty(n_out, dtype=np.int64)
    ends = np.empty(n_out, dtype=np.int64)
    starts[first] = ra.start
    starts[second] = cut[valid]
    ends[first] = np.where(valid, cut, ra.end)
    ends[second] = ra.end[valid]
    return ra.repeat_counters(counts, starts, ends)


def _cut_many(ra: RegionArray, cuts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]]) -> RegionArray:
    """Cut each region at the valid points of *cuts* (per region, increasing along the list)."""
    n = len(ra)
    pts = np.stack([ra.start] + [c for c, _ in cuts], axis=1)
    ok = np.stack([np.ones(n, dtype=bool)] + [v for _, v in cuts], axis=1)
    starts = pts[ok]
    counts = ok.sum(axis=1)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    last = np.cumsum(counts) - 1
    ends[last] = ra.end
    return ra.repeat_counters(counts, starts, ends)


def split_regions_of(ctx: Ctx, t: Target, nr_subs: int, min_region_sz: int | None = None) -> None:
    """``damon_split_regions_of()``: cut each region into up to *nr_subs* pieces at random 10-90% points
    (``damon_rand(1, 10) * sz / 10``, aligned down). A further cut applies to the left piece again, as the
    kernel's loop does, and a failed cut leaves the size for the next try unchanged; regions of at most
    ``2 * min_region_sz`` are left alone."""
    mrs = ctx.min_region_sz if min_region_sz is None else min_region_sz
    ra = t.ra
    if len(ra) == 0 or nr_subs < 2:
        return
    gen = _np_rng(ctx)
    sz = ra.end - ra.start
    cuts: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]] = []
    for _ in range(nr_subs - 1):
        sub = _split_points(gen, sz, mrs)
        valid = (sz > 2 * mrs) & (sub > 0)  # sub <= 0.9 * sz: never the whole region
        cuts.append((sub, valid))
        sz = np.where(valid, sub, sz)
    if len(cuts) == 1:
        sub, valid = cuts[0]
        if valid.any():
            ra.assign(_cut(ra, sub, valid))
        return
    # each later cut lies left of the earlier ones: order the points by address
    ra.assign(_cut_many(ra, [(ra.start + sub, valid) for sub, valid in reversed(cuts)]))


def split_some_regions(ctx: Ctx, step: int) -> None:
    """``damon_split_some_regions()`` (7.3): split one of every *step* regions (global index over all
    targets, from a rotating offset) in two at a random 10-90% point, skipping regions smaller than
    ``2 * min_region_sz``. Splitting 1/step of the regions with ``step = max // (max - nr)`` never exceeds
    ``max_nr_regions``."""
    mrs = ctx.min_region_sz
    offset = ctx.split_rotation % step
    ctx.split_rotation += 1
    gen = _np_rng(ctx)
    base = 0
    for t in ctx.targets:
        ra = t.ra
        n = len(ra)
        if n:
            sz = ra.end - ra.start
            chosen = ((np.arange(base, base + n) % step) == offset) & (sz >= 2 * mrs)
            sub = _split_points(gen, sz, mrs)
            valid = chosen & (sub > 0)
            if valid.any():
                ra.assign(_cut(ra, sub, valid))
        base += n


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

    :raises InvalidParamsError: an empty range, or ranges out of order or overlapping (the kernel's
        ``-EINVAL``); the target is left unchanged
    """
    for i, rg in enumerate(ranges):
        if rg.start >= rg.end:
            raise InvalidParamsError(f"address range {i} [{rg.start:#x}, {rg.end:#x}) is empty")
        if i and ranges[i - 1].end > rg.start:
            raise InvalidParamsError(f"address range {i} [{rg.start:#x}, {rg.end:#x}) overlaps or precedes "
                                     f"range {i - 1} [{ranges[i - 1].start:#x}, {ranges[i - 1].end:#x})")
    regions = [r for r in t.regions if any(_intersect(r, rg) for rg in ranges)]  # copies, edited in place
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
    t.regions = regions


def region_sz_limit(ctx: Ctx) -> int:
    """``damon_region_sz_limit()``: ``max(total size / min_nr_regions, min_region_sz)``."""
    sz = sum(t.ra.sz_total() for t in ctx.targets)
    if ctx.attrs.min_nr_regions:
        sz //= ctx.attrs.min_nr_regions
    return max(sz, ctx.min_region_sz)


def apply_min_nr_regions(ctx: Ctx) -> int:
    """``damon_apply_min_nr_regions()`` (7.1+): cut every region larger than the aligned size limit into
    pieces of that size (the last piece keeps the remainder), so ``min_nr_regions`` holds; returns the limit,
    which is also the merge size limit."""
    max_region_sz = align_up(region_sz_limit(ctx), ctx.min_region_sz)
    for t in ctx.targets:
        ra = t.ra
        if not len(ra):
            continue
        sz = ra.end - ra.start
        counts = -(-sz // max_region_sz)
        if int(counts.max()) <= 1:
            continue
        reg = np.repeat(np.arange(len(ra)), counts)
        first = np.cumsum(counts) - counts
        k = np.arange(reg.size) - first[reg]
        starts = ra.start[reg] + k * max_region_sz
        ends = np.minimum(starts + max_region_sz, ra.end[reg])
        ra.assign(ra.repeat_counters(counts, starts, ends))
    return max_region_sz


def mvsum(current: Num, last: Num, left_window_bp: int) -> Num:
    """``damon_mvsum()``: ``current + last * left_window_bp / 10000``, for ints or ``int64`` arrays."""
    return current + mult_frac(last, left_window_bp, 10000)


def nr_accesses_mvsum(ctx: Ctx, nr_accesses: Num, last_nr_accesses: Num) -> Num:
    """``damon_nr_accesses_mvsum()``: a moving sum of ``nr_accesses`` over one aggregation window's length,
    computed on demand from this window's count and the last window's. DAMOS matches patterns and scores
    regions with it between aggregation boundaries.

    When the whole window is still ahead (exactly 10000 bp left), ``nr_accesses`` may not be reset yet, so the
    last window's count is the answer on its own. Works on ints and on ``int64`` arrays alike.
    """
    window_len = ctx.attrs.max_nr_accesses
    passed, nas = ctx.passed_sample_intervals, ctx.next_aggregation_sis
    left = nas - passed if passed < nas else 0
    left_bp = mult_frac(left, 10000, window_len)
    if left_bp == 10000:
        return last_nr_accesses
    return mvsum(nr_accesses, last_nr_accesses, left_bp)


def region_nr_accesses_mvsum(ctx: Ctx, r: Region) -> int:
    """:func:`nr_accesses_mvsum` of one region."""
    return int(nr_accesses_mvsum(ctx, r.nr_accesses, r.last_nr_accesses))


def target_nr_accesses_mvsum(ctx: Ctx, t: Target) -> npt.NDArray[np.int64]:
    """:func:`nr_accesses_mvsum` of every region of *t* (a new array)."""
    ra = t.ra
    return np.array(nr_accesses_mvsum(ctx, ra.nr_accesses, ra.last_nr_accesses), dtype=np.int64)


def update_regions_access_rate(t: Target, hits: npt.ArrayLike, nr_samples: int, attrs: Attrs) -> int:
    """``damon_update_region_access_rate()`` for every region of *t* over *nr_samples* sampling intervals:
    ``hits[i]`` of them saw an access to region ``i``. ``nr_accesses`` grows by the hits; the <= 7.2 pseudo
    moving sum ``nr_accesses_bp`` (kept for record consumers) gains ``10000`` per hit and loses
    ``last_nr_accesses * 10000 / window`` per sample, which is constant within a window, so one batch equals
    *nr_samples* single updates. Returns the maximum ``nr_accesses`` afterwards."""
    ra = t.ra
    h = np.asarray(hits, dtype=np.int64)
    if h.size != len(ra):
        raise InvalidParamsError(f"{h.size} hit counts for {len(ra)} regions")
    if h.size == 0:
        return 0
    if int(h.max()) > nr_samples or int(h.min()) < 0:
        raise InvalidParamsError(f"hit counts must lie in [0, {nr_samples}]")
    len_window = attrs.max_nr_accesses if attrs.sample_interval_us else 1
    ra.nr_accesses_bp = ra.nr_accesses_bp + h * 10000 - nr_samples * ((ra.last_nr_accesses * 10000) // len_window)
    ra.nr_accesses = ra.nr_accesses + h
    return int(ra.nr_accesses.max())


def reset_aggregated(ctx: Ctx) -> int:
    """``kdamond_reset_aggregated()``: ``last_nr_accesses = nr_accesses; nr_accesses = 0``. A moving sum that
    drifted from ``nr_accesses * 10000`` is repaired, as ``damon_warn_fix_nr_accesses_corruption()`` does;
    returns how many were repaired."""
    nr_fixed = 0
    for t in ctx.targets:
        ra = t.ra
        want = ra.nr_accesses * 10000
        nr_fixed += int(np.count_nonzero(ra.nr_accesses_bp != want))
        ra.nr_accesses_bp = want
        ra.last_nr_accesses = ra.nr_accesses
        ra.nr_accesses = np.zeros_like(ra.nr_accesses)
        ra.last_probe_hits = ra.probe_hits
        ra.probe_hits = np.zeros_like(ra.probe_hits)
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
        sz = (t.ra.end - t.ra.start).tolist()
        max_ev += sum(sz) * aggr_samples
        ev += sum(a * b for a, b in zip(sz, t.ra.nr_accesses.tolist()))
    target = max_ev * ctx.attrs.intervals_goal.access_bp // 10000
    return mult_frac(ev, 10000, target or 1)


def intervals_adaptation_bp(ctx: Ctx) -> int:
    """``damon_get_intervals_adaptation_bp()``: in [5000, 20000]; shrinking is limited to half per step."""
    adaptation_bp = feed_loop_next_input(100_000_000, intervals_score(ctx)) // 10000
    if adaptation_bp <= 10000:
        adaptation_bp = 5000 + adaptation_bp // 2
    return adaptation_bp


def tune_intervals(ctx: Ctx, floor_us: int = 0) -> bool:
    """``kdamond_tune_intervals()``: scale the sample interval (and the aggregation interval with it, keeping
    ``aggr_samples``) towards the access-ratio goal; returns whether the intervals changed.

    :param floor_us: the access source's own lower bound (``Operations.min_sample_us()``), applied like the
        goal's ``min_sample_us`` (damon-bpf's; 0 in the kernel)
    """
    adaptation_bp = intervals_adaptation_bp(ctx)
    a = ctx.attrs
    g = a.intervals_goal
    lo = min(max(g.min_sample_us, floor_us), g.max_sample_us)
    if adaptation_bp == 10000 and a.sample_interval_us >= lo:
        return False
    sample = min(g.max_sample_us, a.sample_interval_us * adaptation_bp // 10000)
    sample = max(lo, sample)
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


def apply_source_intervals(ctx: Ctx, sample_us: int, aggr_us: int) -> bool:
    """Apply the intervals the access source asks for (``Attrs.source_intervals``; damon-bpf's): the aggregation
    interval within the allowed range, the sampling interval within ``[1, aggregation interval]``, through
    :func:`set_attrs` (so regions are rescaled as ``damon_set_attrs()`` does). Returns whether they changed."""
    a = ctx.attrs
    si = a.source_intervals
    if si is None:
        return False
    aggr = si.clamp_aggr_us(int(aggr_us))
    sample = max(1, min(int(sample_us), aggr))
    if sample == a.sample_interval_us and aggr == a.aggr_interval_us:
        return False
    set_attrs(ctx, Attrs(
        sample_interval_us=sample,
        aggr_interval_us=aggr,
        ops_update_interval_us=a.ops_update_interval_us,
        min_nr_regions=a.min_nr_regions,
        max_nr_regions=a.max_nr_regions,
        intervals_goal=a.intervals_goal,
        source_intervals=si,
        aggr_samples=aggr // sample,
    ))
    return True


def _nr_accesses_for_new_attrs(nr: Num, old: Attrs, new: Attrs) -> Num:
    # damon_nr_accesses_for_new_attrs(): through the access ratio in bp
    bp = mult_frac(nr, 10000, old.max_nr_accesses)
    return bp * new.max_nr_accesses // 10000


def update_monitoring_results(ctx: Ctx, new: Attrs, aggregating: bool) -> None:
    """``damon_update_monitoring_results()``: rescale every region's counters from ``ctx.attrs`` to *new*.

    ``last_nr_accesses`` is always rescaled (the moving sum reads it between aggregations); ``nr_accesses``
    is rescaled at an aggregation boundary and dropped in the middle of a window, as if
    ``kdamond_reset_aggregated()`` had run; ``age`` is scaled by the aggregation intervals. Nothing changes
    when any interval is zero."""
    old = ctx.attrs
    if not (old.sample_interval_us and old.aggr_interval_us and new.sample_interval_us and new.aggr_interval_us):
        return
    for t in ctx.targets:
        ra = t.ra
        ra.last_nr_accesses = _nr_accesses_for_new_attrs(ra.last_nr_accesses, old, new)
        if aggregating:
            ra.nr_accesses = np.zeros_like(ra.nr_accesses)
            ra.nr_accesses_bp = ra.last_nr_accesses * 10000
        else:
            ra.nr_accesses = _nr_accesses_for_new_attrs(ra.nr_accesses, old, new)
            ra.nr_accesses_bp = ra.nr_accesses * 10000
        ra.age = ra.age * old.aggr_interval_us // new.aggr_interval_us


def set_attrs(ctx: Ctx, attrs: Attrs) -> None:
    """``damon_set_attrs()``: validate, re-base the deadlines, rescale regions and scheme apply deadlines.
    Unlike the kernel, the schemes' pattern bounds given as a time or a percentage are converted again for
    *attrs* (:meth:`~damon_bpf.engine.damos.AccessPattern.rebase`); those in aggregation intervals or samples
    stay, as the kernel's do.

    :raises InvalidParamsError: the kernel's ``-EINVAL`` cases
    """
    attrs.validate()
    si = attrs.sample_us_nonzero
    aggregating = ctx.passed_sample_intervals < ctx.next_aggregation_sis
    if not attrs.aggr_samples:
        attrs.aggr_samples = attrs.aggr_interval_us // si
    ctx.next_aggregation_sis = ctx.passed_sample_intervals + attrs.aggr_interval_us // si
    ctx.next_ops_update_sis = ctx.passed_sample_intervals + attrs.ops_update_interval_us // si
    update_monitoring_results(ctx, attrs, aggregating)
    ctx.attrs = attrs
    for s in ctx.schemes:
        s.set_next_apply_sis(ctx)
        # not in the kernel: bounds given as a time or a percentage keep their meaning (AccessPattern.rebase)
        s.pattern.rebase(attrs)


def next_boundary_sis(ctx: Ctx) -> int:
    """The next sample-interval count at which the loop does more than sampling: an aggregation, an ops
    update or a scheme's apply interval. Batched checks sleep straight to it."""
    b = min(ctx.next_aggregation_sis, ctx.next_ops_update_sis)
    for s in ctx.schemes:
        b = min(b, s.next_apply_sis)
    return b


def init_ctx(ctx: Ctx) -> None:
    """``kdamond_init_ctx()``: deadlines in sample-interval units from ``passed_sample_intervals = 0``; the
    schemes' bounds given as a time or a percentage are converted for ``ctx.attrs`` (not in the kernel)."""
    a = ctx.attrs
    if not a.aggr_samples:
        a.aggr_samples = a.aggr_interval_us // a.sample_us_nonzero
    si = a.sample_us_nonzero
    ctx.passed_sample_intervals = 0
    ctx.next_aggregation_sis = a.aggr_interval_us // si
    ctx.next_ops_update_sis = a.ops_update_interval_us // si
    ctx.next_intervals_tune_sis = ctx.next_aggregation_sis * a.intervals_goal.aggrs
    for s in ctx.schemes:
        s.set_next_apply_sis(ctx)
        s.pattern.rebase(a)  # bounds given as a time or a percentage, for the attrs the loop starts with
