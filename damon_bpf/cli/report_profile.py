"""``damon-bpf report footprints|times|profile|nr_regions|holistic``: the reports of damo's profiling recipe.

They read a record and the files ``damon-bpf record --do_record ...`` (or ``damo record``) writes beside it
(:mod:`damon_bpf.results.profile`): ``footprints`` the memory footprints (``FILE.mem_footprint``), ``times``
the times of the snapshots with regions of an access pattern, ``profile`` the CPU profile (``FILE.profile``) of
those times, ``nr_regions`` the distribution of the number of regions, ``holistic`` all of it in one page (or
one picture, ``--png``). The text is damo 3.4.3's; the logic is in :mod:`damon_bpf.results.profile_reports`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from types import SimpleNamespace

from damon_bpf.cli import report as report_cli
from damon_bpf.config.units import text_to_bytes, text_to_percent, text_to_us
from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.linux.files import check_replaceable
from damon_bpf.results import profile_reports as reports
from damon_bpf.results.perfscript import perf_binary
from damon_bpf.results.profile import (MEM_FOOTPRINT_SUFFIX, PROFILE_SUFFIX, MemFootprint, read_mem_footprints,
                                       side_file)

__all__ = ("FOOTPRINTS", "TIMES", "PROFILE", "NR_REGIONS", "HOLISTIC")


def _write(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))


def _note(text: str) -> None:
    print(f"damon-bpf: note: {text}", file=sys.stderr)


def _percentiles(rng: list[int]) -> range:
    start, stop, step = rng
    if step <= 0:
        raise InvalidParamsError("--range: the step must be positive")
    return range(start, stop, step)


# -- footprints ------------------------------------------------------------------------------------------


def _footprints_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("metric", nargs="?", default="all", choices=(*reports.FOOTPRINT_METRICS, "all"),
                   help="vsz: the targets' virtual size; rss: their resident size; sys_used: the system's used "
                        "memory (MemTotal - MemFree); all (default)")
    p.add_argument("-i", "--input", default="damon.data", metavar="FILE",
                   help=f"the record or its memory footprints (default damon.data: damon.data{MEM_FOOTPRINT_SUFFIX})")
    p.add_argument("-r", "--range", nargs=3, type=int, default=[0, 101, 25], metavar=("START", "STOP", "STEP"),
                   help="percentiles to print (default 0 101 25)")
    p.add_argument("-s", "--sortby", choices=("size", "time"), default="size",
                   help="size: percentiles (default); time: in recording order (with --all_footprint)")
    p.add_argument("--all_footprint", action="store_true", help="print every sample instead of percentiles")
    p.add_argument("--raw_number", action="store_true", help="sizes in bytes")
    p.add_argument("--nr_cols_bar", type=int, default=59, metavar="N", help="bar width (default 59; 0: none)")


def _load_footprints(path: str) -> list[MemFootprint]:
    fp = side_file(path, MEM_FOOTPRINT_SUFFIX)
    if not os.path.lexists(fp):
        raise InvalidParamsError(f"{fp}: no such file (damon-bpf record writes it unless --do_record leaves "
                                 "mem_footprint out)")
    return read_mem_footprints(fp)


def _footprints_run(args: argparse.Namespace) -> int:
    snaps = _load_footprints(args.input)
    metrics = reports.FOOTPRINT_METRICS if args.metric == "all" else (args.metric,)
    _write(reports.format_footprints(snaps, metrics, _percentiles(args.range), sort=args.sortby == "size",
                                     all_values=args.all_footprint, raw=args.raw_number,
                                     nr_cols_bar=args.nr_cols_bar))
    return 0


# -- times and profile -------------------------------------------------------------------------------------


def _filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("access pattern (damo's filter options; a snapshot counts when one of its regions "
                             "passes)")
    g.add_argument("--sz_region", nargs=2, metavar=("MIN", "MAX"), help="region size, e.g. 4KiB max")
    g.add_argument("--access_rate", nargs=2, metavar=("MIN", "MAX"), help="access rate in percent, e.g. 50%% 100%%")
    g.add_argument("--age", nargs=2, metavar=("MIN", "MAX"),
                   help="age, a time with its unit (e.g. 1s max; a bare number is in us, as damo parses it)")
    g.add_argument("--address", nargs=2, action="append", metavar=("START", "END"),
                   help="address range (0x... or a size such as 4GiB); repeatable")


def _percent(text: str) -> float:
    t = text.strip().lower()
    return 0.0 if t == "min" else math.inf if t == "max" else float(text_to_percent(text))


def _addr(text: str) -> int:
    t = text.strip()
    return int(t, 16) if t.lower().startswith("0x") else text_to_bytes(t)


def _region_filter(args: argparse.Namespace) -> reports.RegionFilter:
    f = reports.RegionFilter()
    if args.sz_region:
        f.sz_bytes = (text_to_bytes(args.sz_region[0]), text_to_bytes(args.sz_region[1]))
    if args.access_rate:
        f.access_rate_pct = (_percent(args.access_rate[0]), _percent(args.access_rate[1]))
    if args.age:
        f.age_us = (text_to_us(args.age[0]), text_to_us(args.age[1]))
    if args.address:
        f.addresses = [(_addr(a), _addr(b)) for a, b in args.address]
    return f


def _times_args(p: argparse.ArgumentParser) -> None:
    _filter_args(p)


def _times_run(args: argparse.Namespace) -> int:
    records = report_cli.load(args)
    times = reports.snapshot_times(records, _region_filter(args))
    if not times:
        _note("no snapshot has a region of this access pattern")
    _write(reports.format_times(times))
    return 0


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", metavar="FILE", help=f"the CPU profile (default INPUT{PROFILE_SUFFIX})")
    p.add_argument("--perf_path", metavar="PATH", help="the perf to read it with (default $PERF or perf)")
    _filter_args(p)


def _profile_run(args: argparse.Namespace) -> int:
    records = report_cli.load(args)
    profile = args.profile or args.input + PROFILE_SUFFIX
    perf = perf_binary(args.perf_path)
    times = reports.snapshot_times(records, _region_filter(args))
    if not times:
        raise InvalidParamsError("no snapshot has a region of this access pattern: no time to profile")
    _write(reports.perf_report(profile, perf, times=times))
    return 0


# -- nr_regions --------------------------------------------------------------------------------------------


def _nr_regions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--range", nargs=3, type=int, metavar=("START", "STOP", "STEP"),
                   help="percentiles to print (default 0 25 50 75 100)")
    p.add_argument("-s", "--sortby", choices=("size", "time"), default="size",
                   help="size: percentiles (default); time: in recording order")
    p.add_argument("--exclude_samples", type=int, default=20, metavar="N",
                   help="leave out the first N snapshots of each target (default 20, as damo); a target with no "
                        "more than N is counted whole (damo fails on it), with a note")


def _nr_regions_run(args: argparse.Namespace) -> int:
    if args.exclude_samples < 0:
        raise InvalidParamsError("--exclude_samples must not be negative")
    records = report_cli.load(args)
    nr = reports.nr_regions_dists(records, exclude_samples=args.exclude_samples, sort=args.sortby == "size")
    pcts = _percentiles(args.range) if args.range else [0, 25, 50, 75, 100]
    _write(reports.format_nr_regions(nr, pcts))
    for n in nr.notes:
        _note(n)
    return 0


# -- holistic ----------------------------------------------------------------------------------------------


def _holistic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", "--access_pattern", default="damon.data", metavar="FILE", dest="input",
                   help="the record (default damon.data)")
    p.add_argument("--footprints", metavar="FILE", help=f"memory footprints (default INPUT{MEM_FOOTPRINT_SUFFIX})")
    p.add_argument("--profile", metavar="FILE", help=f"CPU profile (default INPUT{PROFILE_SUFFIX})")
    p.add_argument("--perf_path", metavar="PATH", help="the perf to read the profile with (default $PERF or perf)")
    p.add_argument("--resol", nargs=2, type=int, metavar=("ROWS", "COLS"),
                   help="heatmap time rows and address columns (default 5 80; 300 400 for --png)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the heatmaps (default: when writing to a terminal)")
    p.add_argument("--png", metavar="FILE",
                   help="draw one picture instead, to exactly FILE: the heatmap of the largest target above its "
                        "working set size, RSS, virtual size and the system's used memory over time; needs "
                        "matplotlib")


def _holistic_run(args: argparse.Namespace) -> int:
    if args.png:
        check_replaceable(args.png)
    records = report_cli.load(args)
    notes: list[str] = []
    footprints: list[MemFootprint] | None = None
    fp_path = args.footprints or args.input + MEM_FOOTPRINT_SUFFIX
    if args.footprints or os.path.lexists(fp_path):
        footprints = read_mem_footprints(fp_path)
    else:
        notes.append(f"no memory footprints: {fp_path} does not exist (record with --do_record mem_footprint)")
    if args.png:
        resol = tuple(args.resol) if args.resol else (300, 400)
        reports.plot_holistic(records, footprints, args.png, resol=(resol[0], resol[1]))
        print(f"damon-bpf: wrote {args.png}", file=sys.stderr)
        for n in notes:
            _note(n)
        return 0
    hotspots: list[str] | None = None
    prof = args.profile or args.input + PROFILE_SUFFIX
    if args.profile or os.path.lexists(prof):
        try:
            # damo shows the 16 lines after perf's 5-line preamble
            hotspots = reports.perf_report(prof, perf_binary(args.perf_path))[5:21]
        except DamonBpfError as err:
            if args.profile:
                raise
            notes.append(f"no hotspot functions: {err}")
    else:
        notes.append(f"no hotspot functions: {prof} does not exist (record with --do_record cpu_profile)")
    color = args.color == "always" or (args.color == "auto" and not os.environ.get("NO_COLOR") and sys.stdout.isatty())
    colorset = "gray" if color else None
    resol = tuple(args.resol) if args.resol else (5, 80)
    _write(reports.format_holistic(records, footprints, hotspots, resol=(resol[0], resol[1]), colorset=colorset,
                                   notes=notes))
    return 0


FOOTPRINTS = SimpleNamespace(add_arguments=_footprints_args, run=_footprints_run)
TIMES = SimpleNamespace(add_arguments=_times_args, run=_times_run)
PROFILE = SimpleNamespace(add_arguments=_profile_args, run=_profile_run)
NR_REGIONS = SimpleNamespace(add_arguments=_nr_regions_args, run=_nr_regions_run)
HOLISTIC = SimpleNamespace(add_arguments=_holistic_args, run=_holistic_run)
