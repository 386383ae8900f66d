"""The ``--writes-only`` option of the access sources (``monitor``, ``record``): its declaration and its parsing
in one place, so it moves with the other source options.

``fault``: the page fault's error code (``X86_PF_WRITE``) says whether it was a write; ``perf``: store events
(``mem-stores``) are writes, the software page-fault event cannot tell; ``pte``: refused (the Dirty bit is set
once and only soft-dirty tracking re-arms it). The BPF program drops reads itself (``-DWRITES_ONLY=1``).
"""

from __future__ import annotations

import argparse
from typing import Any

from damon_bpf.errors import InvalidParamsError, NotSupportedError

__all__ = ("add_writes_only_arg", "writes_only_option", "pte_write_refusal")


def add_writes_only_arg(g: Any) -> None:
    """Declare ``--writes-only`` in the source option group *g*."""
    g.add_argument("--writes-only", action="store_true",
                   help="fault and perf sources: count write accesses only (the BPF program drops reads); fault: "
                        "the page fault's error code, perf: store events (the software page-fault event cannot "
                        "tell); not the pte source")


def pte_write_refusal() -> str:
    """Why the ``pte`` source cannot count writes on this kernel (one line)."""
    from damon_bpf.linux.softdirty import soft_dirty_supported

    why = ("the Accessed/Dirty bits are per page table, shared by all threads, and the Dirty bit stays set "
           "after the first write: only soft-dirty tracking re-arms it")
    if soft_dirty_supported():
        return f"--writes-only: the pte source cannot count writes: {why}, and the pte source does not use it"
    return f"--writes-only: the pte source cannot count writes: {why}, which this kernel lacks " \
           "(CONFIG_MEM_SOFT_DIRTY: pagemap bit 55 stays 0); use --source fault --writes-only"


def writes_only_option(args: argparse.Namespace, source: str) -> dict[str, Any]:
    """The ops keyword for *source* (``{"writes_only": True}`` or ``{}``).

    :raises NotSupportedError: ``--writes-only`` with the ``pte`` source
    :raises InvalidParamsError: with any other source than ``fault`` and ``perf``
    """
    if not getattr(args, "writes_only", False):
        return {}
    if source == "pte":
        raise NotSupportedError(pte_write_refusal())
    if source not in ("fault", "perf"):
        raise InvalidParamsError("--writes-only belongs to the fault and perf sources")
    return {"writes_only": True}
