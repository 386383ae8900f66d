"""Workload ground truth: JSON lines that say which address ranges were hot when (masim's phase log).

masim prints per-phase access counts so DAMON's output can be checked; here the runner writes them as JSON
lines, flushed one by one, and monitoring code reads them back with :func:`load_truth` and asks
:func:`hot_ranges_at` which ranges were hot at a ``CLOCK_MONOTONIC`` time. The records are::

    {"type": "start", "pid": int, "time": float, "page_size": 4096, "threads": int, "pattern": str,
     "seed": int, "regions": [{"name": str, "start": int, "end": int, "file_backed": bool}, ...]}
    {"type": "phase", "name": str, "start": float, "end": float,
     "regions": [{"name": str, "start": int, "end": int, "hot": bool, "pattern": str | null,
                  "access": str | null, "nr_touches": int, "touches_per_sec": float}, ...]}
    ...
    {"type": "end", "time": float}

Times are ``time.monotonic()`` seconds, addresses are virtual addresses of the workload process, ranges are
half-open ``[start, end)``. A phase record lists every region; regions the phase did not touch have
``"hot": false``, ``nr_touches`` 0 and ``null`` pattern/access.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import IO, Any, Sequence

from damon_bpf.errors import DamonBpfError, InvalidParamsError

__all__ = (
    "TruthRegion",
    "TruthStart",
    "PhaseRegion",
    "TruthPhase",
    "Truth",
    "TruthWriter",
    "load_truth",
    "phase_at",
    "hot_ranges_at",
)


@dataclass(frozen=True)
class TruthRegion:
    """A mapped region: ``[start, end)`` virtual addresses in the workload process."""

    name: str
    start: int
    end: int
    file_backed: bool


@dataclass(frozen=True)
class TruthStart:
    """The ``start`` record."""

    pid: int
    time: float
    page_size: int
    threads: int
    pattern: str
    regions: tuple[TruthRegion, ...]
    seed: int | None = None


@dataclass(frozen=True)
class PhaseRegion:
    """One region's entry in a ``phase`` record."""

    name: str
    start: int
    end: int
    hot: bool
    pattern: str | None
    access: str | None
    nr_touches: int
    touches_per_sec: float


@dataclass(frozen=True)
class TruthPhase:
    """A ``phase`` record: one run of one phase, from ``start`` to ``end`` (monotonic seconds)."""

    name: str
    start: float
    end: float
    regions: tuple[PhaseRegion, ...]

    @property
    def hot_ranges(self) -> list[tuple[int, int]]:
        """``[start, end)`` of the regions this phase touched, in address order."""
        return sorted((r.start, r.end) for r in self.regions if r.hot)


@dataclass
class Truth:
    """A whole ground-truth file: the start record, the phases in time order, and the end time (``None`` if
    the workload did not finish writing it)."""

    start: TruthStart
    phases: list[TruthPhase] = field(default_factory=list)
    end_time: float | None = None


class TruthWriter:
    """Write ground-truth records as JSON lines, flushing each one so readers see them at once.

    :param path: the file to create (replacing a regular file, never written through a symlink:
        :func:`damon_bpf.linux.files.create_file`)
    :raises DamonBpfError: the file cannot be created
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from damon_bpf.linux.files import create_file

        try:
            self._file: IO[str] | None = open(create_file(os.fspath(path)), "w", encoding="utf-8")
        except DamonBpfError as err:
            cause = err.__cause__
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(err)
            raise type(err)(f"cannot create truth file {os.fspath(path)!r}: {why}") from err

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush it.

        :raises DamonBpfError: the write failed
        """
        if self._file is None:
            raise DamonBpfError("truth file is closed")
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as err:
            raise DamonBpfError(f"cannot write truth file: {err.strerror or err}") from err

    def close(self) -> None:
        """Close the file; closing twice is fine."""
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()
            except OSError as err:
                raise DamonBpfError(f"cannot write truth file: {err.strerror or err}") from err


def _get(rec: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    try:
        val = rec[key]
    except KeyError as err:
        raise InvalidParamsError(f"{where}: missing key {key!r}") from err
    if isinstance(val, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidParamsError(f"{where}: bad {key!r} value {val!r}")
    if not isinstance(val, types):
        raise InvalidParamsError(f"{where}: bad {key!r} value {val!r}")
    return val


def _num(rec: dict[str, Any], key: str, where: str) -> float:
    return float(_get(rec, key, (int, float), where))


def _parse_start(rec: dict[str, Any], where: str) -> TruthStart:
    regions = tuple(
        TruthRegion(
            name=_get(r, "name", str, where),
            start=_get(r, "start", int, where),
            end=_get(r, "end", int, where),
            file_backed=_get(r, "file_backed", bool, where),
        )
        for r in _get(rec, "regions", list, where)
    )
    seed = rec.get("seed")
    return TruthStart(
        pid=_get(rec, "pid", int, where),
        time=_num(rec, "time", where),
        page_size=_get(rec, "page_size", int, where),
        threads=_get(rec, "threads", int, where),
        pattern=_get(rec, "pattern", str, where),
        regions=regions,
        seed=seed if isinstance(seed, int) else None,
    )


def _parse_phase(rec: dict[str, Any], where: str) -> TruthPhase:
    regions = tuple(
        PhaseRegion(
            name=_get(r, "name", str, where),
            start=_get(r, "start", int, where),
            end=_get(r, "end", int, where),
            hot=_get(r, "hot", bool, where),
            pattern=_get(r, "pattern", (str, type(None)), where),
            access=_get(r, "access", (str, type(None)), where),
            nr_touches=_get(r, "nr_touches", int, where),
            touches_per_sec=_num(r, "touches_per_sec", where),
        )
        for r in _get(rec, "regions", list, where)
    )
    return TruthPhase(
        name=_get(rec, "name", str, where),
        start=_num(rec, "start", where),
        end=_num(rec, "end", where),
        regions=regions,
    )


def load_truth(path: str | os.PathLike[str]) -> Truth:
    """Read a ground-truth file written by the workload (possibly still being written).

    A last line without its newline is taken as a record still being written and skipped, so the file of a
    running workload can be read.

    :param path: the file
    :return: the start record, the phases in file order and the end time if present
    :raises InvalidParamsError: the file cannot be read, has no start record, or holds a malformed record
    """
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as err:
        raise InvalidParamsError(f"cannot read truth file {name!r}: {err.strerror or err}") from err
    # split() leaves "" after a final newline, or the partial last record when there is none.
    lines.pop()
    truth: Truth | None = None
    for lineno, line in enumerate(lines, 1):
        where = f"{name}:{lineno}"
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidParamsError(f"{where}: not a JSON record: {err.msg}") from err
        if not isinstance(rec, dict):
            raise InvalidParamsError(f"{where}: not a JSON object")
        kind = rec.get("type")
        if kind == "start":
            if truth is not None:
                raise InvalidParamsError(f"{where}: second start record")
            truth = Truth(start=_parse_start(rec, where))
        elif truth is None:
            raise InvalidParamsError(f"{where}: record before the start record")
        elif kind == "phase":
            truth.phases.append(_parse_phase(rec, where))
        elif kind == "end":
            truth.end_time = _num(rec, "time", where)
        else:
            raise InvalidParamsError(f"{where}: unknown record type {kind!r}")
    if truth is None:
        raise InvalidParamsError(f"{name}: no start record")
    return truth


def phase_at(truth: Truth | Sequence[TruthPhase], t: float) -> TruthPhase | None:
    """Return the phase running at monotonic time *t* (``start <= t < end``), or ``None`` if none was (before
    the first phase, between two phases while the threads switch, or after the last one)."""
    phases = truth.phases if isinstance(truth, Truth) else truth
    for p in phases:
        if p.start <= t < p.end:
            return p
    return None


def hot_ranges_at(truth: Truth | Sequence[TruthPhase], t: float) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` address ranges hot during the phase active at monotonic time *t*.

    :param truth: a loaded truth file, or its phases
    :param t: ``time.monotonic()`` seconds (same clock as the workload, ``CLOCK_MONOTONIC``)
    :return: the ranges the phase touched, in address order; empty if no phase was active at *t*
    """
    p = phase_at(truth, t)
    return p.hot_ranges if p is not None else []
