"""The ``fault`` access source: page faults of the monitored processes, counted per region in the kernel.

A page fault proves an access, but faults only happen while pages are not mapped: natural faults (first touch,
swap-in, copy-on-write) show working-set growth and nothing about memory that stays resident. Two ways make
resident memory fault again, and this source can use both:

- ``numa_hint_faults``: the kernel's NUMA balancing scanner makes PTEs of a task's memory inaccessible at
  intervals (``task_numa_work()``), and the next access takes a NUMA hinting fault, whatever the number of
  nodes. ``kernel.numa_balancing`` is set to 1 for the session and always restored. On one node, only
  processes with more than one thread are scanned here. The scanner's own period (seconds) bounds how often
  a page can re-fault: use aggregation intervals of a second or more with it.
- ``probe="pageout"``: DAMON-style probing: at every sampling interval one random page of each region is made
  non-present with ``process_madvise(MADV_PAGEOUT)`` (non-destructive: it is written back or dropped clean,
  and the next access faults it back in). Works for file-backed memory; anonymous memory needs swap to be
  reclaimed, so without swap anonymous regions cannot be probed (the source says so). Cost: one syscall per
  sampling interval and one refault per accessed region; use fewer regions or longer sampling intervals on
  large processes.

Read or write comes from the fault's error code (``X86_PF_WRITE``). Measured cost of the BPF program: see
``bench/overhead.py`` (about 160 ns per fault of a target process in the prototype).
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

import numpy as np

from damon_bpf.engine.model import Ctx
from damon_bpf.errors import InvalidParamsError
from damon_bpf.ops.bpf import BpfAccessOps
from damon_bpf.ops.procmaps import read_maps
from damon_bpf.ops.vaddr import VaddrTargetData
from damon_bpf.sysctl import SysctlOverride, read_sysctl

__all__ = ("FaultOps", "PROBES", "swap_active", "process_madvise_vec")

log = logging.getLogger(__name__)

PROBES = ("pageout",)
MADV_PAGEOUT = 21
_NR_PROCESS_MADVISE = 440
_IOV_MAX = 1024


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def process_madvise_vec(pidfd: int, starts: np.ndarray, length: int, advice: int) -> int:
    """``process_madvise()`` of many ranges of *length* bytes in chunks of ``IOV_MAX``; returns bytes advised.
    Failures of a chunk (the process exited, a range was unmapped meanwhile) end the call quietly."""
    done = 0
    for i in range(0, starts.size, _IOV_MAX):
        chunk = starts[i:i + _IOV_MAX]
        iov = (_Iovec * chunk.size)(*[(int(a), length) for a in chunk.tolist()])
        rc = int(_libc.syscall(ctypes.c_long(_NR_PROCESS_MADVISE), ctypes.c_int(pidfd), iov,
                               ctypes.c_size_t(chunk.size), ctypes.c_int(advice), ctypes.c_uint(0)))
        if rc < 0:
            log.debug("process_madvise: %s", os.strerror(ctypes.get_errno()))
            break
        done += rc
    return done


def swap_active(proc_root: str = "/proc") -> bool:
    try:
        with open(f"{proc_root}/swaps") as f:
            return len(f.read().strip().splitlines()) > 1
    except OSError:
        return False


class FaultOps(BpfAccessOps):
    """The ``fault`` operations set (see the module docstring).

    :param numa_hint_faults: turn on NUMA balancing for the session so resident memory keeps faulting
    :param probe: ``"pageout"`` for DAMON-style probing of one page per region per sampling interval
    """

    name = "fault"
    family = "pagefault"

    def __init__(self, *, numa_hint_faults: bool = False, probe: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        if probe is not None and probe not in PROBES:
            raise InvalidParamsError(f"unknown probe {probe!r} (known: {', '.join(PROBES)})")
        self.numa_hint_faults = numa_hint_faults
        self.probe_mode = probe
        # pageout probing acts every sampling interval: no batching
        self.batched = probe is None
        self._rng = np.random.default_rng()
        self._probeable: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.nr_probed = 0

    def init(self, ctx: Ctx) -> None:
        self._rng = np.random.default_rng(ctx.rng.getrandbits(64))
        super().init(ctx)
        try:
            if self.numa_hint_faults:
                self._overrides.append(SysctlOverride("kernel.numa_balancing", "1").apply())
                for t in ctx.targets:
                    if t.pid is not None and _nr_threads(t.pid, self.proc_root) < 2:
                        self.notes.append(
                            f"pid {t.pid} has one thread: NUMA balancing may not scan it on a one-node machine,"
                            " so hint faults may not come")
            elif self.probe_mode is None:
                self.notes.append("natural page faults only show first touches, swap-ins and COW: add "
                                  "--numa-hint-faults or --probe pageout to see accesses to resident memory")
            if self.probe_mode == "pageout":
                if not swap_active(self.proc_root):
                    self.notes.append("no swap: pageout probing re-arms file-backed memory only; anonymous "
                                      "regions cannot be probed (add a swapfile to probe them)")
                self._refresh_probeable(ctx)
        except BaseException:
            self.cleanup(ctx)
            raise

    def attach(self, ctx: Ctx) -> None:
        self.attach_point = self.probe.attach_page_faults()

    def update(self, ctx: Ctx) -> None:
        super().update(ctx)
        if self.probe_mode == "pageout":
            self._refresh_probeable(ctx)

    def _refresh_probeable(self, ctx: Ctx) -> None:
        # Mappings whose pages MADV_PAGEOUT can really make non-present: file-backed ones, and anonymous ones
        # when swap is on. Kept as sorted (start, end) arrays per pid.
        swap = swap_active(self.proc_root)
        for t in ctx.targets:
            if t.pid is None:
                continue
            data = t.ops_data
            vmas = data.vmas if isinstance(data, VaddrTargetData) and data.vmas else []
            if not vmas:
                try:
                    vmas = read_maps(t.pid, self.proc_root)
                except Exception:
                    continue
            ok = [(v.start, v.end) for v in vmas
                  if (v.inode != 0 and not v.pathname.startswith("[")) or (swap and v.inode == 0)]
            arr = np.array(ok, dtype=np.int64).reshape(-1, 2)
            self._probeable[t.pid] = (arr[:, 0].copy(), arr[:, 1].copy())

    def prepare_access_checks(self, ctx: Ctx) -> None:
        super().prepare_access_checks(ctx)
        if self.probe_mode != "pageout":
            return
        for t in ctx.targets:
            data = t.ops_data
            if t.pid is None or not isinstance(data, VaddrTargetData) or data.pidfd is None or not len(t.ra):
                continue
            vs, ve = self._probeable.get(t.pid, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            if not vs.size:
                continue
            pages = (t.ra.end - t.ra.start) // 4096
            addr = t.ra.start + (self._rng.random(len(t.ra)) * pages).astype(np.int64) * 4096
            i = np.searchsorted(vs, addr, side="right") - 1
            ok = (i >= 0) & (addr < ve[np.maximum(i, 0)])
            sel = addr[ok]
            if sel.size:
                self.nr_probed += process_madvise_vec(data.pidfd, sel, 4096, MADV_PAGEOUT) // 4096

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        if self.numa_hint_faults:
            try:
                out["numa_balancing"] = read_sysctl("kernel.numa_balancing")
            except Exception:
                pass
        if self.probe_mode == "pageout":
            out["probed_pages"] = self.nr_probed
        return out


def _nr_threads(pid: int, proc_root: str) -> int:
    try:
        return len(os.listdir(f"{proc_root}/{pid}/task"))
    except OSError:
        return 0
