"""The ``pte`` source described (its operations set: :mod:`damon_bpf.ops.pte`): PTE Accessed bits, DAMON's own
access check, read by a BPF page-table walk."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damon_bpf.config.units import text_to_bp
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.ops.sources.base import SourceDescriptor, SourceOptions

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = ("CLEAR_METHODS", "PteOptions", "PteSource", "parse_cpu_budget")

#: Ways to clear Accessed bits (``"auto"``: page_idle where available, else the cheaper of the other two).
CLEAR_METHODS = ("auto", "page_idle", "madvise", "clear_refs")
_DEFAULT_CPU_BUDGET = "1%"


@dataclass(frozen=True)
class PteOptions(SourceOptions):
    """:ivar clear: how the probes' Accessed bits are cleared (:data:`CLEAR_METHODS`)
    :ivar cpu_budget: the share of one core the monitor may spend (0.01: 1%); 0: no bound"""

    clear: str = "auto"
    cpu_budget: float = 0.01


def parse_cpu_budget(text: str) -> float:
    """``--cpu-budget``: a share of one core, ``1%`` or ``0.01``.

    :raises InvalidParamsError: not a share
    """
    budget = str(text).strip()
    try:
        return text_to_bp(budget) / 10000 if budget.endswith("%") else float(budget)
    except (ValueError, InvalidParamsError):
        raise InvalidParamsError(f"--cpu-budget: not a share of a core: {text!r}") from None


class PteSource(SourceDescriptor[PteOptions]):
    name = "pte"
    summary = "pte: PTE Accessed bits, DAMON's own check (BPF page-table walk)"
    ops_path = "damon_bpf.ops.pte:PteOps"
    options_type = PteOptions
    auto_rank = 1
    features = ("bpf/syscall", "bpf/btf", "bcc/import", "bcc/compile", "probe/pte_accessed_bit")
    # its cost follows the sampling rate: it keeps the aggregation interval long enough for --cpu-budget
    chooses_intervals = True
    loads_bpf = True
    in_demo = True
    reference = True
    evaluates_probes = True  # the walk gives the page frame of each probe page

    def add_arguments(self, parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--pte-clear", choices=CLEAR_METHODS, default="auto",
                           help="pte source: how the probes' Accessed bits are cleared: /sys/kernel/mm/page_idle/"
                                "bitmap (the kernel's own mkold, where it has idle page tracking), process_madvise("
                                "MADV_COLD) of the probes, /proc/PID/clear_refs for the whole process, or auto "
                                "(page_idle where available, else madvise unless clear_refs is much cheaper)")
        group.add_argument("--cpu-budget", default=_DEFAULT_CPU_BUDGET, metavar="SHARE",
                           help="pte source: the share of one core the monitor may spend; with the source's own "
                                "intervals (no --sample/--aggr) the aggregation interval (100 ms..1 s) is kept long "
                                "enough (default 1%%; 0: none)")

    def owned_arguments(self) -> list[str]:
        return ["--pte-clear", "--cpu-budget"]

    def given_arguments(self, args: argparse.Namespace) -> list[str]:
        given = []
        if args.pte_clear != "auto":
            given.append("--pte-clear")
        if args.cpu_budget != _DEFAULT_CPU_BUDGET:
            given.append("--cpu-budget")
        return given

    def refuse_writes_only(self, counters: list[str]) -> None:
        from damon_bpf.linux.softdirty import soft_dirty_supported

        why = ("the Accessed/Dirty bits are per page table, shared by all threads, and the Dirty bit stays set "
               "after the first write: only soft-dirty tracking re-arms it")
        if soft_dirty_supported():
            raise NotSupportedError(f"--writes-only: the pte source cannot count writes: {why}, and the pte source "
                                    "does not use it")
        raise NotSupportedError(f"--writes-only: the pte source cannot count writes: {why}, which this kernel lacks "
                                f"(CONFIG_MEM_SOFT_DIRTY: pagemap bit 55 stays 0); use --source {counters[0]} "
                                "--writes-only")

    def options_from_args(self, args: argparse.Namespace) -> PteOptions:
        return PteOptions(clear=str(args.pte_clear), cpu_budget=parse_cpu_budget(args.cpu_budget))

    def create_ops(self, options: PteOptions, *, follow_children: bool = False) -> Operations:
        from damon_bpf.ops.pte import PteOps

        return PteOps(clear=options.clear, cpu_budget=options.cpu_budget)
