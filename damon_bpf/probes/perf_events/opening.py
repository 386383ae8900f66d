"""Opening perf events: :func:`detect` (a trial ``perf_event_open``), :func:`attach` and :func:`detach`.

Every event is opened per CPU and system-wide (``pid=-1``); the BPF program keeps only samples of the target tgids
(``agg_targets``), which catches every thread of a target, including threads created later. The errno of a
refused ``perf_event_open`` becomes a reason (:data:`ERRNO_REASONS`, after perf_event_open(2) ERRORS), here only:
``damon-bpf features`` reports the same reasons through :func:`detect`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    NotSupportedError,
    PermissionDeniedError,
    ProbeAttachError,
)
from damon_bpf.linux import syscalls
from damon_bpf.linux.syscalls import errname
from damon_bpf.linux.sysctl import read_sysctl
from damon_bpf.linux.sysfs import parse_list
from damon_bpf.probes import _bcc
from damon_bpf.probes.perf_events.spec import SAMPLE_TYPE, SPE_REASON, EventSpec

__all__ = ("ERRNO_REASONS", "AttachedEvents", "attach", "detach", "detect")

logger = logging.getLogger(__name__)


@dataclass
class AttachedEvents:
    """The perf events :func:`attach` opened for one :class:`EventSpec`; pass it to :func:`detach`.

    :param spec: the event.
    :param fn_name: the program attached (:data:`FN_READ` or :data:`FN_WRITE`).
    :param fds: ``{cpu: perf event fd}``.
    :param precise_ip: the ``precise_ip`` the PMU accepted (lower than the spec's with modifier ``P``).
    :param pid: ``-1`` (system-wide per CPU) or the thread followed.
    """

    spec: EventSpec
    fn_name: str
    fds: dict[int, int]
    precise_ip: int
    pid: int = -1
    # private: set by detach(), which is a no-op afterwards (fd numbers are reused once closed).
    _detached: bool = field(default=False, repr=False)

    @property
    def cpus(self) -> tuple[int, ...]:
        """The CPUs with an open event."""
        return tuple(self.fds)

    @property
    def detached(self) -> bool:
        """Whether :func:`detach` closed the events."""
        return self._detached


_RETRY_PRECISE = (errno.EINVAL, errno.EOPNOTSUPP)
#: Why ``perf_event_open`` refused an event, by errno (perf_event_open(2) ERRORS); EACCES/EPERM are permissions.
ERRNO_REASONS = {
    errno.ENOENT: "the PMU does not know this event or precise mode (virtual machine?)",
    errno.EOPNOTSUPP: "the PMU cannot sample this event precisely (virtual machine?)",
    errno.EINVAL: "the PMU rejected the configuration (config, period or exclude_* bits)",
    errno.ENODATA: "the PMU needs the mem-loads-aux group leader",
    errno.EBUSY: "the PMU is busy (another user holds it)",
    errno.ENOSPC: "the PMU slot is taken (perf mem/c2c running?)",
    errno.ENODEV: "the PMU does not cover this CPU",
}


def _precise_levels(spec: EventSpec) -> list[int]:
    if spec.precise_max and spec.precise_ip > 1:
        return list(range(spec.precise_ip, 0, -1))
    return [spec.precise_ip]


def _fill(attr: Any, spec: EventSpec, precise_ip: int, *, pid: int = -1) -> Any:
    # Works on damon_bpf.linux.syscalls.PerfEventAttr and bcc's Perf.perf_event_attr (same names and layout).
    attr.type = spec.type
    attr.config = spec.config
    attr.config1 = spec.config1
    attr.config2 = spec.config2
    attr.sample_period = spec.sample_period
    attr.freq = 0
    attr.sample_type = SAMPLE_TYPE
    attr.precise_ip = precise_ip
    attr.exclude_kernel = int(spec.exclude_kernel)
    attr.exclude_user = int(spec.exclude_user)
    attr.exclude_hv = int(spec.exclude_kernel or spec.exclude_user)
    # No large PEBS: with wakeup_events=1 every PEBS record goes through the overflow handler, i.e. reaches BPF
    # (intel_pmu_hw_config() in arch/x86/events/intel/core.c).
    attr.wakeup_events = 0 if spec.kind == "software" else 1
    attr.inherit = int(pid > 0)
    return attr


def _paranoid() -> str:
    try:
        return read_sysctl("kernel.perf_event_paranoid")
    except (DamonBpfError, OSError):
        return "unknown"


def _permission_error(spec: EventSpec, detail: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"event {spec.name!r}: perf_event_open denied ({detail}): system-wide sampling needs root or "
        f"CAP_PERFMON (kernel.perf_event_paranoid={_paranoid()}; without them it must be -1 for CPU-wide events)"
    )


def _attr_text(spec: EventSpec, precise_ip: int) -> str:
    text = f"type {spec.type}, config {spec.config:#x}"
    if spec.config1:
        text += f", config1 {spec.config1:#x}"
    if spec.config2:
        text += f", config2 {spec.config2:#x}"
    return text + f", precise_ip {precise_ip}, period {spec.sample_period}"


def _open_error(spec: EventSpec, err_no: int, precise_ip: int, tried: list[int]) -> DamonBpfError:
    name = errname(err_no)
    if err_no in (errno.EACCES, errno.EPERM):
        return _permission_error(spec, name)
    reason = ERRNO_REASONS.get(err_no, os.strerror(err_no) if err_no else "unknown error")
    levels = f" (tried precise_ip {', '.join(map(str, tried))})" if len(tried) > 1 else ""
    prefix = "not supported by this CPU/kernel: " if err_no in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL) else ""
    return NotSupportedError(
        f"event {spec.name!r}: {prefix}perf_event_open({_attr_text(spec, precise_ip)}) failed with {name}: "
        f"{reason}{levels}"
    )


def _first_cpu(spec: EventSpec) -> int:
    cpus = _target_cpus(spec)
    return cpus[0] if cpus else 0


def detect(spec: EventSpec) -> int:
    """Test-open *spec* (disabled, system-wide on its first CPU) and close it again.

    With modifier ``P`` the levels from ``spec.precise_ip`` down to 1 are tried, as when attaching.

    :return: the ``precise_ip`` the kernel accepted.
    :raises NotSupportedError: the kernel refuses the event (``ENOENT``/``EOPNOTSUPP``/``EINVAL``: "not supported
        by this CPU/kernel: ..."), or it is ARM SPE, which BPF cannot read.
    :raises PermissionDeniedError: ``EACCES``/``EPERM`` (not root, ``kernel.perf_event_paranoid``).
    """
    if spec.kind == "spe":
        raise NotSupportedError(f"event {spec.name!r}: {SPE_REASON}")
    cpu = _first_cpu(spec)
    levels = _precise_levels(spec)
    tried: list[int] = []
    for level in levels:
        tried.append(level)
        attr = _fill(syscalls.PerfEventAttr(), spec, level)
        attr.disabled = 1
        try:
            fd = syscalls.perf_event_open(attr, pid=-1, cpu=cpu)
        except OSError as err:
            err_no = err.errno or 0
            if err_no in _RETRY_PRECISE and level != levels[-1]:
                continue
            raise _open_error(spec, err_no, level, tried) from err
        os.close(fd)
        return level
    raise AssertionError("unreachable: the last level returns or raises")


def _online_cpus() -> tuple[int, ...]:
    try:
        return parse_list(Path("/sys/devices/system/cpu/online").read_text())
    except (OSError, ValueError):
        return tuple(range(os.cpu_count() or 1))


def _target_cpus(spec: EventSpec) -> list[int]:
    online = _online_cpus()
    if spec.cpus is None:
        return list(online)
    return [c for c in online if c in set(spec.cpus)]


def _attach_error(spec: EventSpec, cpu: int, precise_ip: int, err: DamonBpfError, tried: list[int]) -> DamonBpfError:
    err_no = int(getattr(err, "errno", 0) or 0)
    if isinstance(err, PermissionDeniedError) or err_no in (errno.EACCES, errno.EPERM):
        exc: DamonBpfError = _permission_error(spec, f"{errname(err_no) if err_no else 'EPERM'} on CPU {cpu}")
    else:
        reason = ERRNO_REASONS.get(err_no, "")
        levels = f" (tried precise_ip {', '.join(map(str, tried))})" if len(tried) > 1 else ""
        exc = ProbeAttachError(
            f"event {spec.name!r}: cannot attach {spec.fn_name} to perf event ({_attr_text(spec, precise_ip)}) "
            f"on CPU {cpu}{': ' + reason if reason else ''}{levels}; {err}"
        )
    exc.errno = err_no  # type: ignore[attr-defined]
    return exc


def attach(bpf: _bcc.BccBPF, spec: EventSpec, pid: int = -1) -> AttachedEvents:
    """Open *spec* on every online CPU it covers and attach :attr:`EventSpec.fn_name` of *bpf* to each event.

    *bpf* is a compiled ``bpf/perf_sample.bpf.c`` (:func:`damon_bpf.probes.compile_bpf`). The events sample with
    a fixed period (never frequency mode), ``sample_type`` = :data:`SAMPLE_TYPE`, and are enabled on return.

    :param pid: ``-1`` (default): system-wide per CPU; the BPF program keeps the target tgids (``agg_targets``),
        which covers every thread of a target, including later ones. A pid > 0 follows that thread and, with
        ``inherit``, the threads and children it creates afterwards (not its existing siblings).
    :return: the open events; close them with :func:`detach`.
    :raises NotSupportedError: ARM SPE, or no online CPU that the event's PMU covers.
    :raises ProbeAttachError: ``perf_event_open`` or attaching the program failed (reason and errno in the
        message; ``errno`` attribute). With modifier ``P``, lower ``precise_ip`` levels were tried first.
    :raises PermissionDeniedError: not root / ``kernel.perf_event_paranoid``.
    :raises InvalidParamsError: *pid* is 0 or below -1.
    """
    if spec.kind == "spe":
        raise NotSupportedError(f"event {spec.name!r}: {SPE_REASON}")
    if pid == 0 or pid < -1:
        raise InvalidParamsError(f"pid must be -1 (all tasks) or a thread id, not {pid}")
    bcc = _bcc.load_bcc()
    cpus = _target_cpus(spec)
    if not cpus:
        raise NotSupportedError(f"event {spec.name!r}: none of the CPUs of PMU {spec.pmu} is online")
    fn_name = spec.fn_name
    levels = _precise_levels(spec)
    tried: list[int] = []
    fds: dict[int, int] = {}
    try:
        attr: Any = None
        precise = levels[-1]
        for level in levels:
            tried.append(level)
            attr = _fill(bcc.Perf.perf_event_attr(), spec, level, pid=pid)
            try:
                fds.update(_bcc.attach_perf_event_raw(bpf, fn_name, attr, pid=pid, cpu=cpus[0]))
            except (ProbeAttachError, PermissionDeniedError) as err:
                err_no = int(getattr(err, "errno", 0) or 0)
                if isinstance(err, ProbeAttachError) and err_no in _RETRY_PRECISE and level != levels[-1]:
                    logger.debug("%s: precise_ip %d refused (%s)", spec.name, level, errname(err_no))
                    continue
                raise _attach_error(spec, cpus[0], level, err, tried) from err
            precise = level
            break
        for cpu in cpus[1:]:
            try:
                fds.update(_bcc.attach_perf_event_raw(bpf, fn_name, attr, pid=pid, cpu=cpu))
            except (ProbeAttachError, PermissionDeniedError) as err:
                raise _attach_error(spec, cpu, precise, err, [precise]) from err
    except BaseException:
        with contextlib.suppress(DamonBpfError):
            _bcc.detach_perf_event_raw(bpf, fds)
        raise
    logger.debug("%s: %s attached on CPUs %s (precise_ip %d)", spec.name, fn_name, list(fds), precise)
    return AttachedEvents(spec=spec, fn_name=fn_name, fds=fds, precise_ip=precise, pid=pid)


def detach(bpf: _bcc.BccBPF, attached: AttachedEvents) -> None:
    """Close the events of *attached* (a no-op the second time).

    :raises ProbeAttachError: closing an fd failed (the others are closed anyway).
    """
    if attached._detached:
        return
    try:
        _bcc.detach_perf_event_raw(bpf, attached.fds)
    finally:
        attached._detached = True

