#!/usr/bin/env python3
"""The monitor's working set against the classic reference (issue #16): is ``working_set_bytes`` within 25%?

**Reference** (:func:`_common.reference_wss`): ``echo 1 > /proc/PID/clear_refs`` (clears the Accessed bits,
PG_young and PG_referenced of every page of the process), wait the window W (default 1 s), then read
``Referenced:`` of ``/proc/PID/smaps_rollup``: the bytes of the process's pages accessed within W, the whole
process (interpreter, libraries, stacks included), as the monitor's ``working_set_bytes`` counts it. The
referenced bytes of the mappings that hold the workload's own ranges (``in ranges``; mapping-granular) and of the
mappings without a file (``anon``) are kept too, for information: ``Referenced`` also counts ``PG_referenced`` of
shared library pages, which other programs starting on the machine set, so single whole-process samples jump.

``clear_refs`` clears the very bits the ``pte`` source reads, so reference and monitor never run at the same
time: on a stationary workload, the reference is taken N times (default 5) **before** the monitored phase and N
times **after** it, and both are reported; the monitored phase itself has no reference.

**Monitor**: one :class:`~damon_bpf.session.monitor.Monitor` of the workload with the defaults
(``MonitorSpec(pids=[pid], source="pte")``, default attrs and source options; ``working_set_window_us`` set to
W where the library has that field), run in this process for ``--duration`` seconds (default 20). Its figure is
the median of ``TargetSnapshot.working_set_bytes`` over the snapshots taken at least 5 s after it started. A
library without that attribute (before issue #16) gets a clearly labelled **fallback** instead: the union of
the regions with ``nr_accesses > 0`` over the snapshots of the last W (and, shown beside it, the same for one
aggregation interval alone, the WSS figure of ``bench/accuracy.py``).

**Workloads** (each stationary once started):

=========== ==================================================================================================
hotcold     the bundled workload, ``python -m damon_bpf.workload --pattern hotcold --threads 2``: 16 MiB hot
            (random read+write), 256 MiB written once then cold: the small hot set
large       ``bench/wss_target.py --size-mib 256 --hot-mib 200``: 200 of 256 MiB anonymous touched at random,
            1 M touches/s (each hot page about 20 times a second)
scattered   ``bench/wss_target.py --size-mib 256 --scattered``: 64 MiB hot, 1 of every 4 pages drawn at random
            over the whole 256 MiB (a key-value store's hot keys), 1 M touches/s
=========== ==================================================================================================

**Goal**: relative error ``(monitor - reference) / reference`` within +-25%, against the median of all reference
samples (before and after).

Usage: bench/wss.py [--quick] [--workloads hotcold,large,scattered] [--window 1.0] [--duration 20]
[--reps 5] [--clear auto|madvise|clear_refs] [--json FILE]
Writes bench/results/wss.json (or --json FILE). Needs root (clear_refs of another process, the BPF source).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

GOAL = 0.25
SKIP_S = 5.0

WORKLOADS: dict[str, dict[str, Any]] = {
    "hotcold": {"kind": "bundled", "hot": "16 MiB of 272 MiB"},
    "large": {"kind": "target", "args": ["--size-mib", "256", "--hot-mib", "200"], "hot": "200 of 256 MiB"},
    "scattered": {"kind": "target", "args": ["--size-mib", "256", "--scattered"],
                  "hot": "64 of 256 MiB, 1 page in 4"},
}


def monitor_phase(pid: int, window_s: float, duration_s: float, clear: str | None) -> dict[str, Any]:
    """One Monitor of *pid* with the defaults for *duration_s*; the recorder's series and the source's stats."""
    from damon_bpf.ops.sources import PteOptions
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    opts: dict[str, Any] = {}
    if clear is not None:
        opts["clear"] = clear
    extra: dict[str, Any] = {}
    if "working_set_window_us" in C.monitor_spec_fields():
        extra["working_set_window_us"] = int(window_s * 1e6)
    # what `damon-bpf monitor --source pte PID...` runs with no interval options: the source's own intervals
    spec = MonitorSpec(attrs=C.make_attrs(source_intervals=True), pids=[pid], source="pte",
                       source_options=PteOptions(**opts), duration_s=duration_s, **extra)
    rec = C.WorkingSetRecorder(window_s)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    with Monitor(spec, consumers=[rec]) as mon:
        rec.monitor = mon
        mon.run()
        stats = rec.stats
        notes = list(getattr(mon.ctx.ops, "notes", []) or []) if mon.ctx is not None else []
    return {"series": rec.series(), "has_attribute": rec.has_attribute, "stats": stats, "notes": notes,
            "wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - cpu0,
            "spec_window_field": bool(extra)}


def summarize_monitor(series: list[dict[str, Any]], skip_s: float) -> dict[str, Any]:
    st = [r for r in series if r["t"] >= skip_s]
    figs = [C.monitor_figure(r["targets"][0]) for r in st if r["targets"]]
    times = [r["t"] for r in series]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {
        "snapshots": len(series), "settled": len(st),
        "figure": "working_set_bytes" if figs and figs[0][1] == "working_set_bytes" else "fallback",
        "median": statistics.median([f for f, _ in figs]) if figs else None,
        "min": min((f for f, _ in figs), default=None), "max": max((f for f, _ in figs), default=None),
        "window_fallback_median": statistics.median([r["targets"][0]["window"] for r in st]) if st else None,
        "aggr_fallback_median": statistics.median([r["targets"][0]["aggr"] for r in st]) if st else None,
        "window_us": next((r["window_us"] for r in st if r["window_us"] is not None), None),
        "nr_regions_median": statistics.median([r["targets"][0]["nr_regions"] for r in st]) if st else None,
        "aggr_us_median": statistics.median([r["aggr_us"] for r in st]) if st else None,
        "max_snapshot_gap_s": max(gaps) if gaps else None,
    }


def run_workload(name: str, window_s: float, duration_s: float, reps: int, clear: str | None,
                 warmup_s: float) -> dict[str, Any]:
    w = WORKLOADS[name]
    print(f"wss: {name}: starting ...", file=sys.stderr, flush=True)
    proc: Any
    if w["kind"] == "bundled":
        proc = C.BundledWorkload("hotcold", 2)
    else:
        proc = C.TargetProc(w["args"])
    with proc:
        pid = proc.pid
        ranges = [tuple(r) for r in proc.scope().tolist()] if w["kind"] == "bundled" else proc.ranges
        time.sleep(warmup_s)
        print(f"wss: {name}: reference x{reps} before (clear_refs, {window_s:g} s) ...", file=sys.stderr, flush=True)
        before = C.reference_series([pid], window_s, reps, {pid: ranges})[pid]
        print(f"wss: {name}: monitor (pte, defaults) {duration_s:g} s ...", file=sys.stderr, flush=True)
        mon = monitor_phase(pid, window_s, duration_s, clear)
        print(f"wss: {name}: reference x{reps} after ...", file=sys.stderr, flush=True)
        after = C.reference_series([pid], window_s, reps, {pid: ranges})[pid]
    allref = before + after
    ref = C.ref_summary(allref)
    m = summarize_monitor(mon["series"], SKIP_S)
    err = C.rel_error(m["median"], ref["median"])
    return {"workload": name, "hot": w["hot"], "pid": pid, "ranges": ranges,
            "reference": ref, "reference_before": C.ref_summary(before), "reference_after": C.ref_summary(after),
            "reference_samples": [vars(s) for s in allref],
            "monitor": m, "rel_error": err, "goal_met": None if err is None else abs(err) <= GOAL,
            "aggr_fallback_rel_error": C.rel_error(m["aggr_fallback_median"], ref["median"]),
            "has_attribute": mon["has_attribute"], "monitor_wall_s": round(mon["wall_s"], 2),
            "monitor_cpu_share": mon["cpu_s"] / mon["wall_s"] if mon["wall_s"] else None,
            "source_stats": mon["stats"], "source_notes": mon["notes"], "series": mon["series"]}


def _mib_range(s: dict[str, Any]) -> str:
    if s["median"] is None:
        return "-"
    return f"{s['median'] / C.MiB:.1f} ({s['min'] / C.MiB:.1f}-{s['max'] / C.MiB:.1f})"


def report(results: list[dict[str, Any]], window_s: float) -> str:
    rows = []
    for r in results:
        m = r["monitor"]
        rows.append([r["workload"], r["hot"], _mib_range(r["reference_before"]), _mib_range(r["reference_after"]),
                     C.fmt(r["reference"]["in_ranges_median"], "mib"), C.fmt(r["reference"]["anon_median"], "mib"),
                     C.fmt(m["median"], "mib") + ("" if m["figure"] == "working_set_bytes" else " *"),
                     C.fmt(m["aggr_fallback_median"], "mib"), C.fmt(r["rel_error"], "pct"), f"+-{GOAL:.0%}",
                     C.verdict(r["goal_met"]), C.fmt(m["nr_regions_median"], "f0"),
                     C.fmt(m["max_snapshot_gap_s"], "f2")])
    lines = [f"Working set (W = {window_s:g} s) of each workload: reference = clear_refs + W + smaps_rollup "
             "Referenced\n(MiB, median (min-max), whole process, before and after the monitored phase); monitor = "
             f"median over its snapshots\nafter the first {SKIP_S:g} s (pte source, defaults); error against the "
             "median of all reference samples",
             C.table(["workload", "hot set", "ref before", "ref after", "in ranges", "anon", "monitor", "aggr only",
                      "error", "goal", "met", "regions", "max gap s"], rows)]
    lines.append("(in ranges: Referenced of the mappings holding the workload's own ranges; anon: of the mappings "
                 "without a file;\nthe whole-process figure also counts PG_referenced of shared library pages, "
                 "which other programs' start-up sets:\nits jumps in single samples)")
    wins = sorted({r["monitor"]["window_us"] for r in results if r["monitor"]["window_us"] is not None})
    if wins:
        lines.append(f"(the monitor's stated window, working_set_window_us: "
                     f"{', '.join(f'{w / 1e6:g} s' for w in wins)})")
    if any(not r["has_attribute"] for r in results):
        lines.append(f"\n* {C.FALLBACK_NOTE}; 'aggr only': the same for one aggregation interval alone")
    notes = sorted({n for r in results for n in r["source_notes"]})
    if notes:
        lines.append("\nsource notes:")
        lines.extend(f"  {n}" for n in notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about a minute: 9 s monitored, 2 references each side")
    ap.add_argument("--workloads", help=f"comma-separated, from {', '.join(WORKLOADS)}")
    ap.add_argument("--window", type=float, default=1.0, help="working-set window W in seconds (default 1)")
    ap.add_argument("--duration", type=float, help="monitored seconds per workload (default 20; quick 9)")
    ap.add_argument("--reps", type=int, help="reference samples before and after (default 5; quick 2)")
    ap.add_argument("--clear", choices=("auto", "madvise", "clear_refs"),
                    help="the pte source's clear method (default: the source's default)")
    ap.add_argument("--json", help="output file (default bench/results/wss.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("wss: needs root (clear_refs of another process, the pte source's BPF program)", file=sys.stderr)
        return 2
    names = C.name_list(args.workloads) if args.workloads else list(WORKLOADS)
    C.check_names(ap, names, WORKLOADS, "workload")
    duration_s = args.duration or (9.0 if args.quick else 20.0)
    reps = args.reps or (2 if args.quick else 5)
    if duration_s <= SKIP_S:
        ap.error(f"--duration must be longer than the {SKIP_S:g} s the monitor is given to settle")
    t0 = time.monotonic()
    load0 = os.getloadavg()
    guard = C.SysctlGuard()
    results = []
    try:
        with guard:
            for n in names:
                results.append(run_workload(n, args.window, duration_s, reps, args.clear,
                                            1.0 if args.quick else 2.0))
    finally:
        C.kill_children()
    text = C.with_busy_note(report(results, args.window), load0)
    print(text)
    out = {"bench": "wss", "mode": "quick" if args.quick else "full",
           "env": {**C.environment(), "loadavg_at_start": load0}, "elapsed_s": round(time.monotonic() - t0, 1),
           "window_s": args.window, "duration_s": duration_s, "reps": reps, "skip_s": SKIP_S, "goal": GOAL,
           "clear": args.clear or "default",
           "figure": "working_set_bytes" if all(r["has_attribute"] for r in results) else "fallback",
           "fallback_note": None if all(r["has_attribute"] for r in results) else C.FALLBACK_NOTE,
           "sysctls_restored_by_bench": guard.restored, "sysctls_left_to_other_sessions": guard.left_to_others,
           "results": results, "table": text}
    path = C.write_results("wss", out, args.json)
    print(f"\nwss: done in {out['elapsed_s']} s; results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("wss", main))
