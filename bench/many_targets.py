#!/usr/bin/env python3
"""One monitor of many processes (issue #16): each one's working set within 25%, and the monitor's CPU.

**Targets**: N processes (``--targets``, default 8; the CPU goal is for 32) of ``bench/wss_target.py --size-mib
256 --hot-mib 16 --sweep-ms 100``: each maps 256 MiB anonymous, writes it all once, then writes one byte of each
page of its first 16 MiB every 100 ms (a numpy strided write, about 10 us), forever. Each one's working set is
16 MiB plus what its interpreter touches (about 4-5 MiB).

**Monitor**: one :class:`~damon_bpf.session.monitor.Monitor` of all N pids with the defaults
(``MonitorSpec(pids=[...], source="pte")``; ``working_set_window_us`` set to W where the library has that field),
run **in this bench process** for ``--duration`` s (default 20). Per target, its figure at the end is the median
of ``TargetSnapshot.working_set_bytes`` over the snapshots of the last 2 s (a library without that attribute:
the labelled fallback of ``bench/wss.py``, the union of the regions with ``nr_accesses > 0`` over the last W),
and its number of regions likewise.

**Monitor CPU**: the CPU time of this process (``time.process_time()``: all its threads; it only runs the
monitor, the bench's snapshot consumer, and idle pipe readers) from its first snapshot at least 5 s after the
start to its last, over the wall time between them: a share of one core. The consumer's own CPU
(``thread_time`` inside it) is subtracted and shown beside it.

**Reference** (as in ``bench/wss.py``): ``clear_refs``, W (default 1 s), ``Referenced:`` of
``/proc/PID/smaps_rollup``, all targets in one window, ``--reps`` times (default 3) before and after the
monitored phase (never during it: ``clear_refs`` clears the bits the ``pte`` source reads).

**Goals**: every target's figure within +-25% of the median of its own reference samples after 20 s (8
targets); the monitor within 1% of a core with 32 targets.

Usage: bench/many_targets.py [--quick] [--targets 8] [--duration 20] [--window 1.0] [--reps 3]
[--clear auto|madvise|clear_refs] [--json FILE]
Writes bench/results/many_targets.json (or --json FILE). Needs root.
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

WS_GOAL = 0.25
CPU_GOAL = 0.01
SKIP_S = 5.0
END_S = 2.0
TARGET_ARGS = ["--size-mib", "256", "--hot-mib", "16", "--sweep-ms", "100"]


def start_targets(n: int) -> list[C.TargetProc]:
    procs = [C.TargetProc(TARGET_ARGS) for _ in range(n)]
    try:
        for p in procs:  # start them all, then wait: their setups overlap
            p.start()
        for p in procs:
            p.wait_ready()
    except BaseException:
        for p in procs:
            p.close()
        raise
    return procs


def monitor_phase(pids: list[int], window_s: float, duration_s: float, clear: str | None) -> dict[str, Any]:
    from damon_bpf.ops.sources import PteOptions
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    opts: dict[str, Any] = {}
    if clear is not None:
        opts["clear"] = clear
    extra: dict[str, Any] = {}
    if "working_set_window_us" in C.monitor_spec_fields():
        extra["working_set_window_us"] = int(window_s * 1e6)
    # what `damon-bpf monitor --source pte PID...` runs with no interval options: the source's own intervals
    spec = MonitorSpec(attrs=C.make_attrs(source_intervals=True), pids=pids, source="pte",
                       source_options=PteOptions(**opts), duration_s=duration_s, **extra)
    rec = C.WorkingSetRecorder(window_s)
    marks: list[tuple[float, float, float]] = []  # (snapshot time since start, process CPU, consumer CPU)

    def mark(snap: Any) -> None:
        marks.append(((snap.time_ns - snap.start_time_ns) / 1e9, time.process_time(), rec.cpu_s))

    rec.on_snapshot = mark
    t_open = time.monotonic()
    with Monitor(spec, consumers=[rec]) as mon:
        setup_s = time.monotonic() - t_open
        rec.monitor = mon
        mon.run()
        stats = rec.stats
        notes = list(getattr(mon.ctx.ops, "notes", []) or []) if mon.ctx is not None else []
    cpu: dict[str, Any] = {"from_s": None, "to_s": None, "share": None, "consumer_share": None,
                           "share_with_consumer": None}
    settled = [m for m in marks if m[0] >= SKIP_S]
    if len(settled) >= 2 and settled[-1][0] > settled[0][0]:
        (ta, pa, ca), (tb, pb, cb) = settled[0], settled[-1]
        wall = tb - ta
        cpu = {"from_s": round(ta, 2), "to_s": round(tb, 2), "share": ((pb - pa) - (cb - ca)) / wall,
               "consumer_share": (cb - ca) / wall, "share_with_consumer": (pb - pa) / wall}
    return {"series": rec.series(), "has_attribute": rec.has_attribute, "stats": stats, "notes": notes,
            "setup_s": round(setup_s, 2), "cpu": cpu, "spec_window_field": bool(extra)}


def per_target(series: list[dict[str, Any]], i: int) -> dict[str, Any]:
    if not series:
        return {"figure": None, "kind": None, "window_fallback": None, "aggr_fallback": None, "nr_regions": None}
    t_end = series[-1]["t"]
    last = [r for r in series if r["t"] >= t_end - END_S and len(r["targets"]) > i]
    figs = [C.monitor_figure(r["targets"][i]) for r in last]
    return {"figure": statistics.median([f for f, _ in figs]) if figs else None,
            "kind": figs[0][1] if figs else None,
            "window_fallback": statistics.median([r["targets"][i]["window"] for r in last]) if last else None,
            "aggr_fallback": statistics.median([r["targets"][i]["aggr"] for r in last]) if last else None,
            "nr_regions": statistics.median([r["targets"][i]["nr_regions"] for r in last]) if last else None}


def run(n: int, window_s: float, duration_s: float, reps: int, clear: str | None) -> dict[str, Any]:
    print(f"many_targets: starting {n} targets (256 MiB each, 16 MiB written every 100 ms) ...", file=sys.stderr,
          flush=True)
    t_start = time.monotonic()
    procs = start_targets(n)
    try:
        ready_s = time.monotonic() - t_start
        pids = [p.pid for p in procs]
        ranges = {p.pid: p.ranges for p in procs}
        time.sleep(1.0)
        print(f"many_targets: reference x{reps} before ...", file=sys.stderr, flush=True)
        before = C.reference_series(pids, window_s, reps, ranges)
        print(f"many_targets: one pte monitor of {n} targets, {duration_s:g} s ...", file=sys.stderr, flush=True)
        mon = monitor_phase(pids, window_s, duration_s, clear)
        print(f"many_targets: reference x{reps} after ...", file=sys.stderr, flush=True)
        after = C.reference_series(pids, window_s, reps, ranges)
    finally:
        for p in procs:
            p.close()
    targets = []
    for i, pid in enumerate(pids):
        ref = C.ref_summary(before[pid] + after[pid])
        pt = per_target(mon["series"], i)
        err = C.rel_error(pt["figure"], ref["median"])
        targets.append({"pid": pid, "reference": ref, "reference_before": C.ref_summary(before[pid]),
                        "reference_after": C.ref_summary(after[pid]), **pt, "rel_error": err,
                        "goal_met": None if err is None else abs(err) <= WS_GOAL,
                        "aggr_fallback_rel_error": C.rel_error(pt["aggr_fallback"], ref["median"])})
    series = mon.pop("series")
    times = [r["t"] for r in series]
    gaps = [b - a for a, b in zip(times, times[1:])]
    met = [t["goal_met"] for t in targets]
    return {"targets_n": n, "targets_ready_s": round(ready_s, 1), "targets": targets,
            "within_goal": sum(1 for m in met if m), "all_within_goal": all(m is True for m in met) if met else None,
            "cpu_goal_met": C.goal_met(mon["cpu"]["share"], CPU_GOAL, False),
            "snapshots": len(series), "max_snapshot_gap_s": max(gaps) if gaps else None,
            "aggr_us_last": series[-1]["aggr_us"] if series else None,
            "sample_us_last": series[-1]["sample_us"] if series else None,
            "total_regions_last": sum(t["nr_regions"] for t in series[-1]["targets"]) if series else None,
            **mon, "series_summary": [{"t": r["t"], "window_us": r["window_us"], "aggr_us": r["aggr_us"],
                                       "sample_us": r["sample_us"], "targets": r["targets"]} for r in series]}


def report(res: dict[str, Any], window_s: float, duration_s: float) -> str:
    rows = []
    for t in res["targets"]:
        ref = t["reference"]
        rng = (f"{ref['median'] / C.MiB:.1f} ({ref['min'] / C.MiB:.1f}-{ref['max'] / C.MiB:.1f})"
               if ref["median"] is not None else "-")
        rows.append([t["pid"], rng, C.fmt(ref["in_ranges_median"], "mib"), C.fmt(ref["anon_median"], "mib"),
                     C.fmt(t["figure"], "mib") + ("" if t["kind"] == "working_set_bytes" else " *"),
                     C.fmt(t["aggr_fallback"], "mib"), C.fmt(t["rel_error"], "pct"), f"+-{WS_GOAL:.0%}",
                     C.verdict(t["goal_met"]), C.fmt(t["nr_regions"], "f0")])
    n = res["targets_n"]
    cpu = res["cpu"]
    lines = [f"{n} targets, one pte monitor (defaults) in this process for {duration_s:g} s; working set W = "
             f"{window_s:g} s\n(reference: clear_refs + W + smaps_rollup Referenced, MiB, median (min-max) before "
             f"and after;\nmonitor: median over its snapshots of the last {END_S:g} s)",
             C.table(["pid", "reference", "in mapping", "anon", "monitor", "aggr only", "error", "goal", "met",
                      "regions"], rows),
             "(in mapping: Referenced of its 256 MiB mapping; anon: of its mappings without a file; the whole-process "
             "figure also\ncounts PG_referenced of shared library pages, which other programs' start-up sets: its "
             "jumps in single samples)",
             "",
             C.table(["targets", "within +-25%", "goal", "met", "monitor CPU", "goal", "met", "consumer CPU",
                      "snapshots", "max gap s", "sample/aggr ms", "regions"],
                     [[n, f"{res['within_goal']}/{n}", "all (8 targets)", C.verdict(res["all_within_goal"]),
                       C.fmt(cpu["share"], "pct2"), "<= 1% (32 targets)", C.verdict(res["cpu_goal_met"]),
                       C.fmt(cpu["consumer_share"], "pct2"), res["snapshots"], C.fmt(res["max_snapshot_gap_s"], "f2"),
                       f"{(res['sample_us_last'] or 0) / 1000:g}/{(res['aggr_us_last'] or 0) / 1000:g}",
                       res["total_regions_last"]]]),
             f"(monitor CPU: process CPU of this bench process, which runs the Monitor, from {cpu['from_s']} s to "
             f"{cpu['to_s']} s of the run, less the consumer's own)"]
    wins = sorted({r["window_us"] for r in res["series_summary"] if r["window_us"] is not None})
    if wins:
        lines.append(f"(the monitor's stated window, working_set_window_us: "
                     f"{', '.join(f'{w / 1e6:g} s' for w in wins)})")
    if not res["has_attribute"]:
        lines.append(f"\n* {C.FALLBACK_NOTE}; 'aggr only': the same for one aggregation interval alone")
    if res["notes"]:
        lines.append("\nsource notes:")
        lines.extend(f"  {x}" for x in res["notes"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 targets, 9 s, 1 reference each side")
    ap.add_argument("--targets", type=int, help="number of target processes (default 8; quick 4)")
    ap.add_argument("--duration", type=float, help="monitored seconds (default 20; quick 9)")
    ap.add_argument("--window", type=float, default=1.0, help="working-set window W in seconds (default 1)")
    ap.add_argument("--reps", type=int, help="reference samples before and after (default 3; quick 1)")
    ap.add_argument("--clear", choices=("auto", "madvise", "clear_refs"),
                    help="the pte source's clear method (default: the source's default)")
    ap.add_argument("--json", help="output file (default bench/results/many_targets.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("many_targets: needs root (clear_refs of other processes, the pte source's BPF program)",
              file=sys.stderr)
        return 2
    n = args.targets or (4 if args.quick else 8)
    duration_s = args.duration or (9.0 if args.quick else 20.0)
    reps = args.reps or (1 if args.quick else 3)
    if n < 1:
        ap.error("--targets must be at least 1")
    if duration_s <= SKIP_S + 1:
        ap.error(f"--duration must be longer than {SKIP_S + 1:g} s")
    t0 = time.monotonic()
    load0 = os.getloadavg()
    guard = C.SysctlGuard()
    try:
        with guard:
            res = run(n, args.window, duration_s, reps, args.clear)
    finally:
        C.kill_children()
    text = C.with_busy_note(report(res, args.window, duration_s), load0)
    print(text)
    out = {"bench": "many_targets", "mode": "quick" if args.quick else "full",
           "env": {**C.environment(), "loadavg_at_start": load0}, "elapsed_s": round(time.monotonic() - t0, 1),
           "window_s": args.window, "duration_s": duration_s, "reps": reps, "skip_s": SKIP_S, "end_s": END_S,
           "goals": {"ws_rel_error": WS_GOAL, "monitor_cpu_share": CPU_GOAL},
           "monitor_runs_in": "the bench process (time.process_time() of it, less the consumer's thread_time)",
           "clear": args.clear or "default", "target": ["bench/wss_target.py", *TARGET_ARGS],
           "figure": "working_set_bytes" if res["has_attribute"] else "fallback",
           "fallback_note": None if res["has_attribute"] else C.FALLBACK_NOTE,
           "sysctls_restored_by_bench": guard.restored, "sysctls_left_to_other_sessions": guard.left_to_others,
           **res, "table": text}
    path = C.write_results("many_targets", out, args.json)
    print(f"\nmany_targets: done in {out['elapsed_s']} s; results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("many_targets", main))
