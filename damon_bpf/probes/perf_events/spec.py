"""The perf events of the ``perf`` access source as data: :class:`EventSpec`, default periods, program names.

Counterpart of ``struct perf_event_attr`` (include/uapi/linux/perf_event.h) as far as the source uses it; one
spec is what :func:`~damon_bpf.probes.perf_events.grammar.parse_event` makes of one event of the user's list.
"""

from __future__ import annotations

from dataclasses import dataclass

from damon_bpf.linux.syscalls import PERF_SAMPLE_ADDR, PERF_SAMPLE_IP, PERF_SAMPLE_TID
from damon_bpf.linux.sysfs import format_list

__all__ = (
    "DEFAULT_IBS_PERIOD",
    "DEFAULT_PEBS_PERIOD",
    "DEFAULT_RAW_PERIOD",
    "DEFAULT_SOFTWARE_PERIOD",
    "FN_READ",
    "FN_WRITE",
    "KINDS",
    "PERF_MEM_LDLAT",
    "SAMPLE_TYPE",
    "SPE_REASON",
    "EventSpec",
)

# include/uapi/linux/perf_event.h

#: ``sample_type`` of every event: ``PERF_SAMPLE_ADDR`` makes PEBS/IBS fill ``ctx->addr`` (the software page-fault
#: event fills it anyway); IP and TID are cheap and keep the samples meaningful to a perf reader. No DATA_SRC:
#: with it, Sapphire Rapids wants a ``mem-loads-aux`` group leader (ENODATA otherwise).
SAMPLE_TYPE = PERF_SAMPLE_ADDR | PERF_SAMPLE_IP | PERF_SAMPLE_TID

#: BPF programs of ``bpf/perf_sample.bpf.c``.
FN_READ = "on_sample_read"
FN_WRITE = "on_sample_write"

#: Event kinds (:attr:`EventSpec.kind`).
KINDS = ("software", "pebs", "ibs", "spe", "raw")

# Default periods are primes so that sampling does not lock onto loop strides.
#: Software page faults: every fault.
DEFAULT_SOFTWARE_PERIOD = 1
#: Intel PEBS mem-loads/mem-stores: one sample per 10007 qualifying loads/stores.
DEFAULT_PEBS_PERIOD = 10007
#: AMD IBS op: the prime 100003 rounded down to a multiple of 16 (IBS period mode ignores the low 4 bits and
#: rejects them: ``perf_ibs_init()`` in arch/x86/events/amd/ibs.c), i.e. 100000.
DEFAULT_IBS_PERIOD = 100003 & ~0xF
#: Raw events, ARM SPE.
DEFAULT_RAW_PERIOD = 10007
#: perf mem's default load-latency threshold (``perf_mem_events__loads_ldlat``, tools/perf/util/mem-events.c).
PERF_MEM_LDLAT = 30

#: Why ARM SPE is never attached (:func:`~damon_bpf.probes.perf_events.opening.detect`) nor chosen by default.
SPE_REASON = (
    "ARM SPE writes its samples to an AUX buffer that perf decodes afterwards; a BPF perf_event program never "
    "sees a single SPE sample (use perf record -e arm_spe// and parse perf script instead)"
)


@dataclass(frozen=True)
class EventSpec:
    """One perf event to sample data addresses with, resolved against this machine's sysfs.

    :param name: the event as the user wrote it (``"mem-loads"``, ``"cpu/mem-loads,ldlat=50/P"``, ``"mem"``).
    :param type: ``perf_event_attr.type``: ``PERF_TYPE_*`` or a dynamic PMU type (``<pmu>/type`` in sysfs).
    :param config: ``perf_event_attr.config``.
    :param config1: ``perf_event_attr.config1`` (Intel ``ldlat`` = config1:0-15).
    :param precise_ip: ``perf_event_attr.precise_ip``; with :attr:`precise_max`, the first level tried.
    :param sample_period: one sample every this many events; never a frequency (the density estimator needs it).
    :param is_write: stores (attach :data:`FN_WRITE`); False for loads and for IBS op and page faults.
    :param kind: one of :data:`KINDS`.
    :param sampled: each event stands for about ``sample_period`` accesses; False for exact events (period 1).
    :param exclude_kernel: ``perf_event_attr.exclude_kernel`` (True by default for PMU events).
    :param config2: ``perf_event_attr.config2`` (IBS ``swfilt`` = config2:0).
    :param exclude_user: ``perf_event_attr.exclude_user`` (modifier ``k``).
    :param precise_max: modifier ``P``: try ``precise_ip`` and lower levels down to 1 until the PMU accepts one.
    :param pmu: the sysfs PMU name (``"software"``, ``"cpu"``, ``"cpu_core"``, ``"ibs_op"``...).
    :param cpus: the CPUs the PMU covers (hybrid core PMUs); None for every online CPU.
    :param perf_event: the equivalent ``perf record -e`` argument.
    """

    name: str
    type: int
    config: int
    config1: int
    precise_ip: int
    sample_period: int
    is_write: bool
    kind: str
    sampled: bool
    exclude_kernel: bool
    config2: int = 0
    exclude_user: bool = False
    precise_max: bool = False
    pmu: str = ""
    cpus: tuple[int, ...] | None = None
    perf_event: str = ""

    @property
    def fn_name(self) -> str:
        """The program of ``bpf/perf_sample.bpf.c`` to attach: :data:`FN_WRITE` for stores, else :data:`FN_READ`."""
        return FN_WRITE if self.is_write else FN_READ

    def describe(self) -> str:
        """One line for logs and ``--help`` output, e.g. ``"mem-loads: Intel PEBS loads cpu/mem-loads,ldlat=30/P
        (type 4, config 0x1cd, config1 0x1e, precise_ip 3..1), 1 sample per 10007 events, user only"``."""
        what = {
            "software": "software",
            "pebs": "Intel PEBS",
            "ibs": "AMD IBS op",
            "spe": "ARM SPE",
            "raw": "raw",
        }.get(self.kind, self.kind)
        access = "stores" if self.is_write else ("loads" if self.kind == "pebs" else "")
        head = " ".join(p for p in (what, access, self.perf_event) if p)
        attr = [f"type {self.type}", f"config {self.config:#x}"]
        if self.config1:
            attr.append(f"config1 {self.config1:#x}")
        if self.config2:
            attr.append(f"config2 {self.config2:#x}")
        if self.precise_max and self.precise_ip > 1:
            attr.append(f"precise_ip {self.precise_ip}..1")
        elif self.precise_ip:
            attr.append(f"precise_ip {self.precise_ip}")
        parts = [f"{self.name}: {head} ({', '.join(attr)})"]
        if self.sampled:
            parts.append(f"1 sample per {self.sample_period} events")
        else:
            parts.append("every event (exact)")
        if self.exclude_kernel and not self.exclude_user:
            parts.append("user only")
        elif self.exclude_user and not self.exclude_kernel:
            parts.append("kernel only")
        if self.cpus is not None:
            parts.append(f"CPUs {format_list(self.cpus)}")
        return ", ".join(parts)

