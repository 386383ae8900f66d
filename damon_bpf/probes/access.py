"""Loader and drain of the in-kernel access aggregation (``bpf/pagefault.bpf.c``, ``bpf/perf_sample.bpf.c``).

The BPF side is described in ``bpf/access_agg_types.h``. This module publishes region tables, switches
generations, and drains per-region counters. The arrays are ``BPF_F_MMAPABLE`` and mapped into this process,
so publishing a table, reading a generation's counters and resetting them are numpy operations on the maps'
memory, with no system call (the per-CPU counters are blocks of one plain array, one block per CPU); only the
attribution hash map (``agg_ips``) is drained with a batch operation, and only when events were counted since
its last drain. Whatever the event rate, numpy arrays come back (never bcc ``Table`` objects).

Timeline of one aggregation window (``damon_bpf.ops.bpf`` drives it)::

    publish(tables, window_start)   writes the idle generation, then flips agg_config in one 8-byte store
    ... events count into the new generation, bit i = sampling interval i of the window ...
    read(gen)                        counters of the window, OR-ed / summed over CPUs (no reset)
    publish(next tables)             flip again; late events of the old generation are read by
    take_bits(old gen)               the caller (bits past the window) and the old counters reset
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import InvalidParamsError, NotSupportedError, ProbeAttachError, ProbeLoadError
from damon_bpf.probes import _bcc

__all__ = ("AccessProbeConfig", "AccessProbe", "STATS", "Drained", "fdinfo_run_stats")

log = logging.getLogger(__name__)

#: Names of the per-CPU counters in ``agg_pcpu.stats`` (``enum agg_stat``), in order.
STATS = ("events", "counted", "dropped_rate_limit", "no_region", "ip_map_full", "late", "thread_map_full")

_U64 = npt.NDArray[np.uint64]


# ctypes mirrors of the structs of bpf/access_agg_types.h, field for field (tests/unit/test_bpf_sources.py and
# tests/kernel/test_bpf_layout.py compare them with the header); the views of the mapped maps take their shapes
# from these.
class _AggConfig(ctypes.Structure):
    _fields_ = (("gen_start", ctypes.c_uint64), ("sample_ns", ctypes.c_uint64))


class _AggRegion(ctypes.Structure):
    _fields_ = (("start", ctypes.c_uint64), ("end", ctypes.c_uint64))


class _AggSpan(ctypes.Structure):
    _fields_ = (("off", ctypes.c_uint32), ("nr", ctypes.c_uint32))


class _AggIpKey(ctypes.Structure):
    _fields_ = (("slot", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("ip", ctypes.c_uint64))


class _AggThreadKey(ctypes.Structure):
    _fields_ = (("slot", ctypes.c_uint32), ("tid", ctypes.c_uint32))


class _AggPcpu(ctypes.Structure):
    _fields_ = (("stats", ctypes.c_uint64 * len(STATS)), ("tokens", ctypes.c_uint64), ("last_ns", ctypes.c_uint64))


@functools.lru_cache(maxsize=None)
def _agg_counter(bitmap_words: int) -> type[ctypes.Structure]:
    """``struct agg_counter`` of a program compiled with ``-DBITMAP_WORDS=bitmap_words``."""
    fields = (("nr_events", ctypes.c_uint64), ("nr_writes", ctypes.c_uint64), ("bits", ctypes.c_uint64 * bitmap_words))
    return type("_AggCounter", (ctypes.Structure,), {"_fields_": fields})


def _agg_structs(bitmap_words: int) -> dict[str, type[ctypes.Structure]]:
    """The mirrors by C struct name, for a program compiled with ``-DBITMAP_WORDS=bitmap_words``."""
    return {
        "agg_config": _AggConfig,
        "agg_region": _AggRegion,
        "agg_span": _AggSpan,
        "agg_counter": _agg_counter(bitmap_words),
        "agg_ip_key": _AggIpKey,
        "agg_thread_key": _AggThreadKey,
        "agg_pcpu": _AggPcpu,
    }


def _words(struct: type[ctypes.Structure]) -> int:
    return ctypes.sizeof(struct) // 8


# u64 word indexes within the structs, as the numpy views of the maps see them
_BITS = _agg_counter(1).bits.offset // 8
_COUNTED = STATS.index("counted")


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


@dataclass(frozen=True)
class AccessProbeConfig:
    """Parameters of an aggregation program; each becomes a ``-D`` flag (style C9).

    :ivar family: ``"pagefault"`` or ``"perf_sample"``
    :ivar max_targets: processes monitored at once
    :ivar max_regions: regions of all targets together in one generation (rounded up to a power of two)
    :ivar max_intervals: sampling intervals one window can distinguish (the bitmap length, rounded up to 64)
    :ivar ip_entries: capacity of the (region, instruction pointer) attribution map; 0 disables attribution
    :ivar rate_limit: events per second per CPU that are counted; 0: no limit
    :ivar rate_burst: events a CPU may count at once above the rate
    :ivar nr_cpus: CPUs the per-CPU counters have room for; 0: this machine's possible CPUs
    :ivar thread_entries: capacity of the (region, thread) attribution map; 0 disables it
    :ivar writes_only: count write events only (reads are dropped in the program)
    """

    family: str = "pagefault"
    max_targets: int = 8
    max_regions: int = 2048
    max_intervals: int = 128
    ip_entries: int = 4096
    rate_limit: int = 200_000
    rate_burst: int = 20_000
    nr_cpus: int = 0
    thread_entries: int = 4096
    writes_only: bool = False

    @property
    def cpus(self) -> int:
        """The per-CPU blocks of the counters (``MAX_CPUS``)."""
        return self.nr_cpus or _bcc.nr_possible_cpus()

    @property
    def regions_pow2(self) -> int:
        return _pow2_at_least(max(self.max_regions, 16))

    @property
    def bitmap_words(self) -> int:
        # a power of two, so the BPF program can bound the word index with a mask
        return _pow2_at_least(max(1, -(-self.max_intervals // 64)))

    def validate(self) -> None:
        if self.family not in ("pagefault", "perf_sample"):
            raise InvalidParamsError(f"unknown probe family {self.family!r}")
        if not 1 <= self.max_targets <= 4096:
            raise InvalidParamsError("max_targets must be within 1..4096")
        if not 1 <= self.max_regions <= 1 << 20:
            raise InvalidParamsError("max_regions must be within 1..1048576")
        if not 1 <= self.max_intervals <= 64 * 64:
            raise InvalidParamsError("a window can hold at most 4096 sampling intervals")
        if self.rate_limit < 0 or self.rate_burst < 1 or self.ip_entries < 0 or self.thread_entries < 0:
            raise InvalidParamsError("rate limit, burst and attribution size must be positive")
        if not 0 <= self.nr_cpus <= 1 << 16:
            raise InvalidParamsError("nr_cpus must be within 0..65536")
        if self.cpus * 2 * self.regions_pow2 >= 1 << 32:
            raise InvalidParamsError("CPUs x regions exceed the 32-bit keys of the counters")

    def cflags(self) -> list[str]:
        r = self.regions_pow2
        return [
            f"-I{_bcc.bpf_source_path(self.family).parent}",
            f"-DMAX_TARGETS={self.max_targets}",
            f"-DMAX_REGIONS={r}",
            f"-DSEARCH_STEPS={r.bit_length()}",
            f"-DBITMAP_WORDS={self.bitmap_words}",
            f"-DMAX_CPUS={self.cpus}",
            f"-DIP_ENTRIES={self.ip_entries}",
            f"-DRATE_LIMIT={self.rate_limit}",
            f"-DRATE_BURST={self.rate_burst}",
            f"-DTHREAD_ENTRIES={self.thread_entries}",
            f"-DWRITES_ONLY={int(self.writes_only)}",
        ]


@dataclass
class Drained:
    """Counters of one generation, per region slot in publish order (targets concatenated).

    :ivar nr_events: events per region (summed over CPUs)
    :ivar nr_writes: write events per region
    :ivar bits: ``(nr_regions, words)`` bitmaps of the sampling intervals with an event (OR over CPUs)
    """

    nr_events: _U64
    nr_writes: _U64
    bits: _U64

    def interval_hits(self, first: int, last: int) -> npt.NDArray[np.int64]:
        """Per region, how many of the sampling intervals ``first..last-1`` saw an event."""
        if last <= first or self.bits.size == 0:
            return np.zeros(self.bits.shape[0], dtype=np.int64)
        unpacked = np.unpackbits(self.bits.view(np.uint8).reshape(self.bits.shape[0], -1), axis=1,
                                 bitorder="little")
        hits: npt.NDArray[np.int64] = unpacked[:, first:last].sum(axis=1, dtype=np.int64)
        return hits


def fdinfo_run_stats(prog_fd: int) -> tuple[int, int] | None:
    """``(run_time_ns, run_cnt)`` of a loaded BPF program from ``/proc/self/fdinfo`` (counted only while
    ``kernel.bpf_stats_enabled`` is 1); None when the kernel does not show them."""
    try:
        with open(f"/proc/self/fdinfo/{prog_fd}") as f:
            text = f.read()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in ("run_time_ns", "run_cnt"):
            vals[k] = int(v.strip())
    if len(vals) != 2:
        return None
    return vals["run_time_ns"], vals["run_cnt"]


class AccessProbe:
    """One compiled aggregation program and its maps. A context manager: ``__exit__`` detaches everything.

    :raises MissingDependencyError, PermissionDeniedError, ProbeLoadError: from compiling
    """

    def __init__(self, config: AccessProbeConfig) -> None:
        config.validate()
        self.config = config
        self.bpf: Any = None
        self.gen = 0
        self.attached: list[str] = []
        self._prog_fds: list[int] = []
        self._lib: Any = None
        self._published: list[int] = [0, 0]  # regions in each generation
        self._map_fds: dict[str, int] = {}
        self._mapped: list[_bcc.MappedArray] = []
        # views of the mapped maps (see bpf/access_agg_types.h), set by open()
        self._config: _U64 = np.zeros(0, np.uint64)  # [gen_start, sample_ns]
        self._regions: _U64 = np.zeros((0, 2), np.uint64)  # (2R, 2): start, end
        self._spans: npt.NDArray[np.uint32] = np.zeros((0, 2), np.uint32)  # (2T, 2): off, nr
        self._counters: _U64 = np.zeros((0, 0, 0), np.uint64)  # (cpus, 2R, 2 + words)
        self._pcpu: _U64 = np.zeros((0, 0), np.uint64)  # (cpus, stats + 2)

    # -- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> AccessProbe:
        if self.bpf is None:
            self.bpf = _bcc.compile_bpf(self.config.family, self.config.cflags())
            try:
                _bcc.load_bcc()
                from bcc import libbcc  # noqa: PLC0415  (bcc is imported in damon_bpf.probes only)

                self._lib = libbcc.lib
                self._map_all()
            except BaseException:
                self.close()
                raise
        return self

    def _map_all(self) -> None:
        cfg = self.config
        slots = 2 * cfg.regions_pow2
        cpus = cfg.cpus

        def mapped(name: str, nr_words: int) -> _U64:
            m = _bcc.mmap_array(self._fd(name), nr_words)
            self._mapped.append(m)
            return m.array

        spans = 2 * cfg.max_targets
        region, counter, pcpu = _words(_AggRegion), _words(_agg_counter(cfg.bitmap_words)), _words(_AggPcpu)
        self._config = mapped("agg_config", _words(_AggConfig))
        self._regions = mapped("agg_regions", slots * region).reshape(slots, region)
        self._spans = mapped("agg_spans", spans * _words(_AggSpan)).view(np.uint32).reshape(spans, -1)
        self._counters = mapped("agg_counters", cpus * slots * counter).reshape(cpus, slots, counter)
        self._pcpu = mapped("agg_pcpu", cpus * pcpu).reshape(cpus, pcpu)

    def _unmap_all(self) -> None:
        self._config = np.zeros(0, np.uint64)
        self._regions = np.zeros((0, 2), np.uint64)
        self._spans = np.zeros((0, 2), np.uint32)
        self._counters = np.zeros((0, 0, 0), np.uint64)
        self._pcpu = np.zeros((0, 0), np.uint64)
        for m in self._mapped:
            m.close()
        self._mapped.clear()

    def close(self) -> None:
        self._unmap_all()
        if self.bpf is not None:
            _bcc.close_bpf(self.bpf)
            self.bpf = None
            self._map_fds.clear()
            self.attached.clear()
            self._prog_fds.clear()

    def __enter__(self) -> AccessProbe:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- attach ----------------------------------------------------------------------------------------

    def attach_page_faults(self) -> str:
        """Attach the page-fault program, preferring the raw tracepoint ``page_fault_user`` (no tracefs
        needed), then the tracepoint ``exceptions:page_fault_user``, then the software page-fault perf event
        on every CPU. Returns which one is attached.

        :raises ProbeAttachError: none of them could be attached (the message lists each reason)
        """
        if self.config.family != "pagefault":
            raise InvalidParamsError("attach_page_faults needs the pagefault program family")
        reasons = []
        tries: tuple[tuple[str, Callable[[], None], str], ...] = (
            ("raw tracepoint page_fault_user",
             lambda: _bcc.attach_raw_tracepoint(self.bpf, "page_fault_user", "on_fault_raw"), "on_fault_raw"),
            ("tracepoint exceptions:page_fault_user",
             lambda: _bcc.attach_tracepoint(self.bpf, "exceptions:page_fault_user", "on_fault_tp"), "on_fault_tp"),
            ("software perf event page-faults",
             lambda: _bcc.attach_perf_event(self.bpf, "on_fault_perf", ev_type=1, ev_config=2, sample_period=1),
             "on_fault_perf"),
        )
        for what, fn, name in tries:
            try:
                fn()
            except (ProbeAttachError, ProbeLoadError) as err:
                reasons.append(f"{what}: {err}")
                continue
            self.attached.append(what)
            self._prog_fds.append(self.bpf.funcs[name.encode()].fd)
            return what
        raise ProbeAttachError("cannot attach to page faults: " + "; ".join(reasons))

    def note_attached(self, what: str, fn_name: str) -> None:
        """Record a program attached by someone else (perf events), for :meth:`prog_run_stats`."""
        self.attached.append(what)
        fd = self.bpf.funcs[fn_name.encode()].fd
        if fd not in self._prog_fds:
            self._prog_fds.append(fd)

    def prog_run_stats(self) -> tuple[int, int] | None:
        """Total ``(run_time_ns, run_cnt)`` of the attached programs (needs ``kernel.bpf_stats_enabled``)."""
        tot_ns = tot_cnt = 0
        seen = False
        for fd in self._prog_fds:
            st = fdinfo_run_stats(fd)
            if st is not None:
                seen = True
                tot_ns += st[0]
                tot_cnt += st[1]
        return (tot_ns, tot_cnt) if seen else None

    # -- maps ------------------------------------------------------------------------------------------

    def _fd(self, name: str) -> int:
        # bcc builds a Table object per lookup (tens of microseconds): keep the fds
        fd = self._map_fds.get(name)
        if fd is None:
            fd = self._map_fds[name] = _bcc.map_fd(self.bpf, name)
        return fd

    def set_target(self, tgid: int, target_idx: int) -> None:
        """Count the events of process *tgid* (all its threads) as target number *target_idx*."""
        if not 0 <= target_idx < self.config.max_targets:
            raise NotSupportedError(f"at most {self.config.max_targets} processes can be monitored at once")
        k = ctypes.c_uint32(tgid)
        v = ctypes.c_uint32(target_idx)
        if self._lib.bpf_update_elem(self._fd("agg_targets"), ctypes.byref(k), ctypes.byref(v), 0) != 0:
            raise ProbeLoadError(f"registering process {tgid}: {os.strerror(ctypes.get_errno())}")

    def publish(self, tables: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]], window_start_ns: int,
                sample_ns: int) -> int:
        """Write the region tables (one ``(starts, ends)`` per target index, sorted) into the idle generation
        and make it the active one, with the window starting at *window_start_ns*. Returns the new
        generation; its slots are numbered in table order (target 0's regions first)."""
        r = self.config.regions_pow2
        nt = self.config.max_targets
        new = self.gen ^ 1
        if len(tables) > nt:
            raise InvalidParamsError(f"{len(tables)} targets exceed the probe's {nt}")
        sizes = [np.shape(starts)[0] for starts, _ in tables]
        off = sum(sizes)
        if off > r:
            raise InvalidParamsError(f"{off} regions exceed the probe's table of {r}")
        # the idle generation's table and spans: no program reads them until the flip below
        first = new * r
        for ti, ((starts, ends), k) in enumerate(zip(tables, sizes)):
            self._spans[new * nt + ti] = (first - new * r, k)
            if k:
                self._regions[first:first + k, 0] = starts
                self._regions[first:first + k, 1] = ends
            first += k
        self._spans[new * nt + len(tables):(new + 1) * nt] = 0
        # The flip: one aligned 8-byte store of gen_start, after the table (x86-64 keeps stores in order; a
        # program reads gen_start once per event, then that generation's table and counters).
        self._config[1] = sample_ns
        self._config[0] = (int(window_start_ns) & ~1) | new
        self.gen = new
        self._published[new] = off
        return new

    def read(self, gen: int | None = None, zero: bool = False) -> Drained:
        """The counters of generation *gen* (default: the active one) for its published regions; with
        *zero*, reset them afterwards (do this only for the idle generation)."""
        g = self.gen if gen is None else gen
        n = self._published[g]
        first = g * self.config.regions_pow2
        v = self._counters[:, first:first + n]  # (cpus, n, 2 + words), the maps' memory
        ew = v[:, :, :_BITS].sum(axis=0)
        d = Drained(nr_events=ew[:, 0], nr_writes=ew[:, 1], bits=np.bitwise_or.reduce(v[:, :, _BITS:], axis=0))
        if zero and n:
            v[...] = 0
        return d

    def take_bits(self, gen: int) -> _U64:
        """The interval bitmaps of :meth:`read` alone (``(nr_regions, words)``, OR over CPUs), and reset all the
        counters of generation *gen* (only for the idle generation)."""
        n = self._published[gen]
        first = gen * self.config.regions_pow2
        v = self._counters[:, first:first + n]
        bits: _U64 = np.bitwise_or.reduce(v[:, :, _BITS:], axis=0)
        if n:
            v[...] = 0
        return bits

    def stats(self) -> dict[str, int]:
        """Cumulative event counters (``enum agg_stat``), summed over CPUs."""
        tot = self._pcpu[:, :len(STATS)].sum(axis=0).tolist()
        return dict(zip(STATS, tot))

    def nr_counted(self) -> int:
        """The ``counted`` counter of :meth:`stats` alone (cheaper)."""
        return int(self._pcpu[:, _COUNTED].sum())

    def drain_ips(self) -> tuple[npt.NDArray[np.uint32], _U64, _U64]:
        """Take the (slot, instruction pointer) -> events attribution counts, emptying the map."""
        keys, vals = self._drain_hash("agg_ips", self.config.ip_entries, _words(_AggIpKey))
        return (keys[:, 0] & 0xFFFFFFFF).astype(np.uint32), keys[:, 1].copy(), vals

    def drain_threads(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], _U64]:
        """Take the (slot, thread id) -> events attribution counts (``agg_threads``), emptying the map."""
        keys, vals = self._drain_hash("agg_threads", self.config.thread_entries, _words(_AggThreadKey))
        k = keys.view(np.uint32).reshape(-1, 2)
        return k[:, 0].copy(), k[:, 1].copy(), vals

    def events_per_cpu(self, gen: int | None = None) -> _U64:
        """Events per CPU and region of generation *gen* (default: the active one), ``(cpus, nr_regions)``:
        the per-CPU blocks of ``agg_counters`` before :meth:`read` sums them."""
        g = self.gen if gen is None else gen
        first = g * self.config.regions_pow2
        ev: _U64 = self._counters[:, first:first + self._published[g], 0].copy()
        return ev

    def _drain_hash(self, name: str, n: int, key_words: int) -> tuple[_U64, _U64]:
        # (keys as rows of u64 words, values) of hash map *name* of capacity *n*, emptying it with batch ops
        if not n:
            return np.zeros((0, key_words), np.uint64), np.zeros(0, np.uint64)
        keys = np.zeros((n, key_words), dtype=np.uint64)
        vals = np.zeros(n, dtype=np.uint64)
        total = 0
        token = ctypes.c_uint32(0)
        fd = self._fd(name)
        first = True
        while total < n:
            cnt = ctypes.c_uint32(n - total)
            rc = self._lib.bpf_lookup_and_delete_batch(
                fd, None if first else ctypes.byref(token), ctypes.byref(token),
                keys[total:].ctypes.data, vals[total:].ctypes.data, ctypes.byref(cnt))
            err = ctypes.get_errno()
            first = False
            total += cnt.value
            if rc != 0:
                if err != 2:
                    log.debug("draining %s: %s", name, os.strerror(err))
                break
            if cnt.value == 0:
                break
        return keys[:total], vals[:total].copy()
