"""DAMOS actions of the vaddr ops on real processes: data integrity, real swap, RSS effects, refusals, filters,
and isolation from other processes.

A child program (``_CHILD``) maps private anonymous memory and a ``MAP_SHARED`` file under ``/var/tmp`` (not
tmpfs), fills every page with a keyed pattern (page index, version, seed) and, under load, keeps verifying and
rewriting part of its pages while the test applies actions through ``VaddrOps.apply_scheme`` on a real
``Ctx``/``Target`` opened on it. On ``VERIFY`` it checks every page byte for byte (and the file through
``pread`` against the mapping) and reports ``OK`` or the bad pages.

Anonymous pages only go to swap when swap exists: :mod:`.swapfile` adds a temporary swap file for the tests
that need it, and fails the test with the reason when swap cannot be turned on here.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest

from damon_bpf.engine import Attrs, Ctx, Kdamond, Target
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
from damon_bpf.errors import NotSupportedError
from damon_bpf.linux.cgroups import read_memcg_path
from damon_bpf.linux.pagemap import pmd_size
from damon_bpf.ops import damos_metrics as dm
from damon_bpf.ops.vaddr import VaddrOps, memory_nodes

from .swapfile import Swapfile, SwapUnavailableError

_CHILD = r'''
import ctypes, json, mmap, os, random, sys, threading, time
import numpy as np

cfg = json.loads(sys.argv[1])
PAGE = mmap.PAGESIZE
W = PAGE // 8
U = np.uint64
K = np.arange(W, dtype=U) * U(0x9E3779B97F4A7C15)
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

def keys(region, idx, ver):
    idx = np.asarray(idx, dtype=U)
    ver = np.asarray(ver, dtype=U)
    return (idx * U(0xD6E8FEB86659FD93)) ^ (ver * U(0xA24BAED4963EE407)) ^ U(cfg["seed"] * 2 + region)

def pattern(region, idx, ver):
    return keys(region, idx, ver)[..., None] ^ K

class Area:
    def __init__(self, region, mm, n):
        self.region, self.mm, self.n = region, mm, n
        self.a = np.frombuffer(mm, dtype=U).reshape(n, W)
        self.ver = np.zeros(n, dtype=np.uint32)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))

    def fill(self):
        for s in range(0, self.n, 1024):
            e = min(s + 1024, self.n)
            self.a[s:e] = pattern(self.region, np.arange(s, e), self.ver[s:e])

    def bad_pages(self):
        bad = []
        for s in range(0, self.n, 1024):
            e = min(s + 1024, self.n)
            exp = pattern(self.region, np.arange(s, e), self.ver[s:e])
            bad.extend((s + np.nonzero((self.a[s:e] != exp).any(axis=1))[0]).tolist())
        return bad

areas = []
if cfg["anon_mib"]:
    n = cfg["anon_mib"] << 8
    mm = mmap.mmap(-1, n * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    ar = Area(0, mm, n)
    if cfg.get("thp"):
        libc.madvise(ar.addr, n * PAGE, 14)  # MADV_HUGEPAGE
    ar.fill()
    areas.append(ar)
fd = None
if cfg["file_mib"]:
    n = cfg["file_mib"] << 8
    fd = os.open(cfg["file"], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    for s in range(0, n, 1024):  # written with write(2) and synced: clean page cache
        e = min(s + 1024, n)
        os.write(fd, pattern(1, np.arange(s, e), np.zeros(e - s, dtype=np.uint32)).tobytes())
    os.fsync(fd)
    mm = mmap.mmap(fd, n * PAGE, flags=mmap.MAP_SHARED)
    ar = Area(1, mm, n)
    areas.append(ar)

errors = []
pause = threading.Event()
idle = threading.Event()
stop = threading.Event()

def load():
    rng = random.Random(cfg["seed"])
    it = 0
    while not stop.is_set():
        if pause.is_set():
            idle.set()
            time.sleep(0.001)
            continue
        idle.clear()
        ar = areas[it % len(areas)]
        it += 1
        hot = max(1, int(ar.n * cfg["hot_frac"]))
        i = rng.randrange(hot)
        if not np.array_equal(ar.a[i], pattern(ar.region, i, ar.ver[i])):
            errors.append((ar.region, i, "hot"))
        ar.ver[i] += 1
        ar.a[i] = pattern(ar.region, i, ar.ver[i])
        j = rng.randrange(ar.n)  # a cold page, possibly paged out right now
        if not np.array_equal(ar.a[j], pattern(ar.region, j, ar.ver[j])):
            errors.append((ar.region, j, "cold"))
        if it % 64 == 0:
            time.sleep(0.0005)

th = None
if cfg["load"]:
    th = threading.Thread(target=load, daemon=True)
    th.start()

def paused():
    if th is not None:
        idle.clear()
        pause.set()
        idle.wait(10)

def reply(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()

info = []
for r in (0, 1):
    ar = next((a for a in areas if a.region == r), None)
    info += [ar.addr, ar.n * PAGE] if ar else [0, 0]
reply("READY", *info)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "PAUSE":
        paused()
        reply("PAUSED")
    elif cmd[0] == "RESUME":
        pause.clear()
        reply("RESUMED")
    elif cmd[0] == "TOUCH":
        s = 0
        for ar in areas:
            s += int(ar.a[:, 0].sum(dtype=U) & U(1))
        reply("TOUCHED", s)
    elif cmd[0] == "VERIFY":
        paused()
        bad = {ar.region: ar.bad_pages() for ar in areas}
        if fd is not None:
            ar = next(a for a in areas if a.region == 1)
            data = os.pread(fd, ar.n * PAGE, 0)
            if data != bytes(ar.mm):
                bad.setdefault("pread", []).append("file differs from its mapping")
        nbad = sum(len(v) for v in bad.values())
        pages = sum(ar.n for ar in areas)
        writes = sum(int(ar.ver.sum()) for ar in areas)
        if nbad or errors:
            reply("BAD", json.dumps({"bad": {str(k): v[:20] for k, v in bad.items()}, "load": errors[:20]}))
        else:
            reply("OK", pages, writes)
        pause.clear()
    elif cmd[0] == "QUIT":
        break
stop.set()
'''

PAGE = os.sysconf("SC_PAGE_SIZE")
_PERSONALITY_ADDR_NO_RANDOMIZE = 0x0040000


def _no_aslr() -> None:
    ctypes.CDLL(None).personality(_PERSONALITY_ADDR_NO_RANDOMIZE)


class Child:
    """The ``_CHILD`` program: ``anon`` and ``file`` are its ``(start, end)`` ranges (None when not mapped)."""

    def __init__(self, *, anon_mib: int = 0, file_mib: int = 0, load: bool = False, seed: int = 1,
                 hot_frac: float = 0.25, thp: bool = False, no_aslr: bool = False, tag: str = "a") -> None:
        self.file = f"/var/tmp/damon-bpf-test-{os.getpid()}-{tag}.data" if file_mib else None
        cfg = {"anon_mib": anon_mib, "file_mib": file_mib, "file": self.file, "load": load, "seed": seed,
               "hot_frac": hot_frac, "thp": thp}
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, preexec_fn=_no_aslr if no_aslr else None)
        words = self._read().split()
        assert words[0] == "READY", words
        a0, alen, f0, flen = (int(w) for w in words[1:5])
        self.anon = (a0, a0 + alen) if alen else None
        self.filer = (f0, f0 + flen) if flen else None
        self.pid = self.proc.pid

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"child {self.proc.pid} exited ({self.proc.wait()})")
        return line.strip()

    def cmd(self, c: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()
        return self._read()

    def status(self) -> dict[str, int]:
        """``/proc/<pid>/status`` sizes in kB (``VmRSS``, ``RssAnon``, ``RssFile``, ``VmSwap``...)."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith("kB"):
                    out[k] = int(v.split()[0])
        return out

    def ranges(self) -> list[tuple[int, int]]:
        return sorted(r for r in (self.anon, self.filer) if r is not None)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.cmd("QUIT")
            except (OSError, AssertionError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.file:
            try:
                os.unlink(self.file)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open(pid: int, ranges: list[tuple[int, int]] | None) -> tuple[VaddrOps, Ctx, Target]:
    ops = VaddrOps()
    t = Target(pid=pid, regions=[Region(s, e) for s, e in ranges] if ranges else None)
    ctx = Ctx(attrs=Attrs(), ops=ops)
    ctx.targets.append(t)
    ops.init(ctx)
    return ops, ctx, t


def _apply(ops: VaddrOps, ctx: Ctx, t: Target, s: Scheme, region: Region | None = None) -> tuple[int, int]:
    applied = passed = 0
    for r in [region] if region is not None else t.regions:
        a, p = ops.apply_scheme(ctx, t, r, s)
        applied += a
        passed += p
    return applied, passed


def _scheme(action: str, *filters: Filter) -> Scheme:
    s = Scheme(action=Action(action), filters=list(filters))
    set_filters_default_reject(s)
    return s


def _verify(c: Child) -> int:
    """Every page byte for byte (and the file against its mapping); returns the number of page writes the
    child's load made."""
    res = c.cmd("VERIFY")
    assert res.startswith("OK "), f"data corrupted in pid {c.pid}: {res}"
    return int(res.split()[2])


ACTIONS = ("pageout", "cold", "lru_deprio", "willneed", "collapse", "stat")


@pytest.fixture(scope="module")
def swap() -> Iterator[Swapfile]:
    """A 256 MiB swap file for this module; a test that needs it fails (not skips) when swap cannot work."""
    sw = Swapfile(256)
    try:
        sw.open()
    except SwapUnavailableError as err:
        pytest.fail(f"cannot turn on a temporary swap file in /var/tmp: {err}", pytrace=False)
    try:
        yield sw
    finally:
        sw.close()


def _rounds(c: Child, rounds: int, actions: tuple[str, ...] = ACTIONS, whole: bool = True) -> dict[str, int]:
    # every action, rounds times, on the child's ranges and (whole) on its three regions
    ops, ctx, t = _open(c.pid, c.ranges())
    wops, wctx, wt = _open(c.pid, None) if whole else (None, None, None)
    applied = dict.fromkeys(actions, 0)
    try:
        for rnd in range(rounds):
            ctx.passed_sample_intervals = rnd  # each round is an apply pass
            for action in actions:
                s = _scheme(action)
                applied[action] += _apply(ops, ctx, t, s)[0]
                if wops is not None and rnd % 10 == 0:
                    wctx.passed_sample_intervals = rnd
                    _apply(wops, wctx, wt, s)
    finally:
        ops.cleanup(ctx)
        if wops is not None:
            wops.cleanup(wctx)
    return applied


def test_every_action_keeps_data_intact_under_load() -> None:
    with Child(anon_mib=24, file_mib=24, load=True, seed=7) as c:
        applied = _rounds(c, 50)
        assert _verify(c) > 1000  # the load ran all along
        assert c.proc.poll() is None
    assert applied["stat"] == 0
    for action in ("pageout", "cold", "lru_deprio", "willneed"):
        assert applied[action] > 0, (action, applied)


def test_anon_pageout_really_swaps_and_data_survives(swap: Swapfile) -> None:
    with Child(anon_mib=32, load=True, seed=11) as c:
        ops, ctx, t = _open(c.pid, c.ranges())
        try:
            for rnd in range(25):
                ctx.passed_sample_intervals = rnd
                for action in ACTIONS:
                    _apply(ops, ctx, t, _scheme(action))
                if rnd == 10:
                    c.cmd("PAUSE")
                    ctx.passed_sample_intervals = 1000
                    applied, _ = _apply(ops, ctx, t, _scheme("pageout"))
                    swapped = c.status()["VmSwap"]
                    c.cmd("RESUME")
                    assert applied == 32 << 20
                    assert swapped > 16 << 10, f"VmSwap {swapped} kB after pageout of 32 MiB"
        finally:
            ops.cleanup(ctx)
        assert _verify(c) > 1000  # faults every page back from swap


def test_file_pageout_drops_rss() -> None:
    with Child(file_mib=64, seed=3) as c:
        c.cmd("TOUCH")
        before = c.status()["RssFile"]
        assert before >= 60 << 10
        ops, ctx, t = _open(c.pid, c.ranges())
        try:
            applied, _ = _apply(ops, ctx, t, _scheme("pageout"))
        finally:
            ops.cleanup(ctx)
        after = c.status()["RssFile"]
        assert applied == 64 << 20
        assert after < before - (56 << 10), f"RssFile {before} -> {after} kB"
        _verify(c)


def test_refusals_on_this_machine() -> None:
    ops = VaddrOps()
    nodes = memory_nodes()
    for action in ("migrate_hot", "migrate_cold"):
        if len(nodes) == 1:
            assert action not in ops.supported_actions
            assert ops.action_unsupported_reason(action) == f"{action} needs a NUMA machine: this one has 1 node"
    for action in ("hugepage", "nohugepage", "lru_prio") + (("migrate_hot",) if len(nodes) == 1 else ()):
        assert action not in ops.supported_actions
        with Child() as c:
            ctx = Ctx(attrs=Attrs(sample_interval_us=1000, aggr_interval_us=10_000), ops=VaddrOps())
            ctx.targets.append(Target(pid=c.pid))
            ctx.schemes.append(Scheme(action=Action(action)))
            with pytest.raises(NotSupportedError) as ei:
                Kdamond(ctx).init()
            assert str(ei.value) == ops.action_unsupported_reason(action)
            assert "\n" not in str(ei.value)
    for ftype in (FilterType.YOUNG, FilterType.ACTIVE):
        with pytest.raises(NotSupportedError, match=ftype.value):
            ops.check_scheme(_scheme("pageout", Filter(ftype)))
        with Child() as c:  # the kdamond asks the ops at init
            ctx = Ctx(attrs=Attrs(sample_interval_us=1000, aggr_interval_us=10_000), ops=VaddrOps())
            ctx.targets.append(Target(pid=c.pid))
            ctx.schemes.append(_scheme("stat", Filter(ftype)))
            with pytest.raises(NotSupportedError, match=f"DAMOS filter '{ftype.value}'"):
                Kdamond(ctx).init()
    with pytest.raises(NotSupportedError, match="paddr"):
        ops.check_scheme(Scheme(action=Action.PAGEOUT,
                                quota=Quota(goals=[QuotaGoal(QuotaGoalMetric.NODE_ELIGIBLE_MEM_BP, 5000)])))
    ops.check_scheme(_scheme("pageout", Filter(FilterType.ANON), Filter(FilterType.HUGEPAGE_SIZE, sz_min=0,
                                                                        sz_max=1 << 30)))


def test_anon_reject_filter_keeps_anon_resident_while_file_goes(swap: Swapfile) -> None:
    with Child(anon_mib=32, file_mib=32, seed=5) as c:
        c.cmd("TOUCH")
        before = c.status()
        ops, ctx, t = _open(c.pid, c.ranges())
        try:
            s = _scheme("pageout", Filter(FilterType.ANON, matching=True, allow=False))
            applied, passed = _apply(ops, ctx, t, s)
            mid = c.status()
            stat_applied, stat_passed = _apply(ops, ctx, t, _scheme("stat", Filter(FilterType.ANON, allow=False)))
            # control: without the filter, the anonymous memory does go to swap
            ctx.passed_sample_intervals = 1
            _apply(ops, ctx, t, _scheme("pageout"), Region(*c.anon))
            after = c.status()
        finally:
            ops.cleanup(ctx)
        assert (applied, passed) == (32 << 20, 32 << 20)
        assert (stat_applied, stat_passed) == (0, 32 << 20)
        assert mid["VmSwap"] - before["VmSwap"] < 1024, (before, mid)
        assert mid["RssAnon"] > before["RssAnon"] - 1024, (before, mid)
        assert mid["RssFile"] < before["RssFile"] - (28 << 10), (before, mid)
        assert after["VmSwap"] > 24 << 10, (mid, after)
        _verify(c)


def test_other_processes_are_never_touched(swap: Swapfile) -> None:
    # Two identical processes at the same addresses (no ASLR); only one is the target.
    with Child(anon_mib=16, file_mib=16, no_aslr=True, tag="t", seed=2) as target, \
            Child(anon_mib=16, file_mib=16, no_aslr=True, tag="o", seed=2) as other:
        target.cmd("TOUCH")
        other.cmd("TOUCH")
        before = other.status()
        _rounds(target, 5, actions=("pageout", "cold", "collapse"), whole=True)
        after = other.status()
        tgt = target.status()
        assert tgt["VmSwap"] > 8 << 10  # the target did go to swap
        for k in ("RssAnon", "RssFile"):
            assert after[k] >= before[k] - 256, (k, before, after)
        assert after["VmSwap"] <= before["VmSwap"] + 256, (before, after)
        _verify(target)
        _verify(other)


def _smaps_field_in(pid: int, name: str, start: int, end: int) -> int:
    # the sum of field *name* (kB) over the VMAs that overlap [start, end)
    total = 0
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                s, e = (int(x, 16) for x in head.split("-"))
                inside = s < end and start < e
            elif inside and head == name + ":":
                total += int(line.split()[1])
    return total


def test_hugepage_size_and_memcg_filters_on_a_real_process() -> None:
    with Child(anon_mib=16, thp=True, seed=4) as c:
        ops, ctx, t = _open(c.pid, c.ranges())
        try:
            thp_kb = _smaps_field_in(c.pid, "AnonHugePages", *c.anon)
            assert thp_kb >= 8 << 10  # MADV_HUGEPAGE took effect
            two_m = pmd_size()
            s = _scheme("stat", Filter(FilterType.HUGEPAGE_SIZE, allow=True, sz_min=two_m, sz_max=two_m))
            _, passed = _apply(ops, ctx, t, s)
            assert passed == thp_kb << 10
            memcg = read_memcg_path(c.pid)
            assert memcg is not None
            _, passed = _apply(ops, ctx, t, _scheme("stat", Filter(FilterType.MEMCG, allow=True, memcg_path=memcg)))
            assert passed == 16 << 20
            _, passed = _apply(ops, ctx, t, _scheme("stat", Filter(FilterType.MEMCG, allow=True,
                                                                   memcg_path="/no/such/cgroup")))
            assert passed == 0
        finally:
            ops.cleanup(ctx)


def test_exited_target_applies_nothing() -> None:
    c = Child(anon_mib=4)
    ops, ctx, t = _open(c.pid, c.ranges())
    try:
        c.close()
        deadline = time.monotonic() + 5
        while ops.target_valid(t) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _apply(ops, ctx, t, _scheme("pageout")) == (0, 0)
        assert _apply(ops, ctx, t, _scheme("pageout", Filter(FilterType.ANON))) == (0, 0)
    finally:
        ops.cleanup(ctx)


def test_kdamond_runs_vaddr_schemes_end_to_end() -> None:
    # The engine drives apply_scheme (ops-filter accounting), the vectorised scores (a quota) and
    # the metrics provider; the ops' cleanup closes the provider.
    with Child(anon_mib=8, file_mib=8, seed=9) as c:
        c.cmd("TOUCH")
        ops = VaddrOps()
        ctx = Ctx(attrs=Attrs(sample_interval_us=1_000, aggr_interval_us=10_000, min_nr_regions=3), ops=ops)
        ctx.targets.append(Target(pid=c.pid))
        filtered = _scheme("pageout", Filter(FilterType.ANON, allow=False))
        quota = Scheme(action=Action.COLD, quota=Quota(sz=1 << 30, reset_interval_ms=10,
                                                       weight_nr_accesses=1, weight_age=1))
        stat = _scheme("stat", Filter(FilterType.ANON, allow=True))
        ctx.schemes += [filtered, quota, stat]
        metrics = dm.DamosMetrics(delayacct=False).install(ctx)
        for s in ctx.schemes:
            ops.check_scheme(s, ctx)
        Kdamond(ctx).run(max_aggregations=5)
        assert ctx.damos_metric is metrics
        assert filtered.stat.sz_applied > 0 and filtered.stat.sz_ops_filter_passed > 0
        assert quota.stat.sz_applied > 0
        assert stat.stat.sz_applied == 0 and stat.stat.sz_ops_filter_passed >= 8 << 20
        _verify(c)


def test_metrics_on_this_machine() -> None:
    # task_mem_stall_us through taskstats (kernel.task_delayacct on for the session, then restored), and the
    # system-wide metrics from the real files.
    from damon_bpf.linux.sysctl import read_sysctl

    original = read_sysctl("kernel.task_delayacct")
    with Child(anon_mib=4) as c:
        ctx = Ctx(ops=VaddrOps())
        ctx.targets.append(Target(pid=c.pid))
        ctx.ops.init(ctx)
        g = QuotaGoal(QuotaGoalMetric.TASK_MEM_STALL_US, 1000)
        with dm.DamosMetrics().install(ctx) as m:
            m.check(Scheme(quota=Quota(goals=[g])))
            assert read_sysctl("kernel.task_delayacct") == "1"
            assert m(g, None) >= 0
            assert m(g, None) >= 0
            psi = QuotaGoal(QuotaGoalMetric.SOME_MEM_PSI_US, 1000)
            assert m(psi, None) >= 0 and psi.last_psi_total > 0
            rate = m(Watermarks(metric=WmarkMetric.FREE_MEM_RATE), None)
            assert 0 < rate <= 1000
            assert 0 <= m(QuotaGoal(QuotaGoalMetric.NODE_MEM_FREE_BP, 1000, nid=0), None) <= 10000
            assert m(QuotaGoal(QuotaGoalMetric.NODE_MEM_FREE_BP, 1000, nid=99), None) == 10000
            assert m(QuotaGoal(QuotaGoalMetric.ACTIVE_MEM_BP, 1000), None) + \
                m(QuotaGoal(QuotaGoalMetric.INACTIVE_MEM_BP, 1000), None) in (9999, 10000)
        ctx.ops.cleanup(ctx)
    assert read_sysctl("kernel.task_delayacct") == original
