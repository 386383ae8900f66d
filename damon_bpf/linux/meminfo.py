"""``/proc/meminfo`` and the per-node ``/sys/devices/system/node/node<N>/meminfo`` (``meminfo_proc_show()`` in
``fs/proc/meminfo.c``, ``node_read_meminfo()`` in ``drivers/base/node.c``): one parser for both, and their
readers."""

from __future__ import annotations

import os

from damon_bpf.errors import NotSupportedError

__all__ = ("parse_meminfo", "meminfo_path", "node_root", "read_meminfo", "read_node_meminfo")


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
    path = meminfo_path(proc_root)
    try:
        with open(path) as f:
            return parse_meminfo(f.read())
    except FileNotFoundError as err:
        raise NotSupportedError(f"no {path}") from err


def read_node_meminfo(nid: int, sys_root: str = "/sys") -> dict[str, int] | None:
    """:func:`parse_meminfo` of node *nid*'s meminfo; None when there is no such node (or *nid* < 0).

    :raises NotSupportedError: no NUMA sysfs (``CONFIG_NUMA`` off)
    """
    root = node_root(sys_root)
    if not os.path.isdir(root):
        raise NotSupportedError(f"no {root}: kernel built without CONFIG_NUMA")
    if nid < 0:
        return None
    try:
        with open(os.path.join(root, f"node{nid}", "meminfo")) as f:
            return parse_meminfo(f.read())
    except FileNotFoundError:
        return None
