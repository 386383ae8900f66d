"""Run a workload config: map the regions, touch them phase by phase from N threads, log the ground truth.

This is masim's ``main.c`` (``sjp38/masim``): regions are mapped up front, every page is written once so
the whole working set is resident, and then the phases run in a loop. masim touches memory with a C loop; here
every access batch is one vectorised numpy operation on an ``np.frombuffer`` view of the mapping, so a batch of
a few thousand touches costs about a millisecond and never a Python loop per page.

Threads: the main thread only keeps time. ``threads`` worker threads all run the access loop of the current
phase, so the process is multi-threaded like the workloads NUMA balancing targets (its hint-fault sampling and
task grouping, ``task_numa_work()`` / ``task_numa_group()`` in kernel/sched/fair.c, are per thread). Phase
switches are a generation counter::

    main:    gen+1, plan=phase ─────── wait(duration) ─── gen+1, plan=None ── wait all acks ── write record
    worker:        wake, batch, batch, batch, ...  (gen changed) ─ finish batch ─ add counts, ack ─ sleep

so every touch of a phase is counted in that phase's record and falls inside its ``[start, end)``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import math
import mmap
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.config.units import format_bytes
from damon_bpf.workload.config import PAGE_SIZE, Access, Pattern, PhaseAccess, PhaseSpec, WorkloadConfig
from damon_bpf.workload.truth import TruthWriter

__all__ = ("DEFAULT_BATCH_TOUCHES", "MAX_THREADS", "RegionInfo", "Workload")

logger = logging.getLogger(__name__)

# Touches per access batch: a few thousand random page touches take ~1 ms, which keeps phase switches and
# signal handling prompt while the numpy call overhead stays negligible.
DEFAULT_BATCH_TOUCHES = 4096
MAX_THREADS = 1024
# How often the timekeeping main thread wakes up to look at stop requests and worker errors.
_POLL_S = 0.05

_U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class RegionInfo:
    """A mapped region of the running workload.

    :param name: region name from the config
    :param start: first virtual address
    :param end: one past the last virtual address
    :param file_backed: whether a file backs it
    :param path: the backing file, or ``None`` for anonymous memory
    """

    name: str
    start: int
    end: int
    file_backed: bool
    path: str | None = None

    @property
    def size_bytes(self) -> int:
        """``end - start``."""
        return self.end - self.start


@dataclass
class _Mapping:
    info: RegionInfo
    mm: mmap.mmap
    arr: _U8


@dataclass(frozen=True)
class _Plan:
    # One phase, resolved to mapping indices, with cumulative weights for picking a region per batch.
    phase: PhaseSpec
    accesses: tuple[PhaseAccess, ...]
    region_idx: tuple[int, ...]
    cum_weights: npt.NDArray[np.float64]
    # per worker: the cumulative weights of the accesses it makes (PhaseAccess.thread; 0 for the others')
    worker_cum: tuple[npt.NDArray[np.float64], ...] = ()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]


def _mem_available_bytes() -> int | None:
    # MemAvailable is the kernel's own estimate of what can be allocated without swapping
    # (si_mem_available() in mm/show_mem.c); None if /proc/meminfo cannot tell.
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Workload:
    """A workload process-in-the-making: :meth:`setup`, then :meth:`run`, then :meth:`close` (or use it as a
    context manager, which closes).

    :param config: the regions and phases
    :param threads: number of worker threads running the access loop
    :param file_dir: folder for the files of file-backed regions (default: the system temp folder)
    :param truth_path: where to write the ground truth (JSON lines, see :mod:`damon_bpf.workload.truth`);
        ``None`` writes none
    :param seed: seed for the access pattern RNGs; ``None`` draws one (it is written to the truth)
    :param batch_touches: touches per access batch
    :param verify: data-integrity mode: every byte holds a known pattern (written at setup, and writes store the
        pattern's value), checked for every region at each phase end; a difference raises
        :class:`DataIntegrityError` (DAMOS must never change what a process reads)
    :raises InvalidParamsError: bad *threads*, *batch_touches* or *file_dir*
    """

    def __init__(
        self,
        config: WorkloadConfig,
        *,
        threads: int = 1,
        file_dir: str | os.PathLike[str] | None = None,
        truth_path: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        batch_touches: int = DEFAULT_BATCH_TOUCHES,
        verify: bool = False,
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
            raise InvalidParamsError(f"threads must be between 1 and {MAX_THREADS}, not {threads!r}")
        if isinstance(batch_touches, bool) or not isinstance(batch_touches, int) or batch_touches < 1:
            raise InvalidParamsError(f"batch_touches must be a positive integer, not {batch_touches!r}")
        if file_dir is not None and not os.path.isdir(file_dir):
            raise InvalidParamsError(f"{os.fspath(file_dir)!r} is not a directory")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise InvalidParamsError(f"seed must be a non-negative integer, not {seed!r}")
        self.config = config
        self.threads = threads
        self._file_dir = os.fspath(file_dir) if file_dir is not None else None
        self._truth_path = truth_path
        # A drawn seed is kept to 32 bits so it survives JSON readers that use doubles.
        self.seed: int = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
        self._seed_seq = np.random.SeedSequence(self.seed)
        self._batch_touches = batch_touches
        self.verify = verify
        #: pages checked by the integrity mode so far
        self.nr_verified_pages = 0

        self._maps: list[_Mapping] = []
        self._plans: list[_Plan] = []
        self._truth: TruthWriter | None = None
        self._workers: list[threading.Thread] = []
        self._sinks: list[int] = [0] * threads
        self._set_up = False
        self._closed = False
        self._start_time: float | None = None

        # Shared with the workers, under _cond.
        self._cond = threading.Condition()
        self._gen = 0
        self._plan: _Plan | None = None
        self._counts: list[int] = []
        self._acks = 0
        self._exiting = False
        self._error: BaseException | None = None

    # --- public info ------------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id (the workload runs in the calling process)."""
        return os.getpid()

    @property
    def regions(self) -> list[RegionInfo]:
        """The mapped regions, in config order; empty before :meth:`setup`."""
        return [m.info for m in self._maps]

    @property
    def start_time(self) -> float | None:
        """``time.monotonic()`` at the end of :meth:`setup` (the ``start`` record's ``time``), else ``None``."""
        return self._start_time

    def start_record(self) -> dict[str, Any]:
        """The ``start`` truth record (see :mod:`damon_bpf.workload.truth`).

        :raises DamonBpfError: :meth:`setup` has not run
        """
        if self._start_time is None:
            raise DamonBpfError("workload is not set up")
        return {
            "type": "start",
            "pid": self.pid,
            "time": self._start_time,
            "page_size": PAGE_SIZE,
            "threads": self.threads,
            # the workers' thread ids (in worker order): PhaseAccess.thread numbers them
            "thread_ids": [t.native_id for t in self._workers],
            "pattern": self.config.name,
            "seed": self.seed,
            "regions": [
                {"name": r.name, "start": r.start, "end": r.end, "file_backed": r.file_backed} for r in self.regions
            ],
        }

    # --- setup --------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Map every region, write each page once, open the truth file, write the ``start`` record and start the
        worker threads. On failure everything done so far is undone.

        :raises InvalidParamsError: the regions do not fit in available memory
        :raises DamonBpfError: mapping, the backing files or the truth file failed
        """
        if self._set_up or self._closed:
            raise DamonBpfError("setup() can only be called once, before close()")
        self._set_up = True
        avail = _mem_available_bytes()
        total = self.config.total_bytes
        if avail is not None and total > avail:
            raise InvalidParamsError(
                f"the workload needs {format_bytes(total)} but only {format_bytes(avail)} is available; "
                "use a smaller --scale"
            )
        try:
            for spec in self.config.regions:
                self._maps.append(self._map_region(spec.name, spec.size_bytes, spec.file_backed))
            self._plans = [self._make_plan(p) for p in self.config.phases]
            self._counts = [0] * len(self._maps)
            if self._truth_path is not None:
                self._truth = TruthWriter(self._truth_path)
            rngs = [np.random.default_rng(s) for s in self._seed_seq.spawn(self.threads)]
            for tid, rng in enumerate(rngs):
                t = threading.Thread(
                    target=self._worker, args=(tid, rng), name=f"damon-bpf-workload-{tid}", daemon=True
                )
                t.start()
                self._workers.append(t)
            self._start_time = time.monotonic()
            if self._truth is not None:
                self._truth.write(self.start_record())
        except BaseException:
            self.close()
            raise
        logger.debug("set up %d regions, %s, %d threads", len(self._maps), format_bytes(total), self.threads)

    def _map_region(self, name: str, size: int, file_backed: bool) -> _Mapping:
        path: str | None = None
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        try:
            if file_backed or self._file_dir is not None:
                # A sparse file of the right size, its blocks reserved so that writing through the mapping
                # cannot hit ENOSPC (which would be a SIGBUS, not an error), then mapped shared.
                fd, path = tempfile.mkstemp(
                    prefix=f"damon-bpf-workload-{os.getpid()}-{_safe_name(name)}-", suffix=".mem", dir=self._file_dir
                )
                try:
                    os.ftruncate(fd, size)
                    try:
                        os.posix_fallocate(fd, 0, size)
                    except OSError as err:
                        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here: stay sparse
                            raise
                    mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=prot)
                finally:
                    os.close(fd)
            else:
                # Private anonymous memory, what a heap is made of. (mmap.mmap(-1, n) alone would be
                # MAP_SHARED, i.e. shmem, which the kernel ages and reclaims as file pages.)
                mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=prot)
        except OSError as err:
            if path is not None:
                _unlink_quiet(path)
            raise DamonBpfError(f"cannot map region {name!r} ({format_bytes(size)}): {err.strerror or err}") from err
        arr: _U8 = np.frombuffer(mm, dtype=np.uint8)
        # Write every page once so the whole region is resident (a read would only map the zero page); in the
        # integrity mode every byte gets its pattern value
        if self.verify:
            for off in range(0, size, _VERIFY_CHUNK):
                n = min(_VERIFY_CHUNK, size - off)
                arr[off:off + n] = _pattern(len(self._maps), off, n)
        else:
            arr[::PAGE_SIZE] = 1
        cobj = ctypes.c_char.from_buffer(mm)
        start = ctypes.addressof(cobj)
        del cobj  # drop the buffer export, or mm.close() fails
        info = RegionInfo(name=name, start=start, end=start + size, file_backed=path is not None, path=path)
        return _Mapping(info=info, mm=mm, arr=arr)

    def _make_plan(self, phase: PhaseSpec) -> _Plan:
        names = [m.info.name for m in self._maps]
        idx = tuple(names.index(a.region) for a in phase.accesses)
        cum = np.cumsum(np.array([a.weight for a in phase.accesses], dtype=np.float64))
        worker_cum = tuple(
            np.cumsum(np.array([a.weight if a.thread is None or a.thread % self.threads == w else 0.0
                                for a in phase.accesses], dtype=np.float64))
            for w in range(self.threads))
        return _Plan(phase=phase, accesses=phase.accesses, region_idx=idx, cum_weights=cum, worker_cum=worker_cum)

    # --- worker threads -----------------------------------------------------------------------------------

    def _worker(self, tid: int, rng: np.random.Generator) -> None:
        seen = 0
        # Per-region sequential cursors; threads start at staggered offsets so they do not sweep in lockstep.
        cursors: dict[int, int] = {}
        while True:
            with self._cond:
                while self._gen == seen and not self._exiting:
                    self._cond.wait()
                if self._exiting:
                    return
                seen = self._gen
                plan = self._plan
            counts = [0] * len(self._maps)
            err: BaseException | None = None
            try:
                if plan is not None and plan.accesses and plan.worker_cum[tid][-1] > 0:
                    while self._gen == seen:
                        ri, n = self._batch(tid, plan, rng, cursors)
                        counts[ri] += n
                elif plan is not None:
                    # An idle phase (for this worker): sleep through it, ack once when it ends like everyone else.
                    with self._cond:
                        while self._gen == seen and not self._exiting:
                            self._cond.wait()
            except Exception as e:  # reported to the main thread, which raises it
                err = e
            with self._cond:
                for i, c in enumerate(counts):
                    self._counts[i] += c
                self._acks += 1
                if err is not None and self._error is None:
                    self._error = err
                # The main thread waits for every ack before the next phase, so this is the idle generation.
                seen = self._gen
                self._cond.notify_all()
            if err is not None:
                return

    def _batch(self, tid: int, plan: _Plan, rng: np.random.Generator, cursors: dict[int, int]) -> tuple[int, int]:
        # One access batch: pick a region by weight, touch it, return (mapping index, touches).
        j = 0
        if len(plan.accesses) > 1:
            cum = plan.worker_cum[tid]  # a zero weight (another worker's access) is never picked
            j = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
            j = min(j, len(plan.accesses) - 1)
        acc = plan.accesses[j]
        ri = plan.region_idx[j]
        arr = self._maps[ri].arr
        size = arr.shape[0]
        stride = acc.stride_bytes
        n = self._batch_touches
        value = np.uint8(rng.integers(0, 256))
        if acc.pattern is Pattern.RANDOM:
            off = rng.integers(0, size // stride, size=n, dtype=np.int64)
            off *= stride
            if self.verify and acc.access is not Access.READ:
                # writes store the pattern, so the content stays known
                self._sinks[tid] += int(arr[off].sum())
                arr[off] = _pattern_at(ri, off)
            elif acc.access is Access.READ:
                self._sinks[tid] += int(arr[off].sum())
            elif acc.access is Access.WRITE:
                arr[off] = value
            else:
                vals = arr[off]
                self._sinks[tid] += int(vals[0])
                vals += value
                arr[off] = vals
            return ri, n
        pos = cursors.get(ri)
        if pos is None:
            pos = (tid * (size // self.threads)) // stride * stride
        end = min(pos + n * stride, size)
        view = arr[pos:end:stride]
        if self.verify and acc.access is not Access.READ:
            self._sinks[tid] += int(view.sum())
            view[...] = _pattern_at(ri, np.arange(pos, end, stride, dtype=np.int64))
        elif acc.access is Access.READ:
            self._sinks[tid] += int(view.sum())
        elif acc.access is Access.WRITE:
            view[...] = value
        else:
            self._sinks[tid] += int(view.sum())
            view += value
        cursors[ri] = end if end < size else 0
        return ri, int(view.shape[0])

    # --- main loop ----------------------------------------------------------------------------------------

    def run(self, duration_s: float | None = None, stop_event: threading.Event | None = None) -> None:
        """Run the phases in order, cycling, until *duration_s* has passed or *stop_event* is set; a ``phase``
        record is written as each phase ends (also when cut short).

        :param duration_s: total run time in seconds; ``None`` runs until *stop_event* is set
        :param stop_event: set it (from a signal handler or another thread) to stop after the current batch
        :raises InvalidParamsError: negative *duration_s*
        :raises DamonBpfError: not set up, or a worker thread or the truth file failed
        """
        if not self._set_up or self._closed or self._start_time is None:
            raise DamonBpfError("run() needs setup() first and no close()")
        if duration_s is not None and (math.isnan(duration_s) or duration_s < 0):
            raise InvalidParamsError(f"duration must be >= 0 seconds, not {duration_s}")
        stop = stop_event if stop_event is not None else threading.Event()
        deadline = math.inf if duration_s is None else time.monotonic() + duration_s
        while True:
            for plan in self._plans:
                now = time.monotonic()
                if now >= deadline or stop.is_set():
                    return
                self._run_phase(plan, min(now + plan.phase.duration_s, deadline), stop)

    def _run_phase(self, plan: _Plan, phase_end: float, stop: threading.Event) -> None:
        t0 = time.monotonic()
        with self._cond:
            self._counts = [0] * len(self._maps)
            self._acks = 0
            self._plan = plan
            self._gen += 1
            self._cond.notify_all()
        try:
            while self._error is None and not stop.is_set():
                left = phase_end - time.monotonic()
                if left <= 0:
                    break
                stop.wait(min(left, _POLL_S))
        finally:
            with self._cond:
                self._plan = None
                self._gen += 1
                self._cond.notify_all()
                while self._acks < len(self._workers):
                    self._cond.wait(_POLL_S)
                counts = list(self._counts)
            t1 = time.monotonic()
            self._write_phase(plan, t0, t1, counts)
        if self._error is None and self.verify:
            self.check_integrity(plan.phase.name)
        if self._error is not None:
            raise DamonBpfError(f"workload thread failed: {self._error}") from self._error

    def check_integrity(self, when: str = "") -> None:
        """Compare every byte of every region with its pattern (the integrity mode); the workers are idle.

        :raises DataIntegrityError: the first difference, with the region, the offset and both values
        """
        for ri, m in enumerate(self._maps):
            arr, size = m.arr, m.arr.shape[0]
            for off in range(0, size, _VERIFY_CHUNK):
                n = min(_VERIFY_CHUNK, size - off)
                diff = np.flatnonzero(arr[off:off + n] != _pattern(ri, off, n))
                if diff.size:
                    at = off + int(diff[0])
                    raise DataIntegrityError(
                        f"data changed in region {m.info.name!r} at offset {at:#x} (address {m.info.start + at:#x})"
                        f"{' after phase ' + repr(when) if when else ''}: read {int(arr[at])}, wrote "
                        f"{int(_pattern_at(ri, np.array([at]))[0])}; {diff.size} bytes differ in this 16 MiB")
            self.nr_verified_pages += -(-size // PAGE_SIZE)

    def _write_phase(self, plan: _Plan, t0: float, t1: float, counts: list[int]) -> None:
        if self._truth is None:
            return
        by_region = dict(zip(plan.region_idx, plan.accesses))
        dt = t1 - t0
        regions = []
        for i, m in enumerate(self._maps):
            acc = by_region.get(i)
            regions.append(
                {
                    "name": m.info.name,
                    "start": m.info.start,
                    "end": m.info.end,
                    "hot": acc is not None,
                    "pattern": acc.pattern.value if acc is not None else None,
                    "access": acc.access.value if acc is not None else None,
                    **({"thread": acc.thread % self.threads} if acc is not None and acc.thread is not None else {}),
                    "nr_touches": counts[i],
                    "touches_per_sec": counts[i] / dt if dt > 0 else 0.0,
                }
            )
        self._truth.write({"type": "phase", "name": plan.phase.name, "start": t0, "end": t1, "regions": regions})

    # --- teardown -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers, write the ``end`` record, close the truth file, unmap the regions and remove the
        backing files. Calling it again does nothing.

        :raises DamonBpfError: the truth file could not be written or a backing file could not be removed (the
            rest of the cleanup is still done)
        """
        if self._closed:
            return
        self._closed = True
        first_err: BaseException | None = None
        with self._cond:
            self._exiting = True
            self._plan = None
            self._gen += 1
            self._cond.notify_all()
        for t in self._workers:
            t.join()
        self._workers = []
        if self._truth is not None:
            try:
                if self._start_time is not None:
                    self._truth.write({"type": "end", "time": time.monotonic()})
            except DamonBpfError as err:
                first_err = err
            try:
                self._truth.close()
            except DamonBpfError as err:
                first_err = first_err or err
            self._truth = None
        maps, self._maps = self._maps, []
        for m in maps:
            m.arr = np.empty(0, dtype=np.uint8)  # drop the view before closing the mapping it exports
            try:
                m.mm.close()
            except (BufferError, OSError) as err:
                logger.debug("cannot unmap region %r: %s", m.info.name, err)
            if m.info.path is not None:
                try:
                    _unlink_quiet(m.info.path)
                except OSError as err:
                    first_err = first_err or DamonBpfError(
                        f"cannot remove {m.info.path!r}: {err.strerror or err}"
                    )
        if first_err is not None:
            raise first_err

    def __enter__(self) -> Workload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: the integrity mode writes and checks regions in pieces of this size
_VERIFY_CHUNK = 16 << 20


class DataIntegrityError(DamonBpfError):
    """A region's content differs from what the workload wrote (see ``Workload(verify=True)``)."""


def _pattern_at(region_idx: int, off: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    # the integrity mode's byte at each offset: a function of the region, the page and the place in the page,
    # so that a page swapped with another, zeroed or shifted reads wrong
    return ((off >> 12) * 131 + (off & 4095) + region_idx * 7 + 1).astype(np.uint8)


def _pattern(region_idx: int, off: int, n: int) -> npt.NDArray[np.uint8]:
    # _pattern_at() of [off, off + n) for a page-aligned off, built page by page in uint8 (wrapping mod 256)
    first = off >> 12
    nr_pages = -(-n // PAGE_SIZE)
    row = ((np.arange(PAGE_SIZE, dtype=np.int64) + region_idx * 7 + 1) & 0xFF).astype(np.uint8)
    add = (((np.arange(first, first + nr_pages, dtype=np.int64) * 131) & 0xFF).astype(np.uint8))
    return (row[np.newaxis, :] + add[:, np.newaxis]).reshape(-1)[:n]


def _unlink_quiet(path: str) -> None:
    # Remove a backing file; already gone is fine.
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def disk_backed_dir() -> str:
    """A writable folder on a disk-backed file system for file-backed workloads: tmpfs pages are shmem, which
    ``MADV_PAGEOUT`` cannot drop without swap. ``/var/tmp`` when writable, else the temporary folder."""
    for d in ("/var/tmp", tempfile.gettempdir()):
        if os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    return tempfile.gettempdir()
