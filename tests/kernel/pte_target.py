"""Test targets for tests/kernel/test_pte.py. Each prints one line when ready, then behaves as its mode says.

Usage:
  pte_target.py pages N        maps 3N anonymous pages, unmaps the middle N (a hole), writes every page of the
                               first and last N; prints "<start> <N>"; then sleeps
  pte_target.py thp MIB        maps MIB MiB of anonymous memory at a 2 MiB-aligned address with
                               MADV_HUGEPAGE, writes every page; prints "<start> <size>"; then keeps touching
                               random pages of it (a few hundred per millisecond)
  pte_target.py exec CMD..     maps and writes 32 MiB; prints "<start> <size>"; exec()s CMD once it reads a
                               line on its standard input
  pte_target.py exit           maps and writes 32 MiB; prints "<start> <size>"; exits (status 0) once it reads
                               a line on its standard input
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

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)


def _anon(size: int) -> tuple[mmap.mmap, int, np.ndarray]:
    m = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    a = np.frombuffer(m, dtype=np.uint8)
    a[::PAGE] = 1
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m)), a


def pages(n: int) -> None:
    size = 3 * n * PAGE
    addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    if _libc.munmap(addr + n * PAGE, n * PAGE) != 0:
        raise OSError(ctypes.get_errno(), "munmap")
    for base in (addr, addr + 2 * n * PAGE):
        buf = (ctypes.c_uint8 * (n * PAGE)).from_address(base)
        np.frombuffer(buf, dtype=np.uint8)[::PAGE] = 1
    print(addr, n, flush=True)
    while True:
        time.sleep(3600)


def thp(mib: int) -> None:
    size = mib * MiB
    m = mmap.mmap(-1, size + PMD, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = (-base) % PMD
    m.madvise(mmap.MADV_HUGEPAGE, off, size)
    a = np.frombuffer(m, dtype=np.uint8)[off:off + size]
    a[::PAGE] = 1
    print(base + off, size, flush=True)
    rng = np.random.default_rng()
    pages = size // PAGE
    while True:
        a[rng.integers(0, pages, 256) * PAGE] += 1
        time.sleep(0.001)


def main() -> None:
    mode = sys.argv[1]
    if mode == "pages":
        pages(int(sys.argv[2]))
    elif mode == "thp":
        thp(int(sys.argv[2]))
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
