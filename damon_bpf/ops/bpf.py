"""Access sources backed by the in-kernel aggregation of ``bpf/access_agg.h``: the common part of the
``fault`` and ``perf`` operations sets.

**nr_accesses** is on the one scale of every source (``0..aggr/sample`` sampling intervals per aggregation
window). *Exact events* (page faults, software page-fault perf events with period 1) count the sampling
intervals with at least one event. *Sampled events* (PEBS/IBS with a period ``P``) go through a density
estimate: :func:`density_nr_accesses`.

**Windows.** Each window's region table is published into the BPF maps at the first ``prepare_access_checks``
after the regions changed, and counters are drained at the window's boundary check; late events are moved to
the new window's first sampling intervals.

See docs/ops.md, section "The BPF sources: fault and perf", for the estimator and the window bookkeeping, and
docs/design.md, "In-kernel aggregation", for the BPF side.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import next_boundary_sis, update_regions_access_rate
from damon_bpf.engine.model import Ctx, Target
from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError
from damon_bpf.ops.vaddr import VaddrOps
from damon_bpf.linux.sysctl import SysctlOverride

__all__ = ("BpfAccessOps", "density_nr_accesses")

log = logging.getLogger(__name__)

PAGE_SZ = 4096


def density_nr_accesses(nr_events: npt.ArrayLike, period: int, sz_bytes: npt.ArrayLike, nr_samples: int,
                        sample_s: float, page_sz: int = PAGE_SZ) -> npt.NDArray[np.int64]:
    """``nr_accesses`` of regions from sampled event counts (see the module docstring).

    :param nr_events: events per region in the window
    :param period: accesses each event stands for (the sampling period)
    :param sz_bytes: region sizes
    :param nr_samples: sampling intervals in the window
    :param sample_s: the sampling interval, seconds
    """
    ev = np.asarray(nr_events, dtype=np.float64)
    pages = np.maximum(np.asarray(sz_bytes, dtype=np.float64) / page_sz, 1.0)
    window_s = max(nr_samples * sample_s, 1e-9)
    rate = ev * period / pages / window_s
    p = -np.expm1(-rate * sample_s)
    out: npt.NDArray[np.int64] = np.minimum(np.rint(p * nr_samples), nr_samples).astype(np.int64)
    return out


def _low_bits(n: int, words: int) -> npt.NDArray[np.uint64]:
    # bits 0..n-1 of a bitmap of *words* u64 words (bit i: word i // 64, bit i % 64), as a row to AND with
    return np.array([(1 << max(0, min(64, n - 64 * w))) - 1 for w in range(words)], dtype=np.uint64)


class BpfAccessOps(VaddrOps):
    """:class:`~damon_bpf.ops.vaddr.VaddrOps` whose accesses come from an aggregation BPF program.

    :param rate_limit: events per second per CPU the BPF program counts (overhead bound; 0: unlimited)
    :param ip_entries: capacity of the instruction-pointer attribution map (0: off)
    :param bpf_stats: turn on ``kernel.bpf_stats_enabled`` for the session to report BPF ns per event
    :param extra_targets: room for processes added later (``--follow-children``)
    :param thread_entries: capacity of the per-thread attribution map (0: off; see :mod:`damon_bpf.ops.threads`)
    :param writes_only: count write events only (the program drops reads: ``WRITES_ONLY``)
    """

    family = "pagefault"
    needs_root = True

    def __init__(self, *, rate_limit: int = 200_000, ip_entries: int = 4096, bpf_stats: bool = True,
                 extra_targets: int = 0, proc_root: str = "/proc", use_pidfd: bool = True,
                 thread_entries: int = 4096, writes_only: bool = False) -> None:
        from damon_bpf.ops.threads import ThreadCollector

        super().__init__(proc_root=proc_root, use_pidfd=use_pidfd)
        if thread_entries < 0:
            raise InvalidParamsError("the thread attribution size must not be negative")
        self.thread_entries = thread_entries
        self.writes_only = writes_only
        #: per-thread and per-CPU attribution of the last drained window
        self.threads = ThreadCollector(proc_root)
        if rate_limit < 0 or ip_entries < 0 or extra_targets < 0:
            raise InvalidParamsError("rate limit, attribution size and extra targets must not be negative")
        self.rate_limit = rate_limit
        self.ip_entries = ip_entries
        self.bpf_stats = bpf_stats
        self.extra_targets = extra_targets
        self.probe: Any = None
        self.attach_point = ""
        #: messages for the user about what this source can and cannot see here
        self.notes: list[str] = []
        self._overrides: list[SysctlOverride] = []
        self._pending_publish = True
        self._window_first_sis = 0
        self._last_nr_samples = 0
        self._tables: list[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]] = []
        self._carry: npt.NDArray[np.uint64] | None = None  # late events moved into the window, packed bits
        self._ips_counted = -1  # the program's "counted" when agg_ips was last drained
        self._masks: dict[tuple[int, int, bool], npt.NDArray[np.uint64]] = {}
        self._registered: dict[int, int] = {}
        self._max_nr = 0
        self._stats_prev: tuple[float, dict[str, int], tuple[int, int] | None] | None = None
        #: events per region of the last drained window, per target (raw counts for displays)
        self.last_events: list[npt.NDArray[np.uint64]] = []
        self.last_writes: list[npt.NDArray[np.uint64]] = []
        #: (region start, region end, instruction pointer, events) of the last drained window, per target
        self.last_ips: list[list[tuple[int, int, int, int]]] = []

    # -- setup -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        super().check_supported()
        if self.needs_root and os.geteuid() != 0:
            raise PermissionDeniedError(f"the {self.name} source loads BPF programs: run as root (sudo)")
        from damon_bpf.probes._bcc import load_bcc

        load_bcc()

    def probe_config(self, ctx: Ctx) -> Any:
        from damon_bpf.probes.access import AccessProbeConfig

        a = ctx.attrs
        aggr_samples = a.aggr_samples or a.max_nr_accesses
        return AccessProbeConfig(
            family=self.family,
            max_targets=max(1, len(ctx.targets) + self.extra_targets),
            # the published tables hold at most max_nr_regions after a split, plus what min_nr_regions and
            # DAMOS splits add on top (a few per target): a quarter more keeps the search one step shorter
            # than doubling (each binary-search step costs about 20 ns per event)
            max_regions=a.max_nr_regions + max(64, a.max_nr_regions // 4)
            + 64 * (len(ctx.targets) + self.extra_targets + 1),
            max_intervals=aggr_samples + 64,
            ip_entries=self.ip_entries,
            rate_limit=self.rate_limit,
            rate_burst=max(1, self.rate_limit // 10) if self.rate_limit else 1,
            thread_entries=self.thread_entries,
            writes_only=self.writes_only,
        )

    def init(self, ctx: Ctx) -> None:
        from damon_bpf.probes.access import AccessProbe

        super().init(ctx)
        try:
            self.probe = AccessProbe(self.probe_config(ctx)).open()
            self.attach(ctx)
            for ti, t in enumerate(ctx.targets):
                if t.pid is not None:
                    self.probe.set_target(t.pid, ti)
                    self._registered[t.pid] = ti
            if self.bpf_stats:
                try:
                    self._overrides.append(SysctlOverride("kernel.bpf_stats_enabled", "1").apply())
                except Exception as err:  # stats are optional: say so and go on
                    self.notes.append(f"BPF run-time statistics unavailable: {err}")
        except BaseException:
            self.cleanup(ctx)
            raise
        self._pending_publish = True

    def attach(self, ctx: Ctx) -> None:
        """Attach the BPF program(s) to their events; subclasses implement it."""
        raise NotImplementedError

    def cleanup(self, ctx: Ctx) -> None:
        try:
            if self.probe is not None:
                self.probe.close()
                self.probe = None
        finally:
            for o in reversed(self._overrides):
                try:
                    o.restore()
                except Exception:
                    log.exception("restoring %s failed", o.name)
            self._overrides.clear()
            super().cleanup(ctx)

    # -- the window --------------------------------------------------------------------------------------

    def _publish(self, ctx: Ctx) -> None:
        tables = []
        for t in ctx.targets:
            if t.pid is not None and not self.target_valid(t):
                tables.append((np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
            else:
                tables.append((t.ra.start.astype(np.uint64), t.ra.end.astype(np.uint64)))
        old_tables = self._tables
        old_gen = self.probe.gen
        sample_ns = ctx.attrs.sample_interval_ns
        self.probe.publish(tables, ctx.window_start_ns, sample_ns)
        self._tables = tables
        self._carry = None
        if old_tables:
            self._carry = self._carry_late(self.probe.take_bits(old_gen), old_tables, tables)
        self._window_first_sis = ctx.passed_sample_intervals

    def _carry_late(self, bits: npt.NDArray[np.uint64], old_tables: list[Any],
                    new_tables: list[Any]) -> npt.NDArray[np.uint64] | None:
        # Bits n_old.. of the old generation: events after the window's boundary check, before this publish.
        # Bit n_old + j becomes bit j of the new window, in every new region overlapping the old one
        # (packed like the counters' bitmaps; None when there are none, the usual case for an idle target).
        n_old = self._last_nr_samples
        if bits.size == 0:
            return None
        words = bits.shape[1]
        late = bits & self._low_bits(n_old, words, invert=True)
        if not late.any():
            return None
        rows = np.flatnonzero(late.any(axis=1))
        unpacked = np.unpackbits(late[rows].view(np.uint8).reshape(rows.size, -1), axis=1, bitorder="little")
        shifted = np.zeros_like(unpacked)
        shifted[:, :unpacked.shape[1] - n_old] = unpacked[:, n_old:]
        moved = np.packbits(shifted, axis=1, bitorder="little").view(np.uint64).reshape(rows.size, words)
        carry = np.zeros((sum(s.size for s, _ in new_tables), words), dtype=np.uint64)
        old_off = np.cumsum([0] + [s.size for s, _ in old_tables])
        new_off = np.cumsum([0] + [s.size for s, _ in new_tables])
        for ti in range(min(len(old_tables), len(new_tables))):
            lo, hi = np.searchsorted(rows, old_off[ti:ti + 2])
            if lo == hi:
                continue
            sel = rows[lo:hi] - old_off[ti]
            ns, ne = new_tables[ti]
            # the new regions [a, b) overlapping each old region with late bits
            a = np.searchsorted(ne, old_tables[ti][0][sel], side="right")
            b = np.searchsorted(ns, old_tables[ti][1][sel], side="left")
            nr = np.maximum(b - a, 0)
            if not nr.any():
                continue
            src = np.repeat(np.arange(lo, hi), nr)
            dst = new_off[ti] + np.repeat(a, nr) + (np.arange(src.size) - np.repeat(np.cumsum(nr) - nr, nr))
            np.bitwise_or.at(carry, dst, moved[src])
        return carry

    def _low_bits(self, n: int, words: int, invert: bool = False) -> npt.NDArray[np.uint64]:
        # _low_bits(), or the bits from n on with *invert*, kept per (n, words, invert)
        m = self._masks.get((n, words, invert))
        if m is None:
            m = _low_bits(n, words)
            m = self._masks[(n, words, invert)] = ~m if invert else m
        return m

    def prepare_access_checks(self, ctx: Ctx) -> None:
        if self._pending_publish:
            self._publish(ctx)
            self._pending_publish = False

    def nr_accesses_of(self, ctx: Ctx, drained: Any, nr_samples: int) -> npt.NDArray[np.int64]:
        """Per region (all targets' tables concatenated), the sampling intervals with an access: at most
        *nr_samples* each."""
        bits = drained.bits
        if bits.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        if self._carry is not None and self._carry.shape == bits.shape:
            bits = bits | self._carry
        hits: npt.NDArray[np.int64] = np.bitwise_count(bits & self._low_bits(nr_samples, bits.shape[1])).sum(
            axis=1, dtype=np.int64)
        return hits

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        if not self.batched and ctx.passed_sample_intervals < next_boundary_sis(ctx):
            return self._max_nr
        n = max(1, ctx.passed_sample_intervals - self._window_first_sis)
        d = self.probe.read()
        hits = self.nr_accesses_of(ctx, d, n)  # at most n each (both rules count at most n intervals)
        off = 0
        mx = 0
        self.last_events, self.last_writes = [], []
        for t, (s, _) in zip(ctx.targets, self._tables):
            k = s.size
            if k != len(t.ra):  # regions changed without a publish (cannot happen in the kdamond loop)
                k = 0
            if k:
                mx = max(mx, update_regions_access_rate(t, hits[off:off + k], n, ctx.attrs))
                self.last_events.append(d.nr_events[off:off + k])
                self.last_writes.append(d.nr_writes[off:off + k])
            else:
                update_regions_access_rate(t, np.zeros(len(t.ra), np.int64), n, ctx.attrs)
                self.last_events.append(np.zeros(len(t.ra), np.uint64))
                self.last_writes.append(np.zeros(len(t.ra), np.uint64))
            off += s.size
        self._collect_ips()
        self.threads.collect(self.probe, self._tables)
        self._last_nr_samples = n
        self._pending_publish = True
        self._max_nr = mx
        return mx

    def _collect_ips(self) -> None:
        per_target: list[list[tuple[int, int, int, int]]] = [[] for _ in self._tables]
        self.last_ips = per_target
        if not self.probe.config.ip_entries:
            return
        # The program counts an event after its attribution entry is in: while the counter has not moved
        # since the last drain began, the map holds nothing new and is not drained (an idle target's case).
        counted = self.probe.nr_counted()
        if counted == self._ips_counted:
            return
        self._ips_counted = counted
        slots, ips, counts = self.probe.drain_ips()
        if not slots.size:
            return
        r = self.probe.config.regions_pow2
        idx = (slots % r).astype(np.int64)
        off = np.cumsum([0] + [s.size for s, _ in self._tables])
        keep = (slots // r == self.probe.gen) & (idx < off[-1])
        idx, ips, counts = idx[keep], ips[keep], counts[keep]
        if not idx.size:
            return
        starts = np.concatenate([s for s, _ in self._tables])[idx].tolist()
        ends = np.concatenate([e for _, e in self._tables])[idx].tolist()
        if len(self._tables) == 1:
            per_target[0] = list(zip(starts, ends, ips.tolist(), counts.tolist()))
            return
        tis = (np.searchsorted(off, idx, side="right") - 1).tolist()
        for ti, row in zip(tis, zip(starts, ends, ips.tolist(), counts.tolist())):
            per_target[ti].append(row)

    def raw_counts(self, target_idx: int, starts: npt.ArrayLike, ends: npt.ArrayLike) -> tuple[
            npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Events and write events of the last drained window inside each ``[starts[i], ends[i])`` (the
        regions of a snapshot, which are merges of the drained regions)."""
        s = np.asarray(starts, dtype=np.int64)
        e = np.asarray(ends, dtype=np.int64)
        if target_idx >= len(self.last_events) or target_idx >= len(self._tables):
            return np.zeros(s.size, np.int64), np.zeros(s.size, np.int64)
        ts = self._tables[target_idx][0].astype(np.int64)
        ev = np.concatenate([[0], np.cumsum(self.last_events[target_idx].astype(np.int64))])
        wr = np.concatenate([[0], np.cumsum(self.last_writes[target_idx].astype(np.int64))])
        if ts.size != ev.size - 1:
            return np.zeros(s.size, np.int64), np.zeros(s.size, np.int64)
        a = np.searchsorted(ts, s, side="left")
        b = np.searchsorted(ts, e, side="left")
        return ev[b] - ev[a], wr[b] - wr[a]

    # -- targets added while running (--follow-children) -------------------------------------------------

    def add_target(self, ctx: Ctx, pid: int) -> Target:
        """Monitor one more process (``--follow-children``): as vaddr does, then count its events too.

        :raises NotSupportedError: the BPF program has no room for another process
        """
        if len(ctx.targets) >= self.probe.config.max_targets:
            raise NotSupportedError(f"at most {self.probe.config.max_targets} processes can be monitored at once")
        t = super().add_target(ctx, pid)
        ti = len(ctx.targets) - 1
        self.probe.set_target(pid, ti)
        self._registered[pid] = ti
        self._pending_publish = True
        return t

    # -- what the user sees ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Totals for the live view: events/s, drops, BPF ns per event."""
        if self.probe is None:
            return {}
        now = time.monotonic()
        st = self.probe.stats()
        run = self.probe.prog_run_stats()
        out: dict[str, Any] = {
            "attach": self.attach_point,
            "events": st["events"],
            "dropped_rate_limit": st["dropped_rate_limit"],
            "outside_regions": st["no_region"],
            "ip_map_full": st["ip_map_full"],
        }
        if run is not None:  # cumulative (run_time_ns, run_cnt) of the attached programs
            out["bpf_run_ns"], out["bpf_run_cnt"] = run
        if self._stats_prev is not None:
            t0, st0, run0 = self._stats_prev
            dt = max(now - t0, 1e-6)
            out["events_per_s"] = round((st["events"] - st0["events"]) / dt, 1)
            if run is not None and run0 is not None and run[1] > run0[1]:
                out["bpf_ns_per_event"] = round((run[0] - run0[0]) / (run[1] - run0[1]), 1)
        self._stats_prev = (now, st, run)
        return out

