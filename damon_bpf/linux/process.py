"""Processes: whether one still runs (the one liveness check by pid), the ones the monitor starts, and the
signals that stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import types
from typing import Any, Callable, Iterator, Sequence

from damon_bpf.errors import DamonBpfError, TargetGoneError
from damon_bpf.linux.procmaps import read_stat

__all__ = ("spawn", "terminate", "on_signals", "start_time", "is_running", "comm", "STOP_SIGNALS")

#: the signals that end a session cleanly (Ctrl-C, kill, a closed terminal)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start_time(pid: int, proc_root: str = "/proc") -> int | None:
    """When process *pid* started (field 22 of ``/proc/PID/stat``, clock ticks since boot), which tells a reused
    pid from the process that had it before; None when there is no such process (or it cannot be read)."""
    try:
        return read_stat(pid, proc_root).starttime
    except (OSError, DamonBpfError):
        return None


def is_running(pid: int, started: int | None = None, proc_root: str = "/proc") -> bool:
    """Whether process *pid* exists and has not exited (a zombie has), and, when *started* is given, is the one
    that started then (:func:`start_time`) rather than a later one that got the same pid. The one liveness
    check of damon-bpf by pid; a process whose ``/proc/PID/stat`` cannot be read or parsed counts as running
    (cannot tell)."""
    if pid <= 0:
        return False
    try:
        st = read_stat(pid, proc_root)
    except TargetGoneError:
        return False
    except (OSError, DamonBpfError):  # cannot tell: assume it is there
        return True
    return not st.exited and (started is None or st.starttime == started)


def comm(pid: int, proc_root: str = "/proc") -> str:
    """The command name of process *pid* (``/proc/PID/comm``); ``""`` when there is no such process."""
    try:
        with open(os.path.join(proc_root, str(pid), "comm")) as f:
            return f.read().strip()
    except OSError:
        return ""


def spawn(cmd: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """Start *cmd* as a child that dies with the monitor: ``PR_SET_PDEATHSIG`` (SIGKILL) is set in the child
    before ``exec``, and a child whose parent already died before that (a race with a SIGKILL of the monitor)
    exits at once. Call it from the thread that lives as long as the child should (the death signal follows
    the forking thread).

    :raises OSError: the command cannot be started
    """
    parent = os.getpid()

    def _die_with_parent() -> None:  # runs in the child, between fork and exec
        from damon_bpf.linux.syscalls import set_pdeathsig

        set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return subprocess.Popen(list(cmd), preexec_fn=_die_with_parent, **popen_kwargs)


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """End a child: SIGTERM, then SIGKILL after *timeout_s*; always reaps it. Nothing happens to a child that
    already exited."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        proc.wait()


@contextlib.contextmanager
def on_signals(handler: Callable[[int], None], signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Call ``handler(signum)`` on each of *signals* while the block runs; the previous handlers come back at
    its end, also on errors. Only the main thread can install handlers; elsewhere this does nothing."""

    def _handle(signum: int, frame: types.FrameType | None) -> None:
        handler(signum)

    old: dict[signal.Signals, object] = {}
    try:
        for s in signals:
            old[s] = signal.signal(s, _handle)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
