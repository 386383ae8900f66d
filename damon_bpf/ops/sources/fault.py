"""The ``fault`` source described (its operations set: :mod:`damon_bpf.ops.fault`): page faults of the monitored
processes, counted per region by a BPF program; natural faults only, or re-armed by NUMA hint faults or pageout
probing."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damon_bpf.ops.sources.base import BpfOptions, BpfSourceDescriptor

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = ("PROBES", "FaultOptions", "FaultSource")

#: Ways to make resident memory fault again by probing (``--probe``).
PROBES = ("pageout",)


@dataclass(frozen=True)
class FaultOptions(BpfOptions):
    """:ivar numa_hint_faults: turn NUMA balancing on for the session so resident memory keeps faulting
    :ivar probe: ``"pageout"``: make one page per region non-present each sampling interval (:data:`PROBES`)"""

    numa_hint_faults: bool = False
    probe: str | None = None


class FaultSource(BpfSourceDescriptor[FaultOptions]):
    name = "fault"
    summary = "fault: page faults (BPF)"
    ops_path = "damon_bpf.ops.fault:FaultOps"
    options_type = FaultOptions
    counts_writes = True  # the fault's error code (X86_PF_WRITE)
    auto_rank = 2
    features = ("bpf/syscall", "bcc/import", "bcc/compile")
    # raw tracepoint or tracepoint page_fault_user, else the software perf event (probes/access.py)
    features_any = ("probe/tracepoint_page_fault_user", "probe/perf_sw_page_faults_addr")
    in_demo = True
    # demo probes with pageout, which re-arms file-backed memory on any machine (anonymous memory needs swap)
    demo_file_backed = True

    def add_arguments(self, parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--numa-hint-faults", action="store_true",
                           help="fault source: enable kernel.numa_balancing for the session (restored after) so "
                                "resident memory keeps faulting; needs a multi-threaded target on one-node machines")
        group.add_argument("--probe", choices=PROBES,
                           help="fault source: make one page per region non-present each sampling interval "
                                "(MADV_PAGEOUT) so its next access faults; file-backed memory, or anonymous with "
                                "swap")

    def owned_arguments(self) -> list[str]:
        return ["--numa-hint-faults", "--probe"]

    def given_arguments(self, args: argparse.Namespace) -> list[str]:
        return [name for name, value in (("--numa-hint-faults", args.numa_hint_faults), ("--probe", args.probe))
                if value]

    def selected_by(self, args: argparse.Namespace) -> bool:
        # --writes-only too: the fault's error code tells writes on every machine
        return bool(self.given_arguments(args)) or bool(getattr(args, "writes_only", False))

    def options_from_args(self, args: argparse.Namespace) -> FaultOptions:
        return FaultOptions(numa_hint_faults=bool(args.numa_hint_faults), probe=args.probe,
                            **self.bpf_arguments(args))

    def blind_to_resident(self, options: FaultOptions) -> str | None:
        if options.numa_hint_faults or options.probe:
            return None
        return ("the fault source sees natural page faults only (first touches, swap-ins, COW): accesses to "
                "resident memory are not seen; use --source pte, --probe pageout or --numa-hint-faults")

    def counts_faults(self, options: FaultOptions) -> bool:
        return True

    def rearms_faults(self, options: FaultOptions) -> bool:
        return options.numa_hint_faults or options.probe is not None

    def unmaps_pages(self, options: FaultOptions) -> bool:
        return options.probe == "pageout"

    def create_ops(self, options: FaultOptions, *, follow_children: bool = False) -> Operations:
        from damon_bpf.ops.fault import FaultOps

        return FaultOps(numa_hint_faults=options.numa_hint_faults, probe=options.probe,
                        rate_limit=options.rate_limit, bpf_stats=options.bpf_stats, writes_only=options.writes_only,
                        extra_targets=self.children_room(follow_children))

    def compare_variants(self) -> dict[str, FaultOptions]:
        return {self.name: FaultOptions(), f"{self.name}+numa": FaultOptions(numa_hint_faults=True),
                f"{self.name}+pageout": FaultOptions(probe="pageout")}

    def demo_options(self, truth_path: str, seed: int | None) -> FaultOptions:
        return dataclasses.replace(self.defaults(), probe="pageout")
