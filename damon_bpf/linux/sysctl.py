"""Temporary sysctl changes that are always undone.

A monitoring session may turn on ``kernel.numa_balancing`` (NUMA hint faults as an access signal),
``kernel.bpf_stats_enabled`` (BPF run-time statistics) or ``kernel.task_delayacct``; those three (:data:`SYSCTLS`)
are the only sysctls damon-bpf changes, and the only ones it ever restores, to a value they can have. Each change
is recorded in ``/run/damon-bpf/sysctl-NAME.json`` (root's state folder: :mod:`damon_bpf.linux.state`) before it
is made, and undone by :meth:`SysctlOverride.restore` (the sessions call it from their cleanup, which runs on
errors and signals too) and, as a last resort, at interpreter exit.

**Sessions share a change.** Overrides of one sysctl, in one process or in several, share it: the first sets
it, the record lists every session (pid and start time) that holds it, and only the last one to go puts the
original value back, so a session that ends does not switch off ``kernel.numa_balancing`` under another that
still reads NUMA hint faults. Two sessions that want different values at once: the second is refused, saying
which session holds the sysctl. The record is changed under a lock (``sysctl.lock``) shared by the sessions.

**A killed session.** A session killed with SIGKILL cannot restore anything itself, so the first override of a
process also starts a watchdog: a small detached process (``python -m damon_bpf.linux.sysctl --watch PID``)
that waits on the session's pidfd and, the moment it dies, takes it off the records (restoring what nobody
holds any more: :func:`restore_stale`). Any later session does the same for sessions that are gone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from damon_bpf.errors import DamonBpfError, InvalidParamsError, NotSupportedError, PermissionDeniedError
from damon_bpf.linux.files import atomic_write, read_private
from damon_bpf.linux.process import is_running, start_time
from damon_bpf.linux.state import STATE_DIR, locked

__all__ = ("SysctlOverride", "HeldSysctl", "held_sysctls", "read_sysctl", "restore_stale", "start_watchdog",
           "STATE_DIR", "SYSCTLS")

log = logging.getLogger(__name__)

#: the sysctls damon-bpf changes, with every value each may be set or restored to
SYSCTLS: dict[str, frozenset[str]] = {
    # include/linux/sched/sysctl.h: NUMA_BALANCING_NORMAL 0x1, NUMA_BALANCING_MEMORY_TIERING 0x2
    "kernel.numa_balancing": frozenset({"0", "1", "2", "3"}),
    "kernel.bpf_stats_enabled": frozenset({"0", "1"}),
    "kernel.task_delayacct": frozenset({"0", "1"}),
}

_LOCK = "sysctl"
_OLD_RECORD = re.compile(r"^sysctl-(?P<name>[a-z_.]+)-(?P<pid>[0-9]+)\.json$")  # before the records were shared


def _path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str, *, proc_root: str = "/proc") -> str:
    """The current value of sysctl *name* (``kernel.numa_balancing``), read under *proc_root* (tests: a fake tree).

    :raises NotSupportedError: this kernel has no such sysctl
    """
    try:
        path = _path(name) if proc_root == "/proc" else Path(proc_root, "sys", name.replace(".", "/"))
        return path.read_text().strip()
    except FileNotFoundError as err:
        raise NotSupportedError(f"this kernel has no sysctl {name}") from err


def _check(name: str, value: str) -> None:
    allowed = SYSCTLS.get(name)
    if allowed is None:
        raise InvalidParamsError(f"damon-bpf does not change sysctl {name} (only {', '.join(sorted(SYSCTLS))})")
    if value not in allowed:
        raise InvalidParamsError(f"{name}={value!r}: not a value damon-bpf sets or restores "
                                 f"({', '.join(sorted(allowed))})")


def _write(name: str, value: str) -> None:
    _check(name, value)
    try:
        _path(name).write_text(value + "\n")
    except PermissionError as err:
        raise PermissionDeniedError(f"changing {name} needs root") from err
    except FileNotFoundError as err:
        raise NotSupportedError(f"this kernel has no sysctl {name}") from err


# -- the shared records --------------------------------------------------------------------------------------


@dataclass
class _Record:
    # sysctl-NAME.json: the value the sessions hold, the one to restore, and who holds it
    name: str
    value: str
    original: str
    holders: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, start time)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "value": self.value, "original": self.original,
                           "holders": [{"pid": p, "starttime": s} for p, s in self.holders]})

    @classmethod
    def parse(cls, data: bytes) -> _Record:
        # :raises ValueError, KeyError, TypeError: not a record damon-bpf could have written
        kv = json.loads(data)
        name, value, original = str(kv["name"]), str(kv["value"]), str(kv["original"])
        _check(name, value)
        _check(name, original)
        holders = []
        for h in kv["holders"]:
            pid, st = int(h["pid"]), h.get("starttime")
            holders.append((pid, None if st is None else int(st)))
        return cls(name, value, original, holders)

    def alive(self) -> list[tuple[int, int | None]]:
        return [(p, s) for p, s in self.holders if is_running(p, s)]


def _record_path(d: Path, name: str) -> Path:
    return d / f"sysctl-{name}.json"


def _load(d: Path, name: str) -> _Record | None:
    path = _record_path(d, name)
    try:
        rec = _Record.parse(read_private(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("ignoring %s: %s", path, err)
        return None
    if rec.name != name:
        log.warning("ignoring %s: it is about %s", path, rec.name)
        return None
    return rec


def _save(d: Path, rec: _Record) -> None:
    atomic_write(str(_record_path(d, rec.name)), rec.to_json().encode())


def _drop_gone(d: Path, name: str, pid: int | None, restored: list[str]) -> _Record | None:
    # under the lock: take the sessions that are gone (only *pid*, when given) off NAME's record; restore the
    # original value when nobody holds it any more. Returns the record that remains.
    rec = _load(d, name)
    if rec is None:
        return None
    live = rec.alive()
    keep = [h for h in rec.holders if h in live or (pid is not None and h[0] != pid)]
    if keep == rec.holders:
        return rec
    gone = sorted({p for p, _ in rec.holders} - {p for p, _ in keep})
    if keep:
        rec.holders = keep
        _save(d, rec)
        return rec
    _write(rec.name, rec.original)
    _record_path(d, name).unlink(missing_ok=True)
    restored.append(rec.name)
    log.warning("restored %s=%s left changed by exited session%s %s", rec.name, rec.original,
                "s" if len(gone) > 1 else "", ", ".join(map(str, gone)))
    return None


def _restore_old_records(d: Path, pid: int | None, restored: list[str]) -> None:
    # records of older versions, one per session: sysctl-NAME-PID.json {"pid", "name", "original"}
    for path in d.glob("sysctl-*-*.json"):
        m = _OLD_RECORD.match(path.name)
        if m is None:
            continue
        try:
            kv = json.loads(read_private(path))
            owner, name, original = int(kv["pid"]), str(kv["name"]), str(kv["original"])
            if owner != int(m["pid"]) or name != m["name"]:
                raise ValueError("its name does not match its content")
            _check(name, original)
            if (pid is not None and owner != pid) or is_running(owner):
                continue
            if _load(d, name) is None:  # a shared record of the same sysctl knows the original better
                _write(name, original)
                restored.append(name)
                log.warning("restored %s=%s left changed by exited session %s", name, original, owner)
            path.unlink()
        except (OSError, ValueError, KeyError, TypeError, DamonBpfError) as err:
            log.warning("ignoring %s: %s", path, err)


@dataclass(frozen=True)
class HeldSysctl:
    """A sysctl that damon-bpf sessions hold changed: the value they hold, the one the last of them restores,
    and the pids of the live sessions holding it."""

    name: str
    value: str
    original: str
    pids: tuple[int, ...]


def held_sysctls(state_dir: Path | None = None) -> list[HeldSysctl]:
    """The sysctls damon-bpf sessions hold changed now, from their records (sessions that are gone are left
    out, and a sysctl only they held too); none when the state folder is absent. Reads without the lock: a
    record is replaced whole (:func:`~damon_bpf.linux.files.atomic_write`), never seen half written."""
    d = state_dir or STATE_DIR
    out: list[HeldSysctl] = []
    if not d.is_dir():
        return out
    for name in SYSCTLS:
        rec = _load(d, name)
        pids = tuple(p for p, _ in rec.alive()) if rec is not None else ()
        if rec is not None and pids:
            out.append(HeldSysctl(rec.name, rec.value, rec.original, pids))
    return out


def restore_stale(state_dir: Path | None = None, pid: int | None = None) -> list[str]:
    """Take sessions that are gone off the sysctl records (only *pid*, when given), restoring each sysctl
    nobody holds any more; returns the names restored. An untrusted state folder is left alone (a warning)."""
    restored: list[str] = []
    d = state_dir or STATE_DIR
    if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK):  # none, or root's and this is not root
        return restored
    try:
        with locked(_LOCK, d) as d:
            for name in SYSCTLS:
                try:
                    _drop_gone(d, name, pid, restored)
                except (OSError, DamonBpfError) as err:
                    log.warning("cannot restore %s: %s", name, err)
            _restore_old_records(d, pid, restored)
    except (OSError, DamonBpfError) as err:
        log.warning("sysctls left by earlier sessions not restored: %s", err)
    return restored


_watchdog_lock = threading.Lock()
_watchdog: subprocess.Popen[bytes] | None = None

#: the folder holding the damon_bpf package this process runs: the watchdog imports the same one, never
#: whatever ``damon_bpf`` the current folder holds (``python -m`` puts it first on sys.path)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_WATCHDOG_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); from damon_bpf.linux.sysctl import _watch; "
                  "sys.exit(_watch(int(sys.argv[2]), __import__('pathlib').Path(sys.argv[3])))")


def start_watchdog(state_dir: Path | None = None) -> None:
    """Start this process's watchdog (once): it takes this process off the sysctl records when it dies, also
    by SIGKILL, restoring what nobody else holds. Failing to start one is logged, not raised: the next session
    would still restore them. The watchdog runs isolated (``python -I``, from ``/``) on this process's copy of
    damon-bpf."""
    global _watchdog
    with _watchdog_lock:
        if _watchdog is not None and _watchdog.poll() is None:
            return
        try:
            _watchdog = subprocess.Popen(
                [sys.executable, "-I", "-c", _WATCHDOG_CODE, _PACKAGE_ROOT, str(os.getpid()),
                 str(state_dir or STATE_DIR)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                start_new_session=True, close_fds=True)
        except OSError as err:
            log.warning("cannot start the sysctl watchdog: %s", err)


def _watch(pid: int, state_dir: Path) -> int:
    # the watchdog: wait for *pid* to end, then take it off the records
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        select.select([fd], [], [])
        os.close(fd)
    restore_stale(state_dir, pid=pid)
    return 0


class _Held:
    # one sysctl this process holds: the value it holds, the value to restore, and how many overrides share it
    def __init__(self, value: str, original: str, state_dir: Path) -> None:
        self.value = value
        self.original = original
        self.state_dir = state_dir
        self.count = 1


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


def _me() -> tuple[int, int | None]:
    pid = os.getpid()
    return pid, start_time(pid)


class SysctlOverride:
    """Set sysctl *name* (one of :data:`SYSCTLS`) to *value* until :meth:`restore` (idempotent; also a context
    manager).

    Overrides of the same sysctl share the change, in one process and across damon-bpf processes: the first
    one made sets it, the last one restored puts the original value back (two sources of one ``compare``, or
    two sessions at once, both turning on ``kernel.bpf_stats_enabled`` do not switch it off under each other).
    An override that wants another value than the one held (by this process or another session) is refused.

    :raises InvalidParamsError: not a sysctl or value damon-bpf changes
    """

    def __init__(self, name: str, value: str, state_dir: Path | None = None) -> None:
        _check(name, str(value))
        self.name = name
        self.value = str(value)
        self.state_dir = state_dir or STATE_DIR
        self._held: _Held | None = None

    @property
    def original(self) -> str | None:
        """The value the sysctl had before damon-bpf changed it (None: this override changed nothing)."""
        return self._held.original if self._held is not None else None

    def apply(self) -> SysctlOverride:
        """:raises InvalidParamsError: this process or another session holds the sysctl at another value
        :raises PermissionDeniedError: the state folder is not trusted, or not root"""
        if os.geteuid() != 0 and self.state_dir == STATE_DIR:
            raise PermissionDeniedError(f"changing {self.name} needs root")
        restore_stale(self.state_dir)
        with _held_lock:
            if self._held is not None:
                return self
            held = _held.get(self.name)
            if held is not None:
                if held.value != self.value:
                    raise InvalidParamsError(f"{self.name} is held at {held.value} by this session already; "
                                             f"cannot set it to {self.value} too")
                held.count += 1
                self._held = held
                atexit.register(self.restore)
                return self
            try:
                with locked(_LOCK, self.state_dir) as d:
                    held = self._take(d)
            except OSError as err:
                raise PermissionDeniedError(f"cannot record the change of {self.name} in {self.state_dir}: "
                                            f"{err.strerror or err}") from err
            if held is None:
                return self
            self._held = _held[self.name] = held
        atexit.register(self.restore)
        return self

    def _take(self, d: Path) -> _Held | None:
        # under the lock: join the sessions holding the sysctl at our value, or set it and record the change
        rec = _drop_gone(d, self.name, None, [])
        me = _me()
        if rec is not None:
            others = [p for p, _ in rec.holders if p != me[0]]
            if rec.value != self.value:
                raise InvalidParamsError(
                    f"{self.name} is held at {rec.value} by damon-bpf session{'s' if len(others) > 1 else ''} "
                    f"{', '.join(map(str, others))}; cannot set it to {self.value} at the same time")
            rec.holders = [h for h in rec.holders if h[0] != me[0]] + [me]
            _save(d, rec)
            start_watchdog(self.state_dir)
            if read_sysctl(self.name) != self.value:
                _write(self.name, self.value)
            log.info("%s=%s shared with session%s %s", self.name, self.value, "s" if len(others) > 1 else "",
                     ", ".join(map(str, others)))
            return _Held(self.value, rec.original, d)
        cur = read_sysctl(self.name)
        if cur == self.value:
            return None
        _check(self.name, cur)  # a value damon-bpf could restore
        rec = _Record(self.name, self.value, cur, [me])
        _save(d, rec)
        start_watchdog(self.state_dir)
        try:
            _write(self.name, self.value)
        except BaseException:
            _record_path(d, self.name).unlink(missing_ok=True)
            raise
        log.info("set %s=%s (was %s)", self.name, self.value, cur)
        return _Held(self.value, cur, d)

    def restore(self) -> None:
        with _held_lock:
            held, self._held = self._held, None
            if held is None:
                return
            atexit.unregister(self.restore)
            held.count -= 1
            if held.count > 0:
                return
            del _held[self.name]
            with contextlib.ExitStack() as stack:
                try:
                    d = stack.enter_context(locked(_LOCK, held.state_dir))
                except (OSError, DamonBpfError) as err:
                    log.warning("restoring %s=%s without its record: %s", self.name, held.original, err)
                    _write(self.name, held.original)
                    return
                rec = _load(d, self.name)
                me = os.getpid()
                others = [] if rec is None else [h for h in rec.alive() if h[0] != me]
                if rec is not None and others:
                    rec.holders = others
                    _save(d, rec)
                    log.info("left %s=%s to session%s %s", self.name, rec.value, "s" if len(others) > 1 else "",
                             ", ".join(str(p) for p, _ in others))
                    return
                try:
                    _write(self.name, held.original)
                    log.info("restored %s=%s", self.name, held.original)
                finally:
                    _record_path(d, self.name).unlink(missing_ok=True)

    def __enter__(self) -> SysctlOverride:
        return self.apply()

    def __exit__(self, *exc: object) -> None:
        self.restore()


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--watch":
        return _watch(int(argv[1]), Path(argv[2]))
    print("usage: python -m damon_bpf.linux.sysctl --watch PID STATE_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
