"""The pte source on real page tables: the BPF walk (bpf/pte.bpf.c, damon_bpf.probes.pte) against
/proc/<pid>/pagemap, the kernel paths that clear Accessed bits (clear_refs, process_madvise(MADV_COLD)), the
Dirty bit, PMD-mapped THPs, and the PteOps source end to end (accuracy, exec, exit)."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import damon_bpf.ops.pte as pte_ops_mod
import damon_bpf.ops.pte_clear as pte_clear_mod
from damon_bpf.engine import Attrs, Snapshot, StopReason
from damon_bpf.session.monitor import Monitor, MonitorSpec
from damon_bpf.ops.sources import PteOptions
from damon_bpf.linux.syscalls import MADV_COLD, process_madvise
from damon_bpf.probes.pte import (
    R_ACCESSED,
    R_DIRTY,
    R_PRESENT,
    PagingLayout,
    PteOffsets,
    PteWalkConfig,
    PteWalker,
    WalkStatus,
    result_level,
    result_phys,
)

from .helpers import TOUCHER, Toucher, overlap

MiB = 1 << 20
PAGE = mmap.PAGESIZE
PMD = 2 * MiB
PTE_TARGET = str(Path(__file__).with_name("pte_target.py"))
_PM_PRESENT = np.uint64(1 << 63)
_PM_PFN = np.uint64((1 << 55) - 1)
NONPRESENT = ("nonpresent_pgd", "nonpresent_pud", "nonpresent_pmd", "nonpresent_pte")


# -- fixtures and helpers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walker() -> Iterator[PteWalker]:
    """One compiled walk program for the direct walker tests (its stats are cumulative: tests use deltas)."""
    with PteWalker(PteWalkConfig(offsets=PteOffsets.from_btf(), layout=PagingLayout.detect(), max_slots=4096)) as w:
        yield w


@pytest.fixture
def spawn() -> Iterator[Callable[..., tuple[subprocess.Popen[str], list[int]]]]:
    """Start ``pte_target.py MODE ARGS``; returns the process and the numbers of its ready line. Every process
    started is killed and reaped at teardown, whatever the test did."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], list[int]]:
        p = subprocess.Popen([sys.executable, PTE_TARGET, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line, f"pte_target.py {' '.join(args)} exited before it was ready (rc {p.wait()})"
        return p, [int(x) for x in line.split()]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


@contextmanager
def mem_fd(pid: int | str) -> Iterator[int]:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def pagemap(pid: int | str, addrs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The /proc/<pid>/pagemap entry of each (page-aligned) address."""
    out = np.zeros(addrs.size, dtype=np.uint64)
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
        for i, a in enumerate(addrs.tolist()):
            out[i] = np.frombuffer(os.pread(f.fileno(), 8, (a // PAGE) * 8), dtype=np.uint64)[0]
    return out


def pagemap_range(pid: int | str, start: int, n: int) -> npt.NDArray[np.uint64]:
    """The pagemap entries of *n* consecutive pages from *start*."""
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
        raw = os.pread(f.fileno(), n * 8, (start // PAGE) * 8)
    assert len(raw) == n * 8
    return np.frombuffer(raw, dtype=np.uint64)


def pages(start: int, n: int) -> npt.NDArray[np.uint64]:
    return np.arange(start, start + n * PAGE, PAGE, dtype=np.uint64)


def anon_huge_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/smaps_rollup has no AnonHugePages line")


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def bits(res: npt.NDArray[np.uint64], mask: int) -> npt.NDArray[np.bool_]:
    return (res & np.uint64(mask)) != 0


def walk_ok(w: PteWalker, fd: int, addrs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    st, res = w.walk(fd, addrs)
    assert st == WalkStatus.OK, f"walk status {st}"
    return res


def run_pte(pids: list[int], duration_s: float, sample_us: int = 10_000, aggr_us: int = 200_000,
            on_snapshot: Callable[[int], bool | None] | None = None,
            until: Callable[[list[Snapshot]], bool] | None = None,
            **opts: Any) -> tuple[Monitor, StopReason, list[Snapshot], list[dict[str, Any]]]:
    """Monitor *pids* with the pte source; returns the monitor, why it stopped, every snapshot and the source's
    stats as seen at each snapshot (the source closes its walker at the end, and its stats with it).
    *on_snapshot* is called with the number of snapshots so far, after each; when it returns True the run
    stops; so it does when *until*, called with every snapshot so far, returns True."""
    snaps: list[Snapshot] = []
    stats: list[dict[str, Any]] = []
    spec = MonitorSpec(pids=pids, source="pte", source_options=PteOptions(**opts), duration_s=duration_s, seed=1,
                       attrs=Attrs(sample_interval_us=sample_us, aggr_interval_us=aggr_us,
                                   ops_update_interval_us=1_000_000, min_nr_regions=10, max_nr_regions=1000))
    mon = Monitor(spec)

    def consume(s: Snapshot) -> None:
        snaps.append(s)
        stats.append(mon.source_stats())
        if on_snapshot is not None and on_snapshot(len(snaps)):
            mon.stop()
        elif until is not None and until(snaps):
            mon.stop()

    mon.consumers.append(consume)
    try:
        mon.open()
        reason = mon.run()
    finally:
        mon.close()
    return mon, reason, snaps, stats


def accessed_cover(snap: Snapshot, lo: int, hi: int, map_lo: int, map_hi: int) -> tuple[float, float]:
    """(recall: share of [lo, hi) in regions with nr_accesses > 0; precision: share of such regions' bytes
    within [map_lo, map_hi) that lie in [lo, hi))."""
    hit = in_map = 0
    for r in snap.targets[0].regions:
        if r.nr_accesses > 0:
            hit += overlap(r.start, r.end, lo, hi)
            in_map += overlap(r.start, r.end, map_lo, map_hi)
    return hit / (hi - lo), (hit / in_map if in_map else 0.0)


# -- the walk ----------------------------------------------------------------------------------------------------


def test_walk_matches_pagemap_and_counts_hole(walker: PteWalker, spawn: Any) -> None:
    """The BPF walk of another process's page tables (found through our /proc/<pid>/mem fd) finds, for every
    touched 4 KiB anonymous page, a present level-1 PTE whose physical page is the PFN pagemap shows; addresses
    in an unmapped hole come back not present and are counted as such. 1536 pages on each side of the hole:
    more than one batch of max_slots, so the walk is split."""
    n = 1536
    proc, (start, got_n) = spawn("pages", str(n))
    assert got_n == n
    lo, hole, hi = pages(start, n), pages(start + n * PAGE, n), pages(start + 2 * n * PAGE, n)
    addrs = np.concatenate([lo, hole, hi])
    assert addrs.size > walker.config.max_slots
    before = walker.stats()
    with mem_fd(proc.pid) as fd:
        res = walk_ok(walker, fd, addrs)
    d = delta(before, walker.stats())
    mapped = np.concatenate([res[:n], res[2 * n:]])
    mapped_addrs = np.concatenate([lo, hi])
    assert bits(mapped, R_PRESENT).all(), int(np.count_nonzero(~bits(mapped, R_PRESENT)))
    assert (result_level(mapped) == 1).all(), np.unique(result_level(mapped))
    # every page was written once: dirty, and accessed unless something cleared it since (this machine runs a
    # kernel DAMON paddr context, whose sampling clears the Accessed bit of a page now and then)
    assert bits(mapped, R_DIRTY).all()
    assert bits(mapped, R_ACCESSED).mean() >= 0.98
    pm = pagemap(proc.pid, mapped_addrs)
    assert ((pm & _PM_PRESENT) != 0).all()
    pfns = (pm & _PM_PFN).astype(np.int64)
    assert (pfns != 0).all(), "pagemap hides PFNs: not root?"
    found = (result_phys(mapped) >> np.uint64(12)).astype(np.int64)
    assert np.array_equal(found, pfns), f"{int(np.count_nonzero(found != pfns))}/{found.size} PFNs differ"
    holes = res[n:2 * n]
    assert not bits(holes, R_PRESENT).any()
    assert (result_phys(holes) == 0).all()
    assert set(np.unique(result_level(holes)).tolist()) <= {1, 2, 3, 4}
    assert d["walks"] == addrs.size
    assert sum(d[k] for k in NONPRESENT) == n, d
    assert d["accessed"] == int(np.count_nonzero(bits(res, R_ACCESSED))), d
    assert d["huge"] == 0 and d["read_faults"] == 0, d
    assert d["runs"] >= addrs.size // walker.config.walk_batch


def test_walk_of_closed_fd_is_refused(walker: PteWalker) -> None:
    """An fd number that is not open in our fd table is reported (NO_FILE), not walked."""
    fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)
    st, res = walker.walk(fd, pages(0x10000, 4))
    assert st == WalkStatus.NO_FILE and not res.any()


@pytest.mark.parametrize("clear", ["clear_refs", "madvise"])
def test_clear_then_reaccess(walker: PteWalker, clear: str) -> None:
    """Both kernel paths the source clears with (``echo 1 > /proc/<pid>/clear_refs``; process_madvise(MADV_COLD)
    of the sample pages through a pidfd) clear the PTE Accessed bits and flush the TLB: a page the target keeps
    touching reads accessed again ~50 ms later, a page it never touches stays not accessed.

    MADV_COLD skips folios that are not on an LRU list (madvise_cold_or_pageout_pte_range()): the last pages
    the target faulted in can still sit in a per-CPU lru_add batch of the CPU it ran on (only the caller's CPU
    is drained), so those few keep their Accessed bit; they are told apart by KPF_LRU and must be few."""
    rng = np.random.default_rng(7)
    with Toucher(32, 4) as w:
        hot = (w.addr + rng.choice(4 * MiB // PAGE, 256, replace=False) * PAGE).astype(np.uint64)
        cold = (w.addr + 8 * MiB + rng.choice(24 * MiB // PAGE, 256, replace=False) * PAGE).astype(np.uint64)
        addrs = np.sort(np.concatenate([hot, cold]))
        is_hot = addrs < np.uint64(w.hot_end)
        with mem_fd(w.pid) as fd:
            res = walk_ok(walker, fd, addrs)
            assert bits(res, R_PRESENT).all()
            # the toucher wrote every page once at start: before the clear the cold pages read accessed too
            assert bits(res[~is_hot], R_ACCESSED).mean() >= 0.9
            # cold samples MADV_COLD may skip: not on an LRU list (KPF_LRU, bit 5) before the clear
            skip = np.zeros(addrs.size, dtype=bool)
            if clear == "madvise":
                lru = (kpageflags((result_phys(res) >> np.uint64(12)).astype(np.int64)) >> np.uint64(5)) & 1
                skip = ~is_hot & (lru == 0)
                assert skip.sum() <= 32 * (os.cpu_count() or 1), f"{int(skip.sum())} cold samples not on an LRU"
            cold_checked = ~is_hot & ~skip
            if clear == "clear_refs":
                with open(f"/proc/{w.pid}/clear_refs", "w") as f:
                    f.write("1")
            else:
                pidfd = os.pidfd_open(w.pid)
                try:
                    done = process_madvise(pidfd, [(a, PAGE) for a in addrs.tolist()], MADV_COLD)
                finally:
                    os.close(pidfd)
                assert done == addrs.size * PAGE
            res = walk_ok(walker, fd, addrs)
            left = np.nonzero(cold_checked & bits(res, R_ACCESSED))[0]
            assert not left.size, f"cold samples {left.tolist()} still accessed right after the clear"
            time.sleep(0.05)
            res = walk_ok(walker, fd, addrs)
    assert bits(res, R_PRESENT).all()
    hot_frac = bits(res[is_hot], R_ACCESSED).mean()
    assert hot_frac >= 0.9, f"only {hot_frac:.0%} of the hot samples were seen accessed again"
    assert not bits(res[cold_checked], R_ACCESSED).any(), int(np.count_nonzero(bits(res[cold_checked], R_ACCESSED)))


def test_dirty_bit_follows_writes(walker: PteWalker) -> None:
    """The Dirty bit is read from the leaf: a written anonymous page is dirty (write fault: pte_mkdirty), a page
    only read maps the shared zero page, clean; clear_refs (type 1) clears Accessed but leaves Dirty; a page
    written after the clear gets a new private page, accessed and dirty, while untouched ones stay clean."""
    n = 256
    m = mmap.mmap(-1, 2 * n * PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        import ctypes

        start = ctypes.addressof(ctypes.c_char.from_buffer(m))
        for i in range(n):
            m[i * PAGE] = 1  # written
        for i in range(n, 2 * n):
            assert m[i * PAGE] == 0  # read only
        addrs = pages(start, 2 * n)
        with mem_fd("self") as fd:
            res = walk_ok(walker, fd, addrs)
            wr, rd = res[:n], res[n:]
            assert bits(res, R_PRESENT).all() and (result_level(res) == 1).all()
            assert bits(wr, R_DIRTY).all()
            assert not bits(rd, R_DIRTY).any()
            zero = np.unique(result_phys(rd))
            assert zero.size == 1, "read-only anonymous pages should all map the zero page"
            assert not np.isin(result_phys(wr), zero).any()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("1")
            res = walk_ok(walker, fd, addrs)
            # (the zero page is no normal page: clear_refs leaves its entries alone, Accessed or not)
            assert not bits(res[:n], R_ACCESSED).any()
            assert bits(res[:n], R_DIRTY).all(), "clear_refs 1 must not clear the Dirty bit"
            for i in range(n, n + n // 2):
                m[i * PAGE] = 2  # copy-on-write from the zero page
            res = walk_ok(walker, fd, addrs)
    finally:
        m.close()
    new, untouched = res[n:n + n // 2], res[n + n // 2:]
    want = np.uint64(R_PRESENT | R_ACCESSED | R_DIRTY)
    assert ((new & want) == want).all()
    assert not np.isin(result_phys(new), zero).any()
    assert not bits(untouched, R_DIRTY).any()
    assert (result_phys(untouched) == zero[0]).all()
    assert bits(res[:n], R_DIRTY).all() and not bits(res[:n], R_ACCESSED).any()


# -- THP ---------------------------------------------------------------------------------------------------------


def _record_advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    # the (start, end) ranges the source process_madvise()s from now on
    advised: list[tuple[int, int]] = []
    real = pte_clear_mod.process_madvise

    def recording(pidfd: int, iov: Any, advice: int) -> int:
        advised.extend((int(s), int(s + n)) for s, n in np.asarray(iov).reshape(-1, 2))
        return real(pidfd, iov, advice)

    monkeypatch.setattr(pte_clear_mod, "process_madvise", recording)
    return advised


def test_thp_walk_and_source_never_splits(walker: PteWalker, spawn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PMD-mapped THP is one level-2 leaf: the walk reports level 2 and the 4 KiB page's physical address
    inside it (pagemap's PFN of each subpage). The source (clear=madvise) advises a THP sample's whole aligned
    2 MiB, so MADV_COLD never splits it: the region stays PMD-mapped and AnonHugePages does not drop. (The
    target keeps touching the first half of the region; the second half stays cold.)"""
    size = 8 * MiB
    proc, (start, got) = spawn("thp", str(size // MiB))
    assert got == size and start % PMD == 0
    huge_kb = anon_huge_kb(proc.pid)
    assert huge_kb > 0, ("no THP could be allocated for an madvise(MADV_HUGEPAGE) region (see "
                         "/sys/kernel/mm/transparent_hugepage/enabled and defrag): this test needs THP")
    assert huge_kb >= size // 1024, f"only {huge_kb} kB of the {size // 1024} kB region is huge"
    addrs = pages(start, size // PAGE)
    before = walker.stats()
    with mem_fd(proc.pid) as fd:
        res = walk_ok(walker, fd, addrs)
    assert bits(res, R_PRESENT).all()
    assert (result_level(res) == 2).all(), np.unique(result_level(res), return_counts=True)
    assert walker.stats()["huge"] - before["huge"] == addrs.size
    pm = pagemap_range(proc.pid, start, addrs.size)
    found = (result_phys(res) >> np.uint64(12)).astype(np.int64)
    assert np.array_equal(found, (pm & _PM_PFN).astype(np.int64))
    # each 2 MiB is one physically contiguous, 2 MiB-aligned folio
    per_pmd = found.reshape(-1, PMD // PAGE)
    assert (per_pmd[:, 0] % (PMD // PAGE) == 0).all()
    assert (np.diff(per_pmd, axis=1) == 1).all()

    advised = _record_advised(monkeypatch)
    mon, reason, snaps, stats = run_pte([proc.pid], 4.0, clear="madvise", cpu_budget=0.0)
    assert reason == StopReason.REQUESTED
    assert snaps and stats[-1]["clear"] == "madvise"
    assert stats[-1]["huge"] > 0, stats[-1]
    in_thp = [(s, e) for s, e in advised if overlap(s, e, start, start + size)]
    assert in_thp, "the source never advised a sample in the (continuously touched) THP region"
    bad = [(s, e) for s, e in in_thp if s % PMD or e - s != PMD]
    assert not bad, f"ranges in the THP region that are not whole 2 MiB pages: {bad[:5]}"
    assert anon_huge_kb(proc.pid) >= huge_kb
    with mem_fd(proc.pid) as fd:
        res = walk_ok(walker, fd, addrs)
    assert (result_level(res) == 2).all(), "a THP of the region was split"


def kpageflags(pfns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The /proc/kpageflags word of each PFN."""
    out = np.zeros(pfns.size, dtype=np.uint64)
    with open("/proc/kpageflags", "rb", buffering=0) as f:
        for i, pfn in enumerate(pfns.tolist()):
            out[i] = np.frombuffer(os.pread(f.fileno(), 8, pfn * 8), dtype=np.uint64)[0]
    return out


@pytest.mark.parametrize("clear", ["clear_refs", "madvise"])
def test_pte_mapped_thp_is_not_split(walker: PteWalker, spawn: Any, monkeypatch: pytest.MonkeyPatch,
                                     clear: str) -> None:
    """A THP moved by mremap() to an address that is not 2 MiB-aligned loses its PMD mapping (split_huge_pmd)
    but stays one 2 MiB folio, now mapped by 512 PTEs: the walk reads level 1 there. MADV_COLD of a range that
    covers such a folio only in part splits it (madvise_cold_or_pageout_pte_range -> split_folio), so the source
    must advise the whole folio, wherever it lies (docs/pte.md: "a sample in a PTE-mapped large folio [...] by
    advising the whole folio"); clear_refs splits nothing. After a run with either method every page of the
    region is still in the same 2 MiB compound folio as before (khugepaged is kept away: MADV_NOHUGEPAGE)."""
    size = 8 * MiB
    proc, (start, got) = spawn("thp-moved", str(size // MiB))
    assert got == size and start % PMD != 0
    addrs = pages(start, size // PAGE)
    with mem_fd(proc.pid) as fd:
        res = walk_ok(walker, fd, addrs)
    assert bits(res, R_PRESENT).all()
    assert (result_level(res) == 1).all(), np.unique(result_level(res), return_counts=True)
    pfns = (result_phys(res) >> np.uint64(12)).astype(np.int64)
    assert np.array_equal(pfns, (pagemap_range(proc.pid, start, addrs.size) & _PM_PFN).astype(np.int64))
    compound = np.uint64((1 << 15) | (1 << 16))  # KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL
    flags = kpageflags(pfns)
    if not ((flags & compound) != 0).all():
        pytest.fail("the moved region is not (all) in large folios: no THP could be had for an "
                    "madvise(MADV_HUGEPAGE) region (see /sys/kernel/mm/transparent_hugepage/)", pytrace=False)
    heads = pfns[(flags & np.uint64(1 << 15)) != 0]
    assert heads.size == size // PMD and (heads % (PMD // PAGE) == 0).all()

    advised = _record_advised(monkeypatch)

    def covers(snaps: list[Snapshot]) -> list[tuple[float, float]]:
        return [accessed_cover(snap, start, start + size // 2, start, start + size) for snap in snaps[-3:]]

    def settled(snaps: list[Snapshot]) -> bool:
        # at least 5 s of clearing (25 aggregations); then until the adaptive split has cut the hot half from
        # the cold one, which a loaded machine may take longer to do (a region across the boundary reads
        # accessed until a split cuts it)
        return len(snaps) >= 25 and sum(p >= 0.8 and r >= 0.8 for r, p in covers(snaps)) >= 2

    _, reason, snaps, stats = run_pte([proc.pid], 20.0, clear=clear, cpu_budget=0.0, until=settled)
    assert reason == StopReason.REQUESTED and len(snaps) >= 25
    assert stats[-1]["clear"] == clear
    with mem_fd(proc.pid) as fd:
        res = walk_ok(walker, fd, addrs)
    after = (result_phys(res) >> np.uint64(12)).astype(np.int64)
    flags = kpageflags(after)
    split = int(np.count_nonzero((flags & compound) == 0))
    partial = sorted({(s - start, e - s) for s, e in advised
                      if overlap(s, e, start, start + size) and e - s > PAGE})[:4]
    assert split == 0, (f"{split}/{addrs.size} pages of the PTE-mapped THPs are no longer in a large folio after "
                        f"clear={clear}: MADV_COLD split them; advised (offset, length) beyond one page: {partial}, "
                        f"samples advised: {len(advised)}")
    assert np.array_equal(after, pfns), "the region's pages moved"
    # The samples there were cleared, by whatever means (no split is no proof when nothing was cleared): the
    # cold half reads idle in each of the last snapshots, and the touched half is seen.
    cover = covers(snaps)
    # (2 of 3: a region across the hot/cold boundary reads accessed until a split cuts it)
    assert sum(p >= 0.8 for _, p in cover) >= 2, f"cold pages read accessed: (recall, precision) {cover}"
    assert max(r for r, _ in cover) >= 0.8, f"the touched half is not seen: (recall, precision) {cover}"


# -- the source end to end ---------------------------------------------------------------------------------------


def test_source_finds_hot_anonymous_memory() -> None:
    """DAMON's own check through the pte source, on anonymous memory without swap: the regions with
    nr_accesses > 0 in the toucher's mapping are its hot 8 MiB (recall and precision >= 0.9), and regions in the
    never-touched part read 0."""
    with Toucher(128, 8) as w:
        lo, hi, end = w.addr, w.hot_end, w.addr + w.size

        def settled(snaps: list[Snapshot]) -> bool:
            # 8 s (40 aggregations) at least; on a loaded machine, until 2 of the last 3 are precise (20 s at most)
            return len(snaps) >= 40 and sum(accessed_cover(s, lo, hi, lo, end)[1] >= 0.9 for s in snaps[-3:]) >= 2

        mon, reason, snaps, stats = run_pte([w.pid], 20.0, cpu_budget=0, until=settled)
    assert reason == StopReason.REQUESTED
    assert len(snaps) >= 20
    st = stats[-1]
    assert st["walks"] > 0 and st["accessed"] > 0 and st["read_faults"] == 0, st
    # With the CPUs saturated, precision fell to 0.79 (at recall 1.0) once in ~30 runs: a region across the
    # hot/cold boundary read accessed before the adaptive split cut it. Precision must hold in 2 of the last 3.
    imprecise = []
    for s in snaps[-3:]:
        recall, precision = accessed_cover(s, lo, hi, lo, end)
        seen = [((r.start - lo) >> 10, (r.end - r.start) >> 10, r.nr_accesses) for r in s.targets[0].regions
                if r.nr_accesses and overlap(r.start, r.end, lo, end)]
        why = (f"recall {recall:.2f}, precision {precision:.2f}; accessed regions (offset KiB, size KiB, "
               f"nr_accesses) in the mapping: {seen}; stats {stats[-1]}")
        assert recall >= 0.9, why
        if precision < 0.9:
            imprecise.append(why)
        for r in s.targets[0].regions:
            if hi <= r.start and r.end <= end:
                assert r.nr_accesses == 0, r
    assert len(imprecise) <= 1, imprecise


@pytest.mark.parametrize("clear", ["madvise", "clear_refs"])
def test_source_reads_zero_page_memory_as_idle(spawn: Any, clear: str) -> None:
    """Memory that was only read maps the shared zero page: kernel DAMON never finds it young
    (damon_young_pmd_entry() skips the pages damon_get_folio() does not return: non-LRU ones), so an idle,
    read-once region reads 0 there. The source must agree: none of the idle 64 MiB reads accessed at the end."""
    proc, (start, size) = spawn("read", "64")
    _, reason, snaps, _ = run_pte([proc.pid], 2.0, clear=clear, cpu_budget=0)
    assert reason == StopReason.REQUESTED and len(snaps) >= 5
    for s in snaps[-3:]:
        hot = [((r.start - start) >> 20, (r.end - r.start) >> 20, r.nr_accesses) for r in s.targets[0].regions
               if r.nr_accesses and overlap(r.start, r.end, start, start + size)]
        assert not hot, f"idle zero-page memory read as accessed: (offset MiB, size MiB, nr_accesses) {hot}"


def test_source_follows_exec(spawn: Any) -> None:
    """exec() gives the target a new mm and leaves the pinned one without users: the walk says so, the source
    reopens /proc/<pid>/mem on the new mm, counts the exec, and sees the new program's accesses."""
    proc, _ = spawn("exec", sys.executable, TOUCHER, "64", "8", "-", "1", "-")
    exec_at: list[int] = []
    ready: list[tuple[float, list[str]]] = []

    def read_ready() -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        ready.append((time.monotonic(), line))

    def trigger(n: int) -> bool:
        if n == 5:  # after 1 s of monitoring
            assert proc.stdin is not None
            proc.stdin.write("exec\n")
            proc.stdin.flush()
            exec_at.append(n)
            threading.Thread(target=read_ready, daemon=True).start()
        # go on until the new program has run for 2.5 s (its start, the regions rebuilt from the new maps at
        # the next ops update, and their adaptive split take longer on a loaded machine)
        return bool(ready) and time.monotonic() - ready[0][0] >= 2.5

    mon, reason, snaps, stats = run_pte([proc.pid], 15.0, on_snapshot=trigger, cpu_budget=0)
    assert reason == StopReason.REQUESTED
    assert proc.poll() is None, "the target died"
    assert ready and ready[0][1], "the exec()-ed toucher never said it was ready"
    addr, size = int(ready[0][1][0]), int(ready[0][1][1])
    assert exec_at and stats[4].get("execs", 0) == 0
    assert stats[-1].get("execs", 0) >= 1, stats[-1]
    assert stats[-1]["read_faults"] == 0
    recall, _ = accessed_cover(snaps[-1], addr, addr + 8 * MiB, addr, addr + size)
    seen = [(r.start - addr, r.end - r.start, r.nr_accesses) for r in snaps[-1].targets[0].regions
            if overlap(r.start, r.end, addr, addr + size)]
    assert recall >= 0.5, (f"after exec, only {recall:.0%} of the new hot range is seen accessed; regions "
                           f"(offset, size, nr_accesses) on the new mapping: {seen[:8]}; {len(snaps)} snapshots; "
                           f"stats {stats[-1]}")
    for r in snaps[-1].targets[0].regions:
        if addr + 16 * MiB <= r.start and r.end <= addr + size:
            assert r.nr_accesses == 0, r


def _fd_links() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass
    return out


def test_source_stops_when_target_exits(spawn: Any) -> None:
    """When the only target exits, the run ends by itself (TARGETS_GONE), without an error, and the source
    closes what it opened: the walk program, /proc/<pid>/mem and clear_refs, the pidfd."""
    links_before = _fd_links()
    proc, _ = spawn("exit")
    exit_at: list[float] = []

    def trigger(n: int) -> None:
        if n == 5:  # after 1 s of monitoring
            assert proc.stdin is not None
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            exit_at.append(time.monotonic())

    mon, reason, snaps, stats = run_pte([proc.pid], 15.0, on_snapshot=trigger, cpu_budget=0)
    assert reason == StopReason.TARGETS_GONE
    assert exit_at, "the run ended before the target was told to exit"
    took = time.monotonic() - exit_at[0]
    assert took < 3, f"the run went on {took:.1f} s after the target was told to exit"
    assert proc.wait(timeout=5) == 0
    assert len(snaps) >= 5 and stats[0]["walks"] > 0
    assert mon.ctx is not None and mon.ctx.ops is not None
    assert mon.ctx.ops.walker is None  # type: ignore[attr-defined]
    assert mon.source_stats() == {}
    links = _fd_links()
    assert not [x for x in links if x.startswith(f"/proc/{proc.pid}/")], links
    for kind in ("anon_inode:[pidfd]", "anon_inode:bpf-prog", "anon_inode:bpf-map"):
        assert links.count(kind) <= links_before.count(kind), (kind, links)


def test_source_stops_when_target_exits_with_large_mm(spawn: Any, caplog: pytest.LogCaptureFixture) -> None:
    """exit() drops the last mm user in exit_mm() and tears the address space down (exit_mmap(): ~60 ms per
    256 MiB here) before exit_notify() makes the exit visible on the pidfd. All that time the walk reads
    mm_users == 0 while the process still looks alive, and /proc/<pid>/mem can no longer be opened (the task
    has no mm: ESRCH). The source must take that for the exit it is, not an exec: the run ends (TARGETS_GONE)
    without an exception and counts no exec."""
    proc, _ = spawn("exit-mm", "768")
    exit_at: list[float] = []

    def trigger(n: int) -> None:
        if n == 5:
            assert proc.stdin is not None
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            exit_at.append(time.monotonic())

    caplog.set_level("INFO", logger="damon_bpf.ops.pte")
    try:
        _, reason, snaps, stats = run_pte([proc.pid], 15.0, on_snapshot=trigger, cpu_budget=0.0)
    except Exception as err:  # noqa: BLE001 (the failure is the point)
        pytest.fail(f"the run raised {err!r} when the target exited", pytrace=True)
    assert reason == StopReason.TARGETS_GONE
    assert exit_at and time.monotonic() - exit_at[0] < 5
    assert proc.wait(timeout=5) == 0
    assert all(s.get("execs", 0) == 0 for s in stats), "an exit was counted as an exec"
    assert not [r.getMessage() for r in caplog.records if "exec" in r.getMessage()]


def test_observation_window_is_a_full_interval_when_clearing_is_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Accessed bits a read sees were cleared by the window's preparation (kdamond_fn(): prepare_access_checks();
    kdamond_usleep(sample_interval); check_accesses()). When clearing is slow (process_madvise(MADV_COLD) costs
    60-80 us per page with the target running in a VM: TLB shootdown IPIs; here made slower than the interval by a
    12 ms delay per call), every read must still come whole sampling intervals after the clear returned, else it
    reads bits cleared a moment ago and hot memory looks idle: each window's first read comes at least one
    sampling interval after its preparation returned, and the hot range is seen."""
    real = pte_clear_mod.process_madvise

    def slow(pidfd: int, ranges: Any, advice: int) -> int:
        time.sleep(0.012)  # the call's cost comes before its last pages are cleared
        return real(pidfd, ranges, advice)

    monkeypatch.setattr(pte_clear_mod, "process_madvise", slow)
    events: list[tuple[str, int]] = []
    real_prepare, real_observe = pte_ops_mod.PteOps.prepare_access_checks, pte_ops_mod.PteOps.observe

    def prepare(self: Any, ctx: Any) -> None:
        real_prepare(self, ctx)
        events.append(("prepared", time.monotonic_ns()))

    def observe(self: Any, ctx: Any, nr_passed: int) -> None:
        events.append((f"read {nr_passed}", time.monotonic_ns()))
        real_observe(self, ctx, nr_passed)

    monkeypatch.setattr(pte_ops_mod.PteOps, "prepare_access_checks", prepare)
    monkeypatch.setattr(pte_ops_mod.PteOps, "observe", observe)
    sample_us = 10_000
    with Toucher(64, 8) as w:
        _, reason, snaps, stats = run_pte([w.pid], 4.0, sample_us=sample_us, clear="madvise", cpu_budget=0.0)
        lo, hi, end = w.addr, w.hot_end, w.addr + w.size
    assert reason == StopReason.REQUESTED and snaps
    gaps = [(b[0], (b[1] - a[1]) / 1e3) for a, b in zip(events, events[1:]) if a[0] == "prepared"]
    assert len(gaps) >= 5, events[:10]
    early = [g for g in gaps if g[1] < sample_us * 0.98]
    assert not early, f"reads less than a sampling interval after the clear returned (read, us): {early[:5]}"
    cover = [accessed_cover(snap, lo, hi, lo, end)[0] for snap in snaps[-4:]]
    assert max(cover) >= 0.9, f"with a slow clear the hot range reads idle: recall of the last snapshots {cover}"
