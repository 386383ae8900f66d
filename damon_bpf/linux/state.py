"""State shared between damon-bpf sessions (processes): ``/run/damon-bpf``.

What one session leaves for the next lives there: the sysctls it changed (:mod:`damon_bpf.linux.sysctl`), the
recordings it writes (:mod:`damon_bpf.results.records`) and its claims on processes (:class:`Claim`). The folder is
root's, mode 0700 whatever the umask, and checked before anything in it is believed
(:func:`damon_bpf.linux.files.private_dir`); each file in it is read only when it is root's
(:func:`damon_bpf.linux.files.read_private`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from pathlib import Path
from typing import Iterator

from damon_bpf.linux.files import FILE_MODE, file_problem, private_dir

__all__ = ("STATE_DIR", "state_dir", "locked", "Claim")

log = logging.getLogger(__name__)

#: the folder; tests and callers pass another one where a function takes ``state_dir``
STATE_DIR = Path("/run/damon-bpf")


def state_dir(path: Path | None = None, *, create: bool = True) -> Path:
    """:func:`~damon_bpf.linux.files.private_dir` of *path* (default :data:`STATE_DIR`).

    :raises PermissionDeniedError: the folder is not trusted (a symlink, another user's)
    :raises FileNotFoundError: it does not exist (only with ``create=False``)
    """
    return private_dir(path or STATE_DIR, create=create)


def _open_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise PermissionError(f"{path}: not trusted: {file_problem(path) or 'not a regular file of yours'}")
    return fd


@contextlib.contextmanager
def locked(name: str, path: Path | None = None) -> Iterator[Path]:
    """Hold the lock *name* (``flock`` of ``NAME.lock`` in the state folder) for the block, against other
    damon-bpf processes; yields the state folder.

    :raises PermissionDeniedError: the folder is not trusted
    :raises OSError: the lock file cannot be opened
    """
    d = state_dir(path)
    fd = _open_lock(d / f"{name}.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield d
    finally:
        os.close(fd)


class Claim:
    """A claim of one damon-bpf process on *name* (``flock`` of ``NAME.lock`` in the state folder, holding the
    claimer's pid), given up by :meth:`release` or when the process ends, SIGKILL included.

    :ivar holder: after a failed :meth:`acquire`, the pid of the process holding the claim (None: unknown)
    """

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.name = name
        self._dir = path
        self._fd = -1
        self._path: Path | None = None
        self.holder: int | None = None

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> bool:
        """Take the claim unless another process has it (then :attr:`holder` says which).

        :raises PermissionDeniedError: the state folder is not trusted
        :raises OSError: the lock file cannot be opened
        """
        if self._fd >= 0:
            return True
        path = state_dir(self._dir) / f"{self.name}.lock"
        while True:
            fd = _open_lock(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    self.holder = int(text) if text.isdigit() else None
                finally:
                    os.close(fd)
                return False
            # the holder before may have removed the file between our open and our lock: lock the one in place
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.close(fd)
                continue
            fst = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd, self._path, self.holder = fd, path, None
            self._sweep(path.parent)
            return True

    def _sweep(self, folder: Path) -> None:
        # A claimer killed by SIGKILL leaves its file (the lock goes with the process, the name stays): remove
        # the files of this family ("pte-" for "pte-PID") that nobody holds, each under its own lock and only if
        # it is still the file at that name (the protocol acquire() follows), so that /run does not fill up
        # with one file per process ever monitored.
        family = self.name.rpartition("-")[0]
        if not family:
            return
        for entry in os.scandir(folder):
            if not entry.name.startswith(f"{family}-") or not entry.name.endswith(".lock") or \
                    entry.name == f"{self.name}.lock":
                continue
            try:
                fd = _open_lock(Path(entry.path))
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                st, fst = os.lstat(entry.path), os.fstat(fd)
                if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
                    os.unlink(entry.path)
            except OSError:  # held (BlockingIOError), or gone meanwhile
                pass
            finally:
                os.close(fd)

    def release(self) -> None:
        """Give the claim up (and remove its file); safe to call twice."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            if self._path is not None:
                self._path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)
