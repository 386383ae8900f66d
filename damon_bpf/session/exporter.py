"""A monitoring session's figures for Prometheus: DAMON_STAT's per process, plus the source's and DAMOS's.

:class:`PrometheusExporter` is a snapshot consumer of a :class:`~damon_bpf.session.monitor.Monitor`: at every
aggregation it keeps the latest figures of each live target (:mod:`damon_bpf.results.damon_stat`), and a
collector on a private registry yields them when scraped, so a target that exits simply stops being exported
(no stale series). Serve them with :meth:`PrometheusExporter.serve` (``/metrics``) or write a node_exporter
textfile with :meth:`PrometheusExporter.write_textfile_to` (a temporary file renamed over the old one, never
through a symlink: :func:`damon_bpf.linux.files.atomic_write`).

Metrics are in base units; labels ``pid``, ``comm``, ``cgroup``, ``source``; never per region. See the README's
"Fleets: Prometheus" section for the list.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from damon_bpf.engine import Snapshot, StopReason
from damon_bpf.engine.probes import probe_bytes
from damon_bpf.errors import DamonBpfError, InvalidParamsError, PermissionDeniedError, TargetGoneError
from damon_bpf.linux.cgroups import cgroup_of
from damon_bpf.linux.process import comm, is_running, on_signals
from damon_bpf.results.damon_stat import ACCESS_RATE_BUCKETS, DamonStat, damon_stat

__all__ = ("PrometheusExporter", "parse_listen", "run_export", "TEXTFILE_NAME", "IDLE_QUANTILES")

#: the textfile collector's file name in ``--textfile DIR``
TEXTFILE_NAME = "damon_bpf.prom"
#: DAMON_STAT's idle-time percentiles exported as the summary's quantiles
IDLE_QUANTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100)


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (or ``:PORT``, ``[v6]:PORT``) to ``(addr, port)``; the address defaults to 127.0.0.1.

    :raises InvalidParamsError: not of that form, or the port is not 1..65535
    """
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParamsError(f"--listen/--prometheus: {text!r} is not ADDR:PORT (e.g. 127.0.0.1:9465)")
    return (addr.strip("[]") or "127.0.0.1"), int(port)


@dataclass(frozen=True)
class _TargetFigures:
    pid: str
    comm: str
    cgroup: str
    stat: DamonStat
    #: per data attribute probe, the bytes that pass it (damon_probe_bytes)
    probe_bytes: list[float] = dataclasses.field(default_factory=list)


class PrometheusExporter:
    """Export *mon*'s figures (add it to the monitor's consumers before ``open()``, or to
    ``mon.ctx.after_aggregation`` after; :meth:`attach` does the former).

    :param mon: the monitor, or None to :meth:`attach` one later (one after another: :func:`run_export`)
    :param source: the ``source`` label (the access source's name)
    """

    def __init__(self, mon: Any, source: str) -> None:
        from prometheus_client.core import CollectorRegistry

        self.mon = mon
        self.source = source
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # a custom collector: collect() is what counts
        self._lock = threading.Lock()
        self._targets: list[_TargetFigures] = []
        self._names: dict[int, tuple[str, str]] = {}
        self._intervals = (0, 0)
        self._wss_window_us = 0
        self._stats: dict[str, Any] = {}
        self._textfile_dir: str | None = None
        self._next_textfile = 0.0
        self._server: Any = None

    def attach(self, mon: Any) -> None:
        """Export *mon*'s figures from now on (a consumer of it, before ``mon.open()``); the previous monitor's
        targets are no longer exported."""
        with self._lock:
            self._targets = []
        self.mon = mon
        mon.consumers.append(self)

    def forget_targets(self) -> None:
        """Export no target until the next snapshot (the monitor ended)."""
        with self._lock:
            self._targets = []
        if self._textfile_dir is not None:
            self._write_textfile()

    # -- the consumer ------------------------------------------------------------------------------------

    def __call__(self, snap: Snapshot) -> None:
        ctx = self.mon.ctx
        ops = ctx.ops if ctx is not None else None
        figures = []
        live: set[int] = set()
        for i, t in enumerate(snap.targets):
            target = ctx.targets[i] if ctx is not None and i < len(ctx.targets) else None
            if t.pid is None or (ops is not None and target is not None and not ops.target_valid(target)):
                continue  # gone: no series for it any more
            live.add(t.pid)
            names = self._names.get(t.pid)
            if names is None:
                names = self._names[t.pid] = (comm(t.pid), cgroup_of(t.pid))
            wss = t.working_set_bytes if snap.working_set_window_us else None
            figures.append(_TargetFigures(str(t.pid), names[0], names[1],
                                          damon_stat(t.start, t.end, t.nr_accesses, t.age, snap.max_nr_accesses,
                                                     snap.aggr_interval_us, wss),
                                          probe_bytes(t.start, t.end, t.probe_hits, snap.max_nr_accesses)
                                          if t.probe_hits is not None else []))
        stats = dict(ops.stats()) if ops is not None else {}
        for pid in [p for p in self._names if p not in live]:
            del self._names[pid]  # a pid used again later gets its new comm and cgroup
        with self._lock:
            self._targets = figures
            self._intervals = (snap.sample_interval_us, snap.aggr_interval_us)
            self._wss_window_us = snap.working_set_window_us or snap.aggr_interval_us
            self._stats = stats
        if self._textfile_dir is not None and time.monotonic() >= self._next_textfile:
            self._next_textfile = time.monotonic() + 1.0
            self._write_textfile()

    # -- the collector -----------------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            SummaryMetricFamily,
        )

        from prometheus_client.samples import Sample

        with self._lock:
            targets, (sample_us, aggr_us), stats = list(self._targets), self._intervals, dict(self._stats)
            wss_window_us = self._wss_window_us
        labels = ["pid", "comm", "cgroup", "source"]

        def gauge(name: str, doc: str, value_of: Any) -> Any:
            g = GaugeMetricFamily(name, doc, labels=labels)
            for t in targets:
                g.add_metric([t.pid, t.comm, t.cgroup, self.source], value_of(t.stat))
            return g

        yield gauge("damon_working_set_bytes", "Bytes accessed within the last damon_working_set_window_seconds "
                    "(the access source's estimate)", lambda s: s.working_set_bytes)
        win = GaugeMetricFamily("damon_working_set_window_seconds", "The window of damon_working_set_bytes",
                                labels=["source"])
        win.add_metric([self.source], wss_window_us / 1e6)
        yield win
        yield gauge("damon_monitored_bytes", "Bytes of the monitored regions", lambda s: s.monitored_bytes)
        pb = GaugeMetricFamily("damon_probe_bytes", "Bytes that pass each data attribute probe (--probe_filter): "
                               "sum of region size * probe_hits / max_nr_accesses", labels=labels + ["probe"])
        for t in targets:
            for i, v in enumerate(t.probe_bytes):
                pb.add_metric([t.pid, t.comm, t.cgroup, self.source, str(i)], v)
        yield pb
        yield gauge("damon_regions", "Monitoring regions", lambda s: s.nr_regions)
        yield gauge("damon_estimated_memory_bandwidth_bytes_per_second",
                    "DAMON_STAT's estimated memory bandwidth: sum(size * nr_accesses) of the last aggregation "
                    "interval, divided by its length",
                    lambda s: s.estimated_memory_bandwidth)
        idle = SummaryMetricFamily("damon_memory_idle_seconds",
                                   "DAMON_STAT's memory idle time percentiles (negative: accessed that long)",
                                   labels=labels)
        for t in targets:
            p = t.stat.idle_ms_percentiles
            lv = {"pid": t.pid, "comm": t.comm, "cgroup": t.cgroup, "source": self.source}
            # DAMON_STAT defines percentiles only: the summary's count is the regions and its sum their idle time
            # at the median, so that sum/count reads as the median
            for q in IDLE_QUANTILES:
                idle.samples.append(Sample("damon_memory_idle_seconds", {**lv, "quantile": f"{q / 100:g}"},
                                           p[q] / 1000, None, None))
            idle.samples.append(Sample("damon_memory_idle_seconds_count", lv, float(t.stat.nr_regions), None, None))
            idle.samples.append(Sample("damon_memory_idle_seconds_sum", lv, p[50] / 1000 * t.stat.nr_regions, None,
                                       None))
        yield idle
        hist = HistogramMetricFamily("damon_access_rate_bytes",
                                     "Bytes of regions by access rate (nr_accesses / max_nr_accesses)",
                                     labels=labels)
        for t in targets:
            buckets = [(f"{b:g}", float(v)) for b, v in zip(ACCESS_RATE_BUCKETS, t.stat.bytes_by_access_rate)]
            buckets.append(("+Inf", float(t.stat.monitored_bytes)))
            hist.add_metric([t.pid, t.comm, t.cgroup, self.source], buckets=buckets,
                            sum_value=float(t.stat.working_set_bytes))
        yield hist
        src = GaugeMetricFamily("damon_sample_interval_seconds", "Current sampling interval (auto-tuned)",
                                labels=["source"])
        src.add_metric([self.source], sample_us / 1e6)
        yield src
        agg = GaugeMetricFamily("damon_aggregation_interval_seconds", "Current aggregation interval (auto-tuned)",
                                labels=["source"])
        agg.add_metric([self.source], aggr_us / 1e6)
        yield agg
        for name, key, doc in (("damon_source_events", "events", "Access events the source counted"),
                               ("damon_source_dropped_events", "dropped_rate_limit",
                                "Events the source's rate limit dropped")):
            c = CounterMetricFamily(name, doc, labels=["source"])
            if key in stats:
                c.add_metric([self.source], float(stats[key]))
            yield c
        ns = GaugeMetricFamily("damon_bpf_ns_per_event", "BPF program run time per event", labels=["source"])
        if "bpf_ns_per_event" in stats:
            ns.add_metric([self.source], float(stats["bpf_ns_per_event"]))
        yield ns
        cpu = CounterMetricFamily("damon_monitor_cpu_seconds", "CPU time of the monitor process", labels=["source"])
        cpu.add_metric([self.source], time.process_time())
        yield cpu
        ctx = self.mon.ctx if self.mon is not None else None
        schemes = list(ctx.schemes) if ctx is not None else []
        for name, attr, doc in (("damos_tried_regions", "nr_tried", "Regions DAMOS tried to apply a scheme to"),
                                ("damos_tried_bytes", "sz_tried", "Bytes DAMOS tried to apply a scheme to"),
                                ("damos_applied_regions", "nr_applied", "Regions a scheme's action was applied to"),
                                ("damos_applied_bytes", "sz_applied", "Bytes a scheme's action was applied to"),
                                ("damos_quota_exceeds", "qt_exceeds", "Times a scheme's quota was exceeded")):
            c = CounterMetricFamily(name, doc, labels=["scheme", "action", "source"])
            for i, s in enumerate(schemes):
                c.add_metric([str(i), s.action.value, self.source], float(getattr(s.stat, attr)))
            yield c

    # -- serving ---------------------------------------------------------------------------------------------

    def serve(self, addr: str, port: int) -> None:
        """Serve ``/metrics`` on *addr*:*port* from a background thread.

        :raises InvalidParamsError: the address cannot be bound (in use, not local)
        :raises PermissionDeniedError: binding it is not allowed (``EACCES``: a privileged port)
        """
        from prometheus_client import start_http_server

        try:
            self._server = start_http_server(port, addr=addr, registry=self.registry)
        except PermissionError as err:  # EACCES: a port below 1024 (net.ipv4.ip_unprivileged_port_start)
            raise PermissionDeniedError(f"cannot listen on {addr}:{port}: {err.strerror or err}") from err
        except OSError as err:
            raise InvalidParamsError(f"cannot listen on {addr}:{port}: {err.strerror or err}") from err

    def write_textfile_to(self, directory: str) -> None:
        """Write ``DIR/damon_bpf.prom`` for node_exporter's textfile collector after each aggregation (at most
        once a second), atomically.

        :raises InvalidParamsError: *directory* is not a writable folder
        """
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise InvalidParamsError(f"--textfile: {directory} is not a writable folder")
        self._textfile_dir = directory

    def _write_textfile(self) -> None:
        from prometheus_client import generate_latest
        from prometheus_client.openmetrics.exposition import ALLOWUTF8

        from damon_bpf.linux.files import atomic_write

        assert self._textfile_dir is not None
        # a temporary file beside it, created exclusively (not prometheus_client's write_to_textfile: its
        # temporary name is predictable and opened following symlinks), renamed over the old one; 0644, for
        # node_exporter, which runs as another user
        atomic_write(os.path.join(self._textfile_dir, TEXTFILE_NAME), generate_latest(self.registry, ALLOWUTF8),
                     mode=0o644)

    def close(self) -> None:
        """Stop serving (the textfile, if any, stays as last written)."""
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            server.server_close()
            self._server = None


def run_export(spec: Any, exporter: PrometheusExporter, watcher: Any = None,
               on_start: Callable[[Any], None] | None = None) -> StopReason:
    """Monitor *spec* for *exporter* until stopped (SIGINT, SIGTERM, SIGHUP), the duration is over, or every
    target exited. With a :class:`~damon_bpf.session.cgroups.CgroupWatcher` the targets are the cgroups'
    processes (plus ``spec.pids``) and the session outlives them: when the cgroups are empty it waits, serving
    no target, and starts a fresh monitor (same schemes, so their counters go on) as soon as a process is back;
    likewise when exited targets pile up. Returns the last monitor's stop reason.

    :param on_start: called with each monitor once it is open (start-up lines)
    :raises DamonBpfError: the first monitor could not start (a later one that fails ends the session too)
    """
    from damon_bpf.session.monitor import Monitor

    stopped = threading.Event()
    deadline = None if spec.duration_s is None else time.monotonic() + spec.duration_s
    current: list[Any] = []

    def stop(_signum: int = 0) -> None:
        stopped.set()
        for m in current:
            m.stop()

    if deadline is not None:
        timer = threading.Timer(spec.duration_s, stop)
        timer.daemon = True
        timer.start()
    reason = StopReason.REQUESTED
    first = True
    with on_signals(stop):
        while not stopped.is_set():
            pids = sorted(set(spec.pids) | set(watcher.pids() if watcher is not None else []))
            pids = [p for p in pids if is_running(p) and p != os.getpid()]
            if watcher is not None and not pids and not (first and spec.command):
                stopped.wait(watcher.interval_s)  # an empty cgroup: serve no target, look again
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0 and not first:
                break
            # the first monitor keeps the spec's duration and start (its open() refuses a start-up longer than the
            # duration); a later one runs for what is left
            mon = Monitor(dataclasses.replace(spec, pids=pids, command=spec.command if first else None,
                                              **({} if first else {"duration_s": remaining, "started_at": None})))
            exporter.attach(mon)
            current[:] = [mon]
            try:
                try:
                    mon.open()
                except TargetGoneError:
                    if first and watcher is None:
                        raise
                    stopped.wait(0.2)
                    continue  # a process of the cgroup exited between reading cgroup.procs and opening it
                if watcher is not None:
                    watcher.attach(mon)
                if stopped.is_set():
                    mon.stop()
                if on_start is not None:
                    on_start(mon)
                first = False
                reason = mon.run()
            finally:
                current.clear()
                mon.close()
                exporter.forget_targets()
            if watcher is None or stopped.is_set():
                break
            if reason is StopReason.REQUESTED and not watcher.wants_restart:
                break  # the duration is over
    if deadline is not None:
        timer.cancel()
    return reason
