"""``damon-bpf report objects [-i FILE | --pid PID]``: the hottest and coldest data of a process, by name.

Names every byte of the target's address space (global variables of its binaries by symbol, the rest of their
sections, heap, stacks, thread stacks, anonymous and file mappings: :mod:`damon_bpf.results.data_objects`) and
weighs each name by the record's regions: access-weighted bytes for the hottest, idle bytes for the coldest.
``--regions`` lists the hottest and coldest regions of the last snapshot instead, each with what it covers.

The mappings come from ``--maps FILE``, else from the recorded process while it runs (its start time checked
against the record), else from ``FILE.vmas`` (damo's ``record --do_record vmas``). ``--pid PID`` monitors a
running process for ``--duration`` first, with the default source, and names its ranges.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence, TextIO

from damon_bpf.config.units import format_bytes, format_time_us, text_to_sec
from damon_bpf.errors import InvalidParamsError
from damon_bpf.ops import sources
from damon_bpf.results.attribution import RecordRegions, rank_regions
from damon_bpf.results.data_objects import (
    MAPPING_KINDS,
    ObjectHeat,
    ObjectMap,
    SnapshotRegions,
    live_object_map,
    mappings_for,
    object_heat,
    rank_objects,
)
from damon_bpf.results.records import Record, read_records

__all__ = ("add_arguments", "run", "TargetReport", "report_record", "format_report", "monitor_spec_for")

#: objects listed per region with --regions
_COVERS_SHOWN = 5

_KIND_CHOICES = {"all": None, "globals": ("global",), "sections": ("global", "section"),
                 "mappings": tuple(sorted(MAPPING_KINDS))}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", default="damon.data", metavar="FILE",
                   help="the record (default damon.data): damon-bpf's or damo's")
    p.add_argument("--pid", type=int, metavar="PID",
                   help="instead of a record: monitor the running process PID for --duration and name its ranges")
    p.add_argument("--duration", default="10s", metavar="TIME",
                   help="with --pid: how long to monitor (default 10s; the start-up is not counted)")
    p.add_argument("--source", default=sources.AUTO,
                   choices=(sources.AUTO, *(d.name for d in sources.SOURCES if d.selectable and d.loads_bpf)),
                   help="with --pid: the access source (default auto, as monitor)")
    p.add_argument("--minr", type=int, default=1000, metavar="N",
                   help="with --pid: the minimum number of regions (default 1000: small objects need small regions "
                        "to be found in a few seconds); the maximum is 3 times it, so that regions keep splitting")
    p.add_argument("--maps", metavar="FILE",
                   help="the target's mappings: a copy of /proc/PID/maps, or damo's FILE.vmas (default: the live "
                        "process when it is the one recorded, else INPUT.vmas)")
    p.add_argument("--no-live", action="store_true",
                   help="never read the recorded process's /proc files, even when it still runs")
    p.add_argument("--target", "--tid", type=int, metavar="ID", dest="target", help="only this target id")
    p.add_argument("--top", type=int, default=10, metavar="N", help="list N hottest and N coldest (default 10)")
    p.add_argument("--last", type=int, default=0, metavar="K",
                   help="weigh by the last K snapshots of each target (default 0: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--hot", action="store_true", help="only the hottest")
    g.add_argument("--cold", action="store_true", help="only the coldest")
    p.add_argument("--kind", choices=tuple(_KIND_CHOICES), default="all",
                   help="globals: global variables only; sections: and the rest of the binaries' sections; "
                        "mappings: mappings only (heap, stacks, anonymous, files); all (default)")
    p.add_argument("--regions", action="store_true",
                   help="list the hottest and coldest regions of the last snapshot (ranked over --last, default 5) "
                        "with the objects each covers, instead of objects")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


class TargetReport:
    """The report of one target: its object map and either ranked objects or ranked regions."""

    def __init__(self, target_id: int, pid: int | None, omap: ObjectMap, nr_snapshots: int) -> None:
        self.target_id = target_id
        self.pid = pid
        self.omap = omap
        self.nr_snapshots = nr_snapshots
        self.hot: list[ObjectHeat] = []
        self.cold: list[ObjectHeat] = []
        self.total_weighted = 0.0
        self.regions: list[dict[str, Any]] = []
        self.unmapped = 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"target_id": self.target_id, "pid": self.pid, "mappings": self.omap.source,
                             "snapshots": self.nr_snapshots, "notes": self.omap.notes}
        if self.regions:
            d["regions"] = self.regions
        else:
            d["hot"] = [h.to_dict() for h in self.hot]
            d["cold"] = [h.to_dict() for h in self.cold]
            d["unmapped_bytes"] = round(self.unmapped, 1)
        return d


def _snapshot_regions(rec: Record, last: int) -> list[SnapshotRegions]:
    snaps = rec.snapshots[-last:] if last > 0 else rec.snapshots
    max_seen = max((int(s.nr_accesses.max()) for s in snaps if s.nr_regions), default=1)
    out = []
    for s in snaps:
        iv = rec.snapshot_intervals_us(s)
        if iv is not None:
            sample_us, aggr_us = iv
            max_nr = max(aggr_us / max(sample_us, 1e-9), 1.0)
        else:  # no intervals (perf-script records): the record's largest count is the scale
            max_nr, aggr_us = float(max(max_seen, 1)), s.duration_ns / 1000
        out.append(SnapshotRegions(s.start, s.end, s.nr_accesses, s.age, max_nr, aggr_us))
    return out


def _rank(report: TargetReport, snaps: Sequence[SnapshotRegions], args: argparse.Namespace) -> None:
    heats = object_heat(report.omap, snaps)
    report.total_weighted = sum(h.weighted for h in heats)
    monitored = sum(float((s.end - s.start).sum()) for s in snaps) / max(len(snaps), 1)
    report.unmapped = max(monitored - sum(h.monitored for h in heats), 0.0)
    hot, cold = rank_objects(heats, args.top, _KIND_CHOICES[args.kind], exclusive=not (args.hot or args.cold))
    report.hot = [] if args.cold else hot
    report.cold = [] if args.hot else cold


def _rank_regions(report: TargetReport, rec_regions: RecordRegions, args: argparse.Namespace) -> None:
    nr = max((s[1].size for s in rec_regions.snapshots[-1:]), default=0)
    hot, cold = rank_regions(rec_regions, max(nr, 1), args.last or 5)

    def mapped(r: Any) -> int:
        return sum(p.bytes for p in report.omap.name_range(r.start, r.end))

    # regions in no mapping now (the gaps DAMON's three regions keep) name nothing: left out
    hot = [r for r in hot if mapped(r)][:args.top]
    cold = [r for r in cold if mapped(r)][:args.top]
    for r in ([] if args.cold else hot) + ([] if args.hot else cold):
        covers = report.omap.summarize_range(r.start, r.end, top=_COVERS_SHOWN)
        in_maps = mapped(r)
        report.regions.append({
            "kind": r.kind, "start": r.start, "end": r.end, "nr_accesses": round(r.nr_accesses, 3), "age": r.age,
            "covers": [{"object": o.to_dict(), "bytes": n} for o, n in covers],
            "other_bytes": in_maps - sum(n for _, n in covers), "unmapped_bytes": r.end - r.start - in_maps})


def _record_regions(rec: Record) -> RecordRegions:
    rr = RecordRegions(rec.target_id, pid=rec.pid)
    for s in rec.snapshots:
        rr.snapshots.append((s.end_time, s.start, s.end, s.nr_accesses, s.age))
    if rec.intervals is not None:
        rr.max_nr_accesses = max(1, rec.intervals.aggr_us // max(rec.intervals.sample_us, 1))
    return rr


def report_record(path: str, args: argparse.Namespace) -> tuple[list[TargetReport], list[str]]:
    """The reports of the targets of the record *path* (see the module docstring), and notes on the targets
    left out for want of mappings (when others have them).

    :raises InvalidParamsError: no such record or target; no mappings for the target asked for, or for any
    """
    records = [r for r in read_records(path) if r.snapshots]
    if not records:
        raise InvalidParamsError(f"{path}: the record has no snapshot")
    if args.target is not None:
        records = [r for r in records if r.target_id == args.target]
        if not records:
            raise InvalidParamsError(f"{path}: no target {args.target}")
    start_ns = min(r.snapshots[0].start_time for r in records)
    out = []
    skipped: list[InvalidParamsError] = []
    for rec in sorted(records, key=lambda r: r.target_id):
        try:
            omap = mappings_for(path, rec.pid, record_start_ns=start_ns, maps_file=args.maps,
                                live=not args.no_live)
        except InvalidParamsError as err:
            if len(records) == 1:
                raise
            skipped.append(err)
            continue
        report = TargetReport(rec.target_id, rec.pid, omap, len(rec.snapshots))
        if args.regions:
            _rank_regions(report, _record_regions(rec), args)
        else:
            _rank(report, _snapshot_regions(rec, args.last), args)
        out.append(report)
    if not out:
        raise skipped[0]
    return out, [f"a target left out: {err}" for err in skipped]


def monitor_spec_for(pid: int, duration: str, source: str = "auto", minr: int = 1000) -> Any:
    """The ``MonitorSpec`` of ``damon-bpf monitor PID --source SOURCE --duration DURATION --minr MINR --maxr
    3*MINR`` (its own option handling, defaults included), the start-up not counted in the duration (it is the
    monitoring time: a BPF compilation on a busy machine can take longer than a short session). The kernel's
    rule splits regions only while there are fewer than ``maxr / 2``: with ``maxr = 3 x minr`` they keep
    splitting, and the source's probes keep moving, instead of freezing at ``minr`` regions."""
    from damon_bpf.cli import monitor as monitor_cli

    if text_to_sec(duration) <= 0:
        raise InvalidParamsError(f"invalid --duration {duration!r}")
    if minr < 3:
        raise InvalidParamsError("--minr must be at least 3")
    mp = argparse.ArgumentParser(add_help=False)
    monitor_cli.add_arguments(mp)
    ns = mp.parse_args([str(pid), "--source", source, "--duration", duration, "--minr", str(minr),
                        "--maxr", str(max(1000, minr * 3))])
    ns.command = []
    spec = monitor_cli.spec_from_args(ns)
    spec.started_at = None
    return spec


def _report_live(args: argparse.Namespace) -> list[TargetReport]:
    # one short monitoring session of --pid, then the live process's names
    from damon_bpf.session.monitor import Monitor

    spec = monitor_spec_for(args.pid, args.duration, args.source, args.minr)
    snaps: list[Any] = []
    mon = Monitor(spec, consumers=[snaps.append])
    with mon.stopping_on_signals():
        try:
            mon.open()
            print(f"damon-bpf: monitoring pid {args.pid} for {args.duration} with source {spec.source}",
                  file=sys.stderr)
            mon.run()
        finally:
            mon.close()
    if not snaps:
        raise InvalidParamsError(f"no snapshot of pid {args.pid} in {args.duration}: give a longer --duration")
    last = snaps[-args.last:] if args.last > 0 else snaps
    regions = [SnapshotRegions(t.start, t.end, t.nr_accesses, t.age, float(s.max_nr_accesses),
                               float(s.aggr_interval_us))
               for s in last for t in s.targets if t.pid == args.pid]
    omap = live_object_map(args.pid)
    report = TargetReport(0, args.pid, omap, len(snaps))
    if args.regions:
        rr = RecordRegions(0, pid=args.pid, max_nr_accesses=int(snaps[-1].max_nr_accesses))
        rr.snapshots = [(s.time_ns, t.start, t.end, t.nr_accesses, t.age) for s in snaps for t in s.targets
                        if t.pid == args.pid]
        _rank_regions(report, rr, args)
    else:
        _rank(report, regions, args)
    return [report]


def _pct(x: float) -> str:
    return f"{100.0 * x:5.1f}%"


def format_report(reports: Sequence[TargetReport], args: argparse.Namespace) -> list[str]:
    """The report as text lines (under 80 columns but for the object labels)."""
    lines: list[str] = []
    for rep in reports:
        if lines:
            lines.append("")
        lines.append(f"# target {rep.target_id}: pid {rep.pid if rep.pid is not None else '?'}; mappings from "
                     f"{rep.omap.source}")
        if rep.regions:
            lines.append(f"# regions of the last snapshot, ranked by nr_accesses over the last {args.last or 5} "
                         f"snapshots")
            for r in rep.regions:
                size = r["end"] - r["start"]
                lines.append(f"{r['kind']:4} [{r['start']:#x}-{r['end']:#x}) {format_bytes(size)}  nr_accesses "
                             f"{r['nr_accesses']:.2f}  age {r['age']}")
                for c in r["covers"]:
                    lines.append(f"    {format_bytes(c['bytes']):>12} {100.0 * c['bytes'] / size:5.1f}%  "
                                 f"{c['object']['label']}")
                if r["other_bytes"]:
                    lines.append(f"    {format_bytes(r['other_bytes']):>12} in other objects")
                if r["unmapped_bytes"]:
                    lines.append(f"    {format_bytes(r['unmapped_bytes']):>12} in no mapping now")
            continue
        span = f"the last {args.last}" if 0 < args.last < rep.nr_snapshots else "all"
        lines.append(f"# {span} of {rep.nr_snapshots} snapshots; access rate: nr_accesses / max, byte-weighted")
        if rep.hot:
            lines.append("# hottest objects (access-weighted bytes: bytes x access rate)")
            lines.append(f"{'weighted':>12} {'share':>6} {'access':>6}  object")
            for h in rep.hot:
                share = h.weighted / rep.total_weighted if rep.total_weighted else 0.0
                lines.append(f"{format_bytes(h.weighted):>12} {_pct(share)} {_pct(h.rate)}  {h.obj.label()}")
        elif not args.cold:
            lines.append("# no object was accessed")
        if rep.cold:
            lines.append("# coldest objects (idle bytes: bytes x (1 - access rate))")
            lines.append(f"{'idle':>12} {'access':>6} {'age':>9}  object")
            for h in rep.cold:
                lines.append(f"{format_bytes(h.idle):>12} {_pct(h.rate)} {format_time_us(h.age_us):>9}  "
                             f"{h.obj.label()}")
        if rep.unmapped >= 1:
            lines.append(f"# {format_bytes(rep.unmapped)} of the monitored regions lie in no mapping now")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.top <= 0 or args.last < 0:
        raise InvalidParamsError("--top must be positive and --last not negative")
    notes: list[str] = []
    if args.pid is not None:
        if args.maps:
            raise InvalidParamsError("--maps is for records; --pid reads the live process's maps")
        reports = _report_live(args)
    else:
        reports, notes = report_record(args.input, args)
    out: TextIO = sys.stdout
    if args.json:
        out.write(json.dumps({"targets": [r.to_dict() for r in reports]}) + "\n")
    else:
        text = format_report(reports, args)
        out.write("\n".join(text) + "\n")
    for note in notes + [n for rep in reports for n in rep.omap.notes]:
        print(f"damon-bpf: note: {note}", file=sys.stderr)
    return 0

