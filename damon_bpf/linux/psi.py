"""Pressure stall information (``Documentation/accounting/psi.rst``): the system's ``/proc/pressure/memory`` and a
cgroup v2's ``memory.pressure``, one format (``psi_show()`` in ``kernel/sched/psi.c``)."""

from __future__ import annotations

import os

from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux.cgroups import cgroup_file

__all__ = ("parse_psi", "memory_pressure_path", "read_memory_pressure", "read_cgroup_memory_pressure")


def parse_psi(text: str) -> dict[str, int]:
    """``/proc/pressure/memory`` or a cgroup's ``memory.pressure``: ``{"some": total_us, "full": total_us}``.

    :raises InvalidParamsError: no ``total=`` field
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        for w in words[1:]:
            if w.startswith("total="):
                out[words[0]] = int(w[len("total="):])
    if not out:
        raise InvalidParamsError(f"cannot parse PSI: {text[:200]!r}")
    return out


def memory_pressure_path(proc_root: str = "/proc") -> str:
    """Where the system's memory PSI is (absent on a kernel built without ``CONFIG_PSI``)."""
    return os.path.join(proc_root, "pressure", "memory")


def read_memory_pressure(proc_root: str = "/proc") -> dict[str, int]:
    """:func:`parse_psi` of the system's memory PSI.

    :raises NotSupportedError: no PSI (not built in, or disabled with ``psi=0``)
    """
    path = memory_pressure_path(proc_root)
    try:
        with open(path) as f:
            return parse_psi(f.read())
    except FileNotFoundError as err:
        raise NotSupportedError(f"no {path}: kernel built without CONFIG_PSI") from err
    except OSError as err:  # EOPNOTSUPP with psi=0
        raise NotSupportedError(f"{path} unreadable ({err.strerror}): PSI disabled (psi=0?)") from err


def read_cgroup_memory_pressure(cgroup2_mount: str, cgroup_path: str) -> dict[str, int] | None:
    """:func:`parse_psi` of cgroup *cgroup_path*'s ``memory.pressure``; None when there is no such cgroup."""
    try:
        with open(cgroup_file(cgroup2_mount, cgroup_path, "memory.pressure")) as f:
            return parse_psi(f.read())
    except FileNotFoundError:
        return None
