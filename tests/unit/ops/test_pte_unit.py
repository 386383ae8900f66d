"""The pte source's pure parts: the paging layout, the -D flags, the clear-method cost model,
the CPU-budget floor, and the CLI's source selection and warnings."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.cli import monitor as monitor_cli
from damon_bpf.cli._args import AUTOTUNE_GOAL, add_monitoring_args, attrs_from_args
from damon_bpf.engine.model import Attrs, Ctx, IntervalsGoal, Region, SourceIntervals, Target
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.ops import pte as pte_ops
from damon_bpf.ops import sources
from damon_bpf.ops.sources import FaultOptions, PerfOptions, PteOptions
from damon_bpf.ops.pte_cost import MIN_SAMPLES, CostModel, choose_intervals, probe_budget
from damon_bpf.probes import pte as pte_probe

PTE, FAULT, PERF = (sources.get_source(name) for name in ("pte", "fault", "perf"))


def _proc(tmp_path: Path, flags: str, kallsyms: str) -> str:
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    (tmp_path / "kallsyms").write_text(kallsyms)
    return str(tmp_path)


def test_paging_layout_4_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pte_probe.platform, "machine", lambda: "x86_64")
    lay = pte_probe.PagingLayout.detect(_proc(tmp_path, "fpu pse lm", "ffffffff81000000 T _text\n"))
    assert lay == pte_probe.PagingLayout(4, 0xFFFF888000000000, 0)


def test_paging_layout_5_level_randomized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pte_probe.platform, "machine", lambda: "x86_64")
    root = _proc(tmp_path, "fpu la57 pse", "ffffffff81000000 T _text\nffffffff82a1b2c8 D page_offset_base\n")
    lay = pte_probe.PagingLayout.detect(root)
    assert lay.levels == 5 and lay.direct_map_base == 0xFF11000000000000
    assert lay.direct_map_base_ptr == 0xFFFFFFFF82A1B2C8


def test_paging_layout_hidden_kallsyms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pte_probe.platform, "machine", lambda: "x86_64")
    with pytest.raises(NotSupportedError, match="kptr_restrict"):
        pte_probe.PagingLayout.detect(_proc(tmp_path, "fpu", "0000000000000000 T _text\n"))


def test_paging_layout_other_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pte_probe.platform, "machine", lambda: "aarch64")
    with pytest.raises(NotSupportedError, match="aarch64.*not available"):
        pte_probe.PagingLayout.detect()


def test_walk_config_cflags_carry_every_offset() -> None:
    off = pte_probe.PteOffsets(1824, 32, 0, 8, 24, 120, 132)
    cfg = pte_probe.PteWalkConfig(offsets=off, layout=pte_probe.PagingLayout(5, 0xFF11000000000000, 0xFFFF1234))
    flags = dict(f[2:].split("=", 1) for f in cfg.cflags())
    assert flags["OFF_TASK_FILES"] == "1824" and flags["OFF_MM_USERS"] == "132" and flags["OFF_MM_PGD"] == "120"
    assert flags["PGTABLE_LEVELS"] == "5"
    assert int(flags["DIRECT_MAP_BASE"].rstrip("ULL"), 16) == 0xFF11000000000000
    assert int(flags["DIRECT_MAP_BASE_PTR"].rstrip("ULL"), 16) == 0xFFFF1234
    # every parameter the BPF source insists on is given
    src = (Path(__file__).resolve().parents[3] / "bpf" / "pte.bpf.c").read_text()
    import re

    required = set(re.findall(r"#ifndef (\w+)\n#error", src)) | set(re.findall(r"!defined\((\w+)\)", src))
    assert required and required <= set(flags)


def test_walk_config_validates() -> None:
    off = pte_probe.PteOffsets(0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(InvalidParamsError):
        pte_probe.PteWalkConfig(offsets=off, layout=pte_probe.PagingLayout(3)).validate()
    with pytest.raises(InvalidParamsError):
        pte_probe.PteWalkConfig(offsets=off, max_slots=64, walk_batch=128).validate()


def test_result_decoding() -> None:
    r = np.array([(0x1234 << 12) | (2 << 4) | 0b011, 3 << 4], dtype=np.uint64)
    assert pte_probe.result_level(r).tolist() == [2, 3]
    assert (pte_probe.result_phys(r) >> np.uint64(12)).tolist() == [0x1234, 0]


def _ctx(nr_regions: int, goal: IntervalsGoal | None = None) -> tuple[Ctx, Target]:
    attrs = Attrs(sample_interval_us=5000, aggr_interval_us=100_000)
    if goal is not None:
        attrs.intervals_goal = goal
    t = Target(pid=None, regions=[Region(i << 20, (i + 1) << 20) for i in range(nr_regions)])
    ctx = Ctx(attrs=attrs, rng=random.Random(1))
    ctx.targets = [t]
    return ctx, t


def test_intervals_keep_the_budget_within_bounds() -> None:
    c = CostModel(fixed_ns=1_800_000.0, per_sample_ns=45_000.0)  # 2.7 ms a window of 20 (0.9 of 1%)
    sample, aggr, met = choose_intervals(c, 0.01, 100_000, 1_000_000)
    assert (sample, aggr, met) == (15_000, 300_000, True)
    assert c.share(20, aggr) <= 0.01
    # cheap: the shortest aggregation the bounds allow
    assert choose_intervals(CostModel(fixed_ns=100_000.0, per_sample_ns=1_000.0), 0.01, 100_000, 1_000_000)[1] == \
        100_000
    # no budget: the shortest
    assert choose_intervals(c, 0.0, 100_000, 1_000_000)[:2] == (5_000, 100_000)


def test_intervals_align_with_the_working_set_window() -> None:
    c = CostModel(fixed_ns=1_800_000.0, per_sample_ns=45_000.0)  # 300 ms at 1%: 3 windows a second
    assert choose_intervals(c, 0.01, 100_000, 1_000_000, align_us=1_000_000)[:2] == (16_667, 333_340)
    c = CostModel(fixed_ns=2_700_000.0, per_sample_ns=45_000.0)  # 400 ms at 1%: 2 windows a second
    assert choose_intervals(c, 0.01, 100_000, 1_000_000, align_us=1_000_000)[:2] == (25_000, 500_000)
    c = CostModel(fixed_ns=900_000.0, per_sample_ns=18_000.0)  # 140 ms at 1%: 7 windows a second
    assert choose_intervals(c, 0.01, 100_000, 1_000_000, align_us=1_000_000)[:2] == (7_143, 142_860)
    c = CostModel(fixed_ns=4_500_000.0, per_sample_ns=90_000.0)  # 700 ms: one window is the whole second
    assert choose_intervals(c, 0.01, 100_000, 1_000_000, align_us=1_000_000)[:2] == (50_000, 1_000_000)


def test_intervals_over_budget_shrink_max_nr_accesses_not_the_time_resolution() -> None:
    c = CostModel(fixed_ns=4_500_000.0, per_sample_ns=360_000.0)  # 11.7 ms a window of 20
    sample, aggr, met = choose_intervals(c, 0.01, 100_000, 1_000_000)
    assert 990_000 <= aggr <= 1_000_000  # a snapshot every second still (n whole 100 µs intervals)
    assert aggr // sample == 12 and met  # 4.5 ms + 12 * 0.36 ms = 8.8 ms: within 0.9 of 1% of a core
    hopeless = CostModel(fixed_ns=50_000_000.0, per_sample_ns=400_000.0)
    sample, aggr, met = choose_intervals(hopeless, 0.01, 100_000, 1_000_000)
    assert 990_000 <= aggr <= 1_000_000 and aggr // sample == MIN_SAMPLES and not met


def test_probe_budget_follows_reads_and_walk_cost() -> None:
    c = CostModel(walk_ns_per_probe=200.0)
    assert probe_budget(c, 0.01, 500_000, 7) == int(0.3 * 0.01 * 500_000_000 / (200 * 7))
    assert probe_budget(c, 0.0, 500_000, 7) == -1


def _source_ctx(aggr_us: int = 200_000) -> Ctx:
    attrs = Attrs(sample_interval_us=aggr_us // 20, aggr_interval_us=aggr_us, source_intervals=SourceIntervals())
    ctx = Ctx(attrs=attrs, rng=random.Random(1))
    ctx.targets = [Target(pid=None, regions=[Region(0, 1 << 20)])]
    return ctx


def test_requested_intervals_change_at_most_every_two_seconds_unless_over_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [10_000_000_000]
    monkeypatch.setattr(pte_ops.time, "monotonic_ns", lambda: clock[0])
    ops = pte_ops.PteOps(cpu_budget=0.01)
    ops._windows = 5
    ctx = _source_ctx(200_000)
    ops.cost = CostModel(fixed_ns=2_160_000.0, per_sample_ns=72_000.0)  # 4 ms: 400 ms at 1%, 2% now
    assert ops.requested_intervals(ctx) == (25_000, 500_000)  # over budget: at once; 2 windows a second
    ctx.attrs.sample_interval_us, ctx.attrs.aggr_interval_us = 25_000, 500_000
    ops.cost = CostModel(fixed_ns=1_080_000.0, per_sample_ns=36_000.0)  # cheaper now: 200 ms would do (5 a second)
    clock[0] += 500_000_000
    assert ops.requested_intervals(ctx) is None  # within budget: not before 2 s
    clock[0] += 2_000_000_000
    assert ops.requested_intervals(ctx) == (10_000, 200_000)


def test_requested_intervals_only_with_source_intervals() -> None:
    ops = pte_ops.PteOps(cpu_budget=0.01)
    ops._windows = 5
    ctx = _source_ctx()
    ctx.attrs.source_intervals = None
    ops.cost = CostModel(fixed_ns=9_000_000.0)
    assert ops.requested_intervals(ctx) is None


def test_min_sample_floor_for_the_kernels_tuner() -> None:
    goal = IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=5000, max_sample_us=10_000_000)
    ctx, _ = _ctx(10, goal)
    ctx.attrs.aggr_samples = 20
    ops = pte_ops.PteOps(cpu_budget=0.01)
    ops._windows = 5
    ops.cost = CostModel(fixed_ns=2_000_000.0, per_sample_ns=50_000.0)  # 3 ms a window of 20
    assert ops.min_sample_us(ctx) == 15_000  # 300 ms / 20
    ops.cpu_budget = 0.0
    assert ops.min_sample_us(ctx) == 0


def test_budget_with_fixed_intervals_says_so_once() -> None:
    ctx, _ = _ctx(10)
    ops = pte_ops.PteOps(cpu_budget=0.01)
    ops._windows = 10
    ops.cost = CostModel(fixed_ns=2_000_000.0, per_sample_ns=100_000.0)  # 4 ms per 100 ms
    ops.after_window_note(ctx)
    ops.after_window_note(ctx)
    assert len(ops.notes) == 1 and "4.0% of a core" in ops.notes[0] and "--cpu-budget" in ops.notes[0]
    assert ctx.attrs.sample_interval_us == 5000  # the user's intervals are kept


def test_pte_ops_rejects_bad_parameters() -> None:
    with pytest.raises(InvalidParamsError):
        pte_ops.PteOps(clear="sometimes")
    with pytest.raises(InvalidParamsError):
        pte_ops.PteOps(cpu_budget=1.5)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    monitor_cli.add_arguments(p)
    return p.parse_args(list(argv))


def test_pte_chooses_its_intervals_unless_given() -> None:
    a = attrs_from_args(_args("1"), source_chooses=True)
    assert a.source_intervals == SourceIntervals() and a.intervals_goal.aggrs == 0
    assert (a.sample_interval_us, a.aggr_interval_us) == (10_000, 200_000)
    fixed = attrs_from_args(_args("1", "--sample", "5ms", "--aggr", "100ms"), source_chooses=True)
    assert fixed.source_intervals is None and (fixed.sample_interval_us, fixed.aggr_interval_us) == (5000, 100_000)
    tuned = attrs_from_args(_args("1", "--monitoring_intervals_autotune"), source_chooses=True)
    assert tuned.source_intervals is None and tuned.intervals_goal.aggrs == int(AUTOTUNE_GOAL[1])
    other = attrs_from_args(_args("1"), source_chooses=False)
    assert other.source_intervals is None and (other.sample_interval_us, other.aggr_interval_us) == (5000, 100_000)


def test_source_options_pte() -> None:
    assert sources.source_from_args(_args("1", "--cpu-budget", "2%"), PTE)[1] == PteOptions(clear="auto",
                                                                                           cpu_budget=0.02)
    assert sources.source_from_args(_args("1", "--pte-clear", "clear_refs", "--cpu-budget", "0"), PTE)[1] == \
        PteOptions(clear="clear_refs", cpu_budget=0.0)
    with pytest.raises(InvalidParamsError, match="cpu-budget"):
        sources.source_from_args(_args("1", "--cpu-budget", "lots"), PTE)
    with pytest.raises(InvalidParamsError, match="belong to the pte source"):
        sources.source_from_args(_args("1", "--pte-clear", "madvise"), FAULT)


def test_blind_to_resident_lines() -> None:
    line = FAULT.blind_to_resident(FaultOptions(numa_hint_faults=False, probe=None))
    assert line and "resident memory are not seen" in line and "\n" not in line
    assert FAULT.blind_to_resident(FaultOptions(probe="pageout")) is None
    assert PTE.blind_to_resident(PteOptions()) is None
    assert PERF.blind_to_resident(PerfOptions(events="page-faults"))
    assert PERF.blind_to_resident(PerfOptions(events="mem-loads")) is None


def test_auto_prefers_hardware_sampling_then_pte(monkeypatch: pytest.MonkeyPatch) -> None:
    from damon_bpf.probes import perf_events

    monkeypatch.setattr(perf_events, "hardware_sampling_status", lambda: (True, ""))
    assert sources.auto_source().name == "perf"
    monkeypatch.setattr(perf_events, "hardware_sampling_status", lambda: (False, "no PMU"))
    monkeypatch.setattr(pte_ops.PteOps, "check_supported", lambda self: None)
    assert sources.auto_source().name == "pte"

    def unsupported(self: object) -> None:
        raise NotSupportedError("no")

    monkeypatch.setattr(pte_ops.PteOps, "check_supported", unsupported)
    assert sources.auto_source().name == "fault"


def test_add_monitoring_args_leave_intervals_unset() -> None:
    p = argparse.ArgumentParser()
    add_monitoring_args(p)
    ns = p.parse_args([])
    assert ns.sample is None and ns.aggr is None
    assert attrs_from_args(ns).sample_interval_us == 5000 and attrs_from_args(ns).aggr_interval_us == 100_000


def test_intervals_stay_within_half_a_second_while_probes_can_give_way() -> None:
    """A change of phase shows in the window after the one it happened in: at most 500 ms windows keep that within
    a second; longer ones only once the probes have given way as far as they go."""
    c = CostModel(fixed_ns=6_000_000.0, per_sample_ns=60_000.0)  # 7.2 ms a window: 800 ms at 0.9%
    assert choose_intervals(c, 0.01, 100_000, 1_000_000, soft_max_us=500_000)[1] == 500_000
    assert choose_intervals(c, 0.01, 100_000, 1_000_000, soft_max_us=None)[1] == 800_000
    ops = pte_ops.PteOps(cpu_budget=0.01)
    ops._windows = 5
    ctx = _source_ctx(200_000)
    ops.cost = c
    assert ops.requested_intervals(ctx) == (25_000, 500_000)
    ops._probe_scale = pte_ops._PROBE_SCALE_MIN
    ctx.attrs.sample_interval_us, ctx.attrs.aggr_interval_us = 25_000, 500_000
    ops._retuned_ns = 0
    assert ops.requested_intervals(ctx) == (50_000, 1_000_000)
