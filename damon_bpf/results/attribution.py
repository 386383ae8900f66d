"""Code attribution of monitored regions: which instructions touched the hottest and coldest memory.

No kernel counterpart (DAMON keeps no instruction pointers); this is the ``damon-bpf report code`` library.

**The sidecar** ``FILE.attribution`` next to a record ``FILE``: JSON lines, one per aggregation interval and
target, each with ``time_ns``, ``target_id``, ``pid``, ``ips`` (``[region_start, region_end, ip, events]``
entries) and optionally ``comm`` and ``syms``. Live records get it from the BPF sources' ``last_ips``;
``damon-bpf import`` writes it with :class:`AttributionWriter`, with perf's own symbol names in ``syms``.

**The report.** The regions of the last snapshot are ranked by their recent ``nr_accesses``
(:func:`region_scores`); the hottest and coldest are listed with the code that touched them over the whole
record, partly overlapping entries counted in proportion. Symbols come from ``syms``, else BCC for live
processes, else hex. :func:`folded_lines` writes folded stacks for flame graphs.

See docs/records.md, sections "The code attribution sidecar" and "The code report".
"""

from __future__ import annotations


import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.linux.files import atomic_write, create_file
from damon_bpf.linux.process import is_running
from damon_bpf.results.records.model import ATTRIBUTION_SUFFIX

__all__ = (
    "SIDECAR_SUFFIX",
    "sidecar_path",
    "AttributionWriter",
    "read_attribution",
    "RecordRegions",
    "RankedRegion",
    "CodeShare",
    "region_scores",
    "rank_regions",
    "attribute",
    "Symbolizer",
    "frame_label",
    "folded_lines",
)

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ATTRIBUTION_SUFFIX  # the records' name for it, one definition


def sidecar_path(record_path: str) -> str:
    """``FILE.attribution`` for the record ``FILE``."""
    return record_path + SIDECAR_SUFFIX


class AttributionWriter:
    """Writes a ``FILE.attribution`` sidecar (see the module docstring), one JSON line per call of
    :meth:`write`. Use as a context manager or call :meth:`close`.

    :param path: the sidecar's path (:func:`sidecar_path`; created 0600, replacing only a regular file:
        :func:`damon_bpf.linux.files.create_file`) or an open text stream
    :raises DamonBpfError: the file cannot be created (InvalidParamsError: a folder, symlink, device is there)
    """

    def __init__(self, path: str | IO[str]) -> None:
        if isinstance(path, str):
            self._f: IO[str] = open(create_file(path), "w", encoding="utf-8")
            self._own = True
        else:
            self._f = path
            self._own = False
        self._syms_written: set[tuple[int, int]] = set()
        self.nr_lines = 0

    def write(self, time_ns: int, target_id: int, pid: int | None, ips: Iterable[Sequence[int]], *,
              comm: str | None = None, syms: dict[int, str] | None = None) -> None:
        """One interval of one target.

        :param ips: ``(region_start, region_end, ip, events)`` rows
        :param syms: names for instruction pointers (only those not written before are kept)
        """
        rows = [[int(s), int(e), int(ip), int(n)] for s, e, ip, n in ips]
        if not rows:
            return
        line: dict[str, Any] = {"time_ns": int(time_ns), "target_id": int(target_id), "pid": pid, "ips": rows}
        if comm:
            line["comm"] = comm
        if syms:
            key_pid = -1 if pid is None else int(pid)
            new = {}
            for _, _, ip, _ in rows:
                if (key_pid, ip) in self._syms_written or ip not in syms:
                    continue
                self._syms_written.add((key_pid, ip))
                new[f"{ip:#x}"] = syms[ip]
            if new:
                line["syms"] = new
        self._f.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.nr_lines += 1

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> AttributionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_attribution(path: str) -> list[dict[str, Any]]:
    """The lines of a sidecar as dicts (``time_ns``, ``target_id``, ``pid``, ``ips``, optional ``comm`` and
    ``syms``); malformed lines are skipped with a debug log.

    :raises InvalidParamsError: the file does not exist
    """
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError as err:
        raise InvalidParamsError(f"{path}: no such file") from err
    out = []
    with f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict) or not isinstance(d.get("ips"), list):
                    raise ValueError("not an attribution line")
            except ValueError as err:
                log.debug("%s:%d: skipped (%s)", path, lineno, err)
                continue
            out.append(d)
    return out


# -- records -------------------------------------------------------------------------------------------


@dataclass
class RecordRegions:
    """One target of a record: its snapshots' regions as arrays.

    :ivar snapshots: ``(end_time_ns, starts, ends, nr_accesses, ages)`` per snapshot, in time order
    :ivar max_nr_accesses: ``aggr_us / sample_us`` when the record has intervals, else None
    """

    target_id: int
    snapshots: list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                          npt.NDArray[np.int64]]] = field(default_factory=list)
    max_nr_accesses: int | None = None
    pid: int | None = None


def _int(x: Any) -> int:
    if isinstance(x, dict):  # damo's {"samples": n} / {"usec": u, "aggr_intervals": a}
        for k in ("samples", "aggr_intervals", "usec", "percent"):
            if x.get(k) is not None:
                return _int(x[k])
        return 0
    if isinstance(x, str):
        x = x.replace(",", "").strip()
        return int(float(x.split()[0]))
    return int(x or 0)


def _time_ns(x: Any) -> int:
    if isinstance(x, str):
        from damon_bpf.config.units import text_to_ns

        return text_to_ns(x)
    return int(x or 0)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def regions_from_records(records: Iterable[Any]) -> list[RecordRegions]:
    """Targets' regions from damo-style records: dicts of damo's JSON (``target_id``, ``intervals``,
    ``snapshots[].regions[]``, damon-bpf's ``pid``), objects with the same attribute names, or
    :class:`damon_bpf.results.records.Record` objects (snapshots with ``start``/``end``/``nr_accesses``/``age`` columns)."""
    out = []
    for rec in records:
        pid = _get(rec, "pid")
        rr = RecordRegions(_int(_get(rec, "target_id", 0)), pid=None if pid is None else int(pid))
        iv = _get(rec, "intervals")
        if iv is not None:
            s_us, a_us = _get(iv, "sample_us") or _get(iv, "sample"), _get(iv, "aggr_us") or _get(iv, "aggr")
            if s_us and a_us:
                s, a = _time_ns(s_us) if isinstance(s_us, str) else int(s_us), \
                    _time_ns(a_us) if isinstance(a_us, str) else int(a_us)
                rr.max_nr_accesses = max(1, a // max(s, 1))
        for snap in _get(rec, "snapshots", []) or []:
            if not isinstance(snap, dict) and hasattr(snap, "start") and hasattr(snap, "nr_accesses"):
                cols = [np.asarray(getattr(snap, k), dtype=np.int64) for k in ("start", "end", "nr_accesses", "age")]
                order = np.argsort(cols[0], kind="stable")
                rr.snapshots.append((int(snap.end_time), *(c[order] for c in cols)))  # type: ignore[arg-type]
                continue
            regs = _get(snap, "regions", []) or []
            starts = np.array([_int(_get(r, "start")) for r in regs], dtype=np.int64)
            ends = np.array([_int(_get(r, "end")) for r in regs], dtype=np.int64)
            nr = np.array([_int(_get(r, "nr_accesses")) for r in regs], dtype=np.int64)
            ages = np.array([_int(_get(r, "age")) for r in regs], dtype=np.int64)
            order = np.argsort(starts, kind="stable")
            rr.snapshots.append((_time_ns(_get(snap, "end_time", 0)), starts[order], ends[order], nr[order],
                                 ages[order]))
        rr.snapshots.sort(key=lambda s: s[0])
        out.append(rr)
    return out


def load_record(path: str) -> list[RecordRegions]:
    """The targets' regions of a record file, read by :func:`damon_bpf.results.records.read_records` (damo's and
    damon-bpf's formats).

    :raises InvalidParamsError: missing, unreadable or not a record file (one-line message)
    """
    from damon_bpf.results.records import read_records

    return regions_from_records(read_records(path))


# -- ranking ---------------------------------------------------------------------------------------------


def region_scores(rr: RecordRegions, last: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                         npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The last snapshot's regions of *rr* with their ``nr_accesses`` averaged over the last *last* snapshots
    (for each region, the overlap-weighted mean of the overlapping regions of each snapshot; gaps count 0).

    :return: starts, ends, mean nr_accesses, ages (of the last snapshot)
    """
    if not rr.snapshots:
        z = np.zeros(0, np.int64)
        return z, z.copy(), np.zeros(0), z.copy()
    _, starts, ends, _, ages = rr.snapshots[-1]
    snaps = rr.snapshots[-max(1, last):]
    total = np.zeros(starts.size, dtype=np.float64)
    for _, s, e, nr, _ in snaps:
        # nr_accesses x bytes per snapshot region, as a step function: integrate it over each target region
        cum = np.concatenate([[0.0], np.cumsum(nr * (e - s), dtype=np.float64)])

        def integral(x: npt.NDArray[np.int64], s: npt.NDArray[np.int64] = s, e: npt.NDArray[np.int64] = e,
                     nr: npt.NDArray[np.int64] = nr, cum: npt.NDArray[np.float64] = cum) -> npt.NDArray[np.float64]:
            i = np.searchsorted(s, x, side="right") - 1
            ii = np.maximum(i, 0)
            inside = (i >= 0) & (x < e[ii])
            part = np.where(inside, (x - s[ii]) * nr[ii], np.where(i >= 0, (e[ii] - s[ii]) * nr[ii], 0))
            return np.where(i >= 0, cum[ii] + part, 0.0)

        total += integral(ends) - integral(starts)
    size = np.maximum(ends - starts, 1).astype(np.float64)
    return starts, ends, total / size / len(snaps), ages


@dataclass
class CodeShare:
    """One instruction pointer's share of the accesses to a region."""

    ip: int
    events: float
    symbol: str = ""


@dataclass
class RankedRegion:
    """A region of the report: hot or cold, with its score and the code that touched it."""

    kind: str  # "hot" or "cold"
    target_id: int
    pid: int | None
    start: int
    end: int
    nr_accesses: float
    age: int
    code: list[CodeShare] = field(default_factory=list)
    total_events: float = 0.0


def rank_regions(rr: RecordRegions, top: int, last: int) -> tuple[list[RankedRegion], list[RankedRegion]]:
    """The *top* hottest (highest mean ``nr_accesses``, bigger first on ties) and the *top* coldest (lowest,
    older first, then bigger) regions of the last snapshot of *rr*. A region is in at most one list."""
    starts, ends, score, ages = region_scores(rr, last)
    n = starts.size
    if n == 0:
        return [], []
    sz = ends - starts
    hot_order = np.lexsort((-sz, -score))
    cold_order = np.lexsort((-sz, -ages, score))
    k = min(top, n)
    hot_idx = [int(i) for i in hot_order[:k] if score[i] > 0] if n > 1 else [int(hot_order[0])]
    cold_idx = [int(i) for i in cold_order if int(i) not in hot_idx][:k]

    def mk(i: int, kind: str) -> RankedRegion:
        return RankedRegion(kind, rr.target_id, None, int(starts[i]), int(ends[i]), float(score[i]), int(ages[i]))

    return [mk(i, "hot") for i in hot_idx], [mk(i, "cold") for i in cold_idx]


def attribute(regions: Sequence[RankedRegion], lines: Iterable[dict[str, Any]],
              target_id: int) -> dict[int, dict[int, float]]:
    """For each of *regions* (by position), events per instruction pointer from the sidecar *lines* of
    *target_id*, prorated by overlap (see the module docstring)."""
    out: dict[int, dict[int, float]] = {i: defaultdict(float) for i in range(len(regions))}
    if not regions:
        return out
    rs = np.array([r.start for r in regions], dtype=np.int64)
    re_ = np.array([r.end for r in regions], dtype=np.int64)
    for line in lines:
        if _int(line.get("target_id", 0)) != target_id:
            continue
        rows = line.get("ips") or []
        if not rows:
            continue
        arr = np.array([[int(x) for x in row[:4]] for row in rows], dtype=object)
        s = arr[:, 0].astype(np.int64)
        e = arr[:, 1].astype(np.int64)
        n = arr[:, 3].astype(np.float64)
        ov = np.maximum(0, np.minimum(e[:, None], re_[None, :]) - np.maximum(s[:, None], rs[None, :]))
        share = ov / np.maximum(e - s, 1)[:, None] * n[:, None]
        for ri, ci in zip(*np.nonzero(share)):
            out[int(ci)][int(arr[ri, 2])] += float(share[ri, ci])
    return out


# -- symbols --------------------------------------------------------------------------------------------


class Symbolizer:
    """Names for instruction pointers: the sidecar's ``syms``, then BCC for live processes, else hex.

    :param syms: ``{(pid, ip): name}`` from sidecars
    :param live: a ``symbolize(pid, ips) -> list[str]`` (default: :func:`damon_bpf.probes.symbols.symbolize`;
        ``""`` means unknown); None turns live symbolization off
    :param alive: ``alive(pid) -> bool`` (default: :func:`damon_bpf.linux.process.is_running`)
    """

    _DEFAULT: Any = object()

    def __init__(self, syms: dict[tuple[int, int], str] | None = None,
                 live: Callable[[int, Sequence[int]], list[str]] | None | Any = _DEFAULT,
                 alive: Callable[[int], bool] | None = None) -> None:
        self.syms = dict(syms or {})
        if live is Symbolizer._DEFAULT:
            from damon_bpf.probes.symbols import symbolize

            live = symbolize
        self.live = live
        self.alive = alive or is_running
        #: messages for the user (why some addresses stay hex)
        self.notes: list[str] = []
        self._cache: dict[tuple[int, int], str] = {}

    @staticmethod
    def from_lines(lines: Iterable[dict[str, Any]], **kw: Any) -> Symbolizer:
        syms: dict[tuple[int, int], str] = {}
        for line in lines:
            pid = line.get("pid")
            for k, v in (line.get("syms") or {}).items():
                try:
                    syms[(-1 if pid is None else int(pid), int(k, 0))] = str(v)
                except (TypeError, ValueError):
                    continue
        return Symbolizer(syms, **kw)

    def resolve(self, pid: int | None, ips: Sequence[int]) -> list[str]:
        """Names for *ips* of *pid*: ``"symbol+0xoff [module]"``, or ``"0x..."`` when unknown."""
        key_pid = -1 if pid is None else int(pid)
        todo = [ip for ip in dict.fromkeys(ips) if (key_pid, ip) not in self._cache]
        for ip in todo:
            name = self.syms.get((key_pid, ip), "")
            if name and not name.startswith("[unknown]"):
                self._cache[(key_pid, ip)] = name
        todo = [ip for ip in todo if (key_pid, ip) not in self._cache]
        if todo and self.live is not None and pid is not None:
            if self.alive(int(pid)):
                try:
                    names = self.live(int(pid), todo)
                except DamonBpfError as err:
                    self._note(f"no symbols from BCC ({err}): addresses shown in hex")
                    names = [""] * len(todo)
                for ip, nm in zip(todo, names):
                    if nm and not nm.startswith("[unknown]"):
                        self._cache[(key_pid, ip)] = nm
            else:
                self._note(f"process {pid} has exited: its addresses cannot be symbolized with BCC (symbolization "
                           f"needs the process alive; imported perf records carry perf's names)")
        for ip in todo:
            if (key_pid, ip) not in self._cache:
                partial = self.syms.get((key_pid, ip), "")  # "[unknown] [module]": keep the module
                self._cache[(key_pid, ip)] = f"{ip:#x}" + (partial[len("[unknown]"):] if partial else "")
        return [self._cache[(key_pid, ip)] for ip in ips]

    def _note(self, msg: str) -> None:
        if msg not in self.notes:
            self.notes.append(msg)


_SYM_RE = re.compile(r"^(?P<name>.*?)(?:\+0x[0-9a-fA-F]+)?(?: \[(?P<module>[^\[\]]+)\])?$")


def frame_label(symbol: str) -> str:
    """A flame-graph frame for a symbol: ``module`name`` (offset dropped, so one function is one frame);
    ``name`` alone without a module. Semicolons, which separate frames, become colons."""
    m = _SYM_RE.match(symbol.strip())
    name, module = (m.group("name"), m.group("module")) if m else (symbol, None)
    label = f"{module}`{name}" if module else name
    return label.replace(";", ":").replace("\n", " ")


def folded_lines(regions: Iterable[RankedRegion], comms: dict[int, str] | None = None) -> list[str]:
    """Folded stacks (see the module docstring) for the code of *regions*; counts are events rounded to
    integers (at least 1 for any share)."""
    acc: dict[str, float] = defaultdict(float)
    for r in regions:
        comm = (comms or {}).get(r.pid or -1) or (f"pid {r.pid}" if r.pid is not None else f"target {r.target_id}")
        base = f"{comm.replace(';', ':')};region [{r.start:#x}-{r.end:#x}]"
        for c in r.code:
            acc[f"{base};{frame_label(c.symbol or hex(c.ip))}"] += c.events
    return [f"{k} {max(1, int(round(v)))}" for k, v in acc.items()]


def write_folded(out: str | IO[str], lines: Iterable[str]) -> None:
    """Write folded-stack lines to a path (atomically, 0600: :func:`damon_bpf.linux.files.atomic_write`) or
    stream.

    :raises DamonBpfError: the path cannot be written (InvalidParamsError: a folder, symlink, device is there)
    """
    text = "".join(line + "\n" for line in lines)
    if isinstance(out, (str, os.PathLike)):
        atomic_write(os.fspath(out), text.encode())
    else:
        out.write(text)
