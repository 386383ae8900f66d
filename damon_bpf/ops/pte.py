"""The ``pte`` access source: DAMON's own access check, PTE Accessed bits, from user space.

Mirrors the access check of ``mm/damon/vaddr.c`` with the clearing spent differently: the kernel clears one random
page per region every sampling interval for tens of ns; from user space a clear costs microseconds (and a TLB
flush), so this source clears its probe pages once per window and reads them every sampling interval
(:mod:`damon_bpf.ops.pte_sampling`: first touches give the kernel's per-interval access chance, and probes that
persist give the working set within a window). ``nr_accesses`` is on the kernel's scale; resident memory is seen,
anonymous or not, without swap.

**Reading** (:mod:`damon_bpf.probes.pte`): one BPF program run, attached to nothing (``BPF_PROG_TEST_RUN``), walks
a target's page tables for a batch of addresses, locklessly. Pages the kernel's ``damon_get_folio()`` would not
return (the zero page, folios off the LRU) read as not accessed. **Clearing**: ``/sys/kernel/mm/page_idle/bitmap``
where the kernel has it (its own mkold path: no TLB flush, ``PG_young`` kept), else ``process_madvise(MADV_COLD)``
of the probes whose bit is set, or ``/proc/<pid>/clear_refs``, chosen per target by measured cost; large folios
are never split. **Bounded cost** (:mod:`damon_bpf.ops.pte_cost`): with source-chosen intervals (its default) the
aggregation interval is kept within 100 ms .. 1 s and long enough for ``cpu_budget`` of one core.

See docs/pte.md for the walk, the estimators, the costs and the safety argument.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import update_regions_access_rate
from damon_bpf.engine.model import Ctx, Target
from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError, TargetGoneError
from damon_bpf.ops.pte_cost import SOFT_MAX_AGGR_US, CostModel, choose_intervals, probe_budget
from damon_bpf.ops.pte_clear import EWMA, Clearing, PteTarget
from damon_bpf.ops.pte_frames import PageFrames, anon_mthp_enabled
from damon_bpf.ops.pte_sampling import HISTORY, ProbeSet, read_points, stochastic_round
from damon_bpf.ops.sources.pte import CLEAR_METHODS
from damon_bpf.ops.vaddr import VaddrOps

__all__ = ("PteOps", "CLEAR_METHODS")

log = logging.getLogger(__name__)

#: How often the resident size is re-read and the clearing method chosen.
_HOUSEKEEPING_NS = 1_000_000_000
#: Intervals change at most this often unless the budget is exceeded by 20%.
_RETUNE_NS = 2_000_000_000
#: Probes per region at most, on average over a target, and the least a target may have if the budget allows.
_MAX_PROBES_PER_REGION = 16
_MIN_PROBES_PER_TARGET = 512
#: A probe's key: its target above these bits, its user address below (user space ends below 2^47 with 4-level
#: paging, 2^56 with 5-level).
_KEY_SHIFT_L4 = 48
_KEY_SHIFT_L5 = 57
#: The least share of the probe budget the probes give way to when windows cost more than the budget.
_PROBE_SCALE_MIN = 0.02
#: The first read given to probes the reads must skip (a set bit that could not be cleared tells nothing).
_SKIP = 1 << 62
#: WalkStatus.MM_DEAD (bpf/pte.bpf.c enum pte_ret)
_MM_DEAD = 2
#: Chance that a probe retires after a window (a new random page of its region replaces it).
_RETIRE_CHANCE = 1 / 32


class PteOps(VaddrOps):
    """The ``pte`` operations set (see the module docstring).

    :param clear: ``"auto"`` (page_idle where available, else by measured cost), ``"page_idle"``,
        ``"madvise"`` or ``"clear_refs"``
    :param cpu_budget: the share of one core the monitor may spend (0.01: 1%); 0: no bound
    """

    name = "pte"
    batched = True
    observes_samples = True

    def __init__(self, *, clear: str = "auto", cpu_budget: float = 0.01, proc_root: str = "/proc",
                 sys_root: str = "/sys", use_pidfd: bool = True) -> None:
        super().__init__(proc_root=proc_root, use_pidfd=use_pidfd, sys_root=sys_root)
        if clear not in CLEAR_METHODS:
            raise InvalidParamsError(f"unknown clear method {clear!r} (known: {', '.join(CLEAR_METHODS)})")
        if not 0 <= cpu_budget <= 1:
            raise InvalidParamsError("the pte source's CPU budget is a share of one core, within 0..1")
        self.clear = clear
        self.cpu_budget = cpu_budget
        self.walker: Any = None
        self.attach_point = ""
        #: messages for the user about what this source can and cannot see here
        self.notes: list[str] = []
        self.cost = CostModel()
        self._pt: dict[int, PteTarget] = {}  # by target index
        self._rng = np.random.default_rng()
        self.frames = PageFrames()
        self.clearing = Clearing(self.frames)
        self._windows_us: collections.deque[int] = collections.deque(maxlen=HISTORY)
        # thread CPU marks of the current window (see _account_window)
        self._mark_prep_start = self._mark_prep_end = self._mark_read_end = -1
        self._prep_ns = 0
        self._loop_n = 0
        self._checks = 0  # probe reads in the current window
        self._last_checks = 0
        self._last_window_ns = 0.0
        self._retuned_ns = 0
        self._housekept_ns = 0
        self._windows = 0
        self._warned_budget = False
        self._probe_target = -1
        self._nslots = 0
        self._aggr_us = 200_000
        self._wss_window_us = 1_000_000
        #: the probes of every target, keyed (target << _shift | address): see pte_sampling.ProbeSet
        self._probes = ProbeSet()
        self._probe_scale = 1.0
        #: probes MADV_COLD cleared this window: MADV_COLD deactivates, and a folio waits off the LRU in a per-CPU
        #: batch until it drains, so their LRU state says nothing about what the kernel's check would see
        self._advised = np.zeros(0, bool)
        self._reset: set[int] = set()  # targets whose probes go at the next window (exec)
        self._shift = _KEY_SHIFT_L4
        self._mask = (1 << _KEY_SHIFT_L4) - 1
        self._live_now: list[tuple[int, Target, PteTarget]] = []
        self._region_offs = np.zeros(1, np.int64)
        self._claims: dict[int, Any] = {}  # pid -> state.Claim: this monitor clears the pid's Accessed bits
        self._opened = False  # init() is done

    # -- setup -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        super().check_supported()
        from damon_bpf.probes.pte import check_walk_supported

        check_walk_supported(self.proc_root)
        if self.clear == "page_idle" and not self._page_idle_path_ok():
            raise NotSupportedError(f"--pte-clear page_idle: {self.sys_root}/kernel/mm/page_idle/bitmap is not "
                                    "available (the kernel lacks CONFIG_IDLE_PAGE_TRACKING)")

    def _page_idle_path_ok(self) -> bool:
        return os.access(f"{self.sys_root}/kernel/mm/page_idle/bitmap", os.W_OK)

    def init(self, ctx: Ctx) -> None:
        from damon_bpf.probes.pte import PagingLayout, PteOffsets, PteWalkConfig, PteWalker

        self._rng = np.random.default_rng(ctx.rng.getrandbits(64))
        super().init(ctx)
        try:
            layout = PagingLayout.detect(self.proc_root)
            self._shift = _KEY_SHIFT_L5 if layout.levels == 5 else _KEY_SHIFT_L4
            self._mask = (1 << self._shift) - 1
            cfg = PteWalkConfig(offsets=PteOffsets.from_btf(), layout=layout)
            self.walker = PteWalker(cfg).open()
            self.attach_point = f"page-table walk, {layout.levels}-level, BPF_PROG_TEST_RUN"
            self.frames.open(self.proc_root)
            if self.clear in ("auto", "page_idle"):
                self.clearing.open_page_idle(self.sys_root, required=self.clear == "page_idle")
            for ti, t in enumerate(ctx.targets):
                if t.pid is not None:
                    self._open_target(ti, t)
            self._opened = True
        except BaseException:
            self.cleanup(ctx)
            raise

    def _open_target(self, ti: int, t: Target) -> PteTarget:
        assert t.pid is not None
        pt = self._pt.get(ti) or PteTarget(pid=t.pid, ti=ti)
        pt.close()
        try:
            pt.mem_fd = os.open(f"{self.proc_root}/{t.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            pt.refs_fd = os.open(f"{self.proc_root}/{t.pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError) as err:  # gone, or a zombie without an mm (ESRCH)
            pt.close()
            raise TargetGoneError(t.pid) from err
        except PermissionError as err:
            pt.close()
            raise PermissionDeniedError(
                f"cannot open /proc/{t.pid}/{'mem' if pt.mem_fd < 0 else 'clear_refs'}: {err.strerror}"
                " (ptrace access is needed: root, and kernel.yama.ptrace_scope below 3)") from err
        if self.clear == "auto":
            pt.method = "page_idle" if self.clearing.idle_fd >= 0 else "madvise"
        else:
            pt.method = self.clear
        if ti >= 1 << (64 - self._shift) - 1:
            pt.close()
            raise InvalidParamsError(f"the pte source watches at most {(1 << (64 - self._shift)) - 1} processes "
                                     "in one monitor")
        pt.anon_mthp = anon_mthp_enabled(self.sys_root)
        self._claim(t.pid)
        self._reset.add(ti)  # a new mm: nothing the old probes showed holds
        pt.dead = False
        self._pt[ti] = pt
        self._refresh_target(pt)
        return pt

    def _claim(self, pid: int) -> None:
        # Two monitors clearing one process's Accessed bits each clear the bits the other wants to read: both see
        # fewer accesses than there are. A claim in root's state folder (released when this monitor ends, also by
        # SIGKILL) lets the second one say so. A warning, not a refusal: the numbers are off, nothing breaks, and
        # an exporter running for hours should not stop a short look with 'monitor' (nor be stopped by it).
        if pid in self._claims or self.proc_root != "/proc":
            return
        from damon_bpf.errors import DamonBpfError
        from damon_bpf.linux.state import Claim

        claim = Claim(f"pte-{pid}")
        try:
            got = claim.acquire()
        except (OSError, DamonBpfError) as err:
            log.debug("pte: no claim on pid %d: %s", pid, err)
            return
        self._claims[pid] = claim
        if not got:
            who = f"damon-bpf process {claim.holder}" if claim.holder else "another damon-bpf session"
            msg = (f"pte: {who} clears the Accessed bits of pid {pid} too: both see fewer accesses than there "
                   "are (monitor a process with one pte source at a time)")
            if self._opened:  # a target added later (--follow-children): the start-up notes are printed already
                log.warning("%s", msg)
            else:
                self.notes.append(msg)

    def _refresh_target(self, pt: PteTarget) -> None:
        # resident pages: what clear_refs costs
        try:
            with open(f"{self.proc_root}/{pt.pid}/statm") as f:
                pt.rss_pages = int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass

    def add_target(self, ctx: Ctx, pid: int) -> Target:
        """Monitor one more process (``--follow-children``)."""
        t = super().add_target(ctx, pid)
        self._open_target(len(ctx.targets) - 1, t)
        return t

    def cleanup(self, ctx: Ctx) -> None:
        try:
            for pt in self._pt.values():
                pt.close()
            self._pt.clear()
            for claim in self._claims.values():
                claim.release()
            self._claims.clear()
            self._opened = False
            self.frames.close()
            self.clearing.close()
            if self.walker is not None:
                self.walker.close()
                self.walker = None
        finally:
            super().cleanup(ctx)

    # -- a window: clear once, read every sampling interval ----------------------------------------------

    def _live(self, ctx: Ctx) -> list[tuple[int, Target, PteTarget]]:
        out = []
        for ti, t in enumerate(ctx.targets):
            pt = self._pt.get(ti)
            if pt is not None and not pt.dead and len(t.ra) and self.target_valid(t):
                out.append((ti, t, pt))
        return out

    def _keys(self, ti: int, addrs: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        # a probe's key: its target in the top bits, its address below (probes of all targets in one order)
        out: npt.NDArray[np.uint64] = addrs.astype(np.uint64) | np.uint64(ti << self._shift)
        return out

    def _regions(self, live: list[tuple[int, Target, PteTarget]]) -> tuple[
            npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """Every live target's regions as keys, in one order: starts, ends, and each target's first region."""
        if not live:
            z = np.zeros(0, np.uint64)
            return z, z, np.zeros(1, np.int64)
        starts = np.concatenate([self._keys(ti, t.ra.start) for ti, t, _ in live])
        ends = np.concatenate([self._keys(ti, t.ra.end) for ti, t, _ in live])
        offs = np.concatenate([[0], np.cumsum([len(t.ra) for _, t, _ in live])]).astype(np.int64)
        return starts, ends, offs

    def prepare_access_checks(self, ctx: Ctx) -> None:
        from damon_bpf.probes.pte import R_ACCESSED, R_MM_GONE, R_PRESENT, result_phys

        t0 = time.thread_time_ns()
        self._account_window(t0)
        wall = time.monotonic_ns()
        if wall - self._housekept_ns >= _HOUSEKEEPING_NS:
            self._housekept_ns = wall
            for pt in self._pt.values():
                if not pt.dead:
                    self._refresh_target(pt)
                    if self.clear == "auto":
                        self.clearing.choose_method(pt, self._windows, self._aggr_us, self.cpu_budget)
        live = self._live(ctx)
        self._wss_window_us = ctx.working_set_window_us
        self._aggr_us = ctx.attrs.aggr_interval_us
        self._live_now = live
        starts, ends, offs = self._regions(live)
        self._region_offs = offs
        total_regions = int(offs[-1])
        budget = probe_budget(self.cost, self.cpu_budget, ctx.attrs.aggr_interval_us,
                              len(read_points(ctx.attrs.max_nr_accesses)) + 1)
        if budget > 0:
            # when the windows cost more than the budget at the longest aggregation interval allowed, probes give
            # way first (down to one a region)
            share = self.cost.share(ctx.attrs.max_nr_accesses, ctx.attrs.aggr_interval_us)
            si = ctx.attrs.source_intervals
            # (with intervals of the user's, the probes stay: they asked for those intervals, at that cost)
            if self._windows > 2 and share > 1.05 * self.cpu_budget and si is not None and \
                    ctx.attrs.aggr_interval_us >= min(SOFT_MAX_AGGR_US, si.max_aggr_us):
                self._probe_scale = max(_PROBE_SCALE_MIN, self._probe_scale * 0.8)
            elif share < 0.8 * self.cpu_budget:
                self._probe_scale = min(1.0, self._probe_scale * 1.1)
            budget = int(budget * self._probe_scale)
        cap = sum(max(_MIN_PROBES_PER_TARGET, _MAX_PROBES_PER_REGION * len(t.ra)) for _, t, _ in live)
        room = self.walker.nr_slots
        want = min(cap, room) if budget < 0 else min(max(budget, total_regions), cap, room)
        self._probe_target = want
        pr = self._probes
        if self._reset:
            # targets that exec()-ed: nothing their old probes showed holds
            pr._keep(~np.isin(pr.addr >> np.uint64(self._shift), np.array(sorted(self._reset), np.uint64)))
            self._reset.clear()
        pr.allocate(starts, ends, want, self._rng, retire_chance=_RETIRE_CHANCE if self._windows else 0.0)
        n = len(pr)
        self._nslots = n
        pr.valid = np.ones(n, bool)
        self._advised = np.zeros(n, bool)
        self._checks = 0
        self._loop_n = 0
        self._mark_prep_start = t0
        if not n:
            self._mark_prep_end = time.thread_time_ns()
            return
        tgt = (pr.addr >> np.uint64(self._shift)).astype(np.int64)
        fd_of = np.full(max(ti for ti, _, _ in live) + 1, -1, np.int64)
        for ti, _, pt in live:
            fd_of[ti] = pt.mem_fd
        self.walker.load_slots(pr.addr & np.uint64(self._mask), fd_of[tgt].astype(np.uint64))
        self.walker.observe(n, 0, every=True)  # every target's probes in one run
        self._checks += n
        res = self.walker.results(0, n)
        gone = (res & np.uint64(R_MM_GONE)) != 0
        acc = ((res & np.uint64(R_PRESENT | R_ACCESSED)) == np.uint64(R_PRESENT | R_ACCESSED)) & ~gone
        # touched between the last read of the previous window and now: count it in that window
        gap = acc & (pr.nwin > 0) & ((pr.hist & np.uint64(1)) == 0)
        if gap.any():
            gi = np.flatnonzero(gap)
            ok = self.frames.page_ok((result_phys(res[gi]) >> np.uint64(12)).astype(np.int64), self._windows)
            pr.hist[gi[ok]] |= np.uint64(1)
        # each target's probes are one run of the key order
        bounds = np.searchsorted(tgt, [ti for ti, _, _ in live] + [1 << 62])
        for k, (ti, t, pt) in enumerate(live):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if lo == hi:
                continue
            if gone[lo]:
                pr.valid[lo:hi] = False
                self.walker.skip_slots(np.arange(lo, hi), _SKIP)
                self._walk_failed(t, pt, _MM_DEAD)
                continue
            need = lo + np.flatnonzero(acc[lo:hi])
            pt.nr_to_clear = (1 - EWMA) * pt.nr_to_clear + EWMA * need.size
            if need.size:
                self._clear(t, pt, need, res[need])
        self._mark_prep_end = time.thread_time_ns()

    def _clear(self, t: Target, pt: PteTarget, need: npt.NDArray[np.int64], res: npt.NDArray[np.uint64]) -> None:
        # clear the Accessed bits of one target's probes *need* (indexes of the probe set; res: their walk)
        from damon_bpf.probes.pte import result_phys

        pr = self._probes
        method = pt.explore or pt.method
        pt.explore = None
        if method == "madvise":
            # MADV_COLD leaves the Accessed bit of a page mapped more than once (shared libraries, shared
            # memory, KSM) alone: such probes are cleared by a clear_refs of the target every so often
            compound, shared = self.frames.facts((result_phys(res) >> np.uint64(12)).astype(np.int64), self._windows)
            if shared.any():
                if time.monotonic_ns() - pt.refs_ns >= self.clearing.refs_period_ns(self._pt.values(), self.cpu_budget):
                    method = "clear_refs"
                else:
                    pt.nr_shared += int(np.count_nonzero(shared))
                    skip = need[shared]
                    # set since the last clear_refs: touched, as far as the working set can tell, but no first
                    # touch to time in this window
                    pr.hist[skip[pr.nwin[skip] > 0]] |= np.uint64(1)
                    pr.valid[skip] = False
                    self.walker.skip_slots(skip, _SKIP)
                    need, res, compound = need[~shared], res[~shared], compound[~shared]
        if not need.size:
            return
        if method == "page_idle" and self.clearing.idle_fd >= 0:
            ok = self.clearing.clear_page_idle(pt, res)
        elif method == "clear_refs":
            ok = self.clearing.clear_refs(pt)
        else:
            ok = self.clearing.clear_madvise(t, pt, (pr.addr[need] & np.uint64(self._mask)), res, compound)
            self._advised[need] = pt.method_used == "madvise"
        if not ok:
            pr.valid[need] = False
            self.walker.skip_slots(need, _SKIP)

    def sample_points(self, ctx: Ctx, nr_samples: int) -> tuple[int, ...]:
        """The reads of a window (:func:`~damon_bpf.ops.pte_sampling.read_points`), less the last, which is the
        check's."""
        return read_points(nr_samples)[:-1]

    def observe(self, ctx: Ctx, nr_passed: int) -> None:
        """One read of the window: every probe not yet found accessed, of every target, in one program run
        (``pte_observe``); those accessed now get *nr_passed* as their first read."""
        if self._nslots:
            self.walker.observe(self._nslots, nr_passed)
            self._checks += self._nslots
        self._loop_n = nr_passed
        self._mark_read_end = time.thread_time_ns()

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        from damon_bpf.probes.pte import R_MM_GONE, result_phys

        self.observe(ctx, nr_samples)
        self._windows_us.appendleft(nr_samples * ctx.attrs.sample_us_nonzero)
        self._windows += 1
        self._probe_window: tuple[Any, Any] | None = None
        pr = self._probes
        n = self._nslots
        live = self._live_now
        nreg = int(self._region_offs[-1])
        hits_all = np.zeros(nreg, np.int64)
        has = np.zeros(nreg, bool)
        gone_t: set[int] = set()
        if n and len(pr) == n:
            first = self.walker.first_reads(n).astype(np.int64)
            pr.valid &= first != _SKIP
            pr.first = np.where(pr.valid, first, 0)
            out = self.walker.results(0, n)
            self._probe_window = (out, pr.region.copy()) if ctx.probes else None  # for apply_probes
            gone = (out & np.uint64(R_MM_GONE)) != 0
            if gone.any():
                gone_t = set((pr.addr[gone] >> np.uint64(self._shift)).astype(np.int64).tolist())
            touched = np.flatnonzero(pr.first > 0)
            if touched.size:
                # what damon_get_folio() would not return is no access (once per window: kpageflags reads)
                pfns = (result_phys(out[touched]) >> np.uint64(12)).astype(np.int64)
                pr.first[touched[~self.frames.page_ok(pfns, self._windows, ~self._advised[touched])]] = 0
            p, has = pr.access_rates(nreg)
            hits_all = stochastic_round(nr_samples * p, self._rng)
            pr.end_window()
        mx = 0
        mxacc = ctx.attrs.max_nr_accesses
        offs = self._region_offs
        for k, (ti, t, pt) in enumerate(live):
            lo, hi = int(offs[k]), int(offs[k + 1])
            if hi - lo != len(t.ra):
                continue  # (regions cannot change within a window; a guard)
            hits, got = hits_all[lo:hi], has[lo:hi]
            if not got.all():
                # a region without a usable probe this window keeps its last rate
                last = t.ra.last_nr_accesses * nr_samples / max(mxacc, 1)
                hits = np.where(got, hits, np.rint(last).astype(np.int64))
            mx = max(mx, update_regions_access_rate(t, np.clip(hits, 0, nr_samples), nr_samples, ctx.attrs))
        for ti, t, pt in live:
            if ti in gone_t:
                self._walk_failed(t, pt, _MM_DEAD)
        return mx

    def apply_probes(self, ctx: Ctx, nr_samples: int = 1) -> None:
        """7.2's ``apply_probes`` on this window's probe pages (:mod:`damon_bpf.ops.probe_attrs`)."""
        from damon_bpf.ops.probe_attrs import apply_pte_probes

        apply_pte_probes(self, ctx, nr_samples, self._probe_window)

    def _account_window(self, now: int) -> None:
        # the last window's cost: the sampling loop (reads and wake-ups) against the rest (clearing, the engine,
        # consumers, DAMOS, ops updates): everything this thread did from one prepare to the next
        if self._mark_prep_start >= 0 and self._mark_read_end >= self._mark_prep_end:
            loop = self._mark_read_end - self._mark_prep_end
            fixed = (now - self._mark_prep_start) - loop
            self._last_window_ns = float(now - self._mark_prep_start)
            self._last_checks = self._checks
            if self._windows > 1:  # the first window clears everything once: not what windows cost
                self.cost.add_window(fixed, loop, max(self._loop_n, 1))
                self.cost.add_loop(loop, len(read_points(max(self._loop_n, 1))), self._nslots)

    # -- clearing ----------------------------------------------------------------------------------------

    def _walk_failed(self, t: Target, pt: PteTarget, status: int) -> None:
        from damon_bpf.probes.pte import WalkStatus

        if status != WalkStatus.MM_DEAD:
            log.warning("pte: page-table walk of pid %d failed (status %d)", pt.pid, status)
            return
        # The pinned mm has no users: the target exited, or exec()-ed into a new mm.
        if not self.target_valid(t):
            pt.dead = True
            return
        try:
            self._open_target(pt.ti, t)
        except TargetGoneError:
            pt.dead = True
            return
        # An exit can look like an exec for a moment: the task still exists while its mm is torn down, and
        # on some kernels /proc/<pid>/mem still opens. Only a walk that works on the new file is an exec.
        st, _ = self.walker.walk(pt.mem_fd, np.zeros(1, np.uint64), scratch=True)
        if st != WalkStatus.OK:
            pt.dead = True
            return
        pt.nr_execs += 1
        log.info("pte: pid %d called exec(); following its new address space", pt.pid)

    # -- the intervals -----------------------------------------------------------------------------------

    def requested_intervals(self, ctx: Ctx) -> tuple[int, int] | None:
        """The intervals that keep the monitor within its CPU budget (``Attrs.source_intervals``; see
        :mod:`damon_bpf.ops.pte_cost`). Changed at most every 2 s, sooner when 20% over the budget."""
        a = ctx.attrs
        si = a.source_intervals
        if si is None or self._windows < 2:
            return None
        # past SOFT_MAX_AGGR_US only when the probes have given way as far as they go
        soft = None if self._probe_scale <= _PROBE_SCALE_MIN * 1.01 else SOFT_MAX_AGGR_US
        sample, aggr, met = choose_intervals(self.cost, self.cpu_budget, si.min_aggr_us, si.max_aggr_us,
                                             align_us=ctx.working_set_window_us, soft_max_us=soft)
        if (sample, aggr) == (a.sample_interval_us, a.aggr_interval_us):
            return None
        if not met and not self._warned_budget:
            self._warned_budget = True
            self.notes.append(f"pte: even at {aggr / 1e6:g} s per aggregation a window costs "
                              f"{self.cost.share(aggr // sample, aggr):.1%} of a core, over the "
                              f"{self.cpu_budget:.0%} budget (fewer regions, --maxr, or a larger --cpu-budget)")
            log.warning("%s", self.notes[-1])
        now = time.monotonic_ns()
        over = self.cost.share(a.max_nr_accesses, a.aggr_interval_us) > 1.2 * self.cpu_budget > 0
        relative = abs(aggr - a.aggr_interval_us) / max(a.aggr_interval_us, 1)
        if not over and (now - self._retuned_ns < _RETUNE_NS or relative < 0.2):
            return None
        self._retuned_ns = now
        return sample, aggr

    def min_sample_us(self, ctx: Ctx) -> int:
        """The kernel tuner's floor (``--monitoring_intervals_autotune``): the sampling interval at which a window
        of ``aggr_samples`` intervals costs ``cpu_budget``."""
        if not self.cpu_budget or self._windows < 2:
            return 0
        n = max(ctx.attrs.aggr_samples or ctx.attrs.max_nr_accesses, 1)
        return int(math.ceil(self.cost.window_ns(n) / n / self.cpu_budget / 1000))

    def after_window_note(self, ctx: Ctx) -> None:
        # with intervals of the user's, say once when they cost more than the budget
        a = ctx.attrs
        if a.source_intervals is not None or a.intervals_goal.aggrs or not self.cpu_budget or self._warned_budget:
            return
        share = self.cost.share(a.max_nr_accesses, a.aggr_interval_us)
        if self._windows >= 5 and share > 1.2 * self.cpu_budget:
            self._warned_budget = True
            self.notes.append(f"pte: at {a.sample_interval_us / 1000:g} ms / {a.aggr_interval_us / 1000:g} ms the "
                              f"monitor spends {share:.1%} of a core (budget {self.cpu_budget:.0%}): leave "
                              f"--sample/--aggr out to let the source choose, or raise --cpu-budget")
            log.warning("%s", self.notes[-1])

    # -- the working set ---------------------------------------------------------------------------------

    def working_set_bytes(self, ctx: Ctx, window_us: int) -> tuple[list[int], int]:
        """Per target, the bytes accessed within the fewest last windows that together cover *window_us* (probes
        touched in them, per region; see :mod:`damon_bpf.ops.pte_sampling`), and that span (µs)."""
        self.after_window_note(ctx)
        if not self._windows_us:
            return super().working_set_bytes(ctx, window_us)
        # the fewest last windows that cover the span asked (to 5%): windows change length with the intervals
        cum = np.cumsum(np.fromiter(self._windows_us, dtype=np.int64))
        m = min(int(np.searchsorted(cum, 0.95 * window_us)) + 1, cum.size)
        span = int(cum[m - 1])
        out, _ = super().working_set_bytes(ctx, span)
        live = [(ti, t, pt) for ti, t in enumerate(ctx.targets) if len(t.ra)
                for pt in [self._pt.get(ti)] if pt is not None]
        if not live or not len(self._probes):
            return out, span
        starts, ends, offs = self._regions(live)
        share, has = self._probes.touched_share(starts, ends, m)
        for k, (ti, t, _) in enumerate(live):
            lo, hi = int(offs[k]), int(offs[k + 1])
            sz = (t.ra.end - t.ra.start).astype(np.float64)
            out[ti] = int((sz * np.where(has[lo:hi], share[lo:hi], self._rate_share(ctx, t, span))).sum())
        return out, span

    @staticmethod
    def _rate_share(ctx: Ctx, t: Target, window_us: int) -> npt.NDArray[np.float64]:
        a = ctx.attrs
        p = np.clip(t.ra.nr_accesses / max(a.max_nr_accesses, 1), 0.0, 1.0)
        out: npt.NDArray[np.float64] = 1.0 - np.power(1.0 - p, window_us / a.sample_us_nonzero)
        return out

    # -- what the user sees ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Totals for the live view: walks, probes, the clear method and its cost, the monitor's share."""
        if self.walker is None:
            return {}
        st = self.walker.stats()
        live = [pt for pt in self._pt.values() if not pt.dead]
        methods = sorted({pt.method if pt.method != "page_idle" or self.clearing.idle_fd >= 0 else "madvise"
                          for pt in live})
        out: dict[str, Any] = {
            "attach": self.attach_point,
            "walks": st["walks"],
            "accessed": st["accessed"],
            "nonpresent": st["nonpresent_pgd"] + st["nonpresent_pud"] + st["nonpresent_pmd"]
            + st["nonpresent_pte"],
            "huge": st["huge"],
            "read_faults": st["read_faults"],
            "clear": ",".join(methods),
            "probes": len(self._probes),
            "walk_ns_per_page": round(self.cost.walk_ns_per_probe, 1),
            "cpu_per_window_us": round(self._last_window_ns / 1e3, 1),
        }
        if self._last_checks:
            out["ns_per_page_check"] = round(self._last_window_ns / self._last_checks, 1)
        if live:
            out["madvise_us_per_page"] = round(sum(p.madvise_ns for p in live) / len(live) / 1e3, 2)
            out["clear_refs_ns_per_page"] = round(sum(p.refs_ns_per_page for p in live) / len(live), 1)
        not_lru = self.frames.nr_zero_page + self.frames.nr_off_lru
        if not_lru:
            out["not_lru"] = not_lru
        shared = sum(p.nr_shared for p in self._pt.values())
        if shared:
            out["shared_waits"] = shared
        partial = sum(p.nr_partial_folios for p in self._pt.values())
        if partial:
            out["partial_folios"] = partial
        execs = sum(p.nr_execs for p in self._pt.values())
        if execs:
            out["execs"] = execs
        return out

