"""What the ``pte`` source learns of page frames, beside the walk: ``/proc/kpageflags`` (large folio, LRU, zero
page) and ``/proc/kpagecount`` (mapped more than once), remembered for a few windows; the virtual extent of the
large folio a sample lies in; the ``/sys/kernel/mm/page_idle/bitmap`` words of a set of frames; and whether
anonymous mTHP sizes are enabled. See docs/pte.md ("Clearing" and "What the kernel would not count")."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import DamonBpfError
from damon_bpf.linux.kpage import KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_LRU, KPF_ZERO_PAGE, KPageReader

__all__ = ("PAGE_SZ", "PMD_SZ", "PageFrames", "folio_ranges", "page_idle_words", "anon_mthp_enabled")

PAGE_SZ = 4096
PMD_SZ = 2 << 20
#: What /proc/kpageflags and /proc/kpagecount said of a page frame (part of a large folio, mapped more than once)
#: is believed for this many windows.
FACTS_WINDOWS = 16
_FACTS_MAX = 1 << 16
#: A page found on an LRU list is believed to be there for this many windows (the check is per window and per
#: accessed probe: a /proc/kpageflags read each).
LRU_WINDOWS = 4


class PageFrames:
    """What the page-frame files (:class:`~damon_bpf.linux.kpage.KPageReader`) say of the frames one ``pte``
    operations set finds accessed. Without them (no root, a kernel without ``CONFIG_PROC_PAGE_MONITOR``) every
    page counts as an LRU page that is mapped once and is not part of a large folio."""

    def __init__(self) -> None:
        self.reader: KPageReader | None = None
        self._zero_pfns: set[int] = set()
        self._lru: dict[int, tuple[int, int]] = {}  # pfn -> (window, kpageflags word) of pages found on the LRU
        self._facts: dict[int, tuple[int, bool, bool]] = {}  # pfn -> (window, large folio, mapped more than once)
        #: accessed pages read as not accessed, as the kernel's damon_get_folio() would not return them
        self.nr_zero_page = 0
        self.nr_off_lru = 0

    def open(self, proc_root: str) -> None:
        """Open ``/proc/kpageflags`` and ``/proc/kpagecount`` under *proc_root* (the first alone where the second
        cannot be), or nothing."""
        for count in (True, False):
            try:
                self.reader = KPageReader(proc_root, count=count)
                return
            except DamonBpfError:
                continue

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    @property
    def has_flags(self) -> bool:
        """Whether ``/proc/kpageflags`` can be read."""
        return self.reader is not None

    def read(self, first_pfn: int, n: int) -> npt.NDArray[np.uint64]:
        """The ``/proc/kpageflags`` words of *n* frames from *first_pfn* (fewer at the end of memory; none without
        the file)."""
        return self.reader.flags_range(first_pfn, n) if self.reader is not None else np.zeros(0, np.uint64)

    def page_ok(self, pfns: npt.NDArray[np.int64], window: int,
                check_lru: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.bool_]:
        """Per page found accessed, whether the kernel's vaddr check would take it as an access: it must be one
        ``damon_get_folio()`` returns, an LRU folio (not the zero page, not a folio isolated or still in a
        per-CPU batch). Where *check_lru* is False only the zero page is refused (a probe MADV_COLD cleared this
        window waits off the LRU in a per-CPU batch). *window*: the caller's window count, for the caches."""
        ok = np.ones(pfns.size, bool)
        if self.reader is None or not pfns.size:
            return ok
        lst = pfns.tolist()
        lru_too = check_lru.tolist() if check_lru is not None else [True] * pfns.size
        cache, zero = self._lru, self._zero_pfns
        stale = sorted({pfn for pfn in lst if pfn not in zero
                        and (pfn not in cache or window - cache[pfn][0] > LRU_WINDOWS)})
        fresh: dict[int, int] = {}
        if stale:
            fresh = dict(zip(stale, self.reader.flags(np.array(stale, np.int64)).tolist()))
            for pfn, word in fresh.items():
                cache[pfn] = (window, word)
        for i, pfn in enumerate(lst):
            if pfn in zero:
                ok[i] = False
                self.nr_zero_page += 1
                continue
            hit = cache.get(pfn)
            flags = hit[1] if hit is not None else fresh.get(pfn, 0)
            if flags & KPF_ZERO_PAGE:
                zero.add(pfn)
                ok[i] = False
                self.nr_zero_page += 1
            elif not flags & KPF_LRU and lru_too[i]:
                ok[i] = False
                self.nr_off_lru += 1
                cache.pop(pfn, None)  # off the LRU for a moment, most likely: asked again next time
        if len(cache) > _FACTS_MAX:
            self._lru = {k: v for k, v in cache.items() if window - v[0] <= LRU_WINDOWS}
        return ok

    def facts(self, pfns: npt.NDArray[np.int64], window: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Per page frame, whether it is part of a large folio (``/proc/kpageflags``) and whether it is mapped
        more than once (``/proc/kpagecount``). Remembered for :data:`FACTS_WINDOWS` windows: a page's folio and
        sharing rarely change, and two reads per probe per window add up over many targets."""
        compound = np.zeros(pfns.size, bool)
        shared = np.zeros(pfns.size, bool)
        if self.reader is None or not pfns.size:
            return compound, shared
        lst = pfns.tolist()
        cache = self._facts
        stale = sorted({pfn for pfn in lst if pfn not in cache or window - cache[pfn][0] > FACTS_WINDOWS})
        if stale:
            arr = np.array(stale, np.int64)
            big = (self.reader.flags(arr) & np.uint64(KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL)) != 0
            many = self.reader.map_counts(arr) > 1
            for pfn, b, m in zip(stale, big.tolist(), many.tolist()):
                cache[pfn] = (window, b, m)
        for i, pfn in enumerate(lst):
            _, compound[i], shared[i] = cache[pfn]
        if len(cache) > _FACTS_MAX:
            self._facts = {k: v for k, v in cache.items() if window - v[0] <= FACTS_WINDOWS}
        return compound, shared


def folio_ranges(addrs: npt.NDArray[np.int64], pfns: npt.NDArray[np.int64], read_flags: Any) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The virtual ``(starts, lengths)`` of the folios mapping each sample page, for folios mapped by PTEs.

    :param addrs: page-aligned sample addresses
    :param pfns: their page frame numbers
    :param read_flags: ``read_flags(first_pfn, n) -> array of n /proc/kpageflags words``
    :return: per sample, the folio's first virtual address and length (one page for a small folio); a large
        folio is assumed mapped contiguously at the address its head page implies (mTHP, page-cache folios, and
        a THP that lost its PMD mapping); a folio of more than 512 pages, or one whose head lies before the
        sample's 512-page block, falls back to the sample's 2 MiB-aligned block
    """
    starts = addrs.copy()
    lengths = np.full(addrs.size, PAGE_SZ, dtype=np.int64)
    for i, (a, pfn) in enumerate(zip(addrs.tolist(), pfns.tolist())):
        base = pfn & ~511
        flags = read_flags(base, 513)  # one past the block: a 512-page folio ends exactly at its end
        k = pfn - base
        if k >= flags.size or not flags[k] & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL):
            continue
        head = k
        while head > 0 and not flags[head] & KPF_COMPOUND_HEAD:
            head -= 1
        end = k + 1
        while end < flags.size and flags[end] & KPF_COMPOUND_TAIL and not flags[end] & KPF_COMPOUND_HEAD:
            end += 1
        if not flags[head] & KPF_COMPOUND_HEAD or end == flags.size:
            starts[i] = a & ~(PMD_SZ - 1)
            lengths[i] = PMD_SZ
            continue
        starts[i] = a - (k - head) * PAGE_SZ
        lengths[i] = (end - head) * PAGE_SZ
    return starts, lengths


def anon_mthp_enabled(sys_root: str) -> bool:
    """Whether any anonymous mTHP size below the PMD size is enabled (PMD-mapped THPs are seen in the walk
    itself)."""
    base = f"{sys_root}/kernel/mm/transparent_hugepage"
    try:
        top = open(f"{base}/enabled").read()
        names = os.listdir(base)
    except OSError:
        return False
    top_on = "[never]" not in top
    for name in names:
        if not name.startswith("hugepages-") or name == f"hugepages-{PMD_SZ // 1024}kB":
            continue
        try:
            mode = open(f"{base}/{name}/enabled").read()
        except OSError:
            continue
        if "[always]" in mode or "[madvise]" in mode or ("[inherit]" in mode and top_on):
            return True
    return False


def page_idle_words(pfns: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """The ``/sys/kernel/mm/page_idle/bitmap`` words that mark *pfns* idle: ``(word indexes, words)``, each
    index once, in order (``Documentation/admin-guide/mm/idle_page_tracking.rst``: bit ``pfn % 64`` of the
    64-bit word at byte offset ``pfn / 64 * 8``)."""
    p = np.unique(np.asarray(pfns, dtype=np.int64))
    idx = p >> 6
    bits = np.left_shift(np.uint64(1), (p & 63).astype(np.uint64))
    words, inverse = np.unique(idx, return_inverse=True)
    out = np.zeros(words.size, dtype=np.uint64)
    np.bitwise_or.at(out, inverse, bits)
    return words, out
