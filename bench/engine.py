#!/usr/bin/env python3
"""Engine CPU cost per aggregation interval, against the number of regions and the report rate.

The kdamond runs on a fake clock (no sleeping) with a batched push-report backend whose reports are generated
before the timed section; the figure is the process CPU time of ``Kdamond.step()`` (sampling accounting, merge,
age, split, snapshot) per aggregation interval, and the same as a share of one core in real time.

Anchor (kernel DAMON): ~70 GB scanned every 5 ms for ~1% of one CPU. Goal here: 1000 regions, 5 ms / 100 ms,
1e5 reports per second -> under 1% of one core.

Usage: bench/engine.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from damon_bpf.engine import Kdamond  # noqa: E402
from damon_bpf.engine.core import set_regions, update_regions_access_rate  # noqa: E402
from damon_bpf.engine.model import AddrRange, Attrs, Ctx, Target  # noqa: E402
from damon_bpf.engine.ops import BaseOperations  # noqa: E402
from damon_bpf.engine.access_reports import AccessReports, account_reports  # noqa: E402

GiB = 1 << 30
BASE = 0x7F00_0000_0000


class PreparedReports(BaseOperations):
    """Replays pre-generated reports: a hot quarter of the space gets 90% of them."""

    name = "bench"
    batched = True

    def __init__(self, reports_per_s: float, space: int, aggr_us: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.per_aggr = max(1, int(reports_per_s * aggr_us / 1e6))
        n = self.per_aggr * 4
        hot = rng.random(n) < 0.9
        addr = np.where(hot, BASE + rng.integers(0, space // 4, n), BASE + rng.integers(0, space, n))
        self.addr = addr.astype(np.uint64)
        self.frac = rng.random(n)
        self.i = 0

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        if ctx.reports is None:
            ctx.reports = AccessReports()
        n = self.per_aggr * nr_samples // max(ctx.attrs.max_nr_accesses, 1)
        n = max(n, 1)
        j = (self.i % 4) * self.per_aggr
        self.i += 1
        span = nr_samples * ctx.attrs.sample_interval_us * 1000
        times = ctx.window_start_ns + (self.frac[j:j + n] * span).astype(np.int64)
        ctx.reports.report(0, self.addr[j:j + n], times)
        return account_reports(ctx, ctx.window_start_ns, nr_samples)


class PreparedHits(BaseOperations):
    """Delivers per-region counts of sampling intervals with an access, as the BPF programs' in-kernel
    aggregation does (the drain is O(regions), whatever the event rate)."""

    name = "bench-hits"
    batched = True

    def __init__(self, seed: int = 0) -> None:
        self.gen = np.random.default_rng(seed)

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        mx = 0
        for t in ctx.targets:
            n = len(t.ra)
            hits = np.where(self.gen.random(n) < 0.25, nr_samples, 0)
            mx = max(mx, update_regions_access_rate(t, hits, nr_samples, ctx.attrs))
        return mx


class FakeClock:
    def __init__(self) -> None:
        self.now = 10**12

    def clock_ns(self) -> int:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += int(s * 1e9)


def measure(nr_regions: int, reports_per_s: float, sample_us: int = 5000, aggr_us: int = 100_000,
            nr_aggr: int = 30, source: str = "reports") -> dict[str, float | str]:
    space = max(64 * GiB, nr_regions * 4096 * 16)
    ops: BaseOperations = (PreparedReports(reports_per_s, space, aggr_us) if source == "reports"
                           else PreparedHits())
    attrs = Attrs(sample_interval_us=sample_us, aggr_interval_us=aggr_us, min_nr_regions=nr_regions,
                  max_nr_regions=nr_regions)
    ctx = Ctx(attrs=attrs, ops=ops, rng=random.Random(1))
    t = Target()
    set_regions(t, [AddrRange(BASE, BASE + space)], ctx.min_region_sz)
    ctx.targets.append(t)
    nr_seen: list[int] = []
    ctx.after_aggregation.append(lambda s: nr_seen.append(s.nr_regions))
    clk = FakeClock()
    k = Kdamond(ctx, clock_ns=clk.clock_ns, sleep=clk.sleep)
    k.init()
    for _ in range(5):  # warm up: let split/merge settle
        k.step()
    nr_seen.clear()
    c0 = time.process_time()
    steps = 0
    while k.nr_aggregations < 5 + nr_aggr:
        k.step()
        steps += 1
    cpu = time.process_time() - c0
    per_aggr_ms = cpu / nr_aggr * 1e3
    return {
        "source": source,
        "nr_regions_target": nr_regions,
        "nr_regions_mean": float(np.mean(nr_seen)) if nr_seen else 0.0,
        "reports_per_s": reports_per_s,
        "sample_us": sample_us,
        "aggr_us": aggr_us,
        "cpu_ms_per_aggr": per_aggr_ms,
        "core_pct": per_aggr_ms / (aggr_us / 1e3) * 100,
        "steps_per_aggr": steps / nr_aggr,
        "reports_accounted": ctx.reports.stats.nr_accounted if ctx.reports else 0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cells and aggregations")
    ap.add_argument("--json", default="bench/results/engine.json", help="where to write the JSON results")
    args = ap.parse_args()
    regions = [10, 100, 1000, 10000]
    rates = [1e3, 1e4, 1e5, 1e6]
    nr_aggr = 10 if args.quick else 30
    if args.quick:
        regions, rates = [10, 1000, 10000], [1e3, 1e5, 1e6]
    rows = []
    print(f"engine CPU per aggregation interval (5 ms sample, 100 ms aggregation), {platform.python_implementation()}"
          f" {platform.python_version()}, numpy {np.__version__}")
    print("source 'reports': raw access reports pushed as numpy arrays and matched in user space")
    print("source 'hits':    per-region interval-hit counts, as the BPF programs aggregate them in the kernel")
    print(f"{'source':>8} {'regions':>8} {'mean':>7} {'reports/s':>10} {'ms/aggr':>9} {'% core':>7}")
    for n in regions:
        cells = [("reports", r) for r in rates] + [("hits", 0.0)]
        for src, r in cells:
            row = measure(n, r, nr_aggr=nr_aggr, source=src)
            rows.append(row)
            rate = f"{r:.0e}" if src == "reports" else "any"
            print(f"{src:>8} {n:>8} {row['nr_regions_mean']:>7.0f} {rate:>10} {row['cpu_ms_per_aggr']:>9.3f}"
                  f" {row['core_pct']:>6.2f}%")
    for src in ("reports", "hits"):
        goal = next((x for x in rows if x["nr_regions_target"] == 1000 and x["source"] == src
                     and x["reports_per_s"] in (1e5, 0.0)), None)
        if goal:
            verdict = "meets" if float(goal["core_pct"]) < 1.0 else "misses"
            print(f"goal cell (1000 regions, 1e5 reports/s, source {src}): {float(goal['core_pct']):.2f}% of one"
                  f" core ({verdict} < 1%)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
