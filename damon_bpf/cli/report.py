"""``damon-bpf report TYPE [-i FILE] ...``: show recorded monitoring results (damo's ``report``).

Report types are listed once in :data:`REPORT_TYPES`. Each entry names a module (``pkg.mod``) or an object in
one (``pkg.mod:NAME``) that provides ``add_arguments(parser)`` and ``run(args) -> int``, like the subcommands.
A type whose module is not installed is left out. Every type gets ``-i/--input FILE`` (default
``damon.data``) unless its ``add_arguments`` adds its own ``--input``.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple, TextIO

from damon_bpf.errors import InvalidParamsError
from damon_bpf.linux.files import atomic_open, check_replaceable
from damon_bpf.results.records import Record, read_records, records_to_kvpairs, write_perf_script
from damon_bpf.config.units import text_to_bytes, text_to_ns


class ReportType(NamedTuple):
    name: str
    target: str  # "package.module" or "package.module:ATTRIBUTE", providing add_arguments() and run()
    help: str


REPORT_TYPES: tuple[ReportType, ...] = (
    ReportType("heatmap", "damon_bpf.cli.report:HEATMAP", "when which addresses were how often accessed"),
    ReportType("wss", "damon_bpf.cli.report:WSS", "distribution of the working set size"),
    ReportType("access", "damon_bpf.cli.report:ACCESS", "the regions of a snapshot, with access rates and ages"),
    ReportType("raw", "damon_bpf.cli.report:RAW", "every snapshot's regions (text, perf-script or JSON)"),
    ReportType("info", "damon_bpf.cli.report:INFO", "targets, time span and address blocks of a record"),
    # damo's profiling recipe (issue #19): the files record --do_record writes beside the record
    ReportType("footprints", "damon_bpf.cli.report_profile:FOOTPRINTS", "distribution of the memory footprints"),
    ReportType("times", "damon_bpf.cli.report_profile:TIMES", "times of the snapshots with an access pattern"),
    ReportType("profile", "damon_bpf.cli.report_profile:PROFILE", "the CPU profile of those times (perf report)"),
    ReportType("nr_regions", "damon_bpf.cli.report_profile:NR_REGIONS", "distribution of the number of regions"),
    ReportType("holistic", "damon_bpf.cli.report_profile:HOLISTIC",
               "heatmaps, working set and footprints, hotspot functions in one page (or --png picture)"),
    ReportType("code", "damon_bpf.cli.report_code", "which code made the accesses (instruction attribution)"),
    ReportType("objects", "damon_bpf.cli.report_objects",
               "which data is hot or cold, by name: global variables, heap, stacks, mappings"),
    ReportType("threads", "damon_bpf.cli.report_threads", "which threads and CPUs made the accesses"),
)


def _load(target: str) -> Any | None:
    mod_name, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as err:
        if err.name == mod_name:
            return None  # a report type of a partial installation
        raise
    return getattr(mod, attr) if attr else mod


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "damon-bpf report {" + ",".join(t.name for t in REPORT_TYPES) + "} [-i FILE] [options]"
    sub = p.add_subparsers(dest="report_type", metavar="TYPE")
    for rt in REPORT_TYPES:
        impl = _load(rt.target)
        if impl is None:
            continue
        sp = sub.add_parser(rt.name, help=rt.help, description=rt.help)
        impl.add_arguments(sp)
        if not any("--input" in a.option_strings for a in sp._actions):
            sp.add_argument("-i", "--input", default="damon.data", metavar="FILE",
                            help="record file: damon-bpf's or damo's (zlib/JSON/perf-script), or a damon-bpf "
                                 "journal (default damon.data)")
        sp.set_defaults(_report_run=impl.run)


def run(args: argparse.Namespace) -> int:
    fn: Callable[[argparse.Namespace], int] | None = getattr(args, "_report_run", None)
    if fn is None:
        raise InvalidParamsError("give a report type: " + ", ".join(t.name for t in REPORT_TYPES))
    return int(fn(args))


# -- shared helpers ------------------------------------------------------------------------------------------


def load(args: argparse.Namespace) -> list[Record]:
    """The records of ``args.input``; raises InvalidParamsError (exit 2) when it is missing or corrupt."""
    def said(path: str, nr: int) -> None:
        print(f"damon-bpf: {path}: the recording was cut short; recovered {nr} snapshot{'s' if nr != 1 else ''} "
              f"from {path}.journal (the file now holds them too)", file=sys.stderr)

    records = read_records(args.input, on_recover=said)
    if not any(r.snapshots for r in records):
        raise InvalidParamsError(f"{args.input}: the record has no snapshot")
    return records


def _color(args: argparse.Namespace, out: TextIO) -> bool:
    if args.color == "always":
        return True
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return False
    return out.isatty()


def _addr(text: str) -> int:
    t = text.strip()
    if t.lower().startswith("0x"):
        return int(t, 16)
    return text_to_bytes(t)


def _write_lines(lines: list[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write("\n".join(lines) + ("\n" if lines else ""))


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", "--tid", type=int, metavar="ID", dest="target",
                   help="target id (the record's target index; default: the largest target)")


# -- heatmap -------------------------------------------------------------------------------------------------


def _heatmap_args(p: argparse.ArgumentParser) -> None:
    _add_target(p)
    p.add_argument("--resol", nargs=2, type=int, metavar=("ROWS", "COLS"),
                   help="time rows and address columns (default 40 80; 500 500 for --png)")
    p.add_argument("--time_range", nargs=2, metavar=("START", "END"),
                   help="time range relative to the recording's start, e.g. '2s 5s' (bare numbers: ns)")
    p.add_argument("--address_range", nargs=2, action="append", metavar=("START", "END"),
                   help="address range (0x... or sizes like 4GiB); repeat for one map per range")
    p.add_argument("--draw_range", choices=("hottest", "all"), default="hottest",
                   help="without --address_range: the contiguous block with the most heat per byte (default, "
                        "as damo), or one map per block")
    p.add_argument("--stdout_colorset", "--colorset", choices=("gray", "flame", "emotion"), default="gray",
                   dest="colorset", help="colours of the terminal map (damo's sets)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the terminal map (default: when writing to a terminal)")
    p.add_argument("--stdout_skip_colorset_example", action="store_true",
                   help="leave out the '# access_frequency' line")
    p.add_argument("--png", metavar="FILE",
                   help="draw a picture instead, to exactly FILE (time x address, every monitored block with the "
                        "gaps skipped; the suffix picks the format: .svg, .pdf, ...; PNG for any other); needs "
                        "matplotlib")


def _heatmap_run(args: argparse.Namespace) -> int:
    from damon_bpf.results import damo_reports as reports

    if args.png:
        check_replaceable(args.png)  # before the record is read
    records = load(args)
    base = reports.base_time(records)
    recs, guide = reports.select_target(records, args.target)
    time_range = None
    if args.time_range:
        t0, t1 = (text_to_ns(x) + base for x in args.time_range)
        time_range = (t0, t1)
    ranges = [(_addr(a), _addr(b)) for a, b in args.address_range] if args.address_range else None
    if args.png:
        resol = tuple(args.resol) if args.resol else (500, 500)
        hm = reports.plot_heatmap(records, args.png, target_id=guide.target_id, time_range=time_range,
                                  address_ranges=ranges, resol=resol)
        print(f"damon-bpf: wrote {args.png} (target {hm.target_id}, {len(hm.ranges)} address "
              f"block{'s' if len(hm.ranges) != 1 else ''})", file=sys.stderr)
        return 0
    resol = tuple(args.resol) if args.resol else (40, 80)
    if ranges is None:
        blocks = guide.blocks
        if args.draw_range == "hottest":
            blocks = [max(blocks, key=lambda b: b.heat_per_byte)]
        ranges = [(b.start, b.end) for b in blocks]
    colorset = args.colorset if _color(args, sys.stdout) else None
    for i, rng in enumerate(ranges):
        hm = reports.heatmap(records, target_id=guide.target_id, time_range=time_range, address_ranges=[rng],
                             resol=resol)
        if i:
            print()
        _write_lines(reports.format_heatmap(hm, base_ns=base, colorset=colorset,
                                            show_colorset=not args.stdout_skip_colorset_example))
    return 0


# -- wss -----------------------------------------------------------------------------------------------------


def _wss_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--range", nargs=3, type=int, default=[0, 101, 25], metavar=("START", "STOP", "STEP"),
                   help="percentiles to print (default 0 101 25)")
    p.add_argument("--exclude_samples", type=int, default=20, metavar="N",
                   help="leave out the first N snapshots (default 20, as damo; 0 for short records)")
    p.add_argument("-t", "--acc_thres", type=int, default=1, metavar="N",
                   help="a region is in the working set from N samples with accesses (default 1)")
    p.add_argument("--sz_thres", type=int, default=1, metavar="BYTES", help="and from this size (default 1)")
    p.add_argument("-s", "--sortby", choices=("size", "time"), default="size",
                   help="size: percentiles (default); time: in recording order (with --all_wss)")
    p.add_argument("--all_wss", action="store_true", help="print every snapshot's working set size")
    p.add_argument("--per_target", action="store_true", help="one distribution per target (default: summed)")
    p.add_argument("--raw_number", action="store_true", help="sizes in bytes")
    p.add_argument("--nr_cols_bar", type=int, default=59, metavar="N", help="bar width (default 59; 0: none)")
    p.add_argument("--png", metavar="FILE",
                   help="draw the percentile curve instead, to exactly FILE (PNG unless the suffix names another "
                        "format); needs matplotlib")


def _wss_run(args: argparse.Namespace) -> int:
    from damon_bpf.results import damo_reports as reports

    if args.png:
        check_replaceable(args.png)  # before the record is read
    records = load(args)
    if args.exclude_samples < 0:
        raise InvalidParamsError("--exclude_samples must not be negative")
    dists = reports.wss_dists(records, acc_thres=args.acc_thres, sz_thres=args.sz_thres,
                              exclude_samples=args.exclude_samples, sort=args.sortby == "size",
                              collapse_targets=not args.per_target)
    if args.png:
        if not any(dists.values()):
            raise InvalidParamsError(f"no snapshot left to draw (--exclude_samples {args.exclude_samples})")
        reports.plot_wss(dists, args.png, sorted_=args.sortby == "size")
        print(f"damon-bpf: wrote {args.png}", file=sys.stderr)
        return 0
    start, stop, step = args.range
    if step <= 0:
        raise InvalidParamsError("--range: the step must be positive")
    lines: list[str] = []
    for tid, d in dists.items():
        lines.append(f"# target_id\t{tid}")
        lines += reports.format_dists("wss", d, range(start, stop, step), all_values=args.all_wss,
                                      raw=args.raw_number, nr_cols_bar=args.nr_cols_bar)
    _write_lines(lines)
    nr = max(len(r.snapshots) for r in records)
    if nr <= args.exclude_samples:
        print(f"damon-bpf: note: the record has {nr} snapshots, all excluded by --exclude_samples "
              f"{args.exclude_samples}; try --exclude_samples 0", file=sys.stderr)
    return 0


# -- access --------------------------------------------------------------------------------------------------


def _access_args(p: argparse.ArgumentParser) -> None:
    _add_target(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--snapshot_idx", type=int, default=-1, metavar="N",
                   help="which snapshot of each target (negative: from the end; default -1, the last)")
    g.add_argument("--all", action="store_true", help="every snapshot")
    p.add_argument("--raw_number", action="store_true", help="sizes and times as plain numbers")


def _access_run(args: argparse.Namespace) -> int:
    from damon_bpf.results import damo_reports as reports

    records = load(args)
    _write_lines(reports.format_access(records, target_id=args.target,
                                       snapshot_idx=None if args.all else args.snapshot_idx, raw=args.raw_number))
    return 0


# -- raw -----------------------------------------------------------------------------------------------------


def _raw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "perf-script", "json"), default="text",
                   help="text: damo's raw form (default); perf-script: damon:damon_aggregated lines that damo "
                        "reads (damo's perf_script type); json: damo's record JSON")
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--raw_number", action="store_true", help="text: sizes and times as plain numbers")


def _raw_run(args: argparse.Namespace) -> int:
    import json

    from damon_bpf.results import damo_reports as reports

    if args.out:
        check_replaceable(args.out)  # before the record is read
    records = load(args)

    def write(out: TextIO) -> None:
        if args.format == "perf-script":
            write_perf_script(records, out)
        elif args.format == "json":
            json.dump(records_to_kvpairs(records), out, indent=4)
            out.write("\n")
        else:
            _write_lines(reports.format_raw(records, raw=args.raw_number), out)

    if not args.out:
        write(sys.stdout)
        return 0
    # a new file (0600) renamed over FILE: never written through a symlink, into a device or a folder
    with atomic_open(args.out) as f:
        text = io.TextIOWrapper(f, encoding="utf-8")
        try:
            write(text)
            text.flush()
        finally:
            text.detach()
    return 0


# -- info ----------------------------------------------------------------------------------------------------


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw_number", action="store_true", help="plain numbers")


def _info_run(args: argparse.Namespace) -> int:
    from damon_bpf.results import damo_reports as reports

    records = load(args)
    nr = sum(len(r.snapshots) for r in records)
    lines = reports.format_record_info(records, raw=args.raw_number)
    iv = next((r.intervals for r in records if r.intervals), None)
    if iv is not None:
        # damon-bpf's records keep the first intervals (damo's scale for every snapshot) and each snapshot's own
        # sampling interval, which changes when the session tunes its intervals
        samples = {s.sample_interval_us for r in records for s in r.snapshots if s.sample_interval_us}
        changed = (f" (sampling changed during the recording: {reports.fmt_time_ns(min(samples) * 1000)} to "
                   f"{reports.fmt_time_ns(max(samples) * 1000)})" if len(samples) > 1 and not iv.tuned else "")
        lines.append(f"intervals: sample {reports.fmt_time_ns(iv.sample_us * 1000)}, aggr "
                     f"{reports.fmt_time_ns(iv.aggr_us * 1000)}, update {reports.fmt_time_ns(iv.ops_update_us * 1000)}"
                     + (" (auto-tuned)" if iv.tuned else changed))
    lines.append(f"records: {len(records)}, snapshots: {nr}")
    _write_lines(lines)
    return 0


HEATMAP = SimpleNamespace(add_arguments=_heatmap_args, run=_heatmap_run)
WSS = SimpleNamespace(add_arguments=_wss_args, run=_wss_run)
ACCESS = SimpleNamespace(add_arguments=_access_args, run=_access_run)
RAW = SimpleNamespace(add_arguments=_raw_args, run=_raw_run)
INFO = SimpleNamespace(add_arguments=_info_args, run=_info_run)
