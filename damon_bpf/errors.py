"""The damon-bpf exception hierarchy.

Every error the library raises is a :class:`DamonBpfError`; the CLI is the only place that turns them into
messages and exit codes. OS and bcc errors are translated at the boundary with ``raise ... from err``, as
psutil's ``wrap_exceptions`` does.
"""

from __future__ import annotations

import errno

__all__ = (
    "DamonBpfError",
    "NotSupportedError",
    "PermissionDeniedError",
    "ProbeLoadError",
    "ProbeAttachError",
    "InvalidParamsError",
    "TargetGoneError",
    "ProcessGoneError",
    "MissingDependencyError",
    "IOFailureError",
)


class DamonBpfError(Exception):
    """Base class of every damon-bpf error."""


class NotSupportedError(DamonBpfError):
    """The machine or kernel lacks what the request needs; the message says what is missing."""


class PermissionDeniedError(DamonBpfError, PermissionError):
    """The operation needs privileges the caller does not have (usually root / CAP_BPF + CAP_PERFMON)."""


class ProbeLoadError(DamonBpfError):
    """A BPF program failed to compile or load."""


class ProbeAttachError(DamonBpfError):
    """A loaded BPF program could not be attached to its event."""


class InvalidParamsError(DamonBpfError, ValueError):
    """User-supplied parameters break a rule (the kernel's ``-EINVAL`` cases)."""


class TargetGoneError(DamonBpfError):
    """A monitoring target (process) does not exist or has exited."""

    def __init__(self, pid: int, msg: str | None = None, *, command_status: int | None = None) -> None:
        self.pid = pid
        #: the exit status of a command damon-bpf started (``-- CMD``) that ended before monitoring began
        self.command_status = command_status
        super().__init__(msg or f"process {pid} does not exist or has exited")


class ProcessGoneError(TargetGoneError, ProcessLookupError):
    """``ESRCH`` from a syscall on a process (:mod:`damon_bpf.linux.syscalls`): the target exited. Both a
    :class:`TargetGoneError` and a :class:`ProcessLookupError`, with ``errno`` set to ``ESRCH``."""

    def __init__(self, pid: int, msg: str | None = None) -> None:
        super().__init__(pid, msg)
        self.errno = errno.ESRCH


class MissingDependencyError(NotSupportedError):
    """A system package the request needs is not installed; the message names it."""


class IOFailureError(DamonBpfError):
    """Reading or writing a file failed in the machine, not in the request: the disk is full, over quota,
    read-only, or the device reports an error (``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EIO``). The CLI's exit code 6."""
