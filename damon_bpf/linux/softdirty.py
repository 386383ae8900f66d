"""Whether this kernel tracks soft-dirty PTEs (``CONFIG_MEM_SOFT_DIRTY``), the only way to re-arm a page's
"written" state from user space.

Kernel counterpart: ``Documentation/admin-guide/mm/soft-dirty.rst``. Bit 55 of a ``/proc/PID/pagemap`` entry is
the soft-dirty bit; a page written after ``echo 4 > /proc/PID/clear_refs`` (or a new page) has it set. Without
``CONFIG_MEM_SOFT_DIRTY`` the bit is always 0. The check maps one private page of this process, writes it and
reads its pagemap entry: one page and two small reads, no root needed.
"""

from __future__ import annotations

import ctypes
import mmap
import os

from damon_bpf.linux.kpage import PM_PRESENT, PM_SOFT_DIRTY

__all__ = ("PM_SOFT_DIRTY", "soft_dirty_supported")



def soft_dirty_supported(proc_root: str = "/proc") -> bool:
    """True when a freshly written page of this process reads as soft-dirty in ``/proc/self/pagemap``."""
    page = mmap.PAGESIZE
    m = mmap.mmap(-1, page, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m[0:1] = b"\1"  # a written, present page: soft-dirty when the kernel tracks it
        view = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(view)
        del view  # the buffer export ends here, so close() below can unmap
        try:
            fd = os.open(f"{proc_root}/self/pagemap", os.O_RDONLY)
        except OSError:
            return False
        try:
            ent = int.from_bytes(os.pread(fd, 8, addr // page * 8), "little")
        except OSError:
            return False
        finally:
            os.close(fd)
        return bool(ent & PM_PRESENT) and bool(ent & PM_SOFT_DIRTY)
    finally:
        m.close()
