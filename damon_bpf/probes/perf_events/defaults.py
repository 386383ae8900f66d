"""Which hardware events this machine can sample data addresses with, and the events of ``--source perf`` without
``--event``: ``perf mem record``'s choice (``tools/perf/arch/x86/util/mem-events.c``), else software page faults.

:func:`check_hardware_events` is the one decision: :func:`hardware_sampling_status` (and so ``--source auto``)
and the ``pmu/*`` rows of ``damon-bpf features`` both call it.
"""

from __future__ import annotations

import os

from damon_bpf.errors import NotSupportedError, PermissionDeniedError
from damon_bpf.linux.syscalls import PERF_COUNT_SW_PAGE_FAULTS, PERF_TYPE_SOFTWARE
from damon_bpf.probes.perf_events.grammar import parse_event
from damon_bpf.probes.perf_events.opening import detect
from damon_bpf.probes.perf_events.pmus import Pmus
from damon_bpf.probes.perf_events.spec import DEFAULT_SOFTWARE_PERIOD, SPE_REASON, EventSpec

__all__ = ("check_hardware_events", "default_events", "hardware_sampling_status")

_FALLBACK = "falling back to software page faults, which only see first touches and refaults, not every access"


def check_hardware_events(
    text: str, sysfs_root: str | os.PathLike[str] = "/sys", *, probe: bool = True
) -> list[tuple[EventSpec, int | None]]:
    """Parse the hardware events *text* (``"mem"``, ``"mem-loads"``, ``"ibs_op"``...) and test-open each.

    :param probe: test-open each event (:func:`~damon_bpf.probes.perf_events.opening.detect`); False decides from
        sysfs alone (for a fake *sysfs_root*).
    :return: ``(spec, precise_ip the kernel accepted)`` per event; the level is None without *probe*.
    :raises NotSupportedError: no such PMU or event, a PMU without PEBS (``caps/max_precise`` = 0), or the kernel
        refuses the event; the message says why (without the ``event 'TEXT': `` prefix of the parser).
    :raises PermissionDeniedError: ``perf_event_open`` was denied (not root, ``kernel.perf_event_paranoid``).
    """
    pmus = Pmus(sysfs_root)
    checked: list[tuple[EventSpec, int | None]] = []
    try:
        for spec in parse_event(text, sysfs_root=sysfs_root):
            if spec.kind == "pebs" and pmus.max_precise(spec.pmu) == 0:
                raise NotSupportedError(f"{spec.pmu} PMU reports caps/max_precise=0: no PEBS (virtual machine?)")
            checked.append((spec, detect(spec) if probe else None))
    except (NotSupportedError, PermissionDeniedError) as err:
        # The reason without "event 'mem': ": the caller names what it checked.
        prefix = f"event {text!r}: "
        if str(err).startswith(prefix):
            raise type(err)(str(err)[len(prefix) :]) from err
        raise
    return checked


def _software_default() -> list[EventSpec]:
    return [
        EventSpec(
            name="page-faults",
            type=PERF_TYPE_SOFTWARE,
            config=PERF_COUNT_SW_PAGE_FAULTS,
            config1=0,
            precise_ip=0,
            sample_period=DEFAULT_SOFTWARE_PERIOD,
            is_write=False,
            kind="software",
            sampled=False,
            exclude_kernel=False,
            perf_event="page-faults",
        )
    ]


def _choose(sysfs_root: str | os.PathLike[str], probe: bool) -> tuple[list[EventSpec], bool, str]:
    try:
        specs = [spec for spec, _ in check_hardware_events("mem", sysfs_root, probe=probe)]
    except (NotSupportedError, PermissionDeniedError) as err:
        reason = str(err)
        spe = Pmus(sysfs_root).spe()
        if spe:
            reason += f"; {spe[0]} is present, but {SPE_REASON}"
        return _software_default(), False, f"{reason}: {_FALLBACK}"
    kinds = {s.kind for s in specs}
    label = "Intel PEBS" if "pebs" in kinds else "AMD IBS op"
    events = " + ".join(s.perf_event for s in specs)
    periods = sorted({s.sample_period for s in specs})
    what = "" if probe else " (not test-opened)"
    return (
        specs,
        True,
        f"{label}: {events}, 1 sample per {'/'.join(map(str, periods))} events, with data addresses{what}",
    )


def default_events(sysfs_root: str | os.PathLike[str] = "/sys", *, probe: bool = True) -> list[EventSpec]:
    """The events of ``--source perf`` without ``--event``: hardware data-address sampling when this machine
    has it (Intel PEBS mem-loads + mem-stores, AMD IBS op), else software page faults (exact events).

    ARM SPE is never chosen: its samples go to an AUX buffer that BPF cannot read.

    :param probe: test-open each hardware event (:func:`~damon_bpf.probes.perf_events.opening.detect`) and fall
        back when the kernel refuses it; False decides from sysfs alone (for a fake *sysfs_root*).
    """
    return _choose(sysfs_root, probe)[0]


def hardware_sampling_status(
    sysfs_root: str | os.PathLike[str] = "/sys", *, probe: bool = True
) -> tuple[bool, str]:
    """Whether :func:`default_events` samples with hardware, and why (or why not).

    :return: ``(True, "Intel PEBS: cpu/mem-loads,ldlat=30/P + cpu/mem-stores/P, ...")`` or ``(False, "no
        hardware PMU: ... (virtual machine without vPMU?) ...: falling back to software page faults, ...")``.
    """
    _, hardware, reason = _choose(sysfs_root, probe)
    return hardware, reason
