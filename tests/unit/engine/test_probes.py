"""Data attributes monitoring (7.2 probes): the kernel's rules for probe hits, ported as unit tests."""

from __future__ import annotations

import numpy as np
import pytest

from damon_bpf.engine import core, damos
from damon_bpf.engine.damos import Filter, FilterType, Scheme
from damon_bpf.engine.model import Attrs, Ctx, Region, Target
from damon_bpf.engine.probes import (
    DAMON_MAX_PROBES,
    PageAttrs,
    Probe,
    ProbeFilter,
    add_probe_hits,
    probe_hits_mvsum,
    probe_hits_wsum,
    probe_passes,
    probes_to_kvpairs,
    validate_probes,
)
from damon_bpf.errors import InvalidParamsError


def _pages(anon: list[bool], present: list[bool] | None = None, dirty: list[bool] | None = None,
           map_sz: list[int] | None = None, node: list[int] | None = None) -> PageAttrs:
    n = len(anon)
    return PageAttrs(present=np.array(present if present is not None else [True] * n),
                     anon=np.array(anon), dirty=np.array(dirty if dirty is not None else [False] * n),
                     active=np.zeros(n, bool), map_sz=np.array(map_sz if map_sz is not None else [4096] * n),
                     memcg=np.zeros(n, np.int64), node=np.array(node if node is not None else [0] * n))


def _target(*rows: tuple[int, int, list[int]]) -> Target:
    t = Target(regions=[Region(s, e) for s, e, _ in rows])
    for i, (_, _, ph) in enumerate(rows):
        t.ra.probe_hits[i, :len(ph)] = ph
    return t


def test_filter_rule_first_match_decides() -> None:
    # damon_probe_filter_pass(): the first matching filter decides; a non-matching one leaves !allow
    pa = _pages([True, False])
    assert probe_passes(Probe([ProbeFilter("anon", allow=True)]), pa).tolist() == [True, False]
    assert probe_passes(Probe([ProbeFilter("anon", allow=False)]), pa).tolist() == [False, True]
    assert probe_passes(Probe([ProbeFilter("anon", allow=True, matching=False)]), pa).tolist() == [False, True]
    # reject anon, then allow everything written: anon pages are out even when written
    pa = _pages([True, False, False], dirty=[True, True, False])
    p = Probe([ProbeFilter("anon", allow=False), ProbeFilter("written", allow=True)])
    assert probe_passes(p, pa).tolist() == [False, True, False]
    # an empty list passes everything
    assert probe_passes(Probe([]), pa).tolist() == [True, True, True]


def test_missing_page_has_no_attribute() -> None:
    # a missing folio reads as "not anon": matching=False filters match it
    pa = _pages([True], present=[False])
    assert probe_passes(Probe([ProbeFilter("anon", allow=True)]), pa).tolist() == [False]
    assert probe_passes(Probe([ProbeFilter("anon", allow=True, matching=False)]), pa).tolist() == [True]
    assert probe_passes(Probe([ProbeFilter("file", allow=True)]), pa).tolist() == [False]


def test_hugepage_size_and_node() -> None:
    pa = _pages([True, True, True], map_sz=[4096, 2 << 20, 1 << 30], node=[0, 1, 1])
    p = Probe([ProbeFilter("hugepage_size", min_sz=2 << 20, max_sz=2 << 20)])
    assert probe_passes(p, pa).tolist() == [False, True, False]
    assert probe_passes(Probe([ProbeFilter("node", node=1)]), pa).tolist() == [False, True, True]


def test_add_probe_hits_one_page_per_region() -> None:
    # the kernel's apply_probes: one sample, one page per region, +1 per passing probe
    hits = np.zeros((2, DAMON_MAX_PROBES), np.int64)
    probes = [Probe([ProbeFilter("anon")]), Probe([ProbeFilter("anon", matching=False)])]
    add_probe_hits(hits, probes, np.array([0, 1]), _pages([True, False]))
    assert hits.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]


def test_add_probe_hits_share_of_pages() -> None:
    # a batched source: nr_samples times the share of the region's pages that pass
    hits = np.zeros((1, DAMON_MAX_PROBES), np.int64)
    add_probe_hits(hits, [Probe([ProbeFilter("anon")])], np.array([0, 0, 0, 0]),
                   _pages([True, True, True, False]), nr_samples=20)
    assert hits[0, 0] == 15


def test_merge_is_size_weighted_and_truncated() -> None:
    # damon_merge_two_regions(): probe_hits[i] = (l*sz_l + r*sz_r) / (sz_l + sz_r), integer division
    t = _target((0, 4096, [10, 0, 3, 1]), (4096, 3 * 4096, [1, 5, 3, 0]))
    t.ra.last_probe_hits[0] = [7, 7, 7, 7]
    core.merge_regions_of(t, thres=100, sz_limit=1 << 30)
    assert len(t.ra) == 1
    assert t.ra.probe_hits[0].tolist() == [(10 + 2) // 3, 10 // 3, 3, 1 // 3]
    assert t.ra.last_probe_hits[0].tolist() == [7, 7, 7, 7]


def test_merge_chain_truncates_each_step() -> None:
    t = _target((0, 4096, [1]), (4096, 8192, [0]), (8192, 12288, [0]))
    core.merge_regions_of(t, thres=100, sz_limit=1 << 30)
    # (1*1 + 0*1)//2 = 0, then (0*2 + 0)//3 = 0: truncated at every step as the kernel does
    assert t.ra.probe_hits[0, 0] == 0


def test_split_copies_probe_hits() -> None:
    # damon_split_region_at() copies probe_hits[] into the new region
    t = _target((0, 16 * 4096, [4, 3, 2, 1]))
    t.ra.last_probe_hits[0] = [9, 8, 7, 6]
    core.split_region_at(t, 0, 4096)
    assert t.ra.probe_hits.tolist() == [[4, 3, 2, 1], [4, 3, 2, 1]]
    assert t.ra.last_probe_hits.tolist() == [[9, 8, 7, 6], [9, 8, 7, 6]]
    ctx = Ctx(targets=[t])
    ctx.rng.seed(1)
    core.split_regions_of(ctx, t, 3)
    assert (t.ra.probe_hits == [4, 3, 2, 1]).all()


def test_reset_keeps_last_window() -> None:
    t = _target((0, 4096, [4, 3, 0, 0]))
    ctx = Ctx(targets=[t])
    core.reset_aggregated(ctx)
    assert t.ra.probe_hits.tolist() == [[0, 0, 0, 0]]
    assert t.ra.last_probe_hits.tolist() == [[4, 3, 0, 0]]


def test_set_regions_keeps_probe_hits() -> None:
    from damon_bpf.engine.model import AddrRange

    t = _target((0, 4096, [4, 3, 0, 0]), (8192, 12288, [1, 1, 1, 1]))
    core.set_regions(t, [AddrRange(0, 12288)])
    assert t.ra.probe_hits[0].tolist() == [4, 3, 0, 0]
    assert t.ra.probe_hits[-1].tolist() == [1, 1, 1, 1]


def test_mvsum_and_wsum() -> None:
    # damon_probe_hits_mvsum(): the formula of damon_nr_accesses_mvsum()
    ctx = Ctx(attrs=Attrs(sample_interval_us=10_000, aggr_interval_us=100_000))
    ctx.passed_sample_intervals, ctx.next_aggregation_sis = 7, 10  # 3 of 10 samples left
    mv = probe_hits_mvsum(ctx, np.array([[5, 0, 0, 0]]), np.array([[10, 4, 0, 0]]))
    assert mv.tolist() == [[5 + 10 * 3000 // 10000, 4 * 3000 // 10000, 0, 0]]
    probes = [Probe(weight=2), Probe(weight=3)]
    assert probe_hits_wsum(np.array([[5, 4, 9, 9]]), probes).tolist() == [5 * 2 + 4 * 3]


def test_damos_probe_hits_wsum_filter() -> None:
    # the core-layer filter on the weighted (here: unweighted) sum of the moving sums
    t = _target((0, 4096, [3, 2, 0, 0]), (4096, 8192, [0, 1, 0, 0]))
    t.ra.last_probe_hits[:] = t.ra.probe_hits
    ctx = Ctx(targets=[t], probes=[Probe([ProbeFilter("anon")]), Probe([ProbeFilter("written")])])
    ctx.passed_sample_intervals = ctx.next_aggregation_sis = 10
    f = Filter(FilterType.PROBE_HITS_WSUM, allow=True, wsum_min=4, wsum_max=10)
    s = Scheme(filters=[f])
    damos.set_filters_default_reject(s)
    assert damos.region_probe_hits_wsum(ctx, t, 0) == 5
    assert damos.core_filter_out(ctx, 0, t, 0, s) is False
    assert damos.core_filter_out(ctx, 0, t, 1, s) is True
    # both ends of the range are inclusive
    for lo, hi in ((5, 5), (4, 5), (5, 9)):
        f.wsum_min, f.wsum_max = lo, hi
        assert damos.core_filter_out(ctx, 0, t, 0, s) is False, (lo, hi)


def test_validate_probes() -> None:
    validate_probes([Probe([ProbeFilter("anon")])] * 4)
    with pytest.raises(InvalidParamsError, match="at most 4"):
        validate_probes([Probe()] * 5)
    with pytest.raises(InvalidParamsError, match="weights"):
        validate_probes([Probe(weight=1)])
    with pytest.raises(InvalidParamsError, match="unknown"):
        validate_probes([Probe([ProbeFilter("nope")])])


def test_kvpairs_damo_shape() -> None:
    kv = probes_to_kvpairs([Probe([ProbeFilter("anon"), ProbeFilter("file", allow=False),
                                   ProbeFilter("written")])])
    assert kv == [{"preps": [], "weight": 0, "filters": [
        {"filter_type": "anon", "matching": True, "allow": True, "path": None, "range_min": None,
         "range_max": None},
        {"filter_type": "anon", "matching": False, "allow": False, "path": None, "range_min": None,
         "range_max": None},
        {"filter_type": "memcg", "matching": True, "allow": True, "path": "damon-bpf:written", "range_min": None,
         "range_max": None}]}]
