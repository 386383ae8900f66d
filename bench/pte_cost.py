#!/usr/bin/env python3
"""What one sampling interval of the ``pte`` source costs, against the number of regions and the target's RSS.

A target (``tests/kernel/toucher.py SIZE HOT``: SIZE MiB anonymous, every page resident, the first HOT MiB touched
continuously) is cut evenly into N regions; each repetition draws one random page per region, as
``damon_va_prepare_access_checks()`` does, and times (this thread's CPU, ``time.thread_time_ns``; medians over the
repetitions):

- ``walk``: one :meth:`~damon_bpf.probes.pte.PteWalker.walk` of the N sample pages, per region;
- ``madvise``: ``process_madvise(MADV_COLD)`` of the samples whose Accessed bit is set (what the source clears),
  per cleared page, and the number cleared;
- ``clear_refs``: ``echo 1 > /proc/PID/clear_refs``, in total and per resident page;
- per sampling interval, each method as the source runs it: ``madvise`` = two walks (prepare finds the folio of
  each sample, check reads it) + the clears; ``clear_refs`` = one walk + the write; the cheaper one is what
  ``--pte-clear auto`` settles on; and the sampling interval that keeps it within a 1% CPU budget
  (``cost / 0.01``), and its share of a core at 5 ms sampling.

Usage: bench/pte_cost.py [--quick] [--reps N] [--json FILE]
Writes bench/results/pte_cost.json (or --json FILE). Needs root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common as C  # noqa: E402

from damon_bpf.ops.vaddr import MADV_COLD, process_madvise_ranges  # noqa: E402
from damon_bpf.probes.pte import R_ACCESSED, PagingLayout, PteOffsets, PteWalkConfig, PteWalker  # noqa: E402

BUDGET = 0.01
TOUCHER = str(ROOT / "tests" / "kernel" / "toucher.py")


def _mem_available_mib() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def _cpu_ns(fn: Any) -> tuple[int, Any]:
    t0 = time.thread_time_ns()
    out = fn()
    return time.thread_time_ns() - t0, out


def measure(walker: PteWalker, pid: int, addr: int, size: int, nr_regions: int, reps: int,
            rng: np.random.Generator) -> dict[str, Any]:
    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    refs = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY)
    pidfd = os.pidfd_open(pid)
    rss_pages = int(open(f"/proc/{pid}/statm").read().split()[1])
    sz = size // nr_regions // 4096 * 4096
    starts = addr + np.arange(nr_regions, dtype=np.int64) * sz
    walk, madv, madv_n, refs_ns = [], [], [], []
    try:
        for _ in range(reps):
            samples = (starts + rng.integers(0, sz // 4096, nr_regions) * 4096).astype(np.uint64)
            d, (st, res) = _cpu_ns(lambda: walker.walk(mem, samples))
            walk.append(d)
            acc = samples[(res & np.uint64(R_ACCESSED)) != 0]
            ranges = [(int(a), int(a) + 4096) for a in acc.tolist()]
            d = 0
            for i in range(0, len(ranges), 1024):
                dd, _ = _cpu_ns(lambda: process_madvise_ranges(pidfd, ranges[i:i + 1024], MADV_COLD))
                d += dd
            madv.append(d)
            madv_n.append(len(ranges))
            d, _ = _cpu_ns(lambda: os.write(refs, b"1"))
            refs_ns.append(d)
            time.sleep(0.01)  # let the target touch its hot part again
    finally:
        os.close(mem)
        os.close(refs)
        os.close(pidfd)
    w = float(np.median(walk))
    m = float(np.median(madv))
    n = float(np.median(madv_n))
    r = float(np.median(refs_ns))
    per_madv = 2 * w + m
    per_refs = w + r
    best = min(per_madv, per_refs)
    return {"regions": nr_regions, "rss_mib": rss_pages * 4096 >> 20, "walk_ns_per_region": w / nr_regions,
            "madvise_pages": n, "madvise_us_per_page": (m / n / 1e3) if n else None,
            "clear_refs_us": r / 1e3, "clear_refs_ns_per_page": r / max(1, rss_pages),
            "interval_madvise_us": per_madv / 1e3, "interval_clear_refs_us": per_refs / 1e3,
            "auto": "madvise" if per_madv <= per_refs else "clear_refs", "interval_us": best / 1e3,
            "min_sample_ms_at_1pct": best / BUDGET / 1e6, "share_at_5ms": best / 5e6}


def _row(m: dict[str, Any]) -> list[str]:
    return [str(m["regions"]), str(m["rss_mib"]), C.fmt(m["walk_ns_per_region"], "f0"), C.fmt(m["madvise_pages"], "f0"),
            C.fmt(m["madvise_us_per_page"], "f1"), C.fmt(m["clear_refs_us"], "f0"),
            C.fmt(m["clear_refs_ns_per_page"], "f1"), C.fmt(m["interval_madvise_us"], "f0"),
            C.fmt(m["interval_clear_refs_us"], "f0"), m["auto"], C.fmt(m["min_sample_ms_at_1pct"], "f0"),
            C.fmt(m["share_at_5ms"], "pct")]


HEAD = ["regions", "RSS MiB", "walk ns/reg", "madv pages", "madv us/pg", "refs us", "refs ns/pg", "madv us/int",
        "refs us/int", "auto", "min sample ms @1%", "share @5ms"]


def run_target(size_mib: int, hot_mib: int, regions: list[int], reps: int, walker: PteWalker) -> list[dict[str, Any]]:
    proc = C.spawn([sys.executable, TOUCHER, str(size_mib), str(hot_mib)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        addr, size = int(line[0]), int(line[1])
        time.sleep(0.5)
        rng = np.random.default_rng(1)
        return [measure(walker, proc.pid, addr, size, n, reps, rng) for n in regions]
    finally:
        C.stop_child(proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="regions 10..1000 at 256 MiB; RSS 256 MiB and 1 GiB")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", help="output file (default bench/results/pte_cost.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("pte_cost: needs root", file=sys.stderr)
        return 2
    C.install_signal_handlers()
    base_mib = 256 if args.quick else 1024
    regions = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    sizes = [256, 1024] if args.quick else [256, 1024, 4096, 8192]
    out: dict[str, Any] = {"bench": "pte_cost", "env": C.environment(), "budget": BUDGET}
    notes = []
    try:
        with PteWalker(PteWalkConfig(offsets=PteOffsets.from_btf(), layout=PagingLayout.detect(),
                                     max_slots=16384)) as walker:
            print(f"pte_cost: regions sweep on {base_mib} MiB ...", file=sys.stderr, flush=True)
            by_regions = run_target(base_mib, 64, regions, args.reps, walker)
            by_rss = []
            for s in sizes:
                if s + 1024 > _mem_available_mib():
                    notes.append(f"{s} MiB skipped: MemAvailable {_mem_available_mib()} MiB")
                    continue
                print(f"pte_cost: {s} MiB at 1000 regions ...", file=sys.stderr, flush=True)
                by_rss += run_target(s, 64, [1000], args.reps, walker)
    finally:
        C.kill_children()
    text = ("Cost of one sampling interval of the pte source (this thread's CPU, medians over "
            f"{args.reps} repetitions; target touching 64 MiB continuously)\n\nagainst regions ({base_mib} MiB "
            "resident):\n" + C.table(HEAD, [_row(m) for m in by_regions]) + "\n\nagainst RSS (1000 regions):\n"
            + C.table(HEAD, [_row(m) for m in by_rss]))
    for n in notes:
        text += f"\nnote: {n}"
    print(text)
    out.update(by_regions=by_regions, by_rss=by_rss, notes=notes, table=text)
    if args.json:
        import json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        path = args.json
    else:
        path = C.write_results("pte_cost", out)
    print(f"\npte_cost: results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
