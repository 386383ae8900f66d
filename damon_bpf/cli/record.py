"""``damon-bpf record <pid>... | -- CMD ARGS``: monitor like ``monitor`` and save the results in damo's format.

Takes every source, monitoring and DAMOS option of ``damon-bpf monitor`` (its ``add_arguments`` is called
here), plus ``-o/--out``. The record file is complete whenever the command ends: on ``--duration``, when the
targets exit, on Ctrl-C or SIGTERM; after a SIGKILL it holds the state of the last second, and
``damon-bpf record --recover FILE`` rebuilds the rest from ``FILE.journal``. When damo's reports cannot show
everything of the record for a reason in damo itself (``damo report wss`` and ``nr_regions`` leave out the first
20 snapshots of each target), the command ends with one warning line saying so (``records.damo_caveat``).

``-o FILE`` replaces only a regular file (moved to ``FILE.old``): a folder, device or symlink there is refused
with exit code 2 before the session starts. A write that fails for lack of space ends the recording with exit
code 6, the record holding its last complete rewrite and the error saying how to rebuild the rest from
``FILE.journal``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from typing import Any, Callable

from damon_bpf.cli import monitor as monitor_cli
from damon_bpf.cli._threads import threads_recorder
from damon_bpf.engine import StopReason
from damon_bpf.errors import InvalidParamsError
from damon_bpf.session.monitor import Monitor, MonitorSpec
from damon_bpf.results.records import RecordWriter, check_record_path, damo_caveat, recover_file
from damon_bpf.results.profile import (DAMO_DO_RECORD_DEFAULT, DO_RECORD_CHOICES, DO_RECORD_DEFAULT, ProfileRecorder, check_side_paths,
                                       recipe_from_args)
from damon_bpf.config.units import format_bytes, text_to_sec


def add_arguments(p: argparse.ArgumentParser) -> None:
    monitor_cli.add_arguments(p)
    p.usage = ("damon-bpf record [options] PID... | damon-bpf record [options] -- CMD [ARGS...]\n"
               "       damon-bpf record --recover FILE")
    p.description = ("Monitor processes like 'damon-bpf monitor' and record the results to a file that damo's "
                     "reports (damo report heatmap/wss/access --input FILE) and 'damon-bpf report' read.")
    g = p.add_argument_group("recording")
    g.add_argument("-o", "--out", default="damon.data", metavar="FILE",
                   help="record file (default damon.data; an existing one is renamed to FILE.old, as damo does; "
                        "anything but a regular file is refused)")
    g.add_argument("--live", action="store_true", help="also show the live view while recording (as monitor)")
    g.add_argument("--flush", default="1s", metavar="TIME",
                   help="rewrite the record file at least this often (default 1s); between rewrites, "
                        "FILE.journal holds every snapshot")
    g.add_argument("--keep-journal", action="store_true", help="keep FILE.journal after a clean end")
    g.add_argument("--recover", metavar="FILE",
                   help="rebuild FILE from FILE.journal after a recording was killed, then exit")
    # damo's profiling recipe (issue #19): what else to record beside FILE (damon_bpf.results.profile)
    g.add_argument("--do_record", nargs="+", metavar="ITEM",
                   help=f"what to record, damo's items ({', '.join(DO_RECORD_CHOICES[:-1])}; also comma-separated): "
                        f"FILE.mem_footprint, FILE.vmas, FILE.proc_stats (sampled every second) and FILE.profile "
                        f"(perf record -a); FILE.kdamonds always (default: {' '.join(DO_RECORD_DEFAULT)}; damo's "
                        f"default adds vmas and cpu_profile: {' '.join(DAMO_DO_RECORD_DEFAULT)}); it takes every word "
                        "after it, as damo's: give PIDs before it or end it with --")
    g.add_argument("--perf_path", metavar="PATH", help="the perf for cpu_profile (default $PERF or perf)")


def spec_from_args(args: argparse.Namespace) -> MonitorSpec:
    """The session ``damon-bpf monitor`` runs for the same arguments, DAMOS schemes included."""
    return monitor_cli.spec_from_args(args)


class _Progress:
    """A one-line progress note on a terminal's standard error, redrawn at most once a second."""

    def __init__(self, writer: RecordWriter, enabled: bool) -> None:
        self.writer = writer
        self.enabled = enabled
        self.t0 = time.monotonic()
        self._next = 0.0
        self._lock = threading.Lock()
        self.shown = False

    def __call__(self, snap: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 1.0
        with self._lock:
            sys.stderr.write(f"\rdamon-bpf: {now - self.t0:6.1f}s  {self.writer.nr_snapshots} snapshots  "
                             f"{snap.nr_regions} regions ")
            sys.stderr.flush()
            self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _recover(path: str) -> int:
    out, records = recover_file(path)
    nr = sum(len(r.snapshots) for r in records)
    print(f"damon-bpf: recovered {nr} snapshots of {len(records)} target{'s' if len(records) != 1 else ''} "
          f"into {out}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.recover:
        if args.pids or getattr(args, "command", None):
            raise InvalidParamsError("--recover takes no targets")
        return _recover(args.recover)
    flush_s = text_to_sec(args.flush)
    if flush_s <= 0:
        raise InvalidParamsError(f"invalid --flush {args.flush!r}")
    spec = spec_from_args(args)
    recipe = recipe_from_args(args.do_record, args.perf_path)
    mon = Monitor(spec)  # validates the spec before any file is touched
    check_record_path(args.out)  # and the output before the session starts
    check_side_paths(args.out, recipe)
    live = args.live or args.json
    view = None
    if live:
        view = monitor_cli.LiveView(mon, sys.stdout, as_json=args.json, every=args.every, rows=args.rows,
                                    source=spec.source)

    writer: RecordWriter | None = None
    profile: ProfileRecorder | None = None
    progress: _Progress | None = None
    reason = StopReason.ERROR
    exporter = monitor_cli.prometheus_exporter(mon, args)
    with mon.stopping_on_signals(), contextlib.ExitStack() as stack:
        if exporter is not None:
            stack.callback(exporter.close)
        try:
            mon.open()
            assert mon.ctx is not None and mon.ctx.ops is not None
            ops = mon.ctx.ops
            ips = (lambda: ops.last_ips or []) if ops.last_ips is not None else None
            writer = RecordWriter(args.out, attrs=spec.attrs, ips=ips, rewrite_interval_s=flush_s,
                                  keep_journal=args.keep_journal)
            progress = _Progress(writer, enabled=not live and sys.stderr.isatty())
            profile = ProfileRecorder(args.out, recipe, mon.pids, spec.attrs, spec.schemes,
                                      probes=spec.probes)
            profile.start()
            # the session is open (consumers given to Monitor() were wired then): add ours to the kdamond directly
            consumers: list[Callable[[Any], None]] = [writer, progress, profile]
            threads = threads_recorder(ops, args.out)  # FILE.threads: the fault and perf sources' attribution
            if threads is not None:
                stack.callback(threads.close)
                consumers.append(threads)
            if view is not None:
                consumers.append(view)
            mon.ctx.after_aggregation.extend(consumers)
            for path, nr in writer.completed_records:  # killed recordings the writer completed before it started
                print(f"damon-bpf: {path}: completed a killed recording: {nr} snapshot{'s' if nr != 1 else ''} "
                      f"recovered from its journal", file=sys.stderr)
            monitor_cli.announce(mon, "recording", to=args.out)
            reason = mon.run()
        finally:
            mon.close()  # the source's cleanup (BPF programs detached, sysctls restored), also if it never ran
            if progress is not None:
                progress.end()
            if profile is not None:
                profile.close()
                for note in profile.notes:
                    print(f"damon-bpf: note: {note}", file=sys.stderr)
            if writer is not None:
                writer.close()
    assert writer is not None
    if reason is StopReason.TARGETS_GONE:
        print("damon-bpf: every target exited", file=sys.stderr)
    try:
        size = format_bytes(os.path.getsize(args.out))
    except OSError:
        size = "?"
    print(f"damon-bpf: recorded {writer.nr_snapshots} snapshots of {writer.nr_targets} "
          f"target{'s' if writer.nr_targets != 1 else ''} to {args.out} ({size})", file=sys.stderr)
    caveat = damo_caveat(writer.nr_snapshots_per_target)  # what damo's reports cannot show, in damo itself
    if caveat is not None:
        print(f"damon-bpf: warning: {caveat}", file=sys.stderr)
    return monitor_cli.command_exit_code(mon)
