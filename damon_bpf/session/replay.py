"""Replaying a perf recording through a kdamond on a fake clock (the session behind ``damon-bpf import``).

:func:`replay` runs a :class:`~damon_bpf.engine.Kdamond` with the ``replay`` operations set
(:class:`~damon_bpf.ops.replay.ReplayOps`) whose ``clock_ns`` and ``sleep`` only move a counter, from the first
sample's time until an aggregation interval ends after the last one, without ever sleeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from damon_bpf.engine.kdamond import Kdamond, Snapshot, StopReason
from damon_bpf.engine.model import Attrs, Ctx, Target
from damon_bpf.errors import InvalidParamsError
from damon_bpf.ops.replay import KERNEL_ADDR_MIN, ReplayOps

__all__ = ("FakeClock", "ReplayResult", "replay")


class FakeClock:
    """A clock for offline replays: ``clock_ns()`` returns the current fake time and ``sleep(seconds)``
    advances it (never blocks)."""

    def __init__(self, start_ns: int) -> None:
        self.now_ns = int(start_ns)

    def clock_ns(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.now_ns += int(round(seconds * 1e9))


@dataclass
class ReplayResult:
    """What a :func:`replay` did.

    :ivar start_ns: the fake clock's start (the first replayed sample's perf time)
    :ivar end_ns: the last replayed sample's perf time
    :ivar nr_snapshots: aggregation intervals reported to the consumers
    :ivar pids: the replayed processes, in target order
    :ivar nr_samples: samples replayed per target
    """

    start_ns: int
    end_ns: int
    nr_snapshots: int
    pids: list[int]
    nr_samples: list[int]
    stop_reason: StopReason
    density: bool
    notes: list[str] = field(default_factory=list)


def replay(samples: Any, attrs: Attrs, consumers: Sequence[Callable[[Snapshot], None]] = (), *,
           pids: Iterable[int] | None = None, estimator: str = "auto", seed: int | None = None,
           ops: ReplayOps | None = None) -> ReplayResult:
    """Replay *samples* (:class:`~damon_bpf.results.perfscript.PerfSamples`) through a kdamond on a fake clock and hand
    every aggregation's :class:`~damon_bpf.engine.Snapshot` to *consumers*. Snapshot times are perf timestamps.

    The fake clock starts at the first sample of the replayed processes and the run ends with the last
    aggregation interval that the samples cover entirely: the samples of a trailing partial interval are left
    out (it would read as a drop in accesses), unless the recording is shorter than one aggregation interval.

    :param pids: the processes to replay (one target each, in this order); default: every process with samples
        that have a user-space data address, most samples first
    :param estimator: see :data:`ESTIMATORS`
    :param seed: seed of the kdamond's random number generator (region splits)
    :param ops: a prepared :class:`ReplayOps` (default: one built from *samples* and *estimator*)
    :raises InvalidParamsError: no samples to replay, or a pid without samples
    """
    addr = np.asarray(samples.addr, dtype=np.uint64)
    pid_col = np.asarray(samples.pid, dtype=np.int64)
    usable = (addr != 0) & (addr < np.uint64(KERNEL_ADDR_MIN)) & (pid_col > 0)
    if pids is None:
        u, c = np.unique(pid_col[usable], return_counts=True)
        pid_list = [int(p) for p in u[np.lexsort((u, -c))]]
    else:
        pid_list = list(dict.fromkeys(int(p) for p in pids))
        present = set(np.unique(pid_col[usable]).tolist())
        missing = [p for p in pid_list if p not in present]
        if missing:
            known = ", ".join(str(p) for p in sorted(present)[:20]) or "none"
            raise InvalidParamsError(f"no samples with data addresses for pid {', '.join(map(str, missing))} "
                                     f"(processes with samples: {known})")
    if not pid_list:
        raise InvalidParamsError("the recording has no samples with user-space data addresses")
    sel = usable & np.isin(pid_col, np.asarray(pid_list, dtype=np.int64))
    times = np.asarray(samples.time_ns, dtype=np.int64)[sel]
    start_ns, end_ns = int(times.min()), int(times.max())
    if ops is None:
        ops = ReplayOps(samples, estimator=estimator)
    clock = FakeClock(start_ns)
    ctx = Ctx(attrs=attrs, ops=ops, rng=random.Random(seed))
    ctx.targets = [Target(pid=p) for p in pid_list]
    nr_snapshots = 0
    kd = Kdamond(ctx, clock_ns=clock.clock_ns, sleep=clock.sleep)

    def _after(snap: Snapshot) -> None:
        nonlocal nr_snapshots
        if snap.time_ns > end_ns + 1 and nr_snapshots:
            kd.stop()  # a trailing partial interval would read as a drop in accesses: left out
            return
        nr_snapshots += 1
        for cb in consumers:
            cb(snap)
        if snap.time_ns > end_ns:
            kd.stop()

    ctx.after_aggregation.append(_after)
    # a safety bound: even at the smallest aggregation interval tuning allows, the run ends in this many
    max_aggrs = (end_ns - start_ns) // attrs.sample_interval_ns + 2
    reason = kd.run(max_aggregations=int(max_aggrs))
    u, c = np.unique(pid_col[sel], return_counts=True)
    per_pid = dict(zip(u.tolist(), c.tolist()))
    return ReplayResult(start_ns, end_ns, nr_snapshots, pid_list, [int(per_pid.get(p, 0)) for p in pid_list],
                        reason, ops.density,
                        list(ops.notes))
