"""Replaying a perf recording into the monitoring core: the ``replay`` operations set.

The offline twin of the ``perf`` source (:mod:`damon_bpf.ops.perf`): samples read from a ``perf.data`` file
(:mod:`damon_bpf.results.perfscript`) are fed to the kdamond on a *fake clock* driven by the perf timestamps
(driver: :func:`damon_bpf.session.replay.replay`). Results are those of a live run that saw the same events.

**Targets.** One per recorded process (or the ``pids`` asked for), always valid: nothing is read from ``/proc``
and no DAMOS action is applied (only ``stat``).

**Ranges.** The kernel's three-regions rule (:func:`~damon_bpf.ops.vaddr.three_regions`) applied to stand-in
VMAs built from the target's sampled pages, set once at ``init``; kernel addresses and address 0 belong to no
target.

**nr_accesses.** Exact events by the interval-hit rule, sampled events by
:func:`~damon_bpf.ops.bpf.density_nr_accesses`; ``estimator="auto"`` (default) uses the density estimate as
soon as any sample is sampled, ``"hits"`` and ``"density"`` force one rule.

See docs/ops.md, section "Replay of a perf recording", for the diagram and the estimator details.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import set_regions, update_regions_access_rate
from damon_bpf.engine.damos import Scheme
from damon_bpf.engine.model import AddrRange, Ctx, Region, Target
from damon_bpf.engine.ops import Applied
from damon_bpf.engine.access_reports import AccessReports, account_reports
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.ops.bpf import PAGE_SZ, density_nr_accesses
from damon_bpf.ops.vaddr import VaddrOps, three_regions

__all__ = ("ReplayOps", "ESTIMATORS", "sample_ranges", "KERNEL_ADDR_MIN")

log = logging.getLogger(__name__)

#: How samples become ``nr_accesses`` (see the module docstring).
ESTIMATORS = ("auto", "hits", "density")

#: Addresses from here up are the kernel's (the top half), never part of a target.
KERNEL_ADDR_MIN = 1 << 63


@dataclass(frozen=True)
class _Range:
    start: int
    end: int


def sample_ranges(addrs: npt.ArrayLike, min_region_sz: int = PAGE_SZ, page_sz: int = PAGE_SZ) -> list[AddrRange]:
    """The address ranges of a target whose samples hit *addrs*: the three-regions rule on stand-in VMAs made of
    runs of adjacent sampled pages (see the module docstring). Kernel addresses and 0 are ignored.

    :return: three ranges; one or two (the runs) when the pages leave fewer than two gaps; none without
        addresses
    """
    a = np.asarray(addrs, dtype=np.uint64).ravel()
    a = a[(a != 0) & (a < np.uint64(KERNEL_ADDR_MIN))]
    if a.size == 0:
        return []
    pages = np.unique(a // np.uint64(page_sz)).astype(np.int64)
    breaks = np.nonzero(np.diff(pages) > 1)[0]
    run_first = np.concatenate([pages[:1], pages[breaks + 1]])
    run_last = np.concatenate([pages[breaks], pages[-1:]])
    vmas = [_Range(int(s) * page_sz, (int(e) + 1) * page_sz) for s, e in zip(run_first, run_last)]
    ranges = three_regions(vmas, min_region_sz)
    if ranges is not None:
        return ranges
    mask = ~(min_region_sz - 1)
    return [AddrRange(v.start & mask, (v.end + min_region_sz - 1) & mask) for v in vmas]


@dataclass(eq=False)
class _ReplayTarget:
    # one target's samples, sorted by time, and where the replay is in them
    time_ns: npt.NDArray[np.int64]
    addr: npt.NDArray[np.uint64]
    period: npt.NDArray[np.int64]
    ip: npt.NDArray[np.uint64]
    is_write: npt.NDArray[np.bool_]
    cursor: int = 0


class ReplayOps(VaddrOps):
    """The ``replay`` operations set: timestamped perf samples replayed as pushed access reports.

    :param samples: a :class:`~damon_bpf.results.perfscript.PerfSamples` (anything with the same columns: ``time_ns``,
        ``pid``, ``addr``, ``ip``, ``period``, ``is_write`` and ``sampled``); targets are matched to its samples
        by pid
    :param estimator: ``auto``, ``hits`` or ``density`` (see the module docstring)
    :param page_sz: the page size of the density estimate and of the stand-in VMAs
    """

    name = "replay"
    batched = True
    supported_actions = frozenset({"stat"})
    manages_regions = True

    def __init__(self, samples: Any = None, *, estimator: str = "auto", page_sz: int = PAGE_SZ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise InvalidParamsError(f"unknown estimator {estimator!r} (one of {', '.join(ESTIMATORS)})")
        if page_sz <= 0 or page_sz & (page_sz - 1):
            raise InvalidParamsError(f"page size must be a power of two (got {page_sz})")
        self.samples = samples
        self.page_sz = page_sz
        self.estimator = estimator
        self.density = False
        #: messages for the user (which estimator, samples left out)
        self.notes: list[str] = []
        #: (region start, region end, instruction pointer, samples) of the last checked window, per target
        self.last_ips: list[list[tuple[int, int, int, int]]] = []
        #: samples of the last checked window per target (replayed into reports or density)
        self.last_nr_samples: list[int] = []
        self._pending_ips: dict[int, list[tuple[int, int, int, int]]] = {}

    # -- hooks -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        """:raises NotSupportedError: no samples were given (the replay source only replays recordings)"""
        if self.samples is None:
            raise NotSupportedError("the replay source replays a perf recording: build it with samples "
                                    "(damon-bpf import perf.data)")

    def init(self, ctx: Ctx) -> None:
        """Split the samples per target and give targets without regions the three regions of their sampled
        addresses.

        :raises NotSupportedError: no samples were given
        :raises InvalidParamsError: a target has no pid, or no usable samples and no regions
        """
        self.check_supported()
        s = self.samples
        sampled = np.asarray(s.sampled, dtype=bool)
        if self.estimator == "auto":
            self.density = bool(sampled.any())
        else:
            self.density = self.estimator == "density"
        self.notes.append("density estimate (sampled events: each sample stands for its period)" if self.density
                          else "interval hits (exact events: every event was recorded)")
        pid = np.asarray(s.pid, dtype=np.int64)
        addr = np.asarray(s.addr, dtype=np.uint64)
        usable = (addr != 0) & (addr < np.uint64(KERNEL_ADDR_MIN))
        for ti, t in enumerate(ctx.targets):
            if t.pid is None:
                raise InvalidParamsError(f"replay: target {ti} has no pid (targets are recorded processes)")
            m = usable & (pid == t.pid)
            idx = np.nonzero(m)[0]
            order = idx[np.argsort(np.asarray(s.time_ns)[idx], kind="stable")]
            data = _ReplayTarget(np.asarray(s.time_ns, dtype=np.int64)[order], addr[order],
                                 np.maximum(np.asarray(s.period, dtype=np.int64)[order], 1),
                                 np.asarray(s.ip, dtype=np.uint64)[order], np.asarray(s.is_write, dtype=bool)[order])
            t.ops_data = data
            if not t.nr_regions:
                ranges = sample_ranges(data.addr, ctx.min_region_sz, self.page_sz)
                if not ranges:
                    raise InvalidParamsError(f"replay: process {t.pid} has no samples with a user-space data "
                                             f"address")
                set_regions(t, ranges, ctx.min_region_sz)
        if ctx.reports is None:
            ctx.reports = AccessReports()

    def update(self, ctx: Ctx) -> None:
        """Nothing: the ranges cover every sampled address of the recording from the start."""

    def target_valid(self, target: Target) -> bool:
        """Always: recorded processes are replayed to the end of the recording, alive or not."""
        return True

    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> Applied:
        """Nothing is applied to recorded processes (``stat`` only counts)."""
        return Applied(0)

    def cleanup(self, ctx: Ctx) -> None:
        """Nothing to release (no pidfds, no probes)."""

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        """Replay the samples of the *nr_samples* sampling intervals that started at ``ctx.window_start_ns``."""
        sample_ns = ctx.attrs.sample_interval_ns
        t0 = ctx.window_start_ns
        t1 = t0 + nr_samples * sample_ns
        if ctx.reports is None:
            ctx.reports = AccessReports()
        windows: list[tuple[Target, _ReplayTarget, slice]] = []
        self.last_ips = []
        self.last_nr_samples = []
        for ti, t in enumerate(ctx.targets):
            d = t.ops_data
            if not isinstance(d, _ReplayTarget):
                self.last_ips.append([])
                self.last_nr_samples.append(0)
                continue
            a = max(d.cursor, int(np.searchsorted(d.time_ns, t0, side="left")))
            b = int(np.searchsorted(d.time_ns, t1, side="left"))
            d.cursor = b
            sl = slice(a, b)
            windows.append((t, d, sl))
            ips = self._ips(t, d, sl)
            self.last_ips.append(ips)
            self._pending_ips.setdefault(ti, []).extend(ips)
            self.last_nr_samples.append(b - a)
            if not self.density and b > a:
                ctx.reports.report(ti, d.addr[sl], d.time_ns[sl], is_write=d.is_write[sl])
        if not self.density:
            return account_reports(ctx, t0, nr_samples)
        mx = 0
        sample_s = ctx.attrs.sample_interval_us / 1e6
        for t, d, sl in windows:
            ra = t.ra
            if not len(ra):
                continue
            events = _weights_in(ra.start, ra.end, d.addr[sl], d.period[sl])
            hits = density_nr_accesses(events, 1, ra.end - ra.start, nr_samples, sample_s, self.page_sz)
            mx = max(mx, update_regions_access_rate(t, hits, nr_samples, ctx.attrs))
        for t in ctx.targets:
            if not isinstance(t.ops_data, _ReplayTarget) and len(t.ra):
                update_regions_access_rate(t, np.zeros(len(t.ra), np.int64), nr_samples, ctx.attrs)
        return mx

    def take_ips(self, target_idx: int) -> list[tuple[int, int, int, int]]:
        """The ``(region start, region end, ip, samples)`` rows of *target_idx* since the last call (every check
        of an aggregation interval; call it from an ``after_aggregation`` consumer), merged by region and ip."""
        rows = self._pending_ips.pop(target_idx, [])
        acc: dict[tuple[int, int, int], int] = {}
        for s, e, ip, n in rows:
            acc[(s, e, ip)] = acc.get((s, e, ip), 0) + n
        return [(s, e, ip, n) for (s, e, ip), n in sorted(acc.items())]

    # -- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _ips(t: Target, d: _ReplayTarget, sl: slice) -> list[tuple[int, int, int, int]]:
        addr, ip = d.addr[sl], d.ip[sl]
        if addr.size == 0 or not len(t.ra):
            return []
        ri, ok = _region_index(t.ra.start, t.ra.end, addr)
        if not ok.any():
            return []
        pairs = np.stack([ri[ok], ip[ok].astype(np.int64)], axis=1)
        u, c = np.unique(pairs, axis=0, return_counts=True)
        starts, ends = t.ra.start, t.ra.end
        return [(int(starts[r]), int(ends[r]), int(i) & 0xFFFF_FFFF_FFFF_FFFF, int(n))
                for (r, i), n in zip(u.tolist(), c.tolist())]


def _region_index(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
                  addr: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    a = addr.astype(np.int64)
    ri = np.searchsorted(starts, a, side="right") - 1
    ok = (ri >= 0) & (a < ends[np.maximum(ri, 0)])
    return ri, ok


def _weights_in(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], addr: npt.NDArray[np.uint64],
                period: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    # the events (sum of sample periods) that fell in each region
    ri, ok = _region_index(starts, ends, addr)
    return np.bincount(ri[ok], weights=period[ok], minlength=starts.size).astype(np.int64)
