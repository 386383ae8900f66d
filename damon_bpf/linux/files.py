"""Files damon-bpf writes, and the folders whose files it believes.

damon-bpf runs as root and writes where users point it (``record -o``, ``import -o``, ``report --png``,
``report raw -o``, ``export --textfile``), often in folders other users can write to. Every file is written so
that nobody else's symlink or file is followed, truncated or moved (issue #17):

- **whole files** (records, pictures, textfiles): :func:`atomic_write` creates a temporary file beside the target
  with ``O_CREAT|O_EXCL|O_NOFOLLOW`` under a random name (a planted file or symlink of that name makes the
  ``open`` fail, never followed), writes and ``fsync``\\ s it, and renames it over the target;
- **streams** (journals, sidecars): :func:`create_file` removes a target it may replace and creates the file
  with ``O_EXCL|O_NOFOLLOW``;
- **what may be replaced**: only a regular file (not a symlink, folder, device, FIFO or socket) that belongs to
  root, to the caller or to the owner of its folder, that is, a file damon-bpf could have written there
  (:func:`replace_problem`); anything else is refused with the reason (:class:`InvalidParamsError`, exit 2);
- **permissions**: 0600 unless a caller asks otherwise (node_exporter's textfile, read by another user), set
  with ``fchmod`` so the umask plays no part.

Files written by a *previous* session are believed only from folders nobody else can change
(:func:`folder_problem`, :func:`file_problem`): root's state under ``/run/damon-bpf`` (:func:`private_dir`,
:func:`read_private`) and the journals from which a killed recording is completed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import pwd
import secrets
import stat
from pathlib import Path
from typing import IO, Any, Iterator

from damon_bpf.errors import DamonBpfError, InvalidParamsError, IOFailureError, PermissionDeniedError

__all__ = (
    "FILE_MODE",
    "DIR_MODE",
    "replace_problem",
    "check_replaceable",
    "atomic_open",
    "atomic_write",
    "create_file",
    "rename_old",
    "save_figure",
    "write_error",
    "folder_problem",
    "file_problem",
    "private_dir",
    "read_private",
)

log = logging.getLogger(__name__)

#: the mode of every file damon-bpf writes (damo's records are 0600 too)
FILE_MODE = 0o600
#: the mode of the folders it shares between its sessions (``/run/damon-bpf``)
DIR_MODE = 0o700
#: the most :func:`read_private` reads of one state file
_MAX_STATE_BYTES = 1 << 16


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _ours(uid: int) -> bool:
    # root's or the caller's: what damon-bpf itself may have created
    return uid in (0, os.geteuid())


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) or "/"


def replace_problem(path: str) -> str | None:
    """Why damon-bpf must not replace (or move aside) *path*, in a few words; None when *path* does not exist or
    is a regular file that belongs to root, to the caller or to the owner of its folder."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return err.strerror or str(err)
    if not stat.S_ISREG(st.st_mode):
        return f"it is {_kind(st.st_mode)}"
    if _ours(st.st_uid):
        return None
    try:
        if os.stat(_folder(path)).st_uid == st.st_uid:
            return None
    except OSError as err:
        return err.strerror or str(err)
    return f"it belongs to {_user(st.st_uid)}, not to root, you or the owner of its folder"


def check_replaceable(path: str) -> None:
    """:raises InvalidParamsError: *path* is not something damon-bpf may replace (:func:`replace_problem`)"""
    problem = replace_problem(path)
    if problem is not None:
        raise InvalidParamsError(f"refusing to replace {path}: {problem} (damon-bpf replaces only regular files "
                                 "it could have written)")


def write_error(path: str, err: OSError) -> DamonBpfError:
    """The project's error for *err*, raised while writing *path*: permission (EACCES, EPERM), bad path
    (ENOENT, ENOTDIR, EISDIR, ELOOP, ENAMETOOLONG, EEXIST), else :class:`IOFailureError` (disk full, quota,
    read-only file system, device error)."""
    msg = f"cannot write {path}: {err.strerror or err}"
    if err.errno in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(msg)
    if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EEXIST):
        return InvalidParamsError(msg)
    return IOFailureError(msg)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create_temp(path: str, mode: int) -> tuple[int, str]:
    # FILE.<random>.tmp beside FILE, created exclusively: an existing file or symlink of that name is an error
    for _ in range(8):
        tmp = f"{path}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, _NEW, mode)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "cannot create a temporary file beside it", path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_open(path: str, mode: int = FILE_MODE) -> Iterator[IO[bytes]]:
    """A binary file to write *path* with: it replaces *path* atomically when the block ends without an error
    (see the module docstring); on an error, nothing is left behind and *path* is unchanged.

    :raises InvalidParamsError: *path* may not be replaced (a symlink, folder, device, ...), or its folder is
        missing
    :raises IOFailureError: the disk is full (or another device error), also while the block writes
    :raises PermissionDeniedError: the folder is not writable
    """
    check_replaceable(path)
    try:
        fd, tmp = _create_temp(path, mode)
    except OSError as err:
        raise write_error(path, err) from err
    f = os.fdopen(fd, "wb")
    try:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        check_replaceable(path)  # again, just before the rename (which never follows a symlink at path)
        os.rename(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise write_error(path, err) from err
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(_folder(path))


def atomic_write(path: str, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace *path* with *data* atomically (:func:`atomic_open`): a reader finds the old file or the new one,
    never a part; nothing is left behind on failure.

    :raises InvalidParamsError, IOFailureError, PermissionDeniedError: as :func:`atomic_open`
    """
    with atomic_open(path, mode) as f:
        f.write(data)


def create_file(path: str, mode: int = FILE_MODE, *, append: bool = False) -> int:
    """Create *path* for writing and return its descriptor (``O_CLOEXEC``): a regular file that may be replaced
    is removed first; the new one is created with ``O_EXCL|O_NOFOLLOW`` (a file or symlink that appears there
    in between is an error, never followed).

    :raises InvalidParamsError, IOFailureError, PermissionDeniedError: as :func:`atomic_write`
    """
    check_replaceable(path)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, _NEW | (os.O_APPEND if append else 0), mode)
    except OSError as err:
        raise write_error(path, err) from err
    try:
        os.fchmod(fd, mode)
    except OSError as err:
        os.close(fd)
        raise write_error(path, err) from err
    return fd


def rename_old(path: str) -> None:
    """Rename an existing *path* to ``path.old`` (replacing an older one), as ``damo record`` does; both must be
    replaceable (:func:`replace_problem`).

    :raises InvalidParamsError: one of them is not (a folder, a device, a symlink, another user's file)
    :raises DamonBpfError: the rename failed
    """
    if not os.path.lexists(path):
        return
    check_replaceable(path)
    check_replaceable(path + ".old")
    try:
        os.rename(path, path + ".old")
    except OSError as err:
        raise write_error(path, err) from err


def save_figure(fig: Any, path: str, mode: int = FILE_MODE, **savefig_kwargs: Any) -> None:
    """Save a matplotlib figure to exactly *path* with :func:`atomic_write`, in the format its suffix names
    (``.svg``, ``.pdf``, ...; PNG for any other suffix or none: matplotlib itself would write ``FILE.png``
    for a *path* without a suffix)."""
    ext = os.path.splitext(path)[1][1:].lower()
    fmt = ext if ext in fig.canvas.get_supported_filetypes() else "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **savefig_kwargs)
    atomic_write(path, buf.getvalue(), mode)


# -- what damon-bpf believes -----------------------------------------------------------------------------------


def folder_problem(path: str | Path, *, sticky_ok: bool = False) -> str | None:
    """Why the files in folder *path* could have been put there by someone other than root and the caller, in a
    few words; None when the folder belongs to root or the caller and neither its group nor others may write
    in it (or, with *sticky_ok*, it has the sticky bit: others may add files but not move or replace ours)."""
    try:
        st = os.stat(path)
    except OSError as err:
        return err.strerror or str(err)
    if not stat.S_ISDIR(st.st_mode):
        return f"it is {_kind(st.st_mode)}"
    if not _ours(st.st_uid):
        return f"it belongs to {_user(st.st_uid)}"
    if st.st_mode & 0o022 and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        who = "others" if st.st_mode & 0o002 else "its group"
        return f"{who} may write in it (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def file_problem(path: str | Path) -> str | None:
    """Why *path* may not be believed as written by damon-bpf: not a regular file (a symlink is not followed),
    not root's or the caller's, or writable by others; None when it is fine or does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return err.strerror or str(err)
    return _stat_problem(st)


def _stat_problem(st: os.stat_result) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return f"it is {_kind(st.st_mode)}"
    if not _ours(st.st_uid):
        return f"it belongs to {_user(st.st_uid)}"
    if st.st_mode & 0o022:
        return f"others may write it (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def private_dir(path: str | Path, *, create: bool = True) -> Path:
    """The folder *path* for state shared between damon-bpf sessions (``/run/damon-bpf``): created with mode 0700
    whatever the umask, and checked before anything in it is believed: a folder (not a symlink) of the caller
    (root). One left readable or writable by others (older versions, a umask of 0) is set to 0700 (a warning
    when others could write: what they put there is theirs, and :func:`read_private` ignores it).

    :raises PermissionDeniedError: *path* is a symlink, not a folder, or another user's folder
    :raises FileNotFoundError: it does not exist (only with ``create=False``)
    """
    p = Path(path)
    if create:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(p, DIR_MODE)
        except FileExistsError:
            pass
        except OSError as err:
            raise write_error(str(p), err) from err
    st = os.lstat(p)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionDeniedError(f"{p} is {_kind(st.st_mode)}, not damon-bpf's state folder: not trusted "
                                    "(remove it)")
    if st.st_uid != os.geteuid():
        raise PermissionDeniedError(f"{p} belongs to {_user(st.st_uid)}, not to {_user(os.geteuid())}: not "
                                    "trusted (remove it)")
    mode = stat.S_IMODE(st.st_mode)
    if mode != DIR_MODE:
        if mode & 0o022:
            log.warning("%s was writable by others (mode %04o): set to %04o; files in it that are not %s's are "
                        "ignored", p, mode, DIR_MODE, _user(os.geteuid()))
        try:
            os.chmod(p, DIR_MODE, follow_symlinks=False)
        except (OSError, NotImplementedError) as err:
            raise PermissionDeniedError(f"{p} has mode {mode:04o} and cannot be set to {DIR_MODE:04o}: "
                                        f"{getattr(err, 'strerror', None) or err}") from err
    return p


def read_private(path: str | Path) -> bytes:
    """The content of a state file damon-bpf wrote (in a :func:`private_dir`), read without following a symlink
    and only when it is a regular file of root or the caller that others cannot write (checked on the open
    file); at most 64 KiB.

    :raises PermissionError: it is not such a file (the message says why)
    :raises OSError: it cannot be read (FileNotFoundError: it is gone)
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        problem = _stat_problem(os.fstat(fd))
        if problem is not None:
            raise PermissionError(errno.EPERM, f"not trusted: {problem}", str(path))
        return os.read(fd, _MAX_STATE_BYTES)
    finally:
        os.close(fd)
