"""The ``pmu/*``, ``numa/*``, ``mm/*``, ``taskstats/*``, ``psi/*``, ``damon/*`` and ``perf/*`` rows of the feature
table: the hardware samplers, memory management and kernel interfaces damon-bpf uses beside BPF.

The ``pmu/*`` rows decide with :func:`damon_bpf.probes.perf_events.check_hardware_events`, the code behind
:func:`~damon_bpf.probes.perf_events.hardware_sampling_status` (``--source auto`` and ``--source perf``), so
``damon-bpf features`` and the sources cannot disagree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import shutil
import subprocess

from damon_bpf.errors import MissingDependencyError, NotSupportedError, PermissionDeniedError
from damon_bpf.linux import syscalls
from damon_bpf.linux.syscalls import MADV_COLD, errname
from damon_bpf.linux.memory import parse_swaps
from damon_bpf.probes.features.common import CheckPass, feature, fresh_pages
from damon_bpf.probes.perf_events import check_hardware_events
from damon_bpf.probes.perf_events.pmus import Pmus

__all__ = ()


# ---------------------------------------------------------------------------------------------------------------
# pmu/*
# ---------------------------------------------------------------------------------------------------------------


def _hardware_events(text: str, cp: CheckPass) -> str:
    # The check of --source auto/perf (check_hardware_events()); its reason is the row's reason.
    checked = check_hardware_events(text, cp.sys_root)
    pmus = Pmus(cp.sys_root)
    rows = []
    for spec, precise_ip in checked:
        if spec.kind == "ibs":
            zen4 = ", zen4 extensions (l3missonly)" if pmus.cap(spec.pmu, "zen4_ibs_extensions") == "1" else ""
            rows.append(f"{spec.pmu} type {spec.type}{zen4}")
        else:
            aux = " (+mem-loads-aux)" if pmus.alias(spec.pmu, "mem-loads-aux") is not None else ""
            rows.append(f"{spec.perf_event}, precise_ip={precise_ip}{aux}")
    return "; ".join(rows)


@feature("pmu/intel_pebs_mem_loads")
def _check_pebs_mem_loads(cp: CheckPass) -> str:
    return _hardware_events("mem-loads", cp)


@feature("pmu/intel_pebs_mem_stores")
def _check_pebs_mem_stores(cp: CheckPass) -> str:
    return _hardware_events("mem-stores", cp)


@feature("pmu/amd_ibs_op")
def _check_amd_ibs_op(cp: CheckPass) -> str:
    return _hardware_events("ibs_op", cp)


@feature("pmu/arm_spe")
def _check_arm_spe(cp: CheckPass) -> str:
    # Informational: the default events never use SPE (hardware_sampling_status() says why when it is present).
    pmus = Pmus(cp.sys_root)
    spe = pmus.spe()
    if not spe:
        raise NotSupportedError(f"no arm_spe PMU in {pmus.devices} (arm64 only; this is {platform.machine()})")
    return f"{spe[0]}: perf record only (samples go to an AUX buffer, not to BPF)"


# ---------------------------------------------------------------------------------------------------------------
# numa/*, mm/*
# ---------------------------------------------------------------------------------------------------------------

_NUMA_BALANCING_MODES = {"0": "off", "1": "on", "2": "memory tiering only", "3": "on + memory tiering"}


@feature("numa/balancing")
def _check_numa_balancing(cp: CheckPass) -> str:
    value = cp.require_sysctl(
        "kernel.numa_balancing", "no kernel.numa_balancing sysctl: kernel built without CONFIG_NUMA_BALANCING"
    )
    return f"kernel.numa_balancing={value} ({_NUMA_BALANCING_MODES.get(value, 'unknown mode')})"


@feature("numa/nodes")
def _check_numa_nodes(cp: CheckPass) -> str:
    root = cp.sys("devices", "system", "node")
    if not root.is_dir():
        raise NotSupportedError(f"no {root}: kernel built without CONFIG_NUMA")
    nodes = sorted((p.name for p in root.glob("node[0-9]*") if p.name[4:].isdigit()), key=lambda n: int(n[4:]))
    if not nodes:
        raise NotSupportedError(f"no node directory in {root}")
    if len(nodes) == 1:
        return f"1 node ({nodes[0]})"
    return f"{len(nodes)} nodes ({', '.join(nodes)})"


@feature("mm/swap")
def _check_swap(cp: CheckPass) -> str:
    areas = parse_swaps(cp.proc("swaps").read_text())
    if not areas:
        raise NotSupportedError("no swap: MADV_PAGEOUT of anonymous memory cannot work without swap")
    total_mib = sum(a[2] for a in areas) / 1024
    return f"{len(areas)} area(s), {total_mib:.0f} MiB: " + ", ".join(f"{a[0]} ({a[1]})" for a in areas)


@feature("mm/process_madvise")
def _check_process_madvise(cp: CheckPass) -> str:
    try:
        pidfd = syscalls.pidfd_open(os.getpid())
    except OSError as err:
        if err.errno == errno.ENOSYS:
            raise NotSupportedError("no pidfd_open() syscall (ENOSYS): process_madvise() needs a pidfd") from err
        raise NotSupportedError(f"pidfd_open() failed: {err.strerror or err} ({errname(err.errno or 0)})") from err
    try:
        with fresh_pages(4) as (start, end, touch):
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


@feature("mm/soft_dirty")
def _check_soft_dirty(cp: CheckPass) -> str:
    # With CONFIG_MEM_SOFT_DIRTY, new mappings carry VM_SOFTDIRTY, shown as "sd" in VmFlags
    # (show_smap_vma_flags() in fs/proc/task_mmu.c); without it the flag is never printed.
    for line in cp.proc("self", "smaps").read_text().splitlines():
        if line.startswith("VmFlags:") and "sd" in line.split()[1:]:
            return "informational: 'sd' in /proc/self/smaps VmFlags"
    raise NotSupportedError("CONFIG_MEM_SOFT_DIRTY off: no 'sd' in /proc/self/smaps VmFlags")


@feature("mm/idle_page_tracking")
def _check_idle_page_tracking(cp: CheckPass) -> str:
    path = cp.sys("kernel", "mm", "page_idle", "bitmap")
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


@feature("taskstats/delayacct")
def _check_taskstats(cp: CheckPass) -> str:
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
    value = cp.sysctl("kernel.task_delayacct")
    if value is None:
        return "taskstats works; no kernel.task_delayacct sysctl"
    state = "on" if value == "1" else "off: delays read 0"
    return f"taskstats works; kernel.task_delayacct={value} ({state})"


@feature("psi/memory")
def _check_psi_memory(cp: CheckPass) -> str:
    path = cp.proc("pressure", "memory")
    try:
        text = path.read_text().strip()
    except FileNotFoundError as err:
        raise NotSupportedError(f"no {path}: kernel built without CONFIG_PSI") from err
    except OSError as err:  # EOPNOTSUPP when disabled at boot
        raise NotSupportedError(f"{path} unreadable ({err.strerror}): PSI disabled (psi=0?)") from err
    avg10 = {line.split()[0]: line.split()[1] for line in text.splitlines() if len(line.split()) > 1}
    return ", ".join(f"{kind} {val}" for kind, val in avg10.items())


@feature("damon/kernel")
def _check_damon_kernel(cp: CheckPass) -> str:
    # Read-only: never write under /sys/kernel/mm/damon (a kdamond there may belong to the system).
    admin = cp.sys("kernel", "mm", "damon", "admin")
    if not admin.is_dir():
        raise NotSupportedError(f"no {admin}: kernel built without CONFIG_DAMON_SYSFS")
    states: list[str] = []
    ops: set[str] = set()
    for kdamond in sorted(admin.glob("kdamonds/[0-9]*")):
        with contextlib.suppress(OSError):
            states.append((kdamond / "state").read_text().strip())
        for avail in kdamond.glob("contexts/[0-9]*/avail_operations"):
            with contextlib.suppress(OSError):
                ops.update(avail.read_text().split())
    parts = [f"{len(states)} kdamond{'' if len(states) == 1 else 's'}" + (f" ({', '.join(states)})" if states else "")]
    if ops:
        parts.append("ops: " + " ".join(sorted(ops)))
        if "vaddr" not in ops:
            parts.append("vaddr not available")
    else:
        parts.append("ops unknown (no context to read)")
    return "; ".join(parts)


@feature("perf/tool")
def _check_perf_tool(cp: CheckPass) -> str:
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
