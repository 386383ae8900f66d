"""Per-thread and per-CPU attribution and --writes-only of the BPF sources, against targets with a known truth
(``thread_toucher.py``: each thread churns its own range; or one thread reads one range and writes another)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from damon_bpf.engine import Attrs, Snapshot
from damon_bpf.ops.threads import ThreadCollector, ThreadWindow
from damon_bpf.ops.sources import FaultOptions
from damon_bpf.session.monitor import Monitor, MonitorSpec

from .helpers import overlap

THREAD_TOUCHER = str(Path(__file__).with_name("thread_toucher.py"))
ROOT = Path(__file__).resolve().parents[2]


class ThreadToucher:
    """``thread_toucher.py MODE SIZE_MIB [THREADS]``; :attr:`ranges` lists ``(tid, start, end, kind)``."""

    def __init__(self, mode: str, size_mib: int, threads: int = 2) -> None:
        self.proc = subprocess.Popen([sys.executable, THREAD_TOUCHER, mode, str(size_mib), str(threads)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ranges: list[tuple[int, int, int, str]] = []
        for line in self.proc.stdout:
            if line.strip() == "ready":
                break
            tid, start, size, kind = line.split()
            self.ranges.append((int(tid), int(start), int(start) + int(size), kind))
        self.pid = self.proc.pid

    def __enter__(self) -> ThreadToucher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.kill()
        self.proc.wait()


def run(pid: int, duration_s: float, **opts: Any) -> tuple[list[Snapshot], list[list[ThreadWindow]], Monitor]:
    """Monitor *pid* with the fault source; the snapshots and, per aggregation, the collector's windows."""
    snaps: list[Snapshot] = []
    windows: list[list[ThreadWindow]] = []
    mon: Monitor

    def consumer(snap: Snapshot) -> None:
        snaps.append(snap)
        assert mon.ctx is not None
        coll = getattr(mon.ctx.ops, "threads")
        assert isinstance(coll, ThreadCollector)
        windows.append(list(coll.last))

    spec = MonitorSpec(pids=[pid], source="fault", source_options=FaultOptions(**opts), duration_s=duration_s, seed=1,
                       attrs=Attrs(sample_interval_us=5000, aggr_interval_us=200_000,
                                   ops_update_interval_us=1_000_000, min_nr_regions=10, max_nr_regions=1000))
    mon = Monitor(spec, [consumer])
    try:
        mon.open()
        mon.run()
    finally:
        mon.close()
    return snaps, windows, mon


def own_share(windows: list[list[ThreadWindow]], tid: int, own: tuple[int, int],
              others: list[tuple[int, int]]) -> tuple[float, float, int]:
    """For *tid*'s attributed events: (share in regions that overlap its own range and no other thread's, share
    inside its own range with regions partly inside counted in proportion, its events)."""
    inside = prop = total = 0.0
    for wins in windows:
        w = wins[0]
        for reg, t, n in w.thread_rows.tolist():
            if t != tid:
                continue
            s, e = int(w.starts[reg]), int(w.ends[reg])
            total += n
            o = overlap(s, e, *own)
            prop += n * o / (e - s)
            if o and not any(overlap(s, e, *r) for r in others):
                inside += n
    if not total:
        return 0.0, 0.0, 0
    return inside / total, prop / total, int(total)


def test_each_thread_is_attributed_to_its_own_range() -> None:
    with ThreadToucher("threads", 8, 2) as w:  # alive to the end: comm names are read from /proc
        snaps, windows, _ = run(w.pid, 8.0)
        assert len(w.ranges) == 2 and w.ranges[0][0] != w.ranges[1][0]
        for tid, lo, hi, _ in w.ranges:
            others = [(a, b) for t, a, b, _ in w.ranges if t != tid]
            # from 2 s on: the regions have split along the ranges by then
            share, prop, events = own_share(windows[10:], tid, (lo, hi), others)
            print(f"tid {tid}: {events} events, {100 * share:.1f}% in regions over its own range only, "
                  f"{100 * prop:.1f}% inside it by overlap")
            assert events > 1000
            assert share >= 0.8
        # the top threads of the hottest region over each range are that range's thread (monitor --json's view)
        coll = ThreadCollector()
        coll.last = [windows[-1][0]]
        t = snaps[-1].targets[0]
        per_region = coll.region_json(0, w.pid, t.start, t.end)
        assert per_region is not None
        for tid, lo, hi, _ in w.ranges:
            inside = [(r, j) for r, j in zip(t.regions, per_region) if overlap(r.start, r.end, lo, hi) and j["threads"]]
            assert inside, "no attributed region over the range"
            hottest = max(inside, key=lambda rj: sum(x["events"] for x in rj[1]["threads"]))
            assert hottest[1]["threads"][0]["tid"] == tid
            assert hottest[1]["threads"][0]["comm"]
            assert hottest[1]["cpus"] and all(c["cpu"] < os.cpu_count() for c in hottest[1]["cpus"])  # type: ignore


@pytest.mark.parametrize("writes_only", [False, True])
def test_writes_only_counts_the_written_range_only(writes_only: bool) -> None:
    with ThreadToucher("rw", 8) as w:
        snaps, windows, _ = run(w.pid, 4.0, writes_only=writes_only)
    (tid_r, r_lo, r_hi, kind_r), (tid_w, w_lo, w_hi, kind_w) = w.ranges
    assert (kind_r, kind_w) == ("read", "write")
    read_ev = write_ev = 0.0
    for wins in windows[2:]:
        win = wins[0]
        ev = win.cpu_events.sum(axis=0)
        for s, e, n in zip(win.starts.tolist(), win.ends.tolist(), ev.tolist()):
            # events of regions over one range and not the other (their split follows the access pattern)
            if overlap(s, e, r_lo, r_hi) and not overlap(s, e, w_lo, w_hi):
                read_ev += n
            elif overlap(s, e, w_lo, w_hi):
                write_ev += n
    print(f"writes_only={writes_only}: read range {read_ev:.0f} events, write range {write_ev:.0f}")
    assert write_ev > 1000
    if writes_only:
        assert read_ev == 0
        # and DAMON's view: from 1 s on, no region over the read range (and not the written one) was accessed
        # (before, regions span much more: the interpreter's own writes, late events carried over)
        seen = [r.nr_accesses for s in snaps[5:] for r in s.targets[0].regions
                if overlap(r.start, r.end, r_lo, r_hi) and not overlap(r.start, r.end, w_lo, w_hi)]
        assert seen and max(seen) == 0
    else:  # the control: reads fault too, so the filter is what empties the read range
        assert read_ev > 1000


def test_record_writes_threads_sidecar_and_report(tmp_path: Path) -> None:
    out = tmp_path / "rec.data"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with ThreadToucher("threads", 8, 2) as w:
        subprocess.run([sys.executable, "-m", "damon_bpf", "record", "--source", "fault", "--duration", "12s",
                        "--sample", "5ms", "--aggr", "200ms", "-o", str(out), str(w.pid)],
                       env=env, check=True, capture_output=True, timeout=120)
    side = Path(str(out) + ".threads")
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    rep = subprocess.run([sys.executable, "-m", "damon_bpf", "report", "threads", "-i", str(out), "--json"],
                         env=env, check=True, capture_output=True, text=True, timeout=60)
    d = json.loads(rep.stdout)
    by_tid = {t["tid"]: t for t in d["threads"]}
    for tid, lo, hi, _ in w.ranges:
        t = by_tid[tid]
        assert t["comm"] and t["events"] > 1000
        top = t["ranges"][0]
        assert overlap(top["start"], top["end"], lo, hi) > 0
    assert d["cpus"] and all(c["events"] > 0 for c in d["cpus"])
    text = subprocess.run([sys.executable, "-m", "damon_bpf", "report", "threads", "-i", str(out)],
                          env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    assert f"tid {w.ranges[0][0]}" in text and "cpus:" in text


def test_bundled_perthread_workload_is_attributed_to_each_worker(tmp_path: Path) -> None:
    # the bundled workload's own truth: worker i writes region t<i> only (file-backed, so pageout probing
    # re-arms its pages and each refault is taken by the thread that touches the page)
    truth = tmp_path / "truth.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "damon_bpf.workload", "--pattern", "perthread", "--threads", "2",
                             "--truth", str(truth), "--quiet", "--file-backed", str(tmp_path)], env=env)
    try:
        for _ in range(400):
            if truth.exists() and truth.read_text().endswith("\n"):
                break
            time.sleep(0.05)
        start = json.loads(truth.read_text().splitlines()[0])
        _, windows, _ = run(proc.pid, 8.0, probe="pageout")
    finally:
        proc.terminate()
        proc.wait()
    reg = {r["name"]: (r["start"], r["end"]) for r in start["regions"]}
    assert len(start["thread_ids"]) == 2
    for w, tid in enumerate(start["thread_ids"]):
        share, prop, events = own_share(windows[10:], tid, reg[f"t{w}"], [reg[f"t{1 - w}"]])
        print(f"worker {w} (tid {tid}): {events} events, {100 * share:.1f}% in regions over its own range only, "
              f"{100 * prop:.1f}% inside it by overlap")
        assert events > 1000 and share >= 0.8
