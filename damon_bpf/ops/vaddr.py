"""Virtual address spaces of processes: the user-space ``mm/damon/vaddr.c`` (ops ``vaddr`` and ``fvaddr``).

What is mirrored from the kernel:

- ``init``: targets without regions get the "three regions" of their address space
  (``damon_va_init()`` / ``__damon_va_init_regions()``); since Linux 7.1 the core, not the ops, splits them to
  honour ``min_nr_regions``, so no even split happens here.
- ``update``: every ``ops_update_interval`` the three regions are recomputed and applied with
  ``damon_set_regions()`` (``damon_va_update()``); a target whose maps cannot be read is skipped.
- ``target_valid``: the process still exists (``damon_va_target_valid()``). The kernel holds a ``struct pid``
  reference; here a pidfd (``pidfd_open(2)``) plays that role, so a recycled pid is never mistaken for the
  target.
- ``apply_scheme``: ``willneed``/``cold``/``pageout``/``collapse`` through ``process_madvise(2)`` on that pidfd
  (the kernel calls ``do_madvise()`` on the target's mm, ``damos_madvise()``); everything else returns 0.
- ``get_scheme_score``: ``damon_va_scheme_score()``.
- ``fvaddr``: the same ops with ``init = update = NULL`` (``ops_fvaddr`` in ``damon_va_initcall()``): the user's
  ranges stay fixed.

What is not: the accessed-bit check (``damon_va_prepare_access_checks()`` / ``damon_va_check_accesses()``) walks
page tables, which user space cannot do. :class:`VaddrOps` therefore checks accesses from *pushed reports*
(``ctx.reports``, the proposed ``damon_report_access()``): access sources (synthetic, page faults, perf samples)
subclass it and queue reports before calling :meth:`VaddrOps.check_accesses`.

Targets whose ``pid`` is None are fixed address spaces with no process behind them (for tests, benchmarks and
replays): they must come with regions (or the subclass provides them), are always valid, and are never updated.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import select
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from damon_bpf.engine.core import align_up, set_regions
from damon_bpf.engine.model import AddrRange, Ctx, Region, Target
from damon_bpf.engine.ops import DAMOS_MAX_SCORE, BaseOperations
from damon_bpf.engine.reports import account_reports
from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError, TargetGoneError
from damon_bpf.ops.common import region_cold_score, region_hot_score, scheme_action
from damon_bpf.ops.procmaps import Vma, read_maps, read_stat, real_vmas

__all__ = (
    "VaddrOps",
    "FvaddrOps",
    "VaddrTargetData",
    "three_regions",
    "process_madvise",
    "MADV_WILLNEED",
    "MADV_COLD",
    "MADV_PAGEOUT",
    "MADV_COLLAPSE",
)

log = logging.getLogger(__name__)

#: ``MADV_*`` values (``include/uapi/asm-generic/mman-common.h``) that ``process_madvise(2)`` accepts
#: (``process_madvise_behavior_valid()`` in ``mm/madvise.c``). ``MADV_HUGEPAGE``/``MADV_NOHUGEPAGE`` are not
#: among them, so the ``hugepage``/``nohugepage`` actions cannot be applied to another process.
MADV_WILLNEED = 3
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_COLLAPSE = 25

#: DAMOS action -> advice, as ``damon_va_apply_scheme()`` maps them.
_ACTION_ADVICE = {
    "willneed": MADV_WILLNEED,
    "cold": MADV_COLD,
    "pageout": MADV_PAGEOUT,
    "collapse": MADV_COLLAPSE,
}

#: ``__NR_process_madvise`` (``include/uapi/asm-generic/unistd.h``; the same number in
#: ``arch/x86/entry/syscalls/syscall_64.tbl``), since Linux 5.10.
_NR_PROCESS_MADVISE = 440


class _HasRange(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


def three_regions(vmas: Iterable[_HasRange], min_region_sz: int) -> list[AddrRange] | None:
    """``__damon_va_three_regions()``: three ranges that cover every mapping but the two biggest gaps.

    Walk the VMAs, tracking the two largest gaps between consecutive ones (a new maximum pushes the old one
    into second place; ties keep the earlier gap). Sort the two gaps by address and return::

        [ALIGN(first.start), ALIGN(gap1.start))
        [ALIGN(gap1.end),    ALIGN(gap2.start))
        [ALIGN(gap2.end),    ALIGN(last.end))

    where ``ALIGN`` rounds up to *min_region_sz*. Why: in a usual process layout the two biggest unmapped
    areas are between the heap and the mmap()-ed regions and between those and the stack; they are huge and
    never accessed, so covering them would waste regions::

        <heap>
        <BIG UNMAPPED REGION 1>
        <uppermost mmap()-ed region>
        (other mmap()-ed regions and small unmapped regions)
        <lowermost mmap()-ed region>
        <BIG UNMAPPED REGION 2>
        <stack>

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


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def process_madvise(pidfd: int, start: int, length: int, advice: int) -> int:
    """``process_madvise(pidfd, [{start, length}], 1, advice, 0)``.

    :return: the number of bytes advised
    :raises OSError: the system call failed (``EPERM`` without ``CAP_SYS_NICE``, ``ESRCH`` after the process
        exited, ``EINVAL`` for an advice the kernel does not accept remotely, ``ENOMEM`` for unmapped holes)
    """
    iov = _Iovec(start, length)
    rc = int(_libc().syscall(ctypes.c_long(_NR_PROCESS_MADVISE), ctypes.c_int(pidfd), ctypes.byref(iov),
                             ctypes.c_size_t(1), ctypes.c_int(advice), ctypes.c_uint(0)))
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def _pidfd_exited(pidfd: int) -> bool:
    # A pidfd polls readable (POLLIN) once the process has exited, zombie or reaped (pidfd_poll()).
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(0))


@dataclass(eq=False)
class VaddrTargetData:
    """Per-target state of the vaddr ops, kept in ``Target.ops_data`` (the kernel's ``struct pid`` reference).

    :ivar pidfd: a pidfd for the target process; None without ``pidfd_open(2)`` or after ``cleanup``
    :ivar starttime: ``/proc/<pid>/stat`` field 22 when the target was opened; with the pid it identifies the
        process where no pidfd is available
    :ivar vmas: the mappings read at the last ``init``/``update`` (for displays: :func:`.procmaps.mapping_at`)
    :ivar gone: the process was seen exited (sticky)
    """

    pidfd: int | None = None
    starttime: int | None = None
    vmas: list[Vma] = field(default_factory=list, repr=False)
    gone: bool = False


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
    supported_actions = frozenset({"willneed", "cold", "pageout", "collapse", "stat"})
    #: Whether init/update set the three regions (False for fvaddr: ``init = update = NULL``).
    manages_regions = True

    def __init__(self, *, proc_root: str = "/proc", use_pidfd: bool = True) -> None:
        self.proc_root = proc_root
        self.use_pidfd = use_pidfd and hasattr(os, "pidfd_open")

    # -- hooks -----------------------------------------------------------------------------------------

    def check_supported(self) -> None:
        """vaddr reads ``/proc/<pid>/maps``: procfs must be mounted.

        :raises NotSupportedError: no procfs at ``proc_root``
        """
        if not os.path.isdir(self.proc_root):
            raise NotSupportedError(f"{self.proc_root} is not available: vaddr needs procfs (Linux)")

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

    def update(self, ctx: Ctx) -> None:
        """``damon_va_update()``: re-read the maps of every live process target and ``set_regions()`` its
        three regions. Targets that exited or cannot be read are skipped; nothing raises for them."""
        if not self.manages_regions:
            return
        for ti, t in enumerate(ctx.targets):
            if t.pid is None or not self.target_valid(t):
                continue
            try:
                vmas = read_maps(t.pid, self.proc_root)
            except (TargetGoneError, PermissionDeniedError) as err:
                log.debug("update: skipping target %d (pid %d): %s", ti, t.pid, err)
                continue
            # Only maps read while our process was alive are its maps (the pid cannot be recycled before
            # the process is reaped, and the pidfd tells whether it exited).
            if not self.target_valid(t):
                continue
            if isinstance(t.ops_data, VaddrTargetData):
                t.ops_data.vmas = vmas
            self._apply_three_regions(ctx, ti, t, vmas)

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        """Account the reports queued in ``ctx.reports`` to the *nr_samples* sampling intervals that started at
        ``ctx.window_start_ns`` (:func:`~damon_bpf.engine.reports.account_reports`); returns the maximum
        ``nr_accesses``. Subclasses queue their reports, then call this."""
        return account_reports(ctx, ctx.window_start_ns, nr_samples)

    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Any) -> int:
        """``damon_va_scheme_score()``: ``pageout`` and ``migrate_cold`` use the cold score, ``migrate_hot`` the
        hot score, every other action ``DAMOS_MAX_SCORE``."""
        action = scheme_action(scheme)
        if action in ("pageout", "migrate_cold"):
            return region_cold_score(ctx, region, scheme)
        if action == "migrate_hot":
            return region_hot_score(ctx, region, scheme)
        return DAMOS_MAX_SCORE

    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Any) -> int:
        """``damon_va_apply_scheme()`` / ``damos_madvise()``: ``process_madvise(2)`` the page-aligned region with
        the action's advice. Returns the region's page-aligned size when the call advised all of it, else 0;
        ``stat`` and unsupported actions return 0."""
        advice = _ACTION_ADVICE.get(scheme_action(scheme) or "")
        data = target.ops_data
        if advice is None or target.pid is None or not isinstance(data, VaddrTargetData) or data.pidfd is None:
            return 0
        page_sz = os.sysconf("SC_PAGE_SIZE")
        start = align_up(region.start, page_sz)
        length = align_up(region.end - region.start, page_sz)
        try:
            advised = process_madvise(data.pidfd, start, length, advice)
        except OSError as err:
            log.debug("process_madvise(pid %d, %#x, %d, %d) failed: %s", target.pid, start, length, advice, err)
            return 0
        return length if advised == length else 0

    def target_valid(self, target: Target) -> bool:
        """``damon_va_target_valid()``: the process still exists and is the one that was opened (checked on its
        pidfd). Targets without pid are always valid."""
        pid = target.pid
        if pid is None:
            return True
        data = target.ops_data
        if not isinstance(data, VaddrTargetData):
            return self._proc_alive(pid, None)
        if data.gone:
            return False
        if data.pidfd is not None:
            alive = not _pidfd_exited(data.pidfd)
        else:
            alive = self._proc_alive(pid, data.starttime)
        if not alive:
            data.gone = True
        return alive

    def cleanup(self, ctx: Ctx) -> None:
        """Close the pidfds (the kernel's ``put_pid()`` in ``cleanup_target``)."""
        for t in ctx.targets:
            data = t.ops_data
            if isinstance(data, VaddrTargetData) and data.pidfd is not None:
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
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError as err:
                raise TargetGoneError(pid) from err
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
        ranges = three_regions(real_vmas(vmas), ctx.min_region_sz)
        if ranges is None:
            # the kernel's pr_debug("Failed to get three regions of %dth target")
            log.debug("failed to get three regions of target %d (pid %s)", target_idx, target.pid)
            return False
        set_regions(target, ranges, ctx.min_region_sz)
        return True

    def _proc_alive(self, pid: int, starttime: int | None) -> bool:
        try:
            st = read_stat(pid, self.proc_root)
        except (TargetGoneError, PermissionDeniedError):
            return False
        return not st.exited and (starttime is None or st.starttime == starttime)


class FvaddrOps(VaddrOps):
    """The ``fvaddr`` operations set: like :class:`VaddrOps` but for fixed, user-given ranges; ``init`` and
    ``update`` never touch the regions (the kernel's ``ops_fvaddr.init = NULL; ops_fvaddr.update = NULL``).

    Process targets are still opened at init (pidfd, kernel-thread check) so that ``target_valid`` and
    ``apply_scheme`` work; a target without regions is refused with :class:`InvalidParamsError`.
    """

    name = "fvaddr"
    manages_regions = False
