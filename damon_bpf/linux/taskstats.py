"""Per-task delay accounting over netlink (``Documentation/accounting/taskstats.rst``): the memory stall delays
of ``struct taskstats`` (``include/uapi/linux/taskstats.h``), decoded from the raw reply of every layout version,
and a client of the ``TASKSTATS`` generic netlink family (pyroute2, imported when a client is made).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from damon_bpf.errors import InvalidParamsError, MissingDependencyError, NotSupportedError, PermissionDeniedError

__all__ = ("TaskDelays", "parse_taskstats", "TaskStatsClient", "PyrouteTaskStats")


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


# -- the netlink client ---------------------------------------------------------------------------------------

class TaskStatsClient(Protocol):
    """Per-process (tgid) memory delays: what :class:`PyrouteTaskStats` gives, and what tests fake."""

    def tgid_delays(self, tgid: int) -> TaskDelays | None: ...
    def close(self) -> None: ...


class PyrouteTaskStats:
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
