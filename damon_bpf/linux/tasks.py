"""The threads of a process as ``/proc`` shows them: their names, stack pointers and the process's start time.

Where each thread's stack is: ``/proc/<pid>/task/<tid>/syscall`` (``proc_pid_syscall()`` in ``fs/proc/base.c``,
which needs ``PTRACE_MODE_ATTACH_FSCREDS``: root, or the owner without a Yama restriction) prints, for a thread
blocked in the kernel, ``NR ARG1 .. ARG6 SP PC``, the user stack pointer and program counter saved at kernel
entry (``-1 SP PC`` when it is blocked outside a system call); a thread running on a CPU at that moment prints
``running``, and it is read again a few times. The stack pointer field 29 of ``/proc/<pid>/task/<tid>/stat``
(``kstkesp``) is no help: ``do_task_stat()`` fills it only for a task that is exiting or dumping core, and prints
0 otherwise (checked on Linux 6.18).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from damon_bpf.linux.process import start_time

__all__ = ("ThreadSp", "MAX_THREADS", "thread_stack_pointers", "parse_syscall", "process_started_ns")

#: the most threads of one process whose stack pointers are read
MAX_THREADS = 65536
_SYSCALL_RETRIES = 5
_RETRY_SLEEP_S = 0.002
_MAX_PROC_STAT = 4 << 20


@dataclass(frozen=True, slots=True)
class ThreadSp:
    """A thread's user stack pointer, as saved when it last entered the kernel."""

    tid: int
    sp: int
    comm: str = ""


def parse_syscall(text: str) -> int | None:
    """The stack pointer in the text of ``/proc/<pid>/task/<tid>/syscall``; None for ``running`` or a text
    without one.

    >>> hex(parse_syscall("230 0x1 0x1 0x7f00 0x0 0x0 0x7f01 0x7ffd1000 0x7f02") or 0)
    '0x7ffd1000'
    """
    fields = text.split()
    if len(fields) not in (3, 9):  # "-1 SP PC" or "NR A1..A6 SP PC"
        return None
    try:
        sp = int(fields[-2], 16)
    except ValueError:
        return None
    return sp or None


def _read_small(path: str, limit: int = 4096) -> str | None:
    # a /proc file of at most *limit* bytes (None when it cannot be read)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    parts: list[bytes] = []
    nr = 0
    try:
        while nr < limit:
            b = os.read(fd, min(65536, limit - nr))
            if not b:
                break
            parts.append(b)
            nr += len(b)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(parts).decode("ascii", "replace")


def thread_stack_pointers(pid: int, proc_root: str = "/proc") -> list[ThreadSp]:
    """The user stack pointer of each thread of *pid* that can be read (see the module docstring): threads
    running on a CPU are read up to a few times; threads whose file cannot be read (no permission, the thread
    exited) are left out. At most :data:`MAX_THREADS` threads.

    :return: by thread id; empty when the process is gone or nothing could be read
    """
    task_dir = os.path.join(proc_root, str(pid), "task")
    try:
        tids = sorted(int(t) for t in os.listdir(task_dir) if t.isdigit())[:MAX_THREADS]
    except OSError:
        return []
    out = []
    for tid in tids:
        sp = None
        for attempt in range(_SYSCALL_RETRIES):
            text = _read_small(os.path.join(task_dir, str(tid), "syscall"))
            if text is None:
                break
            sp = parse_syscall(text)
            if sp is not None or not text.startswith("running"):
                break
            time.sleep(_RETRY_SLEEP_S * (attempt + 1))
        if sp is None:
            continue
        comm = (_read_small(os.path.join(task_dir, str(tid), "comm")) or "").strip()
        out.append(ThreadSp(tid, sp, comm))
    return out


def process_started_ns(pid: int, proc_root: str = "/proc") -> int | None:
    """When process *pid* started, in ns since the epoch (``btime`` of ``/proc/stat`` plus field 22 of
    ``/proc/<pid>/stat`` in clock ticks; good to a tick and to the second of ``btime``); None when it does not
    exist or the files cannot be read."""
    ticks = start_time(pid) if proc_root == "/proc" else None
    # /proc/stat's "intr" line, before "btime", has a figure per interrupt: thousands on large machines
    stat_text = _read_small(os.path.join(proc_root, "stat"), _MAX_PROC_STAT) if ticks is not None else None
    if ticks is None or stat_text is None:
        return None
    for line in stat_text.splitlines():
        if line.startswith("btime "):
            try:
                btime = int(line.split()[1])
            except (IndexError, ValueError):
                return None
            hz = os.sysconf("SC_CLK_TCK")
            return btime * 1_000_000_000 + ticks * 1_000_000_000 // hz
    return None
