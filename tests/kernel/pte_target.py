"""Test targets for tests/kernel/test_pte.py. Each prints one line when ready, then behaves as its mode says.

Usage:
  pte_target.py pages N        maps 3N anonymous pages, unmaps the middle N (a hole), writes every page of the
                               first and last N; prints "<start> <N>"; then sleeps
  pte_target.py thp MIB        maps MIB MiB of anonymous memory at a 2 MiB-aligned address with
                               MADV_HUGEPAGE, writes every page; prints "<start> <size>"; then keeps touching
                               random pages of its first half (a few hundred per millisecond)
  pte_target.py thp-moved MIB  as thp, then mremap()s the region to an address 64 KiB past a 2 MiB boundary:
                               the PMDs cannot move there, so each THP is split into PTEs (split_huge_pmd) but
                               stays one 2 MiB folio, PTE-mapped; MADV_NOHUGEPAGE then keeps khugepaged away;
                               prints "<start> <size>" (the new start); then keeps touching random pages of its
                               first half
  pte_target.py exec CMD..     maps and writes 32 MiB; prints "<start> <size>"; exec()s CMD once it reads a
                               line on its standard input
  pte_target.py exit           maps and writes 32 MiB; prints "<start> <size>"; exits (status 0) once it reads
                               a line on its standard input
  pte_target.py exit-mm MIB    maps and writes MIB MiB; prints "<start> <size>"; once it reads a line on its
                               standard input calls _exit(0) at once, so the kernel tears the whole address
                               space down in exit_mm() (exit_mmap() of MIB MiB) before the exit is visible
  pte_target.py read MIB       maps MIB MiB and only reads every page (each then maps the shared zero page);
                               prints "<start> <size>"; then sleeps
"""

import ctypes
import mmap
import os
import sys
import time

import numpy as np

PAGE = mmap.PAGESIZE
MiB = 1 << 20
PMD = 2 * MiB
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_MADV_HUGEPAGE, _MADV_NOHUGEPAGE = 14, 15

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _mmap(size: int, prot: int = mmap.PROT_READ | mmap.PROT_WRITE) -> int:
    addr = _libc.mmap(None, size, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if addr in (None, _MAP_FAILED):
        raise OSError(ctypes.get_errno(), "mmap")
    return int(addr)


def _array(addr: int, size: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_uint8 * size).from_address(addr), dtype=np.uint8)


def _anon(size: int) -> tuple[mmap.mmap, int, np.ndarray]:
    m = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    a = np.frombuffer(m, dtype=np.uint8)
    a[::PAGE] = 1
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m)), a


def pages(n: int) -> None:
    addr = _mmap(3 * n * PAGE)
    if _libc.munmap(addr + n * PAGE, n * PAGE) != 0:
        raise OSError(ctypes.get_errno(), "munmap")
    for base in (addr, addr + 2 * n * PAGE):
        _array(base, n * PAGE)[::PAGE] = 1
    print(addr, n, flush=True)
    while True:
        time.sleep(3600)


def _touch_forever(a: np.ndarray) -> None:
    rng = np.random.default_rng()
    hot_pages = a.size // PAGE // 2
    while True:
        a[rng.integers(0, hot_pages, 256) * PAGE] += 1
        time.sleep(0.001)


def _thp_region(size: int) -> int:
    raw = _mmap(size + PMD)
    start = raw + (-raw) % PMD
    if _libc.madvise(start, size, _MADV_HUGEPAGE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_HUGEPAGE)")
    _array(start, size)[::PAGE] = 1
    return start


def thp(mib: int) -> None:
    size = mib * MiB
    start = _thp_region(size)
    print(start, size, flush=True)
    _touch_forever(_array(start, size))


def thp_moved(mib: int) -> None:
    size = mib * MiB
    start = _thp_region(size)
    hole = _mmap(size + 2 * PMD, 0)  # PROT_NONE: reserves the destination
    dst = hole + (-hole) % PMD + 16 * PAGE
    got = _libc.mremap(start, size, size, _MREMAP_MAYMOVE | _MREMAP_FIXED, dst)
    if got != dst:
        raise OSError(ctypes.get_errno(), "mremap")
    # no khugepaged collapse of the (now unaligned) region: its folios stay as they are unless split
    if _libc.madvise(dst, size, _MADV_NOHUGEPAGE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_NOHUGEPAGE)")
    print(dst, size, flush=True)
    _touch_forever(_array(dst, size))


def main() -> None:
    mode = sys.argv[1]
    if mode == "pages":
        pages(int(sys.argv[2]))
    elif mode == "thp":
        thp(int(sys.argv[2]))
    elif mode == "thp-moved":
        thp_moved(int(sys.argv[2]))
    elif mode == "exit-mm":
        size = int(sys.argv[2]) * MiB
        addr = _mmap(size)
        _array(addr, size)[::PAGE] = 1
        print(addr, size, flush=True)
        sys.stdin.readline()
        os._exit(0)
    elif mode == "read":
        size = int(sys.argv[2]) * MiB
        addr = _mmap(size)
        a = _array(addr, size)
        assert int(a[::PAGE].sum()) == 0  # read faults: the zero page
        print(addr, size, flush=True)
        while True:
            time.sleep(3600)
    elif mode in ("exec", "exit"):
        m, addr, _ = _anon(32 * MiB)
        print(addr, 32 * MiB, flush=True)
        sys.stdin.readline()
        if mode == "exec":
            argv = sys.argv[2:]
            os.execv(argv[0], argv)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
