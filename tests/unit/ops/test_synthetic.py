"""The synthetic access source: pattern format, generation statistics, determinism, and convergence of the
kdamond on it (fixed address spaces and a real process)."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np
import pytest

from damon_bpf.engine import Attrs, Ctx, Kdamond, Snapshot, StopReason, Target, select_ops
from damon_bpf.engine.model import Region
from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.procmaps import read_maps
from damon_bpf.ops.synthetic import SyntheticOps, SyntheticPattern, SyntheticPhase, SyntheticRange

from .helpers import FakeClock, spawn_sleeper

MiB = 1 << 20
BASE = 0x7F00_0000_0000
# a fixed 3-range address space of 1 GiB: 256 MiB, 64 MiB (hot), 704 MiB, with gaps in between
R0 = (BASE, BASE + 256 * MiB)
HOT = (BASE + 512 * MiB, BASE + 576 * MiB)
R2 = (BASE + 768 * MiB, BASE + 1472 * MiB)


def three_range_pattern(p_hot: float = 0.9) -> dict[str, Any]:
    return {"phases": [{"name": "only", "duration_s": None,
                        "ranges": [[R0[0], R0[1], 0.0], [HOT[0], HOT[1], p_hot], [R2[0], R2[1], 0.0]]}]}


def run_fake(ops: SyntheticOps, targets: list[Target], nr_aggr: int, seed: int = 1,
             **attrs: int) -> tuple[Kdamond, list[Snapshot], Ctx]:
    ctx = Ctx(attrs=Attrs(**attrs), ops=ops, rng=random.Random(seed))
    ctx.targets.extend(targets)
    snaps: list[Snapshot] = []
    ctx.after_aggregation.append(snaps.append)
    clk = FakeClock()
    k = Kdamond(ctx, clock_ns=clk.clock_ns, sleep=clk.sleep)
    k.run(max_aggregations=nr_aggr)
    return k, snaps, ctx


def check_snapshot_invariants(snap: Snapshot, attrs: Attrs) -> None:
    for t in snap.targets:
        assert np.all(t.start < t.end)
        assert np.all(t.end[:-1] <= t.start[1:])  # sorted, non-overlapping
        assert np.all((0 <= t.nr_accesses) & (t.nr_accesses <= snap.max_nr_accesses))
    assert attrs.min_nr_regions <= snap.nr_regions <= attrs.max_nr_regions


def classify_regions(snap: Snapshot) -> tuple[list[int], list[int], list[int]]:
    t = snap.targets[0]
    inside, outside, straddle = [], [], []
    for s, e, nr in zip(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist()):
        if HOT[0] <= s and e <= HOT[1]:
            inside.append(nr)
        elif e <= HOT[0] or s >= HOT[1]:
            outside.append(nr)
        else:
            straddle.append(nr)
    return inside, outside, straddle


# -- the pattern -------------------------------------------------------------------------------------------------


def test_pattern_round_trip() -> None:
    d = {"page_sz": 4096, "loop": True, "start_ns": 123,
         "phases": [{"name": "a", "duration_s": 1.5,
                     "ranges": [{"start": 4096, "end": 8192, "p": 0.5, "target": 0},
                                {"start": 1 << 20, "end": 2 << 20, "rate_hz": 3.0, "target": 1}]},
                    {"name": "b", "duration_s": None, "ranges": []}]}
    pat = SyntheticPattern.from_dict(d)
    assert pat.to_dict() == d
    assert SyntheticPattern.from_dict(pat.to_dict()) == pat
    assert pat.nr_targets == 2 and pat.total_duration_s == math.inf


def test_pattern_accepts_compact_forms() -> None:
    pat = SyntheticPattern.coerce([{"duration_s": 2, "ranges": [["0x1000", "0x3000", 0.25]]}])
    assert pat.phases[0].ranges == [SyntheticRange(0x1000, 0x3000, p=0.25)]
    assert pat.phases[0].duration_s == 2.0
    assert SyntheticPattern.coerce(None).phases == []
    phases = [SyntheticPhase(1.0, [SyntheticRange(0, 4096, p=1.0)])]
    assert SyntheticPattern.coerce(phases).phases == phases
    with pytest.raises(InvalidParamsError):
        SyntheticPattern.coerce(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    {"phases": [{"ranges": [[0, 4096, 1.5]]}]},  # p > 1
    {"phases": [{"ranges": [{"start": 0, "end": 4096}]}]},  # neither p nor rate
    {"phases": [{"ranges": [{"start": 0, "end": 4096, "p": 0.1, "rate_hz": 1}]}]},  # both
    {"phases": [{"ranges": [[4096, 4096, 0.1]]}]},  # empty
    {"phases": [{"ranges": [{"start": 0, "end": 4096, "rate_hz": -1}]}]},
    {"phases": [{"duration_s": None, "ranges": []}, {"duration_s": 1, "ranges": []}]},  # endless not last
    {"phases": [{"duration_s": 0, "ranges": []}]},
    {"phases": [], "page_sz": 3000},
    {"phases": [], "colour": "red"},
    {"phases": [{"ranges": [[0, 4096, 0.1]], "when": 1}]},
    {"phases": [{"ranges": [{"start": 0, "end": 4096, "p": 0.1, "target": -1}]}]},
    {"phases": [{"ranges": [[None, 4096, 0.1]]}]},
    {"phases": [], "page_sz": "big"},
    {"phases": [{"duration_s": "long", "ranges": []}]},
])
def test_pattern_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidParamsError):
        SyntheticPattern.from_dict(bad)


def test_phase_indices() -> None:
    pat = SyntheticPattern.coerce([{"duration_s": 1, "ranges": []}, {"duration_s": 2, "ranges": []}])
    s = 10**9
    e = [-1, 0, s - 1, s, 3 * s - 1, 3 * s, 10 * s]
    assert pat.phase_indices(e).tolist() == [-1, 0, 0, 1, 1, -1, -1]
    pat.loop = True
    assert pat.phase_indices(e).tolist() == [-1, 0, 0, 1, 1, 0, 1]
    assert pat.phase_at(3.5) is pat.phases[0]
    forever = SyntheticPattern.coerce([{"duration_s": 1, "ranges": []}, {"duration_s": None, "ranges": []}])
    assert forever.phase_indices([0, 10**18]).tolist() == [0, 1]


def test_ranges_of() -> None:
    pat = SyntheticPattern.coerce([
        {"duration_s": 1, "ranges": [[0, 4096, 0.1], [8192, 12288, 0.1]]},
        {"duration_s": 1, "ranges": [[4096, 8192, 0.0], [20480, 24576, 0.5],
                                     {"start": 0, "end": 4096, "p": 1, "target": 1}]}])
    assert [(r.start, r.end) for r in pat.ranges_of(0)] == [(0, 12288), (20480, 24576)]
    assert [(r.start, r.end) for r in pat.ranges_of(1)] == [(0, 4096)]
    assert pat.ranges_of(2) == []


# -- generation ------------------------------------------------------------------------------------------------


def _gen_ctx(ranges: list[tuple[int, int]], sample_us: int = 5_000, seed: int = 0) -> Ctx:
    ctx = Ctx(attrs=Attrs(sample_interval_us=sample_us), rng=random.Random(seed))
    ctx.targets.append(Target(regions=[Region(s, e) for s, e in ranges]))
    ctx.window_start_ns = 10**12
    return ctx


def _drain(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    assert ctx.reports is not None
    (addr, tns), = ctx.reports.take(1)
    return addr, tns


def test_events_model_accesses_each_page_with_probability_p() -> None:
    npages, m, p = 1000, 200, 0.3
    ops = SyntheticOps([{"ranges": [[0, npages * 4096, p]]}], seed=7)
    ctx = _gen_ctx([(0, npages * 4096)])
    ops.generate(ctx, m)
    addr, tns = _drain(ctx)
    sample_ns = 5_000_000
    k = (tns - ctx.window_start_ns) // sample_ns
    assert k.min() >= 0 and k.max() < m  # timestamps inside their sampling intervals
    assert np.all(addr % 4096 == 0) and addr.max() < npages * 4096
    touched = np.unique(k * npages + (addr // 4096).astype(np.int64)).size
    assert touched / (npages * m) == pytest.approx(p, abs=0.01)


def test_rate_hz_and_p_one() -> None:
    rate = 20.0  # per page per second; 5 ms intervals: p = 1 - exp(-0.1)
    ops = SyntheticOps([{"ranges": [{"start": 0, "end": 4096 * 500, "rate_hz": rate},
                                    [1 << 30, (1 << 30) + 4096 * 10, 1.0]]}], seed=3)
    ctx = _gen_ctx([(0, 4096 * 500), (1 << 30, (1 << 30) + 4096 * 10)])
    m = 400
    ops.generate(ctx, m)
    addr, tns = _drain(ctx)
    k = (tns - ctx.window_start_ns) // 5_000_000
    low = addr < (1 << 30)
    touched = np.unique(k[low] * 500 + (addr[low] // 4096).astype(np.int64)).size
    assert touched / (500 * m) == pytest.approx(-math.expm1(-rate * 0.005), abs=0.01)
    assert (~low).sum() == 10 * m  # p == 1: every page, every interval, exactly once


def test_overlapping_ranges_add_up() -> None:
    ops = SyntheticOps([{"ranges": [[0, 4096 * 1000, 0.5], [0, 4096 * 1000, 0.5]]}], seed=5)
    ctx = _gen_ctx([(0, 4096 * 1000)])
    ops.generate(ctx, 100)
    addr, tns = _drain(ctx)
    k = (tns - ctx.window_start_ns) // 5_000_000
    touched = np.unique(k * 1000 + (addr // 4096).astype(np.int64)).size
    assert touched / (1000 * 100) == pytest.approx(0.75, abs=0.01)


def test_unaligned_range_reports_stay_inside() -> None:
    ops = SyntheticOps([{"ranges": [[4096 + 100, 3 * 4096 - 5, 1.0]]}], seed=1)
    ctx = _gen_ctx([(4096, 3 * 4096)])
    ops.generate(ctx, 4)
    addr, _ = _drain(ctx)
    assert addr.min() >= 4096 + 100 and addr.max() < 3 * 4096 - 5


def test_budget_thins_huge_ranges() -> None:
    big = 64 << 30  # 16 Mi pages at p=0.5: ~11 M picks per interval without a budget
    ops = SyntheticOps([{"ranges": [[0, big, 0.5]]}], seed=2, max_reports_per_check=20_000)
    ctx = _gen_ctx([(0, big)])
    t0 = time.perf_counter()
    n = ops.generate(ctx, 20)
    assert time.perf_counter() - t0 < 1.0
    assert 18_000 <= n <= 22_000
    assert ops.stats() == {"generated": n, "thinned_checks": 1}
    addr, tns = _drain(ctx)
    k = (tns - ctx.window_start_ns) // 5_000_000
    assert np.bincount(k, minlength=20).min() > 500  # spread over every interval
    assert addr.max() < big


def test_no_accesses_outside_phases_and_dead_targets() -> None:
    ops = SyntheticOps({"start_ns": 10**12 + 10**9, "phases": [{"duration_s": 1, "ranges": [[0, 4096, 1.0]]}]},
                       seed=1)
    ctx = _gen_ctx([(0, 4096)])
    assert ops.generate(ctx, 100) == 0  # before the pattern starts (0.5 s of 1 s)
    ctx.window_start_ns += 10**9
    assert ops.generate(ctx, 10) == 10
    ctx.window_start_ns += 10**9
    assert ops.generate(ctx, 10) == 0  # after the end, no loop
    assert SyntheticOps().generate(ctx, 10) == 0  # no pattern


def test_accessed_bit_model_samples_one_address_per_region() -> None:
    ops = SyntheticOps([{"ranges": [[0, 4096 * 100, 0.4]]}], seed=4, model="accessed_bit")
    ctx = _gen_ctx([(0, 4096 * 50), (4096 * 50, 4096 * 100), (1 << 30, (1 << 30) + 4096)])
    m = 1000
    ops.generate(ctx, m)
    addr, tns = _drain(ctx)
    k = (tns - ctx.window_start_ns) // 5_000_000
    region = (addr >= 4096 * 50).astype(np.int64)
    assert np.unique(k * 2 + region).size == addr.size  # at most one report per region and interval
    assert addr.max() < 4096 * 100  # the region outside every range is never accessed
    assert addr.size / (2 * m) == pytest.approx(0.4, abs=0.03)


@pytest.mark.parametrize("model", ["events", "accessed_bit"])
def test_deterministic(model: str) -> None:
    def run(seed: int | None, ctx_seed: int) -> tuple[list[tuple[int, ...]], int]:
        ops = SyntheticOps(three_range_pattern(0.3), seed=seed, model=model)
        _, snaps, ctx = run_fake(ops, [Target()], 5, seed=ctx_seed)
        assert ctx.reports is not None
        return ([tuple(s.targets[0].nr_accesses.tolist()) + tuple(s.targets[0].start.tolist()) for s in snaps],
                ops.nr_generated)

    assert run(11, 1) == run(11, 1)
    assert run(None, 5) == run(None, 5)  # seeded from ctx.rng
    assert run(11, 1)[1] != run(12, 1)[1]
    assert run(None, 5)[1] != run(None, 6)[1]


def test_bad_options() -> None:
    with pytest.raises(InvalidParamsError):
        SyntheticOps(model="psychic")
    with pytest.raises(InvalidParamsError):
        SyntheticOps(max_reports_per_check=0)
    ops = SyntheticOps([{"ranges": [{"start": 0, "end": 4096, "p": 1, "target": 1}]}])
    ctx = Ctx()
    ctx.targets.append(Target(regions=[Region(0, 4096)]))
    with pytest.raises(InvalidParamsError):
        ops.init(ctx)  # the pattern names target 1 of 1
    with pytest.raises(InvalidParamsError):
        SyntheticOps().init(Ctx(targets=[Target()]))  # no pid, no regions, no pattern ranges


# -- the kdamond on the synthetic source -------------------------------------------------------------------------


def test_kdamond_converges_events_model() -> None:
    attrs = Attrs()
    ops = select_ops("synthetic", pattern=three_range_pattern(0.9), seed=3)
    assert isinstance(ops, SyntheticOps)
    t = Target()
    k, snaps, ctx = run_fake(ops, [t], 20)  # type: ignore[arg-type]
    assert k.nr_aggregations == 20 and len(snaps) == 20
    # the regions came from the pattern: the three ranges
    assert snaps[0].targets[0].start[0] == R0[0] and snaps[0].targets[0].end[-1] == R2[1]
    for snap in snaps:
        check_snapshot_invariants(snap, attrs)
    last = snaps[-1]
    mx = last.max_nr_accesses
    inside, outside, straddle = classify_regions(last)
    assert inside and min(inside) >= 0.85 * mx  # every page of a 64 MiB range: saturates near max
    assert outside and max(outside) == 0
    assert not straddle  # the hot range's edges are region edges (the gaps are)
    hot_bytes = sum(e - s for s, e, nr in zip(last.targets[0].start, last.targets[0].end,
                                              last.targets[0].nr_accesses) if nr >= mx // 2)
    assert hot_bytes == HOT[1] - HOT[0]
    assert ctx.reports is not None and ctx.reports.stats.nr_unmatched == 0


def test_kdamond_converges_accessed_bit_model() -> None:
    attrs = Attrs()
    ops = SyntheticOps(three_range_pattern(0.9), seed=3, model="accessed_bit")
    _, snaps, _ = run_fake(ops, [Target()], 30)
    for snap in snaps:
        check_snapshot_invariants(snap, attrs)
    ratios = []
    for snap in snaps[10:]:
        inside, outside, _ = classify_regions(snap)
        assert outside and max(outside) == 0
        ratios.extend(nr / snap.max_nr_accesses for nr in inside)
    assert np.mean(ratios) == pytest.approx(0.9, abs=0.04)  # what the kernel's accessed-bit check would see


def test_kdamond_follows_phases() -> None:
    a = (BASE, BASE + 64 * MiB)
    b = (BASE + 512 * MiB, BASE + 576 * MiB)
    pat = {"phases": [{"name": "a", "duration_s": 1.0, "ranges": [[a[0], a[1], 0.5]]},
                      {"name": "b", "duration_s": None, "ranges": [[b[0], b[1], 0.5]]}]}
    ops = SyntheticOps(pat, seed=1)
    t = Target(regions=[Region(BASE, BASE + 1024 * MiB)])
    _, snaps, _ = run_fake(ops, [t], 25, min_nr_regions=10, max_nr_regions=200)

    def hot_set(snap: Snapshot) -> tuple[int, int]:
        tt = snap.targets[0]
        sel = tt.nr_accesses >= snap.max_nr_accesses // 2
        return int(tt.start[sel].min()), int(tt.end[sel].max())

    lo, hi = hot_set(snaps[8])  # 0.9 s in: phase a
    assert a[0] <= lo and hi <= a[1] + 64 * MiB
    lo, hi = hot_set(snaps[-1])  # 2.5 s in: phase b only
    assert b[0] - 64 * MiB <= lo and hi <= b[1] + 64 * MiB
    tt = snaps[-1].targets[0]
    assert tt.nr_accesses[tt.start < a[1]].max() == 0


def test_real_process_mode() -> None:
    p = spawn_sleeper()
    try:
        heap = next(v for v in read_maps(p.pid) if v.pathname in ("[heap]", "[stack]"))
        ops = SyntheticOps([{"ranges": [[heap.start, heap.end, 1.0]]}], seed=1)

        def on_sleep(clk: FakeClock) -> None:
            if clk.nr_sleeps == 12:
                p.kill()
                p.wait()

        ctx = Ctx(attrs=Attrs(), ops=ops, rng=random.Random(1))
        t = Target(pid=p.pid)
        ctx.targets.append(t)
        snaps: list[Snapshot] = []
        ctx.after_aggregation.append(snaps.append)
        clk = FakeClock(on_sleep=on_sleep)
        k = Kdamond(ctx, clock_ns=clk.clock_ns, sleep=clk.sleep)
        assert k.run(max_aggregations=100) is StopReason.TARGETS_GONE
        # the last aggregation interval saw the process die: no reports for a dead target
        assert snaps[-1].targets[0].nr_accesses.max() == 0
        last = snaps[-2].targets[0]
        touching = (last.start < heap.end) & (heap.start < last.end)
        assert touching.any()
        assert last.nr_accesses[touching].min() == snaps[-2].max_nr_accesses  # p = 1: every interval
        assert last.nr_accesses[~touching].max(initial=0) == 0
        assert ctx.reports is not None and ctx.reports.stats.nr_unmatched == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
