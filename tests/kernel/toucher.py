"""A test target: maps N MiB (file-backed under DIR, or anonymous) and keeps touching the first HOT MiB.

Prints one line ``<start address> <size>`` when ready. Usage: toucher.py SIZE_MIB HOT_MIB [DIR] [THREADS] [churn]
With ``churn``, the hot part of its own memory is dropped (MADV_DONTNEED on itself) before every round of
touches, so the hot pages keep faulting: a continuous page-fault signal without any re-arming by the monitor.
"""

import ctypes
import mmap
import os
import sys
import threading
import time

import numpy as np

size = int(sys.argv[1]) << 20
hot = int(sys.argv[2]) << 20
directory = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
churn = len(sys.argv) > 5 and sys.argv[5] == "churn"
if directory:
    path = os.path.join(directory, f"toucher-{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(fd, size)
    os.unlink(path)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED)
else:
    m = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
a = np.frombuffer(m, dtype=np.uint8)
a[::4096] = 1  # make every page resident
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(addr, size, flush=True)
pages = hot // 4096


def loop() -> None:
    rng = np.random.default_rng()
    while True:
        if churn:
            m.madvise(mmap.MADV_DONTNEED, 0, hot)
        idx = rng.integers(0, pages, 4096) * 4096
        a[idx] += 1
        time.sleep(0.0005)


for _ in range(threads - 1):
    threading.Thread(target=loop, daemon=True).start()
loop()
