#!/usr/bin/env python3
"""A stationary memory toucher with a known hot set: the target of ``bench/wss.py``, ``bench/many_targets.py``
and ``bench/refaults.py``.

It maps ``--size-mib`` MiB, writes every page once (anonymous memory) or reads every page once (``--file``:
the file is mapped shared and read only; with ``--cold-random`` its cold part, after the hot part, then gets
``MADV_RANDOM``, so that a fault there reads one page, not a read-around window of cold neighbours), then touches
its hot pages until it is ended (SIGTERM, SIGINT), in one of three ways:

- **random** (default): ``--rate`` touches per second (0: as fast as it can), each at a page drawn uniformly
  from the hot pages. With ``--hot-share S`` < 1 only that share of the touches goes to the hot pages and the
  rest is drawn uniformly from the cold ones (a skewed pattern that gives reclaim a choice).
- **scattered** (``--scattered``): the same, but the hot pages are ``--hot-mib`` worth of pages drawn uniformly
  at random from the whole mapping (the default 1 of every 4 pages, like a key-value store's hot keys), not
  the first ``--hot-mib`` MiB.
- **sweep** (``--sweep-ms P``): every P ms, one write to each hot page (a numpy strided write, about 10 us
  for 16 MiB), then sleep: the lightest possible target with an exact working set.

The hot set of the first two modes starts at the mapping's start. Anonymous pages get one write per touch, file
pages one read. On stdout it prints one line once ready, ``ready <addr> <size> <hot_bytes>``, and with
``--report`` one line per second, ``tick <CLOCK_MONOTONIC s> <touches so far>`` (its own count of accesses).
With ``--cgroup DIR`` it first moves itself into that cgroup (writes its pid to ``DIR/cgroup.procs``), so that
every page it faults in is charged there.

Usage: bench/wss_target.py [--size-mib 256] [--hot-mib 200] [--scattered] [--rate 1000000] [--sweep-ms 100]
[--file PATH] [--hot-share 1.0] [--cold-random] [--cgroup DIR] [--report] [--seed 1]
"""

from __future__ import annotations

import argparse
import mmap
import os
import signal
import sys
import time

import numpy as np

PAGE = 4096
MiB = 1 << 20


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=256, help="mapping size (anonymous; default 256)")
    ap.add_argument("--hot-mib", type=float, default=None,
                    help="hot bytes in MiB (default: 200, or a quarter of the mapping with --scattered)")
    ap.add_argument("--scattered", action="store_true", help="hot pages drawn at random over the whole mapping")
    ap.add_argument("--rate", type=float, default=1_000_000, help="touches per second (0: unpaced)")
    ap.add_argument("--sweep-ms", type=float, default=0.0, help="write each hot page once every this many ms")
    ap.add_argument("--file", help="map this file (shared, read only) instead of anonymous memory")
    ap.add_argument("--hot-share", type=float, default=1.0, help="share of random touches on hot pages")
    ap.add_argument("--cold-random", action="store_true",
                    help="MADV_RANDOM on the cold part of the mapping (after the contiguous hot part)")
    ap.add_argument("--cgroup", help="move into this cgroup directory first")
    ap.add_argument("--report", action="store_true", help="print 'tick <time> <touches>' every second")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.cgroup:
        with open(os.path.join(args.cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    if args.file:
        fd = os.open(args.file, os.O_RDONLY)
        size = os.fstat(fd).st_size // PAGE * PAGE
        mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        os.close(fd)
        arr = np.frombuffer(mm, dtype=np.uint8)
        int(arr[::PAGE].sum())  # fault every page in once
    else:
        size = args.size_mib * MiB
        mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        arr = np.frombuffer(mm, dtype=np.uint8)
        arr[::PAGE] = 1  # write every page once
    nr_pages = size // PAGE
    if args.hot_mib is None:
        hot_bytes = size // 4 if args.scattered else min(size, 200 * MiB)
    else:
        hot_bytes = min(size, int(args.hot_mib * MiB))
    nr_hot = max(1, hot_bytes // PAGE)
    rng = np.random.default_rng(args.seed)
    if args.scattered:
        hot = np.sort(rng.choice(nr_pages, nr_hot, replace=False)).astype(np.int64)
    else:
        hot = np.arange(nr_hot, dtype=np.int64)
    cold: np.ndarray | None = None
    if args.hot_share < 1.0 and nr_hot < nr_pages:
        mask = np.ones(nr_pages, dtype=bool)
        mask[hot] = False
        cold = np.flatnonzero(mask).astype(np.int64)
    if args.cold_random and not args.scattered and nr_hot < nr_pages:
        # a fault in the cold part reads one page, not a read-around window of its cold neighbours; the kernel
        # then also ignores that part's Accessed bits for reclaim (vma_has_recency()), the hot part keeps them
        mm.madvise(mmap.MADV_RANDOM, nr_hot * PAGE, size - nr_hot * PAGE)
    addr = arr.ctypes.data
    print(f"ready {addr} {size} {nr_hot * PAGE}", flush=True)

    touches = 0
    t_report = time.monotonic() + 1.0
    write = not args.file
    sink = 0
    try:
        if args.sweep_ms > 0:
            period = args.sweep_ms / 1000
            contiguous = not args.scattered
            view = arr[:nr_hot * PAGE:PAGE] if contiguous else None
            hot_offs = hot * PAGE
            next_t = time.monotonic()
            while True:
                if view is not None:
                    if write:
                        view += 1
                    else:
                        sink += int(view.sum())
                elif write:
                    arr[hot_offs] += 1
                else:
                    sink += int(arr[hot_offs].sum())
                touches += nr_hot
                now = time.monotonic()
                if args.report and now >= t_report:
                    print(f"tick {now:.3f} {touches}", flush=True)
                    t_report += 1.0
                next_t += period
                if next_t > now:
                    time.sleep(next_t - now)
                else:
                    next_t = now
        # random touches in batches of 10 ms worth (unpaced: 64 Ki at a time)
        batch = max(1, int(args.rate / 100)) if args.rate > 0 else 65536
        t_next = time.monotonic()
        while True:
            if cold is None:
                pages = hot[rng.integers(0, nr_hot, batch)]
            else:
                on_hot = rng.random(batch) < args.hot_share
                n_hot = int(on_hot.sum())
                pages = np.empty(batch, dtype=np.int64)
                pages[:n_hot] = hot[rng.integers(0, nr_hot, n_hot)]
                pages[n_hot:] = cold[rng.integers(0, cold.size, batch - n_hot)]
            offs = pages * PAGE
            if write:
                arr[offs] = touches & 0xFF
            else:
                sink += int(arr[offs].sum())
            touches += batch
            now = time.monotonic()
            if args.report and now >= t_report:
                print(f"tick {now:.3f} {touches}", flush=True)
                t_report = max(t_report + 1.0, now - 0.5)
            if args.rate > 0:
                t_next += batch / args.rate
                if t_next > now:
                    time.sleep(t_next - now)
                elif now - t_next > 1.0:  # fell behind by more than a second: do not try to catch up
                    t_next = now
    except (SystemExit, KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
