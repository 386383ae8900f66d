"""ops/pte_frames.PageFrames on this machine's own page frames (/proc/kpageflags, /proc/kpagecount; root): the
zero page is refused as an access and remembered, a written anonymous page is neither shared nor part of a large
folio, a page of the C library's text is mapped more than once, and a THP's pages are part of a large folio. The
frames are found through /proc/self/pagemap, not through the code under test."""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
import pytest

from damon_bpf.linux.kpage import PM_PFN, PM_PRESENT
from damon_bpf.ops.pte_frames import PMD_SZ, PageFrames

PAGE = 4096


def _pfn(addr: int) -> int:
    with open("/proc/self/pagemap", "rb", buffering=0) as f:
        word = int.from_bytes(os.pread(f.fileno(), 8, (addr // PAGE) * 8), "little")
    assert word & PM_PRESENT, hex(addr)
    assert word & PM_PFN, "pagemap hides PFNs: not root?"
    return word & PM_PFN


def _anon(size: int) -> mmap.mmap:
    # private: Python's default is MAP_SHARED, shmem, which never maps the zero page
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _addr(m: mmap.mmap) -> int:
    view = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(view)
    finally:
        del view  # (an exported buffer keeps the map from closing)


@pytest.fixture
def frames() -> PageFrames:
    f = PageFrames()
    f.open("/proc")
    assert f.has_flags, "/proc/kpageflags could not be opened"
    yield f
    f.close()


def test_zero_page_is_no_access_and_written_page_is_own(frames: PageFrames) -> None:
    read_a, read_b, written = _anon(PAGE), _anon(PAGE), _anon(PAGE)
    try:
        assert read_a[0] == 0 and read_b[0] == 0  # read faults map the shared zero page
        written[0] = 1
        za, zb, w = _pfn(_addr(read_a)), _pfn(_addr(read_b)), _pfn(_addr(written))
        assert za == zb != w  # the oracle: two read-only anonymous pages share one frame, the zero page
        ok = frames.page_ok(np.array([za, w], np.int64), 0, check_lru=np.array([False, False]))
        assert ok.tolist() == [False, True]
        assert frames.nr_zero_page == 1
        # remembered: a later window refuses it without asking again, and counts it again
        assert not frames.page_ok(np.array([zb], np.int64), 50)[0] and frames.nr_zero_page == 2
        compound, shared = frames.facts(np.array([w], np.int64), 0)
        assert not compound[0] and not shared[0]
    finally:
        for m in (read_a, read_b, written):
            m.close()


def test_shared_library_page_is_mapped_more_than_once(frames: PageFrames) -> None:
    libc = ctypes.CDLL(None)
    addr = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    assert addr
    libc.getpid()  # the page is present
    pfn = _pfn(addr)
    _, shared = frames.facts(np.array([pfn], np.int64), 0)
    assert shared[0], "a page of libc's text (mapped by every process here) reads as mapped once"


def test_thp_pages_are_part_of_a_large_folio(frames: PageFrames) -> None:
    m = _anon(2 * PMD_SZ)
    try:
        off = -_addr(m) % PMD_SZ
        m.madvise(mmap.MADV_HUGEPAGE, off, PMD_SZ)
        m[off:off + PMD_SZ] = b"\x01" * PMD_SZ
        pfns = np.array([_pfn(_addr(m) + off + k * PAGE) for k in (0, 1, 511)], np.int64)
        if not (pfns[1] == pfns[0] + 1 and pfns[2] == pfns[0] + 511):
            pytest.fail("no THP could be had for an madvise(MADV_HUGEPAGE) range (see "
                        "/sys/kernel/mm/transparent_hugepage/)", pytrace=False)
        compound, shared = frames.facts(pfns, 0)
        assert compound.all() and not shared.any()
        # the folio's frames read in one go: a head, then tails
        words = frames.read(int(pfns[0]), 512)
        assert words.size == 512 and words[0] & (1 << 15) and all(w & (1 << 16) for w in words[1:].tolist())
    finally:
        m.close()
