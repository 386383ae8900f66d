"""The feature table's machinery: :class:`Feature` rows, the registry of checks, and the state of one pass.

Shared by the check modules of :mod:`damon_bpf.probes.features`; counterpart of damo's ``_damon_features.py``
``DamonFeature`` list.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from damon_bpf import probes
from damon_bpf.errors import DamonBpfError, NotSupportedError, PermissionDeniedError
from damon_bpf.linux import syscalls
from damon_bpf.linux.syscalls import errname
from damon_bpf.linux.sysctl import read_sysctl

__all__ = ("CHECKS", "CheckPass", "Feature", "bpf_map_create", "feature", "fresh_pages", "run_check")

logger = logging.getLogger(__name__)

_BPF_MAP_CREATE = 0  # enum bpf_cmd, include/uapi/linux/bpf.h
_BPF_MAP_TYPE_ARRAY = 2  # enum bpf_map_type
_PERF_MAX_ENTRIES = 4096


@dataclass(slots=True)
class Feature:
    """One row of the feature table.

    :param name: ``<area>/<feature>``, e.g. ``"probe/perf_sw_page_faults_addr"``.
    :param supported: whether damon-bpf can use it on this machine now.
    :param reason: why not (empty when supported).
    :param detail: a short note when supported (value, version, path).
    """

    name: str
    supported: bool
    reason: str = ""
    detail: str = ""
    # private: the error :func:`damon_bpf.probes.features.require` raises when unsupported.
    _error: type[DamonBpfError] = field(default=NotSupportedError, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """``{"name", "supported", "reason", "detail"}``, the ``--json`` shape."""
        return {"name": self.name, "supported": self.supported, "reason": self.reason, "detail": self.detail}


class CheckPass:
    """One pass over the feature table: the file system roots its checks read, and the feature probe program
    (``bpf/feature_probe.bpf.c``), compiled once for all the checks that need it (BCC takes ~1-2 s) and closed by
    :meth:`close`.

    :param proc_root: root of procfs (a fake tree in tests).
    :param sys_root: root of sysfs.
    :param modules_root: where kernel modules and the ``build``/``source`` header links live.
    """

    def __init__(self, proc_root: str = "/proc", sys_root: str = "/sys", modules_root: str = "/lib/modules") -> None:
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.modules_root = modules_root
        self._bpf: probes.BccBPF | None = None
        self._bpf_error: DamonBpfError | None = None
        self.compile_ms = 0.0

    def proc(self, *parts: str) -> Path:
        """``<proc_root>/<parts...>``."""
        return Path(self.proc_root, *parts)

    def sys(self, *parts: str) -> Path:
        """``<sys_root>/<parts...>``."""
        return Path(self.sys_root, *parts)

    def sysctl(self, name: str) -> str | None:
        """The value of sysctl *name* (``kernel.numa_balancing``), or None when this kernel has none."""
        try:
            return read_sysctl(name, proc_root=self.proc_root)
        except NotSupportedError:
            return None

    def require_sysctl(self, name: str, missing: str) -> str:
        """The value of sysctl *name*.

        :raises NotSupportedError: with reason *missing* when this kernel has no such sysctl.
        """
        value = self.sysctl(name)
        if value is None:
            raise NotSupportedError(missing)
        return value

    def feature_probe(self) -> probes.BccBPF:
        """The compiled feature probe program.

        :raises DamonBpfError: ``bpf()`` is not usable, or the program does not compile (the same error again on
            each call of this pass).
        """
        if self._bpf is not None:
            return self._bpf
        if self._bpf_error is not None:
            raise type(self._bpf_error)(str(self._bpf_error))
        try:
            bpf_map_create()  # fails fast (EPERM, ENOSYS) before a compile that cannot be loaded
            start = time.monotonic()
            self._bpf = probes.compile_bpf(
                "feature_probe", [f"-DTARGET_TGID={os.getpid()}", f"-DMAX_ENTRIES={_PERF_MAX_ENTRIES}"]
            )
            self.compile_ms = (time.monotonic() - start) * 1000
        except DamonBpfError as err:
            self._bpf_error = err
            raise
        return self._bpf

    def close(self) -> None:
        """Close the feature probe program, if compiled."""
        if self._bpf is not None:
            probes.close_bpf(self._bpf)
            self._bpf = None


CheckFn = Callable[[CheckPass], str]
#: name -> check function, in table order. A check returns the detail string when the feature is supported and
#: raises a DamonBpfError subclass (message = reason) when it is not.
CHECKS: dict[str, CheckFn] = {}


def feature(name: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: register a check as row *name* of the table (rows keep the order of registration).

    :raises ValueError: *name* is registered already.
    """

    def register(fn: CheckFn) -> CheckFn:
        if name in CHECKS:
            raise ValueError(f"duplicate feature {name}")
        CHECKS[name] = fn
        return fn

    return register


def run_check(name: str, check_pass: CheckPass) -> Feature:
    """Run check *name* in *check_pass*; never raises (an unexpected exception becomes the reason)."""
    start = time.monotonic()
    try:
        detail = CHECKS[name](check_pass)
        feat = Feature(name, True, detail=detail)
    except DamonBpfError as err:
        # require() raises NotSupportedError (MissingDependencyError) or PermissionDeniedError only; a
        # ProbeLoadError or ProbeAttachError behind a "no" is reported as not supported.
        error = type(err) if isinstance(err, (NotSupportedError, PermissionDeniedError)) else NotSupportedError
        feat = Feature(name, False, reason=str(err) or type(err).__name__, _error=error)
    except Exception as err:  # a check must never raise
        logger.debug("feature check %s failed", name, exc_info=True)
        feat = Feature(name, False, reason=f"{type(err).__name__}: {err}")
    logger.debug("%s: %s in %.0f ms", name, feat.supported, (time.monotonic() - start) * 1000)
    return feat


def bpf_map_create() -> None:
    """``BPF_MAP_CREATE`` of a 1-entry array map, closed again: whether ``bpf()`` is usable.

    :raises PermissionDeniedError: not root nor CAP_BPF.
    :raises NotSupportedError: no ``bpf()`` syscall, or it failed otherwise.
    """
    # union bpf_attr starts with map_type, key_size, value_size, max_entries, map_flags (u32 each); the kernel
    # zero-fills the attr beyond the size we pass.
    attr = (ctypes.c_uint32 * 5)(_BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0)
    try:
        fd = syscalls.bpf(_BPF_MAP_CREATE, attr)
    except PermissionDeniedError as err:
        raise PermissionDeniedError(f"needs root or CAP_BPF (bpf() returned {errname(err.errno or 0)})") from err
    except OSError as err:
        if err.errno == errno.ENOSYS:
            raise NotSupportedError("no bpf() syscall (kernel built without CONFIG_BPF_SYSCALL)") from err
        raise NotSupportedError(f"bpf(BPF_MAP_CREATE) failed: {err.strerror} ({errname(err.errno or 0)})") from err
    os.close(fd)


@contextlib.contextmanager
def fresh_pages(nr_pages: int) -> Iterator[tuple[int, int, Callable[[], None]]]:
    """A private anonymous mapping of *nr_pages* never touched: yields ``(start, end, touch)``, where ``touch()``
    writes one byte per page, i.e. causes one page fault per page in the calling thread."""
    size = nr_pages * mmap.PAGESIZE
    mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = (ctypes.c_char * size).from_buffer(mem)
    try:
        start = ctypes.addressof(view)

        def touch() -> None:
            for off in range(0, size, mmap.PAGESIZE):
                mem[off] = 1

        yield start, start + size, touch
    finally:
        del view
        mem.close()
