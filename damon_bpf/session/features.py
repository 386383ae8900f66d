"""What this machine supports, found by feature probing: the table behind ``damon-bpf features``.

Counterpart of damo's ``_damon_features.py`` (a named feature table) and of the kernel's habit of probing for a
capability instead of comparing versions: every check tries the syscall, opens the file or compiles and attaches
the program, and never looks at ``uname -r`` to decide. Names are ``<area>/<feature>``.

Each check returns a :class:`Feature`; a check never raises (an unexpected exception becomes ``supported=False``
with the exception text as reason). :func:`require` turns a missing feature into the matching
:class:`~damon_bpf.errors.DamonBpfError`.

The file system roots (:data:`PROC_ROOT`, :data:`SYS_ROOT`, :data:`MODULES_ROOT`) are module constants read at
call time, so tests can point them at a fake tree.

The syscalls themselves (``bpf``, ``perf_event_open``, ``pidfd_open``, ``process_madvise``) are
:mod:`damon_bpf.linux.syscalls`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from damon_bpf import probes
from damon_bpf.linux import syscalls
from damon_bpf.linux.syscalls import (
    MADV_COLD,
    PERF_COUNT_SW_PAGE_FAULTS,
    PERF_SAMPLE_ADDR,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
    errname,
)
from damon_bpf.linux.sysfs import parse_list, place_pmu_format
from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    MissingDependencyError,
    NotSupportedError,
    PermissionDeniedError,
)

__all__ = (
    "MODULES_ROOT",
    "PROC_ROOT",
    "SYS_ROOT",
    "Feature",
    "check",
    "check_all",
    "names",
    "require",
)

logger = logging.getLogger(__name__)

#: Root of procfs; tests point it at a fake tree.
PROC_ROOT = "/proc"
#: Root of sysfs; tests point it at a fake tree.
SYS_ROOT = "/sys"
#: Where kernel modules and the ``build``/``source`` header links live.
MODULES_ROOT = "/lib/modules"


@dataclass(slots=True)
class Feature:
    """One row of the feature table.

    :param name: ``<area>/<feature>``, e.g. ``"probe/perf_sw_page_faults_addr"``.
    :param supported: whether damon-bpf can use it on this machine now.
    :param reason: why not (empty when supported).
    :param detail: a short note when supported (value, version, path).
    """

    name: str
    supported: bool
    reason: str = ""
    detail: str = ""
    # private: the error :func:`require` raises when unsupported.
    _error: type[DamonBpfError] = field(default=NotSupportedError, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """``{"name", "supported", "reason", "detail"}``, the ``--json`` shape."""
        return {"name": self.name, "supported": self.supported, "reason": self.reason, "detail": self.detail}


_BPF_MAP_CREATE = 0  # enum bpf_cmd, include/uapi/linux/bpf.h
_BPF_MAP_TYPE_ARRAY = 2  # enum bpf_map_type


# ---------------------------------------------------------------------------------------------------------------
# Registry and shared state of one pass
# ---------------------------------------------------------------------------------------------------------------

_CheckFn = Callable[["_Run"], str]
# name -> check function, in table order. A check returns the detail string when the feature is supported and
# raises a DamonBpfError subclass (message = reason) when it is not.
_CHECKS: dict[str, _CheckFn] = {}

_PERF_MAX_ENTRIES = 4096
_NR_TOUCH_PAGES = 16


def _feature(name: str) -> Callable[[_CheckFn], _CheckFn]:
    def register(fn: _CheckFn) -> _CheckFn:
        if name in _CHECKS:
            raise ValueError(f"duplicate feature {name}")
        _CHECKS[name] = fn
        return fn

    return register


class _Run:
    # State shared by the checks of one check()/check_all() call: the feature probe program is compiled once
    # (BCC needs ~1-2 s for it) and closed at the end.

    def __init__(self) -> None:
        self._bpf: probes.BccBPF | None = None
        self._bpf_error: DamonBpfError | None = None
        self.compile_ms = 0.0

    def feature_probe(self) -> probes.BccBPF:
        if self._bpf is not None:
            return self._bpf
        if self._bpf_error is not None:
            raise type(self._bpf_error)(str(self._bpf_error))
        try:
            _bpf_map_create()  # fails fast (EPERM, ENOSYS) before a compile that cannot be loaded
            start = time.monotonic()
            self._bpf = probes.compile_bpf(
                "feature_probe", [f"-DTARGET_TGID={os.getpid()}", f"-DMAX_ENTRIES={_PERF_MAX_ENTRIES}"]
            )
            self.compile_ms = (time.monotonic() - start) * 1000
        except DamonBpfError as err:
            self._bpf_error = err
            raise
        return self._bpf

    def close(self) -> None:
        if self._bpf is not None:
            probes.close_bpf(self._bpf)
            self._bpf = None


def names() -> tuple[str, ...]:
    """Names of all features, in table order."""
    return tuple(_CHECKS)


def _run_check(name: str, run: _Run) -> Feature:
    start = time.monotonic()
    try:
        detail = _CHECKS[name](run)
        feat = Feature(name, True, detail=detail)
    except DamonBpfError as err:
        # require() raises NotSupportedError (MissingDependencyError) or PermissionDeniedError only; a
        # ProbeLoadError or ProbeAttachError behind a "no" is reported as not supported.
        error = type(err) if isinstance(err, (NotSupportedError, PermissionDeniedError)) else NotSupportedError
        feat = Feature(name, False, reason=str(err) or type(err).__name__, _error=error)
    except Exception as err:  # a check must never raise
        logger.debug("feature check %s failed", name, exc_info=True)
        feat = Feature(name, False, reason=f"{type(err).__name__}: {err}")
    logger.debug("%s: %s in %.0f ms", name, feat.supported, (time.monotonic() - start) * 1000)
    return feat


def check_all(selected: Iterable[str] | None = None) -> list[Feature]:
    """Run every check (or the *selected* ones, in table order).

    Never raises for a failing check; takes a few seconds because one BPF program is compiled.

    :raises InvalidParamsError: a selected name is unknown.
    """
    wanted = set(_CHECKS) if selected is None else set(selected)
    unknown = wanted - set(_CHECKS)
    if unknown:
        raise InvalidParamsError(f"unknown feature(s): {', '.join(sorted(unknown))}; known: {', '.join(_CHECKS)}")
    run = _Run()
    try:
        return [_run_check(name, run) for name in _CHECKS if name in wanted]
    finally:
        run.close()


def check(name: str) -> Feature:
    """Run one check.

    :raises InvalidParamsError: *name* is unknown.
    """
    return check_all([name])[0]


def require(name: str) -> Feature:
    """Check *name* and raise unless it is supported.

    :return: the supported feature (its ``detail``).
    :raises MissingDependencyError: a package is missing (bcc, pyroute2, perf).
    :raises PermissionDeniedError: the check needs privileges the caller lacks.
    :raises NotSupportedError: otherwise; the message is the reason.
    """
    feat = check(name)
    if not feat.supported:
        raise feat._error(f"{name}: {feat.reason}")
    return feat


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def _proc(*parts: str) -> Path:
    return Path(PROC_ROOT, *parts)


def _sys(*parts: str) -> Path:
    return Path(SYS_ROOT, *parts)


def _read(path: Path) -> str:
    return path.read_text().strip()


def _sysctl(name: str) -> str | None:
    # kernel.foo.bar -> /proc/sys/kernel/foo/bar; None when the sysctl does not exist.
    path = _proc("sys", *name.split("."))
    try:
        return _read(path)
    except FileNotFoundError:
        return None


def _bpf_map_create() -> None:
    # BPF_MAP_CREATE of a 1-entry array map. union bpf_attr starts with map_type, key_size, value_size,
    # max_entries, map_flags (u32 each); the kernel zero-fills the attr beyond the size we pass.
    attr = (ctypes.c_uint32 * 5)(_BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0)
    try:
        fd = syscalls.bpf(_BPF_MAP_CREATE, attr)
    except PermissionDeniedError as err:
        raise PermissionDeniedError(f"needs root or CAP_BPF (bpf() returned {errname(err.errno or 0)})") from err
    except OSError as err:
        if err.errno == errno.ENOSYS:
            raise NotSupportedError("no bpf() syscall (kernel built without CONFIG_BPF_SYSCALL)") from err
        raise NotSupportedError(f"bpf(BPF_MAP_CREATE) failed: {err.strerror} ({errname(err.errno or 0)})") from err
    os.close(fd)


@contextlib.contextmanager
def _fresh_pages(nr_pages: int) -> Iterator[tuple[int, int, Callable[[], None]]]:
    # A private anonymous mapping that has never been touched; yields (start, end, touch) where touch() writes
    # one byte per page, i.e. causes one page fault per page in the calling thread.
    size = nr_pages * mmap.PAGESIZE
    mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = (ctypes.c_char * size).from_buffer(mem)
    try:
        start = ctypes.addressof(view)

        def touch() -> None:
            for off in range(0, size, mmap.PAGESIZE):
                mem[off] = 1

        yield start, start + size, touch
    finally:
        del view
        mem.close()


# ---------------------------------------------------------------------------------------------------------------
# bpf/*
# ---------------------------------------------------------------------------------------------------------------


@_feature("bpf/syscall")
def _check_bpf_syscall(run: _Run) -> str:
    _bpf_map_create()
    return "BPF_MAP_CREATE of an array map works"


@_feature("bpf/jit")
def _check_bpf_jit(run: _Run) -> str:
    value = _sysctl("net.core.bpf_jit_enable")
    if value is None:
        raise NotSupportedError("no net.core.bpf_jit_enable: kernel built without CONFIG_BPF_JIT")
    if value == "0":
        raise NotSupportedError("JIT off (net.core.bpf_jit_enable=0): programs run in the slower interpreter")
    return f"net.core.bpf_jit_enable={value}" + (" (with debug output)" if value == "2" else "")


@_feature("bpf/btf")
def _check_bpf_btf(run: _Run) -> str:
    path = _sys("kernel", "btf", "vmlinux")
    if not path.is_file():
        raise NotSupportedError(f"no {path}: kernel built without CONFIG_DEBUG_INFO_BTF")
    return f"{path} ({path.stat().st_size / (1 << 20):.1f} MiB)"


@_feature("bpf/stats")
def _check_bpf_stats(run: _Run) -> str:
    value = _sysctl("kernel.bpf_stats_enabled")
    if value is None:
        raise NotSupportedError("no kernel.bpf_stats_enabled sysctl: per-program run time is not available")
    return f"kernel.bpf_stats_enabled={value} ({'on' if value == '1' else 'off'})"


# ---------------------------------------------------------------------------------------------------------------
# bcc/*
# ---------------------------------------------------------------------------------------------------------------


@_feature("bcc/import")
def _check_bcc_import(run: _Run) -> str:
    try:
        bcc = probes.load_bcc()
    except MissingDependencyError as err:
        raise MissingDependencyError("python3-bpfcc is not installed (apt install python3-bpfcc)") from err
    return f"bcc {getattr(bcc, '__version__', '(unknown version)')}"


@_feature("bcc/headers")
def _check_bcc_headers(run: _Run) -> str:
    release = os.uname().release
    headers = probes.find_kernel_headers(release, modules_root=MODULES_ROOT, sys_root=SYS_ROOT)
    if headers is None:
        raise NotSupportedError(
            f"no kernel headers: {MODULES_ROOT}/{release}/build lacks include/linux/kconfig.h and "
            f"{SYS_ROOT}/kernel/kheaders.tar.xz is absent (apt install linux-headers-{release})"
        )
    if headers.origin == "kheaders":
        return f"{headers.path} (CONFIG_IKHEADERS; bcc unpacks it)"
    if headers.exact:
        return f"exact: {headers.path}"
    # Good enough for tracepoint and perf-event programs, which use no kernel struct layouts.
    return f"linked fallback: build -> {Path(headers.link_target).name} (not {release})"


@_feature("bcc/compile")
def _check_bcc_compile(run: _Run) -> str:
    bpf = run.feature_probe()
    for fn_name, prog_type in (
        ("on_page_fault_perf", probes.ProgType.PERF_EVENT),
        ("on_page_fault_user_raw", probes.ProgType.RAW_TRACEPOINT),
        ("on_page_fault_user", probes.ProgType.TRACEPOINT),
    ):
        probes.load_program(bpf, fn_name, prog_type)
    return f"feature_probe.bpf.c: compiled in {run.compile_ms:.0f} ms, 3 programs loaded"


# ---------------------------------------------------------------------------------------------------------------
# probe/*
# ---------------------------------------------------------------------------------------------------------------


def _tracefs() -> Path | None:
    # The same order as bcc (TRACEFS in src/python/bcc/__init__.py, libbpf.c): debugfs first.
    for path in (_sys("kernel", "debug", "tracing"), _sys("kernel", "tracing")):
        if (path / "events").is_dir():
            return path
    return None


@_feature("probe/tracefs")
def _check_tracefs(run: _Run) -> str:
    path = _tracefs()
    if path is None:
        raise NotSupportedError(
            "not mounted (mount -t tracefs nodev /sys/kernel/tracing); only raw tracepoints can be attached"
        )
    return str(path)


def _tracepoint_field_offset(fmt: str, name: str) -> int | None:
    # "\tfield:unsigned long address;\toffset:8;\tsize:8;\tsigned:0;" -> 8
    for line in fmt.splitlines():
        parts = [p.strip() for p in line.strip().split(";")]
        if parts and parts[0].startswith("field:") and parts[0].split()[-1] == name:
            for p in parts[1:]:
                if p.startswith("offset:"):
                    return int(p[len("offset:") :])
    return None


def _count_in_range(addrs: dict[int, int], start: int, end: int) -> tuple[int, int]:
    # (distinct pages of [start, end) seen, total events)
    pages = {a // mmap.PAGESIZE for a in addrs if start <= a < end}
    return len(pages), sum(addrs.values())


@_feature("probe/tracepoint_page_fault_user")
def _check_tracepoint_page_fault_user(run: _Run) -> str:
    bpf = run.feature_probe()
    tracefs = _tracefs()
    if tracefs is not None:
        event = tracefs / "events" / "exceptions" / "page_fault_user"
        if not event.is_dir():
            raise NotSupportedError(f"no tracepoint exceptions:page_fault_user in {tracefs}/events (x86 only)")
        offset = _tracepoint_field_offset((event / "format").read_text(), "address")
        if offset != 8:  # struct page_fault_user_args in bpf/feature_probe.bpf.c
            raise NotSupportedError(f"exceptions:page_fault_user has 'address' at offset {offset}, expected 8")
        how = "tracepoint via tracefs"

        def attach() -> Callable[[], None]:
            probes.attach_tracepoint(bpf, "exceptions:page_fault_user", "on_page_fault_user")
            return lambda: probes.detach_tracepoint(bpf, "exceptions:page_fault_user")

    else:
        how = "raw tracepoint (no tracefs)"

        def attach() -> Callable[[], None]:
            try:
                probes.attach_raw_tracepoint(bpf, "page_fault_user", "on_page_fault_user_raw")
            except DamonBpfError as err:
                if getattr(err, "errno", 0) == errno.ENOENT:
                    raise NotSupportedError("no tracepoint page_fault_user in this kernel (x86 only)") from err
                raise
            return lambda: probes.detach_raw_tracepoint(bpf, "page_fault_user")

    probes.map_clear(bpf, "tp_addrs")
    with _fresh_pages(_NR_TOUCH_PAGES) as (start, end, touch):
        detach = attach()
        try:
            touch()
        finally:
            detach()
        seen, total = _count_in_range(probes.map_items(bpf, "tp_addrs"), start, end)
    if not seen:
        raise NotSupportedError(
            f"attached as {how}, but none of {_NR_TOUCH_PAGES} touched pages was seen ({total} events)"
        )
    return f"{how}: saw {seen}/{_NR_TOUCH_PAGES} touched pages"


@_feature("probe/perf_sw_page_faults_addr")
def _check_perf_sw_page_faults_addr(run: _Run) -> str:
    bpf = run.feature_probe()
    probes.map_clear(bpf, "perf_addrs")
    # The event follows the calling thread (perf_event_open pid = tid); the program filters on TARGET_TGID.
    with _fresh_pages(_NR_TOUCH_PAGES) as (start, end, touch):
        probes.attach_perf_event(
            bpf,
            "on_page_fault_perf",
            ev_type=PERF_TYPE_SOFTWARE,
            ev_config=PERF_COUNT_SW_PAGE_FAULTS,
            sample_period=1,
            pid=threading.get_native_id(),
        )
        try:
            touch()
        finally:
            probes.detach_perf_event(bpf, ev_type=PERF_TYPE_SOFTWARE, ev_config=PERF_COUNT_SW_PAGE_FAULTS)
        seen, total = _count_in_range(probes.map_items(bpf, "perf_addrs"), start, end)
    if not total:
        raise NotSupportedError("attached, but the page-faults software event delivered no sample")
    if not seen:
        raise NotSupportedError(f"{total} samples, but ctx->addr never fell in the {_NR_TOUCH_PAGES} touched pages")
    return f"ctx->addr hit {seen}/{_NR_TOUCH_PAGES} touched pages"


_NR_PTE_PAGES = 512
_PM_PFN_MASK = (1 << 55) - 1


@_feature("probe/pte_accessed_bit")
def _check_pte_accessed_bit(run: _Run) -> str:
    # The pte source's primitive on the monitor's own memory: the BPF page-table walk must find the PFNs that
    # /proc/self/pagemap shows for every touched page, clear_refs must clear their Accessed bits and a touch
    # must set them again.
    from damon_bpf.probes import pte

    layout = pte.PagingLayout.detect(PROC_ROOT)
    offsets = pte.PteOffsets.from_btf()
    import numpy as np

    with pte.PteWalker(pte.PteWalkConfig(offsets=offsets, layout=layout)) as walker, \
            _fresh_pages(_NR_PTE_PAGES) as (start, end, touch):
        touch()
        addrs = np.arange(start, end, mmap.PAGESIZE, dtype=np.uint64)
        mem_fd = os.open(str(_proc("self", "mem")), os.O_RDONLY | os.O_CLOEXEC)
        try:
            t0 = time.perf_counter_ns()
            status, res = walker.walk(mem_fd, addrs)
            walk_ns = (time.perf_counter_ns() - t0) / addrs.size
            if status != pte.WalkStatus.OK:
                raise NotSupportedError(f"the page-table walk failed (status {status})")
            with open(_proc("self", "pagemap"), "rb") as pm:
                pm.seek(start // mmap.PAGESIZE * 8)
                raw = np.frombuffer(pm.read(addrs.size * 8), dtype=np.uint64)
            pfns = (raw & np.uint64(_PM_PFN_MASK)).astype(np.int64)
            found = (pte.result_phys(res) >> np.uint64(12)).astype(np.int64)
            present = (res & np.uint64(pte.R_PRESENT)) != 0
            same = int(np.count_nonzero(present & (found == pfns) & (pfns != 0)))
            if same != addrs.size:
                raise NotSupportedError(
                    f"the walk found the pagemap PFN for {same}/{addrs.size} pages (direct map base "
                    f"{layout.direct_map_base:#x}, {layout.levels}-level paging): the layout is not what it assumes")
            with open(_proc("self", "clear_refs"), "w") as f:
                f.write("1")
            _, after_clear = walker.walk(mem_fd, addrs)
            touch()
            _, after_touch = walker.walk(mem_fd, addrs)
        finally:
            os.close(mem_fd)
    acc = np.uint64(pte.R_ACCESSED)
    nr_cleared = int(np.count_nonzero((after_clear & acc) == 0))
    nr_set = int(np.count_nonzero((after_touch & acc) != 0))
    if nr_set < addrs.size * 9 // 10 or nr_cleared < addrs.size * 9 // 10:
        raise NotSupportedError(f"Accessed bits do not follow clear_refs and touches ({nr_cleared}/{addrs.size} "
                                f"cleared, {nr_set}/{addrs.size} set again)")
    return (f"{same}/{addrs.size} PFNs = pagemap ({layout.levels}-level, direct map {layout.direct_map_base:#x}"
            f"{', page_offset_base' if layout.direct_map_base_ptr else ''}); Accessed bits cleared "
            f"{nr_cleared}/{addrs.size}, set again {nr_set}/{addrs.size}; {walk_ns:.0f} ns/page")


# ---------------------------------------------------------------------------------------------------------------
# pmu/*
# ---------------------------------------------------------------------------------------------------------------

_CORE_PMUS = ("cpu", "cpu_core", "cpu_atom")  # cpu_core/cpu_atom on hybrid Intel


def _event_sources() -> Path:
    return _sys("bus", "event_source", "devices")


def _no_core_pmu_reason(what: str = "cpu PMU") -> str | None:
    devices = _event_sources()
    if not devices.is_dir():
        return f"no PMU: {devices} does not exist (kernel without perf events?)"
    if not any((devices / p).is_dir() for p in _CORE_PMUS):
        return f"no hardware PMU: {devices} has no {what} (virtual machine without vPMU?)"
    return None


def _pmu_event_attr(pmu: Path, event: str) -> tuple[PerfEventAttr, str]:
    # Build the attr for sysfs event alias <pmu>/events/<event> ("event=0xcd,umask=0x1,ldlat=3").
    text = _read(pmu / "events" / event)
    attr = PerfEventAttr()
    attr.type = int(_read(pmu / "type"))
    words = {"config": 0, "config1": 0, "config2": 0}
    for term in text.split(","):
        key, _, val = term.strip().partition("=")
        place_pmu_format(words, _read(pmu / "format" / key), int(val or "1", 0), f"{pmu.name}/format/{key}")
    attr.config, attr.config1, attr.config2 = words["config"], words["config1"], words["config2"]
    return attr, text


def _first_cpu(pmu: Path) -> int:
    # cpu_core/cpu_atom only count on their own CPUs ("cpus" file, e.g. "0-15"); others on any CPU.
    for name in ("cpus", "cpumask"):
        with contextlib.suppress(OSError, ValueError):
            cpus = parse_list(_read(pmu / name))
            if cpus:
                return cpus[0]
    return 0


def _perf_open_reason(err: OSError, what: str) -> DamonBpfError:
    # errno of a trial perf_event_open -> error with a precise reason (perf_event_open(2) ERRORS).
    e = err.errno or 0
    name = errname(e)
    if e in (errno.EACCES, errno.EPERM):
        paranoid = _sysctl("kernel.perf_event_paranoid")
        return PermissionDeniedError(
            f"{what}: perf_event_open denied ({name}): needs root or CAP_PERFMON "
            f"(kernel.perf_event_paranoid={paranoid})"
        )
    reasons = {
        errno.ENOENT: "the PMU does not know this event or precise mode (virtual machine?)",
        errno.EOPNOTSUPP: "the PMU cannot sample this event precisely (virtual machine?)",
        errno.EINVAL: "the PMU rejected the configuration",
        errno.ENODATA: "the PMU needs the mem-loads-aux group leader",
        errno.EBUSY: "the PMU is busy (another user holds it)",
        errno.ENOSPC: "the PMU slot is taken (perf mem/c2c running?)",
        errno.ENODEV: "the PMU does not cover this CPU",
    }
    return NotSupportedError(f"{what}: perf_event_open failed ({name}): {reasons.get(e, err.strerror)}")


def _trial_open(attr: PerfEventAttr, cpu: int, what: str) -> None:
    try:
        fd = syscalls.perf_event_open(attr, pid=-1, cpu=cpu)
    except OSError as err:
        raise _perf_open_reason(err, what) from err
    os.close(fd)


def _check_pebs(event: str) -> str:
    no_pmu = _no_core_pmu_reason()
    if no_pmu:
        raise NotSupportedError(no_pmu)
    devices = _event_sources()
    pmus = [devices / p for p in _CORE_PMUS if (devices / p / "events" / event).is_file()]
    if not pmus:
        core = next(devices / p for p in _CORE_PMUS if (devices / p).is_dir())
        pmu_name = ""
        with contextlib.suppress(OSError):
            pmu_name = f" ({_read(core / 'caps' / 'pmu_name')})"
        raise NotSupportedError(
            f"{core.name} PMU{pmu_name} has no {event} event: not an Intel PMU with PEBS memory sampling"
        )
    pmu = pmus[0]
    max_precise = 2
    with contextlib.suppress(OSError, ValueError):
        max_precise = int(_read(pmu / "caps" / "max_precise"))
    if max_precise == 0:
        raise NotSupportedError(f"{pmu.name} PMU reports caps/max_precise=0: no PEBS (virtual machine?)")
    attr, text = _pmu_event_attr(pmu, event)
    attr.precise_ip = min(max_precise, 2)
    attr.sample_type = PERF_SAMPLE_ADDR
    attr.sample_period = 10007
    attr.disabled = 1
    attr.exclude_kernel = 1
    attr.exclude_hv = 1
    attr.wakeup_events = 1  # no large PEBS: every record reaches an overflow handler
    _trial_open(attr, _first_cpu(pmu), f"{pmu.name}/{event}/")
    aux = " (+mem-loads-aux)" if (pmu / "events" / "mem-loads-aux").is_file() else ""
    return f"{pmu.name}/{event}/ {text}, precise_ip={attr.precise_ip}{aux}"


@_feature("pmu/intel_pebs_mem_loads")
def _check_pebs_mem_loads(run: _Run) -> str:
    return _check_pebs("mem-loads")


@_feature("pmu/intel_pebs_mem_stores")
def _check_pebs_mem_stores(run: _Run) -> str:
    return _check_pebs("mem-stores")


@_feature("pmu/amd_ibs_op")
def _check_amd_ibs_op(run: _Run) -> str:
    pmu = _event_sources() / "ibs_op"
    if not (pmu / "type").is_file():
        no_pmu = _no_core_pmu_reason("cpu or ibs_op PMU")
        if no_pmu:
            raise NotSupportedError(no_pmu)
        raise NotSupportedError("no ibs_op PMU: not an AMD CPU with IBS, or IBS is disabled")
    attr = PerfEventAttr()
    attr.type = int(_read(pmu / "type"))
    attr.sample_period = 0x10000  # IBS period mode: a multiple of 16 (arch/x86/events/amd/ibs.c)
    attr.sample_type = PERF_SAMPLE_ADDR
    attr.disabled = 1
    _trial_open(attr, 0, "ibs_op//")
    zen4 = ""
    with contextlib.suppress(OSError):
        if _read(pmu / "caps" / "zen4_ibs_extensions") == "1":
            zen4 = ", zen4 extensions (l3missonly)"
    return f"ibs_op type {attr.type}{zen4}"


@_feature("pmu/arm_spe")
def _check_arm_spe(run: _Run) -> str:
    devices = _event_sources()
    spe = sorted(p for p in devices.glob("arm_spe*") if p.is_dir()) if devices.is_dir() else []
    if not spe:
        raise NotSupportedError(f"no arm_spe PMU in {devices} (arm64 only; this is {platform.machine()})")
    return f"{spe[0].name}: perf record only (samples go to an AUX buffer, not to BPF)"


# ---------------------------------------------------------------------------------------------------------------
# numa/*, mm/*
# ---------------------------------------------------------------------------------------------------------------

_NUMA_BALANCING_MODES = {"0": "off", "1": "on", "2": "memory tiering only", "3": "on + memory tiering"}


@_feature("numa/balancing")
def _check_numa_balancing(run: _Run) -> str:
    value = _sysctl("kernel.numa_balancing")
    if value is None:
        raise NotSupportedError("no kernel.numa_balancing sysctl: kernel built without CONFIG_NUMA_BALANCING")
    return f"kernel.numa_balancing={value} ({_NUMA_BALANCING_MODES.get(value, 'unknown mode')})"


@_feature("numa/nodes")
def _check_numa_nodes(run: _Run) -> str:
    root = _sys("devices", "system", "node")
    if not root.is_dir():
        raise NotSupportedError(f"no {root}: kernel built without CONFIG_NUMA")
    nodes = sorted((p.name for p in root.glob("node[0-9]*") if p.name[4:].isdigit()), key=lambda n: int(n[4:]))
    if not nodes:
        raise NotSupportedError(f"no node directory in {root}")
    if len(nodes) == 1:
        return f"1 node ({nodes[0]})"
    return f"{len(nodes)} nodes ({', '.join(nodes)})"


def _parse_swaps(text: str) -> list[tuple[str, str, int]]:
    # /proc/swaps: a header line, then "Filename Type Size Used Priority" rows (sizes in KiB).
    areas = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            areas.append((cols[0], cols[1], int(cols[2])))
    return areas


@_feature("mm/swap")
def _check_swap(run: _Run) -> str:
    areas = _parse_swaps(_proc("swaps").read_text())
    if not areas:
        raise NotSupportedError("no swap: MADV_PAGEOUT of anonymous memory cannot work without swap")
    total_mib = sum(a[2] for a in areas) / 1024
    return f"{len(areas)} area(s), {total_mib:.0f} MiB: " + ", ".join(f"{a[0]} ({a[1]})" for a in areas)


@_feature("mm/process_madvise")
def _check_process_madvise(run: _Run) -> str:
    try:
        pidfd = syscalls.pidfd_open(os.getpid())
    except OSError as err:
        if err.errno == errno.ENOSYS:
            raise NotSupportedError("no pidfd_open() syscall (ENOSYS): process_madvise() needs a pidfd") from err
        raise NotSupportedError(f"pidfd_open() failed: {err.strerror or err} ({errname(err.errno or 0)})") from err
    try:
        with _fresh_pages(4) as (start, end, touch):
            touch()
            try:
                done = syscalls.process_madvise(pidfd, [(start, end - start)], MADV_COLD)
            except PermissionDeniedError as err:
                raise PermissionDeniedError(
                    "process_madvise() needs CAP_SYS_NICE and ptrace access to the target (EPERM)"
                ) from err
            except OSError as err:
                e = err.errno or 0
                if e == errno.ENOSYS:
                    raise NotSupportedError("no process_madvise() syscall (ENOSYS)") from err
                if e == errno.EINVAL:
                    raise NotSupportedError("process_madvise() rejected MADV_COLD (EINVAL)") from err
                raise NotSupportedError(f"process_madvise() failed: {os.strerror(e)} ({errname(e)})") from err
    finally:
        os.close(pidfd)
    return f"MADV_COLD via own pidfd: {done} bytes advised"


@_feature("mm/soft_dirty")
def _check_soft_dirty(run: _Run) -> str:
    # With CONFIG_MEM_SOFT_DIRTY, new mappings carry VM_SOFTDIRTY, shown as "sd" in VmFlags
    # (show_smap_vma_flags() in fs/proc/task_mmu.c); without it the flag is never printed.
    for line in _proc("self", "smaps").read_text().splitlines():
        if line.startswith("VmFlags:") and "sd" in line.split()[1:]:
            return "informational: 'sd' in /proc/self/smaps VmFlags"
    raise NotSupportedError("CONFIG_MEM_SOFT_DIRTY off: no 'sd' in /proc/self/smaps VmFlags")


@_feature("mm/idle_page_tracking")
def _check_idle_page_tracking(run: _Run) -> str:
    path = _sys("kernel", "mm", "page_idle", "bitmap")
    if not path.exists():
        raise NotSupportedError(f"CONFIG_IDLE_PAGE_TRACKING off: no {path}")
    try:
        with path.open("rb") as f:
            f.read(8)
    except PermissionError as err:
        raise PermissionDeniedError(f"{path} is readable by root only") from err
    return f"informational: {path} readable"


# ---------------------------------------------------------------------------------------------------------------
# taskstats/*, psi/*, damon/*, perf/*
# ---------------------------------------------------------------------------------------------------------------


@_feature("taskstats/delayacct")
def _check_taskstats(run: _Run) -> str:
    try:
        # Imported here: pyroute2 is only needed by this check and slow to import.
        from pyroute2 import TaskStats  # type: ignore[import-untyped]
    except ImportError as err:
        raise MissingDependencyError("pyroute2 is not installed (pip install pyroute2)") from err
    ts = TaskStats()
    try:
        ts.bind()
        ts.get_pid_stat(os.getpid())
    except Exception as err:
        if getattr(err, "code", None) == errno.EPERM or getattr(err, "errno", None) == errno.EPERM:
            raise PermissionDeniedError("taskstats queries need CAP_NET_ADMIN (EPERM)") from err
        raise NotSupportedError(f"taskstats netlink query failed: {err}") from err
    finally:
        ts.close()
    value = _sysctl("kernel.task_delayacct")
    if value is None:
        return "taskstats works; no kernel.task_delayacct sysctl"
    state = "on" if value == "1" else "off: delays read 0"
    return f"taskstats works; kernel.task_delayacct={value} ({state})"


@_feature("psi/memory")
def _check_psi_memory(run: _Run) -> str:
    path = _proc("pressure", "memory")
    try:
        text = _read(path)
    except FileNotFoundError as err:
        raise NotSupportedError(f"no {path}: kernel built without CONFIG_PSI") from err
    except OSError as err:  # EOPNOTSUPP when disabled at boot
        raise NotSupportedError(f"{path} unreadable ({err.strerror}): PSI disabled (psi=0?)") from err
    avg10 = {line.split()[0]: line.split()[1] for line in text.splitlines() if len(line.split()) > 1}
    return ", ".join(f"{kind} {val}" for kind, val in avg10.items())


@_feature("damon/kernel")
def _check_damon_kernel(run: _Run) -> str:
    # Read-only: never write under /sys/kernel/mm/damon (a kdamond there may belong to the system).
    admin = _sys("kernel", "mm", "damon", "admin")
    if not admin.is_dir():
        raise NotSupportedError(f"no {admin}: kernel built without CONFIG_DAMON_SYSFS")
    states: list[str] = []
    ops: set[str] = set()
    for kdamond in sorted(admin.glob("kdamonds/[0-9]*")):
        with contextlib.suppress(OSError):
            states.append(_read(kdamond / "state"))
        for avail in kdamond.glob("contexts/[0-9]*/avail_operations"):
            with contextlib.suppress(OSError):
                ops.update(_read(avail).split())
    parts = [f"{len(states)} kdamond{'' if len(states) == 1 else 's'}" + (f" ({', '.join(states)})" if states else "")]
    if ops:
        parts.append("ops: " + " ".join(sorted(ops)))
        if "vaddr" not in ops:
            parts.append("vaddr not available")
    else:
        parts.append("ops unknown (no context to read)")
    return "; ".join(parts)


@_feature("perf/tool")
def _check_perf_tool(run: _Run) -> str:
    perf = shutil.which("perf") or next((p for p in ("/usr/bin/perf", "/usr/sbin/perf") if os.access(p, os.X_OK)), None)
    if perf is None:
        raise MissingDependencyError("perf not found in PATH (apt install linux-perf)")
    try:
        res = subprocess.run([perf, "--version"], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NotSupportedError(f"{perf} --version failed: {err}") from err
    out = (res.stdout.strip() or res.stderr.strip()).splitlines()
    first = out[0] if out else f"exit status {res.returncode}"
    if res.returncode != 0:
        raise NotSupportedError(f"{perf} --version: {first}")
    return f"{first} ({perf})"
