"""The kdamond: DAMON's monitoring loop, runnable in the foreground or in a thread.

Mirrors ``kdamond_fn()`` of ``mm/damon/core.c``, step for step:

    ops.init → apply_min_nr_regions
    loop until stopped or no target is valid:
        ops.prepare_access_checks → sleep(sample interval) → ops.check_accesses
        at an aggregation boundary: merge (and age) → apply_min_nr_regions → after-aggregation callbacks
        DAMOS (kdamond_apply_schemes; damon_bpf.engine.damos), paused by the schemes' watermarks
        at an aggregation boundary: interval tuning → reset aggregated → split
        at an ops-update boundary: ops.update
    ops.cleanup (always)

Time, sleep and randomness are injected (``clock_ns``, ``sleep``, ``ctx.rng``) so tests are deterministic.

Batched checks: when ``ops.batched`` is true the loop does not wake up every sampling interval; it sleeps to
the next boundary (aggregation, ops update, a scheme's apply interval) and lets the ops account all sampling
intervals in between at once. Nothing but sampling happens between boundaries in the kernel loop either, so
the results are the same; the per-sample Python cost disappears.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import (
    apply_min_nr_regions,
    apply_source_intervals,
    init_ctx,
    merge_regions,
    next_boundary_sis,
    reset_aggregated,
    split_regions,
    tune_intervals,
)
from damon_bpf.engine.damos import apply_schemes, wait_activation_us
from damon_bpf.engine.model import Ctx
from damon_bpf.engine.ops import BaseOperations
from damon_bpf.errors import InvalidParamsError, NotSupportedError

__all__ = ("Kdamond", "Snapshot", "TargetSnapshot", "RegionSnapshot", "StopReason")

log = logging.getLogger(__name__)


class StopReason(enum.Enum):
    RUNNING = "running"
    REQUESTED = "stop requested"
    TARGETS_GONE = "every target exited"
    ERROR = "error"


class RegionSnapshot(NamedTuple):
    start: int
    end: int
    nr_accesses: int
    age: int
    nr_accesses_bp: int
    last_nr_accesses: int


@dataclass(frozen=True, eq=False)
class TargetSnapshot:
    """One target's regions at an aggregation boundary, as ``int64`` column arrays (copies)."""

    pid: int | None
    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    nr_accesses: npt.NDArray[np.int64]
    age: npt.NDArray[np.int64]
    nr_accesses_bp: npt.NDArray[np.int64]
    last_nr_accesses: npt.NDArray[np.int64]
    #: estimated bytes accessed within the snapshot's ``working_set_window_us`` (the source's estimate:
    #: ``Operations.working_set_bytes()``)
    working_set_bytes: int = 0
    #: per region, the hits of each of the context's probes (``(nr_regions, DAMON_MAX_PROBES)``), or None
    #: when the context has no probes
    probe_hits: npt.NDArray[np.int64] | None = None

    @property
    def regions(self) -> list[RegionSnapshot]:
        """The regions as tuples (built on each call; the arrays are the cheap form)."""
        return [RegionSnapshot(*row) for row in zip(
            self.start.tolist(), self.end.tolist(), self.nr_accesses.tolist(), self.age.tolist(),
            self.nr_accesses_bp.tolist(), self.last_nr_accesses.tolist())]

    @property
    def nr_regions(self) -> int:
        return int(self.start.size)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The monitoring results of one aggregation interval: merged regions with their full-window
    ``nr_accesses`` (in sampling intervals, 0..``max_nr_accesses``) and ages (in aggregation intervals)."""

    time_ns: int  # CLOCK_MONOTONIC at the end of the aggregation interval
    start_time_ns: int  # when the kdamond started
    passed_sample_intervals: int
    sample_interval_us: int
    aggr_interval_us: int
    max_nr_accesses: int
    targets: tuple[TargetSnapshot, ...]
    #: the window of the targets' ``working_set_bytes``, µs
    working_set_window_us: int = 0

    @property
    def nr_regions(self) -> int:
        return sum(t.nr_regions for t in self.targets)


def take_snapshot(ctx: Ctx, now_ns: int, start_ns: int) -> Snapshot:
    a = ctx.attrs
    ops = ctx.ops if ctx.ops is not None else BaseOperations()
    wss, window_us = ops.working_set_bytes(ctx, ctx.working_set_window_us)
    return Snapshot(
        time_ns=now_ns,
        start_time_ns=start_ns,
        passed_sample_intervals=ctx.passed_sample_intervals,
        sample_interval_us=a.sample_interval_us,
        aggr_interval_us=a.aggr_interval_us,
        max_nr_accesses=a.max_nr_accesses,
        targets=tuple(
            TargetSnapshot(t.pid, t.ra.start.copy(), t.ra.end.copy(), t.ra.nr_accesses.copy(), t.ra.age.copy(),
                           t.ra.nr_accesses_bp.copy(), t.ra.last_nr_accesses.copy(), int(w),
                           t.ra.probe_hits[:, :len(ctx.probes)].copy() if ctx.probes else None)
            for t, w in zip(ctx.targets, wss)),
        working_set_window_us=int(window_us),
    )


class Kdamond:
    """Runs a :class:`~damon_bpf.engine.model.Ctx` with its ops.

    :param clock_ns: CLOCK_MONOTONIC-like clock in ns
    :param sleep: ``sleep(seconds)``; the default waits on the stop event so :meth:`stop` interrupts it
    """

    def __init__(self, ctx: Ctx, *, clock_ns: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] | None = None) -> None:
        if ctx.ops is None:
            ctx.ops = BaseOperations()
        self.ctx = ctx
        self.clock_ns = clock_ns
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._wait
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._initialized = False
        self._closed = False
        self._sz_limit = 0
        self.start_ns = 0
        self._window_start_ns = 0
        self.stop_reason = StopReason.RUNNING
        #: sampling windows skipped because the loop fell behind by more than an aggregation interval
        self.nr_resyncs = 0
        self.nr_aggregations = 0

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # -- lifecycle -------------------------------------------------------------------------------------

    def init(self) -> None:
        """Validate, ``ops.init()``, and set the loop's deadlines (``kdamond_init_ctx``)."""
        ctx = self.ctx
        ctx.validate()
        assert ctx.ops is not None
        ctx.clock_ns = self.clock_ns
        for s in ctx.schemes:
            s.validate()
            if s.action.value not in ctx.ops.supported_actions:
                raise NotSupportedError(ctx.ops.action_unsupported_reason(s.action.value))
            ctx.ops.check_scheme(s, ctx)  # filters or goals the ops cannot honour are refused here, with the reason
        ctx.ops.check_supported()
        ctx.ops.init(ctx)
        init_ctx(ctx)
        self._sz_limit = apply_min_nr_regions(ctx)
        self.start_ns = self._window_start_ns = self.clock_ns()
        self._initialized = True

    def need_stop(self) -> bool:
        """``kdamond_need_stop()``: asked to stop, or no target is valid any more."""
        if self._stop.is_set():
            if self.stop_reason is StopReason.RUNNING:
                self.stop_reason = StopReason.REQUESTED
            return True
        ops = self.ctx.ops
        assert ops is not None
        if self.ctx.targets and not any(ops.target_valid(t) for t in self.ctx.targets):
            self.stop_reason = StopReason.TARGETS_GONE
            return True
        return False

    def stop(self) -> None:
        """Ask the loop to stop; safe from any thread or a signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, max_aggregations: int | None = None) -> StopReason:
        """Run in the calling thread until stopped, every target is gone, or *max_aggregations* aggregation
        intervals have passed. :meth:`close` (``ops.cleanup()``) always runs."""
        try:
            if not self._initialized:
                self.init()
            while not self.need_stop():
                self.step()
                if max_aggregations is not None and self.nr_aggregations >= max_aggregations:
                    self.stop_reason = StopReason.REQUESTED
                    break
        except BaseException:
            self.stop_reason = StopReason.ERROR
            raise
        finally:
            self.close()
        return self.stop_reason

    def close(self) -> None:
        """``ops.cleanup()``, once (``kdamond_fn``'s ``done:`` path): after :meth:`run`, or instead of it when
        the loop never ran. Idempotent."""
        if self._closed:
            return
        self._closed = True
        assert self.ctx.ops is not None
        self.ctx.ops.cleanup(self.ctx)

    def start(self, max_aggregations: int | None = None) -> None:
        """Run in a background thread; :meth:`join` waits and re-raises its error, if any."""
        if self._thread is not None:
            raise InvalidParamsError("kdamond already started")

        def _body() -> None:
            try:
                self.run(max_aggregations)
            except BaseException as err:  # handed to join()
                self._error = err

        self._thread = threading.Thread(target=_body, name="kdamond", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> StopReason:
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return self.stop_reason

    # -- the loop --------------------------------------------------------------------------------------

    def step(self) -> None:
        """One iteration of ``kdamond_fn``'s loop (several sampling intervals at once for batched ops)."""
        ctx = self.ctx
        ops = ctx.ops
        assert ops is not None
        if not self._initialized:
            self.init()
        if ctx.schemes:
            wait_us = wait_activation_us(ctx)
            if wait_us:
                # kdamond_wait_activation(): every scheme is deactivated by its watermarks; monitoring pauses
                self._sleep(wait_us / 1e6)
                self._window_start_ns = self.clock_ns()
                return
        attrs = ctx.attrs
        nas = ctx.next_aggregation_sis
        nus = ctx.next_ops_update_sis
        nr_samples = 1
        if ops.batched:
            nr_samples = max(1, next_boundary_sis(ctx) - ctx.passed_sample_intervals)
        sample_ns = attrs.sample_interval_ns

        ctx.window_start_ns = self._window_start_ns
        ops.prepare_access_checks(ctx)
        observes = ops.observes_samples
        if observes:
            # kdamond_fn() sleeps a full sampling interval after preparing: a slow preparation (clearing Accessed
            # bits) must not shorten the time the checks observe
            self._window_start_ns = max(self._window_start_ns, self.clock_ns())
            ctx.window_start_ns = self._window_start_ns
        deadline = self._window_start_ns + nr_samples * sample_ns
        if observes and ops.batched:
            for i in ops.sample_points(ctx, nr_samples):
                if not 0 < i < nr_samples:
                    continue
                at = self._window_start_ns + i * sample_ns
                now = self.clock_ns()
                if at > now:
                    self._sleep((at - now) / 1e9)
                if self._stop.is_set():
                    return
                ops.observe(ctx, i)
        now = self.clock_ns()
        if deadline > now:
            self._sleep((deadline - now) / 1e9)
        if self._stop.is_set():
            return
        ctx.window_start_ns = self._window_start_ns
        ctx.passed_sample_intervals += nr_samples
        max_nr_accesses = ops.check_accesses(ctx, nr_samples)
        if ctx.probes:
            ops.apply_probes(ctx, nr_samples)
        self._window_start_ns = deadline
        now = self.clock_ns()
        if now - deadline > attrs.aggr_interval_us * 1000:
            # fell far behind (suspended, overloaded): start the next window now rather than catch up
            self.nr_resyncs += 1
            self._window_start_ns = now

        aggregated = ctx.passed_sample_intervals >= nas
        if aggregated:
            merge_regions(ctx, max_nr_accesses // 10, self._sz_limit)
            self._sz_limit = apply_min_nr_regions(ctx)
            if ctx.after_aggregation:
                snap = take_snapshot(ctx, deadline, self.start_ns)
                for cb in ctx.after_aggregation:
                    cb(snap)

        if ctx.damos_hook is not None:
            ctx.damos_hook(ctx)
        elif ctx.schemes:
            apply_schemes(ctx)

        si = attrs.sample_us_nonzero
        if aggregated:
            g = ctx.attrs.intervals_goal
            if g.aggrs and ctx.passed_sample_intervals >= ctx.next_intervals_tune_sis:
                ctx.next_aggregation_sis = nas
                ctx.next_intervals_tune_sis += ctx.attrs.aggr_samples * g.aggrs
                tune_intervals(ctx, floor_us=ops.min_sample_us(ctx))
                si = ctx.attrs.sample_us_nonzero
            elif ctx.attrs.source_intervals is not None and not g.aggrs:
                req = ops.requested_intervals(ctx)
                if req is not None:
                    ctx.next_aggregation_sis = nas
                    if apply_source_intervals(ctx, *req):
                        si = ctx.attrs.sample_us_nonzero
            ctx.next_aggregation_sis = nas + ctx.attrs.aggr_interval_us // si
            reset_aggregated(ctx)
            split_regions(ctx)
            self.nr_aggregations += 1

        if ctx.passed_sample_intervals >= nus:
            ctx.next_ops_update_sis = nus + ctx.attrs.ops_update_interval_us // si
            ops.update(ctx)
