"""Processes the monitor starts, and the signals that stop it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import types
from typing import Callable, Iterator

__all__ = ("terminate", "on_signals", "STOP_SIGNALS")

#: the signals that end a session cleanly (Ctrl-C, kill, a closed terminal)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
