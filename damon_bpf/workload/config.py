"""Workload configs: named regions and the phases that access them (masim's ``.cfg`` files).

masim (``sjp38/masim``, ``configs/*.cfg``) describes a workload as a list of regions (name, size) and a list of
phases (name, duration, and per region a pattern and a weight). :func:`load_config` reads the JSON form, with
top-level ``name`` (optional), ``regions`` (``name``, ``size``, ``file_backed``) and ``phases`` (``name``,
``duration``, ``regions`` of ``region``, ``pattern``, ``stride``, ``weight``, ``access``).

Sizes and strides take damo size strings (``64MiB``) or plain byte counts; durations take damo time strings
(``500ms``) or plain seconds. :func:`builtin_pattern` builds the bundled ``stairs``, ``zigzag`` and ``hotcold``
workloads (and ``perthread``: a hot range per worker thread, ``thread`` in a region entry). See docs/eval.md,
section "Workload configs", for an example.
"""

from __future__ import annotations

import enum
import json
import math
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping

from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import format_bytes, text_to_bytes, text_to_sec

__all__ = (
    "PAGE_SIZE",
    "DEFAULT_STRIDE_BYTES",
    "BUILTIN_PATTERNS",
    "Pattern",
    "Access",
    "RegionSpec",
    "PhaseAccess",
    "PhaseSpec",
    "WorkloadConfig",
    "config_from_dict",
    "load_config",
    "builtin_pattern",
)

# The unit of accounting: every region is rounded up to whole pages, and "touches" count pages for the
# default stride. Base page size of x86-64/arm64-4k (``PAGE_SIZE`` in ``arch/*/include/asm/page*.h``).
PAGE_SIZE = 4096
DEFAULT_STRIDE_BYTES = PAGE_SIZE
BUILTIN_PATTERNS = ("stairs", "zigzag", "hotcold", "perthread")


class Pattern(str, enum.Enum):
    """How a phase walks a region: uniformly random slots, or a sequential sweep with a stride."""

    RANDOM = "random"
    SEQUENTIAL = "sequential"


class Access(str, enum.Enum):
    """What a touch does: read a byte, write a byte, or read then write it back modified."""

    READ = "read"
    WRITE = "write"
    RW = "rw"


@dataclass(frozen=True)
class RegionSpec:
    """One region of the workload.

    :param name: unique region name
    :param size_bytes: size, a positive multiple of :data:`PAGE_SIZE`
    :param file_backed: map a file instead of anonymous memory
    """

    name: str
    size_bytes: int
    file_backed: bool = False


@dataclass(frozen=True)
class PhaseAccess:
    """How one phase touches one region.

    :param region: name of the region (must exist in the config)
    :param pattern: :class:`Pattern`
    :param stride_bytes: distance between touches (sequential) or slot size (random)
    :param weight: relative share of the phase's access batches that go to this region
    :param access: :class:`Access`
    :param thread: only worker thread number ``thread % threads`` (0-based) touches the region; None: every
        worker does (per-thread truth for per-thread attribution, docs/threads.md)
    """

    region: str
    pattern: Pattern = Pattern.RANDOM
    stride_bytes: int = DEFAULT_STRIDE_BYTES
    weight: float = 1.0
    access: Access = Access.READ
    thread: int | None = None


@dataclass(frozen=True)
class PhaseSpec:
    """One phase: for ``duration_s`` seconds the listed regions are touched; all others are left alone.

    :param name: phase name (unique in the config)
    :param duration_s: length of the phase in seconds
    :param accesses: the regions touched; empty means an idle phase
    """

    name: str
    duration_s: float
    accesses: tuple[PhaseAccess, ...]


@dataclass(frozen=True)
class WorkloadConfig:
    """A validated workload: regions and phases. Build it with :func:`config_from_dict`,
    :func:`load_config` or :func:`builtin_pattern`; direct construction is validated too.

    :param name: workload name, written as ``pattern`` into the ground truth
    :param regions: the regions, in mapping order
    :param phases: the phases, run in order and cycled
    """

    name: str
    regions: tuple[RegionSpec, ...]
    phases: tuple[PhaseSpec, ...]

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def total_bytes(self) -> int:
        """Sum of all region sizes."""
        return sum(r.size_bytes for r in self.regions)

    def region(self, name: str) -> RegionSpec:
        """Return the region called *name*.

        :raises InvalidParamsError: no such region
        """
        for r in self.regions:
            if r.name == name:
                return r
        raise InvalidParamsError(f"unknown region {name!r}")

    def scaled(self, scale: float) -> WorkloadConfig:
        """Return a copy with every region size multiplied by *scale* (rounded up to whole pages).

        :raises InvalidParamsError: *scale* is not a positive finite number, or a stride no longer fits
        """
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
            raise InvalidParamsError(f"scale must be a positive number, not {scale!r}")
        regions = tuple(replace(r, size_bytes=_round_pages(r.size_bytes * scale)) for r in self.regions)
        return replace(self, regions=regions)

    def with_file_backing(self) -> WorkloadConfig:
        """Return a copy with every region file backed."""
        return replace(self, regions=tuple(replace(r, file_backed=True) for r in self.regions))


def _round_pages(nr_bytes: float) -> int:
    return max(1, math.ceil(nr_bytes / PAGE_SIZE)) * PAGE_SIZE


def _validate(cfg: WorkloadConfig) -> None:
    if not cfg.name:
        raise InvalidParamsError("workload name must not be empty")
    if not cfg.regions:
        raise InvalidParamsError("a workload needs at least one region")
    sizes: dict[str, int] = {}
    for r in cfg.regions:
        if not r.name:
            raise InvalidParamsError("region names must not be empty")
        if r.name in sizes:
            raise InvalidParamsError(f"duplicate region name {r.name!r}")
        if r.size_bytes <= 0 or r.size_bytes % PAGE_SIZE:
            raise InvalidParamsError(
                f"region {r.name!r}: size must be a positive multiple of {PAGE_SIZE} bytes, not {r.size_bytes}"
            )
        sizes[r.name] = r.size_bytes
    if not cfg.phases:
        raise InvalidParamsError("a workload needs at least one phase")
    phase_names: set[str] = set()
    for p in cfg.phases:
        if not p.name:
            raise InvalidParamsError("phase names must not be empty")
        if p.name in phase_names:
            raise InvalidParamsError(f"duplicate phase name {p.name!r}")
        phase_names.add(p.name)
        if not math.isfinite(p.duration_s) or p.duration_s <= 0:
            raise InvalidParamsError(f"phase {p.name!r}: duration must be positive, not {p.duration_s}")
        seen: set[str] = set()
        for a in p.accesses:
            where = f"phase {p.name!r}, region {a.region!r}"
            if a.region not in sizes:
                known = ", ".join(sizes)
                raise InvalidParamsError(f"phase {p.name!r}: unknown region {a.region!r} (known: {known})")
            if a.region in seen:
                raise InvalidParamsError(f"{where}: region listed twice")
            seen.add(a.region)
            if not isinstance(a.pattern, Pattern):
                raise InvalidParamsError(f"{where}: pattern must be a Pattern, not {a.pattern!r}")
            if not isinstance(a.access, Access):
                raise InvalidParamsError(f"{where}: access must be an Access, not {a.access!r}")
            if a.stride_bytes <= 0:
                raise InvalidParamsError(f"{where}: stride must be positive, not {a.stride_bytes}")
            if a.stride_bytes > sizes[a.region]:
                raise InvalidParamsError(
                    f"{where}: stride {a.stride_bytes} is larger than the region "
                    f"({format_bytes(sizes[a.region])})"
                )
            if not math.isfinite(a.weight) or a.weight <= 0:
                raise InvalidParamsError(f"{where}: weight must be positive, not {a.weight}")
            if a.thread is not None and (isinstance(a.thread, bool) or not isinstance(a.thread, int)
                                         or not 0 <= a.thread < 1024):
                raise InvalidParamsError(f"{where}: thread must be a worker number 0..1023, not {a.thread!r}")


# --- JSON parsing -------------------------------------------------------------------------------------------

_REGION_KEYS = {"name", "size", "file_backed"}
_PHASE_KEYS = {"name", "duration", "regions"}
_ACCESS_KEYS = {"region", "pattern", "stride", "weight", "access", "thread"}
_TOP_KEYS = {"name", "regions", "phases"}


def _check_keys(obj: Any, allowed: set[str], required: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidParamsError(f"{where}: expected an object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidParamsError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    missing = sorted(required - set(obj))
    if missing:
        raise InvalidParamsError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    return obj


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidParamsError(f"{where}: expected a string, not {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidParamsError(f"{where}: expected a list, not {type(value).__name__}")
    return value


def _size(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidParamsError(f"{where}: invalid size {value!r}")
    try:
        nr = text_to_bytes(value)
    except InvalidParamsError as err:
        raise InvalidParamsError(f"{where}: {err}") from err
    if nr <= 0:
        raise InvalidParamsError(f"{where}: size must be positive, not {value!r}")
    return nr


def _enum(cls: type[Pattern] | type[Access], value: Any, where: str) -> Any:
    try:
        return cls(value)
    except ValueError as err:
        choices = ", ".join(repr(m.value) for m in cls)
        raise InvalidParamsError(f"{where}: invalid {cls.__name__.lower()} {value!r} (choose {choices})") from err


def _parse_access(obj: Any, where: str) -> PhaseAccess:
    d = _check_keys(obj, _ACCESS_KEYS, {"region"}, where)
    region = _str(d["region"], f"{where}: region")
    where = f"{where} ({region!r})"
    weight = d.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise InvalidParamsError(f"{where}: weight must be a number, not {weight!r}")
    return PhaseAccess(
        region=region,
        pattern=_enum(Pattern, d.get("pattern", Pattern.RANDOM.value), where),
        stride_bytes=_size(d.get("stride", DEFAULT_STRIDE_BYTES), f"{where}: stride"),
        weight=float(weight),
        access=_enum(Access, d.get("access", Access.READ.value), where),
        thread=d.get("thread"),  # checked by _validate()
    )


def _parse_phase(obj: Any, idx: int) -> PhaseSpec:
    d = _check_keys(obj, _PHASE_KEYS, {"name", "duration"}, f"phase #{idx}")
    name = _str(d["name"], f"phase #{idx}: name")
    where = f"phase {name!r}"
    dur = d["duration"]
    if isinstance(dur, bool) or not isinstance(dur, (str, int, float)):
        raise InvalidParamsError(f"{where}: invalid duration {dur!r}")
    try:
        duration_s = text_to_sec(dur)
    except InvalidParamsError as err:
        raise InvalidParamsError(f"{where}: {err}") from err
    accesses = tuple(
        _parse_access(a, f"{where}, access #{i}") for i, a in enumerate(_list(d.get("regions", []), where))
    )
    return PhaseSpec(name=name, duration_s=duration_s, accesses=accesses)


def _parse_region(obj: Any, idx: int) -> RegionSpec:
    d = _check_keys(obj, _REGION_KEYS, {"name", "size"}, f"region #{idx}")
    name = _str(d["name"], f"region #{idx}: name")
    fb = d.get("file_backed", False)
    if not isinstance(fb, bool):
        raise InvalidParamsError(f"region {name!r}: file_backed must be true or false, not {fb!r}")
    return RegionSpec(name=name, size_bytes=_round_pages(_size(d["size"], f"region {name!r}")), file_backed=fb)


def config_from_dict(obj: Any, default_name: str = "config") -> WorkloadConfig:
    """Build and validate a config from its parsed JSON form (see the module docstring).

    :param obj: the decoded JSON document
    :param default_name: workload name used when the document has no ``name``
    :return: the validated config; region sizes are rounded up to whole pages
    :raises InvalidParamsError: the document breaks the schema or a rule; the message says where
    """
    d = _check_keys(obj, _TOP_KEYS, {"regions", "phases"}, "config")
    name = _str(d.get("name", default_name), "config: name")
    regions = tuple(_parse_region(r, i) for i, r in enumerate(_list(d["regions"], "config: regions")))
    phases = tuple(_parse_phase(p, i) for i, p in enumerate(_list(d["phases"], "config: phases")))
    return WorkloadConfig(name=name, regions=regions, phases=phases)


def load_config(path: str | os.PathLike[str]) -> WorkloadConfig:
    """Read a JSON workload config file.

    :param path: the file
    :return: the validated config, named after the file unless it has a ``name``
    :raises InvalidParamsError: the file cannot be read, is not JSON, or is not a valid config
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise InvalidParamsError(f"cannot read config {os.fspath(path)!r}: {err.strerror or err}") from err
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidParamsError(
            f"config {os.fspath(path)!r} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from err
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "config"
    try:
        return config_from_dict(obj, default_name=stem)
    except InvalidParamsError as err:
        raise InvalidParamsError(f"config {os.fspath(path)!r}: {err}") from err


# --- built-in patterns --------------------------------------------------------------------------------------
#
# Sizes fit a small machine (24 GiB, 2 cores) with room to spare: every pattern maps under 512 MiB at
# scale 1, and each phase lasts long enough (>= 1 s) to span many DAMON aggregation intervals (100 ms default,
# ``damon_attrs.aggr_interval`` in include/linux/damon.h).
#
#   stairs    r0 r1 r2 r3           one 64 MiB region hot per phase, in turn:
#             ## .. .. ..  phase 0     addr ^     ___
#             .. ## .. ..  phase 1          |  ___|
#             .. .. ## ..  phase 2          |__|
#             .. .. .. ##  phase 3          +-------> time
#
#   zigzag    r0 -> r1 -> r2 -> r3 -> r2 -> r1 -> (r0 ...)   sequential sweeps of 32 MiB regions
#
#   hotcold   hot 16 MiB: random read+write, always    cold 256 MiB: written once at setup, never again
#
#   perthread t0 16 MiB: worker 0 only | gap 64 MiB: never | t1 16 MiB: worker 1 only (random writes, always;
#             run it with --threads 2: each thread has its own hot range, the truth of per-thread attribution)

_STAIRS_NR, _STAIRS_SIZE, _STAIRS_PHASE_S = 4, 64 << 20, 2.0
_ZIGZAG_NR, _ZIGZAG_SIZE, _ZIGZAG_PHASE_S = 4, 32 << 20, 1.0
_HOT_SIZE, _COLD_SIZE, _HOTCOLD_PHASE_S = 16 << 20, 256 << 20, 1.0
_PERTHREAD_SIZE, _PERTHREAD_GAP, _PERTHREAD_PHASE_S = 16 << 20, 64 << 20, 1.0


def _builtin(name: str) -> WorkloadConfig:
    if name == "stairs":
        regions = tuple(RegionSpec(f"stair{i}", _STAIRS_SIZE) for i in range(_STAIRS_NR))
        phases = tuple(
            PhaseSpec(f"stair{i}", _STAIRS_PHASE_S, (PhaseAccess(f"stair{i}", Pattern.RANDOM),))
            for i in range(_STAIRS_NR)
        )
    elif name == "zigzag":
        regions = tuple(RegionSpec(f"zz{i}", _ZIGZAG_SIZE) for i in range(_ZIGZAG_NR))
        order = list(range(_ZIGZAG_NR)) + list(range(_ZIGZAG_NR - 2, 0, -1))
        phases = tuple(
            PhaseSpec(f"step{k}-zz{i}", _ZIGZAG_PHASE_S, (PhaseAccess(f"zz{i}", Pattern.SEQUENTIAL),))
            for k, i in enumerate(order)
        )
    elif name == "hotcold":
        regions = (RegionSpec("hot", _HOT_SIZE), RegionSpec("cold", _COLD_SIZE))
        phases = (PhaseSpec("hot", _HOTCOLD_PHASE_S, (PhaseAccess("hot", Pattern.RANDOM, access=Access.RW),)),)
    elif name == "perthread":
        regions = (RegionSpec("t0", _PERTHREAD_SIZE), RegionSpec("gap", _PERTHREAD_GAP),
                   RegionSpec("t1", _PERTHREAD_SIZE))
        phases = (PhaseSpec("own", _PERTHREAD_PHASE_S, (
            PhaseAccess("t0", Pattern.RANDOM, access=Access.WRITE, thread=0),
            PhaseAccess("t1", Pattern.RANDOM, access=Access.WRITE, thread=1))),)
    else:
        raise InvalidParamsError(f"unknown pattern {name!r} (choose {', '.join(BUILTIN_PATTERNS)})")
    return WorkloadConfig(name=name, regions=regions, phases=phases)


def builtin_pattern(name: str, scale: float = 1.0) -> WorkloadConfig:
    """Build a bundled workload.

    ``stairs``: four 64 MiB regions, one phase (2 s) per region touched at random, in turn.
    ``zigzag``: four 32 MiB regions swept sequentially, 1 s each, in the order 0 1 2 3 2 1 (then again).
    ``hotcold``: a 16 MiB hot region read and written at random all the time, and a 256 MiB cold region that
    is only written once at setup.
    ``perthread``: two 16 MiB regions written at random, ``t0`` by worker thread 0 only and ``t1`` by worker 1
    only (with ``--threads 2``; with one thread it touches both), 64 MiB apart.

    :param name: one of :data:`BUILTIN_PATTERNS`
    :param scale: multiplier for every region size
    :return: the config
    :raises InvalidParamsError: unknown *name* or bad *scale*
    """
    return _builtin(name).scaled(scale)
