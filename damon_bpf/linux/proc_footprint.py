"""What ``damo record`` samples of a process besides its accesses: ``/proc/<pid>/statm``, ``/proc/meminfo`` and
``/proc/<pid>/stat``.

The kernel's formats (``Documentation/filesystems/proc.rst``):

- ``/proc/<pid>/statm`` (``proc_pid_statm()`` in ``fs/proc/array.c``): seven numbers, in pages: ``size``
  (total program size), ``resident``, ``shared`` (file-backed and shmem resident pages), ``trs`` (text),
  ``lrs`` (always 0), ``drs`` (data and stack), ``dt`` (always 0);
- ``/proc/meminfo`` (``meminfo_proc_show()`` in ``fs/proc/meminfo.c``): ``Name:  value kB`` lines;
- ``/proc/<pid>/stat`` (``do_task_stat()`` in ``fs/proc/array.c``): space-separated fields where the second,
  ``(comm)``, may itself hold spaces and parentheses, so the fields after it are found from the *last* ``)``.

damo reads these with ``str.split()`` (``ProcMemFootprint``, ``SysMemFootprint`` and ``ProcStat`` in
``src/_damo_records.py``); :func:`split_stat` keeps ``(comm)`` whole, which gives damo's fields for every
command name without a space and the kernel's field numbering for the others.
"""

from __future__ import annotations

import os

from damon_bpf.errors import InvalidParamsError

__all__ = (
    "STATM_FIELDS",
    "MEMINFO_FIELDS",
    "parse_statm",
    "read_statm",
    "parse_meminfo",
    "read_meminfo",
    "split_stat",
    "read_stat_fields",
)

#: the fields of ``/proc/<pid>/statm``, in order, with damo's names (``ProcMemFootprint``); all in pages
STATM_FIELDS = ("size", "resident", "shared", "trs", "lrs", "drs", "dt")

#: the ``/proc/meminfo`` lines damo keeps (``SysMemFootprint``), and its names for them; all in KiB
MEMINFO_FIELDS = {"MemTotal": "total", "MemFree": "free", "MemAvailable": "available", "Buffers": "buffers",
                  "Cached": "cached"}

# the largest of these files read: statm and stat are a line; meminfo is about 60 lines
_MAX_PROC_BYTES = 1 << 16


def _read(path: str) -> str | None:
    # None when the file is gone (the process exited); a proc file is read with one bounded read
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, _MAX_PROC_BYTES)
    except ProcessLookupError:  # ESRCH: the task exited while we read
        return None
    finally:
        os.close(fd)
    return data.decode("ascii", "replace")


def parse_statm(text: str) -> tuple[int, ...]:
    """The seven numbers of ``/proc/<pid>/statm`` (pages), in :data:`STATM_FIELDS` order.

    :raises InvalidParamsError: the text does not have the kernel's format
    """
    parts = text.split()
    try:
        if len(parts) != len(STATM_FIELDS):
            raise ValueError(text)
        return tuple(int(x) for x in parts)
    except ValueError as err:
        raise InvalidParamsError(f"cannot parse /proc/<pid>/statm: {text[:100]!r}") from err


def read_statm(pid: int, proc_root: str = "/proc") -> tuple[int, ...] | None:
    """:func:`parse_statm` of process *pid*; None when the process does not exist (any more).

    :raises OSError: the file cannot be read for another reason (permissions)
    """
    text = _read(os.path.join(proc_root, str(pid), "statm"))
    return None if text is None else parse_statm(text)


def parse_meminfo(text: str) -> dict[str, int]:
    """damo's ``sys`` footprint from the text of ``/proc/meminfo``: ``total``, ``free``, ``available``,
    ``buffers``, ``cached`` in KiB (:data:`MEMINFO_FIELDS`); a line the kernel does not print is left out."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        key = MEMINFO_FIELDS.get(name)
        if key is None or not sep:
            continue
        try:
            out[key] = int(rest.split()[0])
        except (IndexError, ValueError):
            continue
    return out


def read_meminfo(proc_root: str = "/proc") -> dict[str, int]:
    """:func:`parse_meminfo` of the running system.

    :raises OSError: ``/proc/meminfo`` cannot be read
    """
    text = _read(os.path.join(proc_root, "meminfo"))
    if text is None:
        raise FileNotFoundError(f"{proc_root}/meminfo")
    return parse_meminfo(text)


def split_stat(text: str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` as strings, ``(comm)`` kept as one field with its parentheses (field
    *n* of ``proc(5)`` is item ``n - 1``).

    :raises InvalidParamsError: the text does not have the kernel's format
    """
    head, sep, tail = text.rstrip("\n").rpartition(")")
    pid, sp, comm = head.partition(" (")
    if not sep or not sp or not pid.strip().isdigit():
        raise InvalidParamsError(f"cannot parse /proc/<pid>/stat: {text[:200]!r}")
    return [pid.strip(), f"({comm})", *tail.split()]


def read_stat_fields(pid: int, proc_root: str = "/proc") -> list[str] | None:
    """:func:`split_stat` of process *pid*; None when the process does not exist (any more).

    :raises OSError: the file cannot be read for another reason
    """
    text = _read(os.path.join(proc_root, str(pid), "stat"))
    return None if text is None else split_stat(text)
