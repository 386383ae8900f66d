"""Loader and runner of ``bpf/pte.bpf.c``: the Accessed bits of a process's page-table entries.

Counterpart of the check half of ``mm/damon/vaddr.c`` (``damon_va_check_accesses()``, ``damon_young_pmd_entry()``)
and of ``mm_find_pmd()``'s walk: given a target's ``/proc/<pid>/mem`` file descriptor (held by the caller) and a
batch of user addresses, one ``BPF_PROG_TEST_RUN`` of the program walks the target's page tables and returns,
per address, whether a present leaf maps it, its Accessed and Dirty bits, the leaf's level and the physical
page. The program is never attached to an event: it runs in the caller's thread only, so monitoring costs other
processes nothing.

Everything the walk needs from the running kernel is found at run time and passed as ``-D`` flags:

- struct offsets (``task_struct.files``, ``files_struct.fdt``, ``fdtable.{max_fds,fd}``, ``file.private_data``,
  ``mm_struct.{pgd,mm_users}``) from BTF (:mod:`damon_bpf.linux.btf`), never from kernel headers;
- the paging layout: x86-64 only (other architectures: :class:`~damon_bpf.errors.NotSupportedError` with the
  reason), 5-level paging when the CPU flag ``la57`` is shown (the kernel clears it when it runs 4-level,
  ``arch/x86/kernel/cpu/common.c``), and the direct map base: the value of ``page_offset_base`` when kallsyms
  has it (``CONFIG_RANDOMIZE_MEMORY``/``CONFIG_DYNAMIC_MEMORY_LAYOUT``), else the architecture's constant
  ``__PAGE_OFFSET_BASE_L4``/``_L5`` (``arch/x86/include/asm/page_64_types.h``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError, ProbeLoadError
from damon_bpf.linux import syscalls
from damon_bpf.probes import _bcc

__all__ = (
    "PteOffsets",
    "PagingLayout",
    "PteWalkConfig",
    "PteWalker",
    "WalkStatus",
    "STATS",
    "R_PRESENT",
    "R_ACCESSED",
    "R_DIRTY",
    "R_MM_GONE",
    "check_walk_supported",
    "result_level",
    "result_phys",
)

log = logging.getLogger(__name__)

#: Bits of a walk result (``pte_out`` in ``bpf/pte.bpf.c``).
R_PRESENT = 1 << 0
R_ACCESSED = 1 << 1
R_DIRTY = 1 << 2
#: ``pte_observe``: the slot's fd leads to no live mm (the target exited or exec()-ed)
R_MM_GONE = 1 << 3
_R_PHYS = 0x000FFFFFFFFFF000

#: ``enum pte_stat`` of ``bpf/pte.bpf.c``, in order.
STATS = ("runs", "walks", "accessed", "nonpresent_pgd", "nonpresent_pud", "nonpresent_pmd", "nonpresent_pte",
         "huge", "read_faults")

#: ``__PAGE_OFFSET_BASE_L4`` / ``__PAGE_OFFSET_BASE_L5`` (``arch/x86/include/asm/page_64_types.h``).
_PAGE_OFFSET_L4 = 0xFFFF888000000000
_PAGE_OFFSET_L5 = 0xFF11000000000000

# BPF_PROG_TEST_RUN through bpf(2) (enum bpf_cmd, include/uapi/linux/bpf.h)
_BPF_PROG_TEST_RUN = 10
_CTX_ARGS = 4


class WalkStatus:
    """Return values of the program (``enum pte_ret``)."""

    OK = 0
    NO_FILE = 1
    MM_DEAD = 2
    READ_FAULT = 3


def result_level(results: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Per result, the level of the leaf (1 PTE, 2 PMD, 3 PUD) or of the first non-present entry."""
    return ((results >> np.uint64(4)) & np.uint64(7)).astype(np.int64)


def result_phys(results: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Per result, the physical address of the 4 KiB page (0 when not present)."""
    return results & np.uint64(_R_PHYS)


@dataclass(frozen=True)
class PteOffsets:
    """Byte offsets of the struct members the walk reads (``-DOFF_*``)."""

    task_files: int
    files_fdt: int
    fdt_max_fds: int
    fdt_fd: int
    file_private_data: int
    mm_pgd: int
    mm_users: int

    @classmethod
    def from_btf(cls, btf: Any = None) -> PteOffsets:
        """Read the offsets from the running kernel's BTF (``/sys/kernel/btf/vmlinux``).

        :raises NotSupportedError: no BTF, or a member is missing (the message names it)
        """
        from damon_bpf.linux.btf import vmlinux_btf

        b = btf if btf is not None else vmlinux_btf()
        return cls(
            task_files=b.member_offset("task_struct", "files"),
            files_fdt=b.member_offset("files_struct", "fdt"),
            fdt_max_fds=b.member_offset("fdtable", "max_fds"),
            fdt_fd=b.member_offset("fdtable", "fd"),
            file_private_data=b.member_offset("file", "private_data"),
            mm_pgd=b.member_offset("mm_struct", "pgd"),
            mm_users=b.member_offset("mm_struct", "mm_users"),
        )


@dataclass(frozen=True)
class PagingLayout:
    """How the kernel maps memory: page-table levels and the direct map base.

    :ivar levels: 4 or 5
    :ivar direct_map_base: ``PAGE_OFFSET`` when fixed
    :ivar direct_map_base_ptr: address of ``page_offset_base`` when the kernel randomizes it (the program reads
        the base from there), else 0
    """

    levels: int = 4
    direct_map_base: int = _PAGE_OFFSET_L4
    direct_map_base_ptr: int = 0

    @classmethod
    def detect(cls, proc_root: str = "/proc") -> PagingLayout:
        """The layout of the running kernel.

        :raises NotSupportedError: not x86-64 (arm64's Access Flag walk is not written yet), or a randomized direct
            map whose base kallsyms does not show
        """
        machine = platform.machine()
        if machine != "x86_64":
            raise NotSupportedError(
                f"the pte source walks x86-64 page tables; on {machine} it is not available yet"
                " (arm64's Access Flag is a later step)")
        levels = 4
        try:
            with open(f"{proc_root}/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        levels = 5 if " la57" in line or line.rstrip().endswith("la57") else 4
                        break
        except OSError:
            pass
        base_ptr = 0
        try:
            with open(f"{proc_root}/kallsyms") as f:
                for line in f:
                    if line.rstrip().endswith(" page_offset_base"):
                        base_ptr = int(line.split()[0], 16)
                        break
        except OSError:
            pass
        if base_ptr == 0 and _kallsyms_hidden(proc_root):
            raise NotSupportedError("the pte source needs kernel addresses from /proc/kallsyms: run as root "
                                    "(kernel.kptr_restrict hides them)")
        return cls(levels=levels, direct_map_base=_PAGE_OFFSET_L5 if levels == 5 else _PAGE_OFFSET_L4,
                   direct_map_base_ptr=base_ptr)


def _kallsyms_hidden(proc_root: str) -> bool:
    try:
        with open(f"{proc_root}/kallsyms") as f:
            first = f.readline().split()
    except OSError:
        return True
    return not first or int(first[0], 16) == 0


@dataclass(frozen=True)
class PteWalkConfig:
    """Parameters of ``bpf/pte.bpf.c`` (style C9: each is a ``-D`` flag).

    :ivar max_slots: addresses one :meth:`PteWalker.walk` call hands over at most (larger calls are split)
    :ivar walk_batch: addresses one program run walks (the program's bounded loop)
    """

    offsets: PteOffsets
    layout: PagingLayout = PagingLayout()
    max_slots: int = 16384
    walk_batch: int = 512

    def validate(self) -> None:
        if self.layout.levels not in (4, 5):
            raise InvalidParamsError("page tables have 4 or 5 levels")
        if not 1 <= self.walk_batch <= 4096 or not self.walk_batch <= self.max_slots <= 1 << 20:
            raise InvalidParamsError("walk_batch must be within 1..4096 and at most max_slots (<= 2^20)")

    def cflags(self) -> list[str]:
        o, lay = self.offsets, self.layout
        return [
            f"-DMAX_SLOTS={self.max_slots}",
            f"-DWALK_BATCH={self.walk_batch}",
            f"-DPGTABLE_LEVELS={lay.levels}",
            f"-DDIRECT_MAP_BASE={lay.direct_map_base:#x}ULL",
            f"-DDIRECT_MAP_BASE_PTR={lay.direct_map_base_ptr:#x}ULL",
            f"-DOFF_TASK_FILES={o.task_files}",
            f"-DOFF_FILES_FDT={o.files_fdt}",
            f"-DOFF_FDT_MAX_FDS={o.fdt_max_fds}",
            f"-DOFF_FDT_FD={o.fdt_fd}",
            f"-DOFF_FILE_PRIVATE_DATA={o.file_private_data}",
            f"-DOFF_MM_PGD={o.mm_pgd}",
            f"-DOFF_MM_USERS={o.mm_users}",
        ]


def check_walk_supported(proc_root: str = "/proc") -> PteWalkConfig:
    """Whether this machine can walk page tables as the ``pte`` source does: root, an x86-64 paging layout, the
    struct offsets from BTF and bcc; the one check of :meth:`damon_bpf.ops.pte.PteOps.check_supported` and of the
    ``probe/pte_accessed_bit`` row of ``damon-bpf features`` (which then also walks its own pages).

    :return: the walk's configuration on this machine.
    :raises PermissionDeniedError: not root.
    :raises NotSupportedError: another architecture, hidden kernel addresses, no BTF or a struct member missing.
    :raises MissingDependencyError: bcc is not installed.
    """
    if os.geteuid() != 0:
        raise PermissionDeniedError("the pte source loads a BPF program and reads page tables: run as root")
    layout = PagingLayout.detect(proc_root)
    config = PteWalkConfig(offsets=PteOffsets.from_btf(), layout=layout)
    _bcc.load_bcc()
    return config


class _TestRunAttr(ctypes.Structure):
    # the BPF_PROG_TEST_RUN member of union bpf_attr (include/uapi/linux/bpf.h)
    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class PteWalker:
    """One compiled ``pte.bpf.c``. A context manager: ``__exit__`` closes the program and its maps.

    :raises MissingDependencyError, PermissionDeniedError, ProbeLoadError: from compiling and loading
    """

    def __init__(self, config: PteWalkConfig) -> None:
        config.validate()
        self.config = config
        self.bpf: Any = None
        self._prog_fd = -1
        self._attr = _TestRunAttr()
        self._ctx = (ctypes.c_uint64 * _CTX_ARGS)()
        self._fds: dict[str, int] = {}
        self._addrs_map: _bcc.MappedArray | None = None
        self._out_map: _bcc.MappedArray | None = None
        self._slot_fds_map: _bcc.MappedArray | None = None
        self._first_map: _bcc.MappedArray | None = None
        self._observe_fd = -1
        self._walk_slots_fd = -1
        self._obs_attr = _TestRunAttr()
        self._obs_ctx = (ctypes.c_uint64 * _CTX_ARGS)()

    def open(self) -> PteWalker:
        if self.bpf is None:
            self.bpf = _bcc.compile_bpf("pte", self.config.cflags())
            try:
                _bcc.load_program(self.bpf, "pte_walk", _bcc.ProgType.RAW_TRACEPOINT)
                _bcc.load_program(self.bpf, "pte_observe", _bcc.ProgType.RAW_TRACEPOINT)
                _bcc.load_program(self.bpf, "pte_walk_slots", _bcc.ProgType.RAW_TRACEPOINT)
                self._prog_fd = _bcc.prog_fd(self.bpf, "pte_walk")
                self._observe_fd = _bcc.prog_fd(self.bpf, "pte_observe")
                self._walk_slots_fd = _bcc.prog_fd(self.bpf, "pte_walk_slots")
                self._fds = {name: _bcc.map_fd(self.bpf, name)
                             for name in ("pte_addrs", "pte_out", "pte_fds", "pte_first", "pte_stats")}
                self._addrs_map = _bcc.mmap_array(self._fds["pte_addrs"], self.config.max_slots)
                self._out_map = _bcc.mmap_array(self._fds["pte_out"], self.config.max_slots)
                self._slot_fds_map = _bcc.mmap_array(self._fds["pte_fds"], self.config.max_slots)
                self._first_map = _bcc.mmap_array(self._fds["pte_first"], self.config.max_slots)
                a = self._obs_attr
                a.prog_fd = self._observe_fd
                a.ctx_size_in = ctypes.sizeof(self._obs_ctx)
                a.ctx_in = ctypes.addressof(self._obs_ctx)
            except BaseException:
                self.close()
                raise
        return self

    def close(self) -> None:
        for m in (self._addrs_map, self._out_map, self._slot_fds_map, self._first_map):
            if m is not None:
                m.close()
        self._addrs_map = self._out_map = self._slot_fds_map = self._first_map = None
        if self.bpf is not None:
            _bcc.close_bpf(self.bpf)
            self.bpf = None
            self._prog_fd = -1

    def __enter__(self) -> PteWalker:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def prog_fd(self) -> int:
        return self._prog_fd

    # -- the slots: a window's probes of every target, loaded once (damon_bpf.ops.pte) ----------------------

    @property
    def nr_slots(self) -> int:
        """Slots :meth:`load_slots` may fill (the last ``walk_batch`` are :meth:`walk`'s)."""
        return self.config.max_slots - self.config.walk_batch

    def load_slots(self, addrs: npt.NDArray[np.uint64], fds: npt.NDArray[np.uint64]) -> None:
        """Load the probes of a window: slot ``i`` reads *addrs[i]* in the mm of the ``/proc/<pid>/mem`` fd
        *fds[i]* (group each fd's slots together); no slot is found accessed yet."""
        assert self._addrs_map is not None and self._slot_fds_map is not None and self._first_map is not None
        n = int(addrs.size)
        if n > self.nr_slots:
            raise InvalidParamsError(f"{n} probes, more than the {self.nr_slots} slots of the walk program")
        assert self._out_map is not None
        self._addrs_map.array[:n] = addrs
        self._slot_fds_map.array[:n] = fds
        self._first_map.array[:n] = 0
        self._out_map.array[:n] = 0

    def skip_slots(self, slots: npt.NDArray[np.int64], mark: int) -> None:
        """Give *slots* a first read of *mark* now, so :meth:`observe` leaves them alone."""
        assert self._first_map is not None
        self._first_map.array[slots] = mark

    def walk_slots(self, first: int, n: int, mem_fd: int) -> int:
        """``pte_walk`` over slots loaded by :meth:`load_slots`; results in :meth:`results`. Returns a
        :class:`WalkStatus` value."""
        cfg = self.config
        for off in range(first, first + n, cfg.walk_batch):
            st = self._run(off, min(cfg.walk_batch, first + n - off), mem_fd)
            if st != WalkStatus.OK:
                return st
        return WalkStatus.OK

    def observe(self, n: int, mark: int, every: bool = False) -> None:
        """One read of a window: ``pte_observe`` over the first *n* loaded slots; a slot not yet found accessed
        and accessed now gets *mark* (see :meth:`first_reads`). No numpy, one system call per ``walk_batch``
        slots: it runs after every sleep of the sampling loop, when everything is cold. With *every*
        (``pte_walk_slots``), walk every slot, each in its own target's mm, into :meth:`results`."""
        a, c, batch = self._obs_attr, self._obs_ctx, self.config.walk_batch
        a.prog_fd = self._walk_slots_fd if every else self._observe_fd
        c[2] = mark
        off = 0
        while off < n:
            c[0], c[1] = off, min(batch, n - off)
            a.retval = 0
            try:
                syscalls.bpf(_BPF_PROG_TEST_RUN, a)
            except OSError as err:
                raise ProbeLoadError(f"running the page-table reads (BPF_PROG_TEST_RUN): "
                                     f"{os.strerror(err.errno or 0)}") from err
            off += batch

    def first_reads(self, n: int) -> npt.NDArray[np.uint64]:
        """Per loaded slot, the *mark* of the read that first found it accessed (0: none); a view."""
        assert self._first_map is not None
        return self._first_map.array[:n]

    def results(self, first: int, n: int) -> npt.NDArray[np.uint64]:
        """The results of slots ``first .. first + n`` (a copy)."""
        assert self._out_map is not None
        return self._out_map.array[first:first + n].copy()

    def _run(self, first: int, n: int, mem_fd: int) -> int:
        a = self._attr
        ctypes.memset(ctypes.addressof(a), 0, ctypes.sizeof(a))
        self._ctx[0], self._ctx[1], self._ctx[2], self._ctx[3] = first, n, mem_fd, 0
        a.prog_fd = self._prog_fd
        a.ctx_size_in = ctypes.sizeof(self._ctx)
        a.ctx_in = ctypes.addressof(self._ctx)
        try:
            syscalls.bpf(_BPF_PROG_TEST_RUN, a)
        except OSError as err:
            raise ProbeLoadError(f"running the page-table walk (BPF_PROG_TEST_RUN): "
                                 f"{os.strerror(err.errno or 0)}") from err
        return int(a.retval)

    def walk(self, mem_fd: int, addrs: npt.ArrayLike, scratch: bool = False) -> tuple[int, npt.NDArray[np.uint64]]:
        """Walk the page tables of the mm behind *mem_fd* (an open ``/proc/<pid>/mem`` of this process) for
        each address.

        :param scratch: use the slots :meth:`load_slots` leaves alone (at most ``walk_batch`` addresses)

        :return: ``(status, results)``: a :class:`WalkStatus` value and one result per address (``R_*`` bits,
            :func:`result_level`, :func:`result_phys`); results are 0 unless the status is ``OK``
        :raises ProbeLoadError: the kernel refused to run the program
        """
        a = np.asarray(addrs, dtype=np.uint64).ravel()
        out = np.zeros(a.size, dtype=np.uint64)
        cfg = self.config
        assert self._addrs_map is not None and self._out_map is not None, "walk() before open()"
        base = self.nr_slots if scratch else 0
        if scratch and a.size > cfg.walk_batch:
            raise InvalidParamsError(f"a scratch walk takes at most {cfg.walk_batch} addresses")
        slots_in, slots_out = self._addrs_map.array[base:], self._out_map.array[base:]
        step = slots_in.size
        for off in range(0, a.size, step):
            chunk = a[off:off + step]
            slots_in[:chunk.size] = chunk
            for first in range(0, chunk.size, cfg.walk_batch):
                st = self._run(base + first, min(cfg.walk_batch, chunk.size - first), mem_fd)
                if st != WalkStatus.OK:
                    return st, np.zeros(a.size, dtype=np.uint64)
            out[off:off + chunk.size] = slots_out[:chunk.size]
        return WalkStatus.OK, out

    def stats(self) -> dict[str, int]:
        """Cumulative counters of the program (``enum pte_stat``)."""
        raw = _bcc.array_lookup_batch(self._fds["pte_stats"], 0, len(STATS), 1)[:, 0]
        return {name: int(v) for name, v in zip(STATS, raw.tolist())}
