"""Processes the monitor starts, and the signals that stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import types
from typing import Any, Callable, Iterator, Sequence

__all__ = ("spawn", "terminate", "on_signals", "STOP_SIGNALS")

#: the signals that end a session cleanly (Ctrl-C, kill, a closed terminal)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
