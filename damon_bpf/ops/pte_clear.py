"""How the ``pte`` source clears the Accessed bits of the probes it found set, once per window: the kernel's own
mkold through ``/sys/kernel/mm/page_idle/bitmap`` where it exists, else ``process_madvise(MADV_COLD)`` of the
probes (each large folio whole, so that none is split) or ``/proc/PID/clear_refs`` of the whole target, chosen
per target by measured cost (docs/pte.md, "Clearing"). The per-target state lives in :class:`PteTarget`."""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.model import Target
from damon_bpf.errors import NotSupportedError, TargetGoneError
from damon_bpf.linux.syscalls import MADV_COLD, process_madvise
from damon_bpf.ops.pte_frames import PAGE_SZ, PMD_SZ, PageFrames, folio_ranges, page_idle_words
from damon_bpf.ops.vaddr import VaddrTargetData

__all__ = ("PteTarget", "Clearing", "EWMA")

log = logging.getLogger(__name__)

_PUD_SZ = 1 << 30

#: Starting estimates (measured on the development VM), replaced by measurements on the target.
_PRIOR_MADVISE_NS = 5_000.0
_PRIOR_MADVISE_CALL_NS = 60_000.0
_PRIOR_CLEAR_REFS_NS_PER_PAGE = 60.0
_PRIOR_PAGE_IDLE_NS = 1_000.0
#: The weight of a new measurement in the running estimates.
EWMA = 0.2
#: The share of a window's CPU budget madvise may take before clear_refs, when much cheaper, takes over.
_MADVISE_SHARE = 0.3
#: Re-measure the clearing method not in use every this many windows (when its estimate is within 4x).
_EXPLORE_EVERY = 32
#: A target with probes on pages mapped more than once (MADV_COLD cannot clear them) gets a clear_refs at most
#: this often.
_SHARED_REFS_NS = 10_000_000_000


@dataclass(eq=False)
class PteTarget:
    """Per-target state of the pte source, beside ``VaddrTargetData``: its /proc files and how its probes are
    cleared, with what that costs."""

    pid: int
    ti: int
    mem_fd: int = -1
    refs_fd: int = -1
    method: str = "madvise"
    madvise_ns: float = _PRIOR_MADVISE_NS  # per page cleared (for the live view)
    madvise_window_ns: float = _PRIOR_MADVISE_CALL_NS  # per window: the call and its pages, at today's load
    refs_ns_per_page: float = _PRIOR_CLEAR_REFS_NS_PER_PAGE
    idle_ns: float = _PRIOR_PAGE_IDLE_NS  # per page marked idle
    madvise_measured: bool = False
    refs_measured: bool = False
    rss_pages: int = 0
    explore: str | None = None  # a method to try once at the next prepare
    nr_execs: int = 0
    nr_cleared: int = 0
    nr_partial_folios: int = 0  # probes in large folios madvise would split: cleared by clear_refs instead
    nr_to_clear: float = 0.0  # probes found set per window (EWMA): what madvise and page_idle have to clear
    dead: bool = False
    method_used: str = ""  # how the last madvise clear was done in the end (clear_refs for partial folios)
    refs_ns: int = -(1 << 62)  # time.monotonic_ns() of the last clear_refs
    nr_shared: int = 0  # probes madvise could not clear (shared pages), cumulative
    anon_mthp: bool = False
    # (the VMA list they come from, starts, ends): see Clearing._vma_bounds
    vma_bounds: tuple[list[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None

    def close(self) -> None:
        for fd in (self.mem_fd, self.refs_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.mem_fd = self.refs_fd = -1


class Clearing:
    """The clearing methods of one ``pte`` operations set.

    :param frames: the page-frame reader (large folios are found through it)
    """

    def __init__(self, frames: PageFrames) -> None:
        self.frames = frames
        #: /sys/kernel/mm/page_idle/bitmap, open for writing (-1: not available, or not asked for)
        self.idle_fd = -1

    def open_page_idle(self, sys_root: str, required: bool) -> None:
        """Open the page_idle bitmap under *sys_root*; where it cannot be, raise if *required*."""
        try:
            self.idle_fd = os.open(f"{sys_root}/kernel/mm/page_idle/bitmap",
                                   os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as err:
            if required:
                raise NotSupportedError(f"--pte-clear page_idle: {err.strerror}") from err
            self.idle_fd = -1

    def close(self) -> None:
        if self.idle_fd >= 0:
            os.close(self.idle_fd)
        self.idle_fd = -1

    def refs_period_ns(self, targets: Iterable[PteTarget], cpu_budget: float) -> float:
        """How often a target with shared probes gets a clear_refs (*cpu_budget*: the monitor's share of a core;
        0: no bound)."""
        # how often a target with shared probes gets a clear_refs: every _SHARED_REFS_NS at most (clear_refs
        # also clears PG_referenced of every page: reclaim refaults more, bench/refaults.py), and less often
        # where the clear_refs of every live target would take more than a fifth of the budget
        period = float(_SHARED_REFS_NS)
        if cpu_budget > 0:
            total = sum(p.rss_pages * p.refs_ns_per_page for p in targets if not p.dead)
            period = max(period, total / (0.2 * cpu_budget))
        return period

    def clear_refs(self, pt: PteTarget) -> bool:
        """``/proc/PID/clear_refs``: every page of the target (no folio is split); False when it is gone."""
        pt.refs_ns = time.monotonic_ns()
        t0 = time.thread_time_ns()
        try:
            os.write(pt.refs_fd, b"1")
        except OSError as err:
            if err.errno == errno.ESRCH:
                pt.dead = True
                return False
            raise NotSupportedError(f"writing /proc/{pt.pid}/clear_refs: {err.strerror}") from err
        d = time.thread_time_ns() - t0
        if pt.rss_pages:
            per = d / pt.rss_pages
            pt.refs_ns_per_page = per if not pt.refs_measured else (1 - EWMA) * pt.refs_ns_per_page + EWMA * per
            pt.refs_measured = True
        pt.nr_cleared += pt.rss_pages
        return True

    def clear_page_idle(self, pt: PteTarget, res: npt.NDArray[np.uint64]) -> bool:
        """The kernel's own mkold (``page_idle_clear_pte_refs()``: no TLB flush, ``PG_young`` kept), by PFN of the
        walk results *res*; on a failed write, madvise from then on."""
        from damon_bpf.probes.pte import result_phys

        t0 = time.thread_time_ns()
        words, bits = page_idle_words((result_phys(res) >> np.uint64(12)).astype(np.int64))
        try:
            # runs of consecutive words go in one write
            cut = np.flatnonzero(np.diff(words) != 1) + 1
            for w, b in zip(np.split(words, cut), np.split(bits, cut)):
                os.pwrite(self.idle_fd, b.astype("<u8").tobytes(), int(w[0]) * 8)
        except OSError as err:
            log.warning("pte: page_idle write failed (%s): clearing with madvise from now on", err.strerror)
            os.close(self.idle_fd)
            self.idle_fd = -1
            pt.method = "madvise"
            return False
        per = (time.thread_time_ns() - t0) / max(1, res.size)
        pt.idle_ns = (1 - EWMA) * pt.idle_ns + EWMA * per
        pt.nr_cleared += int(res.size)
        return True

    def clear_madvise(self, t: Target, pt: PteTarget, addrs: npt.NDArray[np.uint64],
                      res: npt.NDArray[np.uint64], compound: npt.NDArray[np.bool_]) -> bool:
        """``process_madvise(MADV_COLD)`` of the pages at *addrs* (walk results *res*; *compound*: part of a large
        folio), each large folio whole; a target where that would split a folio gets a clear_refs instead."""
        from damon_bpf.probes.pte import result_level, result_phys

        data = t.ops_data
        pidfd = data.pidfd if isinstance(data, VaddrTargetData) else None
        if pidfd is None:
            return False
        t0 = time.thread_time_ns()
        a = addrs.astype(np.int64)
        level = result_level(res)
        small = level == 1
        if small.all() and not compound.any():
            # the common case: small pages, one iovec each, already in order
            pt.method_used = "madvise"
            starts, lengths = a, np.full(a.size, PAGE_SZ, dtype=np.int64)
        else:
            starts = a.copy()
            lengths = np.full(a.size, PAGE_SZ, dtype=np.int64)
            pmd = level == 2
            starts[pmd] = a[pmd] & ~(PMD_SZ - 1)
            lengths[pmd] = PMD_SZ
            pud = level == 3
            starts[pud] = a[pud] & ~(_PUD_SZ - 1)
            lengths[pud] = _PUD_SZ
            # a PTE-mapped probe in a large folio (mTHP, a large page-cache folio, a THP that lost its PMD
            # mapping: mremap() to an unaligned address, a partial munmap()): advise the whole folio
            big = small & compound
            if big.any() and self.frames.has_flags:
                pfns = (result_phys(res[big]) >> np.uint64(12)).astype(np.int64)
                starts[big], lengths[big] = folio_ranges(a[big], pfns, self.frames.read)
            # MADV_COLD splits a PTE-mapped large folio it covers only in part, and it works one page table at a
            # time (madvise_cold_or_pageout_pte_range()): a folio that sticks out of its VMA or crosses a 2 MiB
            # boundary would be split. Such a target is cleared with clear_refs this window (it splits nothing).
            vs, ve = self._vma_bounds(pt, data.vmas if isinstance(data, VaddrTargetData) else [])
            partial = small & (lengths > PAGE_SZ) & ((starts // PMD_SZ) != ((starts + lengths - 1) // PMD_SZ))
            if vs.size:
                j = np.maximum(np.searchsorted(vs, starts, side="right") - 1, 0)
                partial |= ~((starts >= vs[j]) & (starts + lengths <= ve[j]))
            if partial.any():
                pt.nr_partial_folios += int(np.count_nonzero(partial))
                pt.method_used = "clear_refs"
                return self.clear_refs(pt)
            pt.method_used = "madvise"
            # one iovec per folio, in address order, without repeats (two probes in one huge page)
            order = np.lexsort((lengths, starts))
            starts, lengths = starts[order], lengths[order]
            keep = np.ones(starts.size, dtype=bool)
            keep[1:] = starts[1:] >= starts[:-1] + lengths[:-1]
            starts, lengths = starts[keep], lengths[keep]
        ok = self._madvise_all(pt, pidfd, starts, lengths)
        d = time.thread_time_ns() - t0
        per = d / max(1, starts.size)
        if not pt.madvise_measured:
            pt.madvise_ns, pt.madvise_window_ns = per, float(d)
        else:
            pt.madvise_ns = (1 - EWMA) * pt.madvise_ns + EWMA * per
            pt.madvise_window_ns = (1 - EWMA) * pt.madvise_window_ns + EWMA * d
        pt.madvise_measured = True
        pt.nr_cleared += int(starts.size)
        return ok

    def _vma_bounds(self, pt: PteTarget, vmas: list[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        # the starts and ends of the target's VMAs (not [vsyscall], above 2^63), as arrays: built again only
        # when the VMA list is another one (ops updates replace it), not every window
        if pt.vma_bounds is None or pt.vma_bounds[0] is not vmas:
            kept = [(v.start, v.end) for v in vmas if v.end < 2**63]
            arr = np.array(kept, dtype=np.int64).reshape(-1, 2)
            pt.vma_bounds = (vmas, arr[:, 0].copy(), arr[:, 1].copy())
        return pt.vma_bounds[1], pt.vma_bounds[2]

    def _madvise_all(self, pt: PteTarget, pidfd: int, starts: npt.NDArray[np.int64],
                     lengths: npt.NDArray[np.int64]) -> bool:
        # The kernel stops a vector at the first range it refuses (hugetlb VMAs, a range unmapped since the
        # walk) and returns the bytes of the ranges before it: skip that one and go on with the rest.
        iov = np.column_stack((starts, lengths))  # (start, length) rows: the iovecs
        ends = np.cumsum(lengths)
        i, n, all_ok = 0, starts.size, True
        while i < n:
            try:
                done = process_madvise(pidfd, iov[i:], MADV_COLD)
            except TargetGoneError:
                pt.dead = True
                return False
            except OSError:
                i += 1
                all_ok = False
                continue
            before = int(ends[i - 1]) if i else 0
            k = int(np.searchsorted(ends[i:], before + done, side="right"))
            i += k + 1
        return all_ok

    def choose_method(self, pt: PteTarget, windows: int, aggr_us: int, cpu_budget: float) -> None:
        """Pick *pt*'s method by measured cost (*windows*: windows so far; *aggr_us*: the aggregation interval;
        *cpu_budget*: the monitor's share of a core, 0: no bound)."""
        # page_idle, where the kernel has it, is the kernel's own mkold: kept unless it fails
        if pt.method == "page_idle" and self.idle_fd >= 0:
            return
        est_madv = pt.madvise_window_ns
        est_refs = pt.rss_pages * pt.refs_ns_per_page
        # madvise disturbs reclaim least (bench/refaults.py: +0.4% refaults against +124% for clear_refs, which
        # clears PG_referenced of every page): it stays unless it costs more than 4x clear_refs and more than
        # _MADVISE_SHARE of a window's budget
        window_budget = cpu_budget * aggr_us * 1000
        pricey = est_madv > 4 * est_refs and (not window_budget or est_madv > _MADVISE_SHARE * window_budget)
        best = "clear_refs" if pricey else "madvise"
        if best != pt.method:
            log.info("pte: pid %d: clearing with %s (%.0f us) instead of %s (%.0f us)", pt.pid, best,
                     min(est_madv, est_refs) / 1e3, pt.method, max(est_madv, est_refs) / 1e3)
        pt.method = best
        # clear_refs is measured (once at first, then every _EXPLORE_EVERY windows) only while it could take over
        if best == "madvise" and est_madv > 4 * est_refs and (not pt.refs_measured
                                                              or windows % _EXPLORE_EVERY == 0):
            pt.explore = "clear_refs"
        elif best == "clear_refs" and windows % _EXPLORE_EVERY == 0:
            pt.explore = "madvise"
