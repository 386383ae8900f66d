"""Read-only view of the perf event sources in sysfs: ``/sys/bus/event_source/devices/<pmu>/{type,cpus,events/*,
format/*,caps/*}``.

The one reader of the PMU sysfs files, used by the event grammar, the default events and the ``pmu/*`` rows of
``damon-bpf features``; counterpart of perf's ``tools/perf/util/pmu.c``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from damon_bpf.errors import NotSupportedError
from damon_bpf.linux.sysfs import parse_list

__all__ = ("CORE_PMUS", "Pmus")

#: Core PMUs: ``cpu``, and ``cpu_core``/``cpu_atom`` on hybrid Intel.
CORE_PMUS = ("cpu", "cpu_core", "cpu_atom")


class Pmus:
    """The perf event sources under one sysfs root (``<sysfs_root>/bus/event_source/devices``).

    The readers return None (or an empty list) for what is absent or unreadable; only :meth:`type` raises.
    """

    def __init__(self, sysfs_root: str | os.PathLike[str] = "/sys") -> None:
        self.devices = Path(sysfs_root, "bus", "event_source", "devices")

    def read(self, *parts: str) -> str | None:
        """The stripped text of ``devices/<parts...>``, or None."""
        try:
            return self.devices.joinpath(*parts).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def has(self, pmu: str) -> bool:
        """Whether PMU *pmu* exists (has a ``type`` file)."""
        return (self.devices / pmu / "type").is_file()

    def type(self, pmu: str) -> int:
        """``perf_event_attr.type`` of *pmu*.

        :raises NotSupportedError: the ``type`` file is missing or not a number.
        """
        text = self.read(pmu, "type")
        try:
            return int(text or "", 0)
        except ValueError:
            raise NotSupportedError(f"{self.devices / pmu / 'type'} is unreadable or not a number") from None

    def names(self) -> list[str]:
        """Every PMU, sorted."""
        if not self.devices.is_dir():
            return []
        return sorted(p.name for p in self.devices.iterdir() if (p / "type").is_file())

    def core(self) -> list[str]:
        """The core PMUs present, in :data:`CORE_PMUS` order."""
        return [p for p in CORE_PMUS if self.has(p)]

    def spe(self) -> list[str]:
        """The ARM SPE PMUs (``arm_spe_0``...)."""
        return [p for p in self.names() if p.startswith("arm_spe")]

    def by_type(self, pmu_type: int) -> str | None:
        """The PMU whose ``type`` is *pmu_type*, or None."""
        for name in self.names():
            with contextlib.suppress(NotSupportedError):
                if self.type(name) == pmu_type:
                    return name
        return None

    def alias(self, pmu: str, event: str) -> str | None:
        """The terms of event alias ``<pmu>/events/<event>`` (``"event=0xcd,umask=0x1,ldlat=3"``), or None."""
        if "/" in event or event.startswith("."):
            return None
        return self.read(pmu, "events", event)

    def format(self, pmu: str, term: str) -> str | None:
        """The bit spec of format term ``<pmu>/format/<term>`` (``"config1:0-15"``), or None."""
        if "/" in term or term.startswith("."):
            return None
        return self.read(pmu, "format", term)

    def formats(self, pmu: str) -> list[str]:
        """The format terms of *pmu*, sorted."""
        path = self.devices / pmu / "format"
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def cpus(self, pmu: str) -> tuple[int, ...] | None:
        """The CPUs *pmu* counts on, or None for every CPU.

        Only hybrid core PMUs have ``cpus`` (cpu_core: ``"0-15"``, cpu_atom: ``"16-23"``).
        """
        text = self.read(pmu, "cpus")
        if not text:
            return None
        try:
            return parse_list(text)
        except ValueError:
            return None

    def cap(self, pmu: str, name: str) -> str | None:
        """Capability ``<pmu>/caps/<name>`` (``max_precise``, ``pmu_name``, ``zen4_ibs_extensions``), or None."""
        if "/" in name or name.startswith("."):
            return None
        return self.read(pmu, "caps", name)

    def max_precise(self, pmu: str) -> int | None:
        """``caps/max_precise``; None on kernels before 5.x and on non-core PMUs."""
        text = self.cap(pmu, "max_precise")
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def pmu_name(self, pmu: str) -> str:
        """``caps/pmu_name`` (``"skylake"``), or ``""``."""
        return self.cap(pmu, "pmu_name") or ""

    def no_core_reason(self, what: str = "cpu PMU") -> str | None:
        """Why this machine has no core PMU (no perf events, or a virtual machine without vPMU), or None."""
        if not self.devices.is_dir():
            return f"no PMU: {self.devices} does not exist (kernel without perf events?)"
        if not self.core():
            return f"no hardware PMU: {self.devices} has no {what} (virtual machine without vPMU?)"
        return None
