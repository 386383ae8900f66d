"""Push-style access reports: the user-space counterpart of the proposed ``damon_report_access()``.

Event sources (page faults, PMU samples, replayed recordings, the synthetic backend) push reports of
``(addr, size, time, cpu, tid, is_write)`` in bulk, as numpy arrays drained from BPF maps or read from perf.
Once per check, :func:`account_reports` assigns each report to its target's region (sorted region starts +
``searchsorted``) and to the sampling interval its timestamp falls in; a region counts as accessed in a
sampling interval when at least one report fell inside it during that interval (SJ's RFC v3 semantics,
``struct damon_access_report``). The cost is O(reports x log(regions)) per check, with no Python loop over
reports.

Timestamps are CLOCK_MONOTONIC nanoseconds (``bpf_ktime_get_ns()`` and ``time.monotonic_ns()`` agree).
Reports newer than the checked window stay queued for the next one; reports older than the window by more
than one sampling interval are dropped and counted as stale, as the RFC ignores reports older than one
sample interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import update_regions_access_rate
from damon_bpf.engine.model import Ctx

__all__ = ("AccessReports", "ReportStats", "region_interval_hits", "account_reports")

_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]


@dataclass
class ReportStats:
    """Counters of what happened to reports (all cumulative)."""

    nr_reported: int = 0
    nr_accounted: int = 0  # matched a region of its target within the checked window
    nr_unmatched: int = 0  # fell outside every region of its target
    nr_stale: int = 0  # older than the checked window by more than one sampling interval
    nr_bad_target: int = 0  # named a target index the context does not have


@dataclass
class _Chunk:
    target_idx: int
    addr: _U64
    time_ns: _I64
    is_write: npt.NDArray[np.bool_] | None = None


@dataclass
class AccessReports:
    """A queue of access reports for one context (attach as ``ctx.reports``)."""

    stats: ReportStats = field(default_factory=ReportStats)
    _chunks: list[_Chunk] = field(default_factory=list, repr=False)

    def report(self, target_idx: int, addr: npt.ArrayLike, time_ns: npt.ArrayLike, *,
               size: npt.ArrayLike | None = None, cpu: npt.ArrayLike | None = None,
               tid: npt.ArrayLike | None = None, is_write: npt.ArrayLike | None = None) -> None:
        """Queue reports for target number *target_idx* (its index in ``ctx.targets``).

        :param addr: accessed addresses (``u64``)
        :param time_ns: CLOCK_MONOTONIC time of each access, ns (``u64``), or a scalar for all
        :param size: access sizes; a report counts for the region holding its first byte
        :param cpu: CPU of each access (kept for filters; not used by the monitoring core)
        :param tid: thread id of each access (likewise)
        :param is_write: whether each access was a write (likewise)
        """
        a = np.asarray(addr, dtype=np.uint64).ravel()
        if a.size == 0:
            return
        t = np.asarray(time_ns, dtype=np.int64).ravel()
        if t.size == 1 and a.size > 1:
            t = np.full(a.size, int(t[0]), dtype=np.int64)
        if t.size != a.size:
            raise ValueError("addr and time_ns must have the same length")
        w = None if is_write is None else np.asarray(is_write, dtype=bool).ravel()
        self._chunks.append(_Chunk(int(target_idx), a, t, w))
        self.stats.nr_reported += a.size

    @property
    def nr_queued(self) -> int:
        return sum(c.addr.size for c in self._chunks)

    def clear(self) -> None:
        self._chunks.clear()

    def take(self, nr_targets: int) -> list[tuple[_U64, _I64]]:
        """Remove every queued report and return them grouped by target index."""
        by_target: list[list[_Chunk]] = [[] for _ in range(nr_targets)]
        for c in self._chunks:
            if 0 <= c.target_idx < nr_targets:
                by_target[c.target_idx].append(c)
            else:
                self.stats.nr_bad_target += c.addr.size
        self._chunks.clear()
        out = []
        for chunks in by_target:
            if not chunks:
                out.append((np.empty(0, np.uint64), np.empty(0, np.int64)))
            elif len(chunks) == 1:
                out.append((chunks[0].addr, chunks[0].time_ns))
            else:
                out.append((np.concatenate([c.addr for c in chunks]),
                            np.concatenate([c.time_ns for c in chunks])))
        return out

    def requeue(self, target_idx: int, addr: _U64, time_ns: _I64) -> None:
        if addr.size:
            self._chunks.append(_Chunk(target_idx, addr, time_ns))


def region_interval_hits(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], addr: _U64,
                         interval_idx: _I64, nr_intervals: int) -> tuple[npt.NDArray[np.int64], int]:
    """For sorted, non-overlapping regions ``[starts[i], ends[i])``, count per region the distinct sampling
    intervals (``0 <= interval_idx < nr_intervals``) in which some address fell inside it.

    Works on a regions x intervals bitmap (no sort), the user-space twin of the per-CPU "interval hit" bitmaps
    the BPF programs keep.

    :return: (hits per region, number of addresses that fell in no region)
    """
    nr_regions = starts.size
    if addr.size == 0 or nr_regions == 0:
        return np.zeros(nr_regions, dtype=np.int64), int(addr.size)
    a = addr.astype(np.int64, copy=False)
    ri = np.searchsorted(starts, a, side="right") - 1
    ok = (ri >= 0) & (a < ends[np.maximum(ri, 0)])
    ri = ri[ok]
    bitmap = np.zeros(nr_regions * nr_intervals, dtype=bool)
    bitmap[ri * nr_intervals + interval_idx[ok]] = True
    hits = bitmap.reshape(nr_regions, nr_intervals).sum(axis=1, dtype=np.int64)
    return hits, int(addr.size - ri.size)


def account_reports(ctx: Ctx, window_start_ns: int, nr_samples: int) -> int:
    """Turn the queued reports into ``nr_accesses`` for the *nr_samples* sampling intervals that started at
    *window_start_ns*, for every region of every target (regions without reports get their 'not accessed'
    update too). Returns the maximum ``nr_accesses``, as ``check_accesses()`` does."""
    if ctx.reports is None:
        ctx.reports = AccessReports()
    q = ctx.reports
    sample_ns = ctx.attrs.sample_interval_ns
    window_end_ns = window_start_ns + nr_samples * sample_ns
    mx = 0
    for ti, (t, (addr, tns)) in enumerate(zip(ctx.targets, q.take(len(ctx.targets)))):
        ra = t.ra
        if addr.size:
            future = tns >= window_end_ns
            if future.any():
                q.requeue(ti, addr[future], tns[future])
                addr, tns = addr[~future], tns[~future]
            idx = (tns - window_start_ns) // sample_ns
            late = idx < 0
            if late.any():
                stale = tns < window_start_ns - sample_ns
                q.stats.nr_stale += int(stale.sum())
                idx[late] = 0
                keep = ~stale
                addr, idx = addr[keep], idx[keep]
        if not len(ra):
            continue
        if addr.size:
            hits, nr_unmatched = region_interval_hits(ra.start, ra.end, addr, idx, nr_samples)
            q.stats.nr_unmatched += nr_unmatched
            q.stats.nr_accounted += int(addr.size) - nr_unmatched
        else:
            hits = np.zeros(len(ra), dtype=np.int64)
        mx = max(mx, update_regions_access_rate(t, hits, nr_samples, ctx.attrs))
    return mx
