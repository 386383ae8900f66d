"""The one place that talks to BCC: loading bcc, finding and compiling ``bpf/*.bpf.c``, attaching programs.

Counterpart of bcc's own ``BPF`` class (``src/python/bcc/__init__.py``): this module is a thin, typed wrapper
that imports ``bcc`` lazily (inside functions, so ``import damon_bpf.probes`` works without it), turns bcc's
bare ``Exception``/``OSError`` into :mod:`damon_bpf.errors` with ``raise ... from err``, and hands back plain
Python data (``dict[int, int]``), never bcc ``Table`` objects.

A compiled program is a :data:`BccBPF` handle: pass it back to the functions here and close it with
:func:`close_bpf`. Probe families (page faults, perf samples) are built on these functions.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import enum
import errno as errno_mod
import importlib.resources
import importlib.util
import logging
import mmap
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import (
    DamonBpfError,
    MissingDependencyError,
    PermissionDeniedError,
    ProbeAttachError,
    ProbeLoadError,
)
from damon_bpf.linux import syscalls, sysfs

__all__ = (
    "BccBPF",
    "BpfSourceText",
    "KernelHeaders",
    "ProgType",
    "attach_perf_event",
    "attach_raw_tracepoint",
    "array_lookup_batch",
    "array_update_batch",
    "attach_tracepoint",
    "bpf_source_path",
    "bpf_source_text",
    "close_bpf",
    "compile_bpf",
    "detach_perf_event",
    "detach_raw_tracepoint",
    "detach_tracepoint",
    "find_kernel_headers",
    "load_bcc",
    "load_program",
    "MappedArray",
    "nr_possible_cpus",
    "map_clear",
    "map_fd",
    "mmap_array",
    "map_items",
    "prog_fd",
)

logger = logging.getLogger(__name__)

#: A compiled ``bcc.BPF`` object. bcc ships no type information, so this is opaque to callers: only pass it
#: back to the functions of this module.
BccBPF = Any

_BCC_MISSING = (
    "BCC is not installed: apt install python3-bpfcc "
    "(and run with /usr/bin/python3 or a venv made with --system-site-packages)"
)
_HEADERS_HINT = (
    "kernel headers for {release} are missing: install the kernel development package "
    "(e.g. linux-headers-{release}) or build the kernel with CONFIG_IKHEADERS=m"
)
_ROOT_HINT = "loading BPF programs needs root (CAP_BPF and CAP_PERFMON)"

# Where the package data lives and, for a source checkout, where the repository keeps it.
_BPF_PACKAGE = "damon_bpf.bpf"
_REPO_BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"


class ProgType(enum.Enum):
    """BPF program types used by damon-bpf; the value is the attribute name on ``bcc.BPF``."""

    TRACEPOINT = "TRACEPOINT"
    RAW_TRACEPOINT = "RAW_TRACEPOINT"
    PERF_EVENT = "PERF_EVENT"


def load_bcc() -> ModuleType:
    """Import bcc.

    :return: the ``bcc`` module.
    :raises MissingDependencyError: bcc (``python3-bpfcc``) cannot be imported.
    """
    # Lazy by design: this is the only import of bcc in damon_bpf.
    try:
        import bcc
    except ImportError as err:
        raise MissingDependencyError(_BCC_MISSING) from err
    module: ModuleType = bcc
    return module


def bpf_source_path(name: str) -> Path:
    """Absolute path of ``<name>.bpf.c`` from the installed package ``damon_bpf.bpf``.

    pyproject maps the repository's top-level ``bpf/`` folder to the package ``damon_bpf.bpf``. With an editable
    install on Python < 3.12 ``importlib.resources`` can fail on that namespace package (the setuptools path hook
    entry is not a directory), so the package's search locations and then the repository's ``bpf/`` folder are
    tried next.

    :param name: program family, e.g. ``"feature_probe"`` for ``bpf/feature_probe.bpf.c``.
    :raises ProbeLoadError: the file is in none of those places.
    """
    filename = f"{name}.bpf.c"
    candidates: list[Path] = []
    with contextlib.suppress(ImportError, OSError, TypeError, ValueError):
        traversable = importlib.resources.files(_BPF_PACKAGE) / filename
        candidates.append(Path(str(traversable)))
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(_BPF_PACKAGE)
        if spec is not None and spec.submodule_search_locations is not None:
            candidates.extend(Path(loc) / filename for loc in spec.submodule_search_locations)
    candidates.append(_REPO_BPF_DIR / filename)
    for path in candidates:
        if path.is_absolute() and path.is_file():
            return path
    raise ProbeLoadError(f"BPF source {filename} not found in package {_BPF_PACKAGE} or {_REPO_BPF_DIR}")


# A line ``#include "<name>.bpf.h"`` of a program: such a header is spliced into the program's text.
_SPLICED_INCLUDE = re.compile(r'[ \t]*#[ \t]*include[ \t]+"([A-Za-z0-9_.-]+\.bpf\.h)"')
# Where bcc's diagnostics place the main source file (bcc compiles it as this in-memory file).
_BCC_MAIN = re.compile(r"/virtual/main\.c(?::(\d+))?")


@dataclass(frozen=True)
class BpfSourceText:
    """The text BCC compiles for one program (:func:`bpf_source_text`) and where each of its lines comes from."""

    text: str
    #: the pieces of :attr:`text` in order: ``(its first line in text, the file, that line's number there)``
    pieces: tuple[tuple[int, Path, int], ...]

    def origin(self, line: int) -> tuple[Path, int]:
        """The file and line that line *line* (from 1) of :attr:`text` comes from."""
        start, path, first = self.pieces[0]
        for piece in self.pieces:
            if piece[0] > line:
                break
            start, path, first = piece
        return path, first + line - start

    def locate(self, message: str) -> str:
        """*message* (a bcc diagnostic) with each ``/virtual/main.c:LINE`` replaced by the real file and line."""

        def real(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return str(self.pieces[0][1])
            path, line = self.origin(int(m.group(1)))
            return f"{path}:{line}"

        return _BCC_MAIN.sub(real, message)


def bpf_source_text(source: Path) -> BpfSourceText:
    """The text of the program *source* with each line ``#include "<name>.bpf.h"`` replaced by that header (from
    the program's folder; recursively). Other includes stay: the compiler resolves them.

    bcc rewrites map accesses (``map.lookup()``, ``map.lookup_or_try_init()``) only in the main source file: a
    header that declares maps shared by several programs together with their accessors (``bpf/*.bpf.h``) must
    become part of it.

    :raises ProbeLoadError: a spliced header is missing or includes itself.
    """
    out: list[str] = []
    pieces: list[tuple[int, Path, int]] = []

    def splice(path: Path, stack: tuple[Path, ...]) -> None:
        try:
            lines = path.read_text().splitlines()
        except OSError as err:
            raise ProbeLoadError(f"BPF source {path}: {err.strerror}") from err
        pieces.append((len(out) + 1, path, 1))
        for nr, line in enumerate(lines, 1):
            m = _SPLICED_INCLUDE.match(line)
            if m is None:
                out.append(line)
                continue
            header = path.parent / m.group(1)
            if header in stack:
                raise ProbeLoadError(f"BPF source {path}:{nr}: {header.name} includes itself")
            splice(header, (*stack, header))
            pieces.append((len(out) + 1, path, nr + 1))

    splice(source, (source,))
    return BpfSourceText("\n".join(out) + "\n", tuple(pieces))


@dataclass(frozen=True)
class KernelHeaders:
    """Where BCC will find kernel headers, following its own lookup (``ClangLoader::parse`` in bcc's
    ``src/cc/frontends/clang/loader.cc``)."""

    #: directory BCC compiles against (``kpath``)
    path: Path
    #: ``"BCC_KERNEL_SOURCE"``, ``"source"``, ``"build"`` (the ``/lib/modules/<release>`` entry) or ``"kheaders"``
    origin: str
    #: whether the headers are for the running release (False: a link to another release's headers)
    exact: bool
    #: what the ``/lib/modules/<release>/build`` link points to ("" when it is not a link)
    link_target: str = ""


def find_kernel_headers(
    release: str | None = None,
    *,
    modules_root: str | os.PathLike[str] = "/lib/modules",
    sys_root: str | os.PathLike[str] = "/sys",
) -> KernelHeaders | None:
    """Find the kernel headers BCC would use, without compiling anything.

    :param release: kernel release, ``uname -r`` by default.
    :return: the headers, or None when BCC would print "Unable to find kernel headers".
    """
    release = release or os.uname().release
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        path = Path(env)
        if (path / "include/linux/kconfig.h").is_file():
            return KernelHeaders(path, "BCC_KERNEL_SOURCE", release in str(path.resolve()), "")
    else:
        kdir = Path(modules_root) / release
        build = kdir / "build"
        if build.is_dir() and (kdir / "source").is_dir():
            origin = "source"
        else:
            origin = os.environ.get("BCC_KERNEL_MODULES_SUFFIX", "build")
        path = kdir / origin
        if (path / "include/linux/kconfig.h").is_file():
            # A link under /lib/modules/<release> that names another release is a "linked fallback" (e.g.
            # Debian's generic headers linked in for a custom kernel).
            link = build if build.is_symlink() else path
            target = os.readlink(link) if link.is_symlink() else ""
            exact = not target or release in Path(target).name
            return KernelHeaders(path, origin, exact, target)
    kheaders = Path(sys_root) / "kernel/kheaders.tar.xz"
    if kheaders.is_file():
        return KernelHeaders(kheaders, "kheaders", True, "")
    return None


# bcc's compile and teardown are not safe to run from several threads at once (seen: a crash in
# bpf_module_destroy), and _captured_output redirects the process-wide fds 1 and 2: one lock serialises both.
_BCC_LOCK = threading.RLock()


@contextlib.contextmanager
def _captured_output(out: list[str]) -> Iterator[None]:
    with _BCC_LOCK:
        with _redirected(out):
            yield


@contextlib.contextmanager
def _redirected(out: list[str]) -> Iterator[None]:
    # bcc reports compiler diagnostics on fd 2 (llvm::errs) and "Unable to find kernel headers" on fd 1
    # (std::cout), straight from C++. Redirect both fds into a file for the duration of the call and hand the text
    # back through the yielded list, so the library never prints and errors can quote the compiler.
    # This is process-wide: do not call bcc from two threads at once.
    libc = syscalls.libc()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield
        finally:
            libc.fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))
            if out[-1].strip():
                logger.debug("bcc output:\n%s", out[-1].rstrip())


def _first_error_line(text: str, source: BpfSourceText | None) -> str:
    # The first "error:" diagnostic is the one that matters (later ones cascade); without one, the last line.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if source is not None:
        lines = [source.locate(line) for line in lines]
    for line in lines:
        if "error:" in line:
            return line
    for line in lines:
        if line.startswith("Unable to find kernel headers"):
            return line
    return lines[-1] if lines else ""


def _is_permission_problem(text: str) -> bool:
    return "Operation not permitted" in text or "Need super-user privileges" in text


def compile_bpf(name: str, cflags: Sequence[str] = ()) -> BccBPF:
    """Compile ``bpf/<name>.bpf.c`` with BCC and create its maps.

    BCC gets the program's text with its ``*.bpf.h`` headers spliced in (:func:`bpf_source_text`) and ``-I`` of
    the program's folder first: bcc compiles the text as ``/virtual/main.c``, so the program's other
    ``#include "..."`` lines resolve through that flag. Diagnostics name the real file and line.

    Functions whose names start with bcc's auto-attach prefixes (``tracepoint__``, ``kprobe__``...) are attached
    by bcc right here; damon-bpf programs avoid those prefixes and attach explicitly.

    :param name: program family, see :func:`bpf_source_path`.
    :param cflags: ``-D`` parameters, e.g. ``["-DTARGET_TGID=1234"]`` (the only way to parameterize a program).
    :return: the compiled program; release it with :func:`close_bpf`.
    :raises MissingDependencyError: bcc is not installed.
    :raises PermissionDeniedError: creating the maps was refused (not root).
    :raises ProbeLoadError: compilation failed; the message quotes the first compiler error and says so when
        kernel headers are missing.
    """
    bcc = load_bcc()
    source = bpf_source_path(name)
    program = bpf_source_text(source)
    flags = [f"-I{source.parent}", *(str(f) for f in cflags)]
    out: list[str] = []
    try:
        with _captured_output(out):
            bpf = bcc.BPF(text=program.text.encode(), cflags=flags)
    except Exception as err:  # bcc raises bare Exception
        text = out[0] if out else ""
        detail = _first_error_line(text, program)
        if _is_permission_problem(text):
            raise PermissionDeniedError(f"{_ROOT_HINT}: {detail or err}") from err
        if "Unable to find kernel headers" in text or find_kernel_headers() is None:
            hint = _HEADERS_HINT.format(release=os.uname().release)
            # bcc's own headers message says the same as the hint; keep a real compiler error if there is one.
            detail = f"{hint}; {detail}" if "error:" in detail else hint
        raise ProbeLoadError(f"cannot compile {source.name}: {detail or err}") from err
    return bpf


_T = TypeVar("_T")


def _call(fn: Callable[[], _T], what: str, error: type[DamonBpfError]) -> _T:
    # Run one bcc call, translating its failure into *error* with errno and bcc's own last message.
    out: list[str] = []
    try:
        with _captured_output(out):
            ctypes.set_errno(0)
            return fn()
    except Exception as err:
        if isinstance(err, DamonBpfError):
            raise
        err_no = ctypes.get_errno() or getattr(err, "errno", 0) or 0
        text = out[0] if out else ""
        parts = [f"{what}: {err}"]
        if err_no:
            parts.append(f"{os.strerror(err_no)} ({errno_mod.errorcode.get(err_no, err_no)})")
        line = _first_error_line(text, None)
        if line and line not in parts[0]:
            parts.append(line)
        msg = "; ".join(parts)
        if err_no in (errno_mod.EPERM, errno_mod.EACCES) or _is_permission_problem(text + str(err)):
            raise PermissionDeniedError(f"{_ROOT_HINT}: {msg}") from err
        exc = error(msg)
        exc.errno = err_no  # type: ignore[attr-defined]
        raise exc from err


def load_program(bpf: BccBPF, fn_name: str, prog_type: ProgType) -> None:
    """Load one function of *bpf* into the kernel (the verifier runs here), without attaching it.

    :raises ProbeLoadError: the verifier or the kernel refused the program.
    :raises PermissionDeniedError: not root.
    """
    bcc = load_bcc()
    _call(
        lambda: bpf.load_func(fn_name.encode(), getattr(bcc.BPF, prog_type.value)), f"loading {fn_name}", ProbeLoadError
    )


def attach_tracepoint(bpf: BccBPF, tp: str, fn_name: str) -> None:
    """Attach *fn_name* to the classic tracepoint *tp* (``"category:event"``); needs tracefs mounted.

    :raises ProbeAttachError: attaching failed (its ``errno`` attribute holds the errno when known).
    """
    _call(
        lambda: bpf.attach_tracepoint(tp=tp.encode(), fn_name=fn_name.encode()),
        f"attaching {fn_name} to tracepoint {tp}",
        ProbeAttachError,
    )


def detach_tracepoint(bpf: BccBPF, tp: str) -> None:
    """Detach what :func:`attach_tracepoint` attached to *tp*."""
    _call(lambda: bpf.detach_tracepoint(tp.encode()), f"detaching tracepoint {tp}", ProbeAttachError)


def attach_raw_tracepoint(bpf: BccBPF, tp: str, fn_name: str) -> None:
    """Attach *fn_name* to the raw tracepoint *tp* (the event name alone, e.g. ``"page_fault_user"``).

    Raw tracepoints are opened by name with ``BPF_RAW_TRACEPOINT_OPEN`` and need no tracefs.

    :raises ProbeAttachError: attaching failed (``ENOENT``: no such tracepoint).
    """
    _call(
        lambda: bpf.attach_raw_tracepoint(tp=tp.encode(), fn_name=fn_name.encode()),
        f"attaching {fn_name} to raw tracepoint {tp}",
        ProbeAttachError,
    )


def detach_raw_tracepoint(bpf: BccBPF, tp: str) -> None:
    """Detach what :func:`attach_raw_tracepoint` attached to *tp*."""
    _call(lambda: bpf.detach_raw_tracepoint(tp.encode()), f"detaching raw tracepoint {tp}", ProbeAttachError)


def attach_perf_event(
    bpf: BccBPF,
    fn_name: str,
    *,
    ev_type: int,
    ev_config: int,
    sample_period: int = 0,
    sample_freq: int = 0,
    pid: int = -1,
    cpu: int = -1,
) -> None:
    """Attach *fn_name* to a perf event through bcc's ``attach_perf_event`` (one event per online CPU when
    ``cpu=-1``; ``pid > 0`` follows that thread and, with ``inherit``, its later children).

    bcc passes *ev_config* as ``uint32`` and cannot set ``config1``, ``precise_ip`` or ``sample_type``: use it
    for software and simple hardware events only.

    :param ev_type: ``PERF_TYPE_*`` (include/uapi/linux/perf_event.h), e.g. 1 = software.
    :param ev_config: event number, e.g. 2 = ``PERF_COUNT_SW_PAGE_FAULTS``.
    :raises ProbeAttachError: ``perf_event_open`` or ``PERF_EVENT_IOC_SET_BPF`` failed.
    """
    _call(
        lambda: bpf.attach_perf_event(
            ev_type=ev_type,
            ev_config=ev_config,
            fn_name=fn_name.encode(),
            sample_period=sample_period,
            sample_freq=sample_freq,
            pid=pid,
            cpu=cpu,
        ),
        f"attaching {fn_name} to perf event type {ev_type} config {ev_config}",
        ProbeAttachError,
    )


def detach_perf_event(bpf: BccBPF, *, ev_type: int, ev_config: int) -> None:
    """Close the perf events :func:`attach_perf_event` opened for (*ev_type*, *ev_config*)."""
    _call(
        lambda: bpf.detach_perf_event(ev_type, ev_config),
        f"detaching perf event type {ev_type} config {ev_config}",
        ProbeAttachError,
    )


def _as_int(value: Any) -> int:
    return int(getattr(value, "value", value))


def map_items(bpf: BccBPF, map_name: str) -> dict[int, int]:
    """Read a map whose keys and values are integers (``u32``/``u64``).

    :return: ``{key: value}``.
    :raises ProbeLoadError: no such map.
    """
    table = _call(lambda: bpf[map_name.encode()], f"opening map {map_name}", ProbeLoadError)
    return {_as_int(k): _as_int(v) for k, v in table.items()}


def map_clear(bpf: BccBPF, map_name: str) -> None:
    """Delete every entry of a hash map (zero every slot of an array map)."""
    table = _call(lambda: bpf[map_name.encode()], f"opening map {map_name}", ProbeLoadError)
    table.clear()


def _libbcc() -> Any:
    load_bcc()
    from bcc import libbcc  # noqa: PLC0415  (bcc is imported in damon_bpf.probes only)

    return libbcc.lib


def map_fd(bpf: BccBPF, map_name: str) -> int:
    """The file descriptor of map *map_name* of *bpf*. bcc builds a ``Table`` object for this (tens of
    microseconds): look it up once and keep it."""
    return int(_call(lambda: bpf[map_name.encode()].map_fd, f"opening map {map_name}", ProbeLoadError))


def array_update_batch(fd: int, first_key: int, values: npt.NDArray[Any]) -> None:
    """Write ``values[i]`` to slot ``first_key + i`` of the array map *fd* (:func:`map_fd`) with one
    ``BPF_MAP_UPDATE_BATCH`` (each row of *values* is one map value, per-CPU maps: all CPUs' copies).

    :raises ProbeLoadError: the kernel refused the update.
    """
    n = values.shape[0]
    if n == 0:
        return
    keys = np.arange(first_key, first_key + n, dtype=np.uint32)
    cnt = ctypes.c_uint32(n)
    vals = np.ascontiguousarray(values)
    if _libbcc().bpf_update_batch(fd, keys.ctypes.data, vals.ctypes.data, ctypes.byref(cnt)):
        raise ProbeLoadError(f"batch update of BPF map fd {fd}: {os.strerror(ctypes.get_errno())}")


def array_lookup_batch(fd: int, first_key: int, n: int, value_words: int) -> npt.NDArray[np.uint64]:
    """*n* consecutive slots of the array map *fd* (:func:`map_fd`) from *first_key*, as ``(n, value_words)`` u64, with one
    ``BPF_MAP_LOOKUP_BATCH`` (per-CPU maps: ``value_words`` covers every possible CPU).

    :raises ProbeLoadError: the kernel refused the lookup.
    """
    out = np.zeros((n, value_words), dtype=np.uint64)
    if n == 0:
        return out
    keys = np.zeros(n, dtype=np.uint32)
    # the kernel continues *after* in_batch (map_get_next_key): start from first_key - 1
    in_batch = ctypes.c_uint32(first_key - 1 if first_key else 0)
    out_batch = ctypes.c_uint32(0)
    cnt = ctypes.c_uint32(n)
    rc = _libbcc().bpf_lookup_batch(fd, ctypes.byref(in_batch) if first_key else None,
                                    ctypes.byref(out_batch), keys.ctypes.data, out.ctypes.data, ctypes.byref(cnt))
    err = ctypes.get_errno()
    if rc != 0 and err != errno_mod.ENOENT:  # ENOENT: reached the end of the map
        raise ProbeLoadError(f"batch lookup of BPF map fd {fd}: {os.strerror(err)}")
    return out


class MappedArray:
    """A ``BPF_F_MMAPABLE`` array map of ``u64`` values mapped into this process: :attr:`array` reads and writes
    the map's values in place, with no system call."""

    def __init__(self, fd: int, nr_entries: int) -> None:
        size = max(mmap.PAGESIZE, -(-nr_entries * 8 // mmap.PAGESIZE) * mmap.PAGESIZE)
        try:
            self._mm: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as err:
            raise ProbeLoadError(f"mapping BPF map fd {fd}: {err.strerror}") from err
        self.array: npt.NDArray[np.uint64] = np.frombuffer(self._mm, dtype=np.uint64, count=nr_entries)

    def close(self) -> None:
        if self._mm is not None:
            self.array = np.zeros(0, dtype=np.uint64)  # drop the buffer export before closing
            try:
                self._mm.close()
            except BufferError:  # a caller still holds a view: the mapping goes with the last reference
                pass
            self._mm = None


def nr_possible_cpus(sys_root: str = "/sys") -> int:
    """``nr_cpu_ids``: one more than the highest possible CPU (``/sys/devices/system/cpu/possible``, e.g.
    ``0-3``), the bound of ``bpf_get_smp_processor_id()`` and the number of copies a per-CPU map holds."""
    try:
        with open(f"{sys_root}/devices/system/cpu/possible") as f:
            ranges = sysfs.parse_ranges(f.read())
    except (OSError, ValueError):
        return os.cpu_count() or 1
    return max((hi for _, hi in ranges), default=0) + 1


def mmap_array(fd: int, nr_entries: int) -> MappedArray:
    """Map the ``BPF_F_MMAPABLE`` array map *fd* of *nr_entries* ``u64`` values (see :class:`MappedArray`); for
    a map of larger values (structs of ``u64``), *nr_entries* counts their words.

    :raises ProbeLoadError: the map cannot be mapped (not created mmap-able)
    """
    return MappedArray(fd, nr_entries)


def prog_fd(bpf: BccBPF, fn_name: str) -> int:
    """The file descriptor of the loaded program *fn_name* (see :func:`load_program`)."""
    return int(_call(lambda: bpf.funcs[fn_name.encode()].fd, f"finding program {fn_name}", ProbeLoadError))


def close_bpf(bpf: BccBPF) -> None:
    """Detach everything *bpf* attached, close its programs and maps, and drop bcc's atexit hook on it.

    Never raises: failures are logged, as closing happens on error paths.
    """
    try:
        with _captured_output([]):
            bpf.cleanup()
    except Exception:
        logger.warning("closing a BPF object failed", exc_info=True)
    # BPF.__init__ registers atexit(self.cleanup), which keeps the object alive until exit.
    atexit.unregister(bpf.cleanup)


# bcc records the fds of each attach_perf_event*() call in ``BPF.open_perf_events[(type, config)]`` and
# overwrites the entry on the next call with the same (type, config): per-CPU calls, or two events that differ
# only in config1 (ldlat), would leak the earlier fds. Each fd opened by attach_perf_event_raw() below is moved
# to an entry of its own, keyed (_RAW_PERF_KEY, fd): BPF.cleanup() still closes it (it calls
# detach_perf_event(*key) for every key), and nothing collides.
_RAW_PERF_KEY = "damon_bpf.perf_event_raw"


def _errno_from_perror(text: str) -> int:
    # libbcc reports a failed perf_event_open()/ioctl() with perror("... failed"): "<what> failed: <strerror>".
    # The text is authoritative where ctypes' saved errno may have been clobbered after the failing call.
    found = [e for e in errno_mod.errorcode if f"failed: {os.strerror(e)}" in text]
    # the longest message wins: "No such device or address" (ENXIO) also contains "No such device" (ENODEV)
    return max(found, key=lambda e: len(os.strerror(e)), default=0)


def _attach_perf_event_raw_on(bpf: BccBPF, fn_name: str, attr: Any, pid: int, cpu: int) -> None:
    _call(
        lambda: bpf.attach_perf_event_raw(attr=attr, fn_name=fn_name.encode(), pid=pid, cpu=cpu),
        f"attaching {fn_name} to perf event type {attr.type} config {attr.config:#x} on CPU {cpu}",
        ProbeAttachError,
    )


def _close_perf_event_raw(bpf: BccBPF, fd: int) -> None:
    _call(lambda: bpf.detach_perf_event(_RAW_PERF_KEY, fd), f"closing perf event fd {fd}", ProbeAttachError)


def attach_perf_event_raw(bpf: BccBPF, fn_name: str, attr: Any, *, pid: int = -1, cpu: int = -1) -> dict[int, int]:
    """Attach *fn_name* (a ``BPF_PROG_TYPE_PERF_EVENT`` program) to perf events opened with a full
    ``struct perf_event_attr``, through bcc's ``attach_perf_event_raw``.

    Unlike :func:`attach_perf_event` this sets every field the caller filled in (``config1``/``config2``,
    ``precise_ip``, ``sample_type``, ``exclude_*``, ``wakeup_events``); nothing is added, in particular not
    ``inherit``. The events are enabled when this returns.

    :param attr: a ``bcc.perf.Perf.perf_event_attr()`` (``PERF_ATTR_SIZE_VER6`` layout).
    :param pid: ``-1`` for every task on the CPU (filter in BPF), else the thread to follow.
    :param cpu: one CPU, or ``-1`` for one event per online CPU.
    :return: ``{cpu: perf event fd}``; close them with :func:`detach_perf_event_raw` (or :func:`close_bpf`,
        which closes them too). If opening fails on one CPU, the events already opened are closed.
    :raises ProbeAttachError: ``perf_event_open``, ``PERF_EVENT_IOC_SET_BPF`` or ``IOC_ENABLE`` failed; its
        ``errno`` attribute holds the errno (``ENOENT``, ``EOPNOTSUPP``, ``EINVAL``...).
    :raises PermissionDeniedError: ``EACCES``/``EPERM``.
    """
    bcc = load_bcc()
    cpus = [cpu] if cpu >= 0 else [int(c) for c in bcc.utils.get_online_cpus()]
    table: dict[Any, dict[int, int]] = bpf.open_perf_events
    key = (attr.type, attr.config)
    fds: dict[int, int] = {}
    try:
        for c in cpus:
            saved = table.pop(key, None)  # an attach_perf_event() of the same (type, config) stays intact
            try:
                _attach_perf_event_raw_on(bpf, fn_name, attr, pid, c)
                fd = int(table.pop(key)[c])
            except DamonBpfError as err:
                err_no = _errno_from_perror(str(err))
                if err_no:
                    err.errno = err_no  # type: ignore[attr-defined]
                raise
            finally:
                if saved is not None:
                    table[key] = saved
            table[(_RAW_PERF_KEY, fd)] = {c: fd}
            fds[c] = fd
    except BaseException:
        with contextlib.suppress(DamonBpfError):
            detach_perf_event_raw(bpf, fds)
        raise
    return fds


def detach_perf_event_raw(bpf: BccBPF, fds: dict[int, int]) -> None:
    """Close the perf events :func:`attach_perf_event_raw` opened (its ``{cpu: fd}`` result).

    Call it once per result: fds that bcc no longer tracks (already closed by :func:`close_bpf`) are skipped.

    :raises ProbeAttachError: closing an fd failed (the other fds are closed anyway).
    """
    table: dict[Any, dict[int, int]] = bpf.open_perf_events
    first: DamonBpfError | None = None
    for fd in fds.values():
        if (_RAW_PERF_KEY, fd) not in table:
            continue
        try:
            _close_perf_event_raw(bpf, fd)
        except DamonBpfError as err:
            table.pop((_RAW_PERF_KEY, fd), None)
            first = first or err
    if first is not None:
        raise first
