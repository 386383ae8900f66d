"""DAMON_STAT's figures (``mm/damon/stat.c``) of one target's regions, plus the working set and access-rate mix.

**Estimated memory bandwidth** (bytes/s): ``sum(size * nr_accesses) * USEC_PER_MSEC * MSEC_PER_SEC /
aggr_interval_us`` over the regions, as ``damon_stat_set_estimated_memory_bandwidth()`` computes it.

**Idle-time percentiles** (ms): a region's idle time is ``-(age + 1)`` aggregation intervals when it was accessed
in the last window and ``age + 1`` when not; the regions are sorted by it and walked while accumulating their
bytes, and percentile ``p`` is the idle time of the region at which the accumulated bytes reach ``p`` % of the
total (``damon_stat_set_idletime_percentiles()``), times ``aggr_interval_us / 1000``. Negative values mean
"accessed recently for that long".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ("ACCESS_RATE_BUCKETS", "DamonStat", "damon_stat", "estimated_memory_bandwidth", "idle_time_percentiles_ms")

#: Upper bounds of the access-rate buckets (``nr_accesses / max_nr_accesses``), for the bytes-by-rate histogram.
ACCESS_RATE_BUCKETS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)

I64 = npt.NDArray[np.int64]


def estimated_memory_bandwidth(start: I64, end: I64, nr_accesses: I64, aggr_interval_us: int) -> int:
    """``damon_stat_set_estimated_memory_bandwidth()``: bytes per second."""
    access_bytes = int(((end - start) * nr_accesses).sum()) if len(start) else 0
    return access_bytes * 1000 * 1000 // max(aggr_interval_us, 1)


def idle_time_percentiles_ms(start: I64, end: I64, nr_accesses: I64, age: I64, aggr_interval_us: int) -> list[int]:
    """``damon_stat_set_idletime_percentiles()``: 101 values, percentile 0..100, in ms (all 0 without
    regions)."""
    out = [0] * 101
    n = len(start)
    if not n:
        return out
    sz = (end - start).tolist()
    idle = np.where(nr_accesses > 0, -(age + 1), age + 1).tolist()
    # sort() of the kernel is not stable; equal idle times are ordered by address here, which changes no value
    order = sorted(range(n), key=lambda i: idle[i])
    total = sum(sz)
    accounted = 0
    nxt = 0
    for i in order:
        accounted += sz[i]
        while nxt <= 100 and nxt <= accounted * 100 // total:
            # (long)idletime * aggr_interval / USEC_PER_MSEC: C division truncates toward zero
            v = idle[i] * aggr_interval_us
            out[nxt] = -((-v) // 1000) if v < 0 else v // 1000
            nxt += 1
    return out


@dataclass(frozen=True)
class DamonStat:
    """One target's figures at an aggregation boundary (sizes in bytes)."""

    monitored_bytes: int
    working_set_bytes: int
    nr_regions: int
    estimated_memory_bandwidth: int  # bytes/s
    idle_ms_percentiles: tuple[int, ...]  # 0..100
    #: cumulative bytes at or below each bound of :data:`ACCESS_RATE_BUCKETS`
    bytes_by_access_rate: tuple[int, ...]


def damon_stat(start: I64, end: I64, nr_accesses: I64, age: I64, max_nr_accesses: int,
               aggr_interval_us: int, working_set_bytes: int | None = None) -> DamonStat:
    """The figures of one target's regions (``TargetSnapshot`` columns).

    :param working_set_bytes: the source's estimate of the bytes accessed within its working-set window
        (``TargetSnapshot.working_set_bytes``); None: the bytes of the regions accessed in the aggregation
        interval
    """
    sz = end - start
    rate = nr_accesses / max(max_nr_accesses, 1)
    cum = tuple(int(sz[rate <= b + 1e-12].sum()) for b in ACCESS_RATE_BUCKETS)
    return DamonStat(
        monitored_bytes=int(sz.sum()),
        working_set_bytes=int(sz[nr_accesses > 0].sum()) if working_set_bytes is None else int(working_set_bytes),
        nr_regions=int(len(start)),
        estimated_memory_bandwidth=estimated_memory_bandwidth(start, end, nr_accesses, aggr_interval_us),
        idle_ms_percentiles=tuple(idle_time_percentiles_ms(start, end, nr_accesses, age, aggr_interval_us)),
        bytes_by_access_rate=cum,
    )
