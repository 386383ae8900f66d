"""Glue between the BPF sources' per-thread attribution (:mod:`damon_bpf.ops.threads`) and what the CLI shows
and writes: the ``threads``/``cpus`` of each region in ``monitor --json`` and the ``FILE.threads`` sidecar of
``record`` (:mod:`damon_bpf.results.threads`)."""

from __future__ import annotations

from typing import Any

from damon_bpf.ops.threads import TOP_DEFAULT, ThreadCollector
from damon_bpf.results.threads import ThreadsWriter, threads_path

__all__ = ("collector_of", "region_threads", "ThreadsRecorder", "threads_recorder")


def collector_of(ops: Any) -> ThreadCollector | None:
    """The source's :class:`ThreadCollector` (``fault``, ``perf``; also behind ``--dry-run``), else None."""
    for o in (ops, getattr(ops, "inner", None)):
        c = getattr(o, "threads", None)
        if isinstance(c, ThreadCollector):
            return c
    return None


def region_threads(ops: Any, snap: Any, top: int = TOP_DEFAULT) -> list[Any] | None:
    """Per target of *snap*, one ``{"threads": [...], "cpus": [...]}`` per region (None: no attribution)."""
    c = collector_of(ops)
    if c is None:
        return None
    return [c.region_json(i, t.pid, t.start, t.end, top) for i, t in enumerate(snap.targets)]


class ThreadsRecorder:
    """An after-aggregation consumer writing the last window's attribution of every target to ``FILE.threads``."""

    def __init__(self, collector: ThreadCollector, record_path: str) -> None:
        self.collector = collector
        self.writer = ThreadsWriter(threads_path(record_path))

    def __call__(self, snap: Any) -> None:
        c = self.collector
        for i, t in enumerate(snap.targets):
            if i >= len(c.last):
                break
            win = c.last[i]
            rows = win.thread_tuples()
            cpus = win.cpu_tuples()
            comms = {tid: c.comm(t.pid, tid) for _, _, tid, _ in rows}
            nodes = {cpu: c.node(cpu) for _, _, cpu, _ in cpus}
            self.writer.write(snap.time_ns, i, t.pid, rows, cpus, comms=comms, nodes=nodes)

    def close(self) -> None:
        self.writer.close()


def threads_recorder(ops: Any, record_path: str) -> ThreadsRecorder | None:
    """A :class:`ThreadsRecorder` for a source with attribution, else None."""
    c = collector_of(ops)
    return None if c is None else ThreadsRecorder(c, record_path)
