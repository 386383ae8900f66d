#!/usr/bin/env python3
"""What one sampling interval of the ``pte`` source costs the monitor, against regions and target RSS.

The target is ``tests/kernel/toucher.py SIZE HOT``: SIZE MiB of anonymous memory, every page touched once, the
first HOT MiB touched continuously (default 1 GiB, 64 MiB hot). Its mapping is cut evenly into N regions; every
interval draws one random page per region, as ``damon_va_prepare_access_checks()`` does. One interval is what
``damon_bpf/ops/pte.py`` does at one wakeup, done here with the library's own pieces
(:class:`~damon_bpf.probes.pte.PteWalker`, :func:`damon_bpf.linux.syscalls.process_madvise`) and each step timed with
``time.thread_time_ns()`` (this thread's CPU, which includes the syscalls' kernel time) and a wall clock:

1. the check: one walk of the samples drawn one interval ago (*walk*);
2. new samples and their prepare, by one of the two methods, alternating from interval to interval:

   - ``madvise``: a walk of the new samples (*prepare walk*), then ``process_madvise(MADV_COLD)`` of each
     sample whose Accessed bit is set, one iovec per page (2 MiB for a PMD-mapped one), as ``Clearing.clear_madvise``
     does; per cleared page, and how many were cleared;
   - ``clear_refs``: ``"1"`` to ``/proc/<pid>/clear_refs`` (the whole process; per resident page from
     ``/proc/<pid>/statm``);
3. a sleep of one sampling interval (``--sample-ms``, 5 ms), the target running.

Alternating keeps the Accessed bits as the source's steady state has them (set where the target touched memory
since it was last cleared): the source too starts with one ``clear_refs``, after which ``madvise`` finds set bits
only where memory was used since.

Per cell (medians over >= 20 intervals of each method): (a) walk ns per region, (b) MADV_COLD per cleared page
and how many, (c) clear_refs per process and per resident page, (d) the monitor CPU per sampling interval of
each method: ``madvise`` = walk + prepare walk + MADV_COLD, ``clear_refs`` = walk + clear_refs (not the engine's
own work per interval: the end-to-end run has it), (e) the shortest sampling interval that keeps that within a 1%
budget (cost / 0.01) and the share of a core at 5 ms sampling. Each cell also shows its first interval on the
freshly touched target (every Accessed bit set: ``madvise`` clears every sample then), and the first cell the
fixed cost of one call after a sleep (a walk of one address, MADV_COLD of one page, each twice in a row).

Sweeps: regions 10, 100, 1000, 10000 on the default target; target RSS 256 MiB, 1 GiB, 4 GiB, 8 GiB at 1000
regions (``--quick``: 256 MiB and 1 GiB); a size that does not fit in MemAvailable (with 1 GiB to spare) is
skipped with a note. One target at a time, a fresh one per cell.

The per-interval cells above are the primitives' costs. Since issue #16 the source clears its probes once per
window and reads them twice (docs/pte.md): end to end, the library's :class:`~damon_bpf.session.monitor.Monitor`
with ``source="pte"`` (default options: clear ``auto``, 1% budget) on the default target, with the attributes
``damon-bpf monitor --source pte`` uses (at most 1000 regions, the source's own intervals), for ~15 s
(``--quick`` 12 s): the process CPU share (``time.process_time()`` delta over wall time, after the first 5 s; the
monitor is the only work of this process then), the intervals it settled at, the probes, the cost of one probe
read in BPF and the monitor's whole CPU per page check, beside kernel DAMON's per-page check.

Usage: bench/pte_cost.py [--quick] [--json FILE] [--size-mib 1024] [--hot-mib 64] [--reps N] [--no-e2e]
Writes bench/results/pte_cost.json (or --json FILE). Needs root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import numpy as np  # noqa: E402

PAGE = 4096
PMD = 2 << 20
PUD = 1 << 30
BUDGET = 0.01
REF_SAMPLE_US = 5_000
#: MemAvailable kept free beside a target of the RSS sweep (other work on the machine)
SPARE_BYTES = 1 << 30


# ------------------------------------------------------------------------------------------- helpers


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_pages(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1])


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class Clock:
    """Thread CPU and wall nanoseconds of one timed step."""

    __slots__ = ("c0", "w0", "cpu", "wall")

    def __enter__(self) -> "Clock":
        self.c0 = time.thread_time_ns()
        self.w0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cpu = time.thread_time_ns() - self.c0
        self.wall = time.perf_counter_ns() - self.w0


class Cell:
    """One target, N regions: the sampling addresses, and the source's steps, each timed."""

    def __init__(self, walker: Any, pid: int, addr: int, size: int, nr_regions: int, rng: np.random.Generator
                 ) -> None:
        self.walker, self.pid, self.rng = walker, pid, rng
        bounds = (addr + (np.arange(nr_regions + 1, dtype=np.int64) * size // nr_regions)) & ~(PAGE - 1)
        self.starts = bounds[:-1]
        self.pages = np.maximum((bounds[1:] - bounds[:-1]) // PAGE, 1)
        self.mem_fd = self.refs_fd = self.pidfd = -1
        try:
            self.mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            self.refs_fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
            self.pidfd = os.pidfd_open(pid)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self.mem_fd, self.refs_fd, self.pidfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.mem_fd = self.refs_fd = self.pidfd = -1

    def samples(self) -> np.ndarray:
        off = (self.rng.random(self.starts.size) * self.pages).astype(np.int64)
        return (self.starts + off * PAGE).astype(np.uint64)

    def walk(self, addrs: np.ndarray) -> tuple[Clock, np.ndarray]:
        from damon_bpf.probes.pte import WalkStatus

        with Clock() as c:
            st, res = self.walker.walk(self.mem_fd, addrs)
        if st != WalkStatus.OK:
            raise RuntimeError(f"page-table walk of pid {self.pid} failed (status {st})")
        return c, res

    def clear_refs(self) -> Clock:
        with Clock() as c:
            os.write(self.refs_fd, b"1")
        return c

    def madvise(self, addrs: np.ndarray, res: np.ndarray) -> tuple[Clock, int]:
        """MADV_COLD of the samples whose Accessed bit is set (``ops.pte_clear.Clearing.clear_madvise`` after its walk, without
        the large-folio lookup, which anonymous memory without mTHP does not need). Returns the pages cleared."""
        from damon_bpf.linux.syscalls import MADV_COLD, process_madvise
        from damon_bpf.probes.pte import R_ACCESSED, R_PRESENT, result_level

        with Clock() as c:
            sel = (res & np.uint64(R_PRESENT | R_ACCESSED)) == np.uint64(R_PRESENT | R_ACCESSED)
            n = 0
            if sel.any():
                a = addrs[sel].astype(np.int64)
                level = result_level(res[sel])
                starts = a.copy()
                lengths = np.full(a.size, PAGE, dtype=np.int64)
                for lv, sz in ((2, PMD), (3, PUD)):
                    m = level == lv
                    starts[m] = a[m] & ~(sz - 1)
                    lengths[m] = sz
                order = np.lexsort((lengths, starts))
                starts, lengths = starts[order], lengths[order]
                keep = np.ones(starts.size, dtype=bool)
                keep[1:] = starts[1:] >= starts[:-1] + lengths[:-1]
                starts, lengths = starts[keep], lengths[keep]
                n = int(starts.size)
                process_madvise(self.pidfd, np.stack([starts, lengths], axis=1), MADV_COLD)
        return c, n


def per_interval(cost_ns: float | None) -> dict[str, float | None]:
    """(e): the sampling interval that keeps *cost_ns* within the budget, and the share of a core at 5 ms."""
    if cost_ns is None:
        return {"min_sample_us_1pct": None, "core_share_at_5ms": None}
    return {"min_sample_us_1pct": cost_ns / 1e3 / BUDGET, "core_share_at_5ms": cost_ns / 1e3 / REF_SAMPLE_US}


def measure_cell(walker: Any, size_mib: int, hot_mib: int, nr_regions: int, reps: int, sample_s: float,
                 seed: int, floors: bool = False) -> dict[str, Any]:
    """A fresh target of *size_mib*, cut into *nr_regions*: the first interval, then *reps* sampling intervals
    of each method, alternating (``madvise``, ``clear_refs``, ``madvise``, ...); with *floors*, the fixed costs
    of one call after a sleep."""
    from damon_bpf.linux.syscalls import MADV_COLD, process_madvise
    from damon_bpf.probes.pte import R_ACCESSED, R_PRESENT, result_level

    rng = np.random.default_rng(seed)
    t_spawn = time.monotonic()
    with C.Toucher(size_mib, min(hot_mib, size_mib), 1, churn=False) as tgt:
        spawn_s = time.monotonic() - t_spawn
        cell = Cell(walker, tgt.pid, tgt.addr, tgt.size, nr_regions, rng)
        try:
            rss = rss_pages(tgt.pid)
            time.sleep(sample_s)
            # the first interval on the freshly touched target: every Accessed bit is still set
            addrs = cell.samples()
            w, res = cell.walk(addrs)
            m, n = cell.madvise(addrs, res)
            first_refs = cell.clear_refs()  # as the source's first prepare (it measures clear_refs at once)
            first = {"prepare_walk_cpu_ns": w.cpu, "madvise_cpu_ns": m.cpu, "madvise_wall_ns": m.wall,
                     "madvise_cleared": n,
                     "madvise_cpu_ns_per_page": m.cpu / n if n else None,
                     "madvise_wall_ns_per_page": m.wall / n if n else None,
                     "clear_refs_cpu_ns": first_refs.cpu, "clear_refs_wall_ns": first_refs.wall,
                     "clear_refs_cpu_ns_per_page": first_refs.cpu / rss if rss else None}
            time.sleep(sample_s)
            R: dict[str, list[float]] = {k: [] for k in (
                "walk_cpu", "walk_wall", "hits", "present", "huge",
                "refs_cpu", "refs_wall", "pwalk_cpu", "pwalk_wall", "madv_cpu", "madv_wall", "cleared",
                "madv_cpu_per_page", "madv_wall_per_page",
                "total_madv_cpu", "total_madv_wall", "total_refs_cpu", "total_refs_wall")}
            for i in range(2 * reps):
                # check: the samples drawn one interval ago
                w, res = cell.walk(addrs)
                present = (res & np.uint64(R_PRESENT)) != 0
                R["walk_cpu"].append(w.cpu)
                R["walk_wall"].append(w.wall)
                R["hits"].append(int(((res & np.uint64(R_ACCESSED)) != 0).sum()))
                R["present"].append(int(present.sum()))
                R["huge"].append(int((present & (result_level(res) >= 2)).sum()))
                # prepare: new samples
                addrs = cell.samples()
                if i % 2 == 0:
                    pw, res = cell.walk(addrs)
                    m, n = cell.madvise(addrs, res)
                    R["pwalk_cpu"].append(pw.cpu)
                    R["pwalk_wall"].append(pw.wall)
                    R["madv_cpu"].append(m.cpu)
                    R["madv_wall"].append(m.wall)
                    R["cleared"].append(n)
                    if n:
                        R["madv_cpu_per_page"].append(m.cpu / n)
                        R["madv_wall_per_page"].append(m.wall / n)
                    R["total_madv_cpu"].append(w.cpu + pw.cpu + m.cpu)
                    R["total_madv_wall"].append(w.wall + pw.wall + m.wall)
                else:
                    r = cell.clear_refs()
                    R["refs_cpu"].append(r.cpu)
                    R["refs_wall"].append(r.wall)
                    R["total_refs_cpu"].append(w.cpu + r.cpu)
                    R["total_refs_wall"].append(w.wall + r.wall)
                time.sleep(sample_s)
            fl: dict[str, Any] | None = None
            if floors:
                F: dict[str, list[float]] = {k: [] for k in ("walk_1", "walk_1_again", "madv_cold_1",
                                                             "madv_cold_1_again")}
                end = tgt.addr + tgt.size
                for _ in range(reps):
                    a1 = cell.samples()[-1:]
                    F["walk_1"].append(cell.walk(a1)[0].cpu)
                    F["walk_1_again"].append(cell.walk(a1)[0].cpu)
                    p = int(cell.samples()[-1])
                    for k in ("madv_cold_1", "madv_cold_1_again"):
                        with Clock() as c:
                            process_madvise(cell.pidfd, [(p, PAGE)], MADV_COLD)
                        F[k].append(c.cpu)
                        p = p + PAGE if p + 2 * PAGE <= end else p - PAGE
                    time.sleep(sample_s)
                fl = {k: med(v) for k, v in F.items()}
            rss_end = rss_pages(tgt.pid)
        finally:
            cell.close()
    M = {k: med(v) for k, v in R.items()}
    rss_mid = (rss + rss_end) / 2
    madv_cost, refs_cost = M["total_madv_cpu"], M["total_refs_cpu"]
    cheaper = None
    if madv_cost is not None and refs_cost is not None:
        cheaper = "madvise" if madv_cost <= refs_cost else "clear_refs"
    return {
        "size_mib": size_mib, "hot_mib": min(hot_mib, size_mib), "nr_regions": nr_regions,
        "reps_per_method": reps, "sample_ms": sample_s * 1e3, "spawn_s": round(spawn_s, 2),
        "rss_pages": rss, "rss_pages_end": rss_end,
        "medians": M,
        "n_reps_with_clears": len(R["madv_cpu_per_page"]),
        "madvise_cleared_total": int(sum(R["cleared"])),
        # (a)
        "walk_cpu_ns_per_region": M["walk_cpu"] / nr_regions, "walk_wall_ns_per_region": M["walk_wall"] / nr_regions,
        "prepare_walk_cpu_ns_per_region": M["pwalk_cpu"] / nr_regions,
        # (b)
        "madvise_cleared": M["cleared"], "madvise_cpu_ns_per_page": M["madv_cpu_per_page"],
        "madvise_wall_ns_per_page": M["madv_wall_per_page"],
        # (c)
        "clear_refs_cpu_ns": M["refs_cpu"], "clear_refs_wall_ns": M["refs_wall"],
        "clear_refs_cpu_ns_per_page": M["refs_cpu"] / rss_mid if rss_mid else None,
        # (d)
        "interval_cpu_ns": {"madvise": madv_cost, "clear_refs": refs_cost},
        "interval_wall_ns": {"madvise": M["total_madv_wall"], "clear_refs": M["total_refs_wall"]},
        "cheaper": cheaper,
        # (e)
        "budget": {"madvise": per_interval(madv_cost), "clear_refs": per_interval(refs_cost),
                   "cheaper": per_interval(min(madv_cost, refs_cost) if cheaper else None)},
        "first_interval": first,
        "floors_cpu_ns": fl,
        "raw": R,
    }


def fits(size_mib: int) -> tuple[bool, int]:
    avail = mem_available()
    return size_mib * C.MiB * 1.05 + SPARE_BYTES <= avail, avail


def sweep(walker: Any, cells: list[tuple[int, int]], hot_mib: int, reps: int, sample_s: float, seed: int,
          label: str, floors: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for i, (size_mib, nr) in enumerate(cells):
        ok, avail = fits(size_mib)
        if not ok:
            notes.append(f"note: {label} sweep: skipped {size_mib} MiB: MemAvailable is {avail / C.MiB:.0f} MiB, "
                         f"needs {size_mib * 1.05 + SPARE_BYTES / C.MiB:.0f} MiB (the target plus 1 GiB spare)")
            print(f"pte_cost: {notes[-1]}", file=sys.stderr)
            continue
        print(f"pte_cost: {label}: {size_mib} MiB, {nr} regions ...", file=sys.stderr, flush=True)
        out.append(measure_cell(walker, size_mib, hot_mib, nr, reps, sample_s, seed + i, floors=floors and i == 0))
    return out, notes


def us(ns: float | None, digits: int = 0) -> str:
    return "-" if ns is None else f"{ns / 1e3:,.{digits}f}"


def interval_text(us_: float | None) -> str:
    if us_ is None:
        return "-"
    return f"{us_ / 1e3:,.1f} ms" if us_ < 1e6 else f"{us_ / 1e6:,.2f} s"


def sweep_tables(res: list[dict[str, Any]], title: str) -> str:
    rows = []
    for r in res:
        b = r["budget"]
        rows.append([
            f"{r['size_mib']}M", r["nr_regions"],
            C.fmt(r["walk_cpu_ns_per_region"], "f0"),
            f"{C.fmt(r['madvise_cleared'], 'f0')}/{r['nr_regions']}",
            us(r["madvise_cpu_ns_per_page"], 1), us(r["madvise_wall_ns_per_page"], 1),
            f"{us(r['clear_refs_cpu_ns'])} / {us(r['clear_refs_wall_ns'])}", C.fmt(r["clear_refs_cpu_ns_per_page"], "f1"),
            f"{us(r['interval_cpu_ns']['madvise'])} / {us(r['interval_wall_ns']['madvise'])}",
            f"{us(r['interval_cpu_ns']['clear_refs'])} / {us(r['interval_wall_ns']['clear_refs'])}",
            r["cheaper"] or "-",
            f"{interval_text(b['madvise']['min_sample_us_1pct'])} / "
            f"{interval_text(b['clear_refs']['min_sample_us_1pct'])}",
            f"{C.fmt(b['madvise']['core_share_at_5ms'], 'pct')} / {C.fmt(b['clear_refs']['core_share_at_5ms'], 'pct')}",
        ])
    t1 = C.table(["RSS", "regions", "(a) walk ns/rgn", "(b) madv cleared", "madv us/pg", "(wall)",
                  "(c) refs us cpu/wall", "refs ns/pg", "(d) madvise us/intvl cpu/wall",
                  "clear_refs us/intvl cpu/wall", "cheaper", "(e) min intvl @1% madv/refs", "core @5ms madv/refs"],
                 rows)
    frows = []
    for r in res:
        f = r["first_interval"]
        frows.append([f"{r['size_mib']}M", r["nr_regions"], f"{f['madvise_cleared']}/{r['nr_regions']}",
                      us(f["madvise_cpu_ns_per_page"], 1), us(f["madvise_cpu_ns"]), us(f["clear_refs_cpu_ns"]),
                      C.fmt(f["clear_refs_cpu_ns_per_page"], "f1"), r["rss_pages"], r["spawn_s"]])
    t2 = C.table(["RSS", "regions", "madv cleared", "madv us/pg", "madv us", "refs us", "refs ns/pg",
                  "resident pages", "target setup s"], frows)
    text = f"{title}\n{t1}\n\nFirst interval on the freshly touched target (every Accessed bit set; CPU):\n{t2}"
    for r in res:
        fl = r.get("floors_cpu_ns")
        if fl:
            text += ("\n\nFixed cost of one call after a sleep of one interval (CPU, median; then the same call again "
                     f"at once): walk of 1 address {us(fl['walk_1'], 1)} us, again {us(fl['walk_1_again'], 1)} us; "
                     f"MADV_COLD of 1 page {us(fl['madv_cold_1'], 1)} us, again {us(fl['madv_cold_1_again'], 1)} us")
    return text


# ------------------------------------------------------------------------------------------- end to end


def default_pte_attrs() -> Any:
    """The monitoring attributes ``damon-bpf monitor --source pte PID`` uses: the CLI's defaults (1 s updates,
    10..1000 regions) with the intervals the pte source chooses by default (``Attrs.source_intervals``:
    aggregation 100 ms .. 1 s, 20 samples each, within its CPU budget)."""
    from damon_bpf.cli._args import attrs_from_args

    ns = argparse.Namespace(sample=None, aggr=None, updr="1s", minr=10, maxr=1000, monitoring_intervals_goal=None,
                            monitoring_intervals_autotune=False)
    return attrs_from_args(ns, source_chooses=True)


def end_to_end(size_mib: int, hot_mib: int, duration_s: float, skip_s: float, seed: int) -> dict[str, Any]:
    from damon_bpf.session.monitor import Monitor, MonitorSpec

    reason: Any = None
    with C.Toucher(size_mib, min(hot_mib, size_mib), 1, churn=False) as tgt:
        attrs = default_pte_attrs()
        spec = MonitorSpec(pids=[tgt.pid], source="pte", attrs=attrs, duration_s=None, seed=seed)
        snaps: list[dict[str, Any]] = []
        marks: dict[str, Any] = {}
        mon: Monitor

        def consumer(s: Any) -> None:
            snaps.append({"t": s.time_ns / 1e9, "sample_us": s.sample_interval_us, "aggr_us": s.aggr_interval_us,
                          "nr_regions": s.nr_regions})

        def mark_start() -> None:
            marks.update(w0=time.monotonic(), c0=time.process_time(), stats0=mon.source_stats())

        def mark_end() -> None:
            marks.update(w1=time.monotonic(), c1=time.process_time(), stats1=mon.source_stats())
            ops = mon.ctx.ops if mon.ctx is not None else None
            if ops is not None and hasattr(ops, "cost"):
                marks.update(walk_ns_per_page=ops.cost.walk_ns_per_probe)
            ctx = mon.ctx
            if ctx is not None:
                marks.update(sample_us=ctx.attrs.sample_interval_us, aggr_us=ctx.attrs.aggr_interval_us,
                             min_sample_us=ctx.attrs.intervals_goal.min_sample_us,
                             nr_regions=sum(len(t.ra) for t in ctx.targets))
            mon.stop()

        mon = Monitor(spec, [consumer])
        t_open = time.monotonic()
        mon.open()
        setup_s = time.monotonic() - t_open
        timers = [threading.Timer(skip_s, mark_start), threading.Timer(duration_s, mark_end),
                  threading.Timer(duration_s + 30, mon.stop)]
        error = None
        t_run = time.monotonic()
        notes: list[str] = []
        try:
            for tm in timers:
                tm.daemon = True
                tm.start()
            reason = mon.run()
        except Exception as err:  # the target died, ...: report it
            reason, error = "error", f"{type(err).__name__}: {err}"
        finally:
            for tm in timers:
                tm.cancel()
            notes = list(getattr(mon.ctx.ops, "notes", []) or []) if mon.ctx is not None else []
            mon.close()
        run_s = time.monotonic() - t_run
    share = None
    if "w1" in marks and "w0" in marks and marks["w1"] > marks["w0"]:
        share = (marks["c1"] - marks["c0"]) / (marks["w1"] - marks["w0"])
    return {"size_mib": size_mib, "hot_mib": hot_mib, "duration_s": duration_s, "skip_s": skip_s,
            "setup_s": round(setup_s, 2), "run_s": round(run_s, 2),
            "stop_reason": str(getattr(reason, "name", reason)), "error": error, "cpu_share": share,
            "window_s": (marks["w1"] - marks["w0"]) if "w1" in marks and "w0" in marks else None,
            "sample_us": marks.get("sample_us"), "aggr_us": marks.get("aggr_us"),
            "goal_min_sample_us": marks.get("min_sample_us"), "nr_regions": marks.get("nr_regions"),
            "source_stats": marks.get("stats1", {}), "source_stats_at_skip": marks.get("stats0", {}),
            # the monitor's CPU per page check: all its work (reads, clears, the engine) over the probe reads
            "ns_per_page_check": _per_check(marks, share), "walk_ns_per_page": marks.get("walk_ns_per_page"),
            "notes": notes, "snapshots": snaps}


def _per_check(marks: dict[str, Any], share: float | None) -> float | None:
    # CPU ns of the window per probe read (walks: "walks" of the source's stats, cumulative)
    a, b = marks.get("stats0", {}).get("walks"), marks.get("stats1", {}).get("walks")
    if share is None or not isinstance(a, int) or not isinstance(b, int) or b <= a:
        return None
    return (marks["c1"] - marks["c0"]) * 1e9 / (b - a)


#: What kernel DAMON's vaddr check costs per page (damon_ptep_mkold() + the young check: tens of ns, docs/pte.md)
KERNEL_NS_PER_CHECK = "tens of ns"


def e2e_table(e: dict[str, Any]) -> str:
    st = e["source_stats"]
    rows = [[f"{e['size_mib']}M", C.fmt(e["cpu_share"], "pct2"), interval_text(e["sample_us"]),
             interval_text(e["aggr_us"]), e["nr_regions"] if e["nr_regions"] is not None else "-",
             st.get("clear", "-"), st.get("probes", "-"), C.fmt(e.get("walk_ns_per_page"), "f0"),
             C.fmt(e.get("ns_per_page_check"), "f0"), KERNEL_NS_PER_CHECK,
             C.fmt(st.get("madvise_us_per_page"), "f2"), C.fmt(st.get("clear_refs_ns_per_page"), "f1"),
             len(e["snapshots"])]]
    t = C.table(["RSS", "CPU share", "sample", "aggr", "regions", "clear", "probes", "read ns/page",
                 "all ns/check", "kernel", "madv us/pg", "refs ns/pg", "snapshots"], rows)
    extra = []
    traj: list[str] = []
    for sn in e["snapshots"]:
        txt = interval_text(sn["sample_us"])
        if not traj or traj[-1] != txt:
            traj.append(txt)
    if traj:
        shown = traj if len(traj) <= 12 else traj[:6] + ["..."] + traj[-5:]
        extra.append("sample interval, snapshot by snapshot: " + " -> ".join(shown))
    extra.append("read ns/page: the BPF read of one probe in the sampling loop (cold); all ns/check: the monitor's "
                 "whole CPU (reads, clears, the engine, the snapshot) over its probe reads")
    if e["error"]:
        extra.append(f"error: {e['error']}")
    extra.extend(f"note: {n}" for n in e["notes"])
    return t + ("\n" + "\n".join(extra) if extra else "")


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="RSS sweep 256 MiB and 1 GiB only, 20 intervals per method, "
                    "12 s end to end")
    ap.add_argument("--size-mib", type=int, default=1024, help="target RSS of the regions sweep and the end-to-end"
                    " run (default 1024)")
    ap.add_argument("--hot-mib", type=int, default=64, help="the part the target keeps touching (default 64)")
    ap.add_argument("--regions", default="10,100,1000,10000", help="regions of the first sweep")
    ap.add_argument("--sizes", help="RSS sweep, MiB, comma-separated (default 256,1024,4096,8192; quick 256,1024)")
    ap.add_argument("--reps", type=int, help="intervals per method and cell (default 40; quick 20)")
    ap.add_argument("--sample-ms", type=float, default=5.0, help="the sampling interval slept (default 5)")
    ap.add_argument("--e2e-s", type=float, help="end-to-end run length (default 15; quick 12)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="output file (default bench/results/pte_cost.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("pte_cost: the page-table walk (BPF) and /proc/<pid>/mem need root", file=sys.stderr)
        return 2
    regions = [int(x) for x in C.name_list(args.regions)]
    sizes = [int(x) for x in C.name_list(args.sizes)] if args.sizes else (
        [256, 1024] if args.quick else [256, 1024, 4096, 8192])
    reps = args.reps or (20 if args.quick else 40)
    if reps < 20:
        ap.error("--reps must be at least 20 (medians of >= 20)")
    e2e_s = args.e2e_s or (12.0 if args.quick else 15.0)
    sample_s = args.sample_ms / 1e3
    t0 = time.monotonic()
    load0 = os.getloadavg()
    out: dict[str, Any] = {"bench": "pte_cost", "mode": "quick" if args.quick else "full",
                           "env": {**C.environment(), "loadavg_at_start": load0,
                                   "mem_available_at_start": mem_available()},
                           "params": {"size_mib": args.size_mib, "hot_mib": args.hot_mib, "regions": regions,
                                      "sizes_mib": sizes, "reps_per_method": reps, "sample_ms": args.sample_ms,
                                      "budget": BUDGET, "e2e_s": e2e_s},
                           "by_regions": [], "by_rss": [], "notes": [], "end_to_end": None}

    def save() -> Any:
        out["elapsed_s"] = round(time.monotonic() - t0, 1)
        return C.write_results("pte_cost", out, args.json)

    texts: list[str] = []
    guard = C.SysctlGuard()
    try:
        with guard:
            from damon_bpf.probes.pte import PagingLayout, PteOffsets, PteWalkConfig, PteWalker

            with PteWalker(PteWalkConfig(offsets=PteOffsets.from_btf(), layout=PagingLayout.detect())) as walker:
                res, notes = sweep(walker, [(args.size_mib, n) for n in regions], args.hot_mib, reps, sample_s,
                                   args.seed, "regions", floors=True)
                out["by_regions"], out["notes"] = res, out["notes"] + notes
                texts.append(sweep_tables(res, f"pte: one sampling interval against regions ({args.size_mib} MiB "
                                          f"target, {args.hot_mib} MiB hot, {args.sample_ms:g} ms intervals, median "
                                          f"of {reps} per method; thread CPU unless 'wall'):")
                             + "".join(f"\n{n}" for n in notes))
                print(texts[-1] + "\n", flush=True)
                save()
                res, notes = sweep(walker, [(s, 1000) for s in sizes], args.hot_mib, reps, sample_s,
                                   args.seed + 100, "rss")
                out["by_rss"], out["notes"] = res, out["notes"] + notes
                texts.append(sweep_tables(res, f"pte: one sampling interval against target RSS (1000 regions, "
                                          f"{args.hot_mib} MiB hot, median of {reps} per method):")
                             + "".join(f"\n{n}" for n in notes))
                print(texts[-1] + "\n", flush=True)
                save()
            if not args.no_e2e:
                print(f"pte_cost: end to end, Monitor(source='pte') for {e2e_s:g} s ...", file=sys.stderr,
                      flush=True)
                e = end_to_end(args.size_mib, args.hot_mib, e2e_s, 5.0, args.seed)
                out["end_to_end"] = e
                texts.append(f"pte end to end: Monitor(source='pte', default options), max 1000 regions, intervals "
                             f"chosen by the source (aggregation 100 ms..1 s), {args.size_mib} MiB target, CPU share "
                             f"after the first 5 s of {e2e_s:g} s:\n" + e2e_table(e))
                print(texts[-1], flush=True)
    finally:
        C.kill_children()
    warn = C.busy_warning(load0)
    if warn:
        print("\n" + warn)
        texts.append(warn)
    out["sysctls_restored_by_bench"] = guard.restored
    out["table"] = "\n\n".join(texts)
    path = save()
    print(f"\npte_cost: done in {out['elapsed_s']} s; results in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_main("pte_cost", main))
