"""DAMOS quota-goal and watermark metrics measured from user space: the ops side of ``ctx.damos_metric``.

Mirrors ``damos_set_quota_goal_current_value()`` and ``damos_wmark_metric_value()`` of ``mm/damon/core.c``.
The engine does no I/O: it calls ``ctx.damos_metric(goal_or_wmarks, scheme) -> int``, and
:class:`DamosMetrics` is that callable. Values come from ``/proc/meminfo``, PSI, per-node sysfs meminfo, cgroup
files and taskstats (``task_mem_stall_us``, damon-bpf's own; it turns ``kernel.task_delayacct`` on for the
session, restored by :meth:`DamosMetrics.close`); ``node_eligible_mem_bp`` is refused.

**Errors.** Every source has a pure parser in :mod:`damon_bpf.linux` (:mod:`~damon_bpf.linux.memory` for meminfo
and PSI, :mod:`~damon_bpf.linux.cgroups`, :mod:`~damon_bpf.linux.taskstats`; fed fake file contents by the
tests); this module holds what the kernel computes from them. A missing *mechanism* (no PSI, no NUMA sysfs, no
cgroup v2 for ``memory.pressure``, no taskstats) raises :class:`~damon_bpf.errors.NotSupportedError` with the
reason; :func:`check_scheme` finds these before a scheme starts. A missing node or cgroup gives the kernel's
fallback values instead.

See docs/ops.md, section "DAMOS quota-goal and watermark metrics", for each metric's source and formula.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from damon_bpf.engine.model import Ctx
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux.cgroups import cgroup_file, cgroup_mounts, read_numa_stat
from damon_bpf.linux.memory import (
    meminfo_path,
    memory_pressure_path,
    node_root,
    read_cgroup_memory_pressure,
    read_meminfo,
    read_memory_pressure,
    read_node_meminfo,
)
from damon_bpf.linux.sysctl import SysctlOverride
from damon_bpf.linux.taskstats import PyrouteTaskStats, TaskStatsClient

__all__ = (
    "DamosMetrics",
    "install",
    "check_scheme",
    "metric_name",
    "free_mem_rate",
    "node_used_bp",
    "memcg_node_used_bytes",
    "METRICS",
)

log = logging.getLogger(__name__)

#: The metrics :class:`DamosMetrics` measures (``user_input`` is the user's, set without measuring).
METRICS = frozenset({
    "free_mem_rate", "some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp", "node_memcg_used_bp",
    "node_memcg_free_bp", "active_mem_bp", "inactive_mem_bp", "task_mem_stall_us",
})

_NODE_ELIGIBLE_REASON = ("quota goal metric node_eligible_mem_bp is measured by the paddr operations set only "
                         "(the kernel refuses it for other ops with -EINVAL)")


def metric_name(goal_or_wmarks: Any) -> str:
    """The metric's sysfs name (``goal.metric.value`` / ``wmarks.metric.value``)."""
    m = getattr(goal_or_wmarks, "metric", goal_or_wmarks)
    v = getattr(m, "value", m)
    return v if isinstance(v, str) else ""


# -- formulas --------------------------------------------------------------------------------------------------

def free_mem_rate(meminfo: dict[str, int]) -> int:
    """``free_mem_rate`` watermark metric: ``MemFree * 1000 // MemTotal`` (``damos_wmark_metric_value()``)."""
    total = meminfo.get("MemTotal", 0)
    return meminfo.get("MemFree", 0) * 1000 // total if total else 0


def node_used_bp(meminfo: dict[str, int]) -> int:
    """``(MemTotal - MemFree) * 10000 // MemTotal`` of a node's meminfo (``damos_get_node_mem_bp()``)."""
    total = meminfo.get("MemTotal", 0)
    if not total:
        return 0
    return (total - meminfo.get("MemFree", 0)) * 10000 // total


def memcg_node_used_bytes(numa_stat: dict[str, dict[int, int]], nid: int) -> int:
    """The memcg's LRU bytes on node *nid*: ``active/inactive anon/file`` (v2), or ``hierarchical_anon +
    hierarchical_file`` (v1, which has no per-node LRU split), or ``anon + file``."""
    lru = ("active_anon", "inactive_anon", "active_file", "inactive_file")
    for keys in (lru, ("hierarchical_anon", "hierarchical_file"), ("anon", "file")):
        if all(k in numa_stat for k in keys):
            return sum(numa_stat[k].get(nid, 0) for k in keys)
    return 0


# -- the provider ----------------------------------------------------------------------------------------------

class DamosMetrics:
    """``ctx.damos_metric``: measures quota goals' current values and watermark metrics (table in the module
    docstring). Install it with :meth:`install` (or :func:`install`); :meth:`close` restores what it changed
    (``kernel.task_delayacct``) and closes the taskstats socket. ``VaddrOps.cleanup()`` closes the provider
    installed in its context; it is also a context manager.

    :param ctx: the context whose targets ``task_mem_stall_us`` sums (set by :meth:`install` too)
    :param proc_root: where procfs is mounted (tests point it at fake contents)
    :param sys_root: where sysfs is mounted
    :param cgroup_mounts: ``(cgroup v2 mount, cgroup v1 memory mount)``; read from ``/proc/self/mountinfo``
        when None
    :param taskstats: a taskstats client factory (tests); pyroute2 by default
    :param delayacct: turn ``kernel.task_delayacct`` on while ``task_mem_stall_us`` is measured
    """

    def __init__(self, ctx: Ctx | None = None, *, proc_root: str = "/proc", sys_root: str = "/sys",
                 cgroup_mounts: tuple[str | None, str | None] | None = None,
                 taskstats: Callable[[], TaskStatsClient] | None = None, delayacct: bool = True) -> None:
        self.ctx = ctx
        self.proc_root = proc_root
        self.sys_root = sys_root
        self._cgroup_mounts = cgroup_mounts
        self._taskstats_factory = taskstats or PyrouteTaskStats
        self._taskstats: TaskStatsClient | None = None
        self._delayacct = delayacct
        self._override: SysctlOverride | None = None
        # id(goal) -> {tgid: last delay total in us}
        self._stall_last: dict[int, dict[int, int]] = {}

    # -- lifecycle --------------------------------------------------------------------------------------

    def install(self, ctx: Ctx) -> DamosMetrics:
        """Make this the metric provider of *ctx* (``ctx.damos_metric = self``)."""
        self.ctx = ctx
        ctx.damos_metric = self
        return self

    def close(self) -> None:
        """Restore ``kernel.task_delayacct`` and close the taskstats socket (idempotent)."""
        try:
            if self._taskstats is not None:
                ts, self._taskstats = self._taskstats, None
                ts.close()
        finally:
            if self._override is not None:
                o, self._override = self._override, None
                o.restore()

    def __enter__(self) -> DamosMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- measuring --------------------------------------------------------------------------------------

    def __call__(self, goal_or_wmarks: Any, scheme: Any = None) -> int:
        """The current value of a quota goal's metric, or of a watermarks' metric.

        :raises NotSupportedError: the metric cannot be measured here (the reason says why)
        """
        name = metric_name(goal_or_wmarks)
        nid = int(getattr(goal_or_wmarks, "nid", 0) or 0)
        memcg = getattr(goal_or_wmarks, "memcg_path", None)
        if name == "none":
            return 0
        if name == "free_mem_rate":
            return free_mem_rate(self._meminfo())
        if name == "some_mem_psi_us":
            now = self.psi_some_total_us(memcg)
            if now is None:  # the cgroup is gone
                return 0
            last = int(getattr(goal_or_wmarks, "last_psi_total", 0) or 0)
            if hasattr(goal_or_wmarks, "last_psi_total"):
                goal_or_wmarks.last_psi_total = now
            return max(now - last, 0)
        if name in ("node_mem_used_bp", "node_mem_free_bp"):
            mi = self._node_meminfo(nid)
            want_used = name == "node_mem_used_bp"
            if mi is None or not mi.get("MemTotal"):
                return 0 if want_used else 10000
            return node_used_bp(mi) if want_used else mi.get("MemFree", 0) * 10000 // mi["MemTotal"]
        if name in ("node_memcg_used_bp", "node_memcg_free_bp"):
            used_metric = name == "node_memcg_used_bp"
            mi = self._node_meminfo(nid)
            stat = self._memcg_numa_stat(memcg) if memcg else None
            if mi is None or not mi.get("MemTotal") or stat is None:
                return 0 if used_metric else 10000
            total = mi["MemTotal"] * 1024
            used = min(memcg_node_used_bytes(stat, nid), total)
            return used * 10000 // total if used_metric else (total - used) * 10000 // total
        if name in ("active_mem_bp", "inactive_mem_bp"):
            m = self._meminfo()
            active, inactive = m.get("Active", 0), m.get("Inactive", 0)
            if active + inactive == 0:
                return 0
            return (active if name == "active_mem_bp" else inactive) * 10000 // (active + inactive)
        if name == "node_eligible_mem_bp":
            raise NotSupportedError(_NODE_ELIGIBLE_REASON)
        if name == "task_mem_stall_us":
            return self._task_mem_stall_us(goal_or_wmarks)
        raise NotSupportedError(f"unknown DAMOS metric {name!r}")

    def check(self, scheme: Any) -> None:
        """Refuse, before *scheme* starts, metrics of its goals and watermarks that cannot be measured here.

        :raises NotSupportedError: the reason
        """
        wm = getattr(scheme, "wmarks", None)
        if wm is not None and metric_name(wm) == "free_mem_rate":
            self._require(meminfo_path(self.proc_root), "the free_mem_rate watermark")
        for g in getattr(getattr(scheme, "quota", None), "goals", None) or ():
            name = metric_name(g)
            memcg = getattr(g, "memcg_path", None)
            if name in ("user_input", ""):
                continue
            if name == "node_eligible_mem_bp":
                raise NotSupportedError(_NODE_ELIGIBLE_REASON)
            if name not in METRICS:
                raise NotSupportedError(f"unknown DAMOS quota goal metric {name!r}")
            if name == "some_mem_psi_us":
                if memcg:
                    v2, _ = self.cgroup_mounts()
                    if v2 is None:
                        raise NotSupportedError("some_mem_psi_us of a memcg needs cgroup v2 (memory.pressure); no "
                                                "cgroup2 mount")
                    self._require(cgroup_file(v2, memcg, "memory.pressure"), f"some_mem_psi_us of cgroup {memcg}")
                else:
                    self._require(memory_pressure_path(self.proc_root), "some_mem_psi_us (PSI, CONFIG_PSI)")
            elif name.startswith("node_"):
                self._require(node_root(self.sys_root), f"{name} (NUMA sysfs)")
                if name.startswith("node_memcg"):
                    if not memcg:
                        raise InvalidParamsError(f"quota goal {name} needs a memcg_path")
                    v2, v1 = self.cgroup_mounts()
                    if v1 is None and v2 is None:
                        raise NotSupportedError(f"{name} needs a cgroup memory controller mount")
            elif name in ("active_mem_bp", "inactive_mem_bp"):
                self._require(meminfo_path(self.proc_root), name)
            elif name == "task_mem_stall_us":
                self._ensure_taskstats()

    def psi_some_total_us(self, memcg_path: str | None = None) -> int | None:
        """``some total=`` of the system's (or *memcg_path*'s) memory PSI, µs; None when the cgroup is gone.

        :raises NotSupportedError: no PSI (or no cgroup v2 for a memcg)
        """
        if memcg_path:
            v2, _ = self.cgroup_mounts()
            if v2 is None:
                raise NotSupportedError("memory.pressure of a cgroup needs cgroup v2; no cgroup2 mount")
            psi = read_cgroup_memory_pressure(v2, memcg_path)
            return None if psi is None else psi.get("some", 0)
        return read_memory_pressure(self.proc_root).get("some", 0)

    def cgroup_mounts(self) -> tuple[str | None, str | None]:
        """``(cgroup v2 mount, cgroup v1 memory mount)``."""
        if self._cgroup_mounts is None:
            self._cgroup_mounts = cgroup_mounts(self.proc_root)
        return self._cgroup_mounts

    # -- sources ----------------------------------------------------------------------------------------

    def _require(self, path: str, what: str) -> None:
        if not os.path.exists(path):
            raise NotSupportedError(f"{what} cannot be measured: no {path}")

    def _meminfo(self) -> dict[str, int]:
        return read_meminfo(self.proc_root)

    def _node_meminfo(self, nid: int) -> dict[str, int] | None:
        return read_node_meminfo(nid, self.sys_root)

    def _memcg_numa_stat(self, memcg_path: str) -> dict[str, dict[int, int]] | None:
        v2, v1 = self.cgroup_mounts()
        base = v1 or v2  # the hierarchy the memory controller is bound to
        if base is None:
            raise NotSupportedError("no cgroup memory controller mount")
        return read_numa_stat(base, memcg_path)  # None: no such memcg, the kernel's fallback values

    def _ensure_taskstats(self) -> TaskStatsClient:
        if self._taskstats is None:
            self._taskstats = self._taskstats_factory()
            if self._delayacct and self._override is None:
                try:
                    self._override = SysctlOverride("kernel.task_delayacct", "1").apply()
                except NotSupportedError:
                    log.info("no kernel.task_delayacct sysctl: delay accounting is on if delayacct was booted")
        return self._taskstats

    def _target_tgids(self) -> list[tuple[int, Any]]:
        ctx = self.ctx
        if ctx is None:
            return []
        ops = ctx.ops
        out = []
        for t in ctx.targets:
            pid = t.pid
            if pid is None:
                continue
            if ops is not None and not ops.target_valid(t):
                continue
            out.append((int(pid), t))
        return out

    def _task_mem_stall_us(self, goal: Any) -> int:
        ts = self._ensure_taskstats()
        last = self._stall_last.setdefault(id(goal), {})
        now: dict[int, int] = {}
        ops = self.ctx.ops if self.ctx is not None else None
        for tgid, t in self._target_tgids():
            d = ts.tgid_delays(tgid)
            # a reply read while the target was alive is the target's (its pid cannot be reused before)
            if d is not None and (ops is None or ops.target_valid(t)):
                now[tgid] = d.mem_stall_ns // 1000
        # A target counts from 0 the first time (the kernel's PSI metric starts from 0 too); exited targets drop
        # out of the sum; a total that went down (another process reused the pid) counts from 0 again.
        inc = sum(v - last.get(t, 0) if v >= last.get(t, 0) else v for t, v in now.items())
        self._stall_last[id(goal)] = now
        if hasattr(goal, "last_psi_total"):
            goal.last_psi_total = sum(now.values())
        return inc


def install(ctx: Ctx, **kwargs: Any) -> DamosMetrics:
    """Build a :class:`DamosMetrics` with *kwargs* and install it as ``ctx.damos_metric``."""
    return DamosMetrics(**kwargs).install(ctx)


def check_scheme(scheme: Any, metrics: DamosMetrics | None = None) -> None:
    """:meth:`DamosMetrics.check` with *metrics*, or a default provider (closed afterwards)."""
    if metrics is not None:
        metrics.check(scheme)
        return
    m = DamosMetrics(delayacct=False)
    try:
        m.check(scheme)
    finally:
        m.close()
