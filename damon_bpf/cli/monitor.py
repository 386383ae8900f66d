"""``damon-bpf monitor <pid>... | -- CMD ARGS``: watch processes' memory access patterns live."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from typing import Any, Callable, TextIO

from damon_bpf.cli._args import (
    add_monitoring_args,
    add_probe_args,
    add_target_args,
    attrs_from_args,
    duration_from_args,
    nonnegative_int,
    positive_int,
    probes_from_args,
    started_at,
    targets_from_args,
    wss_window_from_args,
)
from damon_bpf.cli._damos_args import add_damos_args, schemes_from_args
from damon_bpf.cli._threads import region_threads
from damon_bpf.cli.view import render_text, snapshot_to_json
from damon_bpf.engine import Snapshot, StopReason
from damon_bpf.ops import sources
from damon_bpf.session.monitor import Monitor, MonitorSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "damon-bpf monitor [options] PID... | damon-bpf monitor [options] -- CMD [ARGS...]"
    p.epilog = ("With -- CMD, the exit code is CMD's own exit status when CMD ended by itself (128+N for signal N); "
                "otherwise 0, or the code of an error (see the README's exit codes).")
    add_target_args(p)
    p.add_argument("--follow-children", action="store_true",
                   help="also monitor the processes the targets fork later (process-events connector)")
    add_source_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line per aggregation interval")
    p.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="show every N-th aggregation interval (default 1)")
    p.add_argument("--rows", type=nonnegative_int, default=0, metavar="N",
                   help="region rows in the live view (default: fit the terminal)")
    p.add_argument("--prometheus", metavar="ADDR:PORT",
                   help="also serve the session's figures to Prometheus at http://ADDR:PORT/metrics (see "
                        "'damon-bpf export')")
    add_monitoring_args(p)
    add_probe_args(p)
    add_damos_args(p)


def add_source_args(p: argparse.ArgumentParser, default: str = sources.AUTO) -> None:
    """``--source`` and every source's own options (:func:`damon_bpf.ops.sources.add_source_arguments`)."""
    sources.add_source_arguments(p, default)


def source_warning(spec: MonitorSpec) -> str | None:
    """One line saying that the session's source cannot see accesses to resident memory as configured, or
    None (:meth:`~damon_bpf.ops.sources.base.SourceDescriptor.blind_to_resident`)."""
    source = sources.find_source(spec.source)
    return None if source is None else source.blind_to_resident(source.options_or_defaults(spec.source_options))


class _Mappings:
    """Names the mapping an address lies in, from /proc/<pid>/maps read once per snapshot."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def lookup(self) -> Callable[[int], str] | None:
        if self.pid is None:
            return None
        from damon_bpf.linux import procmaps

        try:
            vmas = procmaps.read_maps(self.pid)
        except Exception:  # the target may have exited; the view then shows no names
            return None

        def name(addr: int) -> str:
            v = procmaps.mapping_at(vmas, addr)
            return procmaps.classify(v) if v is not None else "-"

        return name


class LiveView:
    """Prints each snapshot: redrawn in place on a terminal, as text blocks or JSON lines otherwise."""

    def __init__(self, monitor: Monitor, out: TextIO, *, as_json: bool, every: int, rows: int, source: str) -> None:
        self.monitor = monitor
        self.out = out
        self.as_json = as_json
        self.every = max(1, every)
        self.rows = rows
        self.source = source
        self.tty = out.isatty() and not as_json
        self.nr = 0
        self.last: Snapshot | None = None
        #: one line shown under the header (a source that cannot see resident memory says so here)
        self.warning: str | None = None
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot) -> None:
        self.last = snap
        self.nr += 1
        if (self.nr - 1) % self.every:
            return
        stats = self.monitor.source_stats()
        # the schemes' stats as of this aggregation (DAMOS runs in this thread, after the consumers)
        schemes = list(self.monitor.ctx.schemes) if self.monitor.ctx else []
        dry_run = self.monitor.spec.dry_run
        with self._lock:
            if self.as_json:
                ops = self.monitor.ctx.ops if self.monitor.ctx else None
                raw = [ops.raw_counts(i, t.start, t.end) for i, t in enumerate(snap.targets)] if ops else None
                if raw is not None and all(r is None for r in raw):
                    raw = None
                self.out.write(snapshot_to_json(snap, stats, self.source, raw, schemes=schemes,
                                                dry_run=dry_run, region_extra=region_threads(ops, snap)) + "\n")
            else:
                width, height = 80, 24
                if self.tty:
                    try:
                        width, height = os.get_terminal_size(self.out.fileno())
                    except OSError:
                        pass
                rows = self.rows or max(5, height - 8 - (len(schemes) + 1 if schemes else 0))
                maps = [_Mappings(t.pid).lookup() for t in snap.targets]
                lines = render_text(snap, mappings=maps, stats=stats, source=self.source, max_rows=rows,
                                    width=max(60, width), schemes=schemes, dry_run=dry_run,
                                    warning=self.warning)
                if self.tty:
                    self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
                else:
                    self.out.write("\n".join(lines) + "\n\n")
            self.out.flush()


def prometheus_exporter(mon: Monitor, args: argparse.Namespace) -> Any:
    """``--prometheus ADDR:PORT``: an exporter consumer on *mon*, already serving (None without the option).

    :raises InvalidParamsError: a bad address, or one that cannot be bound
    """
    if not getattr(args, "prometheus", None):
        return None
    from damon_bpf.session.exporter import PrometheusExporter, parse_listen

    exporter = PrometheusExporter(mon, mon.spec.source)
    exporter.serve(*parse_listen(args.prometheus))
    mon.consumers.append(exporter)
    return exporter


def announce(mon: Monitor, doing: str, to: str = "") -> None:
    """The start-up lines on standard error: what is monitored, by which source (and where it attaches), the
    source's notes and the session's (:func:`print_session_notes`)."""
    ops = mon.ctx.ops if mon.ctx else None
    if ops is None:
        print_session_notes(mon)
        return
    what = " ".join(str(p) for p in mon.pids)
    via = f" ({ops.attach_point})" if ops.attach_point else ""
    print(f"damon-bpf: {doing} pid {what} with source {mon.spec.source}{via}{' to ' + to if to else ''}; "
          f"Ctrl-C to stop", file=sys.stderr)
    print_notes(mon)


def print_notes(mon: Monitor) -> None:
    """The source's notes (a cost, another session clearing the same process, ...) and the session's, on standard
    error."""
    ops = mon.ctx.ops if mon.ctx else None
    for note in ops.notes if ops is not None else ():
        print(f"damon-bpf: note: {note}", file=sys.stderr)
    print_session_notes(mon)


def print_session_notes(mon: Monitor) -> None:
    """The session's notes (``Monitor.notes``: DAMOS schemes that can never match, ...) on standard error, and
    the warning of a source that cannot see accesses to resident memory (:func:`source_warning`)."""
    for note in mon.notes:
        print(f"damon-bpf: note: {note}", file=sys.stderr)
    warning = source_warning(mon.spec)
    if warning:
        print(f"damon-bpf: warning: {warning}", file=sys.stderr)


def run_session(spec: MonitorSpec, args: argparse.Namespace,
                out: TextIO | None = None) -> tuple[int, Monitor, LiveView]:
    """Run a monitoring session with the live view until it ends; returns (exit code, monitor, view).

    :param out: where the view goes (default: the standard output of the time of the call)
    """
    out = out if out is not None else sys.stdout
    mon = Monitor(spec)
    view = LiveView(mon, out, as_json=args.json, every=args.every, rows=args.rows, source=spec.source)
    mon.consumers.append(view)
    exporter = prometheus_exporter(mon, args)
    with mon.stopping_on_signals(), contextlib.ExitStack() as stack:
        if exporter is not None:
            stack.callback(exporter.close)
        try:
            mon.open()
            if not args.json:
                announce(mon, "monitoring")
            else:  # standard output is JSON; the source's notes (numbers that are off) still go to stderr
                print_notes(mon)
            view.warning = source_warning(spec)
            reason = mon.run()
        finally:
            mon.close()
    if reason is StopReason.TARGETS_GONE and not args.json:
        print("damon-bpf: every target exited", file=sys.stderr)
    return command_exit_code(mon), mon, view


def command_exit_code(mon: Monitor) -> int:
    """The exit code of ``monitor``/``record``: the spawned command's exit status when it ended by itself (so a
    failed ``-- CMD`` is not hidden), else 0."""
    return mon.command_status or 0


def spec_from_args(args: argparse.Namespace) -> MonitorSpec:
    """The session the monitoring options describe (``monitor`` and ``record`` share it). A source that chooses
    its intervals (``pte``: its cost follows the sampling rate) tunes them unless the options fix them."""
    pids, cmd = targets_from_args(args)
    source = sources.resolve_source(args)
    attrs = attrs_from_args(args, source_chooses=source.chooses_intervals)
    schemes = schemes_from_args(args, attrs)
    _, options = sources.source_from_args(args, source)
    return MonitorSpec(pids=pids, command=cmd, source=source.name, source_options=options,
                       attrs=attrs, duration_s=duration_from_args(args), started_at=started_at(args),
                       seed=args.seed,
                       command_stdout_to_stderr=bool(args.json),
                       follow_children=bool(getattr(args, "follow_children", False)),
                       schemes=schemes, dry_run=bool(getattr(args, "dry_run", False)),
                       working_set_window_us=wss_window_from_args(args), probes=probes_from_args(args))


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    rc, _, _ = run_session(spec, args)
    return rc
