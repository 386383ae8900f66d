#!/usr/bin/env python3
"""What data attribute probes (``--probe_filter``, issue #19) cost with the pte source.

1. **Per probe page**: the time to turn one page-table walk result into page attributes
   (``PteProbeEval.page_attrs``: a ``/proc/kpageflags`` read per page) and to count it against 1..4 probes
   (``add_probe_hits``), on real PFNs of this process's own memory.
2. **The monitor's CPU**: a ``pte`` session on ``tests/kernel/probe_target.py`` (64 MiB anonymous, 64 MiB of a
   file, hot pads) at 10 ms / 200 ms, with 0, 1, 2 and 4 probes: process CPU time over wall time.

Needs root. Usage: bench/probes_cost.py [--seconds S] [--pages N]
"""

from __future__ import annotations

import argparse
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from damon_bpf.config.probes import probes_from_options  # noqa: E402
from damon_bpf.engine import Attrs  # noqa: E402
from damon_bpf.engine.probes import add_probe_hits  # noqa: E402
from damon_bpf.ops.probe_attrs import PteProbeEval  # noqa: E402
from damon_bpf.session.monitor import Monitor, MonitorSpec  # noqa: E402

PROBES = [["allow", "anon"], ["allow", "written"], ["allow", "file"], ["allow", "active"]]


def _own_results(n: int) -> np.ndarray:
    # walk results (R_PRESENT | PFN << 12, PTE level) of n pages of this process's anonymous memory
    buf = mmap.mmap(-1, n * 4096)
    a = np.frombuffer(buf, dtype=np.uint8)
    a[::4096] = 1
    start = a.ctypes.data
    with open("/proc/self/pagemap", "rb") as f:
        f.seek((start >> 12) * 8)
        pm = np.frombuffer(f.read(n * 8), dtype=np.uint64)
    pfn = pm & np.uint64((1 << 55) - 1)
    return (pfn << np.uint64(12)) | np.uint64(1) | np.uint64(1 << 4)


def per_page(n: int) -> list[tuple[str, float]]:
    res = _own_results(n)
    region = np.arange(n, dtype=np.int64) % 64
    out = []
    warm = probes_from_options(PROBES[:1], [1])
    ev0 = PteProbeEval(warm)
    add_probe_hits(np.zeros((64, 4), np.int64), warm, region[:64], ev0.page_attrs(res[:64]), 20)  # warm-up
    ev0.close()
    for k in (1, 2, 4):
        probes = probes_from_options(PROBES[:k], [1] * k)
        ev = PteProbeEval(probes)
        t0 = time.perf_counter_ns()
        pa = ev.page_attrs(res)
        t1 = time.perf_counter_ns()
        hits = np.zeros((64, 4), np.int64)
        rng = np.random.default_rng(1)
        t1 = time.perf_counter_ns()
        add_probe_hits(hits, probes, region, pa, 20, rng=rng)
        t2 = time.perf_counter_ns()
        ev.close()
        if k == 1:
            out.append(("page attributes (kpageflags read), ns/page", (t1 - t0) / n))
        out.append((f"counting against {k} probe(s), ns/page", (t2 - t1) / n))
    return out


def monitor_cpu(seconds: float) -> list[tuple[int, float, int]]:
    path = f"/var/tmp/damon-bpf-probes-cost-{os.getpid()}"
    with open(path, "wb") as f:
        f.write(os.urandom(64 << 20))
    tgt = subprocess.Popen([sys.executable, str(ROOT / "tests/kernel/probe_target.py"), path, "64"],
                           stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        assert tgt.stdout is not None and tgt.stdout.readline()
        for k in (0, 1, 2, 4):
            spec = MonitorSpec(pids=[tgt.pid], source="pte", duration_s=seconds + 2, seed=1,
                               attrs=Attrs(sample_interval_us=10_000, aggr_interval_us=200_000,
                                           ops_update_interval_us=1_000_000),
                               probes=probes_from_options(PROBES[:k], [1] * k) if k else [])
            marks: list[tuple[float, float, int]] = []
            mon = Monitor(spec, consumers=[lambda s: marks.append((time.monotonic(), time.process_time(),
                                                                   s.nr_regions))])
            try:
                mon.open()
                mon.run()
            finally:
                mon.close()
            # from the 3rd snapshot on (after start-up: BPF compilation, the first full clear)
            (w0, c0, _), (w1, c1, _) = marks[2], marks[-1]
            rows.append((k, (c1 - c0) / (w1 - w0) * 100, int(np.mean([m[2] for m in marks[2:]]))))
    finally:
        tgt.kill()
        tgt.wait()
        os.unlink(path)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="monitoring time per probe count (10)")
    ap.add_argument("--pages", type=int, default=16384, help="pages for the per-page figures (16384)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/probes_cost.py needs root (/proc/kpageflags, the pte source)", file=sys.stderr)
        return 2
    for name, ns in per_page(args.pages):
        print(f"{name:48} {ns:8.0f}")
    print(f"{'probes':>6} {'monitor CPU % of a core':>24} {'regions':>8}")
    for k, cpu, nreg in monitor_cpu(args.seconds):
        print(f"{k:>6} {cpu:24.2f} {nreg:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
