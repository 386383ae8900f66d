"""The ops side of DAMOS without root: metric formulas and the metrics provider on fake files, vectorised scores
against the scalar ones, ops-filter decisions on synthetic VMA lists, refusals, and apply_scheme's per-VMA
application and error handling with the system calls replaced."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.engine import Attrs, Ctx, Target
from damon_bpf.engine.damos import (
    Action,
    Filter,
    FilterType,
    Quota,
    QuotaGoal,
    QuotaGoalMetric,
    Scheme,
    Watermarks,
    WmarkMetric,
    set_filters_default_reject,
)
from damon_bpf.engine.model import Region
from damon_bpf.engine.ops import Applied
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.ops import damos_filters as dfl
from damon_bpf.ops import damos_metrics as dm
from damon_bpf.ops import vaddr
from damon_bpf.ops.common import cold_score, cold_scores, hot_score, hot_scores
from damon_bpf.linux.cgroups import parse_numa_stat
from damon_bpf.linux.memory import parse_meminfo
from damon_bpf.linux.procmaps import Vma
from damon_bpf.linux.taskstats import TaskDelays
from damon_bpf.linux import syscalls
from damon_bpf.ops.vaddr import VaddrOps, VaddrTargetData

from .helpers import write_fake_proc

MiB = 1 << 20

# -- metric formulas on parsed files -------------------------------------------------------------------------

MEMINFO = """MemTotal:       24683340 kB
MemFree:        22940000 kB
MemAvailable:   23518928 kB
Active:           600000 kB
Inactive:         200000 kB
HugePages_Total:       0
"""

NODE_MEMINFO = """Node 0 MemTotal:       16000000 kB
Node 0 MemFree:         4000000 kB
Node 0 MemUsed:        12000000 kB
Node 0 Active:          1000 kB
"""


def test_parse_meminfo_and_formulas() -> None:
    m = parse_meminfo(MEMINFO)
    assert m["MemTotal"] == 24683340 and m["HugePages_Total"] == 0 and m["Inactive"] == 200000
    assert dm.free_mem_rate(m) == 22940000 * 1000 // 24683340
    n = parse_meminfo(NODE_MEMINFO)
    assert n == {"MemTotal": 16000000, "MemFree": 4000000, "MemUsed": 12000000, "Active": 1000}
    assert dm.node_used_bp(n) == 7500
    assert dm.free_mem_rate({}) == 0 and dm.node_used_bp({}) == 0


def test_parse_numa_stat_v2_and_v1() -> None:
    v2 = ("anon N0=4096 N1=8192\nfile N0=100 N1=0\nactive_anon N0=1000 N1=2\ninactive_anon N0=3000 N1=0\n"
          "active_file N0=50 N1=0\ninactive_file N0=50 N1=7\nunevictable N0=0 N1=0\n")
    s = parse_numa_stat(v2)
    assert s["anon"] == {0: 4096, 1: 8192}
    assert dm.memcg_node_used_bytes(s, 0) == 1000 + 3000 + 50 + 50  # the LRU lists, as the kernel sums them
    assert dm.memcg_node_used_bytes(s, 1) == 2 + 7
    assert dm.memcg_node_used_bytes(s, 5) == 0
    v1 = ("total=30 N0=30\nfile=10 N0=10\nanon=20 N0=20\nunevictable=0 N0=0\n"
          "hierarchical_total=60 N0=60\nhierarchical_file=25 N0=25\nhierarchical_anon=35 N0=35\n")
    s1 = parse_numa_stat(v1, page_size=4096)
    assert s1["anon"] == {0: 20 * 4096}
    assert dm.memcg_node_used_bytes(s1, 0) == 60 * 4096  # hierarchical, like the kernel's lruvec counters
    assert dm.memcg_node_used_bytes({"anon": {0: 5}, "file": {0: 6}}, 0) == 11


# -- the metrics provider on fake files -------------------------------------------------------------------------

class FakeTaskStats:
    def __init__(self) -> None:
        self.totals_ns: dict[int, int] = {}
        self.closed = False

    def tgid_delays(self, tgid: int) -> TaskDelays | None:
        if tgid not in self.totals_ns:
            return None
        return TaskDelays(16, self.totals_ns[tgid], 0, 0, 0)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[SimpleNamespace]:
    proc = tmp_path / "proc"
    sysr = tmp_path / "sys"
    v2 = tmp_path / "cg2"
    v1 = tmp_path / "cg1mem"
    (proc / "pressure").mkdir(parents=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "pressure" / "memory").write_text("some avg10=0 avg60=0 avg300=0 total=1000\n"
                                              "full avg10=0 avg60=0 avg300=0 total=10\n")
    node = sysr / "devices" / "system" / "node"
    (node / "node0").mkdir(parents=True)
    (node / "node0" / "meminfo").write_text(NODE_MEMINFO)
    (node / "has_memory").write_text("0\n")
    (v2 / "app").mkdir(parents=True)
    (v2 / "app" / "memory.pressure").write_text("some avg10=0 avg60=0 avg300=0 total=500\n")
    (v2 / "app" / "memory.numa_stat").write_text(
        "active_anon N0=1024000000\ninactive_anon N0=0\nactive_file N0=0\ninactive_file N0=1024000000\n")
    yield SimpleNamespace(proc=proc, sys=sysr, v2=v2, v1=v1, tmp=tmp_path)


def _metrics(r: SimpleNamespace, **kw: Any) -> dm.DamosMetrics:
    kw.setdefault("cgroup_mounts", (str(r.v2), None))
    return dm.DamosMetrics(proc_root=str(r.proc), sys_root=str(r.sys), delayacct=False, **kw)


def _goal(metric: QuotaGoalMetric, **kw: Any) -> QuotaGoal:
    return QuotaGoal(metric, 1000, **kw)


def test_metrics_system_wide(roots: SimpleNamespace) -> None:
    m = _metrics(roots)
    assert m(Watermarks(metric=WmarkMetric.FREE_MEM_RATE)) == 22940000 * 1000 // 24683340
    assert m(Watermarks(metric=WmarkMetric.NONE)) == 0
    assert m(_goal(QuotaGoalMetric.ACTIVE_MEM_BP)) == 7500
    assert m(_goal(QuotaGoalMetric.INACTIVE_MEM_BP)) == 2500
    assert m(_goal(QuotaGoalMetric.NODE_MEM_USED_BP, nid=0)) == 7500
    assert m(_goal(QuotaGoalMetric.NODE_MEM_FREE_BP, nid=0)) == 2500
    # a node that does not exist: the kernel's invalid-nid values
    assert m(_goal(QuotaGoalMetric.NODE_MEM_USED_BP, nid=3)) == 0
    assert m(_goal(QuotaGoalMetric.NODE_MEM_FREE_BP, nid=3)) == 10000


def test_psi_is_the_increase_since_the_last_evaluation(roots: SimpleNamespace) -> None:
    m = _metrics(roots)
    g = _goal(QuotaGoalMetric.SOME_MEM_PSI_US)
    assert m(g) == 1000 and g.last_psi_total == 1000  # from 0 at the first evaluation, as the kernel
    (roots.proc / "pressure" / "memory").write_text("some avg10=0 avg60=0 avg300=0 total=1600\n")
    assert m(g) == 600
    assert m(g) == 0
    cg = _goal(QuotaGoalMetric.SOME_MEM_PSI_US, memcg_path="/app")
    assert m(cg) == 500
    assert m(_goal(QuotaGoalMetric.SOME_MEM_PSI_US, memcg_path="gone")) == 0


def test_memcg_node_metrics(roots: SimpleNamespace) -> None:
    m = _metrics(roots)
    total = 16000000 * 1024
    used = 2048000000
    assert m(_goal(QuotaGoalMetric.NODE_MEMCG_USED_BP, nid=0, memcg_path="/app")) == used * 10000 // total
    assert m(_goal(QuotaGoalMetric.NODE_MEMCG_FREE_BP, nid=0, memcg_path="app/")) == \
        (total - used) * 10000 // total
    assert m(_goal(QuotaGoalMetric.NODE_MEMCG_USED_BP, nid=0, memcg_path="/nope")) == 0
    assert m(_goal(QuotaGoalMetric.NODE_MEMCG_FREE_BP, nid=0, memcg_path="/nope")) == 10000
    assert m(_goal(QuotaGoalMetric.NODE_MEMCG_USED_BP, nid=7, memcg_path="/app")) == 0
    # cgroup v1: the memory controller's own hierarchy, page counts
    (roots.v1 / "app").mkdir(parents=True)
    (roots.v1 / "app" / "memory.numa_stat").write_text("hierarchical_anon=1000 N0=1000\nhierarchical_file=0 N0=0\n")
    m1 = _metrics(roots, cgroup_mounts=(None, str(roots.v1)))
    assert m1(_goal(QuotaGoalMetric.NODE_MEMCG_USED_BP, nid=0, memcg_path="/app")) == \
        1000 * os.sysconf("SC_PAGE_SIZE") * 10000 // total


def test_missing_sources_are_not_supported(roots: SimpleNamespace) -> None:
    m = _metrics(roots)
    with pytest.raises(NotSupportedError, match="paddr"):
        m(_goal(QuotaGoalMetric.NODE_ELIGIBLE_MEM_BP))
    (roots.proc / "pressure" / "memory").unlink()
    with pytest.raises(NotSupportedError, match="CONFIG_PSI"):
        m(_goal(QuotaGoalMetric.SOME_MEM_PSI_US))
    psi_scheme = Scheme(quota=Quota(goals=[_goal(QuotaGoalMetric.SOME_MEM_PSI_US)]))
    with pytest.raises(NotSupportedError, match="pressure"):
        m.check(psi_scheme)
    with pytest.raises(NotSupportedError, match="paddr"):
        m.check(Scheme(quota=Quota(goals=[_goal(QuotaGoalMetric.NODE_ELIGIBLE_MEM_BP)])))
    with pytest.raises(NotSupportedError, match="cgroup2"):
        _metrics(roots, cgroup_mounts=(None, None)).check(
            Scheme(quota=Quota(goals=[_goal(QuotaGoalMetric.SOME_MEM_PSI_US, memcg_path="/app")])))
    with pytest.raises(InvalidParamsError, match="memcg_path"):
        m.check(Scheme(quota=Quota(goals=[_goal(QuotaGoalMetric.NODE_MEMCG_USED_BP)])))
    m.check(Scheme(quota=Quota(goals=[_goal(QuotaGoalMetric.USER_INPUT), _goal(QuotaGoalMetric.ACTIVE_MEM_BP)]),
                   wmarks=Watermarks(metric=WmarkMetric.FREE_MEM_RATE, high=900, mid=800, low=100)))
    nonuma = _metrics(SimpleNamespace(**{**roots.__dict__, "sys": roots.tmp / "nosys"}))
    with pytest.raises(NotSupportedError, match="CONFIG_NUMA"):
        nonuma(_goal(QuotaGoalMetric.NODE_MEM_USED_BP))
    (roots.proc / "meminfo").unlink()
    with pytest.raises(NotSupportedError):
        m(Watermarks(metric=WmarkMetric.FREE_MEM_RATE))


def test_task_mem_stall_us(roots: SimpleNamespace) -> None:
    fake = FakeTaskStats()
    ctx = Ctx()
    ctx.targets += [Target(pid=100), Target(pid=200), Target()]  # no ops: every process target counts
    m = _metrics(roots, taskstats=lambda: fake).install(ctx)
    assert ctx.damos_metric is m
    g = _goal(QuotaGoalMetric.TASK_MEM_STALL_US)
    fake.totals_ns = {100: 5_000_000, 200: 1_000_000}
    assert m(g) == 6000  # each target from 0 the first time
    fake.totals_ns = {100: 5_500_000, 200: 1_250_000}
    assert m(g) == 750
    fake.totals_ns = {200: 1_300_000, 100: 5_500_000}
    assert m(g) == 50
    del fake.totals_ns[100]  # exited: drops out
    fake.totals_ns[200] = 1_400_000
    assert m(g) == 100
    fake.totals_ns[100] = 2_000  # a process reappears with a smaller total: counts from 0
    assert m(g) == 2
    other = _goal(QuotaGoalMetric.TASK_MEM_STALL_US)  # per-goal baselines
    assert m(other) == 1402
    m.check(Scheme(quota=Quota(goals=[g])))
    # the provider belongs to whoever installed it (the Monitor): the ops' cleanup leaves it open
    ctx.targets.clear()
    VaddrOps().cleanup(ctx)
    assert not fake.closed
    m.close()
    assert fake.closed
    m.close()  # idempotent


# -- scores -----------------------------------------------------------------------------------------------------

_attrs = st.builds(
    lambda si, ratio: Attrs(sample_interval_us=si, aggr_interval_us=si * ratio),
    st.integers(1, 100_000), st.integers(1, 2000))


@settings(max_examples=300, deadline=None)
@given(attrs=_attrs, w_freq=st.integers(0, 10_000), w_age=st.integers(0, 10_000),
       rows=st.lists(st.tuples(st.integers(0, 5000), st.one_of(st.integers(0, 1000), st.integers(0, 2**32 - 1))),
                     min_size=1, max_size=30))
def test_vectorised_scores_equal_the_scalar_ones(attrs: Attrs, w_freq: int, w_age: int,
                                                 rows: list[tuple[int, int]]) -> None:
    nr = np.array([r[0] for r in rows], dtype=np.int64)
    age = np.array([r[1] for r in rows], dtype=np.int64)
    assert hot_scores(nr, age, attrs, w_freq, w_age).tolist() == \
        [hot_score(n, a, attrs, w_freq, w_age) for n, a in rows]
    assert cold_scores(nr, age, attrs, w_freq, w_age).tolist() == \
        [cold_score(n, a, attrs, w_freq, w_age) for n, a in rows]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), passed=st.integers(0, 100), ahead=st.integers(0, 40),
       w=st.tuples(st.integers(0, 1000), st.integers(0, 1000)))
def test_get_scheme_scores_equals_get_scheme_score(seed: int, passed: int, ahead: int, w: tuple[int, int]) -> None:
    rng = random.Random(seed)
    ctx = Ctx(attrs=Attrs(sample_interval_us=5_000, aggr_interval_us=100_000))
    ctx.passed_sample_intervals = passed
    ctx.next_aggregation_sis = passed + ahead - 10
    regions = []
    start = 0
    for _ in range(rng.randint(1, 20)):
        sz = rng.randint(1, 100) * 4096
        na = rng.randint(0, 25)
        regions.append(Region(start, start + sz, na, na * 10000, rng.choice([0, 3, 50, 10**6]), rng.randint(0, 25)))
        start += sz
    t = Target(regions=regions)
    ops = VaddrOps()
    quota = SimpleNamespace(weight_nr_accesses=w[0], weight_age=w[1])
    for action in [a.value for a in Action]:
        s = SimpleNamespace(action=Action(action), quota=quota)
        vec = ops.get_scheme_scores(ctx, t, s)
        assert vec.dtype == np.int64
        assert vec.tolist() == [ops.get_scheme_score(ctx, t, r, s) for r in t.regions], action


def test_score_dispatch() -> None:
    ctx = Ctx(attrs=Attrs(sample_interval_us=5_000, aggr_interval_us=100_000))
    t = Target(regions=[Region(0, 4096, nr_accesses=10)])
    r = t.regions[0]
    quota = SimpleNamespace(weight_nr_accesses=1, weight_age=1)
    ops = VaddrOps()

    def score(action: str) -> int:
        return ops.get_scheme_score(ctx, t, r, SimpleNamespace(action=action, quota=quota))

    for action in ("pageout", "migrate_cold", "cold", "lru_deprio"):
        assert score(action) == 50  # cold
    assert score("migrate_hot") == 49  # hot
    for action in ("willneed", "collapse", "hugepage", "nohugepage", "lru_prio", "stat"):
        assert score(action) == 99


# -- filters on synthetic VMA lists -----------------------------------------------------------------------------

ANON = Vma(0x10000, 0x20000, "rw-p", 0, "00:00", 0, "")
HEAP = Vma(0x20000, 0x30000, "rw-p", 0, "00:00", 0, "[heap]")
FILE = Vma(0x40000, 0x50000, "rw-s", 0, "fd:01", 1234, "/var/tmp/data")
VDSO = Vma(0x50000, 0x52000, "r-xp", 0, "00:00", 0, "[vdso]")
NAMED = Vma(0x52000, 0x60000, "rw-p", 0, "00:00", 0, "[anon:python]")
SHM = Vma(0x60000, 0x70000, "rw-s", 0, "00:01", 99, "/dev/zero (deleted)")
GATE = Vma(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", 0, "00:00", 0, "[vsyscall]")
VMAS = [ANON, HEAP, FILE, VDSO, NAMED, SHM, GATE]


def test_is_anon_vma() -> None:
    assert [dfl.is_anon_vma(v) for v in VMAS] == [True, True, False, False, True, False, False]
    assert dfl.is_anon_vma(Vma(0, 4096, pathname="[stack]"))


def test_split_at_vmas() -> None:
    pieces = dfl.split_at_vmas(0x18000, 0x44000, VMAS)
    assert [(p.start, p.end, p.vma) for p in pieces] == [
        (0x18000, 0x20000, ANON), (0x20000, 0x30000, HEAP), (0x40000, 0x44000, FILE)]  # the hole is left out
    assert dfl.split_at_vmas(0x30000, 0x40000, VMAS) == []
    assert dfl.split_at_vmas(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, VMAS) == []  # gate area


def _s(*filters: Filter, action: Action = Action.PAGEOUT) -> Scheme:
    s = Scheme(action=action, filters=list(filters))
    set_filters_default_reject(s)
    return s


def _decide(s: Any, vmas: list[Vma] = VMAS, memcg: str | None = None) -> list[bool]:
    pieces = [dfl.Piece(v.start, v.end, v) for v in vmas]
    return [ok for _, ok in dfl.evaluate(s, pieces, memcg)]


def test_filter_decisions() -> None:
    six = VMAS[:6]
    assert _decide(_s(), six) == [True] * 6
    # reject anon: anonymous VMAs out, the rest in (default: the opposite of the last filter)
    assert _decide(_s(Filter(FilterType.ANON, allow=False)), six) == [False, False, True, True, False, True]
    # allow anon only: the default becomes reject
    assert _decide(_s(Filter(FilterType.ANON, allow=True)), six) == [True, True, False, False, True, False]
    # matching=False selects the non-anonymous ones
    assert _decide(_s(Filter(FilterType.ANON, matching=False, allow=False)), six) == \
        [True, True, False, False, True, False]
    # the first match decides: allow anon, then reject everything not unmapped (i.e. everything)
    s = _s(Filter(FilterType.ANON, allow=True), Filter(FilterType.UNMAPPED, matching=False, allow=False))
    assert _decide(s, six) == [True, True, False, False, True, False]
    # unmapped never matches in vaddr: a reject-unmapped filter excludes nothing, an allow-unmapped one
    # includes nothing (and its default is reject)
    assert _decide(_s(Filter(FilterType.UNMAPPED, allow=False)), six) == [True] * 6
    assert _decide(_s(Filter(FilterType.UNMAPPED, allow=True)), six) == [False] * 6
    # a core filter that allowed the region lets everything through
    s = _s(Filter(FilterType.ANON, allow=True))
    object.__setattr__(s, "core_filters_allowed", True)
    assert _decide(s, six) == [True] * 6


def test_memcg_filter() -> None:
    f = Filter(FilterType.MEMCG, allow=True, memcg_path="app/db")
    assert _decide(_s(f), [ANON, FILE], memcg="/app/db") == [True, True]  # all of the process's memory
    assert _decide(_s(f), [ANON, FILE], memcg="/app") == [False, False]
    assert _decide(_s(f), [ANON, FILE], memcg=None) == [False, False]


def test_hugepage_size_filter_pieces() -> None:
    v = Vma(0, 10 * MiB, "rw-p")
    pieces = dfl.split_by_huge([dfl.Piece(1 * MiB, 9 * MiB, v)], [(0, 2 * MiB), (4 * MiB, 8 * MiB)], 2 * MiB)
    assert [(p.start // MiB, p.end // MiB, p.folio_sz) for p in pieces] == [
        (1, 2, 2 * MiB), (2, 4, 4096), (4, 8, 2 * MiB), (8, 9, 4096)]
    s = _s(Filter(FilterType.HUGEPAGE_SIZE, allow=True, sz_min=2 * MiB, sz_max=2 * MiB))
    assert [ok for _, ok in dfl.evaluate(s, pieces)] == [True, False, True, False]
    s = _s(Filter(FilterType.HUGEPAGE_SIZE, allow=False, sz_min=0, sz_max=64 * 1024))
    assert [ok for _, ok in dfl.evaluate(s, pieces)] == [True, False, True, False]


def test_refused_and_invalid_filters() -> None:
    for ft in (FilterType.YOUNG, FilterType.ACTIVE):
        with pytest.raises(NotSupportedError, match=ft.value) as ei:
            dfl.check_filters([Filter(ft)])
        assert "\n" not in str(ei.value)
        with pytest.raises(NotSupportedError):
            dfl.filter_match(Filter(ft), dfl.Piece(0, 4096, ANON))
    with pytest.raises(InvalidParamsError, match="memcg_path"):
        dfl.check_filters([Filter(FilterType.MEMCG)])
    with pytest.raises(InvalidParamsError, match="sz_min"):
        dfl.check_filters([Filter(FilterType.HUGEPAGE_SIZE, sz_min=2, sz_max=1)])
    with pytest.raises(NotSupportedError, match="PAGEMAP_SCAN"):
        dfl.check_filters([Filter(FilterType.HUGEPAGE_SIZE, sz_max=1)], lambda: "needs PAGEMAP_SCAN")
    dfl.check_filters([Filter(FilterType.ANON), Filter(FilterType.UNMAPPED)])
    # core filters are not ops filters
    assert dfl.ops_filters_of(_s(Filter(FilterType.ADDR), Filter(FilterType.ANON))) == [Filter(FilterType.ANON)]
    assert dfl.ops_filters_of(SimpleNamespace(action="stat")) == []


# -- refusals ---------------------------------------------------------------------------------------------------

def _sys_root(tmp_path: Path, nodes: str) -> str:
    d = tmp_path / "sys" / "devices" / "system" / "node"
    d.mkdir(parents=True, exist_ok=True)
    (d / "has_memory").write_text(nodes + "\n")
    return str(tmp_path / "sys")


def test_action_refusals(tmp_path: Path) -> None:
    ops = VaddrOps(sys_root=_sys_root(tmp_path, "0"))
    assert ops.supported_actions == {"pageout", "cold", "lru_deprio", "willneed", "collapse", "stat"}
    assert ops.action_unsupported_reason("migrate_hot") == "migrate_hot needs a NUMA machine: this one has 1 node"
    assert ops.action_unsupported_reason(Action.MIGRATE_COLD) == \
        "migrate_cold needs a NUMA machine: this one has 1 node"
    for action in ("hugepage", "nohugepage", "lru_prio"):
        why = ops.action_unsupported_reason(action)
        assert why.startswith(f"{action}: ") and "\n" not in why
    assert "MADV_HUGEPAGE" in ops.action_unsupported_reason("hugepage")
    assert "activate" in ops.action_unsupported_reason("lru_prio")
    assert "unknown" in ops.action_unsupported_reason("bogus")
    for action in ("hugepage", "migrate_hot", "lru_prio"):
        with pytest.raises(NotSupportedError, match=action):
            ops.check_scheme(Scheme(action=Action(action)))
    with pytest.raises(NotSupportedError, match="young"):
        ops.check_scheme(_s(Filter(FilterType.YOUNG)))
    with pytest.raises(NotSupportedError, match="paddr"):
        ops.check_scheme(Scheme(quota=Quota(goals=[_goal(QuotaGoalMetric.NODE_ELIGIBLE_MEM_BP)])))
    ops.check_scheme(_s(Filter(FilterType.ANON)))

    numa = VaddrOps(sys_root=_sys_root(tmp_path / "numa", "0-1"))
    assert {"migrate_hot", "migrate_cold"} <= numa.supported_actions
    numa.check_scheme(Scheme(action=Action.MIGRATE_HOT, target_nid=1))
    with pytest.raises(NotSupportedError, match="node 2 does not exist"):
        numa.check_scheme(Scheme(action=Action.MIGRATE_COLD, target_nid=2))
    assert VaddrOps(sys_root=str(tmp_path / "nothing")).memory_nodes == [0]


# -- apply_scheme with the system calls replaced ----------------------------------------------------------------

PID = 4242
MAPS = """\
00400000-00402000 r-xp 00000000 fd:01 1234       /usr/bin/prog
00402000-00410000 rw-p 00000000 00:00 0          [heap]
00420000-00430000 rw-s 00000000 fd:01 5678       /var/tmp/data
00430000-00440000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00002000 r--p 00000000 00:00 0  [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
"""


class FakeKernel:
    """syscalls.process_madvise / move_pages stand-ins: ranges in *fail* fail with their errno, as the kernel's
    vector_madvise() does (whole iovecs, stop at the first failure)."""

    def __init__(self) -> None:
        self.fail: dict[int, int] = {}  # range start -> errno
        self.calls: list[tuple[list[tuple[int, int]], int]] = []
        self.advised: list[tuple[int, int]] = []
        self.nodes: dict[int, int] = {}  # page -> node
        self.moves: list[tuple[int, int]] = []

    def madvise(self, pidfd: int, iov: Any, advice: int) -> int:
        # (start, length) iovecs, recorded as (start, end) ranges
        ranges = [(int(s), int(s + n)) for s, n in np.asarray(iov, dtype=np.uint64).reshape(-1, 2)]
        self.calls.append((ranges, advice))
        done = 0
        for s, e in ranges:
            if s in self.fail:
                if done:
                    return done
                raise syscalls.errno_error(self.fail[s], "process_madvise", PID)
            self.advised.append((s, e))
            done += e - s
        return done

    def move_pages(self, pid: int, addrs: Any, nodes: Any) -> list[int]:
        addrs = [int(a) for a in addrs]
        nodes = None if nodes is None else [int(n) for n in nodes]
        if nodes is None:
            return [self.nodes.get(a, -errno.ENOENT) for a in addrs]
        out = []
        for a, n in zip(addrs, nodes):
            if a in self.nodes:
                self.nodes[a] = n
                self.moves.append((a, n))
                out.append(n)
            else:
                out.append(-errno.ENOENT)
        return out


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    write_fake_proc(tmp_path / "proc", PID, MAPS)
    kern = FakeKernel()
    monkeypatch.setattr(vaddr, "process_madvise", kern.madvise)
    monkeypatch.setattr(vaddr, "move_pages", kern.move_pages)
    ops = VaddrOps(proc_root=str(tmp_path / "proc"), sys_root=_sys_root(tmp_path, "0-1"))
    pidfd = os.pidfd_open(os.getpid())  # alive; the fake pid's maps come from the fake /proc
    t = Target(pid=PID, ops_data=VaddrTargetData(pidfd=pidfd))
    ctx = Ctx(ops=ops)
    ctx.targets.append(t)
    yield SimpleNamespace(ops=ops, t=t, ctx=ctx, kern=kern, proc=tmp_path / "proc")
    ops.cleanup(ctx)


def test_apply_is_per_vma_and_skips_holes_and_gates(fake: SimpleNamespace) -> None:
    whole = Region(0x400000, 0xFFFFFFFFFF601000)
    applied = fake.ops.apply_scheme(fake.ctx, fake.t, whole, _s())
    assert fake.kern.calls[0][1] == vaddr.MADV_PAGEOUT
    assert fake.kern.calls[0][0] == [(0x400000, 0x402000), (0x402000, 0x410000), (0x420000, 0x430000),
                                     (0x430000, 0x440000), (0x7FFD00000000, 0x7FFD00002000)]
    assert applied == Applied(0x2000 + 0xE000 + 0x10000 + 0x10000 + 0x2000) and isinstance(applied, Applied)
    fake.kern.calls.clear()
    assert fake.ops.apply_scheme(fake.ctx, fake.t, Region(0x408000, 0x424000), _s(action=Action.LRU_DEPRIO)) \
        == Applied(0x8000 + 0x4000)
    assert fake.kern.calls == [([(0x408000, 0x410000), (0x420000, 0x424000)], vaddr.MADV_COLD)]


def test_refused_vmas_are_skipped_and_counted_out(fake: SimpleNamespace) -> None:
    fake.kern.fail = {0x420000: errno.EINVAL, 0x7FFD00000000: errno.EINVAL}
    applied = fake.ops.apply_scheme(fake.ctx, fake.t, Region(0x400000, 0x7FFD00002000), _s(action=Action.COLD))
    assert applied == Applied(0x2000 + 0xE000 + 0x10000)
    assert sorted(fake.kern.advised) == [(0x400000, 0x402000), (0x402000, 0x410000), (0x430000, 0x440000)]
    # a stop at the failing range, then that range alone (its error), then the rest
    assert [len(c[0]) for c in fake.kern.calls] == [5, 3, 2, 1]


def test_target_exit_and_hole_errors(fake: SimpleNamespace) -> None:
    fake.kern.fail = {0x420000: errno.ESRCH}
    assert fake.ops.apply_scheme(fake.ctx, fake.t, Region(0x400000, 0x440000), _s()) == Applied(0x10000)
    assert fake.t.ops_data.gone
    assert fake.ops.apply_scheme(fake.ctx, fake.t, Region(0x400000, 0x440000), _s()) == Applied(0)
    fake.t.ops_data.gone = False
    fake.kern.fail = {0x420000: errno.ENOMEM}
    state_before = fake.t.ops_data.damos.vmas_ns
    assert fake.ops.apply_scheme(fake.ctx, fake.t, Region(0x400000, 0x440000), _s()) == Applied(0x20000)
    assert fake.t.ops_data.damos.vmas_ns < state_before  # marked stale: re-read at the next call


def test_vmas_are_refreshed_per_apply_pass(fake: SimpleNamespace) -> None:
    r = Region(0x400000, 0x500000)
    assert fake.ops.apply_scheme(fake.ctx, fake.t, r, _s()) == Applied(0x40000 - 0x10000)
    lines = MAPS.splitlines(keepends=True)
    write_fake_proc(fake.proc, PID, "".join(lines[:4] + ["00480000-00490000 rw-p 00000000 00:00 0\n"] + lines[4:]))
    state = fake.t.ops_data.damos
    state.vmas_ns -= 10**9 // 10  # 100 ms later
    assert fake.ops.apply_scheme(fake.ctx, fake.t, r, _s()) == Applied(0x30000)  # same pass: the cached maps
    fake.ctx.passed_sample_intervals += 20  # the next apply pass
    assert fake.ops.apply_scheme(fake.ctx, fake.t, r, _s()) == Applied(0x40000)
    assert fake.t.ops_data.vmas[-1].pathname == "[vsyscall]" and len(fake.t.ops_data.vmas) == 7


def test_filters_stat_and_unsupported(fake: SimpleNamespace) -> None:
    r = Region(0x400000, 0x440000)
    s = _s(Filter(FilterType.ANON, allow=False))
    # the anonymous heap and the unnamed mapping are rejected; the binary and the shared file pass
    assert fake.ops.apply_scheme(fake.ctx, fake.t, r, s) == (0x2000 + 0x10000, 0x2000 + 0x10000)
    assert fake.kern.calls[-1][0] == [(0x400000, 0x402000), (0x420000, 0x430000)]
    n = len(fake.kern.calls)
    assert fake.ops.apply_scheme(fake.ctx, fake.t, r, _s(Filter(FilterType.ANON, allow=True), action=Action.STAT)) == \
        (0, 0xE000 + 0x10000)
    assert fake.ops.apply_scheme(fake.ctx, fake.t, r, _s(action=Action.STAT)) == Applied(0)
    for action in ("hugepage", "nohugepage", "lru_prio", "bogus"):
        assert fake.ops.apply_scheme(fake.ctx, fake.t, r, SimpleNamespace(action=action)) == Applied(0)
    assert len(fake.kern.calls) == n  # stat and refused actions make no call
    with pytest.raises(NotSupportedError):  # check_scheme refuses it first in a real run
        fake.ops.apply_scheme(fake.ctx, fake.t, r, _s(Filter(FilterType.YOUNG)))


def test_migrate_counts_moved_pages_only(fake: SimpleNamespace) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    heap = range(0x402000, 0x410000, page)
    fake.kern.nodes = {a: 0 for a in heap}
    fake.kern.nodes[0x402000] = 1  # already there: not counted
    s = Scheme(action=Action.MIGRATE_HOT, target_nid=1)
    applied = fake.ops.apply_scheme(fake.ctx, fake.t, Region(0x400000, 0x440000), s)
    assert applied == Applied((len(heap) - 1) * page)
    assert all(n == 1 for n in fake.kern.nodes.values())
    assert 0x402000 not in [a for a, _ in fake.kern.moves]


def test_subclass_keeps_its_own_actions(tmp_path: Path) -> None:
    class StatOnly(VaddrOps):
        name = "statonly"
        supported_actions = frozenset({"stat"})

    o = StatOnly(sys_root=_sys_root(tmp_path, "0-1"))
    assert o.supported_actions == {"stat"}
    assert o.action_unsupported_reason("pageout") == \
        "the statonly operations set cannot apply DAMOS action 'pageout' (it supports: stat)"
    with pytest.raises(NotSupportedError, match="it supports: stat"):
        o.check_scheme(Scheme(action=Action.MIGRATE_HOT, target_nid=1))
