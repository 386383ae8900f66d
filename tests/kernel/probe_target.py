"""A test target for tests/kernel/test_probe_attrs.py: cold ranges of known kinds between hot pads, so DAMON's
regions settle on the ranges' edges (a region only divides where the access rate changes).

Usage: probe_target.py FILE MIB   lays out, from high to low addresses in one reserved area:
                                    8 MiB hot pad | MIB MiB anonymous, written once | 8 MiB hot pad |
                                    MIB/2 MiB of FILE mapped shared, written once | 8 MiB hot pad |
                                    the next MIB/2 MiB of FILE mapped shared, read once | 8 MiB hot pad
                                  (FILE must be MIB MiB long; pads are anonymous memory written and then
                                  re-read every 5 ms); prints "<anon start> <written start> <read start> <size>"
                                  (size = MIB MiB) and then keeps touching the pads
"""

import ctypes
import mmap
import os
import sys
import time

import numpy as np

PAGE = mmap.PAGESIZE
MiB = 1 << 20
PAD = 8 * MiB
_MAP_FIXED = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)


def _array(addr: int, size: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_uint8 * size).from_address(addr), dtype=np.uint8)


def main() -> None:
    path, mib = sys.argv[1], int(sys.argv[2])
    size = mib * MiB
    half = size // 2
    total = 4 * PAD + 2 * size
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    base = _libc.mmap(None, total, rw, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    lo_pad = base
    read_start = lo_pad + PAD
    pad2 = read_start + half
    written_start = pad2 + PAD
    pad_mid = written_start + half
    anon_start = pad_mid + PAD
    pad_hi = anon_start + size
    fd = os.open(path, os.O_RDWR)
    for addr, off in ((written_start, 0), (read_start, half)):
        got = _libc.mmap(addr, half, rw, mmap.MAP_SHARED | _MAP_FIXED, fd, off)
        assert got == addr, ctypes.get_errno()
    _array(anon_start, size)[::PAGE] = 1
    _array(written_start, half)[::PAGE] = 7
    keep = int(_array(read_start, half)[::PAGE].sum())
    pads = [_array(a, PAD) for a in (lo_pad, pad2, pad_mid, pad_hi)]
    for p in pads:
        p[::PAGE] = 1
    print(anon_start, written_start, read_start, size, flush=True)
    while True:
        for p in pads:
            keep += int(p[::PAGE].sum())
        time.sleep(0.005)


if __name__ == "__main__":
    main()
