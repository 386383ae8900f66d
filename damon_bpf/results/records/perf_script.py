"""``perf script`` text of DAMON's ``damon:damon_aggregated`` tracepoint: read into records and written from them.

Counterpart of damo's ``parse_damon_trace`` (reading) and ``write_perf_script`` (writing), in
``src/_damo_records.py``: one line per region, ``... TIME: damon:damon_aggregated: target_id=T nr_regions=N
START-END: NR_ACCESSES AGE``. (perf recordings with data addresses are another text:
:mod:`damon_bpf.results.perfscript`.)
"""

from __future__ import annotations

import re
from typing import IO, Iterable

import numpy as np

from damon_bpf.errors import InvalidParamsError
from damon_bpf.results.records.model import Record, RecordSnapshot, check_regions

__all__ = ("parse_perf_script", "write_perf_script")

_AGGR_EVENTS = ("damon:damon_aggregated:", "damon_aggregated:")
_TUNE_EVENTS = ("damon:damon_monitor_intervals_tune:", "damon_monitor_intervals_tune:")
_TS = re.compile(r"^\d+(\.\d+)?:$")


def parse_perf_script(text: str, path: str) -> list[Record]:
    """``perf script`` (or ``trace-cmd report``) text of DAMON tracepoints, as damo's ``parse_damon_trace``."""
    records: dict[int, Record] = {}
    order: list[int] = []
    open_snap: dict[int, tuple[RecordSnapshot, list[tuple[int, int, int, int]], int]] = {}
    sample_us: int | None = None
    nr_lines = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        k = next((i for i, f in enumerate(fields) if f in _AGGR_EVENTS or f in _TUNE_EVENTS), -1)
        if k < 1 or not _TS.match(fields[k - 1]):
            continue
        if fields[k] in _TUNE_EVENTS:
            try:
                sample_us = int(fields[k + 1].split("=")[1])
            except (IndexError, ValueError):
                pass
            continue
        rest = fields[k + 1:]
        try:
            end_time = int(float(fields[k - 1][:-1]) * 1e9)
            tid = int(rest[0].split("=")[1])
            nr_regions = int(rest[1].split("=")[1])
            s, e = (int(x) for x in rest[2].rstrip(":").split("-"))
            nr = int(rest[3])
            age = int(rest[4]) if len(rest) > 4 else 0
        except (IndexError, ValueError) as err:
            raise InvalidParamsError(f"{path}:{lineno}: malformed damon_aggregated line") from err
        nr_lines += 1
        rec = records.get(tid)
        if rec is None:
            rec = records[tid] = Record(target_id=tid, intervals=None, kdamond_idx=0, context_idx=0)
            order.append(tid)
        if tid not in open_snap:
            start_time = rec.snapshots[-1].end_time if rec.snapshots else -1
            if start_time > end_time:
                raise InvalidParamsError(f"{path}:{lineno}: the trace is not time-sorted")
            z = np.empty(0, np.int64)
            snap = RecordSnapshot(start_time, end_time, z, z, z, z, sample_interval_us=sample_us)
            rec.snapshots.append(snap)
            open_snap[tid] = (snap, [], nr_regions)
        snap, regions, want = open_snap[tid]
        regions.append((s, e, nr, age))
        if len(regions) >= want:
            _fill(snap, regions)
            del open_snap[tid]
    for snap, regions, _ in open_snap.values():  # a torn last snapshot: keep what is there
        _fill(snap, regions)
    if not nr_lines:
        raise InvalidParamsError(f"{path}: no damon:damon_aggregated lines")
    out = []
    for tid in order:
        rec = records[tid]
        snaps = rec.snapshots
        # set_first_snapshot_start_time(): the first start is one average snapshot duration before its end
        if len(snaps) >= 2:
            avg = (snaps[-1].end_time - snaps[0].end_time) / (len(snaps) - 1)
            snaps[0].start_time = int(snaps[0].end_time - avg)
        if snaps and _is_fake(snaps[-1]):
            snaps.pop()
        for i, sn in enumerate(snaps):
            if sn.start_time < 0 or sn.start_time >= sn.end_time:
                sn.start_time = sn.end_time - 1
            try:
                check_regions(sn)
            except ValueError as err:
                raise InvalidParamsError(f"{path}: target {tid} snapshot {i}: {err}") from None
        out.append(rec)
    return out


def _fill(snap: RecordSnapshot, regions: list[tuple[int, int, int, int]]) -> None:
    a = np.array(regions, dtype=np.int64).reshape(-1, 4)
    snap.start, snap.end, snap.nr_accesses, snap.age = (a[:, i].copy() for i in range(4))


def _is_fake(snap: RecordSnapshot) -> bool:
    # add_fake_snapshot_if_needed()'s marker: one region 0-0 with -1 samples and -1 age
    return (snap.nr_regions == 1 and snap.start[0] == 0 and snap.end[0] == 0 and snap.nr_accesses[0] == -1
            and snap.age[0] == -1)


def write_perf_script(records: Iterable[Record], out: IO[str]) -> None:
    """Write *records* as ``perf script`` text of ``damon:damon_aggregated``, as damo's ``write_perf_script``
    does: one line per region; a record with a single snapshot gets a trailing fake snapshot (``0-0: -1 -1``)
    so a reader can infer the real one's start time. Lines stay short, so ``file`` calls it ``ASCII text``
    (what damo's reader looks for)."""
    for rec in records:
        snaps = list(rec.snapshots)
        if len(snaps) == 1:
            s = snaps[0]
            fake = RecordSnapshot(s.end_time, s.end_time + s.duration_ns, np.zeros(1, np.int64),
                                  np.zeros(1, np.int64), np.full(1, -1, np.int64), np.full(1, -1, np.int64))
            snaps.append(fake)
        for snap in snaps:
            head = (f"kdamond.x xxxx xxxx {snap.end_time / 1e9:f}: damon:damon_aggregated: "
                    f"target_id={rec.target_id} nr_regions={snap.nr_regions} ")
            out.write("".join(f"{head}{s}-{e}: {n} {a}\n" for s, e, n, a in zip(
                snap.start.tolist(), snap.end.tolist(), snap.nr_accesses.tolist(), snap.age.tolist())))
