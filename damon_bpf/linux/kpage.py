"""What a page frame is: ``/proc/kpageflags``, ``/proc/kpagecount``, ``/proc/kpagecgroup`` and the NUMA node
of a PFN.

``Documentation/admin-guide/mm/pagemap.rst``: ``/proc/kpageflags``, ``/proc/kpagecount`` and
``/proc/kpagecgroup`` hold one 64-bit word per PFN (root only): the page's flags
(``include/uapi/linux/kernel-page-flags.h``), the number of times it is mapped, and the inode number of its memory
cgroup. The node of a PFN comes from the memory blocks each node lists
(``/sys/devices/system/node/nodeN/memoryM``, block M covering ``[M, M+1) * block_size_bytes`` of physical
memory; ``Documentation/admin-guide/mm/memory-hotplug.rst``).

The probes of :mod:`damon_bpf.ops.probe_attrs` and the ``pte`` source (:mod:`damon_bpf.ops.pte_frames`) read
these for a few hundred pages per window: one ``pread`` per page, in PFN order.
"""

from __future__ import annotations

import os
import re

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import NotSupportedError, PermissionDeniedError

__all__ = (
    "KPF_LRU",
    "KPF_ACTIVE",
    "KPF_ANON",
    "KPF_THP",
    "KPF_ZERO_PAGE",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "PM_PRESENT",
    "PM_SOFT_DIRTY",
    "PM_PFN",
    "KPageReader",
    "node_blocks",
    "memcg_inode",
)

# include/uapi/linux/kernel-page-flags.h
KPF_LRU = 1 << 5
KPF_ACTIVE = 1 << 6
KPF_ANON = 1 << 12
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_THP = 1 << 22
KPF_ZERO_PAGE = 1 << 24

# /proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap.rst)
PM_PRESENT = 1 << 63
PM_SOFT_DIRTY = 1 << 55
PM_PFN = (1 << 55) - 1  # bits 0-54: the page frame number (0 without CAP_SYS_ADMIN)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError as err:
        raise PermissionDeniedError(f"{path}: {err.strerror} (data attribute probes need root)") from err
    except OSError as err:
        raise NotSupportedError(f"{path}: {err.strerror}") from err


def _read_words(fd: int, pfns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    # one word per PFN; 0 for a PFN the file does not cover (EINVAL/short read past max_pfn)
    out = np.zeros(pfns.size, np.uint64)
    for i, pfn in enumerate(pfns.tolist()):
        if pfn <= 0:
            continue
        try:
            raw = os.pread(fd, 8, pfn * 8)
        except OSError:
            continue
        if len(raw) == 8:
            out[i] = int.from_bytes(raw, "little")
    return out


class KPageReader:
    """Reads ``/proc/kpageflags`` (always), ``/proc/kpagecgroup`` (when *cgroup*) and ``/proc/kpagecount`` (when
    *count*) for arrays of PFNs.

    :raises PermissionDeniedError: not root
    :raises NotSupportedError: the kernel lacks the file (``CONFIG_PROC_PAGE_MONITOR``, ``CONFIG_MEMCG``)
    """

    def __init__(self, proc_root: str = "/proc", cgroup: bool = False, count: bool = False) -> None:
        self._flags_fd = _open(f"{proc_root}/kpageflags")
        self._cg_fd = self._count_fd = -1
        try:
            if cgroup:
                self._cg_fd = _open(f"{proc_root}/kpagecgroup")
            if count:
                self._count_fd = _open(f"{proc_root}/kpagecount")
        except BaseException:
            self.close()
            raise

    def flags(self, pfns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        """Per PFN, its ``/proc/kpageflags`` word (0 where the file has none)."""
        return _read_words(self._flags_fd, pfns)

    def flags_range(self, first_pfn: int, n: int) -> npt.NDArray[np.uint64]:
        """The ``/proc/kpageflags`` words of *n* consecutive frames from *first_pfn*, in one read (fewer at the
        end of memory)."""
        try:
            buf = os.pread(self._flags_fd, n * 8, first_pfn * 8)
        except OSError:
            return np.zeros(0, dtype=np.uint64)
        return np.frombuffer(buf[:len(buf) // 8 * 8], dtype=np.uint64)

    def map_counts(self, pfns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Per PFN, how many times it is mapped (``/proc/kpagecount``; 0 when unknown or not read)."""
        if self._count_fd < 0:
            return np.zeros(pfns.size, np.int64)
        return _read_words(self._count_fd, pfns).astype(np.int64)

    def memcgs(self, pfns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Per PFN, its memory cgroup's inode number (0 when unknown or not read)."""
        if self._cg_fd < 0:
            return np.zeros(pfns.size, np.int64)
        return _read_words(self._cg_fd, pfns).astype(np.int64)

    def close(self) -> None:
        for fd in (self._flags_fd, self._cg_fd, self._count_fd):
            if fd >= 0:
                os.close(fd)
        self._flags_fd = self._cg_fd = self._count_fd = -1


def node_blocks(sys_root: str = "/sys") -> tuple[int, dict[int, int]]:
    """``(block_size_bytes, {memory block index: node})`` from sysfs; ``(0, {})`` without memory blocks (no
    ``CONFIG_MEMORY_HOTPLUG``: every page then reads as node 0 on a one-node machine, unknown otherwise)."""
    base = f"{sys_root}/devices/system"
    try:
        with open(f"{base}/memory/block_size_bytes") as f:
            bs = int(f.read().strip(), 16)
    except (OSError, ValueError):
        return 0, {}
    blocks: dict[int, int] = {}
    try:
        nodes = [d for d in os.listdir(f"{base}/node") if re.fullmatch(r"node\d+", d)]
    except OSError:
        return bs, {}
    for nd in nodes:
        nid = int(nd[4:])
        try:
            for e in os.listdir(f"{base}/node/{nd}"):
                m = re.fullmatch(r"memory(\d+)", e)
                if m:
                    blocks[int(m.group(1))] = nid
        except OSError:
            continue
    return bs, blocks


def memcg_inode(path: str, cgroup_mount: str) -> int:
    """The inode number of cgroup *path* (relative to *cgroup_mount*, the mount of the hierarchy that has the
    memory controller: cgroup v2, or v1's ``memory``) as ``/proc/kpagecgroup`` gives it.

    :raises NotSupportedError: no such cgroup
    """
    full = os.path.join(cgroup_mount, path.lstrip("/"))
    try:
        st = os.stat(full)
    except OSError as err:
        raise NotSupportedError(f"memcg probe filter: cgroup {path!r}: {err.strerror}") from err
    return int(st.st_ino)
