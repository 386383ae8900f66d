"""Exporter overhead and scrape latency (issue #11).

1. **Exporter CPU.** Monitor CPU (user + system time of the monitoring process, which also runs the exporter's
   HTTP thread) of a session on the bundled ``hotcold`` workload, pte source from 5 ms / 100 ms with the
   intervals auto-tuned (what ``export --source pte`` does without interval options), without the exporter and
   with it scraped every 15 s and every 1 s. The three cases run interleaved, ``--repeat`` times, so drift of the
   machine's load hits them alike. The medians' differences are noisy on a small machine, so the exporter's own
   work is also timed where it runs (thread CPU of the per-aggregation consumer, and of each scrape's collection
   and text exposition).
2. **Scrape latency.** ``GET /metrics`` wall time (request to last byte) with 1, 10 and 100 targets (small
   sleeping processes; pte source from 50 ms / 1 s, auto-tuned), and the size of the exposition. Only scrapes whose body holds
   every target count.

Usage: ``sudo .venv/bin/python bench/export_overhead.py [--seconds 20] [--repeat 3] [--quick] [--json FILE]``.
Writes ``bench/results/export_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

PY = sys.executable

# One session in a process of its own, so that its CPU time is the monitor's (and the exporter's) alone.
SESSION = r"""
import sys, time
from damon_bpf.engine import Attrs, IntervalsGoal
from damon_bpf.session.monitor import Monitor, MonitorSpec
from damon_bpf.session.exporter import PrometheusExporter
pids, port, secs = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2]), float(sys.argv[3])
sample_us = int(sys.argv[4])
attrs = Attrs(sample_interval_us=sample_us, aggr_interval_us=sample_us * 20, ops_update_interval_us=1_000_000,
              min_nr_regions=10, max_nr_regions=1000)
# what 'damon-bpf export PID --source pte' does without interval options: damo's recommended tuning goal
attrs.intervals_goal = IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=sample_us, max_sample_us=10_000_000)
mon = Monitor(MonitorSpec(pids=pids, source="pte", attrs=attrs, duration_s=secs))
exp = None
own = {"consumer_s": 0.0, "nr_snapshots": 0, "collect_s": 0.0, "nr_collects": 0}
if port:
    # the exporter's own work, timed where it runs: the per-snapshot consumer (monitor thread) and a scrape's
    # collection and text exposition (the request's thread; the bench asks for the text format)
    import prometheus_client.exposition as expo
    exp = PrometheusExporter(mon, "pte")
    def consumer(snap, _call=exp.__call__):
        t = time.thread_time()
        _call(snap)
        own["consumer_s"] += time.thread_time() - t
        own["nr_snapshots"] += 1
    def generate_latest(*args, _gen=expo.generate_latest, **kw):
        t = time.thread_time()
        body = _gen(*args, **kw)
        own["collect_s"] += time.thread_time() - t
        own["nr_collects"] += 1
        return body
    expo.generate_latest = generate_latest
    mon.consumers.append(consumer)
    exp.serve("127.0.0.1", port)
mon.open()
print("ready", flush=True)
t0 = time.process_time()
mon.run()
cpu = time.process_time() - t0
mon.close()
if exp is not None:
    exp.close()
print("own " + " ".join(f"{k}={v}" for k, v in own.items()), flush=True)
print(f"cpu {cpu}", flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session(pids: list[int], secs: float, scrape_every_s: float | None, sample_us: int = 5000) -> dict[str, Any]:
    """Run one monitoring session for *secs*, scraping it every *scrape_every_s* (None: no exporter)."""
    port = free_port() if scrape_every_s is not None else 0
    p = C.spawn([PY, "-c", SESSION, ",".join(map(str, pids)), str(port), str(secs), str(sample_us)],
                stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        C.stop_child(p)
        raise SystemExit("export_overhead: the monitoring session did not start")
    lat_s: list[float] = []
    sizes: list[int] = []
    nr_scrapes = 0
    next_t = time.monotonic() + 1.0
    while p.poll() is None and scrape_every_s is not None:
        if time.monotonic() >= next_t:
            next_t += scrape_every_s
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    body = r.read()
            except OSError:
                break  # the session ended between poll() and the request
            dt = time.perf_counter() - t
            nr_scrapes += 1
            if body.count(b"damon_regions{") >= len(pids):
                lat_s.append(dt)
                sizes.append(len(body))
        time.sleep(0.01)
    out = p.communicate()[0]
    C.stop_child(p)
    if "cpu " not in out:
        raise SystemExit(f"export_overhead: the session ended without its figures (exit {p.returncode})")
    own_line = next(line for line in out.splitlines() if line.startswith("own "))
    own = {k: float(v) for k, v in (kv.split("=") for kv in own_line.split()[1:])}
    return {"cpu_s": float(out.split("cpu ")[1]), "nr_scrapes": nr_scrapes, "latency_s": lat_s,
            "body_bytes": sizes, "own": own}


def cpu_cases(secs: float, repeat: int) -> dict[str, Any]:
    work = C.spawn([PY, "-m", "damon_bpf.workload", "--pattern", "hotcold", "--quiet"])
    time.sleep(3)  # the workload has mapped and touched its memory
    runs: dict[str, list[float]] = {"none": [], "15s": [], "1s": []}
    own: dict[str, list[dict[str, float]]] = {"15s": [], "1s": []}
    try:
        for _ in range(repeat):
            for case, every in (("none", None), ("15s", 15.0), ("1s", 1.0)):
                r = session([work.pid], secs, every)
                runs[case].append(r["cpu_s"])
                if case in own:
                    own[case].append(r["own"])
    finally:
        C.stop_child(work)
    med = {k: statistics.median(v) for k, v in runs.items()}
    timed = {}
    for case, rs in own.items():
        snaps = sum(r["nr_snapshots"] for r in rs)
        collects = sum(r["nr_collects"] for r in rs)
        total = sum(r["consumer_s"] + r["collect_s"] for r in rs)
        timed[case] = {"consumer_ms_per_snapshot": 1000 * sum(r["consumer_s"] for r in rs) / max(1, snaps),
                       "collect_ms_per_scrape": 1000 * sum(r["collect_s"] for r in rs) / max(1, collects),
                       "snapshots_per_s": snaps / (secs * len(rs)), "cpu_share": total / (secs * len(rs))}
    return {"seconds": secs, "repeat": repeat, "runs_cpu_s": runs, "median_cpu_s": med,
            "exporter_cpu_share": {k: (med[k] - med["none"]) / secs for k in ("15s", "1s")}, "timed": timed}


def latency_cases(counts: list[int], secs: float) -> list[dict[str, Any]]:
    res = []
    for n in counts:
        sleepers = [C.spawn([PY, "-c", "import time; time.sleep(3600)"]) for _ in range(n)]
        try:
            time.sleep(1 + n / 50)  # the interpreters are up
            r = session([s.pid for s in sleepers], secs + n / 10, 0.5, sample_us=50_000)
        finally:
            for s in sleepers:
                C.stop_child(s, 1.0)
        lat = r["latency_s"]
        res.append({"targets": n, "nr_scrapes": r["nr_scrapes"], "nr_complete": len(lat),
                    "median_ms": 1000 * statistics.median(lat) if lat else None,
                    "max_ms": 1000 * max(lat) if lat else None,
                    "body_bytes": statistics.median(r["body_bytes"]) if r["body_bytes"] else None,
                    "cpu_s": r["cpu_s"]})
    return res


def report(cpu: dict[str, Any], lat: list[dict[str, Any]]) -> str:
    secs = cpu["seconds"]
    med = cpu["median_cpu_s"]
    lines = [f"monitor CPU over {secs:g} s windows, median of {cpu['repeat']} "
             "(pte, from 5 ms / 100 ms, auto-tuned; hotcold):"]
    rows = []
    for case, label in (("none", "no exporter"), ("15s", "scraped every 15 s"), ("1s", "scraped every 1 s")):
        diff = med[case] - med["none"]
        rows.append([label, f"{med[case]:.3f} s", f"{100 * med[case] / secs:.2f} %",
                     "" if case == "none" else f"{diff:+.3f} s ({100 * diff / secs:+.2f} % of a core)",
                     " ".join(f"{v:.2f}" for v in cpu["runs_cpu_s"][case])])
    lines.append(C.table(["case", "CPU", "of a core", "difference", "runs (s)"], rows))
    lines.append("the exporter's own work, timed in place (thread CPU):")
    lines.append(C.table(["case", "per aggregation", "aggregations/s", "per scrape (collect + text)", "of a core"],
                         [[label, f"{t['consumer_ms_per_snapshot']:.3f} ms", f"{t['snapshots_per_s']:.2f}",
                           f"{t['collect_ms_per_scrape']:.3f} ms", f"{100 * t['cpu_share']:.3f} %"]
                          for case, label in (("15s", "scraped every 15 s"), ("1s", "scraped every 1 s"))
                          for t in [cpu["timed"][case]]]))
    lines.append("")
    lines.append("scrape latency (GET /metrics; pte, from 50 ms / 1 s, auto-tuned):")
    lines.append(C.table(["targets", "median", "max", "exposition", "complete scrapes"],
                         [[r["targets"], C.fmt(r["median_ms"]) + " ms", C.fmt(r["max_ms"]) + " ms",
                           f"{(r['body_bytes'] or 0) / 1024:.1f} KiB", f"{r['nr_complete']}/{r['nr_scrapes']}"]
                          for r in lat]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20, help="window of each CPU case (default 20)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each CPU case (default 3)")
    ap.add_argument("--quick", action="store_true", help="5 s windows, one run, 1 and 10 targets")
    ap.add_argument("--json", help="output file (default bench/results/export_overhead.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("export_overhead: the pte source needs root", file=sys.stderr)
        return 2
    secs, repeat, counts = args.seconds, args.repeat, [1, 10, 100]
    if args.quick:
        secs, repeat, counts = 5.0, 1, [1, 10]
    t0 = time.monotonic()
    load0 = os.getloadavg()
    try:
        cpu = cpu_cases(secs, repeat)
        lat = latency_cases(counts, 8.0 if args.quick else 15.0)
    finally:
        C.kill_children()
    text = C.with_busy_note(report(cpu, lat), load0)
    print(text)
    out = {"bench": "export_overhead", "mode": "quick" if args.quick else "full",
           "env": {**C.environment(), "loadavg_at_start": load0}, "elapsed_s": round(time.monotonic() - t0, 1),
           "cpu": cpu, "scrape_latency": lat, "table": text}
    path = C.write_results("export_overhead", out, args.json)
    print(f"\nexport_overhead: done in {out['elapsed_s']} s; results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("export_overhead", main))
