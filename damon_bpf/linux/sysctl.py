"""Temporary sysctl changes that are always undone.

A monitoring session may turn on ``kernel.numa_balancing`` (NUMA hint faults as an access signal),
``kernel.bpf_stats_enabled`` (BPF run-time statistics) or ``kernel.task_delayacct``. Each change is recorded in
``/run/damon-bpf/`` before it is made, restored by :meth:`SysctlOverride.restore` (the sessions call it from
their cleanup, which runs on errors and signals too) and, as a last resort, at interpreter exit.

**A killed session.** A session killed with SIGKILL cannot restore anything itself, so the first override of a
process also starts a watchdog: a small detached process (``python -m damon_bpf.linux.sysctl --watch PID``)
that waits on the session's pidfd and, the moment it dies, restores what its records say
(:func:`restore_stale`). Any later session does the same for records whose owner is dead.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

from damon_bpf.errors import InvalidParamsError, NotSupportedError, PermissionDeniedError

__all__ = ("SysctlOverride", "read_sysctl", "restore_stale", "start_watchdog", "STATE_DIR")

log = logging.getLogger(__name__)

STATE_DIR = Path("/run/damon-bpf")


def _path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str:
    """The current value of sysctl *name* (``kernel.numa_balancing``).

    :raises NotSupportedError: this kernel has no such sysctl
    """
    try:
        return _path(name).read_text().strip()
    except FileNotFoundError as err:
        raise NotSupportedError(f"this kernel has no sysctl {name}") from err


def _write(name: str, value: str) -> None:
    try:
        _path(name).write_text(value + "\n")
    except PermissionError as err:
        raise PermissionDeniedError(f"changing {name} needs root") from err
    except FileNotFoundError as err:
        raise NotSupportedError(f"this kernel has no sysctl {name}") from err


def _pid_alive(pid: int) -> bool:
    # a zombie has exited: its changes are not undone by anyone any more
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True


def restore_stale(state_dir: Path | None = None, pid: int | None = None) -> list[str]:
    """Restore the sysctls left changed by sessions that died without cleaning up (only *pid*'s, when given);
    returns their names."""
    d = state_dir or STATE_DIR
    restored: list[str] = []
    if not d.is_dir():
        return restored
    for rec in d.glob("sysctl-*.json"):
        try:
            data = json.loads(rec.read_text())
            if pid is not None and int(data["pid"]) != pid:
                continue
            if _pid_alive(int(data["pid"])):
                continue
            _write(data["name"], data["original"])
            rec.unlink()
            restored.append(data["name"])
            log.warning("restored %s=%s left changed by exited session %s", data["name"], data["original"],
                        data["pid"])
        except (OSError, ValueError, KeyError) as err:
            log.warning("cannot restore from %s: %s", rec, err)
    return restored


_watchdog_lock = threading.Lock()
_watchdog: subprocess.Popen[bytes] | None = None


def start_watchdog(state_dir: Path | None = None) -> None:
    """Start this process's watchdog (once): it restores this process's sysctl changes when it dies, also by
    SIGKILL. Failing to start one is logged, not raised: the next session would still restore them."""
    global _watchdog
    with _watchdog_lock:
        if _watchdog is not None and _watchdog.poll() is None:
            return
        try:
            _watchdog = subprocess.Popen(
                [sys.executable, "-m", "damon_bpf.linux.sysctl", "--watch", str(os.getpid()),
                 str(state_dir or STATE_DIR)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        except OSError as err:
            log.warning("cannot start the sysctl watchdog: %s", err)


def _watch(pid: int, state_dir: Path) -> int:
    # the watchdog: wait for *pid* to end, then restore what its records hold
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
    # one sysctl this process changed: the value it set, the value to restore, and how many overrides share it
    def __init__(self, value: str, original: str, record: Path) -> None:
        self.value = value
        self.original = original
        self.record = record
        self.count = 1


_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


class SysctlOverride:
    """Set sysctl *name* to *value* until :meth:`restore` (idempotent; also a context manager).

    Overrides of the same sysctl in one process share the change: the first one made sets it, the last one
    restored puts the original value back (two sources of one ``compare`` both turning on
    ``kernel.bpf_stats_enabled`` do not switch it off under each other). Two overrides that want different
    values of the same sysctl at once are refused.
    """

    def __init__(self, name: str, value: str, state_dir: Path | None = None) -> None:
        self.name = name
        self.value = str(value)
        self.state_dir = state_dir or STATE_DIR
        self._held: _Held | None = None

    @property
    def original(self) -> str | None:
        """The value the sysctl had before this process changed it (None: this override changed nothing)."""
        return self._held.original if self._held is not None else None

    def apply(self) -> SysctlOverride:
        """:raises InvalidParamsError: this process holds the sysctl at another value already"""
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
            cur = read_sysctl(self.name)
            if cur == self.value:
                return self
            self.state_dir.mkdir(parents=True, exist_ok=True)
            rec = self.state_dir / f"sysctl-{self.name}-{os.getpid()}.json"
            rec.write_text(json.dumps({"pid": os.getpid(), "name": self.name, "original": cur}))
            start_watchdog(self.state_dir)
            try:
                _write(self.name, self.value)
            except BaseException:
                rec.unlink(missing_ok=True)
                raise
            self._held = _held[self.name] = _Held(self.value, cur, rec)
        atexit.register(self.restore)
        log.info("set %s=%s (was %s)", self.name, self.value, cur)
        return self

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
            try:
                _write(self.name, held.original)
                log.info("restored %s=%s", self.name, held.original)
            finally:
                held.record.unlink(missing_ok=True)

    def __enter__(self) -> SysctlOverride:
        return self.apply()

    def __exit__(self, *exc: object) -> None:
        self.restore()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--watch":
        sys.exit(_watch(int(sys.argv[2]), Path(sys.argv[3])))
    print("usage: python -m damon_bpf.linux.sysctl --watch PID STATE_DIR", file=sys.stderr)
    sys.exit(2)
