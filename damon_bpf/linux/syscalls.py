"""The Linux system calls damon-bpf makes through ``ctypes``, each wrapped once (psutil's ``_psposix`` is the
model): ``pidfd_open(2)``, ``process_madvise(2)``, ``move_pages(2)``, ``perf_event_open(2)`` and ``bpf(2)``.

- The C library is loaded once (:data:`_libc`, ``use_errno=True``).
- Syscall numbers live in one table per architecture (:data:`SYSCALLS`; ``arch/x86/entry/syscalls/syscall_64.tbl``
  and ``include/uapi/asm-generic/unistd.h``); a name unknown for this machine raises
  :class:`~damon_bpf.errors.NotSupportedError` naming the architecture.
- errno is mapped to the project's errors here, where the mapping is unambiguous (:func:`errno_error`):
  ``ESRCH`` raises :class:`ProcessGoneError` (a :class:`~damon_bpf.errors.TargetGoneError` that is also a
  :class:`ProcessLookupError`), ``EPERM``/``EACCES`` raise :class:`~damon_bpf.errors.PermissionDeniedError`
  naming what was denied; every other errno raises a plain :class:`OSError`. All of them carry ``errno``, so
  callers that branch on specific errnos (``EINVAL``, ``ENOMEM``, ``ENOSYS``...) keep ``except OSError``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from typing import Sequence, Union

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import NotSupportedError, PermissionDeniedError, ProcessGoneError

__all__ = (
    "SYSCALLS",
    "IOV_MAX",
    "MADV_WILLNEED",
    "MADV_COLD",
    "MADV_PAGEOUT",
    "MADV_COLLAPSE",
    "MPOL_MF_MOVE",
    "PERF_TYPE_HARDWARE",
    "PERF_TYPE_SOFTWARE",
    "PERF_TYPE_TRACEPOINT",
    "PERF_TYPE_HW_CACHE",
    "PERF_TYPE_RAW",
    "PERF_TYPE_BREAKPOINT",
    "PERF_COUNT_SW_PAGE_FAULTS",
    "PERF_COUNT_SW_PAGE_FAULTS_MIN",
    "PERF_COUNT_SW_PAGE_FAULTS_MAJ",
    "PERF_SAMPLE_IP",
    "PERF_SAMPLE_TID",
    "PERF_SAMPLE_ADDR",
    "PERF_FLAG_FD_CLOEXEC",
    "ProcessGoneError",
    "PerfEventAttr",
    "Ranges",
    "bpf",
    "errname",
    "errno_error",
    "move_pages",
    "perf_event_open",
    "pidfd_open",
    "process_madvise",
    "set_pdeathsig",
    "syscall_nr",
)

#: Syscall numbers by ``platform.machine()``. ``pidfd_open`` (434) and ``process_madvise`` (440) come after the
#: tables were unified at 424 and are the same everywhere; the others differ.
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"bpf": 321, "perf_event_open": 298, "move_pages": 279, "pidfd_open": 434, "process_madvise": 440},
    "aarch64": {"bpf": 280, "perf_event_open": 241, "move_pages": 239, "pidfd_open": 434, "process_madvise": 440},
    "riscv64": {"bpf": 280, "perf_event_open": 241, "move_pages": 239, "pidfd_open": 434, "process_madvise": 440},
    "loongarch64": {"bpf": 280, "perf_event_open": 241, "move_pages": 239, "pidfd_open": 434,
                    "process_madvise": 440},
    "ppc64le": {"bpf": 361, "perf_event_open": 319, "move_pages": 301, "pidfd_open": 434, "process_madvise": 440},
    "ppc64": {"bpf": 361, "perf_event_open": 319, "move_pages": 301, "pidfd_open": 434, "process_madvise": 440},
    "s390x": {"bpf": 351, "perf_event_open": 331, "move_pages": 310, "pidfd_open": 434, "process_madvise": 440},
}

#: ``UIO_MAXIOV`` (``include/uapi/linux/uio.h``): the most iovecs one vectored call takes.
IOV_MAX = 1024

#: ``MADV_*`` values (``include/uapi/asm-generic/mman-common.h``) that ``process_madvise(2)`` accepts
#: (``process_madvise_behavior_valid()`` in ``mm/madvise.c``).
MADV_WILLNEED = 3
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_COLLAPSE = 25

#: ``MPOL_MF_MOVE`` (``include/uapi/linux/mempolicy.h``): move pages mapped by this process only.
MPOL_MF_MOVE = 1 << 1

# include/uapi/linux/perf_event.h
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_COUNT_SW_PAGE_FAULTS_MIN = 5
PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6
PERF_SAMPLE_IP = 1 << 0
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_ADDR = 1 << 3
PERF_FLAG_FD_CLOEXEC = 1 << 3

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_MACHINE = platform.machine()

#: What :func:`process_madvise` takes: a sequence of ``(start, length)`` pairs or an ``(n, 2)`` array of them.
Ranges = Union[Sequence[tuple[int, int]], npt.NDArray[np.integer]]


def libc() -> ctypes.CDLL:
    """The C library, loaded once (``use_errno``), for the few calls that are not syscalls (``fflush``)."""
    return _libc


def errname(err: int) -> str:
    """The symbolic name of an errno (``"EOPNOTSUPP"`` rather than its alias ``ENOTSUP``), or its number."""
    if err == errno.EOPNOTSUPP:  # == ENOTSUP on Linux; the kernel source says EOPNOTSUPP
        return "EOPNOTSUPP"
    return errno.errorcode.get(err, str(err))


def errno_error(err: int, what: str, pid: int | None = None) -> OSError:
    """The error to raise for errno *err* of the call described by *what* (e.g. ``"process_madvise(pidfd 5)"``).

    :param pid: the process the call acted on, for :class:`ProcessGoneError` (``-1`` when unknown)
    :return: :class:`ProcessGoneError` for ``ESRCH``, :class:`~damon_bpf.errors.PermissionDeniedError` for
        ``EPERM``/``EACCES``, else ``OSError(err, strerror)``; each with ``errno`` set
    """
    if err == errno.ESRCH:
        if pid is None or pid <= 0:
            return ProcessGoneError(-1, f"{what}: the process does not exist or has exited (ESRCH)")
        return ProcessGoneError(pid, f"process {pid} does not exist or has exited ({what}: ESRCH)")
    if err in (errno.EPERM, errno.EACCES):
        denied = PermissionDeniedError(f"{what} denied ({errname(err)}): {os.strerror(err)}")
        denied.errno = err  # str() stays the message: strerror is left unset
        return denied
    return OSError(err, f"{what}: {os.strerror(err)}")


def syscall_nr(name: str) -> int:
    """The number of syscall *name* on this machine.

    :raises NotSupportedError: the number is unknown for this architecture
    """
    try:
        return SYSCALLS[_MACHINE][name]
    except KeyError:
        raise NotSupportedError(f"syscall number of {name}() on {_MACHINE} is unknown to damon-bpf") from None


def _check(rc: int, what: str, pid: int | None = None) -> int:
    if rc < 0:
        raise errno_error(ctypes.get_errno(), what, pid)
    return rc


def pidfd_open(pid: int) -> int:
    """``pidfd_open(pid, 0)`` (Linux 5.3): a file descriptor that refers to the process *pid* until it is closed.

    :raises ProcessGoneError: no such process
    :raises PermissionDeniedError: denied (seccomp)
    :raises OSError: ``ENOSYS`` (kernel before 5.3) and others, ``errno`` set
    """
    what = f"pidfd_open({pid})"
    if hasattr(os, "pidfd_open"):
        try:
            return os.pidfd_open(pid)
        except OSError as err:
            raise errno_error(err.errno or 0, what, pid) from err
    return _check(int(_libc.syscall(ctypes.c_long(syscall_nr("pidfd_open")), ctypes.c_int(pid), ctypes.c_uint(0))),
                  what, pid)


def _iovecs(ranges: Ranges) -> npt.NDArray[np.uint64]:
    # struct iovec {void *iov_base; size_t iov_len;} (include/uapi/linux/uio.h) on LP64: two u64, so an (n, 2)
    # C-contiguous uint64 array is an iovec array, built without a Python object per range.
    if isinstance(ranges, np.ndarray):
        arr = ranges
    else:
        arr = np.array(ranges, dtype=np.uint64)
    # no copy when it already is a C-contiguous uint64 array
    return np.ascontiguousarray(arr.reshape(-1, 2), dtype=np.uint64)


def process_madvise(pidfd: int, ranges: Ranges, advice: int) -> int:
    """``process_madvise(pidfd, iov, n, advice, 0)`` (Linux 5.10) of every range, ``IOV_MAX`` iovecs per call.

    The kernel applies the iovecs in order and stops at the first that fails, returning the bytes of the ones it
    completed, or the error when it completed none (``vector_madvise()`` in ``mm/madvise.c``); this keeps that
    contract across the calls: a call that completes less than all its iovecs ends the walk.

    :param ranges: ``(start, length)`` pairs, or an ``(n, 2)`` integer array of them (used in place when it is
        already C-contiguous ``uint64``)
    :return: the bytes of the leading ranges that were advised (every range's bytes when all were); the first
        range not covered is the one the kernel refused
    :raises ProcessGoneError: ``ESRCH``, the process exited, before any range was advised
    :raises PermissionDeniedError: ``EPERM`` (no ``CAP_SYS_NICE`` or ptrace access)
    :raises OSError: the first range failed: ``EINVAL`` (advice or VMA not accepted), ``ENOMEM`` (not mapped),
        ``EAGAIN``...; ``errno`` set
    """
    iov = _iovecs(ranges)
    nr = syscall_nr("process_madvise")
    done = 0
    for off in range(0, iov.shape[0], IOV_MAX):
        chunk = iov[off:off + IOV_MAX]
        rc = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(pidfd), ctypes.c_void_p(chunk.ctypes.data),
                               ctypes.c_size_t(chunk.shape[0]), ctypes.c_int(advice), ctypes.c_uint(0)))
        if rc < 0:
            if done:
                return done
            raise errno_error(ctypes.get_errno(), f"process_madvise(pidfd {pidfd}, advice {advice})")
        done += rc
        if rc < int(chunk[:, 1].sum()):
            break
    return done


def move_pages(pid: int, addrs: Sequence[int] | npt.NDArray[np.integer],
               nodes: Sequence[int] | npt.NDArray[np.integer] | None) -> npt.NDArray[np.int32]:
    """``move_pages(pid, count, pages, nodes, status, MPOL_MF_MOVE)``: move each page to its node, or with
    *nodes* None only report the node of each page.

    :return: per page, the node it is on, or a negative errno (``-ENOENT``: not present, ``-EFAULT``: unmapped,
        ``-EBUSY``, ``-EACCES``: shared with other processes...)
    :raises ProcessGoneError: ``ESRCH``
    :raises PermissionDeniedError: ``EPERM``/``EACCES``
    :raises OSError: the call failed as a whole otherwise (``ENODEV``...)
    :raises NotSupportedError: no syscall number known for this architecture
    """
    nr = syscall_nr("move_pages")
    pages = np.ascontiguousarray(np.asarray(addrs, dtype=np.uint64))
    count = pages.size
    status = np.zeros(count, dtype=np.int32)
    nodes_arr = None if nodes is None else np.ascontiguousarray(np.asarray(nodes, dtype=np.int32))
    nodes_ptr = ctypes.c_void_p(nodes_arr.ctypes.data) if nodes_arr is not None else ctypes.c_void_p(0)
    _check(int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(pid), ctypes.c_ulong(count),
                             ctypes.c_void_p(pages.ctypes.data), nodes_ptr, ctypes.c_void_p(status.ctypes.data),
                             ctypes.c_int(MPOL_MF_MOVE))), f"move_pages(pid {pid})", pid)
    return status


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (include/uapi/linux/perf_event.h), ``PERF_ATTR_SIZE_VER6`` layout (120 bytes).

    ``sample_period`` shares a union with ``sample_freq`` (set ``freq=1`` to use it as a frequency), and
    ``wakeup_events`` with ``wakeup_watermark``.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("disabled", ctypes.c_uint64, 1),
        ("inherit", ctypes.c_uint64, 1),
        ("pinned", ctypes.c_uint64, 1),
        ("exclusive", ctypes.c_uint64, 1),
        ("exclude_user", ctypes.c_uint64, 1),
        ("exclude_kernel", ctypes.c_uint64, 1),
        ("exclude_hv", ctypes.c_uint64, 1),
        ("exclude_idle", ctypes.c_uint64, 1),
        ("mmap", ctypes.c_uint64, 1),
        ("comm", ctypes.c_uint64, 1),
        ("freq", ctypes.c_uint64, 1),
        ("inherit_stat", ctypes.c_uint64, 1),
        ("enable_on_exec", ctypes.c_uint64, 1),
        ("task", ctypes.c_uint64, 1),
        ("watermark", ctypes.c_uint64, 1),
        ("precise_ip", ctypes.c_uint64, 2),
        ("_flags_rest", ctypes.c_uint64, 47),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("_reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("_reserved_3", ctypes.c_uint32),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.size = ctypes.sizeof(self)


def perf_event_open(
    attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group_fd: int = -1, flags: int = PERF_FLAG_FD_CLOEXEC
) -> int:
    """``perf_event_open(2)``.

    :return: the event fd (close it with :func:`os.close`)
    :raises ProcessGoneError: ``ESRCH`` (no thread *pid*)
    :raises PermissionDeniedError: ``EACCES``/``EPERM`` (``kernel.perf_event_paranoid``, no ``CAP_PERFMON``)
    :raises OSError: the kernel refused otherwise; ``errno`` says why (``ENOENT``, ``EOPNOTSUPP``, ``EINVAL``...)
    :raises NotSupportedError: the syscall number for this architecture is unknown
    """
    rc = int(_libc.syscall(ctypes.c_long(syscall_nr("perf_event_open")), ctypes.c_void_p(ctypes.addressof(attr)),
                           ctypes.c_long(pid), ctypes.c_long(cpu), ctypes.c_long(group_fd), ctypes.c_ulong(flags)))
    return _check(rc, f"perf_event_open(type {attr.type}, config {attr.config:#x}, pid {pid}, cpu {cpu})",
                  pid if pid > 0 else None)


def bpf(cmd: int, attr: ctypes.Structure | ctypes.Array[ctypes.c_uint32]) -> int:
    """``bpf(cmd, &attr, sizeof(attr))`` (include/uapi/linux/bpf.h); *attr* is the member of ``union bpf_attr``
    that *cmd* reads (the kernel zero-fills the rest).

    :return: the syscall's result (a new fd for the create and load commands)
    :raises PermissionDeniedError: ``EPERM``/``EACCES`` (no ``CAP_BPF``)
    :raises OSError: otherwise (``ENOSYS`` without ``CONFIG_BPF_SYSCALL``, ``EINVAL``...), ``errno`` set
    """
    rc = int(_libc.syscall(ctypes.c_long(syscall_nr("bpf")), ctypes.c_long(cmd), ctypes.byref(attr),
                           ctypes.c_long(ctypes.sizeof(attr))))
    return _check(rc, f"bpf(cmd {cmd})")


#: ``PR_SET_PDEATHSIG`` (``include/uapi/linux/prctl.h``).
PR_SET_PDEATHSIG = 1


def set_pdeathsig(sig: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, sig)``: the calling process gets *sig* when the thread that forked it exits.

    :raises OSError: the call failed
    """
    if _libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise errno_error(err, "prctl(PR_SET_PDEATHSIG)")
