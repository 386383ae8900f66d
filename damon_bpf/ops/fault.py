"""The ``fault`` access source: page faults of the monitored processes, counted per region in the kernel.

A page fault proves an access, but faults only happen while pages are not mapped: natural faults show
working-set growth and nothing about resident memory. Two ways make resident memory fault again:

- ``numa_hint_faults``: NUMA balancing's scanner (``kernel.numa_balancing`` set to 1 for the session, always
  restored); its period of seconds wants aggregation intervals of a second or more.
- ``probe="pageout"``: one random page of each region made non-present every sampling interval with
  ``process_madvise(MADV_PAGEOUT)``; file-backed memory only without swap.

Read or write comes from the fault's error code (``X86_PF_WRITE``). See docs/ops.md, section "The fault
source", for the details and costs.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from damon_bpf.engine.model import Ctx
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux.syscalls import MADV_PAGEOUT, process_madvise
from damon_bpf.linux.memory import read_swaps
from damon_bpf.linux.kpage import KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, PM_PFN, PM_PRESENT
from damon_bpf.ops.bpf import BpfAccessOps
from damon_bpf.ops.sources.fault import PROBES
from damon_bpf.linux.procmaps import read_maps
from damon_bpf.ops.vaddr import VaddrTargetData
from damon_bpf.linux.sysctl import SysctlOverride, read_sysctl

__all__ = ("FaultOps", "PROBES", "swap_active")

log = logging.getLogger(__name__)

_CHUNK = 2 << 20
_LARGE_FOLIO_REFRESH_S = 0.25


def swap_active(proc_root: str = "/proc") -> bool:
    return bool(read_swaps(proc_root))


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
        self._probeable_at = 0.0
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
        if self.writes_only and self.attach_point.startswith("software perf event"):
            # the perf event's sample has no error code: with WRITES_ONLY it would count nothing
            raise NotSupportedError("--writes-only: the page_fault_user tracepoint is unavailable here and the "
                                    "software page-fault event does not tell reads from writes")

    def update(self, ctx: Ctx) -> None:
        super().update(ctx)
        if self.probe_mode == "pageout":
            self._refresh_probeable(ctx)

    def _refresh_probeable(self, ctx: Ctx) -> None:
        # Mappings whose pages MADV_PAGEOUT can really make non-present: file-backed ones, and anonymous ones
        # when swap is on; and, in file mappings, which 2 MiB chunks (file-offset aligned) hold large folios.
        # MADV_PAGEOUT skips a large folio unless the range covers all of it (splitting page-cache folios
        # mostly fails), so a sample page in such a chunk is probed by paging out the whole chunk: the folio
        # is the unit the kernel's own accessed-bit check works on too (damon_folio_young()).
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
            # special mappings ([vsyscall], [vdso], [stack]...) are never probed; [vsyscall] also lies above 2^63
            rows = [(v.start, v.end, v.offset, 1 if v.inode else 0) for v in vmas
                    if not v.pathname.startswith("[") and v.end < 2**63 and (v.inode != 0 or swap)]
            arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
            large = _large_folio_chunks(t.pid, arr, self.proc_root)
            self._probeable[t.pid] = (arr, large)
        self._probeable_at = time.monotonic()

    def prepare_access_checks(self, ctx: Ctx) -> None:
        super().prepare_access_checks(ctx)
        if self.probe_mode != "pageout":
            return
        now = time.monotonic()
        if now - self._probeable_at >= _LARGE_FOLIO_REFRESH_S:
            # refaulted file pages come back as large folios: refresh which chunks hold them more often than
            # the ops update interval, or their pages stop being probed (and read as idle) until the update
            self._refresh_probeable(ctx)
        for t in ctx.targets:
            data = t.ops_data
            if t.pid is None or not isinstance(data, VaddrTargetData) or data.pidfd is None or not len(t.ra):
                continue
            entry = self._probeable.get(t.pid)
            if entry is None or not entry[0].size:
                continue
            vmas, large = entry
            pages = (t.ra.end - t.ra.start) // 4096
            addr = t.ra.start + (self._rng.random(len(t.ra)) * pages).astype(np.int64) * 4096
            i = np.searchsorted(vmas[:, 0], addr, side="right") - 1
            iv = np.maximum(i, 0)
            ok = (i >= 0) & (addr < vmas[iv, 1])
            addr, iv = addr[ok], iv[ok]
            if not addr.size:
                continue
            starts, lengths = addr, np.full(addr.size, 4096, dtype=np.int64)
            if large.size:
                # chunk start in virtual addresses: file offset aligned down to 2 MiB
                foff = vmas[iv, 2] + (addr - vmas[iv, 0])
                cstart = addr - (foff % _CHUNK)
                big = (vmas[iv, 3] == 1) & np.isin(cstart, large)
                if big.any():
                    cs = np.maximum(cstart, vmas[iv, 0])
                    ce = np.minimum(cstart + _CHUNK, vmas[iv, 1])
                    starts = np.where(big, cs, addr)
                    lengths = np.where(big, ce - cs, lengths)
            try:
                # ends at the first range refused (the process exited, a range was unmapped meanwhile)
                self.nr_probed += process_madvise(data.pidfd, np.column_stack((starts, lengths)),
                                                  MADV_PAGEOUT) // 4096
            except OSError as err:  # also TargetGoneError (ESRCH) and PermissionDeniedError: probing ends quietly
                log.debug("process_madvise: %s", err)

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


def _large_folio_chunks(pid: int, vmas: np.ndarray, proc_root: str) -> np.ndarray:
    """Virtual start addresses of the 2 MiB (file-offset aligned) chunks of file mappings whose first resident
    page is part of a large folio, from ``/proc/<pid>/pagemap`` and ``/proc/kpageflags`` (root only; without
    them no chunk is known to be large and probing uses single pages)."""
    out: list[int] = []
    try:
        pm = os.open(f"{proc_root}/{pid}/pagemap", os.O_RDONLY)
    except OSError:
        return np.zeros(0, dtype=np.int64)
    try:
        kf = os.open(f"{proc_root}/kpageflags", os.O_RDONLY)
    except OSError:
        os.close(pm)
        return np.zeros(0, dtype=np.int64)
    try:
        for start, end, offset, is_file in vmas.tolist():
            if not is_file or end - start < _CHUNK // 4:
                continue
            c = start - ((offset) % _CHUNK)
            while c < end:
                probe = max(c, start)
                try:
                    ent = int.from_bytes(os.pread(pm, 8, probe // 4096 * 8), "little")
                    if ent & PM_PRESENT and ent & PM_PFN:
                        flags = int.from_bytes(os.pread(kf, 8, (ent & PM_PFN) * 8), "little")
                        if flags & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL):
                            out.append(c)
                except OSError:
                    break
                c += _CHUNK
    finally:
        os.close(pm)
        os.close(kf)
    return np.array(sorted(out), dtype=np.int64)


def _nr_threads(pid: int, proc_root: str) -> int:
    try:
        return len(os.listdir(f"{proc_root}/{pid}/task"))
    except OSError:
        return 0
