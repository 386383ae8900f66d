"""Property tests: the vectorised core against straightforward scalar ports of the kernel functions."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from damon_bpf.engine import core
from damon_bpf.engine.model import Ctx, Region, Target


def ref_merge_regions_of(regions: list[Region], thres: int, sz_limit: int) -> list[Region]:
    """damon_merge_regions_of() as the kernel writes it, one region object at a time."""
    out: list[Region] = []
    prev = None
    for r in regions:
        if abs(r.nr_accesses - r.last_nr_accesses) > thres or (r.nr_accesses == 0) != (r.last_nr_accesses == 0):
            r.age = 0
        else:
            r.age += 1
        if (prev is not None and prev.end == r.start and abs(prev.nr_accesses - r.nr_accesses) <= thres
                and prev.sz + r.sz <= sz_limit):
            total = prev.sz + r.sz
            prev.nr_accesses = (prev.nr_accesses * prev.sz + r.nr_accesses * r.sz) // total
            prev.nr_accesses_bp = prev.nr_accesses * 10000
            prev.age = (prev.age * prev.sz + r.age * r.sz) // total
            prev.end = r.end
        else:
            out.append(r)
            prev = r
    return out


region_lists = st.lists(
    st.tuples(st.integers(1, 50), st.integers(0, 3), st.integers(0, 20), st.integers(0, 20), st.integers(0, 9)),
    min_size=0, max_size=60,
)


def build(spec: list[tuple[int, int, int, int, int]]) -> list[Region]:
    regions = []
    addr = 0
    for sz, gap, nr, last, age in spec:
        addr += gap
        regions.append(Region(addr, addr + sz, nr_accesses=nr, nr_accesses_bp=nr * 10000, age=age,
                              last_nr_accesses=last))
        addr += sz
    return regions


@settings(max_examples=300, deadline=None)
@given(spec=region_lists, thres=st.integers(0, 12), sz_limit=st.integers(1, 400))
def test_merge_regions_of_matches_kernel_walk(spec: list[tuple[int, int, int, int, int]], thres: int,
                                              sz_limit: int) -> None:
    t = Target(regions=build(spec))
    core.merge_regions_of(t, thres, sz_limit, True)
    expect = ref_merge_regions_of(build(spec), thres, sz_limit)
    assert [r.to_dict() for r in t.regions] == [r.to_dict() for r in expect]


@settings(max_examples=200, deadline=None)
@given(spec=region_lists, nr_subs=st.integers(2, 4), mrs_log=st.integers(0, 3), seed=st.integers(0, 99))
def test_split_regions_of_invariants(spec: list[tuple[int, int, int, int, int]], nr_subs: int, mrs_log: int,
                                     seed: int) -> None:
    mrs = 1 << mrs_log
    regions = build([(sz * mrs, gap * mrs, nr, last, age) for sz, gap, nr, last, age in spec])
    t = Target(regions=regions)
    ctx = Ctx(min_region_sz=mrs, rng=random.Random(seed))
    core.split_regions_of(ctx, t, nr_subs)
    out = t.regions
    # same coverage, pieces aligned and non-empty, counters inherited, at most nr_subs pieces per region
    for orig in regions:
        pieces = [r for r in out if orig.start <= r.start and r.end <= orig.end]
        assert pieces[0].start == orig.start and pieces[-1].end == orig.end
        assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
        assert 1 <= len(pieces) <= nr_subs
        if orig.sz <= 2 * mrs:
            assert len(pieces) == 1
        for p in pieces:
            assert p.sz > 0 and p.start % mrs == 0
            assert (p.nr_accesses, p.age, p.last_nr_accesses) == (orig.nr_accesses, orig.age, orig.last_nr_accesses)
        # the right-most cut comes from the first 10..90% cut of the whole region
        if len(pieces) > 1:
            first_cut = pieces[-1].start - orig.start
            assert first_cut * 10 >= orig.sz - 10 * mrs and first_cut * 10 <= 9 * orig.sz
    assert len(out) >= len(regions)


@settings(max_examples=100, deadline=None)
@given(spec=region_lists, min_nr=st.integers(3, 40), mrs_log=st.integers(0, 3))
def test_apply_min_nr_regions_matches_repeated_split(spec: list[tuple[int, int, int, int, int]], min_nr: int,
                                                     mrs_log: int) -> None:
    mrs = 1 << mrs_log
    regions = build([(sz * mrs, gap * mrs, nr, last, age) for sz, gap, nr, last, age in spec])
    ctx = Ctx(min_region_sz=mrs)
    ctx.attrs.min_nr_regions = min_nr
    ctx.targets.append(Target(regions=regions))
    limit = core.apply_min_nr_regions(ctx)
    # reference: damon_split_region_at(t, r, limit) while the region is larger than the limit
    expect = []
    for r in regions:
        while r.sz > limit:
            expect.append(Region(r.start, r.start + limit, r.nr_accesses, r.nr_accesses_bp, r.age,
                                 r.last_nr_accesses))
            r = Region(r.start + limit, r.end, r.nr_accesses, r.nr_accesses_bp, r.age, r.last_nr_accesses)
        expect.append(r)
    assert [x.to_dict() for x in ctx.targets[0].regions] == [x.to_dict() for x in expect]
    assert limit % mrs == 0
