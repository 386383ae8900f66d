"""``damon-bpf export <pid>... | -- CMD ARGS``: monitor processes and serve DAMON_STAT's figures to Prometheus.

Takes every source, monitoring and DAMOS option of ``damon-bpf monitor``, plus ``--listen ADDR:PORT`` (default
127.0.0.1:9465) and ``--textfile DIR`` (node_exporter's textfile collector). The metrics are listed in the
README's "Fleets: Prometheus" section.
"""

from __future__ import annotations

import argparse
import sys

from damon_bpf.cli import monitor as monitor_cli
from damon_bpf.engine import StopReason
from damon_bpf.session.exporter import PrometheusExporter, parse_listen
from damon_bpf.session.monitor import Monitor

DEFAULT_LISTEN = "127.0.0.1:9465"


def add_arguments(p: argparse.ArgumentParser) -> None:
    monitor_cli.add_arguments(p)
    p.usage = "damon-bpf export [options] PID... | damon-bpf export [options] -- CMD [ARGS...]"
    p.description = ("Monitor processes like 'damon-bpf monitor' and export DAMON_STAT's figures per process "
                     "(working set, estimated memory bandwidth, idle-time percentiles), the source's counters and "
                     "the DAMOS schemes' statistics for Prometheus.")
    g = p.add_argument_group("export")
    g.add_argument("--listen", metavar="ADDR:PORT",
                   help=f"serve /metrics here (default {DEFAULT_LISTEN} unless --textfile is given)")
    g.add_argument("--textfile", metavar="DIR",
                   help="also write DIR/damon_bpf.prom for node_exporter's textfile collector (atomically, at "
                        "most once a second)")


def run(args: argparse.Namespace) -> int:
    spec = monitor_cli.spec_from_args(args)
    mon = Monitor(spec)
    exporter = PrometheusExporter(mon, spec.source)
    mon.consumers.append(exporter)
    listen = args.listen or args.prometheus or (None if args.textfile else DEFAULT_LISTEN)
    where = parse_listen(listen) if listen else None
    if args.textfile:
        exporter.write_textfile_to(args.textfile)
    if where is not None:
        exporter.serve(*where)  # before the source starts: an address in use is one line and exit 2
    try:
        with mon.stopping_on_signals():
            try:
                mon.open()
                monitor_cli.announce(mon, "exporting")
                if where is not None:
                    print(f"damon-bpf: serving http://{where[0]}:{where[1]}/metrics", file=sys.stderr)
                reason = mon.run()
            finally:
                mon.close()
    finally:
        exporter.close()
    if reason is StopReason.TARGETS_GONE:
        print("damon-bpf: every target exited", file=sys.stderr)
    return 0
