"""A test target with a known per-thread truth: each worker thread churns its own anonymous range.

Usage: thread_toucher.py MODE SIZE_MIB [THREADS]
- ``threads``: THREADS worker threads (default 2); thread i writes random pages of its own SIZE MiB range.
- ``rw``: one worker thread reads random pages of range 0 and writes random pages of range 1.
Before every round the range is dropped (MADV_DONTNEED on itself), so the touches keep faulting. The ranges lie
in one mapping with an untouched range eight times their size between two of them (address space only), so DAMON
separates them quickly also on a busy machine.
Prints one line per range ``<tid> <start address> <size> <read|write>`` (the worker's thread id), then ``ready``.
"""

import ctypes
import mmap
import sys
import threading
import time

import numpy as np

mode = sys.argv[1]
size = int(sys.argv[2]) << 20
nr = int(sys.argv[3]) if len(sys.argv) > 3 else 2
if mode == "rw":
    nr = 2
step = 9 * size  # a range and the gap after it
whole = mmap.mmap(-1, (nr - 1) * step + size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(whole))
arrays = [np.frombuffer(whole, dtype=np.uint8, count=size, offset=i * step) for i in range(nr)]
addrs = [base + i * step for i in range(nr)]
pages = size // 4096
lock = threading.Lock()
sink = [0]


def churn(i: int, write: bool, rng: np.random.Generator) -> None:
    whole.madvise(mmap.MADV_DONTNEED, i * step, size)
    idx = rng.integers(0, pages, 256) * 4096
    if write:
        arrays[i][idx] = 1
    else:
        sink[0] += int(arrays[i][idx].sum())


def worker(ranges: list[tuple[int, bool]]) -> None:
    tid = threading.get_native_id()
    with lock:
        for i, write in ranges:
            print(tid, addrs[i], size, "write" if write else "read", flush=True)
    rng = np.random.default_rng()
    while True:
        for i, write in ranges:
            churn(i, write, rng)
        time.sleep(0.001)


jobs = [[(0, False), (1, True)]] if mode == "rw" else [[(i, True)] for i in range(nr)]
for job in jobs:
    threading.Thread(target=worker, args=(job,), daemon=True).start()
time.sleep(0.2)
print("ready", flush=True)
while True:
    time.sleep(1)
