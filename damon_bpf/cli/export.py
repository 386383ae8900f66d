"""``damon-bpf export PID... | --cgroup PATH... | -- CMD ARGS``: monitor processes and serve DAMON_STAT's figures
to Prometheus.

Takes every source, monitoring and DAMOS option of ``damon-bpf monitor``, plus ``--listen ADDR:PORT`` (default
127.0.0.1:9465 unless ``--textfile`` is given), ``--textfile DIR`` (node_exporter's textfile collector) and
``--cgroup PATH`` (the processes of a cgroup v2 directory, followed while it changes). The metrics are listed in
the README's "Fleets: Prometheus" section.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from damon_bpf.cli import monitor as monitor_cli
from damon_bpf.engine import StopReason
from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.cgroups import resolve_cgroup
from damon_bpf.ops import sources
from damon_bpf.session.cgroups import CgroupWatcher
from damon_bpf.session.exporter import PrometheusExporter, parse_listen, run_export

DEFAULT_LISTEN = "127.0.0.1:9465"


def add_arguments(p: argparse.ArgumentParser) -> None:
    monitor_cli.add_arguments(p)
    p.usage = ("damon-bpf export [options] PID... | damon-bpf export [options] --cgroup PATH... | "
               "damon-bpf export [options] -- CMD [ARGS...]")
    p.description = ("Monitor processes like 'damon-bpf monitor' and export DAMON_STAT's figures per process "
                     "(working set, estimated memory bandwidth, idle-time percentiles), the source's counters and "
                     "the DAMOS schemes' statistics for Prometheus.")
    g = p.add_argument_group("export")
    g.add_argument("--listen", metavar="ADDR:PORT",
                   help=f"serve /metrics here (default {DEFAULT_LISTEN} unless --textfile is given)")
    g.add_argument("--textfile", metavar="DIR",
                   help="also write DIR/damon_bpf.prom for node_exporter's textfile collector (atomically, at "
                        "most once a second)")
    g.add_argument("--cgroup", metavar="PATH", nargs="+", default=[],
                   help="monitor the processes of these cgroup v2 directories (under /sys/fs/cgroup, or relative "
                        "to it), picking up new ones every second; keeps running while they are empty")


def run(args: argparse.Namespace) -> int:
    cgroups = [resolve_cgroup(c) for c in args.cgroup]
    watcher = CgroupWatcher(cgroups) if cgroups else None
    if watcher is not None and not args.pids and not args.command:
        args.pids = ["1"]  # placeholder so the options check passes; the targets are the cgroups' processes
        spec = monitor_cli.spec_from_args(args)
        spec.pids = []
    else:
        spec = monitor_cli.spec_from_args(args)
    if watcher is not None and not sources.get_source(spec.source).adds_processes:
        raise InvalidParamsError(f"--cgroup: the {spec.source} source cannot add processes while running")
    listen = args.listen or args.prometheus or (None if args.textfile else DEFAULT_LISTEN)
    where = parse_listen(listen) if listen else None
    exporter = PrometheusExporter(None, spec.source)
    if args.textfile:
        exporter.write_textfile_to(args.textfile)
    if where is not None:
        exporter.serve(*where)  # before the source starts: an address in use is one line and exit 2

    announced: list[bool] = []

    def started(mon: Any) -> None:
        if announced:
            return  # a fresh monitor of the cgroups' processes
        announced.append(True)
        monitor_cli.announce(mon, "exporting")
        if where is not None:
            print(f"damon-bpf: serving http://{where[0]}:{where[1]}/metrics", file=sys.stderr)

    try:
        reason = run_export(spec, exporter, watcher, on_start=started)
    finally:
        exporter.close()
    if reason is StopReason.TARGETS_GONE and watcher is None:
        print("damon-bpf: every target exited", file=sys.stderr)
    return 0
