"""A temporary swap file for kernel tests that need anonymous memory to really go to swap.

:class:`Swapfile` creates ``/var/tmp/damon-bpf-test-<pid>-<n>.swap`` (``fallocate``, else ``dd``; ``chmod 600``;
``mkswap``; ``swapon``) and always turns it off and removes it: on ``close()``/``__exit__`` (exceptions
included), on SIGTERM while it is active (turned into ``SystemExit`` so the cleanup runs), and at interpreter
exit. A test session killed with SIGKILL leaves it behind; the next :class:`Swapfile` removes files of test
processes that no longer exist first (:func:`remove_stale`).

The directory must be on a filesystem that supports swap files (ext4, xfs; not tmpfs), hence ``/var/tmp``.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ("Swapfile", "SwapUnavailableError", "active_swaps", "remove_stale")

_NAME = re.compile(r"^damon-bpf-test-(\d+)-\d+\.swap$")


class SwapUnavailableError(RuntimeError):
    """Swap cannot be turned on here; the message says which step failed and why."""


def active_swaps() -> list[str]:
    """The paths in ``/proc/swaps``."""
    with open("/proc/swaps") as f:
        return [line.split()[0] for line in f.read().splitlines()[1:] if line.split()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(argv: list[str], step: str) -> None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SwapUnavailableError(f"{step}: {' '.join(argv)}: {err}") from err
    if res.returncode != 0:
        raise SwapUnavailableError(f"{step}: {' '.join(argv)} exited {res.returncode}: "
                                   f"{(res.stderr or res.stdout).strip()}")


def _swapoff(path: str) -> None:
    if path in active_swaps():
        subprocess.run(["swapoff", path], capture_output=True, timeout=300, check=False)


def remove_stale(directory: str = "/var/tmp") -> list[str]:
    """Turn off and remove swap files left by test processes that no longer exist; returns their paths."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        _swapoff(str(p))
        p.unlink(missing_ok=True)
        removed.append(str(p))
    return removed


class Swapfile:
    """A swap file that is active between ``__enter__`` and ``__exit__`` (or :meth:`open` and :meth:`close`).

    :param size_mib: its size
    :param directory: where to create it (a filesystem that supports swap files)
    :raises SwapUnavailableError: from :meth:`open`, saying which step failed (nothing is left behind)
    """

    _seq = 0

    def __init__(self, size_mib: int = 256, directory: str = "/var/tmp") -> None:
        Swapfile._seq += 1
        self.size_mib = size_mib
        self.path = os.path.join(directory, f"damon-bpf-test-{os.getpid()}-{Swapfile._seq}.swap")
        self.active = False
        self._prev_sigterm: Any = None

    def open(self) -> Swapfile:
        remove_stale(os.path.dirname(self.path))
        atexit.register(self.close)
        self._catch_sigterm()
        try:
            self._create()
            _run(["mkswap", self.path], "mkswap")
            _run(["swapon", self.path], "swapon")
            self.active = True
            if self.path not in active_swaps():
                raise SwapUnavailableError(f"swapon {self.path} succeeded but it is not in /proc/swaps")
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        size = self.size_mib << 20
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except OSError:
                pass  # no fallocate on this filesystem: write it out
        finally:
            os.close(fd)
        _run(["dd", "if=/dev/zero", f"of={self.path}", "bs=1M", f"count={self.size_mib}", "status=none"], "dd")
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        """Turn the swap file off and remove it (idempotent; never raises for a file that is already gone)."""
        try:
            if os.path.exists(self.path):
                _swapoff(self.path)
                if self.path in active_swaps():
                    raise SwapUnavailableError(f"swapoff {self.path} failed: it is still active")
                os.unlink(self.path)
        finally:
            self.active = False
            atexit.unregister(self.close)
            self._restore_sigterm()

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        self._prev_sigterm = signal.signal(signal.SIGTERM, on_term)

    def _restore_sigterm(self) -> None:
        if self._prev_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._prev_sigterm)
            self._prev_sigterm = None

    def __enter__(self) -> Swapfile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
