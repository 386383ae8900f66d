"""System memory figures, each format once: meminfo, the system's (``/proc/meminfo``, ``meminfo_proc_show()`` in
``fs/proc/meminfo.c``) and each NUMA node's (``/sys/devices/system/node/node<N>/meminfo``, ``node_read_meminfo()``
in ``drivers/base/node.c``), and memory pressure stall information, the system's (``/proc/pressure/memory``) and
a cgroup v2's (``memory.pressure``), one format (``psi_show()`` in ``kernel/sched/psi.c``,
``Documentation/accounting/psi.rst``). Pure parsers, and readers that take the ``proc_root``/``sys_root`` or the
cgroup mount they read under.
"""

from __future__ import annotations

import os

from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux.cgroups import cgroup_file

__all__ = (
    "parse_swaps",
    "read_swaps",
    "parse_meminfo",
    "meminfo_path",
    "node_root",
    "read_meminfo",
    "read_node_meminfo",
    "parse_psi",
    "memory_pressure_path",
    "read_memory_pressure",
    "read_cgroup_memory_pressure",
)


def _read_required(path: str, why: str = "") -> str:
    # the text of a kernel file whose absence means the kernel lacks a feature
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError as err:
        raise NotSupportedError(f"no {path}: {why}" if why else f"no {path}") from err


def _read_optional(path: str) -> str | None:
    # the text of a file of a node or cgroup; None when there is no such node or cgroup
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


# -- meminfo ---------------------------------------------------------------------------------------------------

def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` or ``/sys/devices/system/node/node<N>/meminfo`` (``Node N`` prefix) as ``{key: value}``;
    values in the file's units (kB for sizes)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        words = key.split()
        if len(words) >= 3 and words[0] == "Node":  # "Node 0 MemTotal"
            words = words[2:]
        vals = rest.split()
        if words and vals:
            try:
                out[" ".join(words)] = int(vals[0])
            except ValueError:
                continue
    return out


def meminfo_path(proc_root: str = "/proc") -> str:
    """Where the system's meminfo is."""
    return os.path.join(proc_root, "meminfo")


def node_root(sys_root: str = "/sys") -> str:
    """The NUMA nodes' sysfs folder (absent on a kernel built without ``CONFIG_NUMA``)."""
    return os.path.join(sys_root, "devices", "system", "node")


def read_meminfo(proc_root: str = "/proc") -> dict[str, int]:
    """:func:`parse_meminfo` of ``/proc/meminfo``.

    :raises NotSupportedError: no such file
    """
    return parse_meminfo(_read_required(meminfo_path(proc_root)))


def read_node_meminfo(nid: int, sys_root: str = "/sys") -> dict[str, int] | None:
    """:func:`parse_meminfo` of node *nid*'s meminfo; None when there is no such node (or *nid* < 0).

    :raises NotSupportedError: no NUMA sysfs (``CONFIG_NUMA`` off)
    """
    root = node_root(sys_root)
    if not os.path.isdir(root):
        raise NotSupportedError(f"no {root}: kernel built without CONFIG_NUMA")
    if nid < 0:
        return None
    text = _read_optional(os.path.join(root, f"node{nid}", "meminfo"))
    return None if text is None else parse_meminfo(text)


# -- PSI -------------------------------------------------------------------------------------------------------

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
        return parse_psi(_read_required(path, "kernel built without CONFIG_PSI"))
    except OSError as err:  # EOPNOTSUPP with psi=0
        raise NotSupportedError(f"{path} unreadable ({err.strerror}): PSI disabled (psi=0?)") from err


def read_cgroup_memory_pressure(cgroup2_mount: str, cgroup_path: str) -> dict[str, int] | None:
    """:func:`parse_psi` of cgroup *cgroup_path*'s ``memory.pressure``; None when there is no such cgroup."""
    text = _read_optional(cgroup_file(cgroup2_mount, cgroup_path, "memory.pressure"))
    return None if text is None else parse_psi(text)


def parse_swaps(text: str) -> list[tuple[str, str, int]]:
    """``/proc/swaps``: ``(filename, type, size in KiB)`` of each swap area (a header line, then ``Filename Type
    Size Used Priority`` rows)."""
    areas = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[2].isdigit():
            areas.append((cols[0], cols[1], int(cols[2])))
    return areas


def read_swaps(proc_root: str = "/proc") -> list[tuple[str, str, int]]:
    """The swap areas of ``/proc/swaps`` (:func:`parse_swaps`); none when it cannot be read."""
    try:
        with open(f"{proc_root}/swaps") as f:
            return parse_swaps(f.read())
    except OSError:
        return []
