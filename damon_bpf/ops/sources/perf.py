"""The ``perf`` source described (its operations set: :mod:`damon_bpf.ops.perf`): perf samples with data
addresses, counted per region by a BPF program; hardware data-address sampling (PEBS, IBS) where the CPU has it,
else software page faults."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damon_bpf.config.units import positive_int
from damon_bpf.errors import InvalidParamsError
from damon_bpf.ops.sources.base import BpfOptions, BpfSourceDescriptor

if TYPE_CHECKING:
    from damon_bpf.engine.ops import Operations

__all__ = ("PerfOptions", "PerfSource", "hardware_sampling")


@dataclass(frozen=True)
class PerfOptions(BpfOptions):
    """:ivar events: perf event names in perf's syntax (``mem-loads,mem-stores``, ``ibs_op//``, ``page-faults``);
        None: hardware data-address sampling where available, else software page faults
    :ivar period: the sampling period of every event (None: each event's own)"""

    events: str | None = None
    period: int | None = None


def hardware_sampling() -> bool:
    """Whether the default events sample data addresses with hardware here (False when that cannot be told:
    no bcc, no sysfs)."""
    try:
        from damon_bpf.probes import perf_events

        ok, _ = perf_events.hardware_sampling_status()
    except Exception:  # the other sources report what is missing
        return False
    return bool(ok)


class PerfSource(BpfSourceDescriptor[PerfOptions]):
    name = "perf"
    summary = "perf: perf samples with data addresses (BPF; PEBS/IBS when the CPU has them)"
    ops_path = "damon_bpf.ops.perf:PerfOps"
    options_type = PerfOptions
    counts_writes = True  # store events (mem-stores, IBS op stores); the backend refuses the software page-fault event
    auto_rank = 0
    auto_help = "perf with hardware sampling if available"
    features = ("bpf/syscall", "bcc/import", "bcc/compile")
    # hardware data-address sampling, else the software page-fault event (probes/perf_events.py default_events)
    features_any = ("pmu/intel_pebs_mem_loads", "pmu/intel_pebs_mem_stores", "pmu/amd_ibs_op",
                    "probe/perf_sw_page_faults_addr")
    compare_prefix = "perf:"
    compare_prefix_help = "perf:EVENTS"

    def add_arguments(self, parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--event", metavar="EVENTS",
                           help="perf source: perf event names, e.g. page-faults, mem-loads,mem-stores, ibs_op//, "
                                "cpu/mem-loads,ldlat=30/P (default: hardware data-address sampling, else "
                                "page-faults)")
        group.add_argument("--period", type=positive_int, metavar="N",
                           help="perf source: sampling period (default: per event)")

    def owned_arguments(self) -> list[str]:
        return ["--event", "--period"]

    def given_arguments(self, args: argparse.Namespace) -> list[str]:
        return [name for name, value in (("--event", args.event), ("--period", args.period)) if value]

    def selected_by(self, args: argparse.Namespace) -> bool:
        return bool(args.event)

    def options_from_args(self, args: argparse.Namespace) -> PerfOptions:
        return PerfOptions(events=args.event, period=args.period, **self.bpf_arguments(args))

    def auto_usable(self) -> bool:
        # only with hardware sampling: software page faults are what the fault source counts better
        return hardware_sampling()

    def blind_to_resident(self, options: PerfOptions) -> str | None:
        events = options.events or ""
        if (not events and hardware_sampling()) or (events and "fault" not in events):
            return None
        return ("the perf source counts software page faults here (no hardware sampling): accesses to resident "
                "memory are not seen; use --source pte")

    def counts_faults(self, options: PerfOptions) -> bool:
        return True

    def create_ops(self, options: PerfOptions, *, follow_children: bool = False) -> Operations:
        from damon_bpf.ops.perf import PerfOps

        return PerfOps(events=options.events, period=options.period, rate_limit=options.rate_limit,
                       bpf_stats=options.bpf_stats, writes_only=options.writes_only,
                       extra_targets=self.children_room(follow_children))

    def compare_prefixed(self, value: str) -> PerfOptions:
        if not value:
            raise InvalidParamsError(f"--sources: {self.compare_prefix} needs event names, e.g. "
                                     f"{self.compare_prefix}page-faults")
        return PerfOptions(events=value)
