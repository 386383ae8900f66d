"""Per-thread and per-CPU attribution of a record: the ``FILE.threads`` sidecar and the ``report threads`` library.

No kernel counterpart (DAMON does not know which thread made an access). The ``fault`` and ``perf`` sources
count every event also per (region, thread) and per (region, CPU) (:mod:`damon_bpf.ops.threads`).

**The sidecar** ``FILE.threads`` next to a record ``FILE``: JSON lines, one per aggregation interval and target,
each with ``time_ns``, ``target_id``, ``pid``, ``threads`` (``[region_start, region_end, tid, events]``),
``cpus`` (``[region_start, region_end, cpu, events]``) and, the first time a thread or CPU appears, ``comms``
(``{"tid": name}``) and ``nodes`` (``{"cpu": NUMA node}``). Created 0600 through
:func:`damon_bpf.linux.files.create_file`, like ``FILE.attribution``.

**The report** (:func:`thread_report`): per target and thread, its events over the record and its hottest
ranges, the ranges being the regions of the record's last snapshot (sidecar entries that overlap one partly
count in proportion to the overlap), or the sidecar's own ranges when the record cannot be read; per CPU, the
events and the NUMA node.

See docs/threads.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.config import limits
from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.files import create_file

__all__ = (
    "THREADS_SUFFIX",
    "threads_path",
    "ThreadsWriter",
    "read_threads",
    "ThreadRange",
    "ThreadSummary",
    "CpuSummary",
    "ThreadReport",
    "thread_report",
    "spread_events",
)

log = logging.getLogger(__name__)

THREADS_SUFFIX = ".threads"


def threads_path(record_path: str) -> str:
    """``FILE.threads`` for the record ``FILE``."""
    return record_path + THREADS_SUFFIX


class ThreadsWriter:
    """Writes a ``FILE.threads`` sidecar (see the module docstring), one JSON line per :meth:`write`; call
    :meth:`close` at the end (or use ``contextlib.closing``).

    :param path: the sidecar's path (created 0600, replacing only a regular file, never through a symlink)
    :raises DamonBpfError: the file cannot be created (InvalidParamsError: a folder, symlink, device is there)
    """

    def __init__(self, path: str) -> None:
        self._f: IO[str] = os.fdopen(create_file(path), "w", encoding="utf-8")
        self._comms: set[tuple[int, int]] = set()  # (pid or -1, tid) named already
        self._nodes: set[int] = set()  # CPUs whose node is written already
        self.nr_lines = 0

    def write(self, time_ns: int, target_id: int, pid: int | None, threads: Iterable[Sequence[int]],
              cpus: Iterable[Sequence[int]] = (), *, comms: dict[int, str] | None = None,
              nodes: dict[int, int | None] | None = None) -> None:
        """One interval of one target (nothing is written when it has no events).

        :param threads: ``(region_start, region_end, tid, events)`` rows
        :param cpus: ``(region_start, region_end, cpu, events)`` rows
        :param comms: thread names (only those not written before are kept)
        :param nodes: NUMA node per CPU (likewise)
        """
        trows = [[int(s), int(e), int(t), int(n)] for s, e, t, n in threads]
        crows = [[int(s), int(e), int(c), int(n)] for s, e, c, n in cpus]
        if not trows and not crows:
            return
        line: dict[str, Any] = {"time_ns": int(time_ns), "target_id": int(target_id), "pid": pid,
                                "threads": trows, "cpus": crows}
        key = -1 if pid is None else int(pid)
        new_comms = {str(t): comms[t] for _, _, t, _ in trows
                     if comms and t in comms and (key, t) not in self._comms}
        if new_comms:
            self._comms.update((key, int(t)) for t in new_comms)
            line["comms"] = new_comms
        new_nodes = {str(c): nodes[c] for _, _, c, _ in crows
                     if nodes and c in nodes and nodes[c] is not None and c not in self._nodes}
        if new_nodes:
            self._nodes.update(int(c) for c in new_nodes)
            line["nodes"] = new_nodes
        self._f.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._f.flush()
        self.nr_lines += 1

    def close(self) -> None:
        self._f.close()


def _rows(v: Any) -> list[tuple[int, int, int, int]]:
    # [[start, end, id, events], ...] with ints; anything else raises ValueError
    if not isinstance(v, list):
        raise ValueError("not a list of rows")
    out = []
    for r in v:
        if not isinstance(r, list) or len(r) != 4 or not all(isinstance(x, int) for x in r):
            raise ValueError("a row is not four integers")
        out.append((r[0], r[1], r[2], r[3]))
    return out


def read_threads(path: str) -> list[dict[str, Any]]:
    """The lines of a sidecar as dicts (``time_ns``, ``target_id``, ``pid``, ``threads`` and ``cpus`` as tuples,
    ``comms``, ``nodes``); malformed lines are skipped with a debug log.

    :raises InvalidParamsError: missing, not a regular file, or over the input size limit
    """
    data = limits.read_regular(path, limits.MAX_INPUT_BYTES, "threads sidecar")
    out = []
    for lineno, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = limits.json_loads(line, f"{path}:{lineno}")
            if not isinstance(d, dict):
                raise ValueError("not an object")
            d["threads"] = _rows(d.get("threads", []))
            d["cpus"] = _rows(d.get("cpus", []))
            d["target_id"] = int(d.get("target_id", 0))
            for k in ("comms", "nodes"):
                if not isinstance(d.get(k, {}), dict):
                    raise ValueError(f"{k} is not an object")
        except (ValueError, TypeError, InvalidParamsError) as err:
            log.debug("%s:%d: skipped (%s)", path, lineno, err)
            continue
        out.append(d)
    return out


def spread_events(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
                  rows: Sequence[tuple[int, int, int]]) -> npt.NDArray[np.float64]:
    """Events of ``(start, end, events)`` *rows* per range ``[starts[i], ends[i])`` (sorted, disjoint), each row
    counting in proportion to its overlap with the range."""
    out = np.zeros(starts.size, np.float64)
    for s, e, n in rows:
        if e <= s or not n:
            continue
        a = int(np.searchsorted(ends, s, side="right"))
        b = int(np.searchsorted(starts, e, side="left"))
        for i in range(a, b):
            ov = min(e, int(ends[i])) - max(s, int(starts[i]))
            if ov > 0:
                out[i] += n * ov / (e - s)
    return out


@dataclass
class ThreadRange:
    """One range of a thread's accesses: its events and their share of the thread's events."""

    start: int
    end: int
    events: float
    share: float


@dataclass
class ThreadSummary:
    """One thread of one target: its events over the record and its hottest ranges."""

    target_id: int
    pid: int | None
    tid: int
    comm: str
    events: int
    ranges: list[ThreadRange] = field(default_factory=list)


@dataclass
class CpuSummary:
    """One CPU: events of the record on it and its NUMA node."""

    cpu: int
    node: int | None
    events: int


@dataclass
class ThreadReport:
    threads: list[ThreadSummary]
    cpus: list[CpuSummary]
    notes: list[str]


def _last_regions(record: str) -> dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    # the regions of each target's last snapshot, sorted ({} when the record cannot be read)
    from damon_bpf.results.records import read_records

    out = {}
    for rec in read_records(record):
        if not rec.snapshots:
            continue
        snap = rec.snapshots[-1]
        s = np.asarray(snap.start, dtype=np.int64)
        e = np.asarray(snap.end, dtype=np.int64)
        order = np.argsort(s, kind="stable")
        out[int(rec.target_id)] = (s[order], e[order])
    return out


def thread_report(record: str, sidecar: str | None = None, *, top: int = 5) -> ThreadReport:
    """Per thread (most events first), its *top* hottest ranges; per CPU, its events (see the module docstring).

    :raises InvalidParamsError: no sidecar, or it has no attribution
    """
    side = sidecar or threads_path(record)
    if not os.path.lexists(side):
        raise InvalidParamsError(f"{side}: no such file (record with --source fault or perf to get it)")
    lines = read_threads(side)
    notes: list[str] = []
    try:
        regions = _last_regions(record)
    except InvalidParamsError as err:
        regions = {}
        notes.append(f"ranges are the sidecar's own regions: {err}")
    per_thread: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    pids: dict[int, int | None] = {}
    comms: dict[tuple[int, int], str] = {}
    cpu_ev: dict[int, int] = defaultdict(int)
    nodes: dict[int, int] = {}
    for d in lines:
        ti = d["target_id"]
        pids.setdefault(ti, d.get("pid"))
        for s, e, tid, n in d["threads"]:
            per_thread[(ti, tid)].append((s, e, n))
        for _, _, cpu, n in d["cpus"]:
            cpu_ev[cpu] += n
        for t, name in d.get("comms", {}).items():
            if str(t).isdigit() and isinstance(name, str):
                comms[(ti, int(t))] = name
        for c, node in d.get("nodes", {}).items():
            if str(c).isdigit() and isinstance(node, int):
                nodes[int(c)] = node
    if not per_thread and not cpu_ev:
        raise InvalidParamsError(f"{side}: no thread attribution in it")
    out = []
    for (ti, tid), rows in per_thread.items():
        total = sum(n for _, _, n in rows)
        if ti in regions:
            starts, ends = regions[ti]
        else:  # the union of the sidecar's ranges of this target
            bounds = sorted({(s, e) for s, e, _ in rows})
            starts = np.array([s for s, _ in bounds], np.int64)
            ends = np.array([e for _, e in bounds], np.int64)
            keep = np.concatenate([[True], starts[1:] >= np.maximum.accumulate(ends)[:-1]]) if starts.size else \
                np.zeros(0, bool)
            starts, ends = starts[keep], ends[keep]
        ev = spread_events(starts, ends, rows)
        order = np.lexsort((starts, -ev))[:max(0, top)]
        ranges = [ThreadRange(int(starts[i]), int(ends[i]), float(ev[i]), float(ev[i]) / total if total else 0.0)
                  for i in order.tolist() if ev[i] > 0]
        out.append(ThreadSummary(ti, pids.get(ti), tid, comms.get((ti, tid), ""), total, ranges))
    out.sort(key=lambda t: (-t.events, t.target_id, t.tid))
    cpus = [CpuSummary(c, nodes.get(c), n) for c, n in sorted(cpu_ev.items())]
    return ThreadReport(out, cpus, notes)
