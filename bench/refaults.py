#!/usr/bin/env python3
"""Side effects of the ``pte`` source on reclaim (issue #16): refaults of a target under memory pressure,
unmonitored and monitored with each way of clearing Accessed bits.

**Setup.** A file of ``--file-mib`` MiB (default 256) under /var/tmp (disk-backed: there is no swap here, so only
file pages can be reclaimed), written with real data, fsync-ed and dropped from the page cache. A target,
``bench/wss_target.py --file F --hot-mib H --hot-share 0.95 --cold-random --rate R --report``, maps it shared and
read-only and reads one byte of a random page per touch, ``--rate`` touches a second (default 25000; 0: as fast as
it can): 95% of the touches go to the hot 35% of the file (``--hot-fraction``), the rest uniformly to the other
pages, so reclaim has a choice (keep the hot pages, evict cold ones). It runs in a memory cgroup of its own whose
limit (``--limit-mib``, default half the file) is below the file's size, so the cgroup's reclaim runs all the time
and every read of an evicted page is a refault. The hot set is larger than the active list may grow (at most the
inactive list's size below 1 GiB), so hot pages keep passing through the inactive list, where reclaim keeps them
only if it finds them referenced: the case where the Accessed bits the monitor clears matter. The cold part (after
the hot part) gets ``MADV_RANDOM``: without it every cold fault reads a read-around window (128 KiB, large folios)
of cold neighbours, and that churn, not the hot set, decides what reclaim evicts (about 300 times the refaults,
measured here). ``MADV_RANDOM`` also makes reclaim ignore that range's Accessed bits (``vma_has_recency()``, since
Linux 6.3), which only makes the cold pages easier to evict; the whole file under ``MADV_RANDOM`` would hide the
monitor's effect entirely. A positive control on this VM (the bench itself writing the target's ``clear_refs`` every
5 / 50 / 500 ms, 192 MiB file, 20000 touches/s): 868 refaults/s before, 2074 / 1888 / 1488 with it, 898 after. It
prints its own count of touches every second. A paced target sees the same access stream whatever runs beside it, so
refaults compare directly; unpaced (``--rate 0``) its throughput shows the monitor's CPU and TLB costs too.

The memory cgroup is v2 where the memory controller is on the unified hierarchy (``memory.max``; the group is
``<cgroup2 mount>/damon-bpf-bench-refaults-<pid>-<round>-<method>``), else v1 (``memory.limit_in_bytes`` under the
v1 memory mount: hybrid machines such as this VM). Groups are removed at the end of each run and at exit (also on
Ctrl-C, SIGTERM and errors; groups and files left by a run that was killed with SIGKILL are removed at the next
start).

**Runs.** For each method (``--methods``, default ``none,madvise,clear_refs``): a fresh cgroup and target, a warm-up
(default 40 s: the LRU lists take several of their cycles to settle after the first fill) until reclaim is steady,
an unmonitored *baseline* window (10 s), then the *on* window (20 s): ``none`` keeps waiting; the others run one
:class:`~damon_bpf.session.monitor.Monitor` of the target with the defaults and
``source_options=PteOptions(clear=METHOD)`` (any pte clear method the library knows can be named); ``control``, the
positive control, has no monitor: the bench writes the target's ``clear_refs`` every 5 ms itself. Methods are
interleaved, ``--reps`` rounds (default 3), so drift on the machine spreads over all of them. Figures of a window,
per second, from the cgroup's ``memory.stat`` read every second (the first 3 s of a monitored window, the source's
start-up, are left out) and the target's ticks:

- ``workingset_refault_file`` and ``workingset_refault_anon``: reads of pages that reclaim had evicted;
- ``pgscan``/``pgsteal`` (v2) or, on v1 which has no per-cgroup scan counters, ``pgpgin``/``pgpgout`` (pages
  charged / uncharged: page-ins and evictions); ``pgmajfault``;
- the target's throughput (touches/s) and refaults per million touches;
- the monitoring process's CPU (a share of one core).

Each run is its own control: the steady state a run settles in differs from one run to the next by more than
the monitors change it, so the disturbance of a method is the change of refaults per touch from its run's
baseline to its on window, less that change in the unmonitored runs (drift), median over the rounds. The method
that disturbs reclaim least is the one with the smallest such change, shown with its throughput; when every
method's change lies within the unmonitored runs' own spread (and at least within 5%), none is named.

**Why any of this happens, and what kernel DAMON does differently.** Reclaim decides from the same Accessed
bits the monitor reads: ``folio_referenced()`` walks a folio's PTEs, and a young PTE (or ``PG_young``) keeps a
mapped folio on (or moves it to) the active list. A user-space monitor must clear the bits to sample again, and
every way it has loses that information for reclaim:

- ``process_madvise(MADV_COLD)`` (``clear=madvise``) clears the sample page's young bits **and deactivates the
  folio** (clears ``PG_referenced``/``PG_young``, moves it to the inactive list): every page found accessed is
  pushed toward eviction, the hot ones first, since they are the ones found accessed;
- ``/proc/PID/clear_refs`` (``clear=clear_refs``) clears the young bit of every PTE of the process, and
  ``PG_young`` and ``PG_referenced`` of every page, each sampling interval: reclaim sees no page as referenced
  unless it was touched since the last clear (a few ms), so hot and cold pages look alike;
- ``/sys/kernel/mm/page_idle/bitmap`` (a possible ``page_idle`` method; not built into this kernel) keeps the
  information: like DAMON it moves the young bit to ``PG_young``.

Kernel DAMON's ``damon_ptep_mkold()`` (``mm/damon/ops-common.c``) clears the PTE's young bit and, if it was
set, calls ``folio_set_young(folio)``, then ``folio_set_idle(folio)``; ``folio_referenced_one()`` counts
``folio_test_clear_young()`` as a reference, so reclaim still sees the access, and nothing is deactivated. No
user-space interface does that transfer on a virtual address of another process, so a user-space ``pte``
monitor can at best clear few bits (one page per region and interval, ``madvise``) or keep the interval long;
the kernel's way costs reclaim nothing.

Usage: bench/refaults.py [--quick] [--methods none,madvise,clear_refs] [--reps 3] [--file-mib 256]
[--limit-mib 128] [--rate 25000] [--hot-fraction 0.35] [--warmup 40] [--json FILE]
Writes bench/results/refaults.json (or --json FILE). Needs root (cgroups, the BPF source).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from damon_bpf.workload import disk_backed_dir  # noqa: E402

PREFIX = "damon-bpf-bench-refaults-"
SETTLE_S = 3.0
CONTROL_PERIOD_S = 0.005
#: changes of refaults per touch smaller than this count as none, whatever the unmonitored runs' spread
MIN_EFFECT = 0.05
MiB = C.MiB


# ----------------------------------------------------------------------------------------------- cgroups

def _mounts() -> list[tuple[str, str, list[str]]]:
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            w = line.split()
            if len(w) >= 4:
                out.append((w[1].replace("\\040", " "), w[2], w[3].split(",")))
    return out


def memcg_root() -> tuple[int, str]:
    """(version, directory) of the hierarchy with the memory controller: cgroup v2 when it is enabled there,
    else the cgroup v1 memory mount.

    :raises RuntimeError: no memory controller mounted
    """
    mounts = _mounts()
    for path, fstype, _ in mounts:
        if fstype == "cgroup2":
            try:
                ctrls = Path(path, "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if "memory" in ctrls:
                return 2, path
    for path, fstype, opts in mounts:
        if fstype == "cgroup" and "memory" in opts:
            return 1, path
    raise RuntimeError("no memory cgroup controller is mounted (neither cgroup v2 with 'memory' nor v1 memory)")


class MemCgroup:
    """One memory cgroup of this bench: created by :meth:`create`, removed by :meth:`remove` (its processes
    killed first: they are this bench's targets)."""

    def __init__(self, version: int, root: str, name: str) -> None:
        self.version = version
        self.root = root
        self.path = os.path.join(root, name)
        self._enabled_memory = False

    def create(self, limit_bytes: int) -> MemCgroup:
        if self.version == 2:
            sub = Path(self.root, "cgroup.subtree_control")
            if "memory" not in sub.read_text().split():
                sub.write_text("+memory")
                self._enabled_memory = True
        os.mkdir(self.path)
        _live_groups.add(self)
        self._write("memory.max" if self.version == 2 else "memory.limit_in_bytes", str(limit_bytes))
        if self.version == 2:
            try:
                self._write("memory.swap.max", "0")
            except OSError:
                pass
        return self

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def stat(self) -> dict[str, int]:
        out = {}
        with open(os.path.join(self.path, "memory.stat")) as f:
            for line in f:
                k, _, v = line.partition(" ")
                try:
                    out[k] = int(v)
                except ValueError:
                    pass
        return out

    def usage(self) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        return int(Path(self.path, name).read_text())

    def procs(self) -> list[int]:
        try:
            return [int(x) for x in Path(self.path, "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def remove(self, timeout_s: float = 10.0) -> None:
        """Kill what is left in it (only this bench's targets run there), then remove it."""
        if not os.path.isdir(self.path):
            _live_groups.discard(self)
            return
        deadline = time.monotonic() + timeout_s
        while True:
            for pid in self.procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(self.path)
                break
            except OSError as err:
                if err.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                    print(f"refaults: cannot remove cgroup {self.path}: {err.strerror}", file=sys.stderr)
                    return
                time.sleep(0.1)
        _live_groups.discard(self)
        if self._enabled_memory:
            try:
                Path(self.root, "cgroup.subtree_control").write_text("-memory")
            except OSError:
                pass  # another group uses it now: leave it on


_live_groups: set[MemCgroup] = set()


def remove_all_groups() -> None:
    for g in list(_live_groups):
        g.remove()


def _dead_owner(name: str) -> bool:
    # "<PREFIX><pid>-...": made by a run of this bench that is gone (killed before its cleanup ran)
    try:
        owner = int(name[len(PREFIX):].split("-")[0])
    except ValueError:
        return False
    return owner != os.getpid() and not Path(f"/proc/{owner}").exists()


def remove_stale(root: str, version: int) -> list[str]:
    """Remove the cgroups and files left behind by runs of this bench that were killed (SIGKILL: no cleanup)."""
    removed = []
    for d in Path(root).glob(PREFIX + "*"):
        if _dead_owner(d.name):
            MemCgroup(version, root, d.name).remove()
            if not d.exists():
                removed.append(str(d))
    for f in Path(disk_backed_dir()).glob(PREFIX + "*.dat"):
        if _dead_owner(f.name):
            try:
                f.unlink()
                removed.append(str(f))
            except OSError:
                pass
    return removed


# ----------------------------------------------------------------------------------------------- the file

def make_file(size_mib: int) -> str:
    """A file of real (non-zero, incompressible enough) data under /var/tmp, synced and out of the page cache."""
    fd, path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", suffix=".dat", dir=disk_backed_dir())
    try:
        chunk = bytearray(os.urandom(MiB))
        for i in range(size_mib):
            chunk[:8] = i.to_bytes(8, "little")
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def drop_cache(path: str) -> None:
    """Drop the file's clean pages from the page cache (between runs: each run's target faults them in again,
    charged to its own cgroup)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------- one run

class Sampler(threading.Thread):
    """Reads the cgroup's memory.stat (and this process's CPU time) every *period_s*."""

    def __init__(self, group: MemCgroup, period_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.group = group
        self.period_s = period_s
        self.samples: list[tuple[float, float, dict[str, int]]] = []  # (monotonic, process CPU, stat)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), time.process_time(), self.group.stat()))
            except OSError:
                return
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


STAT_KEYS_V2 = ("workingset_refault_file", "workingset_refault_anon", "pgscan", "pgsteal", "pgmajfault",
                "workingset_activate_file", "workingset_restore_file")
STAT_KEYS_V1 = ("workingset_refault_file", "workingset_refault_anon", "pgpgin", "pgpgout", "pgmajfault")


def window_figures(samples: list[tuple[float, float, dict[str, int]]], target: C.TargetProc, t0: float,
                   t1: float, version: int) -> dict[str, Any]:
    """Per-second figures over the samples taken within [t0, t1]."""
    win = [s for s in samples if t0 <= s[0] <= t1]
    if len(win) < 2:
        return {"error": "fewer than two samples in the window"}
    (ta, ca, sa), (tb, cb, sb) = win[0], win[-1]
    dt = tb - ta
    out: dict[str, Any] = {"t0": ta, "t1": tb, "seconds": round(dt, 2)}
    for k in STAT_KEYS_V2 if version == 2 else STAT_KEYS_V1:
        if k in sa and k in sb:
            out[k + "_per_s"] = (sb[k] - sa[k]) / dt
    rate = target.rate(ta - 0.5, tb + 0.5)
    out["touches_per_s"] = rate
    rf = out.get("workingset_refault_file_per_s")
    out["refaults_per_mtouch"] = rf / rate * 1e6 if rf is not None and rate else None
    out["bench_cpu_share"] = (cb - ca) / dt
    out["file_bytes_end"] = sb.get("file", sb.get("cache"))
    return out


def per_second(samples: list[tuple[float, float, dict[str, int]]], target: C.TargetProc, t_on0: float,
               version: int) -> list[dict[str, Any]]:
    """The run's memory.stat samples as per-second rates between consecutive samples (``t``: seconds from the
    start of the on window, negative before it)."""
    out = []
    keys = STAT_KEYS_V2 if version == 2 else STAT_KEYS_V1
    for (ta, _, sa), (tb, _, sb) in zip(samples, samples[1:]):
        dt = tb - ta
        if dt <= 0:
            continue
        row: dict[str, Any] = {"t": round(tb - t_on0, 2)}
        for k in keys:
            if k in sa and k in sb:
                row[k] = round((sb[k] - sa[k]) / dt, 1)
        row["touches_per_s"] = target.rate(ta - 0.5, tb + 0.5)
        row["file"] = sb.get("file", sb.get("cache"))
        out.append(row)
    return out


def one_run(method: str, rnd: int, file_path: str, args: argparse.Namespace, version: int,
            root: str) -> dict[str, Any]:
    from damon_bpf.ops.sources import PteOptions
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    name = f"{PREFIX}{os.getpid()}-{rnd}-{method}"
    group = MemCgroup(version, root, name).create(args.limit_mib * MiB)
    drop_cache(file_path)
    hot_mib = args.file_mib * args.hot_fraction
    target = C.TargetProc(["--file", file_path, "--hot-mib", f"{hot_mib:g}", "--hot-share", str(args.hot_share),
                           "--cold-random", "--rate", f"{args.rate:g}", "--report", "--cgroup", group.path])
    sampler = Sampler(group)
    res: dict[str, Any] = {"method": method, "round": rnd, "cgroup": group.path}
    try:
        with target:
            sampler.start()
            time.sleep(args.warmup)
            t_b0 = time.monotonic()
            time.sleep(args.baseline)
            t_b1 = time.monotonic()
            stats: dict[str, Any] = {}
            if method == "none":
                t_on0 = time.monotonic()
                time.sleep(args.on)
            elif method == "control":
                # the positive control: clear_refs of the whole target every 5 ms, no monitor
                t_on0 = time.monotonic()
                while time.monotonic() - t_on0 < args.on:
                    C.clear_refs(target.pid)
                    time.sleep(CONTROL_PERIOD_S)
            else:
                spec = MonitorSpec(pids=[target.pid], source="pte", source_options=PteOptions(clear=method),
                                   duration_s=args.on)
                rec = C.WorkingSetRecorder()
                t_on0 = time.monotonic()
                with Monitor(spec, consumers=[rec]) as mon:
                    rec.monitor = mon
                    mon.run()
                stats = dict(rec.stats)
                series = rec.series()
                last = [r for r in series if r["t"] >= SETTLE_S]
                if last:
                    res["monitor"] = {
                        "snapshots": len(series),
                        "nr_regions_median": _med([r["targets"][0]["nr_regions"] for r in last]),
                        "sample_us_median": _med([r["sample_us"] for r in last]),
                        "aggr_us_median": _med([r["aggr_us"] for r in last])}
            t_on1 = time.monotonic()
            time.sleep(1.1)  # one more memory.stat sample after the window
            sampler.stop()
            res["baseline"] = window_figures(sampler.samples, target, t_b0, t_b1, version)
            res["on"] = window_figures(sampler.samples, target, t_on0 + SETTLE_S, t_on1, version)
            res["on_s"] = t_on1 - t_on0
            res["source_stats"] = stats
            res["series"] = per_second(sampler.samples, target, t_on0, version)
            res["usage_end"] = group.usage()
    finally:
        if sampler.is_alive():
            sampler.stop()
        target.close()
        group.remove()
    return res


# ----------------------------------------------------------------------------------------------- report

def _med(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None


def _change(on: float | None, base: float | None) -> float | None:
    return on / base - 1 if on is not None and base else None


def summarize(runs: list[dict[str, Any]], methods: list[str], version: int) -> list[dict[str, Any]]:
    """Per method, medians over its rounds: the on window's figures, its baseline's, and the change of each
    run's on window against its own baseline (each run is its own control: the steady state a run settles in
    differs from run to run by more than the monitors change it); ``vs none`` subtracts the unmonitored runs'
    change over the same time (drift)."""
    keys = ["workingset_refault_file_per_s", "workingset_refault_anon_per_s", "touches_per_s",
            "refaults_per_mtouch", "pgmajfault_per_s", "bench_cpu_share"]
    keys += ["pgscan_per_s", "pgsteal_per_s"] if version == 2 else ["pgpgin_per_s", "pgpgout_per_s"]
    out = []
    for m in methods:
        rs = [r for r in runs if r["method"] == m and "on" in r]
        row: dict[str, Any] = {"method": m, "runs": len(rs)}
        for k in keys:
            row[k] = _med([r["on"].get(k) for r in rs])
            row["baseline_" + k] = _med([r["baseline"].get(k) for r in rs])
        row["refaults_change"] = _med([_change(r["on"].get("refaults_per_mtouch"),
                                               r["baseline"].get("refaults_per_mtouch")) for r in rs])
        row["throughput_change"] = _med([_change(r["on"].get("touches_per_s"), r["baseline"].get("touches_per_s"))
                                         for r in rs])
        row["clear_used"] = sorted({str(r["source_stats"].get("clear")) for r in rs if r.get("source_stats")})
        row["nr_regions"] = _med([r.get("monitor", {}).get("nr_regions_median") for r in rs])
        row["snapshots_per_s"] = _med([r["monitor"]["snapshots"] / r["on_s"] for r in rs if r.get("monitor")])
        row["cpu_per_sample_us"] = _med([r["source_stats"].get("cpu_per_sample_us") for r in rs
                                         if r.get("source_stats")])
        out.append(row)
    none = next((r for r in out if r["method"] == "none"), None)
    if none is not None:
        ch = [_change(r["on"].get("refaults_per_mtouch"), r["baseline"].get("refaults_per_mtouch"))
              for r in runs if r["method"] == "none" and "on" in r]
        vals = [c for c in ch if c is not None]
        # how far the unmonitored runs' own changes lie from their median: what counts as no change
        none["refaults_change_spread"] = (max(abs(c - none["refaults_change"]) for c in vals)
                                          if len(vals) >= 2 and none["refaults_change"] is not None else None)
    for r in out:
        for k in ("refaults_change", "throughput_change"):
            base = none[k] if none is not None else None
            r[k + "_vs_none"] = r[k] - base if r[k] is not None and base is not None else None
    return out


def report(summary: list[dict[str, Any]], version: int, args: argparse.Namespace) -> str:
    scan = ("pgscan", "pgsteal") if version == 2 else ("pgpgin", "pgpgout")
    rows = []
    for r in summary:
        rows.append([r["method"], r["runs"], C.fmt(r["workingset_refault_file_per_s"], "f0"),
                     C.fmt(r["baseline_workingset_refault_file_per_s"], "f0"),
                     C.fmt(r["workingset_refault_anon_per_s"], "f0"),
                     C.fmt(r[scan[0] + "_per_s"], "f0"), C.fmt(r[scan[1] + "_per_s"], "f0"),
                     C.fmt(r["touches_per_s"], "f0"), C.fmt(r["refaults_per_mtouch"], "f0"),
                     C.fmt(r["refaults_change"], "pct"), C.fmt(r["refaults_change_vs_none"], "pct"),
                     C.fmt(r["throughput_change"], "pct"), C.fmt(r["bench_cpu_share"], "pct"),
                     C.fmt(r["snapshots_per_s"], "f1"), C.fmt(r["nr_regions"], "f0")])
    pace = f"{args.rate:g} touches/s" if args.rate else "unpaced"
    lines = [f"Target: {args.file_mib} MiB file, hot {args.hot_fraction:.0%} with {args.hot_share:.0%} of the "
             f"touches, {pace}; cgroup v{version}, limit {args.limit_mib} MiB;\nmedians over {args.reps} round(s); "
             f"per second over the on window (the monitor's first {SETTLE_S:g} s left out);\n'base': the same run's "
             "unmonitored window before it; 'change': refaults per touch (throughput), on vs the run's own base;\n"
             "'vs none': that change less the unmonitored runs' (drift); CPU: this bench process (the monitor)"
             + ("" if version == 2 else ";\ncgroup v1 has no pgscan/pgsteal per group: pgpgin/pgpgout (pages "
                "charged/uncharged) instead"),
             C.table(["method", "runs", "refault file/s", "base", "anon/s", f"{scan[0]}/s", f"{scan[1]}/s",
                      "touches/s", "refaults/Mtouch", "change", "vs none", "throughput change", "CPU", "snaps/s",
                      "regions"], rows)]
    ranked = [r for r in summary if r["method"] not in ("none", "control") and r["refaults_change_vs_none"] is not None]
    none = next((r for r in summary if r["method"] == "none"), None)
    spread = none["refaults_change_spread"] if none is not None else None
    floor = max(spread or 0.0, MIN_EFFECT)
    if ranked:
        best = min(ranked, key=lambda r: r["refaults_change_vs_none"])
        figs = ", ".join(f"{r['method']} {C.fmt(r['refaults_change_vs_none'], 'pct')}" for r in ranked)
        if all(abs(r["refaults_change_vs_none"]) <= floor for r in ranked):
            lines.append(f"\nno monitored method changes refaults per touch beyond the unmonitored runs' own spread "
                         f"(+-{C.fmt(floor, 'pct')}): {figs}")
        else:
            what = "least disturbing of the monitored methods" if len(ranked) > 1 else "the monitored method"
            lines.append(f"\n{what}: {best['method']} (refaults per touch "
                         f"{C.fmt(best['refaults_change_vs_none'], 'pct')} against the unmonitored runs' drift; "
                         f"throughput {C.fmt(best['throughput_change'], 'pct')} against its own base); all: {figs}"
                         + (f"; unmonitored runs' spread +-{C.fmt(spread, 'pct')}" if spread is not None else ""))
    ctl = next((r for r in summary if r["method"] == "control"), None)
    if ctl is not None:
        lines.append(f"positive control (the bench clears the target's bits with clear_refs every "
                     f"{CONTROL_PERIOD_S * 1000:g} ms, no monitor): refaults per touch "
                     f"{C.fmt(ctl['refaults_change_vs_none'], 'pct')} against the unmonitored runs' drift")
    lines.append("(kernel DAMON keeps the access for reclaim with folio_set_young(): see this script's docstring)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round, 192 MiB file, shorter windows (about 2.5 min)")
    ap.add_argument("--methods", default="none,madvise,clear_refs",
                    help="comma-separated: none, control (the bench writes the target's clear_refs every 5 ms, "
                         "no monitor) and pte clear methods (default none,madvise,clear_refs)")
    ap.add_argument("--reps", type=int, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--file-mib", type=int, help="file size (default 256; quick 192)")
    ap.add_argument("--limit-mib", type=int, help="cgroup memory limit (default: half the file)")
    ap.add_argument("--hot-fraction", type=float, default=0.35, help="hot share of the file (default 0.35)")
    ap.add_argument("--hot-share", type=float, default=0.95, help="share of touches on hot pages (default 0.95)")
    ap.add_argument("--rate", type=float, help="the target's touches per second (default 25000; quick 20000; "
                                               "0: as fast as it can)")
    ap.add_argument("--warmup", type=float, help="seconds before the baseline window (default 40; quick 30)")
    ap.add_argument("--baseline", type=float, help="unmonitored baseline window (default 10; quick 5)")
    ap.add_argument("--on", type=float, help="monitored window (default 20; quick 10)")
    ap.add_argument("--json", help="output file (default bench/results/refaults.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("refaults: needs root (memory cgroups, the pte source's BPF program)", file=sys.stderr)
        return 2
    methods = C.name_list(args.methods)
    from damon_bpf.ops.pte import CLEAR_METHODS

    C.check_names(ap, methods, ("none", "control", *CLEAR_METHODS), "method")
    q = args.quick
    args.reps = args.reps or (1 if q else 3)
    args.file_mib = args.file_mib or (192 if q else 256)
    args.limit_mib = args.limit_mib or args.file_mib // 2
    args.rate = args.rate if args.rate is not None else (20000.0 if q else 25000.0)
    args.warmup = args.warmup if args.warmup is not None else (30.0 if q else 40.0)
    args.baseline = args.baseline if args.baseline is not None else (5.0 if q else 10.0)
    args.on = args.on if args.on is not None else (10.0 if q else 20.0)
    if args.on <= SETTLE_S + 2:
        ap.error(f"--on must be longer than {SETTLE_S + 2:g} s")
    try:
        version, root = memcg_root()
    except RuntimeError as err:
        print(f"refaults: {err}", file=sys.stderr)
        return 2
    for s in remove_stale(root, version):
        print(f"refaults: removed what a killed run left behind: {s}", file=sys.stderr)
    t0 = time.monotonic()
    load0 = os.getloadavg()
    guard = C.SysctlGuard()
    runs: list[dict[str, Any]] = []
    file_path = None
    try:
        with guard:
            print(f"refaults: writing a {args.file_mib} MiB file under {disk_backed_dir()} ...", file=sys.stderr,
                  flush=True)
            file_path = make_file(args.file_mib)
            for rnd in range(args.reps):
                for m in methods:
                    print(f"refaults: round {rnd + 1}/{args.reps} {m:10s} (cgroup v{version}, limit "
                          f"{args.limit_mib} MiB; {args.warmup:g}+{args.baseline:g}+{args.on:g} s) ...",
                          file=sys.stderr, flush=True)
                    runs.append(one_run(m, rnd, file_path, args, version, root))
    finally:
        C.kill_children()
        remove_all_groups()
        if file_path is not None:
            try:
                os.unlink(file_path)
            except FileNotFoundError:
                pass
    summary = summarize(runs, methods, version)
    text = C.with_busy_note(report(summary, version, args), load0)
    print(text)
    out = {"bench": "refaults", "mode": "quick" if q else "full",
           "env": {**C.environment(), "loadavg_at_start": load0}, "elapsed_s": round(time.monotonic() - t0, 1),
           "cgroup_version": version, "cgroup_root": root,
           "params": {k: getattr(args, k) for k in ("reps", "file_mib", "limit_mib", "hot_fraction", "hot_share",
                                                    "rate",
                                                    "warmup", "baseline", "on")},
           "methods": methods, "settle_s": SETTLE_S, "summary": summary, "runs": runs,
           "sysctls_restored_by_bench": guard.restored, "sysctls_left_to_other_sessions": guard.left_to_others,
           "table": text}
    path = C.write_results("refaults", out, args.json)
    print(f"\nrefaults: done in {out['elapsed_s']} s; results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("refaults", main))
