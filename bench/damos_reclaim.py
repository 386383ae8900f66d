#!/usr/bin/env python3
"""Proactive reclamation with DAMOS on the bundled ``hotcold`` workload: memory saved against throughput lost.

The scheme is DAMON_RECLAIM's in damo's words: "page out the regions not accessed for N seconds",
``--damos_action pageout --damos_access_rate 0% 0% --damos_age Ns max``, built with
:func:`damon_bpf.config.schemes.schemes_from_cli_words` and run by a :class:`damon_bpf.session.monitor.Monitor` in this
process on the workload (16 MiB hot, read and written at random; 256 MiB written once, then cold).

There is no swap here, so the workload runs **file-backed** (``--file-backed`` in a private directory under
``/var/tmp``, a disk file system, not tmpfs): ``MADV_PAGEOUT`` can then unmap and drop its cold pages. Its files
are written back (``fsync``) before each window, as data older than the writeback expiry would be: a clean page
that ``MADV_PAGEOUT`` reclaims leaves the page cache at once, while a dirty one is only unmapped (``--no-sync``
shows that case: RSS drops, the page cache keeps the pages until writeback). Two access
sources see accesses to resident memory on this machine, and each is measured:

- ``probe``: the ``fault`` source with ``probe="pageout"`` (one page, or large folio, per region made
  non-present every sampling interval; its next access faults), 1 workload thread, 5 ms / 100 ms;
- ``probe-slow``: the same with 50 ms / 1 s, ten times fewer probes;
- ``numa``: the ``fault`` source with ``numa_hint_faults=True`` (NUMA balancing's hinting faults), 2 workload
  threads (on one node only multi-threaded tasks are scanned), 100 ms / 1 s (the scanner works in seconds).

Variants, run one after the other with the same length, in a rotating order, each on a fresh workload:

- ``off``: no monitoring at all (the baseline);
- ``monitor``: the source alone, no scheme (what monitoring costs, and what probing itself reclaims);
- ``scheme``: the source and the pageout scheme.

Figures per variant (medians over the repetitions):

- RSS at the end of the window (mean of the last 2 s of ``VmRSS``, ``RssFile``, ``RssAnon`` from
  ``/proc/<pid>/status``), and how much of the cold region's file is still in the page cache (``fincore``):
  memory really freed, not just unmapped;
- throughput: the hot region's touches over the workload's ground-truth phases that lie inside the window
  (``nr_touches`` / ``touches_per_sec`` of the ``phase`` records), per wall second and per CPU second of the
  workload (``utime + stime`` of ``/proc/<pid>/stat`` over the same phases). The second is what to read on a
  shared machine: other load changes how much CPU the workload gets, not what a touch costs it; page faults are
  charged to the faulting task, so their cost shows in it (waits for I/O do not: major faults are counted too);
- the scheme's DAMOS stats, the workload's minor/major faults per second, the monitor process's CPU time.

Derived: RSS reduction = RSS(off) - RSS(variant), as a share of the truly cold bytes (the regions no phase of the
truth ever touched: 256 MiB; other file-backed memory such as libraries can be paged out too, so the share can
pass 100%); slowdown = 1 - throughput(variant) / throughput(off), runtime increase for the same work =
throughput(off) / throughput(variant) - 1.

Goal: RSS reduction >= 80% of the cold bytes with <= 2% slowdown. Anchor (kernel DAMON's published proactive
reclamation, DAMON_RECLAIM on the PARSEC/SPLASH-2X set): -93.38% RSS for +1.22% runtime in the best case, -20%
RSS for +7.6% runtime on average.

Needs root and bcc (BPF). Usage: bench/damos_reclaim.py [--quick] [--sources probe,probe-slow,numa] [--reps N]
[--run-s S] [--min-age TIME] [--variants off,monitor,scheme] [--no-sync] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from damon_bpf.eval.compare import source_spec  # noqa: E402
from damon_bpf.config.schemes import schemes_from_cli_words  # noqa: E402
from damon_bpf.engine import Attrs  # noqa: E402
from damon_bpf.linux.process import terminate  # noqa: E402
from damon_bpf.session.monitor import Monitor, MonitorSpec  # noqa: E402
from damon_bpf.config.units import format_bytes, text_to_sec, text_to_us  # noqa: E402
from damon_bpf.workload import load_truth  # noqa: E402

MiB = 1 << 20
VARIANTS = ("off", "monitor", "scheme")
GOAL_RECLAIM = 0.80
GOAL_SLOWDOWN = 0.02
ANCHOR = {"best": {"rss_reduction": 0.9338, "runtime_increase": 0.0122},
          "average": {"rss_reduction": 0.20, "runtime_increase": 0.076}}


@dataclass(frozen=True)
class SourceCfg:
    name: str
    threads: int
    sample: str
    aggr: str
    #: a source name of ``damon-bpf compare``: its ops id and options come from ``compare.source_spec``
    source: str
    note: str


SOURCES = {
    "probe": SourceCfg("probe", 1, "5ms", "100ms", "fault+pageout",
                       "fault source, pageout probing, 1 workload thread, 5 ms / 100 ms"),
    "probe-slow": SourceCfg("probe-slow", 1, "50ms", "1s", "fault+pageout",
                            "fault source, pageout probing every 50 ms (10x fewer probes), 1 workload thread, "
                            "50 ms / 1 s"),
    "numa": SourceCfg("numa", 2, "100ms", "1s", "fault+numa",
                      "fault source, NUMA hint faults, 2 workload threads, 100 ms / 1 s"),
}


@dataclass
class RunResult:
    source: str
    variant: str
    rep: int
    window_s: float
    rss: dict[str, float]  # final VmRSS / RssFile / RssAnon, bytes
    rss_series: list[tuple[float, int]]  # (s since window start, VmRSS bytes)
    cold_cached_bytes: int | None
    touches_per_s: float
    touches_per_cpu_s: float
    workload_cpu_share: float
    minflt_per_s: float
    majflt_per_s: float
    nr_phases: int
    cold_bytes: int
    hot_bytes: int
    monitor_cpu_s: float = 0.0
    scheme_stats: dict[str, Any] = field(default_factory=dict)
    source_stats: dict[str, Any] = field(default_factory=dict)
    t_reclaimed_s: float | None = None
    loadavg_1m: float = 0.0


# ------------------------------------------------------------------------------------------------ plumbing

_TICK = os.sysconf("SC_CLK_TCK")


def _status(pid: int) -> dict[str, float]:
    # RSS from /proc/<pid>/status; CPU seconds and fault counts from /proc/<pid>/stat (all threads)
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssFile", "RssAnon", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rpartition(")")[2].split()
    out["minflt"], out["majflt"] = int(rest[7]), int(rest[9])
    out["cpu_s"] = (int(rest[11]) + int(rest[12])) / _TICK
    return out


def _at(samples: list[tuple[float, dict[str, float]]], t: float, key: str) -> float:
    # linear interpolation of a sampled counter at time t (seconds since the window start)
    prev = samples[0]
    for cur in samples:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return cur[1][key]
            f = (t - prev[0]) / (cur[0] - prev[0])
            return prev[1][key] + f * (cur[1][key] - prev[1][key])
        prev = cur
    return samples[-1][1][key]


class _RssSampler(threading.Thread):
    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic() - self.t0, _status(self.pid)))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _fincore_bytes(path: str) -> int | None:
    if not shutil.which("fincore") or not os.path.exists(path):
        return None
    try:
        r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path], capture_output=True,
                           text=True, timeout=10)
        return int(r.stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def _wait_truth(proc: subprocess.Popen[bytes], truth: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"workload exited early ({proc.returncode})")
        if truth.exists() and truth.read_text().endswith("\n"):
            return
        time.sleep(0.05)
    raise RuntimeError("workload did not start")


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# ------------------------------------------------------------------------------------------------ one run

def _fsync_files(paths: Any) -> None:
    # write the workload's dirty file pages back, as if its data were older than the writeback expiry: clean
    # pages are what MADV_PAGEOUT frees at once (dirty ones are only unmapped and stay in the page cache)
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def one_run(src: SourceCfg, variant: str, rep: int, run_s: float, min_age: str, workdir: Path,
            procs: list[subprocess.Popen[bytes]], sync: bool = True) -> RunResult:
    truth_path = workdir / f"truth-{src.name}-{variant}-{rep}.jsonl"
    cmd = [sys.executable, "-m", "damon_bpf.workload", "--pattern", "hotcold", "--threads", str(src.threads),
           "--file-backed", str(workdir), "--truth", str(truth_path), "--quiet", "--seed", str(rep),
           "--duration", str(run_s + 120)]
    proc = subprocess.Popen(cmd)
    procs.append(proc)
    try:
        _wait_truth(proc, truth_path)
        pid = proc.pid
        cold_file = next((str(p) for p in workdir.glob(f"damon-bpf-workload-{pid}-cold-*.mem")), "")
        if sync:
            _fsync_files(workdir.glob(f"damon-bpf-workload-{pid}-*.mem"))
        time.sleep(1.0)  # past the setup writes, into the phases
        attrs = Attrs(sample_interval_us=text_to_us(src.sample), aggr_interval_us=text_to_us(src.aggr),
                      ops_update_interval_us=1_000_000, min_nr_regions=10, max_nr_regions=1000)
        schemes = []
        if variant == "scheme":
            schemes = schemes_from_cli_words(["--damos_action", "pageout", "--damos_access_rate", "0%", "0%",
                                              "--damos_age", min_age, "max"], attrs)
        mon = None
        if variant != "off":
            spec = source_spec(src.source)
            mon = Monitor(MonitorSpec(pids=[pid], source=spec.ops_id, source_options=spec.options,
                                      attrs=attrs, duration_s=run_s, schemes=schemes))
            mon.open()  # compiles and attaches the BPF program before the window starts
        sampler = _RssSampler(pid)
        cpu0 = _cpu_s()
        t0 = time.monotonic()
        sampler.t0 = t0
        sampler.start()
        if mon is not None:
            try:
                mon.run()
            finally:
                mon.close()
        else:
            time.sleep(run_s)
        t1 = time.monotonic()
        cpu = _cpu_s() - cpu0
        sampler.stop()
        load = os.getloadavg()[0]
        cached = _fincore_bytes(cold_file)
        source_stats = mon.source_stats() if mon is not None else {}
    finally:
        terminate(proc, 15.0)
    truth = load_truth(truth_path)
    phases = [p for p in truth.phases if p.start >= t0 and p.end <= t1]
    touches = sum(r.nr_touches for p in phases for r in p.regions)
    dur = sum(p.end - p.start for p in phases)
    # the workload's own CPU time over the same phases: robust to the machine's other load
    smp = sampler.samples
    if phases and len(smp) > 1:
        a, b = phases[0].start - t0, phases[-1].end - t0
        cpu_w = _at(smp, b, "cpu_s") - _at(smp, a, "cpu_s")
        minflt = (_at(smp, b, "minflt") - _at(smp, a, "minflt")) / (b - a)
        majflt = (_at(smp, b, "majflt") - _at(smp, a, "majflt")) / (b - a)
        cpu_share = cpu_w / (b - a)
    else:
        cpu_w, minflt, majflt, cpu_share = 0.0, 0.0, 0.0, 0.0
    # truly cold: regions no phase of the whole run touched
    touched = {r.name for p in truth.phases for r in p.regions if r.hot or r.nr_touches}
    cold_bytes = sum(r.end - r.start for r in truth.start.regions if r.name not in touched)
    hot_bytes = sum(r.end - r.start for r in truth.start.regions if r.name in touched)
    tail = [s for t, s in sampler.samples if t >= run_s - 2.0] or [sampler.samples[-1][1]]
    rss = {k: statistics.fmean(s.get(k, 0) for s in tail) for k in ("VmRSS", "RssFile", "RssAnon")}
    series = [(round(t, 2), int(s["VmRSS"])) for t, s in sampler.samples]
    res = RunResult(source=src.name, variant=variant, rep=rep, window_s=t1 - t0, rss=rss, rss_series=series,
                    cold_cached_bytes=cached, touches_per_s=touches / dur if dur else 0.0,
                    touches_per_cpu_s=touches / cpu_w if cpu_w else 0.0, workload_cpu_share=cpu_share,
                    minflt_per_s=minflt, majflt_per_s=majflt, nr_phases=len(phases),
                    cold_bytes=cold_bytes, hot_bytes=hot_bytes, monitor_cpu_s=cpu if mon is not None else 0.0,
                    source_stats={k: v for k, v in source_stats.items() if isinstance(v, (int, float, str))},
                    loadavg_1m=load)
    if schemes:
        res.scheme_stats = schemes[0].stat.to_dict()
    return res


# ------------------------------------------------------------------------------------------------ report

def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(results: list[RunResult], src: str) -> dict[str, Any]:
    by = {v: [r for r in results if r.source == src and r.variant == v] for v in VARIANTS}
    off = by["off"]
    base_rss = _median([r.rss["VmRSS"] for r in off])
    base_file = _median([r.rss["RssFile"] for r in off])
    base_tput = _median([r.touches_per_s for r in off])
    base_tpc = _median([r.touches_per_cpu_s for r in off])
    cold = max((r.cold_bytes for r in results if r.source == src), default=0)
    out: dict[str, Any] = {"cold_bytes": cold, "baseline_rss": base_rss, "baseline_touches_per_s": base_tput,
                           "baseline_touches_per_cpu_s": base_tpc, "variants": {}}
    for v, rs in by.items():
        if not rs:
            continue
        rss = _median([r.rss["VmRSS"] for r in rs])
        file_ = _median([r.rss["RssFile"] for r in rs])
        anon = _median([r.rss["RssAnon"] for r in rs])
        tput = _median([r.touches_per_s for r in rs])
        tpc = _median([r.touches_per_cpu_s for r in rs])

        def paired(key: str) -> list[float]:
            # per repetition, against the off run of the same repetition
            return [1 - getattr(r, key) / getattr(o, key) for r in rs for o in off
                    if o.rep == r.rep and getattr(o, key)]

        d: dict[str, Any] = {
            "rss": rss, "rss_file": file_, "rss_anon": anon,
            "rss_reduction": base_rss - rss, "rss_file_reduction": base_file - file_,
            "reclaimed_share_of_cold": (base_rss - rss) / cold if cold else float("nan"),
            "rss_reduction_share_of_rss": (base_rss - rss) / base_rss if base_rss else float("nan"),
            "cold_file_cached": _median([float(r.cold_cached_bytes) for r in rs if r.cold_cached_bytes is not None]),
            "touches_per_s": tput,
            "slowdown_wall": 1 - tput / base_tput if base_tput else float("nan"),
            "runtime_increase_wall": base_tput / tput - 1 if tput else float("nan"),
            "slowdown_wall_per_rep": paired("touches_per_s"),
            "touches_per_cpu_s": tpc,
            "slowdown_cpu": 1 - tpc / base_tpc if base_tpc else float("nan"),
            "runtime_increase_cpu": base_tpc / tpc - 1 if tpc else float("nan"),
            "slowdown_cpu_per_rep": paired("touches_per_cpu_s"),
            "workload_cpu_share": _median([r.workload_cpu_share for r in rs]),
            "minflt_per_s": _median([r.minflt_per_s for r in rs]),
            "majflt_per_s": _median([r.majflt_per_s for r in rs]),
            "monitor_cpu_share": _median([r.monitor_cpu_s / r.window_s for r in rs]),
            "loadavg_1m": _median([r.loadavg_1m for r in rs]),
            "nr_runs": len(rs),
        }
        st = [r.scheme_stats for r in rs if r.scheme_stats]
        if st:
            d["scheme_stats"] = st[-1]
            d["sz_applied_median"] = _median([float(x["sz_applied"]) for x in st])
        # when the cold bytes were gone: first time RSS fell below baseline - 80% of cold
        thr = base_rss - GOAL_RECLAIM * cold
        ts = [t for t in (next((t for t, b in r.rss_series if b <= thr), None) for r in rs) if t is not None]
        d["time_to_80pct_s"] = _median(ts) if ts else None
        out["variants"][v] = d
    return out


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%" if x == x else "n/a"


def _ok(good: bool) -> str:
    return "ok" if good else "MISS"


def print_table(summary: dict[str, Any], min_age: str, run_s: float, reps: int) -> None:
    print(f"\nDAMOS proactive reclaim on hotcold (file-backed, 16 MiB hot + 256 MiB cold); scheme: pageout, access "
          f"rate 0% 0%, age {min_age} max; {run_s:g} s windows, {reps} repetitions, medians")
    print("goal: RSS reduction >= 80% of the cold bytes with <= 2% slowdown.  anchor (kernel DAMON_RECLAIM): "
          "RSS -93.38% for runtime +1.22% (best), RSS -20% for runtime +7.6% (average)")
    print("slowdown: 1 - throughput / throughput(off), from the truth's touches per wall second (wall; the machine's "
          "other load shows in it) and per CPU second of the workload (cpu)\n")
    hdr = (f"{'source':<10} {'variant':<8} {'VmRSS':>11} {'reduction':>11} {'of cold':>7} {'goal':>4}  "
           f"{'cold cached':>11} {'wall':>7} {'cpu':>7} {'goal':>4}  {'majflt/s':>8} {'minflt/s':>8} "
           f"{'mon CPU':>7}")
    print(hdr)
    print("-" * len(hdr))
    for src, s in summary.items():
        for v, d in s["variants"].items():
            cached = d["cold_file_cached"]
            cached_s = format_bytes(cached) if cached == cached else "n/a"
            if v == "off":
                print(f"{src:<10} {v:<8} {format_bytes(d['rss']):>11} {'':>11} {'':>7} {'':>4}  {cached_s:>11} "
                      f"{d['touches_per_s']:>7.3g} {d['touches_per_cpu_s']:>7.3g} {'':>4}  "
                      f"{d['majflt_per_s']:>8.0f} {d['minflt_per_s']:>8.0f} {'':>7}")
                continue
            share = d["reclaimed_share_of_cold"]
            slow_ok = d["slowdown_cpu"] <= GOAL_SLOWDOWN and d["slowdown_wall"] <= GOAL_SLOWDOWN
            print(f"{src:<10} {v:<8} {format_bytes(d['rss']):>11} {format_bytes(d['rss_reduction']):>11} "
                  f"{share * 100:>6.0f}% {_ok(share >= GOAL_RECLAIM):>4}  {cached_s:>11} "
                  f"{_pct(d['slowdown_wall']):>7} {_pct(d['slowdown_cpu']):>7} {_ok(slow_ok):>4}  "
                  f"{d['majflt_per_s']:>8.0f} {d['minflt_per_s']:>8.0f} {d['monitor_cpu_share'] * 100:>6.1f}%")
        sch = s["variants"].get("scheme", {})
        st = sch.get("scheme_stats")
        if st:
            print(f"{'':<10} scheme stats (last run): nr_tried {st['nr_tried']} "
                  f"sz_tried {format_bytes(st['sz_tried'])} nr_applied {st['nr_applied']} sz_applied {format_bytes(st['sz_applied'])}; 80% of the cold "
                  f"bytes gone after {sch.get('time_to_80pct_s')} s")
            for key, name in (("slowdown_wall_per_rep", "wall"), ("slowdown_cpu_per_rep", "cpu")):
                per = ", ".join(_pct(x) for x in sch.get(key, []))
                print(f"{'':<10} scheme slowdown per repetition ({name}): {per}")
        mon = s["variants"].get("monitor", {})
        if mon and mon.get("time_to_80pct_s") is not None:
            print(f"{'':<10} monitor only: 80% of the cold bytes gone after {mon['time_to_80pct_s']} s without any "
                  f"scheme (pageout probing unmaps the pages it samples; cold ones never come back)")
    print()


# ------------------------------------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="probe,probe-slow,numa",
                    help="comma-separated: probe, probe-slow, numa (default all three)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each variant (default 3)")
    ap.add_argument("--run-s", type=float, default=15.0, help="window length in seconds (default 15)")
    ap.add_argument("--min-age", default="5s", help="the scheme's minimum age (default 5s)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: off, monitor, scheme")
    ap.add_argument("--no-sync", action="store_true",
                    help="do not write the workload's files back before the window (dirty cold pages are then only "
                         "unmapped by MADV_PAGEOUT and stay in the page cache)")
    ap.add_argument("--quick", action="store_true", help="one repetition, 12 s windows, probe source only")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "damos_reclaim.json"))
    args = ap.parse_args()
    if args.quick:
        args.reps, args.run_s, args.sources = 1, 12.0, "probe"
    if os.geteuid() != 0:
        print("damos_reclaim: needs root (BPF)", file=sys.stderr)
        return 3
    srcs = [SOURCES[s.strip()] for s in args.sources.split(",") if s.strip()]
    text_to_sec(args.min_age)  # validate early
    parent = "/var/tmp" if os.access("/var/tmp", os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix="damon-bpf-damos-reclaim-", dir=parent))
    procs: list[subprocess.Popen[bytes]] = []
    results: list[RunResult] = []
    failures: list[str] = []
    variants = [v.strip() for v in args.variants.split(",")]
    t_start = time.monotonic()
    try:
        for src in srcs:
            for rep in range(args.reps):
                order = VARIANTS[rep % 3:] + VARIANTS[:rep % 3]  # rotate so no variant always runs first
                for v in order:
                    if v not in variants:
                        continue
                    for attempt in range(3):
                        try:
                            r = one_run(src, v, rep, args.run_s, args.min_age, workdir, procs,
                                        sync=not args.no_sync)
                            break
                        except Exception as err:  # noqa: BLE001 (a transient failure of the shared machine)
                            print(f"  {src.name} {v} rep {rep}: attempt {attempt + 1} failed: "
                                  f"{type(err).__name__}: {err}", flush=True)
                            failures.append(f"{src.name} {v} rep {rep}: {type(err).__name__}: {err}")
                    else:
                        continue
                    results.append(r)
                    print(f"[{time.monotonic() - t_start:6.0f}s] {src.name:<5} {v:<8} rep {rep}: VmRSS "
                          f"{format_bytes(r.rss['VmRSS'])}, RssFile {format_bytes(r.rss['RssFile'])}, "
                          f"{r.touches_per_s:.4g} touches/s ({r.touches_per_cpu_s:.4g} per CPU s) over "
                          f"{r.nr_phases} phases, majflt/s {r.majflt_per_s:.0f}, load {r.loadavg_1m:.1f}"
                          + (f", sz_applied {format_bytes(r.scheme_stats['sz_applied'])}" if r.scheme_stats
                             else ""), flush=True)
    finally:
        for p in procs:
            terminate(p, 15.0)
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {s.name: summarize(results, s.name) for s in srcs}
    print_table(summary, args.min_age, args.run_s, args.reps)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "config": {"pattern": "hotcold", "file_backed": True, "synced_before_window": not args.no_sync,
                   "run_s": args.run_s, "reps": args.reps,
                   "min_age": args.min_age,
                   "scheme": f"--damos_action pageout --damos_access_rate 0% 0% --damos_age {args.min_age} max",
                   "sources": {s.name: s.note for s in srcs}},
        "goal": {"reclaimed_share_of_cold": GOAL_RECLAIM, "slowdown": GOAL_SLOWDOWN},
        "anchor": ANCHOR,
        "loadavg_1m_median": _median([r.loadavg_1m for r in results]),
        "failures": failures,
        "summary": summary,
        "runs": [r.__dict__ for r in results],
    }, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
