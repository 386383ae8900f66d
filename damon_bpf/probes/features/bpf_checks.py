"""The ``bpf/*``, ``bcc/*`` and ``probe/*`` rows of the feature table: can this machine load BPF, compile with
BCC, and attach the access probes of the sources (tracepoints, software perf events, the page-table walk)?

Each check tries the real thing on the monitor's own memory: it compiles ``bpf/feature_probe.bpf.c`` (once per
pass, :class:`~damon_bpf.probes.features.common.CheckPass`), attaches, touches fresh pages and counts what the
probe saw.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from damon_bpf import probes
from damon_bpf.errors import DamonBpfError, MissingDependencyError, NotSupportedError
from damon_bpf.linux.kpage import PM_PFN
from damon_bpf.linux.syscalls import PERF_COUNT_SW_PAGE_FAULTS, PERF_TYPE_SOFTWARE
from damon_bpf.probes.features.common import CheckPass, bpf_map_create, feature, fresh_pages

__all__ = ()

_NR_TOUCH_PAGES = 16


# ---------------------------------------------------------------------------------------------------------------
# bpf/*
# ---------------------------------------------------------------------------------------------------------------


@feature("bpf/syscall")
def _check_bpf_syscall(cp: CheckPass) -> str:
    bpf_map_create()
    return "BPF_MAP_CREATE of an array map works"


@feature("bpf/jit")
def _check_bpf_jit(cp: CheckPass) -> str:
    value = cp.require_sysctl(
        "net.core.bpf_jit_enable", "no net.core.bpf_jit_enable: kernel built without CONFIG_BPF_JIT"
    )
    if value == "0":
        raise NotSupportedError("JIT off (net.core.bpf_jit_enable=0): programs run in the slower interpreter")
    return f"net.core.bpf_jit_enable={value}" + (" (with debug output)" if value == "2" else "")


@feature("bpf/btf")
def _check_bpf_btf(cp: CheckPass) -> str:
    path = cp.sys("kernel", "btf", "vmlinux")
    if not path.is_file():
        raise NotSupportedError(f"no {path}: kernel built without CONFIG_DEBUG_INFO_BTF")
    return f"{path} ({path.stat().st_size / (1 << 20):.1f} MiB)"


@feature("bpf/stats")
def _check_bpf_stats(cp: CheckPass) -> str:
    value = cp.require_sysctl(
        "kernel.bpf_stats_enabled", "no kernel.bpf_stats_enabled sysctl: per-program run time is not available"
    )
    return f"kernel.bpf_stats_enabled={value} ({'on' if value == '1' else 'off'})"


# ---------------------------------------------------------------------------------------------------------------
# bcc/*
# ---------------------------------------------------------------------------------------------------------------


@feature("bcc/import")
def _check_bcc_import(cp: CheckPass) -> str:
    try:
        bcc = probes.load_bcc()
    except MissingDependencyError as err:
        raise MissingDependencyError("python3-bpfcc is not installed (apt install python3-bpfcc)") from err
    return f"bcc {getattr(bcc, '__version__', '(unknown version)')}"


@feature("bcc/headers")
def _check_bcc_headers(cp: CheckPass) -> str:
    release = os.uname().release
    headers = probes.find_kernel_headers(release, modules_root=cp.modules_root, sys_root=cp.sys_root)
    if headers is None:
        raise NotSupportedError(
            f"no kernel headers: {cp.modules_root}/{release}/build lacks include/linux/kconfig.h and "
            f"{cp.sys_root}/kernel/kheaders.tar.xz is absent (apt install linux-headers-{release})"
        )
    if headers.origin == "kheaders":
        return f"{headers.path} (CONFIG_IKHEADERS; bcc unpacks it)"
    if headers.exact:
        return f"exact: {headers.path}"
    # Good enough for tracepoint and perf-event programs, which use no kernel struct layouts.
    return f"linked fallback: build -> {Path(headers.link_target).name} (not {release})"


@feature("bcc/compile")
def _check_bcc_compile(cp: CheckPass) -> str:
    bpf = cp.feature_probe()
    for fn_name, prog_type in (
        ("on_page_fault_perf", probes.ProgType.PERF_EVENT),
        ("on_page_fault_user_raw", probes.ProgType.RAW_TRACEPOINT),
        ("on_page_fault_user", probes.ProgType.TRACEPOINT),
    ):
        probes.load_program(bpf, fn_name, prog_type)
    return f"feature_probe.bpf.c: compiled in {cp.compile_ms:.0f} ms, 3 programs loaded"


# ---------------------------------------------------------------------------------------------------------------
# probe/*
# ---------------------------------------------------------------------------------------------------------------


def _tracefs(cp: CheckPass) -> Path | None:
    # The same order as bcc (TRACEFS in src/python/bcc/__init__.py, libbpf.c): debugfs first.
    for path in (cp.sys("kernel", "debug", "tracing"), cp.sys("kernel", "tracing")):
        if (path / "events").is_dir():
            return path
    return None


@feature("probe/tracefs")
def _check_tracefs(cp: CheckPass) -> str:
    path = _tracefs(cp)
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


@feature("probe/tracepoint_page_fault_user")
def _check_tracepoint_page_fault_user(cp: CheckPass) -> str:
    bpf = cp.feature_probe()
    tracefs = _tracefs(cp)
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
    with fresh_pages(_NR_TOUCH_PAGES) as (start, end, touch):
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


@feature("probe/perf_sw_page_faults_addr")
def _check_perf_sw_page_faults_addr(cp: CheckPass) -> str:
    bpf = cp.feature_probe()
    probes.map_clear(bpf, "perf_addrs")
    # The event follows the calling thread (perf_event_open pid = tid); the program filters on TARGET_TGID.
    with fresh_pages(_NR_TOUCH_PAGES) as (start, end, touch):
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


@feature("probe/pte_accessed_bit")
def _check_pte_accessed_bit(cp: CheckPass) -> str:
    # The pte source's own check (PteOps.check_supported() calls the same check_walk_supported()), then its
    # primitive on the monitor's own memory: the BPF page-table walk must find the PFNs that /proc/self/pagemap
    # shows for every touched page, clear_refs must clear their Accessed bits and a touch must set them again.
    # Imported here: numpy and the walker are only needed by this check.
    import numpy as np

    from damon_bpf.probes import pte

    config = pte.check_walk_supported(cp.proc_root)
    layout = config.layout
    with pte.PteWalker(config) as walker, \
            fresh_pages(_NR_PTE_PAGES) as (start, end, touch):
        touch()
        addrs = np.arange(start, end, mmap.PAGESIZE, dtype=np.uint64)
        mem_fd = os.open(str(cp.proc("self", "mem")), os.O_RDONLY | os.O_CLOEXEC)
        try:
            t0 = time.perf_counter_ns()
            status, res = walker.walk(mem_fd, addrs)
            walk_ns = (time.perf_counter_ns() - t0) / addrs.size
            if status != pte.WalkStatus.OK:
                raise NotSupportedError(f"the page-table walk failed (status {status})")
            with open(cp.proc("self", "pagemap"), "rb") as pm:
                pm.seek(start // mmap.PAGESIZE * 8)
                raw = np.frombuffer(pm.read(addrs.size * 8), dtype=np.uint64)
            pfns = (raw & np.uint64(PM_PFN)).astype(np.int64)
            found = (pte.result_phys(res) >> np.uint64(12)).astype(np.int64)
            present = (res & np.uint64(pte.R_PRESENT)) != 0
            same = int(np.count_nonzero(present & (found == pfns) & (pfns != 0)))
            if same != addrs.size:
                raise NotSupportedError(
                    f"the walk found the pagemap PFN for {same}/{addrs.size} pages (direct map base "
                    f"{layout.direct_map_base:#x}, {layout.levels}-level paging): the layout is not what it assumes")
            with open(cp.proc("self", "clear_refs"), "w") as f:
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

