"""Per-thread and per-CPU attribution of the BPF sources' events: which threads and CPUs touched each region.

No kernel counterpart (DAMON's regions count accesses, never who made them). The aggregation program
(``bpf/access_agg.h``) counts each event of a region once more in ``agg_threads`` (key ``(slot, tid)``, a
bounded hash map: entries that do not fit are counted in the ``thread_map_full`` statistic), and its
per-region counters already have one block per CPU (``agg_counters``). :class:`ThreadCollector` drains both
at each aggregation window's end (``BpfAccessOps.check_accesses``) and answers, for the regions of a snapshot
(merges of the drained regions), the top threads (with their ``comm``) and CPUs (with their NUMA node).

See docs/threads.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ("ThreadWindow", "ThreadCollector", "TOP_DEFAULT", "cpu_nodes", "region_top")

#: threads and CPUs listed per region in ``monitor --json``
TOP_DEFAULT = 4
# comm names kept (one /proc read per thread first seen); the cache is emptied when full
_MAX_COMMS = 4096

_I64 = npt.NDArray[np.int64]


@dataclass
class ThreadWindow:
    """One target's attribution of the last drained window, per drained region (its table in publish order).

    :ivar starts: region starts (sorted)
    :ivar ends: region ends
    :ivar thread_rows: ``(region index, tid, events)`` rows, ``(n, 3)``
    :ivar cpu_events: events per CPU and region, ``(cpus, nr_regions)``
    """

    starts: _I64
    ends: _I64
    thread_rows: _I64 = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    cpu_events: _I64 = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def thread_tuples(self) -> list[tuple[int, int, int, int]]:
        """``(region start, region end, tid, events)`` rows, for the ``FILE.threads`` sidecar."""
        r = self.thread_rows
        return list(zip(self.starts[r[:, 0]].tolist(), self.ends[r[:, 0]].tolist(), r[:, 1].tolist(),
                        r[:, 2].tolist()))

    def cpu_tuples(self) -> list[tuple[int, int, int, int]]:
        """``(region start, region end, cpu, events)`` rows with events."""
        cpu, reg = np.nonzero(self.cpu_events)
        return list(zip(self.starts[reg].tolist(), self.ends[reg].tolist(), cpu.tolist(),
                        self.cpu_events[cpu, reg].tolist()))


def cpu_nodes(sys_root: str = "/sys") -> dict[int, int]:
    """The NUMA node of each CPU, from ``/sys/devices/system/cpu/cpuN/nodeM`` (empty when sysfs does not say)."""
    out: dict[int, int] = {}
    base = f"{sys_root}/devices/system/cpu"
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        try:
            links = os.listdir(f"{base}/{name}")
        except OSError:
            continue
        for link in links:
            if link.startswith("node") and link[4:].isdigit():
                out[int(name[3:])] = int(link[4:])
                break
    return out


def _group_sum(keys: _I64, vals: _I64) -> tuple[_I64, _I64]:
    # unique rows of *keys* (n, k) and the sum of *vals* for each
    if not keys.size:
        return keys.reshape(0, keys.shape[1] if keys.ndim == 2 else 1), np.zeros(0, np.int64)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    sums = np.zeros(uniq.shape[0], np.int64)
    np.add.at(sums, inv.reshape(-1), vals)
    return uniq, sums


def region_top(win: ThreadWindow, starts: npt.ArrayLike, ends: npt.ArrayLike,
               top: int = TOP_DEFAULT) -> tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
    """For each region ``[starts[j], ends[j])`` of a snapshot (merges of *win*'s regions), the *top* threads
    ``(tid, events)`` and CPUs ``(cpu, events)``, most events first (ties: lower id first)."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    threads: list[list[tuple[int, int]]] = [[] for _ in range(s.size)]
    cpus: list[list[tuple[int, int]]] = [[] for _ in range(s.size)]
    if not s.size or not win.starts.size:
        return threads, cpus
    # the snapshot region holding each drained region (-1: none)
    j = np.searchsorted(s, win.starts, side="right") - 1
    jj = np.maximum(j, 0)
    owner = np.where((j >= 0) & (win.starts < e[jj]), j, -1)
    rows = win.thread_rows
    if rows.size:
        reg = owner[rows[:, 0]]
        ok = reg >= 0
        keys, sums = _group_sum(np.column_stack((reg[ok], rows[ok, 1])), rows[ok, 2])
        _fill(threads, keys, sums, top)
    if win.cpu_events.size:
        cpu, r = np.nonzero(win.cpu_events)
        reg = owner[r]
        ok = reg >= 0
        keys, sums = _group_sum(np.column_stack((reg[ok], cpu[ok])), win.cpu_events[cpu[ok], r[ok]])
        _fill(cpus, keys, sums, top)
    return threads, cpus


def _fill(out: list[list[tuple[int, int]]], keys: _I64, sums: _I64, top: int) -> None:
    # keys (region, id) with their sums, into out[region] ordered by events (descending), then id
    order = np.lexsort((keys[:, 1], -sums, keys[:, 0]))
    for k in order.tolist():
        lst = out[int(keys[k, 0])]
        if len(lst) < top:
            lst.append((int(keys[k, 1]), int(sums[k])))


class ThreadCollector:
    """Drains the per-thread and per-CPU attribution of an :class:`~damon_bpf.probes.access.AccessProbe` once
    per aggregation window and keeps the last window's, per target (:attr:`last`).

    :param proc_root: where ``/proc`` is (comm names)
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        #: per target, the last drained window's attribution
        self.last: list[ThreadWindow] = []
        self._comms: dict[tuple[int, int], str] = {}
        self._nodes: dict[int, int] | None = None

    def collect(self, probe: Any, tables: Sequence[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]],
                drain_threads: bool = True) -> None:
        """Take the active generation's counts: per-CPU events (read, the counters are reset elsewhere) and,
        with *drain_threads*, the ``agg_threads`` map (emptied; entries of the other generation are late
        events of the previous window and are dropped)."""
        sizes = [int(s.size) for s, _ in tables]
        off = np.cumsum([0] + sizes)
        per_cpu = probe.events_per_cpu().astype(np.int64)
        wins = []
        for ti, (s, e) in enumerate(tables):
            cpu_ev = per_cpu[:, off[ti]:off[ti + 1]] if per_cpu.shape[1] >= off[ti + 1] else \
                np.zeros((per_cpu.shape[0], sizes[ti]), np.int64)
            wins.append(ThreadWindow(s.astype(np.int64), e.astype(np.int64), cpu_events=cpu_ev))
        self.last = wins
        if not drain_threads or not probe.config.thread_entries:
            return
        slots, tids, counts = probe.drain_threads()
        if not slots.size:
            return
        r = probe.config.regions_pow2
        idx = (slots % r).astype(np.int64)
        keep = (slots // r == probe.gen) & (idx < off[-1])
        idx, tids, counts = idx[keep], tids[keep].astype(np.int64), counts[keep].astype(np.int64)
        ti_of = np.searchsorted(off, idx, side="right") - 1
        for ti, win in enumerate(wins):
            sel = ti_of == ti
            if sel.any():
                win.thread_rows = np.column_stack((idx[sel] - off[ti], tids[sel], counts[sel]))

    def comm(self, pid: int | None, tid: int) -> str:
        """The thread's name (``/proc/PID/task/TID/comm``), read once and cached; ``""`` when gone."""
        key = (-1 if pid is None else pid, tid)
        name = self._comms.get(key)
        if name is None:
            if len(self._comms) >= _MAX_COMMS:
                self._comms.clear()
            path = f"{self.proc_root}/{tid}/comm" if pid is None else f"{self.proc_root}/{pid}/task/{tid}/comm"
            try:
                with open(path, "rb") as f:
                    name = f.read(64).decode("utf-8", "replace").strip()
            except OSError:
                name = ""
            self._comms[key] = name
        return name

    def node(self, cpu: int) -> int | None:
        """The NUMA node of *cpu* (None when sysfs does not say)."""
        if self._nodes is None:
            self._nodes = cpu_nodes()
        return self._nodes.get(cpu)

    def region_json(self, target_idx: int, pid: int | None, starts: npt.ArrayLike, ends: npt.ArrayLike,
                    top: int = TOP_DEFAULT) -> list[dict[str, Any]] | None:
        """Per snapshot region, ``{"threads": [{"tid", "comm", "events"}], "cpus": [{"cpu", "node",
        "events"}]}`` of the last window (the *top* of each); None when the target has no attribution."""
        if target_idx >= len(self.last):
            return None
        threads, cpus = region_top(self.last[target_idx], starts, ends, top)
        return [
            {"threads": [{"tid": t, "comm": self.comm(pid, t), "events": n} for t, n in th],
             "cpus": [{"cpu": c, "node": self.node(c), "events": n} for c, n in cp]}
            for th, cp in zip(threads, cpus)
        ]
