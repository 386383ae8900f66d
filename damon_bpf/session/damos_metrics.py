"""DAMOS quota-goal and watermark metrics measured from user space: the ops side of ``ctx.damos_metric``.

Mirrors ``damos_set_quota_goal_current_value()`` and ``damos_wmark_metric_value()`` of ``mm/damon/core.c``.
The engine does no I/O: it calls ``ctx.damos_metric(goal_or_wmarks, scheme) -> int``, and
:class:`DamosMetrics` is that callable. Values come from ``/proc/meminfo``, PSI, per-node sysfs meminfo, cgroup
files and taskstats (``task_mem_stall_us``, damon-bpf's own; it turns ``kernel.task_delayacct`` on for the
session, restored by :meth:`DamosMetrics.close`); ``node_eligible_mem_bp`` is refused.

**Errors.** Every source has a pure parser (fed fake file contents by the tests). A missing *mechanism* (no
PSI, no NUMA sysfs, no cgroup v2 for ``memory.pressure``, no taskstats) raises
:class:`~damon_bpf.errors.NotSupportedError` with the reason; :func:`check_scheme` finds these before a scheme
starts. A missing node or cgroup gives the kernel's fallback values instead.

See docs/ops.md, section "DAMOS quota-goal and watermark metrics", for each metric's source and formula.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from damon_bpf.engine.model import Ctx
from damon_bpf.errors import InvalidParamsError, MissingDependencyError, NotSupportedError, PermissionDeniedError
from damon_bpf.linux.sysctl import SysctlOverride

__all__ = (
    "DamosMetrics",
    "install",
    "check_scheme",
    "metric_name",
    "parse_meminfo",
    "parse_psi",
    "parse_numa_stat",
    "parse_cgroup_mounts",
    "parse_taskstats",
    "TaskDelays",
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


# -- parsers ---------------------------------------------------------------------------------------------------

def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` or ``/sys/devices/system/node/node<N>/meminfo`` (``Node N`` prefix) as ``{key: value}``;
    values in the file's units (kB for sizes)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        words = key.split()
        if len(words) >= 3 and words[0] == "Node":  # "Node 0 MemTotal"
            words = words[2:]
        vals = rest.split()
        if words and vals:
            try:
                out[" ".join(words)] = int(vals[0])
            except ValueError:
                continue
    return out


def parse_psi(text: str) -> dict[str, int]:
    """``/proc/pressure/memory`` or a cgroup's ``memory.pressure``: ``{"some": total_us, "full": total_us}``.

    :raises InvalidParamsError: no ``total=`` field
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        for w in words[1:]:
            if w.startswith("total="):
                out[words[0]] = int(w[len("total="):])
    if not out:
        raise InvalidParamsError(f"cannot parse PSI: {text[:200]!r}")
    return out


def parse_numa_stat(text: str, page_size: int = 4096) -> dict[str, dict[int, int]]:
    """A memcg's ``memory.numa_stat`` as ``{key: {nid: bytes}}``.

    cgroup v2 lines are ``anon N0=<bytes> N1=<bytes>``; cgroup v1 lines are ``anon=<pages> N0=<pages>`` (and
    ``hierarchical_anon=...``), converted to bytes with *page_size*.
    """
    out: dict[str, dict[int, int]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        head = words[0]
        if "=" in head:  # v1: "key=total N0=..."
            key, mult = head.partition("=")[0], page_size
        else:
            key, mult = head, 1
        per: dict[int, int] = {}
        for w in words[1:]:
            n, sep, v = w.partition("=")
            if sep and n.startswith("N") and n[1:].isdigit():
                per[int(n[1:])] = int(v) * mult
        out[key] = per
    return out


def parse_cgroup_mounts(mountinfo: str) -> tuple[str | None, str | None]:
    """From ``/proc/self/mountinfo``: the cgroup v2 mount point and the cgroup v1 ``memory`` controller mount
    point (None where absent). Fields: ``id parent maj:min root mountpoint opts [optional...] - fstype src sopts``.
    """
    v2 = v1_memory = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or not rf:
            continue
        mnt = lf[4].replace("\\040", " ")
        if rf[0] == "cgroup2" and v2 is None:
            v2 = mnt
        elif rf[0] == "cgroup" and len(rf) >= 3 and "memory" in rf[2].split(",") and v1_memory is None:
            v1_memory = mnt
    return v2, v1_memory


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


@dataclass(frozen=True, slots=True)
class TaskDelays:
    """The memory stall delays of one taskstats reply (``struct taskstats``, ns)."""

    version: int
    swapin_delay_total: int
    freepages_delay_total: int
    thrashing_delay_total: int
    compact_delay_total: int

    @property
    def mem_stall_ns(self) -> int:
        return self.swapin_delay_total + self.freepages_delay_total + self.thrashing_delay_total + \
            self.compact_delay_total


# struct taskstats (include/uapi/linux/taskstats.h) offsets of the fields read here. Versions up to 14 and
# since 16 share one layout (new fields are appended); version 15 inserted *_delay_max/min after each delay
# total, which Linux kernel commit ("taskstats: fix struct taskstats breaks backward compatibility since
# version 15", v6.18) undid by moving them to the end and bumping the version to 16.
_TS_OFFSETS = {
    "swapin_delay_total": (56, 80),
    "freepages_delay_total": (320, 360),
    "thrashing_delay_total": (336, 392),
    "compact_delay_total": (360, 432),
}
_TS_MIN_VERSION = {"freepages_delay_total": 6, "thrashing_delay_total": 8, "compact_delay_total": 11}


def parse_taskstats(raw: bytes) -> TaskDelays:
    """The memory delays in the raw ``TASKSTATS_TYPE_STATS`` payload (a ``struct taskstats``); fields the
    reply's version predates read 0.

    :raises InvalidParamsError: too short
    """
    if len(raw) < 2:
        raise InvalidParamsError("taskstats reply too short")
    (version,) = struct.unpack_from("=H", raw, 0)
    col = 1 if version == 15 else 0
    vals: dict[str, int] = {}
    for name, offs in _TS_OFFSETS.items():
        off = offs[col]
        if version < _TS_MIN_VERSION.get(name, 0) or len(raw) < off + 8:
            vals[name] = 0
        else:
            (vals[name],) = struct.unpack_from("=Q", raw, off)
    return TaskDelays(version, **vals)


# -- taskstats client ------------------------------------------------------------------------------------------

class TaskStatsClient(Protocol):
    def tgid_delays(self, tgid: int) -> TaskDelays | None: ...
    def close(self) -> None: ...


class _PyrouteTaskStats:
    """Per-tgid taskstats through pyroute2's generic netlink ``TaskStats`` socket. pyroute2's own decoder
    reads only version 15's layout, so the raw ``struct taskstats`` is taken and :func:`parse_taskstats`
    decodes it."""

    def __init__(self) -> None:
        try:
            from pyroute2.netlink import NLM_F_REQUEST, genlmsg, nla  # type: ignore[import-untyped]
            from pyroute2.netlink.generic import AsyncGenericNetlinkSocket  # type: ignore[import-untyped]
            from pyroute2.netlink.taskstats import (  # type: ignore[import-untyped]
                TASKSTATS_CMD_GET,
                AsyncTaskStats,
                TaskStats,
                tcmd,
            )
        except ImportError as err:
            raise MissingDependencyError("pyroute2 is not installed (pip install pyroute2)") from err

        class _Raw(genlmsg):  # type: ignore[misc]
            nla_map = (("TASKSTATS_TYPE_UNSPEC", "none"), ("TASKSTATS_TYPE_PID", "uint32"),
                       ("TASKSTATS_TYPE_TGID", "uint32"), ("TASKSTATS_TYPE_STATS", "cdata"),
                       ("TASKSTATS_TYPE_AGGR_PID", "aggr"), ("TASKSTATS_TYPE_AGGR_TGID", "aggr"))

            class aggr(nla):  # type: ignore[misc]  # noqa: N801 (pyroute2's naming)
                nla_map = (("TASKSTATS_TYPE_UNSPEC", "none"), ("TASKSTATS_TYPE_PID", "uint32"),
                           ("TASKSTATS_TYPE_TGID", "uint32"), ("TASKSTATS_TYPE_STATS", "cdata"))

        class _Async(AsyncTaskStats):  # type: ignore[misc]
            async def bind(self) -> None:
                await AsyncGenericNetlinkSocket.bind(self, "TASKSTATS", _Raw)

            async def get_tgid_stat(self, tgid: int) -> Any:
                msg = tcmd()
                msg["cmd"] = TASKSTATS_CMD_GET
                msg["version"] = 1
                msg["attrs"].append(["TASKSTATS_CMD_ATTR_TGID", tgid])
                return await self.nlm_request(msg, self.prid, msg_flags=NLM_F_REQUEST)

        class _Sync(TaskStats):  # type: ignore[misc]
            async_class = _Async

            def get_tgid_stat(self, tgid: int) -> Any:
                return self._run_sync_cleanup(self.asyncore.get_tgid_stat, tgid)

        self._sock = _Sync()
        try:
            self._sock.bind()
        except Exception as err:
            self._sock.close()
            raise _taskstats_error(err) from err

    def tgid_delays(self, tgid: int) -> TaskDelays | None:
        """None when the process does not exist (any more)."""
        try:
            replies = self._sock.get_tgid_stat(tgid)
        except Exception as err:
            code = getattr(err, "code", None)
            if code in (3, 22):  # ESRCH, EINVAL: no such tgid
                return None
            raise _taskstats_error(err) from err
        for msg in replies:
            agg = msg.get_attr("TASKSTATS_TYPE_AGGR_TGID")
            raw = agg.get_attr("TASKSTATS_TYPE_STATS") if agg is not None else None
            if raw:
                return parse_taskstats(bytes(raw))
        return None

    def close(self) -> None:
        self._sock.close()


def _taskstats_error(err: BaseException) -> Exception:
    if getattr(err, "code", None) == 1 or getattr(err, "errno", None) == 1:
        return PermissionDeniedError("taskstats queries need CAP_NET_ADMIN (EPERM)")
    return NotSupportedError(f"taskstats (per-task delay accounting over netlink) is unavailable: {err}")


# -- the provider ----------------------------------------------------------------------------------------------

def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


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
        self._taskstats_factory = taskstats or _PyrouteTaskStats
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
            self._require(os.path.join(self.proc_root, "meminfo"), "the free_mem_rate watermark")
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
                    self._require(os.path.join(v2, memcg.strip("/"), "memory.pressure"),
                                  f"some_mem_psi_us of cgroup {memcg}")
                else:
                    self._require(os.path.join(self.proc_root, "pressure", "memory"),
                                  "some_mem_psi_us (PSI, CONFIG_PSI)")
            elif name.startswith("node_"):
                self._require(os.path.join(self.sys_root, "devices", "system", "node"), f"{name} (NUMA sysfs)")
                if name.startswith("node_memcg"):
                    if not memcg:
                        raise InvalidParamsError(f"quota goal {name} needs a memcg_path")
                    v2, v1 = self.cgroup_mounts()
                    if v1 is None and v2 is None:
                        raise NotSupportedError(f"{name} needs a cgroup memory controller mount")
            elif name in ("active_mem_bp", "inactive_mem_bp"):
                self._require(os.path.join(self.proc_root, "meminfo"), name)
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
            try:
                return parse_psi(_read(os.path.join(v2, memcg_path.strip("/"), "memory.pressure"))).get("some", 0)
            except FileNotFoundError:
                return None
        path = os.path.join(self.proc_root, "pressure", "memory")
        try:
            return parse_psi(_read(path)).get("some", 0)
        except FileNotFoundError as err:
            raise NotSupportedError(f"no {path}: kernel built without CONFIG_PSI") from err
        except OSError as err:  # EOPNOTSUPP with psi=0
            raise NotSupportedError(f"{path} unreadable ({err.strerror}): PSI disabled (psi=0?)") from err

    def cgroup_mounts(self) -> tuple[str | None, str | None]:
        """``(cgroup v2 mount, cgroup v1 memory mount)``."""
        if self._cgroup_mounts is None:
            try:
                self._cgroup_mounts = parse_cgroup_mounts(_read(os.path.join(self.proc_root, "self", "mountinfo")))
            except OSError:
                self._cgroup_mounts = (None, None)
        return self._cgroup_mounts

    # -- sources ----------------------------------------------------------------------------------------

    def _require(self, path: str, what: str) -> None:
        if not os.path.exists(path):
            raise NotSupportedError(f"{what} cannot be measured: no {path}")

    def _meminfo(self) -> dict[str, int]:
        path = os.path.join(self.proc_root, "meminfo")
        try:
            return parse_meminfo(_read(path))
        except FileNotFoundError as err:
            raise NotSupportedError(f"no {path}") from err

    def _node_meminfo(self, nid: int) -> dict[str, int] | None:
        root = os.path.join(self.sys_root, "devices", "system", "node")
        if not os.path.isdir(root):
            raise NotSupportedError(f"no {root}: kernel built without CONFIG_NUMA")
        if nid < 0:
            return None
        try:
            return parse_meminfo(_read(os.path.join(root, f"node{nid}", "meminfo")))
        except FileNotFoundError:
            return None  # no such node: the kernel's invalid-nid values

    def _memcg_numa_stat(self, memcg_path: str) -> dict[str, dict[int, int]] | None:
        v2, v1 = self.cgroup_mounts()
        base = v1 or v2  # the hierarchy the memory controller is bound to
        if base is None:
            raise NotSupportedError("no cgroup memory controller mount")
        try:
            return parse_numa_stat(_read(os.path.join(base, memcg_path.strip("/"), "memory.numa_stat")),
                                   os.sysconf("SC_PAGE_SIZE"))
        except FileNotFoundError:
            return None  # no such memcg: the kernel's fallback values

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
