"""Virtual address spaces of processes: the user-space ``mm/damon/vaddr.c`` (ops ``vaddr`` and ``fvaddr``).

**Mirrored.** ``init`` gives targets without regions the "three regions" of their address space
(:func:`three_regions`), ``update`` recomputes them every ``ops_update_interval``, ``target_valid`` checks the
process through a pidfd (so a recycled pid is never mistaken for the target), and ``apply_scheme`` runs DAMOS
actions with ``process_madvise(2)`` on that pidfd or ``move_pages(2)``. ``fvaddr`` is the same with
``init = update = NULL``: the user's ranges stay fixed.

**Not mirrored.** User space cannot walk page tables, so :class:`VaddrOps` checks accesses from *pushed reports*
(``ctx.reports``, the proposed ``damon_report_access()``): access sources subclass it and queue reports before
calling :meth:`VaddrOps.check_accesses`. Targets whose ``pid`` is None are fixed address spaces (tests,
benchmarks, replays): they come with regions, are always valid and are never updated.

**DAMOS.** Unsupported actions (``hugepage``, ``nohugepage``, ``lru_prio``) are refused at start with the
reason; destructive advice is never used. A region is applied per VMA, ops filters apply to every action, and
``cold``/``lru_deprio`` use the cold score (a deviation from the kernel's vaddr).

See docs/ops.md, section "vaddr and fvaddr": the hooks one by one, the three regions, the actions table,
per-VMA application and scores.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.engine.core import align_up, set_regions
from damon_bpf.engine.model import AddrRange, Ctx, Region, Target
from damon_bpf.engine.damos import Action, Scheme
from damon_bpf.engine.ops import DAMOS_MAX_SCORE, Applied, BaseOperations
from damon_bpf.engine.access_reports import account_reports
from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError, TargetGoneError
from damon_bpf.linux.syscalls import (
    MADV_COLD,
    MADV_COLLAPSE,
    MADV_PAGEOUT,
    MADV_WILLNEED,
    move_pages,
    pidfd_open,
    process_madvise,
)
from damon_bpf.linux.cgroups import read_memcg_path
from damon_bpf.linux.pagemap import PagemapScanner, pmd_size
from damon_bpf.linux.process import is_running
from damon_bpf.linux.sysfs import parse_list
from damon_bpf.ops import damos_filters
from damon_bpf.ops.common import (
    region_cold_score,
    region_hot_score,
    scheme_action,
    target_cold_scores,
    target_hot_scores,
)
from damon_bpf.linux.procmaps import Vma, parse_maps, read_maps, read_maps_text, read_stat, real_vmas

__all__ = (
    "VaddrOps",
    "FvaddrOps",
    "VaddrTargetData",
    "three_regions",
    "memory_nodes",
    "MADV_WILLNEED",
    "MADV_COLD",
    "MADV_PAGEOUT",
    "MADV_COLLAPSE",
)

log = logging.getLogger(__name__)

# MADV_* values that process_madvise(2) accepts: damon_bpf.linux.syscalls. MADV_HUGEPAGE/MADV_NOHUGEPAGE are not
# among them, so the hugepage/nohugepage actions cannot be applied to another process.

#: DAMOS action -> advice, as ``damon_va_apply_scheme()`` maps them (``lru_deprio``: deactivation, which is what
#: ``MADV_COLD`` does to the pages of the range).
_ACTION_ADVICE = {
    "willneed": MADV_WILLNEED,
    "cold": MADV_COLD,
    "pageout": MADV_PAGEOUT,
    "collapse": MADV_COLLAPSE,
    "lru_deprio": MADV_COLD,
}

_MIGRATE_ACTIONS = frozenset({"migrate_hot", "migrate_cold"})
#: Actions that are always supported (migration needs two memory nodes).
_BASE_ACTIONS = frozenset(_ACTION_ADVICE) | {"stat"}
#: Kernel actions vaddr cannot apply to another process from user space, and why.
_REFUSED_ACTIONS = {
    "hugepage": "process_madvise(2) does not accept MADV_HUGEPAGE, and madvise(2) works on the caller's own "
                "memory only, so vaddr cannot apply it to another process",
    "nohugepage": "process_madvise(2) does not accept MADV_NOHUGEPAGE, and madvise(2) works on the caller's own "
                  "memory only, so vaddr cannot apply it to another process",
    "lru_prio": "user space has no way to activate another process's pages on the LRU (the kernel's "
                "folio_activate(); no madvise advice does it)",
}
#: Actions scored by coldness / hotness (``damon_va_scheme_score()``, plus ``cold`` and ``lru_deprio``).
_COLD_SCORED = frozenset({"pageout", "migrate_cold", "cold", "lru_deprio"})
_HOT_SCORED = frozenset({"migrate_hot"})

#: Pages per ``move_pages(2)`` call.
_MOVE_PAGES_BATCH = 16384
#: The VMA list is re-read at most this often within one apply pass, and always when older than
#: :data:`_VMAS_MAX_AGE_NS`.
_VMAS_MIN_AGE_NS = 20_000_000
_VMAS_MAX_AGE_NS = 1_000_000_000


class _HasRange(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


def three_regions(vmas: Iterable[_HasRange], min_region_sz: int) -> list[AddrRange] | None:
    """``__damon_va_three_regions()``: three ranges that cover every mapping but the two biggest gaps.

    The two largest gaps between consecutive VMAs (ties keep the earlier) are left out; the three ranges around
    them are aligned up to *min_region_sz*. In a usual layout those gaps are heap-to-mmap and mmap-to-stack, huge
    and never accessed. See docs/ops.md, section "The three regions", for the rule and its diagram.

    :param vmas: the mappings in address order, each with ``start``/``end`` (:class:`~.procmaps.Vma`); leave
        out gate areas such as ``[vsyscall]`` (:func:`~.procmaps.real_vmas`), which are not VMAs of the mm
    :param min_region_sz: ``ctx->min_region_sz`` (a power of two)
    :return: the three ranges, or None where the kernel returns ``-EINVAL`` (fewer than two non-empty gaps);
        the target then gets no regions
    """
    first_gap = AddrRange(0, 0)
    second_gap = AddrRange(0, 0)
    start = 0
    prev: _HasRange | None = None
    for vma in vmas:
        if prev is None:
            start = vma.start
            prev = vma
            continue
        gap = vma.start - prev.end
        if gap > first_gap.sz:
            second_gap = first_gap
            first_gap = AddrRange(prev.end, vma.start)
        elif gap > second_gap.sz:
            second_gap = AddrRange(prev.end, vma.start)
        prev = vma
    if prev is None or not second_gap.sz or not first_gap.sz:
        return None
    # Sort the two biggest gaps by address
    if first_gap.start > second_gap.start:
        first_gap, second_gap = second_gap, first_gap
    a = min_region_sz
    return [
        AddrRange(align_up(start, a), align_up(first_gap.start, a)),
        AddrRange(align_up(first_gap.end, a), align_up(second_gap.start, a)),
        AddrRange(align_up(second_gap.end, a), align_up(prev.end, a)),
    ]


def memory_nodes(sys_root: str = "/sys") -> list[int]:
    """The NUMA nodes with memory (``/sys/devices/system/node/has_memory``, else ``online``); ``[0]`` on a
    kernel without NUMA sysfs (one node)."""
    base = os.path.join(sys_root, "devices", "system", "node")
    for name in ("has_memory", "online"):
        try:
            with open(os.path.join(base, name)) as f:
                return list(parse_list(f.read()))
        except (OSError, ValueError):
            continue
    return [0]


@functools.lru_cache(maxsize=1)
def _pagemap_scan_unsupported() -> str | None:
    return PagemapScanner.probe()


def _hugepage_size_unsupported_reason() -> str | None:
    return _pagemap_scan_unsupported()


def _pidfd_exited(pidfd: int) -> bool:
    # A pidfd polls readable (POLLIN) once the process has exited, zombie or reaped (pidfd_poll()).
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(0))


def _tile_exactly(target: Target, ranges: Sequence[AddrRange], min_region_sz: int) -> bool:
    # Whether the target's regions already cover exactly the aligned *ranges*, each range by a run of touching
    # regions (the usual case at an ops update: the three regions did not move). set_regions() would then
    # change nothing, so it is skipped; it costs O(regions) Python objects.
    ra = target.ra
    if not len(ra) or not ranges:
        return False
    if any(r.start % min_region_sz or r.end % min_region_sz or r.start >= r.end for r in ranges):
        return False
    s, e = ra.start, ra.end
    if int(s[0]) != ranges[0].start or int(e[-1]) != ranges[-1].end:
        return False
    gaps = np.flatnonzero(s[1:] != e[:-1])
    if gaps.size != len(ranges) - 1:
        return False
    return (e[gaps].tolist() == [r.end for r in ranges[:-1]]
            and s[gaps + 1].tolist() == [r.start for r in ranges[1:]])


@dataclass(eq=False)
class VaddrTargetData:
    """Per-target state of the vaddr ops, kept in ``Target.ops_data`` (the kernel's ``struct pid`` reference).

    :ivar pidfd: a pidfd for the target process; None without ``pidfd_open(2)`` or after ``cleanup``
    :ivar starttime: ``/proc/<pid>/stat`` field 22 when the target was opened; with the pid it identifies the
        process where no pidfd is available
    :ivar vmas: the mappings read at the last ``init``/``update`` or DAMOS refresh (for displays:
        :func:`.procmaps.mapping_at`)
    :ivar gone: the process was seen exited (sticky)
    :ivar damos: DAMOS state (the VMA list of the apply pass, the memcg path, the pagemap scanner)
    """

    pidfd: int | None = None
    starttime: int | None = None
    vmas: list[Vma] = field(default_factory=list, repr=False)
    gone: bool = False
    damos: _DamosTargetState | None = field(default=None, repr=False)
    # the last maps text ops.update() parsed, its VMAs, the min_region_sz and the three regions it gave: an
    # unchanged text is neither parsed nor searched for its gaps again
    _maps_seen: tuple[str, list[Vma], int, list[AddrRange] | None] | None = field(default=None, repr=False)


@dataclass(eq=False)
class _DamosTargetState:
    # what apply_scheme caches per target between calls
    vmas: list[Vma] = field(default_factory=list)
    vmas_ns: int = -(1 << 62)  # time.monotonic_ns() of the read
    vmas_sis: int = -1  # ctx.passed_sample_intervals at the read (one apply pass shares it)
    memcg: str | None = None
    memcg_sis: int = -1
    scanner: PagemapScanner | None = None
    warned: set[str] = field(default_factory=set)

    def close(self) -> None:
        if self.scanner is not None:
            self.scanner.close()
            self.scanner = None


class VaddrOps(BaseOperations):
    """The ``vaddr`` operations set: monitors processes' virtual address spaces, accesses from pushed reports.

    Several processes are several targets of one context. See the module docstring for what mirrors
    ``mm/damon/vaddr.c``.

    :param proc_root: where procfs is mounted (tests point it at fake ``/proc`` contents)
    :param use_pidfd: hold a pidfd per target (default); without one, liveness falls back to comparing
        ``/proc/<pid>/stat`` start times
    """

    name = "vaddr"
    #: Reports carry timestamps, so the kdamond checks once per boundary for all sampling intervals.
    batched = True
    #: The DAMOS actions this machine can apply (an instance attribute: ``migrate_*`` need two memory nodes).
    supported_actions: frozenset[str] = _BASE_ACTIONS
    can_add_targets = True
    #: Whether init/update set the three regions (False for fvaddr: ``init = update = NULL``).
    manages_regions = True

    def __init__(self, *, proc_root: str = "/proc", use_pidfd: bool = True, sys_root: str = "/sys") -> None:
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.use_pidfd = use_pidfd
        self._update_rotation = 0
        self._refresh_supported_actions()

    def _own_actions(self) -> bool:
        # a subclass that declares its own supported_actions (replay: stat only) keeps them as they are
        return type(self).supported_actions is not VaddrOps.supported_actions

    def _refresh_supported_actions(self) -> None:
        self.memory_nodes = memory_nodes(self.sys_root)
        if self._own_actions():
            return
        actions = set(_BASE_ACTIONS)
        if len(self.memory_nodes) >= 2:
            actions |= _MIGRATE_ACTIONS
        self.supported_actions = frozenset(actions)

    # -- hooks -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        """vaddr reads ``/proc/<pid>/maps``: procfs must be mounted. Also recomputes
        :attr:`supported_actions` (the memory nodes).

        :raises NotSupportedError: no procfs at ``proc_root``
        """
        if not os.path.isdir(self.proc_root):
            raise NotSupportedError(f"{self.proc_root} is not available: vaddr needs procfs (Linux)")
        self._refresh_supported_actions()

    def action_unsupported_reason(self, action: Action | str | None) -> str:
        """One line saying why DAMOS *action* (a name or an ``Action``) is not in :attr:`supported_actions`."""
        name = getattr(action, "value", action)
        if name in self.supported_actions:
            return f"{name} is supported by the {self.name} operations set"
        if self._own_actions():
            return (f"the {self.name} operations set cannot apply DAMOS action {name!r} (it supports: "
                    f"{', '.join(sorted(self.supported_actions)) or 'none'})")
        if name in _MIGRATE_ACTIONS:
            n = len(self.memory_nodes)
            return f"{name} needs a NUMA machine: this one has {n} node{'' if n == 1 else 's'}"
        if name in _REFUSED_ACTIONS:
            return f"{name}: {_REFUSED_ACTIONS[name]}"
        return f"unknown DAMOS action {name!r} for the {self.name} operations set"

    def check_scheme(self, scheme: Scheme, ctx: Ctx | None = None) -> None:
        """Refuse, before it starts, a DAMOS scheme this operations set cannot apply as asked: an unsupported
        action, a migration to a node without memory, ``young``/``active`` ops filters (and ``hugepage_size``
        without ``PAGEMAP_SCAN``), and the ``node_eligible_mem_bp`` quota goal (paddr's only: the kernel's
        ``damon_commit_ctx()`` refuses it for other ops with ``-EINVAL``). The kdamond calls it for every scheme
        at init. (Whether a goal's or watermark's metric can be measured on this machine is checked by the
        metrics provider's owner, :class:`~damon_bpf.session.monitor.Monitor`.)

        :raises NotSupportedError: with the reason
        :raises InvalidParamsError: a filter or goal lacks a required field
        """
        action = scheme_action(scheme) or ""
        if action not in self.supported_actions:
            raise NotSupportedError(self.action_unsupported_reason(action))
        if action in _MIGRATE_ACTIONS:
            nid = int(getattr(scheme, "target_nid", 0))
            if nid not in self.memory_nodes:
                raise NotSupportedError(f"{action}: target node {nid} does not exist or has no memory (nodes "
                                        f"with memory: {','.join(map(str, self.memory_nodes))})")
        damos_filters.check_filters(damos_filters.ops_filters_of(scheme), _hugepage_size_unsupported_reason)
        for goal in scheme.quota.goals:
            if goal.metric.value == "node_eligible_mem_bp":
                raise NotSupportedError("quota goal metric node_eligible_mem_bp is measured by the paddr operations "
                                        "set only (the kernel refuses it for other ops with -EINVAL)")

    def init(self, ctx: Ctx) -> None:
        """``damon_va_init()``: open every process target and give targets without regions their three
        regions (a target whose gaps cannot be found gets none, as in the kernel).

        :raises TargetGoneError: a target process does not exist
        :raises PermissionDeniedError: a target's maps cannot be read
        :raises NotSupportedError: a target is a kernel thread
        :raises InvalidParamsError: a target without pid has no regions (and the ops cannot provide them)
        """
        try:
            for ti, t in enumerate(ctx.targets):
                if t.pid is None:
                    self.init_fixed_target(ctx, ti, t)
                    continue
                data = self.open_target(t)
                if not self.manages_regions:
                    if not t.nr_regions:
                        raise InvalidParamsError(
                            f"{self.name}: target {ti} (pid {t.pid}) has no regions; fixed-range monitoring "
                            f"needs user-given ranges")
                elif not t.nr_regions:
                    self._apply_three_regions(ctx, ti, t, data.vmas)
        except BaseException:
            self.cleanup(ctx)
            raise

    #: Maps read per ops update at most: with more process targets, each update takes the next ones in turn
    #: (reading /proc/<pid>/maps costs ~0.2-0.3 ms a process here; 32 targets every second would be 1% of a core).
    max_maps_per_update = 8

    def update(self, ctx: Ctx) -> None:
        """``damon_va_update()``: re-read the maps of live process targets and ``set_regions()`` their three
        regions; with more than :attr:`max_maps_per_update` process targets, that many per call, in turn (a
        deviation: the kernel reads every target's VMAs each time, at a fraction of the cost). Targets that
        exited or cannot be read are skipped; nothing raises for them."""
        if not self.manages_regions:
            return
        procs = [ti for ti, t in enumerate(ctx.targets) if t.pid is not None]
        if len(procs) > self.max_maps_per_update:
            first = self._update_rotation % len(procs)
            turn = set((procs + procs)[first:first + self.max_maps_per_update])
            self._update_rotation = first + self.max_maps_per_update
        else:
            turn = set(procs)
        for ti, t in enumerate(ctx.targets):
            if ti not in turn or t.pid is None or not self.target_valid(t):
                continue
            try:
                text = read_maps_text(t.pid, self.proc_root)
            except (TargetGoneError, PermissionDeniedError) as err:
                log.debug("update: skipping target %d (pid %d): %s", ti, t.pid, err)
                continue
            # Only maps read while our process was alive are its maps (the pid cannot be recycled before
            # the process is reaped, and the pidfd tells whether it exited).
            if not self.target_valid(t):
                continue
            data = t.ops_data
            seen = data._maps_seen if isinstance(data, VaddrTargetData) else None
            if seen is not None and seen[0] == text and seen[2] == ctx.min_region_sz:
                vmas, ranges = seen[1], seen[3]
            else:
                vmas = parse_maps(text)
                ranges = three_regions(real_vmas(vmas), ctx.min_region_sz)
                if isinstance(data, VaddrTargetData):
                    data._maps_seen = (text, vmas, ctx.min_region_sz, ranges)
            if isinstance(data, VaddrTargetData):
                data.vmas = vmas
            self._set_three_regions(ctx, ti, t, ranges)

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        """Account the reports queued in ``ctx.reports`` to the *nr_samples* sampling intervals that started at
        ``ctx.window_start_ns`` (:func:`~damon_bpf.engine.access_reports.account_reports`); returns the maximum
        ``nr_accesses``. Subclasses queue their reports, then call this."""
        return account_reports(ctx, ctx.window_start_ns, nr_samples)

    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> int:
        """``damon_va_scheme_score()``: ``pageout``, ``migrate_cold`` (and, unlike the kernel's vaddr, ``cold`` and
        ``lru_deprio``, as paddr scores ``lru_deprio``) use the cold score, ``migrate_hot`` the hot score, every
        other action ``DAMOS_MAX_SCORE``."""
        action = scheme_action(scheme)
        if action in _COLD_SCORED:
            return region_cold_score(ctx, region, scheme)
        if action in _HOT_SCORED:
            return region_hot_score(ctx, region, scheme)
        return DAMOS_MAX_SCORE

    def get_scheme_scores(self, ctx: Ctx, target: Target, scheme: Scheme) -> npt.NDArray[np.int64]:
        """:meth:`get_scheme_score` of every region of *target* (``target.ra`` order) at once; equal to the
        scalar form region by region."""
        action = scheme_action(scheme)
        if action in _COLD_SCORED:
            return target_cold_scores(ctx, target, scheme)
        if action in _HOT_SCORED:
            return target_hot_scores(ctx, target, scheme)
        return np.full(len(target.ra), DAMOS_MAX_SCORE, dtype=np.int64)

    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> Applied:
        """``damon_va_apply_scheme()``: apply the scheme's action to the page-aligned region, VMA by VMA, through
        the target's pidfd (see the module docstring's DAMOS section).

        :return: the bytes the kernel applied the action to and, with ops filters, the bytes that passed them.
            ``stat`` applies nothing. Unsupported actions, targets without a process or pidfd, and a target
            that exited give ``Applied(0, 0)``.
        :raises NotSupportedError: the scheme has a ``young``/``active`` filter (refused by
            :meth:`check_scheme`, which the kdamond calls first)
        """
        action = scheme_action(scheme) or ""
        data = target.ops_data
        has_filters = bool(damos_filters.ops_filters_of(scheme))
        if action not in self.supported_actions:
            return Applied(0)
        if target.pid is None or not isinstance(data, VaddrTargetData) or data.pidfd is None or data.gone:
            return Applied(0)
        if _pidfd_exited(data.pidfd):
            data.gone = True
            return Applied(0)
        state = data.damos if data.damos is not None else _DamosTargetState()
        data.damos = state
        page_sz = os.sysconf("SC_PAGE_SIZE")
        # damos_madvise(): do_madvise(PAGE_ALIGN(start), size), and madvise rounds the size up to pages
        start = align_up(region.start, page_sz)
        end = start + align_up(region.end - region.start, page_sz)
        try:
            pieces = self._damos_pieces(ctx, target, data, state, scheme, start, end)
        except TargetGoneError:
            data.gone = True
            return Applied(0)
        sz_passed = sum(p.sz for p, ok in pieces if ok) if has_filters else 0
        passed = [(p.start, p.end) for p, ok in pieces if ok]
        if action == "stat" or not passed:
            return Applied(0, sz_passed)
        if action in _MIGRATE_ACTIONS:
            applied = self._migrate(target, data, state, passed, int(getattr(scheme, "target_nid", 0)), page_sz)
        else:
            applied = self._madvise(target, data, state, passed, _ACTION_ADVICE[action])
        return Applied(applied, sz_passed)

    def target_valid(self, target: Target) -> bool:
        """``damon_va_target_valid()``: the process still exists and is the one that was opened (checked on its
        pidfd). Targets without pid are always valid."""
        pid = target.pid
        if pid is None:
            return True
        data = target.ops_data
        if not isinstance(data, VaddrTargetData):
            return is_running(pid, proc_root=self.proc_root)
        if data.gone:
            return False
        if data.pidfd is not None:
            alive = not _pidfd_exited(data.pidfd)
        else:
            alive = is_running(pid, data.starttime, self.proc_root)
        if not alive:
            data.gone = True
        return alive

    def cleanup(self, ctx: Ctx) -> None:
        """Close the pidfds (the kernel's ``put_pid()`` in ``cleanup_target``) and the DAMOS per-target state.
        (The DAMOS metrics provider belongs to whoever installed it: the :class:`~damon_bpf.session.monitor.Monitor`.)"""
        for t in ctx.targets:
            data = t.ops_data
            if not isinstance(data, VaddrTargetData):
                continue
            if data.damos is not None:
                data.damos.close()
                data.damos = None
            if data.pidfd is not None:
                fd, data.pidfd = data.pidfd, None
                try:
                    os.close(fd)
                except OSError:
                    pass

    def add_target(self, ctx: Ctx, pid: int) -> Target:
        """Monitor one more process while running (``--follow-children``): open it, give it its three
        regions and append it to ``ctx.targets``.

        :raises TargetGoneError: it exited already
        """
        t = Target(pid=pid)
        data = self.open_target(t)
        ctx.targets.append(t)
        if self.manages_regions:
            self._apply_three_regions(ctx, len(ctx.targets) - 1, t, data.vmas)
        return t

    # -- helpers for subclasses ------------------------------------------------------------------------

    def init_fixed_target(self, ctx: Ctx, target_idx: int, target: Target) -> None:
        """Initialise a target without pid (a fixed address space). It must already have regions here;
        subclasses that know the address space (synthetic) override this to provide them.

        :raises InvalidParamsError: the target has no regions
        """
        if not target.nr_regions:
            raise InvalidParamsError(f"{self.name}: target {target_idx} has neither a pid nor regions")

    def open_target(self, target: Target) -> VaddrTargetData:
        """Open the target process: pidfd, ``/proc/<pid>/stat`` and ``/proc/<pid>/maps``; the result is stored
        in ``target.ops_data``.

        :raises TargetGoneError: no such process, or it exited (zombie)
        :raises PermissionDeniedError: its maps cannot be read
        :raises NotSupportedError: it is a kernel thread (no user address space)
        :raises InvalidParamsError: the pid is not positive
        """
        pid = target.pid
        if pid is None or pid <= 0:
            raise InvalidParamsError(f"invalid pid {pid!r}")
        old = target.ops_data
        if isinstance(old, VaddrTargetData) and old.pidfd is not None:
            os.close(old.pidfd)
            old.pidfd = None
        pidfd: int | None = None
        if self.use_pidfd:
            try:
                pidfd = pidfd_open(pid)
            except TargetGoneError:
                raise
            except OSError as err:
                if err.errno not in (errno.ENOSYS, errno.EPERM):  # no pidfd_open (< Linux 5.3) or seccomp
                    raise
                log.debug("pidfd_open(%d) unavailable (%s); using /proc start times", pid, err)
        try:
            st = read_stat(pid, self.proc_root)
            vmas = read_maps(pid, self.proc_root)
            if st.exited:
                raise TargetGoneError(pid, f"process {pid} ({st.comm}) has exited (state {st.state})")
            if not vmas:
                if st.is_kthread:
                    raise NotSupportedError(f"pid {pid} is a kernel thread: it has no user address space")
                raise TargetGoneError(pid, f"process {pid} ({st.comm}) has no address space (exiting)")
            data = VaddrTargetData(pidfd, st.starttime, vmas)
            if pidfd is not None and _pidfd_exited(pidfd):
                raise TargetGoneError(pid)
        except BaseException:
            if pidfd is not None:
                os.close(pidfd)
            raise
        target.ops_data = data
        return data

    def _apply_three_regions(self, ctx: Ctx, target_idx: int, target: Target, vmas: list[Vma]) -> bool:
        return self._set_three_regions(ctx, target_idx, target, three_regions(real_vmas(vmas), ctx.min_region_sz))

    def _set_three_regions(self, ctx: Ctx, target_idx: int, target: Target, ranges: list[AddrRange] | None) -> bool:
        if ranges is None:
            # the kernel's pr_debug("Failed to get three regions of %dth target")
            log.debug("failed to get three regions of target %d (pid %s)", target_idx, target.pid)
            return False
        if not _tile_exactly(target, ranges, ctx.min_region_sz):
            set_regions(target, ranges, ctx.min_region_sz)
        return True

    # -- DAMOS helpers ---------------------------------------------------------------------------------

    def _damos_vmas(self, ctx: Ctx, target: Target, data: VaddrTargetData, state: _DamosTargetState) -> list[Vma]:
        # The target's VMAs for this apply pass: re-read once per pass (every call of one pass sees the same
        # passed_sample_intervals) but at most every 20 ms, and whenever older than a second (or marked stale
        # after an ENOMEM). Maps read while the pidfd says alive are the target's (a pid is not reused before
        # its process is reaped).
        now = time.monotonic_ns()
        age = now - state.vmas_ns
        stale = age >= _VMAS_MAX_AGE_NS or (state.vmas_sis != ctx.passed_sample_intervals
                                            and age >= _VMAS_MIN_AGE_NS)
        if stale:
            assert target.pid is not None and data.pidfd is not None
            vmas = read_maps(target.pid, self.proc_root)
            if _pidfd_exited(data.pidfd):
                raise TargetGoneError(target.pid)
            state.vmas, state.vmas_ns, state.vmas_sis = vmas, now, ctx.passed_sample_intervals
            data.vmas = vmas
        return state.vmas

    def _damos_pieces(self, ctx: Ctx, target: Target, data: VaddrTargetData, state: _DamosTargetState,
                      scheme: Any, start: int, end: int) -> list[tuple[damos_filters.Piece, bool]]:
        # the region cut at VMA boundaries (and huge page boundaries for hugepage_size filters), each piece with
        # its ops-filter decision
        pid = target.pid
        assert pid is not None and data.pidfd is not None
        try:
            pieces = damos_filters.split_at_vmas(start, end, self._damos_vmas(ctx, target, data, state))
        except PermissionDeniedError as err:
            self._warn_once(state, "maps", "DAMOS: cannot read the maps of pid %d: %s", pid, err)
            return []
        filters = damos_filters.ops_filters_of(scheme)
        if not filters or getattr(scheme, "core_filters_allowed", False):
            return [(p, True) for p in pieces]
        types = {damos_filters.filter_type_name(f) for f in filters}
        memcg = None
        if "memcg" in types:
            if state.memcg_sis != ctx.passed_sample_intervals or state.memcg is None:
                memcg = read_memcg_path(pid, self.proc_root)
                if _pidfd_exited(data.pidfd):
                    raise TargetGoneError(pid)
                state.memcg, state.memcg_sis = memcg, ctx.passed_sample_intervals
            memcg = state.memcg
        if "hugepage_size" in types and pieces:
            if state.scanner is None:
                scanner = PagemapScanner()
                fd = data.pidfd
                scanner.open(pid, lambda: not _pidfd_exited(fd), self.proc_root)
                state.scanner = scanner
            try:
                huge = state.scanner.huge_ranges(pieces[0].start, pieces[-1].end)
            except OSError as err:
                if err.errno == errno.ESRCH:
                    raise TargetGoneError(pid) from err
                raise NotSupportedError(f"DAMOS filter 'hugepage_size': PAGEMAP_SCAN of pid {pid} failed: "
                                        f"{err.strerror}") from err
            pieces = damos_filters.split_by_huge(pieces, huge, pmd_size(self.sys_root))
        return damos_filters.evaluate(scheme, pieces, memcg)

    def _madvise(self, target: Target, data: VaddrTargetData, state: _DamosTargetState,
                 ranges: list[tuple[int, int]], advice: int) -> int:
        # process_madvise() the (start, end) ranges; a range the kernel refuses is skipped (the next call starts
        # after it) and the others are still applied. ENOMEM means the maps changed since they were read: the
        # kernel advised the mapped parts of that range, which are not counted, and the maps are re-read at the
        # next call.
        assert data.pidfd is not None and target.pid is not None
        iov = np.array(ranges, dtype=np.uint64).reshape(-1, 2)
        iov[:, 1] -= iov[:, 0]  # (start, length): the iovecs
        ends = np.cumsum(iov[:, 1])  # bytes up to the end of each range
        applied = 0
        i, n = 0, iov.shape[0]
        while i < n:
            try:
                done = process_madvise(data.pidfd, iov[i:], advice)
            except TargetGoneError:
                data.gone = True
                break
            except PermissionDeniedError as err:
                self._warn_once(state, f"eperm{advice}", "DAMOS: process_madvise(pid %d, advice %d) is not "
                                "permitted (CAP_SYS_NICE and ptrace access are needed): %s", target.pid,
                                advice, err)
                break
            except OSError as err:
                if err.errno == errno.ENOMEM:
                    state.vmas_ns = -(1 << 62)  # stale
                log.debug("process_madvise(pid %d, %#x-%#x, advice %d): %s", target.pid, ranges[i][0],
                          ranges[i][1], advice, err)
                i += 1  # the first range failed
                continue
            applied += done
            # skip the ranges the call completed; the one after them (if any) failed and is retried alone
            # next, which reports its error
            before = int(ends[i - 1]) if i else 0
            k = int(np.searchsorted(ends[i:], before + done, side="right"))
            i += k if k else 1
        return applied

    def _migrate(self, target: Target, data: VaddrTargetData, state: _DamosTargetState,
                 ranges: list[tuple[int, int]], nid: int, page_sz: int) -> int:
        # move_pages(2) takes a pid, not a pidfd. The pid is the target's while its pidfd does not report an
        # exit (a pid is only reused after its process was reaped): checked before each call, and the
        # results of a call after which the target is seen exited are dropped.
        # Pages already on nid are not counted (the kernel skips those folios too).
        assert data.pidfd is not None and target.pid is not None
        pid = target.pid
        applied = 0
        chunks = (r[off:off + _MOVE_PAGES_BATCH] for s, e in ranges for r in (range(s, e, page_sz),)
                  for off in range(0, len(r), _MOVE_PAGES_BATCH))
        for addrs in chunks:
            if _pidfd_exited(data.pidfd):
                data.gone = True
                break
            pages = np.arange(addrs.start, addrs.stop, addrs.step, dtype=np.uint64)
            try:
                where = np.asarray(move_pages(pid, pages, None))
                todo = pages[(where >= 0) & (where != nid)]
                if not todo.size:
                    continue
                if _pidfd_exited(data.pidfd):
                    data.gone = True
                    break
                status = move_pages(pid, todo, np.full(todo.size, nid, dtype=np.int32))
            except TargetGoneError:
                data.gone = True
                break
            except OSError as err:
                self._warn_once(state, f"move{err.errno}", "DAMOS: move_pages(pid %d, node %d) failed: %s", pid,
                                nid, err)
                break
            if _pidfd_exited(data.pidfd):
                data.gone = True
                break
            applied += page_sz * int(np.count_nonzero(np.asarray(status) == nid))
        return applied

    def _warn_once(self, state: _DamosTargetState, key: str, msg: str, *args: Any) -> None:
        if key not in state.warned:
            state.warned.add(key)
            log.warning(msg, *args)


class FvaddrOps(VaddrOps):
    """The ``fvaddr`` operations set: like :class:`VaddrOps` but for fixed, user-given ranges; ``init`` and
    ``update`` never touch the regions (the kernel's ``ops_fvaddr.init = NULL; ops_fvaddr.update = NULL``).

    Process targets are still opened at init (pidfd, kernel-thread check) so that ``target_valid`` and
    ``apply_scheme`` work; a target without regions is refused with :class:`InvalidParamsError`.
    """

    name = "fvaddr"
    manages_regions = False
