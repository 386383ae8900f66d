"""damon_bpf.linux.proc_events without the kernel: hand-built proc connector messages, descendant tracking fed
synthetic events, /proc scans of a fake tree, and ChildFollower driven through a fake connector socket."""

from __future__ import annotations

import errno
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from damon_bpf.errors import DamonBpfError, NotSupportedError, PermissionDeniedError, TargetGoneError
from damon_bpf.linux import proc_events
from damon_bpf.linux.proc_events import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    PROC_CN_MCAST_IGNORE,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONE,
    ChangeKind,
    ChildFollower,
    DescendantTracker,
    ProcChange,
    ProcEvent,
    build_mcast_op,
    parse_proc_event,
    parse_proc_events,
    scan_descendants,
)

FORK, EXEC, EXIT = ChangeKind.FORK, ChangeKind.EXEC, ChangeKind.EXIT
PROC_EVENT_COMM = 0x00000200  # include/uapi/linux/cn_proc.h
NLMSG_ERROR, NLMSG_DONE = 2, 3

# --------------------------------------------------------------------------------------------------------------
# Hand-built messages, laid out as in include/uapi/linux/{netlink,connector,cn_proc}.h (host byte order)
# --------------------------------------------------------------------------------------------------------------


def nlmsg(cn_payload: bytes, *, idx: int = CN_IDX_PROC, val: int = CN_VAL_PROC, seq: int = 0, ack: int = 0,
          nl_type: int = NLMSG_DONE) -> bytes:
    """struct nlmsghdr + struct cn_msg + payload."""
    cn = struct.pack("=IIIIHH", idx, val, seq, ack, len(cn_payload), 0) + cn_payload
    return struct.pack("=IHHII", 16 + len(cn), nl_type, 0, seq, 0) + cn


def proc_event(what: int, event_data: bytes, *, cpu: int = 3, ts: int = 123456789) -> bytes:
    """struct proc_event: what, cpu, timestamp_ns (aligned(8), at offset 8), then the event_data union."""
    return struct.pack("=IIQ", what, cpu, ts) + event_data


def fork_msg(parent_pid: int, parent_tgid: int, child_pid: int, child_tgid: int, **kw: int) -> bytes:
    return nlmsg(proc_event(PROC_EVENT_FORK, struct.pack("=iiii", parent_pid, parent_tgid, child_pid, child_tgid)),
                 **kw)


def exec_msg(pid: int, tgid: int) -> bytes:
    return nlmsg(proc_event(PROC_EVENT_EXEC, struct.pack("=ii", pid, tgid)))


def exit_msg(pid: int, tgid: int, code: int = 0, sig: int = 17, ppid: int = 1, ptgid: int = 1) -> bytes:
    return nlmsg(proc_event(PROC_EVENT_EXIT, struct.pack("=iiIIii", pid, tgid, code, sig & 0xFFFFFFFF, ppid, ptgid)))


def ack_msg(ack: int, err: int = 0, seq: int = 77) -> bytes:
    # cn_proc_ack(): what = PROC_EVENT_NONE, cpu = -1, event_data.ack.err, cn_msg.ack = request's ack + 1
    return nlmsg(proc_event(PROC_EVENT_NONE, struct.pack("=I", err) + bytes(20), cpu=0xFFFFFFFF), seq=seq,
                 ack=ack)


# --------------------------------------------------------------------------------------------------------------
# parse_proc_event
# --------------------------------------------------------------------------------------------------------------


def test_parse_fork() -> None:
    ev = parse_proc_event(fork_msg(100, 100, 101, 101))
    assert ev == ProcEvent(FORK, pid=101, tgid=101, parent_pid=100, parent_tgid=100, cpu=3, timestamp_ns=123456789)
    assert not ev.is_thread


def test_parse_fork_of_thread() -> None:
    # A new thread 205 of process 200, created by thread 201; the parent fields are the process's real_parent
    ev = parse_proc_event(fork_msg(1, 1, 205, 200))
    assert ev is not None and ev.kind is FORK and ev.is_thread
    assert (ev.pid, ev.tgid, ev.parent_pid, ev.parent_tgid) == (205, 200, 1, 1)


def test_parse_exec() -> None:
    assert parse_proc_event(exec_msg(300, 300)) == ProcEvent(EXEC, 300, 300, 0, 0, 3, 123456789)


def test_parse_exit() -> None:
    ev = parse_proc_event(exit_msg(400, 400, code=9, sig=17, ppid=41, ptgid=40))
    assert ev == ProcEvent(EXIT, 400, 400, 41, 40, 3, 123456789, exit_code=9, exit_signal=17)


def test_parse_exit_of_thread_has_signal_minus_one() -> None:
    ev = parse_proc_event(exit_msg(401, 400, sig=-1))
    assert ev is not None and ev.is_thread and ev.exit_signal == -1


def test_parse_exit_old_layout_without_parent() -> None:
    # Older kernels stop the exit event after exit_signal
    ev = parse_proc_event(nlmsg(proc_event(PROC_EVENT_EXIT, struct.pack("=iiII", 500, 500, 256, 17))))
    assert ev == ProcEvent(EXIT, 500, 500, 0, 0, 3, 123456789, exit_code=256, exit_signal=17)


def test_parse_trailing_union_bytes_ignored() -> None:
    # The kernel sends sizeof(struct proc_event) bytes whatever the kind: the union is padded to its largest member
    data = nlmsg(proc_event(PROC_EVENT_EXEC, struct.pack("=ii", 7, 7) + bytes(16)))
    assert parse_proc_event(data) == ProcEvent(EXEC, 7, 7, 0, 0, 3, 123456789)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(ack_msg(1), id="ack"),
        pytest.param(nlmsg(proc_event(PROC_EVENT_COMM, struct.pack("=ii16s", 1, 1, b"x"))), id="comm"),
        pytest.param(fork_msg(1, 1, 2, 2, idx=0xA), id="other-connector"),
        pytest.param(fork_msg(1, 1, 2, 2, nl_type=NLMSG_ERROR), id="nlmsg-error"),
        pytest.param(fork_msg(1, 1, 2, 2)[:50], id="truncated-header"),
        pytest.param(fork_msg(1, 1, 2, 2)[:60], id="truncated-message"),
        pytest.param(b"", id="empty"),
    ],
)
def test_parse_not_an_event(data: bytes) -> None:
    assert parse_proc_event(data) is None
    assert parse_proc_events(data) == []


def test_parse_short_union_is_none() -> None:
    # cn_msg.len says the fork payload stops after two fields: not enough for a fork event
    assert parse_proc_event(nlmsg(proc_event(PROC_EVENT_FORK, struct.pack("=ii", 1, 1)))) is None


def test_parse_events_several_messages_in_one_datagram() -> None:
    a, b, c = fork_msg(1, 1, 2, 2), ack_msg(5), exit_msg(2, 2)
    evs = parse_proc_events(a + b + c)
    assert [(e.kind, e.pid) for e in evs] == [(FORK, 2), (EXIT, 2)]
    assert parse_proc_event(a + c) == parse_proc_event(a)  # the first message only


def test_build_mcast_op_layout() -> None:
    data = build_mcast_op(PROC_CN_MCAST_LISTEN, seq=5, ack=9)
    assert len(data) == 16 + 20 + 4
    length, nl_type, flags, seq, _pid = struct.unpack_from("=IHHII", data, 0)
    assert (length, nl_type, flags, seq) == (40, NLMSG_DONE, 0, 5)
    assert struct.unpack_from("=IIIIHH", data, 16) == (CN_IDX_PROC, CN_VAL_PROC, 5, 9, 4, 0)
    assert struct.unpack_from("=I", data, 36) == (PROC_CN_MCAST_LISTEN,)
    assert struct.unpack_from("=I", build_mcast_op(PROC_CN_MCAST_IGNORE), 36) == (PROC_CN_MCAST_IGNORE,)


def test_parser_agrees_with_pyroute2() -> None:
    cn_proc = pytest.importorskip("pyroute2.netlink.connector.cn_proc")
    cases = [
        (cn_proc.proc_event_fork, fork_msg(10, 11, 12, 13),
         {"parent_pid": 10, "parent_tgid": 11, "child_pid": 12, "child_tgid": 13}),
        (cn_proc.proc_event_exec, exec_msg(20, 21), {"process_pid": 20, "process_tgid": 21}),
        (cn_proc.proc_event_exit, exit_msg(30, 31, code=2, sig=17, ppid=32, ptgid=33),
         {"process_pid": 30, "process_tgid": 31, "exit_code": 2, "exit_signal": 17, "parent_pid": 32,
          "parent_tgid": 33}),
    ]
    for cls, data, fields in cases:
        msg = cls(data)
        msg.decode()
        assert msg["idx"] == CN_IDX_PROC and msg["cpu"] == 3 and msg["timestamp_ns"] == 123456789
        assert {k: msg[k] for k in fields} == fields
        assert parse_proc_event(data) is not None
    # and pyroute2's own subscription request is the one we build (its pid and seq aside)
    ctl = cn_proc.proc_event_control()
    ctl["action"], ctl["idx"], ctl["val"], ctl["len"] = PROC_CN_MCAST_LISTEN, CN_IDX_PROC, CN_VAL_PROC, 4
    ctl["header"]["type"] = NLMSG_DONE
    ctl.encode()
    ours = build_mcast_op(PROC_CN_MCAST_LISTEN)
    assert bytes(ctl.data[16:40]) == ours[16:40] and struct.unpack_from("=I", ctl.data, 0)[0] == len(ours)


# --------------------------------------------------------------------------------------------------------------
# DescendantTracker
# --------------------------------------------------------------------------------------------------------------


def fork(parent: int, child: int, child_tid: int | None = None) -> ProcEvent:
    return ProcEvent(FORK, child_tid if child_tid is not None else child, child, parent, parent)


def ex(tgid: int, tid: int | None = None) -> ProcEvent:
    return ProcEvent(EXIT, tid if tid is not None else tgid, tgid)


def feed_all(tr: DescendantTracker, events: list[ProcEvent]) -> list[ProcChange]:
    out: list[ProcChange] = []
    for ev in events:
        out += tr.feed(ev)
    return out


def test_tracker_children_and_grandchildren() -> None:
    tr = DescendantTracker([100])
    changes = feed_all(tr, [fork(100, 101), fork(101, 102), fork(102, 103)])
    assert changes == [ProcChange(FORK, 101, 100), ProcChange(FORK, 102, 101), ProcChange(FORK, 103, 102)]
    assert tr.tracked() == {100, 101, 102, 103}
    assert tr.parent_of(103) == 102 and tr.parent_of(100) == 0 and tr.parent_of(999) is None


def test_tracker_ignores_threads() -> None:
    tr = DescendantTracker([100])
    # thread 150 of the root (its fork event names the root's own parent), thread 151 of a child
    assert feed_all(tr, [fork(1, 100, child_tid=150), fork(100, 101), fork(100, 101, child_tid=151)]) == [
        ProcChange(FORK, 101, 100)]
    assert tr.tracked() == {100, 101}
    # a thread forks a process: parent_tgid is the tracked process
    assert tr.feed(ProcEvent(FORK, 102, 102, 151, 101)) == [ProcChange(FORK, 102, 101)]
    # thread exits remove nothing
    assert feed_all(tr, [ex(100, tid=150), ex(101, tid=151)]) == []
    assert tr.tracked() == {100, 101, 102}


def test_tracker_exit_removes() -> None:
    tr = DescendantTracker([100])
    feed_all(tr, [fork(100, 101), fork(101, 102)])
    assert tr.feed(ex(101)) == [ProcChange(EXIT, 101, 100)]
    assert tr.tracked() == {100, 102}  # the orphan stays followed
    assert tr.feed(fork(102, 103)) == [ProcChange(FORK, 103, 102)]
    assert tr.feed(ex(101)) == []  # twice: nothing
    assert tr.feed(ex(100)) == [ProcChange(EXIT, 100, 0)]  # a root's exit is reported too
    assert tr.tracked() == {102, 103}


def test_tracker_ignores_unrelated() -> None:
    tr = DescendantTracker([100])
    events = [fork(1, 500), fork(500, 501), ProcEvent(EXEC, 501, 501), ex(501), ex(500), fork(7, 8, 9)]
    assert feed_all(tr, events) == []
    assert tr.tracked() == {100}


def test_tracker_exec_reported_for_tracked_only() -> None:
    tr = DescendantTracker([100])
    tr.feed(fork(100, 101))
    assert tr.feed(ProcEvent(EXEC, 101, 101)) == [ProcChange(EXEC, 101, 100)]
    assert tr.feed(ProcEvent(EXEC, 100, 100)) == [ProcChange(EXEC, 100, 0)]
    assert tr.feed(ProcEvent(EXEC, 600, 600)) == []


def test_tracker_seeded_child_not_reported_twice() -> None:
    # start() listens, then scans: a fork seen by both must not be reported again
    tr = DescendantTracker([100])
    tr.seed({101: 100, 102: 101})
    assert tr.tracked() == {100, 101, 102}
    assert tr.feed(fork(100, 101)) == []
    assert tr.feed(ex(102)) == [ProcChange(EXIT, 102, 101)]


def test_tracker_reused_pid() -> None:
    # 101 died unseen and an unrelated process got its pid: drop it
    tr = DescendantTracker([100])
    tr.feed(fork(100, 101))
    assert tr.feed(fork(1, 101)) == [ProcChange(EXIT, 101, 100)]
    assert tr.tracked() == {100}


def test_tracker_leader_exits_while_threads_run() -> None:
    # pthread_exit() in the leader, or a non-leader thread execve()-ing: the exit event has pid == tgid but
    # the process lives on until is_alive says otherwise
    alive = {101}
    tr = DescendantTracker([100], is_alive=lambda tgid: tgid in alive)
    tr.feed(fork(100, 101))
    assert tr.feed(ex(101)) == [] and tr.tracked() == {100, 101} and tr.nr_pending == 1
    assert tr.recheck() == []
    assert tr.feed(ex(101, tid=111)) == []  # another thread exits; some still run
    alive.clear()
    assert tr.feed(ex(101, tid=112)) == [ProcChange(EXIT, 101, 100)]  # the last one
    assert tr.nr_pending == 0 and tr.tracked() == {100}


def test_tracker_pending_resolved_by_recheck_or_exec() -> None:
    alive = {101, 102}
    tr = DescendantTracker([100], is_alive=lambda tgid: tgid in alive)
    feed_all(tr, [fork(100, 101), fork(100, 102), ex(101), ex(102)])
    assert tr.nr_pending == 2
    assert tr.feed(ProcEvent(EXEC, 102, 102)) == [ProcChange(EXEC, 102, 100)]  # de_thread() done: it lives
    alive.clear()
    assert tr.recheck() == [ProcChange(EXIT, 101, 100)]
    assert tr.tracked() == {100, 102}


def test_tracker_resync() -> None:
    tr = DescendantTracker([100])
    feed_all(tr, [fork(100, 101), fork(100, 104)])
    # lost: 104 exited, 101 forked 102 which forked 103, 102 forked then 105 which exited; 200 is unrelated
    procs = {1: 0, 100: 1, 101: 100, 102: 101, 103: 102, 200: 1, 201: 200}
    assert tr.resync(procs) == [ProcChange(EXIT, 104, 100), ProcChange(FORK, 102, 101), ProcChange(FORK, 103, 102)]
    assert tr.tracked() == {100, 101, 102, 103}
    assert tr.resync(procs) == []


# --------------------------------------------------------------------------------------------------------------
# /proc scans on a fake tree
# --------------------------------------------------------------------------------------------------------------


def stat_line(pid: int, ppid: int, state: str = "S", comm: str = "fake") -> str:
    return f"{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1000 1000 100\n"


def add_proc(root: Path, pid: int, ppid: int, state: str = "S", comm: str = "fake") -> None:
    for d in (root / str(pid), root / str(pid) / "task" / str(pid)):
        d.mkdir(parents=True, exist_ok=True)
        (d / "stat").write_text(stat_line(pid, ppid, state, comm))


def test_scan_descendants(tmp_path: Path) -> None:
    for pid, ppid in {1: 0, 100: 1, 101: 100, 102: 101, 103: 102, 200: 1, 201: 200}.items():
        add_proc(tmp_path, pid, ppid, comm="a) b (c" if pid == 102 else "fake")
    add_proc(tmp_path, 104, 100, state="Z")  # a zombie is not a live descendant
    (tmp_path / "105").mkdir()  # gone between listdir and open
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("")
    assert scan_descendants([100], str(tmp_path)) == {101, 102, 103}
    assert scan_descendants([101, 200], str(tmp_path)) == {102, 103, 201}
    assert scan_descendants([999], str(tmp_path)) == set()


def test_scan_descendants_no_proc(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError):
        scan_descendants([1], str(tmp_path / "missing"))


# --------------------------------------------------------------------------------------------------------------
# ChildFollower through a fake connector socket
# --------------------------------------------------------------------------------------------------------------


class FakeConnector:
    """A datagram socket pair: the follower's end, and a kernel end that answers the subscription."""

    def __init__(self, ack_err: int | None = 0) -> None:
        self.user, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ack_err = ack_err
        self.requests: list[bytes] = []
        self.enobufs = 0
        self.closed = False

    # -- the socket.socket surface ChildFollower uses --
    def setsockopt(self, *args: int) -> None:
        pass

    def fileno(self) -> int:
        return self.user.fileno()

    def sendto(self, data: bytes, addr: tuple[int, int]) -> int:
        assert addr == (0, 0)
        self.requests.append(data)
        if self.ack_err is not None:
            op = struct.unpack_from("=I", data, 36)[0]
            if op == PROC_CN_MCAST_LISTEN:
                # another listener's answer first, then events, then ours
                self.kernel.send(ack_msg(12345))
                self.kernel.send(fork_msg(100, 100, 106, 106))
                self.kernel.send(ack_msg(struct.unpack_from("=I", data, 28)[0] + 1, self.ack_err))
        return len(data)

    def recv(self, bufsize: int) -> bytes:
        return self.user.recv(bufsize)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, None]:
        if self.enobufs:
            self.enobufs -= 1
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return self.user.recv(bufsize, flags), None

    def close(self) -> None:
        self.closed = True
        self.user.close()
        self.kernel.close()


def wait_changes(f: ChildFollower, n: int, timeout_s: float = 3.0) -> list[ProcChange]:
    out: list[ProcChange] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += f.poll(timeout_s=0.05)
    return out


@pytest.fixture()
def fake_proc(tmp_path: Path) -> Path:
    for pid, ppid in {1: 0, 100: 1, 101: 100, 104: 100, 300: 1}.items():
        add_proc(tmp_path, pid, ppid)
    return tmp_path


def test_follower_fake_socket(fake_proc: Path) -> None:
    conn = FakeConnector()
    with ChildFollower([100], proc_root=str(fake_proc), socket_factory=lambda: conn,
                       recheck_interval_s=0.02) as f:
        assert f.running
        # the scan found 101 and 104; the fork that raced with the subscription (106) is reported
        assert f.tracked() == {100, 101, 104, 106}
        assert f.poll() == [ProcChange(FORK, 106, 100)]
        for data in (fork_msg(101, 101, 102, 102), fork_msg(1, 1, 301, 300), fork_msg(300, 300, 302, 302),
                     fork_msg(1, 1, 107, 100), exec_msg(102, 102), exit_msg(104, 104)):
            conn.kernel.send(data)
        # 104 is still running in the fake /proc: its exit waits for a recheck
        assert wait_changes(f, 2) == [ProcChange(FORK, 102, 101), ProcChange(EXEC, 102, 101)]
        shutil.rmtree(fake_proc / "104")
        assert wait_changes(f, 1) == [ProcChange(EXIT, 104, 100)]
        assert f.tracked() == {100, 101, 102, 106}
        assert f.nr_events == 7 and f.nr_overruns == 0

        # an overrun: the lost events are recovered from a /proc scan
        add_proc(fake_proc, 102, 101)
        add_proc(fake_proc, 103, 102)
        conn.enobufs = 1
        conn.kernel.send(fork_msg(1, 1, 400, 400))  # wakes the listener
        assert wait_changes(f, 2) == [ProcChange(EXIT, 106, 100), ProcChange(FORK, 103, 102)]
        assert f.nr_overruns == 1
        assert f.tracked() == {100, 101, 102, 103}
    assert not f.running and conn.closed
    ops = [struct.unpack_from("=I", r, 36)[0] for r in conn.requests]
    assert ops == [PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE]
    f.stop()  # idempotent


def test_follower_listener_failure_reported_by_poll(fake_proc: Path) -> None:
    conn = FakeConnector()
    f = ChildFollower([100], proc_root=str(fake_proc), socket_factory=lambda: conn)
    f.start()
    try:
        def broken(*args: object) -> None:
            raise OSError(errno.EIO, "I/O error")

        conn.recvfrom = broken  # type: ignore[method-assign]
        conn.kernel.send(b"x")
        with pytest.raises(DamonBpfError, match="listener failed") as info:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                f.poll(timeout_s=0.05)
        assert isinstance(info.value.__cause__, OSError)
    finally:
        f.stop()


def test_follower_refused(fake_proc: Path) -> None:
    conn = FakeConnector(ack_err=errno.EPERM)
    f = ChildFollower([100], proc_root=str(fake_proc), socket_factory=lambda: conn)
    with pytest.raises(PermissionDeniedError, match="root"):
        f.start()
    assert conn.closed and not f.running


def test_follower_no_answer(fake_proc: Path) -> None:
    conn = FakeConnector(ack_err=None)
    f = ChildFollower([100], proc_root=str(fake_proc), socket_factory=lambda: conn, ack_timeout_s=0.1)
    with pytest.raises(NotSupportedError, match="CONFIG_PROC_EVENTS"):
        f.start()
    assert conn.closed


def test_follower_root_gone(fake_proc: Path) -> None:
    conn = FakeConnector()
    with pytest.raises(TargetGoneError):
        ChildFollower([999], proc_root=str(fake_proc), socket_factory=lambda: conn).start()
    assert conn.closed


def test_follower_twice(fake_proc: Path) -> None:
    conn = FakeConnector()
    with ChildFollower([100], proc_root=str(fake_proc), socket_factory=lambda: conn) as f:
        with pytest.raises(DamonBpfError, match="already started"):
            f.start()


@pytest.mark.parametrize(
    ("err", "exc"),
    [
        (errno.EPROTONOSUPPORT, NotSupportedError),
        (errno.EPERM, PermissionDeniedError),
        (errno.EACCES, PermissionDeniedError),
        (errno.ECONNREFUSED, NotSupportedError),
        (errno.EMFILE, DamonBpfError),
    ],
)
def test_socket_errors_translated(monkeypatch: pytest.MonkeyPatch, err: int, exc: type[Exception]) -> None:
    def refuse(*args: object) -> None:
        raise OSError(err, "refused")

    monkeypatch.setattr(proc_events.socket, "socket", refuse)
    with pytest.raises(exc) as info:
        ChildFollower([1]).start()
    assert isinstance(info.value.__cause__, OSError)
    if exc is PermissionDeniedError:
        assert "CAP_NET_ADMIN" in str(info.value)


def test_poll_without_start_is_empty() -> None:
    f = ChildFollower([1])
    assert f.poll(timeout_s=0.01) == [] and f.tracked() == {1} and not f.running
    f.stop()


def test_events_race_with_stop(fake_proc: Path) -> None:
    conn = FakeConnector()
    f = ChildFollower([100], proc_root=str(fake_proc), socket_factory=lambda: conn)
    f.start()
    stop = threading.Event()

    def spam() -> None:
        while not stop.is_set():
            try:
                conn.kernel.send(fork_msg(1, 1, 500, 500))
            except OSError:
                return

    t = threading.Thread(target=spam)
    t.start()
    time.sleep(0.05)
    f.stop()
    stop.set()
    t.join()
    assert not f.running
