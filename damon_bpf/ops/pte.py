"""The ``pte`` access source: DAMON's own access check, PTE Accessed bits, from user space.

Mirrors the access check of ``mm/damon/vaddr.c``, a pull source: every sampling interval each region gets one
random sampling address; ``prepare_access_checks`` clears the Accessed bit of the page (or huge page) there and
``check_accesses``, one interval later, reads it back. ``nr_accesses`` is on the kernel's own scale, no estimate,
and resident memory is seen: the source for machines without a PMU, anonymous memory and no swap.

**Reading** (:mod:`damon_bpf.probes.pte`): one BPF program run, attached to nothing (``BPF_PROG_TEST_RUN``),
walks the target's page tables for a batch of addresses, locklessly. **Clearing**: ``process_madvise(MADV_COLD)``
of each accessed sample page, or ``/proc/<pid>/clear_refs``, chosen per target by their measured cost; large
folios are never split. **Bounded cost**: the sampling interval is kept long enough to stay within
``cpu_budget`` of one core (with auto-tuning intervals, the default, by raising ``min_sample_us``).

**Side effects and lifetime.** Cleared bits (and ``MADV_COLD``'s deactivation, ``clear_refs``'s
``PG_referenced``) give reclaim less information. On the target's exit it ends; on ``exec()`` its files are
reopened on the new mm and its regions rebuilt. See docs/pte.md for the walk, the costs and the safety argument.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import update_regions_access_rate
from damon_bpf.engine.model import Ctx, Target
from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError, TargetGoneError
from damon_bpf.linux.syscalls import MADV_COLD, process_madvise
from damon_bpf.ops.vaddr import VaddrOps, VaddrTargetData

__all__ = ("PteOps", "CLEAR_METHODS", "folio_ranges")

log = logging.getLogger(__name__)

#: Ways to clear Accessed bits (``"auto"`` chooses per target by measured cost).
CLEAR_METHODS = ("auto", "madvise", "clear_refs")

PAGE_SZ = 4096
_PMD_SZ = 2 << 20
_PUD_SZ = 1 << 30
# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
_KPF_COMPOUND_HEAD = 1 << 15
_KPF_COMPOUND_TAIL = 1 << 16
#: Starting estimates (measured on the development VM), replaced by measurements on the target.
_PRIOR_MADVISE_NS = 3_000.0
_PRIOR_CLEAR_REFS_NS_PER_PAGE = 60.0
_EWMA = 0.2
#: Re-measure the method not in use every this many housekeeping rounds (when its estimate is within 4x).
_EXPLORE_EVERY = 16
#: How often costs are re-read, the clear method chosen and the sampling interval floor set.
_HOUSEKEEPING_NS = 1_000_000_000


@dataclass(eq=False)
class _PteTarget:
    # per-target state of the pte source, beside VaddrTargetData
    pid: int
    ti: int
    mem_fd: int = -1
    refs_fd: int = -1
    addrs: npt.NDArray[np.uint64] | None = None  # the sampling addresses of the current interval
    method: str = "madvise"
    madvise_ns: float = _PRIOR_MADVISE_NS  # per present sample
    refs_ns_per_page: float = _PRIOR_CLEAR_REFS_NS_PER_PAGE
    madvise_measured: bool = False
    refs_measured: bool = False
    rss_pages: int = 0
    explore: str | None = None  # a method to try once at the next prepare
    nr_execs: int = 0
    nr_cleared: int = 0
    nr_partial_folios: int = 0  # samples in a large folio mapped only in part: not cleared by madvise
    nr_to_clear: float = 0.0  # samples found accessed per check (EWMA): what madvise has to clear
    dead: bool = False
    anon_mthp: bool = False
    file_starts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    file_ends: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    # (the VMA list they come from, starts, ends): see PteOps._vma_bounds
    vma_bounds: tuple[list[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None

    def close(self) -> None:
        for fd in (self.mem_fd, self.refs_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.mem_fd = self.refs_fd = -1


def folio_ranges(addrs: npt.NDArray[np.int64], pfns: npt.NDArray[np.int64], read_flags: Any) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The virtual ``(starts, lengths)`` of the folios mapping each sample page, for folios mapped by PTEs.

    :param addrs: page-aligned sample addresses
    :param pfns: their page frame numbers
    :param read_flags: ``read_flags(first_pfn, n) -> array of n /proc/kpageflags words``
    :return: per sample, the folio's first virtual address and length (one page for a small folio); a large
        folio is assumed mapped contiguously at the address its head page implies, as mTHP and page-cache
        folios are; folios of more than 512 pages fall back to the sample's 2 MiB-aligned block
    """
    starts = addrs.copy()
    lengths = np.full(addrs.size, PAGE_SZ, dtype=np.int64)
    for i, (a, pfn) in enumerate(zip(addrs.tolist(), pfns.tolist())):
        base = pfn & ~511
        flags = read_flags(base, 512)
        k = pfn - base
        if k >= flags.size or not flags[k] & (_KPF_COMPOUND_HEAD | _KPF_COMPOUND_TAIL):
            continue
        head = k
        while head > 0 and not flags[head] & _KPF_COMPOUND_HEAD:
            head -= 1
        end = k + 1
        while end < flags.size and flags[end] & _KPF_COMPOUND_TAIL and not flags[end] & _KPF_COMPOUND_HEAD:
            end += 1
        if not flags[head] & _KPF_COMPOUND_HEAD or end == flags.size:
            starts[i] = a & ~(_PMD_SZ - 1)
            lengths[i] = _PMD_SZ
            continue
        starts[i] = a - (k - head) * PAGE_SZ
        lengths[i] = (end - head) * PAGE_SZ
    return starts, lengths


def _anon_mthp_enabled(sys_root: str) -> bool:
    # any anonymous mTHP size below the PMD size enabled (PMD-mapped THPs are seen in the walk itself)
    base = f"{sys_root}/kernel/mm/transparent_hugepage"
    try:
        top = open(f"{base}/enabled").read()
        names = os.listdir(base)
    except OSError:
        return False
    top_on = "[never]" not in top
    for name in names:
        if not name.startswith("hugepages-") or name == f"hugepages-{_PMD_SZ // 1024}kB":
            continue
        try:
            mode = open(f"{base}/{name}/enabled").read()
        except OSError:
            continue
        if "[always]" in mode or "[madvise]" in mode or ("[inherit]" in mode and top_on):
            return True
    return False


class PteOps(VaddrOps):
    """The ``pte`` operations set (see the module docstring).

    :param clear: ``"auto"`` (by measured cost), ``"madvise"`` or ``"clear_refs"``
    :param cpu_budget: the share of one core one sampling interval may cost the monitor (0.01: 1%); 0: no bound
    """

    name = "pte"
    batched = False
    needs_root = True

    def __init__(self, *, clear: str = "auto", cpu_budget: float = 0.01, proc_root: str = "/proc",
                 sys_root: str = "/sys", use_pidfd: bool = True) -> None:
        super().__init__(proc_root=proc_root, use_pidfd=use_pidfd, sys_root=sys_root)
        if clear not in CLEAR_METHODS:
            raise InvalidParamsError(f"unknown clear method {clear!r} (known: {', '.join(CLEAR_METHODS)})")
        if not 0 <= cpu_budget <= 1:
            raise InvalidParamsError("the pte source's CPU budget is a share of one core, within 0..1")
        self.clear = clear
        self.cpu_budget = cpu_budget
        self.sys_root = sys_root
        self.walker: Any = None
        self.attach_point = ""
        #: messages for the user about what this source can and cannot see here
        self.notes: list[str] = []
        self._pt: dict[int, _PteTarget] = {}  # by target index
        self._rng = np.random.default_rng()
        self._cpu_mark_ns: int | None = None
        self._cost_ns = 0.0  # monitor thread CPU per sampling interval (EWMA)
        self._walk_ns = 0.0  # walk CPU per region (EWMA)
        self._floor_us = 0
        self._user_min_sample_us: int | None = None
        self._warned_budget = False
        self._updates = 0
        self._housekept_ns = 0
        self._kpageflags_fd = -1

    # -- setup -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        super().check_supported()
        from damon_bpf.probes.pte import PagingLayout, PteOffsets

        if os.geteuid() != 0:
            raise PermissionDeniedError("the pte source loads a BPF program and reads page tables: run as root")
        PagingLayout.detect(self.proc_root)
        PteOffsets.from_btf()
        from damon_bpf.probes._bcc import load_bcc

        load_bcc()

    def init(self, ctx: Ctx) -> None:
        from damon_bpf.probes.pte import PagingLayout, PteOffsets, PteWalkConfig, PteWalker

        self._rng = np.random.default_rng(ctx.rng.getrandbits(64))
        super().init(ctx)
        try:
            layout = PagingLayout.detect(self.proc_root)
            cfg = PteWalkConfig(offsets=PteOffsets.from_btf(), layout=layout)
            self.walker = PteWalker(cfg).open()
            self.attach_point = f"page-table walk, {layout.levels}-level, BPF_PROG_TEST_RUN"
            try:
                self._kpageflags_fd = os.open(f"{self.proc_root}/kpageflags", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._kpageflags_fd = -1
            for ti, t in enumerate(ctx.targets):
                if t.pid is not None:
                    self._open_target(ti, t)
            g = ctx.attrs.intervals_goal
            # the floor is raised on the context's own copy: the caller's Attrs (a reusable spec) stay as given
            ctx.attrs.intervals_goal = dataclasses.replace(g)
            self._user_min_sample_us = g.min_sample_us if g.aggrs else None
        except BaseException:
            self.cleanup(ctx)
            raise

    def _open_target(self, ti: int, t: Target) -> _PteTarget:
        assert t.pid is not None
        pt = self._pt.get(ti) or _PteTarget(pid=t.pid, ti=ti)
        pt.close()
        try:
            pt.mem_fd = os.open(f"{self.proc_root}/{t.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            pt.refs_fd = os.open(f"{self.proc_root}/{t.pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError) as err:  # gone, or a zombie without an mm (ESRCH)
            pt.close()
            raise TargetGoneError(t.pid) from err
        except PermissionError as err:
            pt.close()
            raise PermissionDeniedError(
                f"cannot open /proc/{t.pid}/{'mem' if pt.mem_fd < 0 else 'clear_refs'}: {err.strerror}"
                " (ptrace access is needed: root, and kernel.yama.ptrace_scope below 3)") from err
        pt.method = "madvise" if self.clear == "auto" else self.clear
        pt.anon_mthp = _anon_mthp_enabled(self.sys_root)
        pt.addrs = None
        pt.dead = False
        # measure the other method at once, so the cost model has both figures after two samples
        pt.explore = "clear_refs" if self.clear == "auto" else None
        self._pt[ti] = pt
        self._refresh_target(t, pt)
        return pt

    def _refresh_target(self, t: Target, pt: _PteTarget) -> None:
        # resident pages (the clear_refs cost) and the file-backed mappings (where large folios are looked up)
        try:
            with open(f"{self.proc_root}/{pt.pid}/statm") as f:
                pt.rss_pages = int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
        data = t.ops_data
        vmas = data.vmas if isinstance(data, VaddrTargetData) else []
        files = [(v.start, v.end) for v in vmas if v.inode != 0]
        arr = np.array(files, dtype=np.int64).reshape(-1, 2)
        pt.file_starts, pt.file_ends = arr[:, 0].copy(), arr[:, 1].copy()

    def add_target(self, ctx: Ctx, pid: int) -> Target:
        """Monitor one more process (``--follow-children``)."""
        t = super().add_target(ctx, pid)
        self._open_target(len(ctx.targets) - 1, t)
        return t

    def cleanup(self, ctx: Ctx) -> None:
        try:
            for pt in self._pt.values():
                pt.close()
            self._pt.clear()
            if self._kpageflags_fd >= 0:
                os.close(self._kpageflags_fd)
                self._kpageflags_fd = -1
            if self.walker is not None:
                self.walker.close()
                self.walker = None
        finally:
            super().cleanup(ctx)

    # -- the sampling interval -------------------------------------------------------------------------

    def _sample_addrs(self, t: Target) -> npt.NDArray[np.uint64]:
        # damon_va_prepare_access_checks(): one uniformly random page of each region (damon_rand())
        ra = t.ra
        pages = np.maximum((ra.end - ra.start) // PAGE_SZ, 1)
        off = (self._rng.random(len(ra)) * pages).astype(np.int64)
        out: npt.NDArray[np.uint64] = (ra.start + off * PAGE_SZ).astype(np.uint64)
        return out

    def prepare_access_checks(self, ctx: Ctx) -> None:
        now = time.thread_time_ns()
        if self._cpu_mark_ns is not None:
            # everything this thread did since the last prepare: one sampling interval of the monitor
            d = now - self._cpu_mark_ns
            self._cost_ns = d if self._cost_ns == 0 else (1 - _EWMA) * self._cost_ns + _EWMA * d
        self._cpu_mark_ns = now
        wall = time.monotonic_ns()
        if wall - self._housekept_ns >= _HOUSEKEEPING_NS:
            # On a wall clock, not at ops updates: while intervals auto-tuning changes the intervals,
            # damon_set_attrs() re-bases next_ops_update_sis each time and ops updates can be far apart.
            self._housekept_ns = wall
            self._housekeeping(ctx)
        for ti, t in enumerate(ctx.targets):
            pt = self._pt.get(ti)
            if pt is None or pt.dead or not len(t.ra) or not self.target_valid(t):
                continue
            addrs = self._sample_addrs(t)
            method = pt.explore or pt.method
            pt.explore = None
            if method == "clear_refs":
                self._clear_refs(pt)
            else:
                self._clear_madvise(t, pt, addrs)
            pt.addrs = addrs

    def _clear_refs(self, pt: _PteTarget) -> None:
        t0 = time.thread_time_ns()
        try:
            os.write(pt.refs_fd, b"1")
        except OSError as err:
            if err.errno == errno.ESRCH:
                pt.dead = True
                return
            raise NotSupportedError(f"writing /proc/{pt.pid}/clear_refs: {err.strerror}") from err
        d = time.thread_time_ns() - t0
        if pt.rss_pages:
            per = d / pt.rss_pages
            pt.refs_ns_per_page = per if not pt.refs_measured else (1 - _EWMA) * pt.refs_ns_per_page + _EWMA * per
            pt.refs_measured = True
        pt.nr_cleared += pt.rss_pages

    def _clear_madvise(self, t: Target, pt: _PteTarget, addrs: npt.NDArray[np.uint64]) -> None:
        data = t.ops_data
        pidfd = data.pidfd if isinstance(data, VaddrTargetData) else None
        if pidfd is None:
            return
        from damon_bpf.probes.pte import R_ACCESSED, R_PRESENT, WalkStatus, result_level, result_phys

        t0 = time.thread_time_ns()
        st, res = self.walker.walk(pt.mem_fd, addrs)
        if st != WalkStatus.OK:
            self._walk_failed(t, pt, st)
            return
        # Only a sample whose Accessed bit is set needs clearing: mkold of an old entry changes nothing. In
        # memory that stays idle most samples are old already, so this costs in proportion to what is used.
        present = (res & np.uint64(R_PRESENT | R_ACCESSED)) == np.uint64(R_PRESENT | R_ACCESSED)
        if not present.any():
            return
        a = addrs[present].astype(np.int64)
        level = result_level(res[present])
        starts = a.copy()
        lengths = np.full(a.size, PAGE_SZ, dtype=np.int64)
        pmd = level == 2
        starts[pmd] = a[pmd] & ~(_PMD_SZ - 1)
        lengths[pmd] = _PMD_SZ
        pud = level == 3
        starts[pud] = a[pud] & ~(_PUD_SZ - 1)
        lengths[pud] = _PUD_SZ
        small = level == 1
        if small.any() and self._kpageflags_fd >= 0:
            # any PTE-mapped sample may lie in a large folio: mTHP, large page-cache folios, and THPs that lost
            # their PMD mapping (mremap() to an unaligned address, a partial munmap()): one kpageflags read each
            pfns = (result_phys(res[present][small]) >> np.uint64(12)).astype(np.int64)
            fs, fl = folio_ranges(a[small], pfns, self._read_kpageflags)
            starts[small], lengths[small] = fs, fl
        # A folio that sticks out of its VMA (mapped only in part) would be advised in part, which splits it:
        # leave such samples uncleared (counted; they read as accessed until cleared by clear_refs)
        vs, ve = self._vma_bounds(pt, data.vmas if isinstance(data, VaddrTargetData) else [])
        if vs.size:
            j = np.maximum(np.searchsorted(vs, starts, side="right") - 1, 0)
            inside = (starts >= vs[j]) & (starts + lengths <= ve[j])
            pt.nr_partial_folios += int(np.count_nonzero(~inside))
            starts, lengths = starts[inside], lengths[inside]
        # one iovec per folio, in address order, without repeats (two samples in one huge page)
        order = np.lexsort((lengths, starts))
        starts, lengths = starts[order], lengths[order]
        keep = np.ones(starts.size, dtype=bool)
        keep[1:] = starts[1:] >= starts[:-1] + lengths[:-1]
        starts, lengths = starts[keep], lengths[keep]
        self._madvise_all(pt, pidfd, starts, lengths)
        d = time.thread_time_ns() - t0
        per = d / max(1, starts.size)
        pt.madvise_ns = per if not pt.madvise_measured else (1 - _EWMA) * pt.madvise_ns + _EWMA * per
        pt.madvise_measured = True
        pt.nr_cleared += int(starts.size)

    def _vma_bounds(self, pt: _PteTarget, vmas: list[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        # the starts and ends of the target's VMAs (not [vsyscall], above 2^63), as arrays: built again only
        # when the VMA list is another one (ops updates replace it), not every sampling interval
        if pt.vma_bounds is None or pt.vma_bounds[0] is not vmas:
            kept = [(v.start, v.end) for v in vmas if v.end < 2**63]
            arr = np.array(kept, dtype=np.int64).reshape(-1, 2)
            pt.vma_bounds = (vmas, arr[:, 0].copy(), arr[:, 1].copy())
        return pt.vma_bounds[1], pt.vma_bounds[2]

    def _read_kpageflags(self, first_pfn: int, n: int) -> npt.NDArray[np.uint64]:
        try:
            buf = os.pread(self._kpageflags_fd, n * 8, first_pfn * 8)
        except OSError:
            return np.zeros(0, dtype=np.uint64)
        return np.frombuffer(buf, dtype=np.uint64)

    def _madvise_all(self, pt: _PteTarget, pidfd: int, starts: npt.NDArray[np.int64],
                     lengths: npt.NDArray[np.int64]) -> None:
        # The kernel stops a vector at the first range it refuses (hugetlb VMAs, a range unmapped since the
        # walk) and returns the bytes of the ranges before it: skip that one and go on with the rest.
        iov = np.column_stack((starts, lengths))  # (start, length) rows: the iovecs
        ends = np.cumsum(lengths)
        i, n = 0, starts.size
        while i < n:
            try:
                done = process_madvise(pidfd, iov[i:], MADV_COLD)
            except TargetGoneError:
                pt.dead = True
                return
            except OSError:
                i += 1
                continue
            before = int(ends[i - 1]) if i else 0
            k = int(np.searchsorted(ends[i:], before + done, side="right"))
            i += k + 1

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        from damon_bpf.probes.pte import R_ACCESSED, WalkStatus

        mx = 0
        for ti, t in enumerate(ctx.targets):
            pt = self._pt.get(ti)
            n = len(t.ra)
            hits = np.zeros(n, dtype=np.int64)
            if pt is not None and not pt.dead and pt.addrs is not None and pt.addrs.size == n and n:
                t0 = time.thread_time_ns()
                st, res = self.walker.walk(pt.mem_fd, pt.addrs)
                d = (time.thread_time_ns() - t0) / n
                self._walk_ns = d if self._walk_ns == 0 else (1 - _EWMA) * self._walk_ns + _EWMA * d
                if st == WalkStatus.OK:
                    hits = ((res & np.uint64(R_ACCESSED)) != 0).astype(np.int64)
                    # about as many samples will need a clear by madvise next time (the cost model)
                    pt.nr_to_clear = (1 - _EWMA) * pt.nr_to_clear + _EWMA * int(hits.sum())
                else:
                    self._walk_failed(t, pt, st)
            if pt is not None:
                pt.addrs = None
            if n:
                mx = max(mx, update_regions_access_rate(t, hits, min(1, nr_samples), ctx.attrs))
        return mx

    def _walk_failed(self, t: Target, pt: _PteTarget, status: int) -> None:
        from damon_bpf.probes.pte import WalkStatus

        if status != WalkStatus.MM_DEAD:
            log.warning("pte: page-table walk of pid %d failed (status %d)", pt.pid, status)
            return
        # The pinned mm has no users: the target exited, or exec()-ed into a new mm.
        if not self.target_valid(t):
            pt.dead = True
            return
        # (the next ops update rebuilds its regions from the new mappings)
        try:
            self._open_target(pt.ti, t)
        except TargetGoneError:
            pt.dead = True
            return
        pt.nr_execs += 1
        log.info("pte: pid %d called exec(); following its new address space", pt.pid)

    # -- ops update: costs, the clear method, the interval floor ----------------------------------------

    def _housekeeping(self, ctx: Ctx) -> None:
        self._updates += 1
        for ti, t in enumerate(ctx.targets):
            pt = self._pt.get(ti)
            if pt is None or pt.dead:
                continue
            self._refresh_target(t, pt)
            if self.clear == "auto":
                self._choose_method(t, pt)
        self._apply_budget(ctx)

    def _choose_method(self, t: Target, pt: _PteTarget) -> None:
        nr = max(1.0, pt.nr_to_clear)
        est_madv = nr * pt.madvise_ns
        est_refs = pt.rss_pages * pt.refs_ns_per_page
        best = "madvise" if est_madv <= est_refs else "clear_refs"
        if best != pt.method:
            log.info("pte: pid %d: clearing with %s (%.0f us) instead of %s (%.0f us)", pt.pid, best,
                     min(est_madv, est_refs) / 1e3, pt.method, max(est_madv, est_refs) / 1e3)
        pt.method = best
        other = "clear_refs" if best == "madvise" else "madvise"
        measured = pt.refs_measured if other == "clear_refs" else pt.madvise_measured
        if not measured or self._updates % _EXPLORE_EVERY == 0:
            if max(est_madv, est_refs) <= 4 * min(est_madv, est_refs) or not measured:
                pt.explore = other

    def _apply_budget(self, ctx: Ctx) -> None:
        if not self.cpu_budget or not self._cost_ns:
            return
        floor_us = int(self._cost_ns / 1e3 / self.cpu_budget)
        g = ctx.attrs.intervals_goal
        if g.aggrs:
            user_min = self._user_min_sample_us or 0
            new_min = min(max(user_min, floor_us), g.max_sample_us)
            self._floor_us = new_min
            g.min_sample_us = new_min
        elif floor_us > ctx.attrs.sample_interval_us and not self._warned_budget:
            self._warned_budget = True
            share = self._cost_ns / 1e3 / ctx.attrs.sample_interval_us
            self.notes.append(
                f"pte: one sampling interval costs the monitor {self._cost_ns / 1e3:.0f} us, {share:.1%} of a core "
                f"at {ctx.attrs.sample_interval_us / 1000:g} ms: use --monitoring_intervals_autotune (bounded "
                f"to {self.cpu_budget:.0%}) or --sample {floor_us // 1000 + 1}ms")
            log.warning("%s", self.notes[-1])

    # -- what the user sees ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Totals for the live view: walks, non-present samples, clear method and cost, monitor share."""
        if self.walker is None:
            return {}
        st = self.walker.stats()
        methods = sorted({pt.method for pt in self._pt.values() if not pt.dead})
        out: dict[str, Any] = {
            "attach": self.attach_point,
            "walks": st["walks"],
            "accessed": st["accessed"],
            "nonpresent": st["nonpresent_pgd"] + st["nonpresent_pud"] + st["nonpresent_pmd"]
            + st["nonpresent_pte"],
            "huge": st["huge"],
            "read_faults": st["read_faults"],
            "clear": ",".join(methods),
            "walk_ns_per_region": round(self._walk_ns, 1),
            "cpu_per_sample_us": round(self._cost_ns / 1e3, 1),
        }
        pts = [pt for pt in self._pt.values() if not pt.dead]
        if pts:
            out["madvise_us_per_page"] = round(sum(p.madvise_ns for p in pts) / len(pts) / 1e3, 2)
            out["clear_refs_ns_per_page"] = round(sum(p.refs_ns_per_page for p in pts) / len(pts), 1)
        if self._floor_us:
            out["min_sample_us"] = self._floor_us
        execs = sum(p.nr_execs for p in self._pt.values())
        if execs:
            out["execs"] = execs
        return out

    def nonpresent_levels(self) -> dict[str, int]:
        """Cumulative walks that stopped at a non-present entry, by level."""
        st = self.walker.stats() if self.walker is not None else {}
        return {k: v for k, v in st.items() if k.startswith("nonpresent_")}

