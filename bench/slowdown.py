#!/usr/bin/env python3
"""Target slowdown by fine alternation (issue #16, goal 4): one monitor session, paused and resumed.

On this VM the bundled workload's throughput moves by 20-50% between 10 s windows whether a monitor runs or not
(bench/overhead.py shows it as "noise"), so off/on/off windows of seconds cannot resolve a 2% slowdown. Here one
monitor runs the whole time (its setup, the BPF compile, happens once, before the measurement) and alternates
between working and paused every *period* seconds: a snapshot consumer, in the kdamond's own thread, sleeps
through the off half (no reads, no clears, no engine work: an idle monitor), so on and off halves interleave
finely and slow drifts cancel. Throughput per half comes from the workload's ground truth (touches per phase,
pro rata); the slowdown is ``1 - mean(on) / mean(off)`` over all pairs, with its standard error from the paired
differences (each on half against the mean of the off halves around it).

Monitor CPU is measured over the on halves only (process CPU / wall): the share of a core the monitor takes
while it works.

Usage: bench/slowdown.py [--quick] [--sources pte,pte@5ms] [--period S] [--pairs N] [--json FILE]
Writes bench/results/slowdown.json. Needs root.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

CASES = {
    "pte": (C.SourceCase("pte", "pte", source_intervals=True), 0.02, 0.01),
    "pte@5ms": (C.SourceCase("pte@5ms", "pte", {"cpu_budget": 0.0}), 0.05, 0.05),
}


def run_case(case: C.SourceCase, wl: C.BundledWorkload, period_s: float, pairs: int, warm_s: float) -> dict[str, Any]:
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    spec = case.spec(wl)
    mspec = MonitorSpec(pids=[wl.pid], source=spec.ops_id, source_options=spec.options,
                        attrs=C.make_attrs(case.sample_us, case.aggr_us, 1000, case.autotune, case.source_intervals))
    halves: list[dict[str, Any]] = []
    state: dict[str, Any] = {"phase": "warm", "until": 0.0}
    done = threading.Event()

    def consumer(snap: Any) -> None:
        now = time.monotonic()
        if state["phase"] == "warm":
            if now < state["until"]:
                return
            state.update(phase="on", t0=now, c0=time.process_time())
            return
        if state["phase"] == "on" and now - state["t0"] >= period_s:
            halves.append({"kind": "on", "t0": state["t0"], "t1": now, "cpu_s": time.process_time() - state["c0"]})
            t_off = time.monotonic()
            time.sleep(period_s)  # the monitor pauses here: its own thread sleeps
            halves.append({"kind": "off", "t0": t_off, "t1": time.monotonic()})
            if sum(1 for h in halves if h["kind"] == "on") >= pairs:
                done.set()
                mon.stop()
                return
            state.update(t0=time.monotonic(), c0=time.process_time())

    mon = Monitor(mspec, [consumer])
    with mon:
        state["until"] = time.monotonic() + warm_s
        mon.run()
    return {"source": case.label, "halves": halves, "complete": done.is_set()}


def score(res: dict[str, Any], truth: Any) -> dict[str, Any]:
    hs = res["halves"]
    for h in hs:
        h["tput"] = C.throughput(truth.phases, h["t0"], h["t1"])[0]
    diffs, ons, offs, cpu = [], [], [], []
    for i, h in enumerate(hs):
        if h["kind"] != "on" or h["tput"] is None:
            continue
        around = [x["tput"] for x in (hs[i - 1] if i else None, hs[i + 1] if i + 1 < len(hs) else None)
                  if x is not None and x["kind"] == "off" and x["tput"] is not None]
        if not around:
            continue
        ref = sum(around) / len(around)
        diffs.append(1 - h["tput"] / ref)
        ons.append(h["tput"])
        offs.append(ref)
        cpu.append(h["cpu_s"] / (h["t1"] - h["t0"]))
    n = len(diffs)
    mean = sum(diffs) / n if n else None
    se = (math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 and mean is not None else None)
    return {"source": res["source"], "pairs": n, "slowdown": (1 - sum(ons) / sum(offs)) if n else None,
            "mean_paired": mean, "stderr": se, "monitor_cpu_share": sum(cpu) / n if n else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 pairs of 1 s")
    ap.add_argument("--sources", default="pte,pte@5ms", help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--period", type=float, default=2.0, help="seconds each on and off half lasts (default 2)")
    ap.add_argument("--pairs", type=int, default=40, help="on/off pairs per source (default 40)")
    ap.add_argument("--threads", type=int, default=2, help="workload threads (default 2)")
    ap.add_argument("--json", help="output file (default bench/results/slowdown.json)")
    args = ap.parse_args(argv)
    sources = C.name_list(args.sources)
    C.check_names(ap, sources, CASES, "source")
    period, pairs = (1.0, 10) if args.quick else (args.period, args.pairs)
    load0 = C.environment()["loadavg"]
    rows, out = [], []
    for src in sources:
        case, sd_goal, cpu_goal = CASES[src]
        with C.BundledWorkload("hotcold", args.threads) as wl:
            time.sleep(5.0)  # the workload's first seconds run slower
            print(f"slowdown: {src}: {pairs} pairs of {period:g} s on / {period:g} s off ...", file=sys.stderr,
                  flush=True)
            res = run_case(case, wl, period, pairs, warm_s=5.0)
            wl.stop()
            sc = score(res, wl.truth())
        out.append({**sc, "halves": res["halves"]})
        rows.append([src, sc["pairs"], C.fmt(sc["slowdown"], "pct"), C.fmt(sc["stderr"], "pct"),
                     f"<= {sd_goal:.0%}", C.verdict(C.goal_met(sc["slowdown"], sd_goal, False)),
                     C.fmt(sc["monitor_cpu_share"], "pct2"), f"<= {cpu_goal:.0%}",
                     C.verdict(C.goal_met(sc["monitor_cpu_share"], cpu_goal, False))])
    print(f"hotcold, {args.threads} threads; one monitor per source, {period:g} s on / {period:g} s off, alternating "
          "(slowdown: 1 - sum(on touches/s) / sum(mean of the off halves around each); +- one standard error)")
    print(C.table(["source", "pairs", "slowdown", "+-", "goal", "met", "monitor CPU (on)", "goal", "met"], rows))
    note = C.busy_warning(load0)
    if note:
        print(note)
    path = C.write_results("slowdown", {"environment": C.environment(), "period_s": period, "results": out},
                           args.json)
    print(f"results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("slowdown", main))
