#!/usr/bin/env python3
"""Responsive by default (issue #16, goal 1): the default source and intervals, no options, against the bundled
workload's ground truth, as a user would run ``damon-bpf monitor PID``.

- **Snapshots**: the largest gap between two snapshots (goal: at least one every second).
- **hotcold** (1 and 2 threads, 5 runs each, 10 s): hot-set precision and recall over the snapshots of the last
  3 s of each run, by bytes summed over those snapshots (and the worst single snapshot), scored as ``damon-bpf
  compare`` scores (:mod:`damon_bpf.eval.scoring`: the hot set is the regions with ``nr_accesses`` >= 10% of the
  maximum, within the workload's own regions). Goal: >= 0.9 in each run.
- **stairs** (2 threads, 2 s phases): for every phase change, the time from the phase's start to the first
  snapshot whose hot set covers at least half of the new stair (:func:`~damon_bpf.eval.scoring.phase_change_delay`).
  Goal: >= 90% within 1 s.
- **Monitor CPU**: process CPU time over wall time after the first 5 s of each run (the monitor runs in this
  process; the workload in its own).

Usage: bench/responsive.py [--quick] [--runs N] [--stairs-s S] [--json FILE]
Writes bench/results/responsive.json. Needs root (the pte source).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from damon_bpf.eval import scoring as S  # noqa: E402

#: per monitored run, the monitor's CPU share from its first to its fifth second (does the budget hold early?)
EARLY: list[float] = []
PR_GOAL = 0.9
DELAY_GOAL_S = 1.0
SEEN_GOAL = 0.9
GAP_GOAL_S = 1.0


def monitor_default(pid: int, duration_s: float) -> tuple[list[Any], float, float, str]:
    """Monitor *pid* with what ``damon-bpf monitor PID`` runs here by default for *duration_s*; returns the
    snapshots, the CPU share after the first 5 s, the monitor's start (monotonic s) and the source's name."""
    import argparse as ap

    from damon_bpf.cli import monitor as monitor_cli
    from damon_bpf.session.monitor import Monitor

    p = ap.ArgumentParser()
    monitor_cli.add_arguments(p)
    args = p.parse_args([str(pid), "--duration", f"{duration_s}s"])
    spec = monitor_cli.spec_from_args(args)
    snaps: list[Any] = []
    marks: dict[str, float] = {}

    def consumer(snap: Any) -> None:
        snaps.append(snap)
        if "cpu1" not in marks and time.monotonic() - marks["t0"] >= 1.0:
            marks.update(cpu1=time.process_time(), t1=time.monotonic())
        if "cpu5" not in marks and time.monotonic() - marks["t0"] >= 5.0:
            marks.update(cpu5=time.process_time(), t5=time.monotonic())

    with Monitor(spec, [consumer]) as mon:
        marks["t0"] = time.monotonic()
        mon.run()
        t1, c1 = time.monotonic(), time.process_time()
    share = (c1 - marks["cpu5"]) / (t1 - marks["t5"]) if "cpu5" in marks else float("nan")
    early = ((marks["cpu5"] - marks["cpu1"]) / (marks["t5"] - marks["t1"])
             if "cpu5" in marks and "cpu1" in marks else float("nan"))
    EARLY.append(early)
    start = snaps[0].start_time_ns / 1e9 if snaps else marks["t0"]
    return snaps, share, start, spec.source


def max_gap_s(snaps: list[Any], start: float) -> float:
    times = [start] + [s.time_ns / 1e9 for s in snaps]
    return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))


def hotcold_run(threads: int, duration_s: float, last_s: float) -> dict[str, Any]:
    from damon_bpf.workload import phase_at

    with C.BundledWorkload("hotcold", threads) as wl:
        snaps, share, start, source = monitor_default(wl.pid, duration_s)
        wl.stop()
        truth, scope = wl.truth(), wl.scope()
    end = start + duration_s
    hit = det = tru = 0
    worst_p = worst_r = 1.0
    n = 0
    for s in snaps:
        t = s.time_ns / 1e9
        ph = phase_at(truth, t)
        if t < end - last_s or ph is None:
            continue
        detected = S.clip(S.hot_set(s.targets[0], s.max_nr_accesses), scope)
        sc = S.precision_recall(detected, ph.hot_ranges, scope)
        both = S.intersection_bytes(detected, ph.hot_ranges)
        hit += both
        det += S.total_bytes(detected)
        tru += sc.truth_bytes
        worst_r = min(worst_r, sc.recall)
        worst_p = min(worst_p, sc.precision if sc.precision is not None else 0.0)
        n += 1
    last = snaps[-1] if snaps else None
    return {"threads": threads, "source": source, "snapshots": len(snaps), "scored": n,
            "precision": hit / det if det else None, "recall": hit / tru if tru else None,
            "worst_precision": worst_p if n else None, "worst_recall": worst_r if n else None,
            "max_gap_s": round(max_gap_s(snaps, start), 3), "cpu_share_after_5s": share,
            "aggr_ms": last.aggr_interval_us / 1000 if last else None,
            "wss_mib": round(last.targets[0].working_set_bytes / 2**20, 1) if last else None}


def stairs_run(duration_s: float) -> dict[str, Any]:
    with C.BundledWorkload("stairs", 2) as wl:
        snaps, share, start, source = monitor_default(wl.pid, duration_s)
        wl.stop()
        truth, scope = wl.truth(), wl.scope()
    samples = [(s.time_ns / 1e9, S.clip(S.hot_set(s.targets[0], s.max_nr_accesses), scope)) for s in snaps]
    first, last = samples[0][0] if samples else start, samples[-1][0] if samples else start
    changes = [c for c in S.phase_changes(truth.phases) if c.start >= start and c.end <= last]
    delays = S.phase_change_delays(changes, samples, min_recall=0.5)
    seen = [d for d in delays if d is not None and d <= DELAY_GOAL_S]
    return {"source": source, "snapshots": len(snaps), "changes": len(changes),
            "delays_s": [None if d is None else round(d, 3) for d in delays],
            "seen_within_1s": len(seen), "share_within_1s": len(seen) / len(changes) if changes else None,
            "median_delay_s": S.median(delays), "max_gap_s": round(max_gap_s(snaps, start), 3),
            "cpu_share_after_5s": share, "first_snapshot_s": round(first - start, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one hotcold run per thread count, 20 s of stairs")
    ap.add_argument("--runs", type=int, default=5, help="hotcold runs per thread count (default 5)")
    ap.add_argument("--stairs-s", type=float, default=60.0, help="how long stairs runs (default 60 s)")
    ap.add_argument("--json", help="output file (default bench/results/responsive.json)")
    args = ap.parse_args(argv)
    runs, stairs_s = (1, 20.0) if args.quick else (args.runs, args.stairs_s)
    load0 = C.environment()["loadavg"]
    out: dict[str, Any] = {"environment": C.environment(), "hotcold": [], "stairs": None}
    for threads in (1, 2) if runs > 0 else ():
        for i in range(runs):
            print(f"responsive: hotcold, {threads} thread(s), run {i + 1}/{runs} ...", file=sys.stderr, flush=True)
            out["hotcold"].append(hotcold_run(threads, 10.0, 3.0))
    print(f"responsive: stairs, {stairs_s:g} s ...", file=sys.stderr, flush=True)
    out["stairs"] = stairs_run(stairs_s)
    rows = []
    for r in out["hotcold"]:
        ok = C.goal_met(min(r["precision"] or 0, r["recall"] or 0), PR_GOAL, True)
        rows.append([f"hotcold {r['threads']}t", r["source"], C.fmt(r["precision"]), C.fmt(r["recall"]),
                     f"{C.fmt(r['worst_precision'])}/{C.fmt(r['worst_recall'])}", C.fmt(r["max_gap_s"]),
                     f"{r['aggr_ms']:g}", f"{r['wss_mib']:g}", C.fmt(r["cpu_share_after_5s"], "pct"), C.verdict(ok)])
    print("\nhotcold, last 3 s of 10 s runs (precision/recall by bytes over those snapshots; worst snapshot)")
    print(C.table(["case", "source", "precision", "recall", "worst P/R", "max gap s", "aggr ms", "wss MiB",
                   "CPU >5s", "goal"], rows))
    st = out["stairs"]
    print(f"\nstairs ({stairs_s:g} s): {st['seen_within_1s']}/{st['changes']} phase changes seen within 1 s "
          f"({C.fmt(st['share_within_1s'], 'pct')}; goal {SEEN_GOAL:.0%}: "
          f"{C.verdict(C.goal_met(st['share_within_1s'], SEEN_GOAL, True))}), median delay "
          f"{C.fmt(st['median_delay_s'])} s, delays {st['delays_s']}, largest snapshot gap {st['max_gap_s']} s, "
          f"monitor CPU after 5 s {C.fmt(st['cpu_share_after_5s'], 'pct')}")
    out["cpu_share_1_to_5s"] = EARLY
    print(f"monitor CPU from the first to the fifth second, per run: "
          f"{', '.join(C.fmt(x, 'pct') for x in EARLY)}")
    gaps = [r["max_gap_s"] for r in out["hotcold"]] + [st["max_gap_s"]]
    print(f"largest gap between snapshots over all runs: {max(gaps):.3f} s (goal <= {GAP_GOAL_S:g} s)")
    note = C.busy_warning(load0)
    if note:
        print(note)
    path = C.write_results("responsive", out, args.json)
    print(f"\nresults in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("responsive", main))
