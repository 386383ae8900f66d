"""``damon-bpf import perf.data [-o damon.data]``: a damo-readable record from a perf recording with data addresses.

Reads the samples (:mod:`damon_bpf.results.perfscript`: ``perf record -d``, ``perf mem record``, ``perf c2c record``),
replays them through the monitoring core on a fake clock driven by the perf timestamps
(:func:`damon_bpf.session.replay.replay`), and writes every aggregation interval with
:class:`damon_bpf.results.records.RecordWriter` (damo's record format), the record's times being perf's (time
offset 0). Next to it, ``FILE.attribution`` lists the instruction pointers that touched
each region, with perf's symbol names, for ``damon-bpf report code``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from damon_bpf.results.attribution import AttributionWriter, sidecar_path
from damon_bpf.cli._args import add_monitoring_args, attrs_from_args
from damon_bpf.engine import Attrs, Snapshot
from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.ops.replay import ESTIMATORS, ReplayOps
from damon_bpf.session.replay import ReplayResult, replay
from damon_bpf.results.perfscript import PerfSamples, read_perf_data, read_symbols

__all__ = ("add_arguments", "run", "import_perf", "ImportResult")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "damon-bpf import [options] PERF_DATA"
    p.add_argument("perf_data", metavar="PERF_DATA",
                   help="a perf recording with data addresses: perf record -d (e.g. -e page-faults -d), "
                        "perf mem record, perf c2c record")
    p.add_argument("-o", "--output", default="damon.data", metavar="FILE",
                   help="the record to write (damo's format; default damon.data; an existing regular file is renamed "
                        "to FILE.old); FILE.attribution gets the code attribution")
    p.add_argument("--pid", type=int, action="append", metavar="PID",
                   help="replay only this process (repeatable; default: every process with samples)")
    p.add_argument("--estimator", choices=ESTIMATORS, default="auto",
                   help="hits: count sampling intervals with an event (exact events, -c 1); density: events x "
                        "period per page (sampled events); auto (default): density if any event is sampled")
    p.add_argument("--no-attribution", action="store_true", help="do not write FILE.attribution")
    p.add_argument("--no-symbols", action="store_true",
                   help="do not ask perf for symbol names (report code then needs the processes alive)")
    p.add_argument("--perf", metavar="PATH", help="the perf executable (default: $PERF or perf)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_monitoring_args(p)


@dataclass
class ImportResult:
    """What :func:`import_perf` did."""

    output: str
    attribution: str | None
    nr_samples_read: int
    replay: ReplayResult
    comms: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        r = self.replay
        return {
            "output": self.output,
            "attribution": self.attribution,
            "samples_read": self.nr_samples_read,
            "pids": r.pids,
            "comms": [self.comms.get(p, "") for p in r.pids],
            "samples_replayed": r.nr_samples,
            "start_ns": r.start_ns,
            "end_ns": r.end_ns,
            "duration_s": round((r.end_ns - r.start_ns) / 1e9, 6),
            "snapshots": r.nr_snapshots,
            "estimator": "density" if r.density else "hits",
        }


def import_perf(perf_data: str, output: str, attrs: Attrs, *, pids: list[int] | None = None,
                estimator: str = "auto", attribution: bool = True, symbols: bool = True, seed: int | None = None,
                perf: str | None = None, samples: PerfSamples | None = None) -> ImportResult:
    """Build the record *output* (and its attribution sidecar) from the perf recording *perf_data*.

    :param samples: already read samples (skips running perf script for them)
    :raises MissingDependencyError: perf is not installed
    :raises PerfDataError: not a perf.data file, or no data addresses
    :raises InvalidParamsError: no samples with data addresses (for the asked pids); *output* may not be
        replaced (a folder, device, symlink)
    """
    from damon_bpf.results.records import RecordWriter, check_record_path

    check_record_path(output)  # before perf runs
    if samples is None:
        samples = read_perf_data(perf_data, perf=perf)
    if not len(samples):
        raise InvalidParamsError(f"{perf_data} has no samples")
    syms: dict[tuple[int, int], str] = {}
    if attribution and symbols and perf_data:
        try:
            syms = read_symbols(perf_data, perf=perf)
        except DamonBpfError:
            syms = {}

    ops = ReplayOps(samples, estimator=estimator)
    # time offset 0: the record's times are the perf timestamps; the writer renames an old FILE.attribution
    # before the sidecar below is created
    writer = RecordWriter(output, attrs=attrs, time_offset_ns=0)
    consume, close = writer, writer.close
    try:
        side: AttributionWriter | None = AttributionWriter(sidecar_path(output)) if attribution else None
    except BaseException:
        writer.close()
        raise

    def _consumer(snap: Snapshot) -> None:
        consume(snap)
        if side is None:
            return
        for ti, t in enumerate(snap.targets):
            rows = ops.take_ips(ti)
            pid = t.pid
            sy = {ip: syms[(pid, ip)] for _, _, ip, _ in rows if pid is not None and (pid, ip) in syms}
            side.write(snap.time_ns, ti, pid, rows, comm=samples.comms.get(pid or -1), syms=sy)

    try:
        res = replay(samples, attrs, [_consumer], pids=pids, estimator=estimator, seed=seed, ops=ops)
    finally:
        try:
            close()
        finally:
            if side is not None:
                side.close()
    return ImportResult(output, sidecar_path(output) if attribution else None, len(samples), res,
                        {p: samples.comms.get(p, "") for p in res.pids})


def run(args: argparse.Namespace) -> int:
    attrs: Attrs = attrs_from_args(args)
    res = import_perf(args.perf_data, args.output, attrs, pids=args.pid, estimator=args.estimator,
                      attribution=not args.no_attribution, symbols=not args.no_symbols, seed=args.seed,
                      perf=args.perf)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    r = res.replay
    who = ", ".join(f"{p} ({res.comms.get(p) or '?'}): {n} samples" for p, n in zip(r.pids, r.nr_samples))
    print(f"imported {sum(r.nr_samples)} of {res.nr_samples_read} samples over "
          f"{(r.end_ns - r.start_ns) / 1e9:.3f} s, {'density estimate' if r.density else 'interval hits'}: {who}")
    print(f"wrote {r.nr_snapshots} aggregation intervals to {res.output}"
          + (f" (code attribution: {res.attribution})" if res.attribution else ""))
    if r.nr_snapshots == 0:
        print("damon-bpf: warning: the recording is shorter than one aggregation interval", file=sys.stderr)
    return 0
