"""Reading a process's address space from ``/proc/<pid>/maps`` and ``/proc/<pid>/stat``.

The user-space stand-in for the VMA walk of ``mm/damon/vaddr.c`` (``for_each_vma()`` under
``mmap_read_lock()`` in ``__damon_va_three_regions()``): the kernel prints one line per VMA in
``fs/proc/task_mmu.c`` (``show_map_vma()``)::

    start-end perms offset dev inode            pathname
    55d4a3c00000-55d4a3c21000 rw-p 00000000 00:00 0   [heap]

The pathname column is free text: it may contain spaces, ends in ``" (deleted)"`` for unlinked files, and
names special mappings in brackets (``[heap]``, ``[stack]``, ``[vdso]``, ``[anon:name]``, ...). Only ``\\n`` is
escaped by the kernel (as ``\\012``), so lines are split on ``\\n`` alone.

OS errors are translated at this boundary, as psutil's ``wrap_exceptions`` does: a missing process becomes
:class:`~damon_bpf.errors.TargetGoneError`, a denied read :class:`~damon_bpf.errors.PermissionDeniedError`.
"""

from __future__ import annotations

import bisect
import errno
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from damon_bpf.errors import InvalidParamsError, PermissionDeniedError, TargetGoneError

__all__ = (
    "PF_KTHREAD",
    "GATE_AREA_NAMES",
    "Vma",
    "ProcStat",
    "parse_maps",
    "read_maps",
    "read_maps_text",
    "parse_stat",
    "read_stat",
    "classify",
    "mapping_at",
    "mappings_in",
    "real_vmas",
)

#: ``PF_KTHREAD`` (``include/linux/sched.h``): the task is a kernel thread; field 9 of ``/proc/<pid>/stat``.
PF_KTHREAD = 0x00200000

#: Mappings ``/proc/<pid>/maps`` prints that are not VMAs of the mm (``get_gate_vma()`` in
#: ``fs/proc/task_mmu.c``): the kernel's VMA iterator never sees them, so the three-regions heuristic must not
#: either; otherwise the gap between ``[stack]`` and ``[vsyscall]`` would always be the biggest one.
GATE_AREA_NAMES = frozenset({"[vsyscall]"})

_DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class Vma:
    """One line of ``/proc/<pid>/maps``: a ``struct vm_area_struct`` as user space sees it.

    :ivar start: ``vm_start``
    :ivar end: ``vm_end`` (exclusive)
    :ivar perms: ``rwxp``/``rwxs`` flags, e.g. ``"r-xp"``
    :ivar offset: file offset in bytes (``vm_pgoff << PAGE_SHIFT``)
    :ivar dev: ``"major:minor"`` of the backing file's device, in hex
    :ivar inode: inode number of the backing file, 0 for anonymous memory
    :ivar pathname: the free-text name column (may be empty)
    """

    start: int
    end: int
    perms: str = "---p"
    offset: int = 0
    dev: str = "00:00"
    inode: int = 0
    pathname: str = ""

    @property
    def sz(self) -> int:
        return self.end - self.start

    @property
    def deleted(self) -> bool:
        """The backing file was unlinked (the kernel appends ``" (deleted)"``)."""
        return self.pathname.startswith("/") and self.pathname.endswith(_DELETED)

    @property
    def path(self) -> str:
        """The pathname without the ``" (deleted)"`` suffix."""
        return self.pathname[: -len(_DELETED)] if self.deleted else self.pathname

    @property
    def shared(self) -> bool:
        return self.perms[3:4] == "s"

    @property
    def is_gate(self) -> bool:
        """Not a real VMA of the process (see :data:`GATE_AREA_NAMES`)."""
        return self.pathname in GATE_AREA_NAMES


def _parse_line(line: str, lineno: int) -> Vma:
    parts = line.split(None, 5)
    if len(parts) < 5:
        raise InvalidParamsError(f"maps line {lineno}: expected at least 5 fields: {line!r}")
    rng, perms, offset, dev, inode = parts[:5]
    pathname = parts[5] if len(parts) == 6 else ""
    start_s, sep, end_s = rng.partition("-")
    try:
        if not sep:
            raise ValueError(rng)
        return Vma(int(start_s, 16), int(end_s, 16), perms, int(offset, 16), dev, int(inode), pathname)
    except ValueError as err:
        raise InvalidParamsError(f"maps line {lineno}: cannot parse {line!r}") from err


def parse_maps(text: str) -> list[Vma]:
    """Parse the text of ``/proc/<pid>/maps``.

    :param text: the whole file; lines are separated by ``\\n`` only (the kernel escapes ``\\n`` in names)
    :return: the VMAs in file order (ascending addresses)
    :raises InvalidParamsError: a line does not have the kernel's format
    """
    return [_parse_line(line, i) for i, line in enumerate(text.split("\n"), 1) if line.strip()]


def _proc_error(err: OSError, pid: int, what: str) -> Exception:
    # FileNotFoundError: no such pid directory; ESRCH: the task exited while we read its file.
    if isinstance(err, (FileNotFoundError, ProcessLookupError)) or err.errno in (errno.ENOENT, errno.ESRCH):
        return TargetGoneError(pid)
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM):
        why = os.strerror(err.errno or errno.EACCES)
        if _has_cap_sys_ptrace():
            # root with CAP_SYS_PTRACE was refused all the same: a security policy decided, not our privileges
            return PermissionDeniedError(
                f"cannot read /proc/{pid}/{what}: {why}, although this process has CAP_SYS_PTRACE (a security "
                f"module or the target's own settings refuse it)")
        return PermissionDeniedError(
            f"cannot read /proc/{pid}/{what}: {why}; reading another user's process needs root or "
            f"CAP_SYS_PTRACE (ptrace access mode PTRACE_MODE_READ)")
    return err


_CAP_SYS_PTRACE = 19  # include/uapi/linux/capability.h


def _has_cap_sys_ptrace() -> bool:
    # CapEff of /proc/self/status, a hex mask
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_PTRACE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _read_proc_file(pid: int, what: str, proc_root: str) -> str:
    path = os.path.join(proc_root, str(pid), what)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise _proc_error(err, pid, what) from err
    return data.decode("utf-8", "surrogateescape")


def read_maps_text(pid: int, proc_root: str = "/proc") -> str:
    """The text of ``/proc/<pid>/maps``, unparsed (to compare with an earlier read before parsing it).

    :raises TargetGoneError: the process does not exist or exited while being read
    :raises PermissionDeniedError: the caller may not read the process's maps
    """
    return _read_proc_file(pid, "maps", proc_root)


def read_maps(pid: int, proc_root: str = "/proc") -> list[Vma]:
    """Read and parse ``/proc/<pid>/maps``.

    An empty list means the task has no user address space: a kernel thread, or a zombie.

    :raises TargetGoneError: the process does not exist or exited while being read
    :raises PermissionDeniedError: the caller may not read the process's maps
    """
    return parse_maps(read_maps_text(pid, proc_root))


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` (``do_task_stat()`` in ``fs/proc/array.c``) the ops need.

    :ivar comm: the command name (field 2, without the parentheses)
    :ivar state: field 3: ``R``, ``S``, ``D``, ``Z`` (zombie), ``X`` (dead), ...
    :ivar flags: field 9, ``task->flags`` (``PF_*``)
    :ivar starttime: field 22, clock ticks after boot; with the pid it identifies a process
    """

    pid: int
    comm: str
    state: str
    flags: int
    starttime: int

    @property
    def is_kthread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X", "x")


def parse_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``. ``comm`` may contain spaces and parentheses, so the fields after it are
    found from the *last* ``)``.

    :raises InvalidParamsError: the text does not have the kernel's format
    """
    head, sep, tail = text.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    fields = tail.split()
    try:
        if not sep or len(fields) < 20:
            raise ValueError(text)
        # fields[0] is field 3 (state); field n is fields[n - 3]
        return ProcStat(int(pid_s), comm, fields[0], int(fields[6]), int(fields[19]))
    except ValueError as err:
        raise InvalidParamsError(f"cannot parse /proc/<pid>/stat: {text[:200]!r}") from err


def read_stat(pid: int, proc_root: str = "/proc") -> ProcStat:
    """Read and parse ``/proc/<pid>/stat``.

    :raises TargetGoneError: the process does not exist
    :raises PermissionDeniedError: the caller may not read it (unusual: the file is world-readable)
    """
    return parse_stat(_read_proc_file(pid, "stat", proc_root))


def classify(vma: Vma) -> str:
    """A short name for what a mapping holds, for display.

    ``"heap"``, ``"stack"``, ``"vdso"``, ``"vvar"``, ``"vsyscall"`` for the kernel's special mappings;
    ``"anon"`` for unnamed anonymous memory and ``"anon:<name>"`` for ``PR_SET_VMA_ANON_NAME`` names;
    ``"shmem:<name>"`` for named anonymous shared memory; ``"file:<basename>"`` for file mappings, with
    ``" (deleted)"`` kept for unlinked files; any other name (``anon_inode:[perf_event]``) as it is.
    """
    name = vma.pathname
    if not name:
        return "anon"
    if name.startswith("/"):
        base = os.path.basename(vma.path) or vma.path
        return f"file:{base}{_DELETED if vma.deleted else ''}"
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        if inner == "stack" or inner.startswith("stack:"):  # [stack:<tid>] before Linux 4.5
            return "stack"
        if inner.startswith("anon_shmem:"):
            return "shmem:" + inner[len("anon_shmem:"):]
        if inner.startswith("vvar"):  # [vvar], [vvar_vclock]
            return "vvar"
        return inner  # heap, vdso, vsyscall, uprobes, vectors, anon:<name>, ...
    return name


def mapping_at(vmas: Sequence[Vma], addr: int) -> Vma | None:
    """The VMA holding *addr*, or None when *addr* lies in no mapping.

    :param vmas: sorted by address, as :func:`read_maps` returns them
    """
    i = bisect.bisect_right(vmas, addr, key=lambda v: v.start) - 1
    if i >= 0 and addr < vmas[i].end:
        return vmas[i]
    return None


def mappings_in(vmas: Sequence[Vma], start: int, end: int) -> list[Vma]:
    """The VMAs that overlap ``[start, end)`` (a DAMON region usually spans several).

    :param vmas: sorted by address, as :func:`read_maps` returns them
    """
    i = max(bisect.bisect_right(vmas, start, key=lambda v: v.start) - 1, 0)
    out = []
    for v in vmas[i:]:
        if v.start >= end:
            break
        if v.end > start:
            out.append(v)
    return out


def real_vmas(vmas: Iterable[Vma]) -> list[Vma]:
    """*vmas* without the gate areas that are not part of the mm (see :data:`GATE_AREA_NAMES`)."""
    return [v for v in vmas if not v.is_gate]
