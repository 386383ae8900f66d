"""``/proc/<pid>/pagemap``'s ``PAGEMAP_SCAN`` ioctl (``Documentation/admin-guide/mm/pagemap.rst``): where a process
has PMD-mapped huge pages, and the PMD size (``/sys/kernel/mm/transparent_hugepage/hpage_pmd_size``). The DAMOS
``hugepage_size`` filter of :mod:`damon_bpf.ops.damos_filters` uses them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from typing import Callable

from damon_bpf.errors import TargetGoneError

__all__ = ("PAGE_IS_HUGE", "PAGEMAP_SCAN", "pmd_size", "PagemapScanner")

_PAGE_SIZE = 4096


class _PageRegion(ctypes.Structure):
    # struct page_region, include/uapi/linux/fs.h
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


class _PmScanArg(ctypes.Structure):
    # struct pm_scan_arg, include/uapi/linux/fs.h
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages", "category_inverted",
        "category_mask", "category_anyof_mask", "return_mask")]


#: ``PAGE_IS_HUGE`` (``include/uapi/linux/fs.h``): PMD-mapped THP or hugetlb.
PAGE_IS_HUGE = 1 << 6
#: ``PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)``; since Linux kernel commit 52526ca7fdb9 ("fs/proc/task_mmu:
#: implement IOCTL to get and optionally clear info about PTEs") (in v6.7).
PAGEMAP_SCAN = (3 << 30) | (ctypes.sizeof(_PmScanArg) << 16) | (ord("f") << 8) | 16

_VEC_LEN = 256


def pmd_size(sys_root: str = "/sys") -> int:
    """``HPAGE_PMD_SIZE`` from ``transparent_hugepage/hpage_pmd_size`` (2 MiB when THP is not built in)."""
    try:
        with open(os.path.join(sys_root, "kernel", "mm", "transparent_hugepage", "hpage_pmd_size")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2 << 20


class PagemapScanner:
    """Finds PMD-mapped huge pages of a process with the ``PAGEMAP_SCAN`` ioctl of ``/proc/<pid>/pagemap``.

    The pagemap file is bound to the process's mm when it is opened, so :meth:`open` checks *is_alive* after
    opening: a fd opened while the target was alive can never describe another process.
    """

    def __init__(self) -> None:
        self.fd: int | None = None

    @staticmethod
    def probe() -> str | None:
        """None when ``PAGEMAP_SCAN`` works here (tried on this process), else why not."""
        try:
            fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        except OSError as err:
            return f"cannot open /proc/self/pagemap: {err.strerror}"
        try:
            buf = ctypes.create_string_buffer(16)
            addr = ctypes.addressof(buf) & ~(_PAGE_SIZE - 1)
            _scan(fd, addr, addr + _PAGE_SIZE)
        except OSError as err:
            if err.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                return "needs the PAGEMAP_SCAN ioctl of /proc/<pid>/pagemap (Linux 6.7+)"
            return f"PAGEMAP_SCAN failed: {err.strerror}"
        finally:
            os.close(fd)
        return None

    def open(self, pid: int, is_alive: Callable[[], bool], proc_root: str = "/proc") -> None:
        """:raises TargetGoneError: the process exited (or its pagemap cannot be opened)"""
        self.close()
        try:
            fd = os.open(os.path.join(proc_root, str(pid), "pagemap"), os.O_RDONLY)
        except OSError as err:
            raise TargetGoneError(pid) from err
        if not is_alive():
            os.close(fd)
            raise TargetGoneError(pid)
        self.fd = fd

    def huge_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """The sorted ``PAGE_IS_HUGE`` ranges inside ``[start, end)``.

        :raises OSError: the ioctl failed (``ESRCH``: the process exited)
        """
        assert self.fd is not None
        return _scan(self.fd, start, end)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _scan(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    vec = (_PageRegion * _VEC_LEN)()
    out: list[tuple[int, int]] = []
    cur = start
    while cur < end:
        arg = _PmScanArg(size=ctypes.sizeof(_PmScanArg), start=cur, end=end, vec=ctypes.addressof(vec),
                         vec_len=_VEC_LEN, category_mask=PAGE_IS_HUGE, return_mask=PAGE_IS_HUGE)
        n = fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
        for i in range(n):
            s, e = int(vec[i].start), int(vec[i].end)
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        walk_end = int(arg.walk_end)
        if walk_end <= cur or n < _VEC_LEN:
            break
        cur = walk_end
    return out
