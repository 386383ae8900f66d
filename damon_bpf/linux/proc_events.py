"""Following the children of monitored processes through the kernel's process-events connector.

``damon-bpf monitor --follow-children PID`` also monitors the processes that PID and its descendants fork later,
and drops them when they exit; kernel DAMON does not do this at all (a ``vaddr`` target is one ``struct pid``).
The events come from the proc connector (``drivers/connector/cn_proc.c``): one netlink message per fork, exec
and exit of every task on the machine, to ``NETLINK_CONNECTOR`` sockets of group ``CN_IDX_PROC`` that asked with
``PROC_CN_MCAST_LISTEN``.

**Ids.** As in ``cn_proc.h``, a "pid" is the kernel's (a thread id) and a "tgid" is what user space calls the
process id; a fork whose ``child_pid != child_tgid`` is a new thread of an existing process.

**Stdlib only.** The protocol is 3 structs, spoken with the stdlib ``socket`` module (pyroute2's 0.9 sockets
cannot be read from a listener thread); the unit tests check the parser against pyroute2's decoder where it is
installed. See docs/design.md, section "Following children", for the message layout and the reasons.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

from damon_bpf.errors import DamonBpfError, NotSupportedError, PermissionDeniedError, TargetGoneError

__all__ = (
    "NETLINK_CONNECTOR",
    "CN_IDX_PROC",
    "CN_VAL_PROC",
    "PROC_CN_MCAST_LISTEN",
    "PROC_CN_MCAST_IGNORE",
    "PROC_EVENT_NONE",
    "PROC_EVENT_FORK",
    "PROC_EVENT_EXEC",
    "PROC_EVENT_EXIT",
    "ChangeKind",
    "ProcEvent",
    "ProcChange",
    "parse_proc_event",
    "parse_proc_events",
    "build_mcast_op",
    "scan_descendants",
    "DescendantTracker",
    "ChildFollower",
)

_log = logging.getLogger(__name__)

#: ``include/uapi/linux/netlink.h``
NETLINK_CONNECTOR = 11
#: ``include/uapi/linux/connector.h``: the proc connector's ``struct cb_id``; ``CN_IDX_PROC`` is also the
#: multicast group (bit mask ``1 << (CN_IDX_PROC - 1)``) the events go to.
CN_IDX_PROC = 0x1
CN_VAL_PROC = 0x1
#: ``enum proc_cn_mcast_op`` in ``include/uapi/linux/cn_proc.h``
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
#: ``enum what`` in ``struct proc_event`` (``include/uapi/linux/cn_proc.h``); ``NONE`` carries the answer to a
#: ``PROC_CN_MCAST_*`` request (``event_data.ack.err``).
PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

# include/uapi/linux/netlink.h
_NLMSG_ERROR = 0x2
_NLMSG_DONE = 0x3
_NLMSG_ALIGNTO = 4

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_PROC_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns (aligned(8): offset 8 in the struct)
_FORK = struct.Struct("=iiii")  # parent_pid, parent_tgid, child_pid, child_tgid
_EXEC = struct.Struct("=ii")  # process_pid, process_tgid
_EXIT = struct.Struct("=iiIIii")  # process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid
# Older kernels end the exit event after exit_signal (parent_pid and parent_tgid were appended later): accept both.
_EXIT_OLD = struct.Struct("=iiII")
_ACK = struct.Struct("=I")  # event_data.ack.err
_OP = struct.Struct("=I")  # enum proc_cn_mcast_op

_HDRS_SZ = _NLMSGHDR.size + _CN_MSG.size  # 36: where struct proc_event starts
_EVENT_DATA_OFF = _HDRS_SZ + _PROC_EVENT.size  # 52: where the event_data union starts

# /proc/<pid>/stat states of a task that has finished running (fs/proc/array.c task_state_array[])
_DEAD_STATES = frozenset("ZXx")

#: One netlink message a kernel ever sends here is ~80 bytes; leave room for a batch of them.
_RECV_BUF_SZ = 65536
#: Datagrams read per wake-up before rechecks and resyncs get their turn (a fork storm never empties the socket).
_MAX_DRAIN = 1024


class ChangeKind(str, enum.Enum):
    """What happened to a process: the ``PROC_EVENT_*`` kinds :class:`ChildFollower` reports."""

    FORK = "fork"
    EXEC = "exec"
    EXIT = "exit"


_KIND_OF_WHAT = {PROC_EVENT_FORK: ChangeKind.FORK, PROC_EVENT_EXEC: ChangeKind.EXEC, PROC_EVENT_EXIT: ChangeKind.EXIT}


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One fork, exec or exit event of the proc connector (``struct proc_event``), any task on the machine.

    :ivar kind: ``PROC_EVENT_FORK``/``EXEC``/``EXIT`` as a :class:`ChangeKind`
    :ivar pid: the task (thread) id: ``child_pid`` for a fork, ``process_pid`` otherwise
    :ivar tgid: its process id: ``child_tgid`` for a fork, ``process_tgid`` otherwise
    :ivar parent_pid: fork: the thread that forked (for a new thread, the process's parent: ``real_parent``);
        exit: the parent thread at exit time (0 on kernels whose exit event has no parent); exec: 0
    :ivar parent_tgid: the process of ``parent_pid`` (0 where ``parent_pid`` is 0)
    :ivar cpu: the CPU the event was sent from
    :ivar timestamp_ns: ``ktime_get_ns()`` (CLOCK_MONOTONIC) when the event was sent
    :ivar exit_code: exit: ``task->exit_code`` (a wait status, ``exit_code << 8`` or the signal); else 0
    :ivar exit_signal: exit: the signal the parent gets (``SIGCHLD``; -1 for a thread); else 0
    """

    kind: ChangeKind
    pid: int
    tgid: int
    parent_pid: int = 0
    parent_tgid: int = 0
    cpu: int = 0
    timestamp_ns: int = 0
    exit_code: int = 0
    exit_signal: int = 0

    @property
    def is_thread(self) -> bool:
        """True for a thread that is not its process's leader (a fork of a thread, or a thread's exit)."""
        return self.pid != self.tgid


@dataclass(frozen=True, slots=True)
class ProcChange:
    """A change in the set of processes :class:`ChildFollower` tracks.

    :ivar kind: ``"fork"``: a new descendant (``pid``) appeared; ``"exec"``: a tracked process ran ``execve()``;
        ``"exit"``: a tracked process (a root included) ended
    :ivar pid: the process id (tgid)
    :ivar ppid: the tracked process it descends from directly (its parent when it was forked, or found by a /proc
        scan), 0 for a root; not its parent now (orphans are re-parented to a reaper, but stay tracked)
    """

    kind: ChangeKind
    pid: int
    ppid: int


# --------------------------------------------------------------------------------------------------------------
# Parsing (pure)
# --------------------------------------------------------------------------------------------------------------


def _iter_nlmsgs(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    # Split a datagram into its netlink messages: (type, seq, sender pid, whole message); stops at a truncated one
    view = memoryview(data)
    off = 0
    while off + _NLMSGHDR.size <= len(view):
        length, msg_type, _flags, seq, pid = _NLMSGHDR.unpack_from(view, off)
        if length < _NLMSGHDR.size or off + length > len(view):
            return
        yield msg_type, seq, pid, view[off:off + length]
        off += (length + _NLMSG_ALIGNTO - 1) & ~(_NLMSG_ALIGNTO - 1)


def _proc_payload(msg: memoryview) -> tuple[int, int, int, int, int, memoryview] | None:
    # (cn seq, cn ack, what, cpu, timestamp_ns, event_data) of one proc connector message, None for anything else
    if len(msg) < _EVENT_DATA_OFF:
        return None
    msg_type = _NLMSGHDR.unpack_from(msg, 0)[1]
    if msg_type == _NLMSG_ERROR:
        return None
    idx, val, seq, ack, cn_len, _flags = _CN_MSG.unpack_from(msg, _NLMSGHDR.size)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) or cn_len < _PROC_EVENT.size:
        return None
    end = min(len(msg), _HDRS_SZ + cn_len)
    what, cpu, timestamp_ns = _PROC_EVENT.unpack_from(msg, _HDRS_SZ)
    return seq, ack, what, cpu, timestamp_ns, msg[_EVENT_DATA_OFF:end]


def _event_of(what: int, cpu: int, timestamp_ns: int, data: memoryview) -> ProcEvent | None:
    if what == PROC_EVENT_FORK and len(data) >= _FORK.size:
        ppid, ptgid, pid, tgid = _FORK.unpack_from(data)
        return ProcEvent(ChangeKind.FORK, pid, tgid, ppid, ptgid, cpu, timestamp_ns)
    if what == PROC_EVENT_EXEC and len(data) >= _EXEC.size:
        pid, tgid = _EXEC.unpack_from(data)
        return ProcEvent(ChangeKind.EXEC, pid, tgid, 0, 0, cpu, timestamp_ns)
    if what == PROC_EVENT_EXIT:
        if len(data) >= _EXIT.size:
            pid, tgid, code, sig, ppid, ptgid = _EXIT.unpack_from(data)
        elif len(data) >= _EXIT_OLD.size:
            pid, tgid, code, sig = _EXIT_OLD.unpack_from(data)
            ppid = ptgid = 0
        else:
            return None
        # exit_signal is an int in the kernel (-1 for threads) sent through a __u32: give it its sign back
        sig = sig - (1 << 32) if sig >= 1 << 31 else sig
        return ProcEvent(ChangeKind.EXIT, pid, tgid, ppid, ptgid, cpu, timestamp_ns, code, sig)
    return None


def parse_proc_event(data: bytes) -> ProcEvent | None:
    """Parse the first netlink message of *data*, a proc connector message as laid out in the module docstring.

    :param data: bytes received from a ``NETLINK_CONNECTOR`` socket (host byte order)
    :return: the event, or None for any message that is not a fork, exec or exit event: the answers to
        ``PROC_CN_MCAST_*`` requests (``PROC_EVENT_NONE``), the other kinds (uid, gid, sid, ptrace, comm,
        coredump), other connectors' messages, netlink errors, and truncated messages
    """
    for _type, _seq, _pid, msg in _iter_nlmsgs(data):
        payload = _proc_payload(msg)
        if payload is None:
            return None
        _cn_seq, _cn_ack, what, cpu, timestamp_ns, event_data = payload
        return _event_of(what, cpu, timestamp_ns, event_data)
    return None


def parse_proc_events(data: bytes) -> list[ProcEvent]:
    """Parse every netlink message of a datagram (the kernel sends one per datagram, but netlink allows more).

    :return: the fork, exec and exit events, in order; other messages are skipped as in :func:`parse_proc_event`
    """
    events = []
    for _type, _seq, _pid, msg in _iter_nlmsgs(data):
        payload = _proc_payload(msg)
        if payload is not None:
            ev = _event_of(*payload[2:])
            if ev is not None:
                events.append(ev)
    return events


def _parse_ack(data: bytes) -> tuple[int, int, int] | None:
    # (cn seq, cn ack, err) of a PROC_EVENT_NONE answer (cn_proc_ack() in drivers/connector/cn_proc.c), or None
    for _type, _seq, _pid, msg in _iter_nlmsgs(data):
        payload = _proc_payload(msg)
        if payload is None:
            continue
        seq, ack, what, _cpu, _ts, event_data = payload
        if what == PROC_EVENT_NONE and len(event_data) >= _ACK.size:
            return seq, ack, _ACK.unpack_from(event_data)[0]
    return None


def build_mcast_op(op: int, seq: int = 0, ack: int = 0) -> bytes:
    """The request that subscribes (``PROC_CN_MCAST_LISTEN``) or unsubscribes (``PROC_CN_MCAST_IGNORE``).

    The kernel answers on the multicast group with a ``PROC_EVENT_NONE`` message whose ``cn_msg.seq`` is *seq*,
    whose ``cn_msg.ack`` is ``ack + 1`` and whose ``event_data.ack.err`` is 0 or a positive errno.

    :param op: ``enum proc_cn_mcast_op``
    """
    body = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, ack, _OP.size, 0) + _OP.pack(op)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _NLMSG_DONE, 0, seq, os.getpid()) + body


# --------------------------------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    # None when the process went away (or the file is unreadable: a hidepid= mount); the scan is best effort
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError as err:
        if err.errno in (errno.ESRCH, errno.ENOENT, errno.EACCES):
            return None
        raise


def _state_and_ppid(stat: str) -> tuple[str, int] | None:
    # fields 3 (state) and 4 (ppid) of /proc/<pid>/stat, found after the last ")" since comm is free text
    _head, sep, tail = stat.rpartition(")")
    fields = tail.split()
    if not sep or len(fields) < 2:
        return None
    try:
        return fields[0], int(fields[1])
    except ValueError:
        return None


def _scan_procs(proc_root: str) -> dict[int, int]:
    # Every live process (tgid -> ppid) under proc_root; zombies are left out (/proc lists tgids only)
    procs: dict[int, int] = {}
    try:
        names = os.listdir(proc_root)
    except OSError as err:
        raise NotSupportedError(f"cannot list {proc_root}: {err.strerror}") from err
    for name in names:
        if not name.isdigit():
            continue
        stat = _read_text(f"{proc_root}/{name}/stat")
        parsed = _state_and_ppid(stat) if stat is not None else None
        if parsed is not None and parsed[0] not in _DEAD_STATES:
            procs[int(name)] = parsed[1]
    return procs


def _descendants(roots: Iterable[int], procs: Mapping[int, int]) -> dict[int, int]:
    # Descendants (tgid -> parent) of roots in a tgid -> ppid map, roots excluded
    children: dict[int, list[int]] = {}
    for pid, ppid in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    seen = set(roots)
    frontier = list(seen)
    while frontier:
        parent = frontier.pop()
        for child in children.get(parent, ()):
            if child not in seen:
                seen.add(child)
                found[child] = parent
                frontier.append(child)
    return found


def scan_descendants(root_pids: Iterable[int], proc_root: str = "/proc") -> set[int]:
    """The live descendants of *root_pids* now, from the ``ppid`` field of every ``/proc/<pid>/stat``.

    A process whose parent exited has been re-parented (to init or a ``PR_SET_CHILD_SUBREAPER``), so it is no
    longer found from its original ancestors: the snapshot sees only unbroken parent chains. Zombies are left out.

    :param root_pids: process ids (tgids); they are not part of the result
    :return: the process ids of the children, grandchildren, ... of the roots
    :raises NotSupportedError: *proc_root* cannot be listed (no procfs)
    """
    return set(_descendants(root_pids, _scan_procs(proc_root)))


def _process_alive(tgid: int, proc_root: str = "/proc") -> bool:
    # A process lives while one of its tasks has not finished: its leader may have exited alone (pthread_exit(),
    # or a non-leader thread is execve()-ing and takes over the leader's pid in de_thread())
    try:
        tids = os.listdir(f"{proc_root}/{tgid}/task")
    except OSError:
        return False
    for tid in tids:
        stat = _read_text(f"{proc_root}/{tgid}/task/{tid}/stat")
        parsed = _state_and_ppid(stat) if stat is not None else None
        if parsed is not None and parsed[0] not in _DEAD_STATES:
            return True
    return False


# --------------------------------------------------------------------------------------------------------------
# Descendant tracking (pure: fed events, asked about liveness)
# --------------------------------------------------------------------------------------------------------------


class DescendantTracker:
    """The set of processes descending from some roots, kept up to date from :class:`ProcEvent` s.

    Not thread-safe; :class:`ChildFollower` calls it under its lock. The rules:

    - a fork whose ``parent_tgid`` is tracked adds ``child_tgid`` (a change ``"fork"``); a fork with
      ``child_pid != child_tgid`` creates a thread of an existing process and is ignored;
    - an exit with ``pid == tgid`` (the leader thread) of a tracked process removes it (``"exit"``), unless
      *is_alive* says other threads still run it: then it stays, and :meth:`recheck` removes it once it is dead
      (a leader's exit event is sent from ``do_exit()`` before the task is a zombie, so a check at that moment
      can still see it running). Exits of other threads are ignored;
    - an exec of a tracked process is reported (``"exec"``);
    - events about untracked processes are ignored.

    :param root_pids: the processes (tgids) to follow; they are tracked too, with parent 0
    :param is_alive: whether a process (tgid) whose leader exited still runs; the default says no
    """

    def __init__(self, root_pids: Iterable[int], *, is_alive: Callable[[int], bool] | None = None) -> None:
        self._parent: dict[int, int] = {int(pid): 0 for pid in root_pids}
        self._roots = frozenset(self._parent)
        self._pending: set[int] = set()  # tracked processes whose leader exited while other threads ran
        self._is_alive = is_alive if is_alive is not None else (lambda tgid: False)

    @property
    def roots(self) -> frozenset[int]:
        return self._roots

    def tracked(self) -> set[int]:
        """The tracked processes: the roots and descendants that have not exited."""
        return set(self._parent)

    def parent_of(self, pid: int) -> int | None:
        """The tracked parent of *pid* (0 for a root), None if *pid* is not tracked."""
        return self._parent.get(pid)

    def seed(self, descendants: Mapping[int, int]) -> None:
        """Track processes found by a scan (child tgid -> parent tgid), reporting nothing."""
        for pid, ppid in descendants.items():
            self._parent.setdefault(pid, ppid)

    def feed(self, ev: ProcEvent) -> list[ProcChange]:
        """Apply one event.

        :return: the changes it makes to the tracked set (at most two: a reused pid's exit, then the fork)
        """
        if ev.kind is ChangeKind.FORK:
            return self._fork(ev)
        if ev.kind is ChangeKind.EXEC:
            ppid = self._parent.get(ev.tgid)
            if ppid is None:
                return []
            self._pending.discard(ev.tgid)  # the exec'ing thread now leads the process
            return [ProcChange(ChangeKind.EXEC, ev.tgid, ppid)]
        if ev.kind is ChangeKind.EXIT:
            if ev.is_thread:
                return self._recheck_one(ev.tgid) if ev.tgid in self._pending else []
            if ev.tgid not in self._parent:
                return []
            if self._is_alive(ev.tgid):
                self._pending.add(ev.tgid)
                return []
            return [self._remove(ev.tgid)]
        return []

    def _fork(self, ev: ProcEvent) -> list[ProcChange]:
        if ev.is_thread:
            return []
        changes: list[ProcChange] = []
        parent_tracked = ev.parent_tgid in self._parent
        if ev.tgid in self._parent:
            if parent_tracked:
                return []  # already found by a scan that raced with this event
            # the pid of a tracked process that died unseen (an overrun) was reused by an unrelated process
            changes.append(self._remove(ev.tgid))
        if parent_tracked:
            self._parent[ev.tgid] = ev.parent_tgid
            changes.append(ProcChange(ChangeKind.FORK, ev.tgid, ev.parent_tgid))
        return changes

    def _remove(self, tgid: int) -> ProcChange:
        self._pending.discard(tgid)
        return ProcChange(ChangeKind.EXIT, tgid, self._parent.pop(tgid))

    def _recheck_one(self, tgid: int) -> list[ProcChange]:
        if tgid in self._parent and not self._is_alive(tgid):
            return [self._remove(tgid)]
        return []

    def recheck(self) -> list[ProcChange]:
        """Remove the processes whose leader exited earlier and that *is_alive* now says are dead.

        :return: their ``"exit"`` changes
        """
        changes: list[ProcChange] = []
        for tgid in sorted(self._pending):
            changes += self._recheck_one(tgid)
        return changes

    @property
    def nr_pending(self) -> int:
        """How many tracked processes have an exited leader but were still running at the last check."""
        return len(self._pending)

    def resync(self, procs: Mapping[int, int]) -> list[ProcChange]:
        """Bring the set up to date with a snapshot after events were lost (an overrun).

        Tracked processes missing from the snapshot (and not alive by *is_alive*) exit; live descendants of the
        remaining ones that are not tracked are added.

        :param procs: every live process, tgid -> ppid (a /proc scan, zombies left out)
        :return: the ``"exit"`` changes, then the ``"fork"`` changes, parents before children
        """
        changes: list[ProcChange] = []
        for tgid in sorted(self._parent):
            if tgid not in procs and not self._is_alive(tgid):
                changes.append(self._remove(tgid))
        found = _descendants(self._parent, procs)
        # _descendants() walks parents first; keep that order so a consumer sees a parent before its children
        for pid, ppid in found.items():
            if pid not in self._parent:
                self._parent[pid] = ppid
                changes.append(ProcChange(ChangeKind.FORK, pid, ppid))
        return changes


# --------------------------------------------------------------------------------------------------------------
# The listener
# --------------------------------------------------------------------------------------------------------------

_PERM_MSG = "following children needs root (CAP_NET_ADMIN) for the process-events connector"
_NOSUP_MSG = "the kernel has no process-events connector (CONFIG_CONNECTOR and CONFIG_PROC_EVENTS)"


def _open_connector_socket() -> socket.socket:
    family = getattr(socket, "AF_NETLINK", None)
    if family is None:
        raise NotSupportedError("following children needs Linux netlink (the process-events connector)")
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as err:
        raise _translate(err) from err
    try:
        sock.bind((0, CN_IDX_PROC))
    except OSError as err:
        sock.close()
        raise _translate(err) from err
    return sock


def _translate(err: OSError) -> DamonBpfError:
    if err.errno in (errno.EPERM, errno.EACCES):
        return PermissionDeniedError(_PERM_MSG)
    if err.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
        return NotSupportedError(_NOSUP_MSG)
    if err.errno == errno.ECONNREFUSED:
        # the connector's kernel socket exists in the initial network namespace only (cn_init())
        return NotSupportedError("the process-events connector answers only in the initial network namespace")
    return DamonBpfError(f"process-events connector: {os.strerror(err.errno or 0)}")


class ChildFollower:
    """Follows the processes that some roots fork, and their exits, through the proc connector.

    ``start()`` subscribes, scans ``/proc`` for the descendants that already exist, then runs a daemon thread that
    keeps a :class:`DescendantTracker` up to date. :meth:`poll` hands out the changes since the last call;
    :meth:`tracked` is the current set. Apply changes idempotently: a process found by the initial scan may also
    be reported by a late ``"fork"``. On overflow (``ENOBUFS``) :attr:`nr_overruns` counts it and a ``/proc``
    resync reports the differences. Permission, namespace and orphan caveats: docs/design.md, "Following children".

    :param root_pids: the processes (tgids) whose descendants to follow; they are tracked too, and their exits
        reported
    :param proc_root: where procfs is mounted
    :param rcvbuf_bytes: the socket's receive buffer (``SO_RCVBUFFORCE`` when permitted, else ``SO_RCVBUF``,
        capped by ``net.core.rmem_max``); every task's fork and exit on the machine goes through it
    :param recheck_interval_s: how often processes whose leader exited before the rest are checked again
    :param ack_timeout_s: how long to wait for the kernel's answer to the subscription
    :param socket_factory: opens the connector socket, bound to the ``CN_IDX_PROC`` group (tests pass a fake)
    """

    def __init__(
        self,
        root_pids: Iterable[int],
        *,
        proc_root: str = "/proc",
        rcvbuf_bytes: int = 4 << 20,
        recheck_interval_s: float = 0.1,
        ack_timeout_s: float = 2.0,
        socket_factory: Callable[[], socket.socket] | None = None,
    ) -> None:
        self._roots = tuple(dict.fromkeys(int(pid) for pid in root_pids))
        self._proc_root = proc_root
        self._rcvbuf_bytes = rcvbuf_bytes
        self._recheck_interval_s = recheck_interval_s
        self._ack_timeout_s = ack_timeout_s
        self._socket_factory = socket_factory if socket_factory is not None else _open_connector_socket
        self._tracker = DescendantTracker(self._roots, is_alive=lambda tgid: _process_alive(tgid, proc_root))
        self._cond = threading.Condition()
        self._changes: list[ProcChange] = []
        self._error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._nr_overruns = 0
        self._nr_events = 0

    # -- public API --------------------------------------------------------------------------------------------

    @property
    def root_pids(self) -> tuple[int, ...]:
        return self._roots

    @property
    def nr_overruns(self) -> int:
        """How many times the kernel dropped events because the receive buffer was full (``ENOBUFS``)."""
        return self._nr_overruns

    @property
    def nr_events(self) -> int:
        """How many fork/exec/exit events (of any process on the machine) the listener has parsed."""
        return self._nr_events

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Subscribe to the process events, scan for the existing descendants and start the listener thread.

        :raises PermissionDeniedError: the kernel refused the subscription (not root / no ``CAP_NET_ADMIN``)
        :raises NotSupportedError: no process-events connector (``EPROTONOSUPPORT``: kernel without
            ``CONFIG_PROC_EVENTS``; or no answer to the subscription), or not in the initial network namespace
        :raises TargetGoneError: a root process does not exist
        :raises DamonBpfError: already started, or another socket error
        """
        if self._sock is not None:
            raise DamonBpfError("ChildFollower already started")
        self._stopping = False
        sock = self._socket_factory()
        self._sock = sock
        try:
            self._set_rcvbuf(sock)
            early = self._subscribe(sock)
            procs = _scan_procs(self._proc_root)
            for pid in self._roots:
                if pid not in procs and not _process_alive(pid, self._proc_root):
                    raise TargetGoneError(pid)
            with self._cond:
                self._tracker.seed(_descendants(self._roots, procs))
                for ev in early:
                    self._changes += self._tracker.feed(ev)
            self._wake_r, self._wake_w = os.pipe()
            self._thread = threading.Thread(target=self._run, name="damon-bpf-proc-events", daemon=True)
            self._thread.start()
        except BaseException:
            self._close()
            raise
        _log.debug("following children of %s: %d tracked", self._roots, len(self.tracked()))

    def stop(self) -> None:
        """Stop the listener thread, unsubscribe and close the socket (idempotent)."""
        self._stopping = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                _log.warning("process-events listener did not stop")
            self._thread = None
        self._close()

    def __enter__(self) -> ChildFollower:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def poll(self, timeout_s: float = 0.0) -> list[ProcChange]:
        """The changes since the last call, oldest first.

        :param timeout_s: when there are none yet, wait up to this long for the first one
        :raises DamonBpfError: the listener thread failed (the error is chained)
        """
        with self._cond:
            if not self._changes and self._error is None and timeout_s > 0 and self.running:
                self._cond.wait_for(lambda: bool(self._changes) or self._error is not None, timeout_s)
            changes, self._changes = self._changes, []
            if self._error is not None and not changes:
                raise DamonBpfError(f"process-events listener failed: {self._error}") from self._error
        return changes

    def tracked(self) -> set[int]:
        """The processes tracked now: the roots and their descendants that have not exited."""
        with self._cond:
            return self._tracker.tracked()

    # -- internals ---------------------------------------------------------------------------------------------

    def _set_rcvbuf(self, sock: socket.socket) -> None:
        # SO_RCVBUFFORCE (CAP_NET_ADMIN) ignores net.core.rmem_max; SO_RCVBUF is capped by it
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, self._rcvbuf_bytes)
                return
            except OSError:
                continue

    def _subscribe(self, sock: socket.socket) -> list[ProcEvent]:
        # Send PROC_CN_MCAST_LISTEN and wait for the kernel's answer; events that arrive first are kept
        seq = random.getrandbits(31) | 1
        ack = random.getrandbits(31)
        try:
            sock.sendto(build_mcast_op(PROC_CN_MCAST_LISTEN, seq, ack), (0, 0))
        except OSError as err:
            raise _translate(err) from err
        early: list[ProcEvent] = []
        deadline = time.monotonic() + self._ack_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                # cn_proc_mcast_ctl() drops requests from outside the initial user and pid namespaces unanswered
                raise NotSupportedError(
                    f"no answer from the process-events connector in {self._ack_timeout_s:g} s (kernel without"
                    " CONFIG_PROC_EVENTS, or not in the initial user and pid namespaces)")
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                continue
            try:
                data = sock.recv(_RECV_BUF_SZ)
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    self._nr_overruns += 1  # the scan that follows the subscription covers it
                    continue
                raise _translate(err) from err
            answer = _parse_ack(data)
            # Answers to other listeners' requests reach us too (they go to the multicast group). Only cn_msg.ack
            # identifies ours: send_msg() in drivers/connector/cn_proc.c overwrites the seq cn_proc_ack() set
            # with its per-CPU event counter.
            if answer is not None and answer[1] == (ack + 1) & 0xFFFFFFFF:
                err_no = answer[2]
                if err_no in (errno.EPERM, errno.EACCES):
                    raise PermissionDeniedError(_PERM_MSG)
                if err_no != 0:
                    raise DamonBpfError(f"process-events connector refused to subscribe: {os.strerror(err_no)}")
                return early
            events = parse_proc_events(data)
            self._nr_events += len(events)
            early += events

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        timeout_ms = max(1, int(self._recheck_interval_s * 1000))
        try:
            while not self._stopping:
                ready = poller.poll(timeout_ms if self._tracker.nr_pending else None)
                if self._stopping:
                    break
                if any(fd == sock.fileno() for fd, _ in ready):
                    self._drain(sock)
                if self._tracker.nr_pending:
                    with self._cond:
                        self._publish(self._tracker.recheck())
        except Exception as err:  # reported by poll(), which raises it chained
            _log.error("process-events listener failed: %s", err)
            with self._cond:
                self._error = err
                self._cond.notify_all()

    def _drain(self, sock: socket.socket) -> None:
        overrun = False
        for _ in range(_MAX_DRAIN):
            if self._stopping:
                break
            try:
                data, addr = sock.recvfrom(_RECV_BUF_SZ, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped messages: keep reading what it did queue, then resync from /proc
                overrun = True
                self._nr_overruns += 1
                continue
            if isinstance(addr, tuple) and addr and addr[0] != 0:
                continue  # not from the kernel
            events = parse_proc_events(data)
            if not events:
                continue
            self._nr_events += len(events)
            with self._cond:
                for ev in events:
                    self._publish(self._tracker.feed(ev))
        if overrun:
            _log.warning("process-events overrun (%d so far): resyncing from %s; raise rcvbuf_bytes (now %d)",
                         self._nr_overruns, self._proc_root, self._rcvbuf_bytes)
            procs = _scan_procs(self._proc_root)
            with self._cond:
                self._publish(self._tracker.resync(procs))

    def _publish(self, changes: list[ProcChange]) -> None:
        # caller holds self._cond
        if changes:
            self._changes += changes
            self._cond.notify_all()

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                # Older kernels count listeners globally and only a PROC_CN_MCAST_IGNORE lowers the count
                sock.sendto(build_mcast_op(PROC_CN_MCAST_IGNORE), (0, 0))
            except OSError:
                pass
            sock.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
