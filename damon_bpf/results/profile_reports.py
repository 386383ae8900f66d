"""The reports of damo's profiling recipe: memory footprints, snapshot times, region counts, the CPU profile of
chosen times, and the holistic summary of them all.

damon-bpf's counterparts of damo 3.4.3's ``damo_report_footprint.py`` (``report footprints``),
``damo_report_times.py`` (``times``), ``damo_report_profile.py`` (``profile``), ``damo_nr_regions.py``
(``nr_regions``) and ``damo_report_holistic.py`` (``holistic``). The text is damo's where damo's works; where
damo fails on a short record (``nr_regions`` leaves out the first 20 snapshots of each target and then
divides by zero) these reports use every snapshot of such a target and say so (:attr:`NrRegions.notes`).
The side files are read with :mod:`damon_bpf.results.profile`.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from damon_bpf.config.units import U64_MAX, format_bytes
from damon_bpf.errors import InvalidParamsError, MissingDependencyError
from damon_bpf.linux.files import save_figure
from damon_bpf.results.damo_reports import (draw_heatmap, format_dists, format_heatmap, guides, heatmap, pyplot,
                                            wss_dists)
from damon_bpf.results.profile import MemFootprint
from damon_bpf.results.records import DAMO_SKIPPED_SNAPSHOTS, Record, RecordSnapshot

__all__ = (
    "FOOTPRINT_METRICS",
    "RegionFilter",
    "footprint_dists",
    "format_footprints",
    "snapshot_times",
    "format_times",
    "NrRegions",
    "nr_regions_dists",
    "format_nr_regions",
    "perf_report",
    "format_holistic",
    "plot_holistic",
)

#: ``damo report footprints`` metrics: summed virtual size and resident size of the targets, the system's used
#: memory (``MemTotal - MemFree``)
FOOTPRINT_METRICS = ("vsz", "rss", "sys_used")

#: the most perf report text read (the top of the report is what is shown)
_MAX_PERF_REPORT_BYTES = 4 << 20


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4096


# -- footprints ------------------------------------------------------------------------------------------


def footprint_dists(snaps: Sequence[MemFootprint], metric: str, *, sort: bool = True,
                    page_size: int | None = None) -> list[int]:
    """One value per sample, as damo's ``damo_report_footprint.get_dists``: ``vsz`` and ``rss`` sum the
    targets' ``size`` and ``resident`` pages, ``sys_used`` is ``(total - free)`` KiB of the system, in bytes.

    :param page_size: bytes per page of ``statm`` (default this machine's; damo assumes 4096)
    """
    if metric not in FOOTPRINT_METRICS:
        raise InvalidParamsError(f"unknown footprint metric {metric!r} (choose from {', '.join(FOOTPRINT_METRICS)})")
    ps = page_size or _page_size()
    out = []
    for s in snaps:
        if metric == "sys_used":
            v = (s.sys["total"] - s.sys["free"]) * 1024 if s.sys is not None else 0
        else:
            key = "size" if metric == "vsz" else "resident"
            v = sum(fp[key] for fp in s.procs.values()) * ps
        out.append(int(v))
    if sort:
        out.sort()
    return out


def format_footprints(snaps: Sequence[MemFootprint], metrics: Iterable[str], percentiles: Iterable[int], *,
                      sort: bool = True, all_values: bool = False, raw: bool = False,
                      nr_cols_bar: int = 59) -> list[str]:
    """damo's ``report footprints`` text: one percentile block per metric."""
    pcts = list(percentiles)
    lines: list[str] = []
    for m in metrics:
        lines += format_dists(m, footprint_dists(snaps, m, sort=sort), pcts, all_values=all_values, raw=raw,
                              nr_cols_bar=nr_cols_bar)
    return lines


# -- region filters, times ---------------------------------------------------------------------------------


@dataclass
class RegionFilter:
    """damo's access-pattern filter of ``report times``/``profile`` (``--sz_region``, ``--access_rate``,
    ``--age``, ``--address``; ``_damo_records.region_of_pattern``): a region passes when its size, access rate
    (percent of the record's ``aggr/sample``) and age (µs: aggregation intervals × ``aggr_us``) lie within the
    bounds, ends included, and it overlaps one of the address ranges (when any are given). Without intervals
    only the size and the addresses are checked, as damo does."""

    sz_bytes: tuple[int, int] = (0, U64_MAX)
    access_rate_pct: tuple[float, float] = (0.0, math.inf)
    age_us: tuple[int, int] = (0, U64_MAX)
    addresses: list[tuple[int, int]] = field(default_factory=list)

    def passing(self, rec: Record, snap: RecordSnapshot) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which regions of *snap* pass."""
        sz = snap.sizes
        ok = (sz >= self.sz_bytes[0]) & (sz <= self.sz_bytes[1])
        if self.addresses:
            inside = np.zeros(snap.nr_regions, bool)
            for a, b in self.addresses:
                inside |= (snap.start < b) & (snap.end > a)
            ok &= inside
        if rec.intervals is not None:
            pct = snap.nr_accesses * 100.0 / max(1, rec.intervals.max_nr_accesses)
            age_us = snap.age.astype(np.float64) * rec.intervals.aggr_us
            ok &= (pct >= self.access_rate_pct[0]) & (pct <= self.access_rate_pct[1])
            ok &= (age_us >= self.age_us[0]) & (age_us <= self.age_us[1])
        result: np.ndarray[Any, np.dtype[np.bool_]] = ok
        return result


def snapshot_times(records: Sequence[Record], flt: RegionFilter | None = None) -> list[tuple[int, int]]:
    """The time ranges (epoch ns) of the snapshots with a region that passes *flt* (any region without one),
    consecutive snapshots joined, as damo's ``report times``: records in order, a snapshot joining the last
    range when it starts where that one ends."""
    times: list[list[int]] = []
    for rec in records:
        for snap in rec.snapshots:
            if not snap.nr_regions:
                continue
            if flt is not None and not flt.passing(rec, snap).any():
                continue
            if times and times[-1][1] == snap.start_time:
                times[-1][1] = snap.end_time
            else:
                times.append([snap.start_time, snap.end_time])
    return [(a, b) for a, b in times]


def format_times(times: Sequence[tuple[int, int]]) -> list[str]:
    """damo's ``report times`` text: ``START-END`` in seconds, then ``# (seconds)``, for each range."""
    lines = []
    for a, b in times:
        # int / int, as damo divides: correctly rounded (a float of the ns first would round twice)
        lines.append("%f-%f" % (int(a) / 1_000_000_000, int(b) / 1_000_000_000))
        lines.append("# (seconds)")
    return lines


# -- nr_regions ------------------------------------------------------------------------------------------


@dataclass
class NrRegions:
    """Region counts per target (damo's ``report nr_regions``).

    :ivar dists: target id -> the number of regions of each snapshot counted
    :ivar notes: one line each about targets whose snapshots were all counted: damo leaves out the first
        snapshots, and fails when none is left
    """

    dists: dict[int, list[int]]
    notes: list[str] = field(default_factory=list)


def nr_regions_dists(records: Sequence[Record], *, exclude_samples: int = DAMO_SKIPPED_SNAPSHOTS,
                     sort: bool = True) -> NrRegions:
    """The number of regions of each snapshot per record (target), leaving out its first *exclude_samples*
    snapshots (damo's 20: DAMON's regions are still adapting) unless that leaves none: then all of them count
    and a note says so."""
    out = NrRegions({})
    for rec in records:
        snaps = rec.snapshots[exclude_samples:]
        if not snaps and rec.snapshots:
            snaps = rec.snapshots
            out.notes.append(f"target {rec.target_id}: {len(rec.snapshots)} snapshots, not more than "
                             f"{exclude_samples}: all of them counted (damo's nr_regions fails on this record)")
        d = [s.nr_regions for s in snaps]
        if sort:
            d.sort()
        out.dists.setdefault(rec.target_id, []).extend(d)
    return out


def format_nr_regions(nr: NrRegions, percentiles: Iterable[int]) -> list[str]:
    """damo's ``report nr_regions`` text."""
    pcts = list(percentiles)
    lines = ["# <percentile> <# regions>"]
    for tid, d in nr.dists.items():
        lines.append(f"# target_id\t{tid}")
        if not d:
            lines.append("# no snapshot")
            continue
        lines.append("# avr:\t%d" % (sum(d) / len(d)))
        for p in pcts:
            i = min(int(p / 100.0 * len(d)), len(d) - 1)
            lines.append("%d\t%d" % (p, d[i]))
    return lines


# -- perf ---------------------------------------------------------------------------------------------------


def perf_report(profile: str, perf: str, *, times: Sequence[tuple[int, int]] | None = None) -> list[str]:
    """``perf report --stdio`` of *profile* (``FILE.profile``), of the samples within *times* (epoch ns; the
    profile's clock is the wall clock) when given: its first :data:`_MAX_PERF_REPORT_BYTES` as lines.

    :raises InvalidParamsError: *profile* is missing or perf cannot read it (perf's last message)
    :raises MissingDependencyError: perf cannot be run
    """
    if not os.path.isfile(profile):
        raise InvalidParamsError(f"{profile}: no such file (record with --do_record cpu_profile, which needs perf)")
    args = [perf, "report", "-i", profile, "--stdio"]
    if times:
        # one --time with every range, space-separated (perf report takes only the last of several --time)
        args += ["--time", " ".join("%.6f,%.6f" % (a / 1e9, b / 1e9) for a, b in times)]
    try:
        with tempfile.TemporaryFile() as err_f:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err_f, stdin=subprocess.DEVNULL)
            assert proc.stdout is not None
            with proc.stdout:
                out = proc.stdout.read(_MAX_PERF_REPORT_BYTES)
                cut = bool(proc.stdout.read(1))
            if cut:
                proc.kill()
            proc.wait()
            err_f.seek(0)
            err = err_f.read().decode(errors="replace")
    except OSError as err_:
        raise MissingDependencyError(f"cannot run {perf}: {err_.strerror}") from err_
    text = out.decode(errors="replace")
    if proc.returncode != 0 and not cut:
        last = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise InvalidParamsError(f"perf cannot read {profile}: {last[-1] if last else f'status {proc.returncode}'}")
    lines = text.split("\n")
    if cut:
        lines = lines[:-1]
    return lines


# -- holistic -----------------------------------------------------------------------------------------------


def _wss_for_holistic(records: Sequence[Record]) -> list[int]:
    # damo: the first 20 snapshots skipped only when there are more than 200 in all
    nr = sum(len(r.snapshots) for r in records)
    skip = DAMO_SKIPPED_SNAPSHOTS if nr > 200 else 0
    return wss_dists(records, exclude_samples=skip, sort=True, collapse_targets=True)[0]


def _pct(d: Sequence[int], p: int) -> str:
    if not d:
        return "-"
    return format_bytes(d[min(int(p / 100.0 * len(d)), len(d) - 1)])


def format_holistic(records: Sequence[Record], footprints: Sequence[MemFootprint] | None,
                    hotspots: Sequence[str] | None, *, resol: tuple[int, int] = (5, 80),
                    colorset: str | None = None, notes: Sequence[str] = ()) -> list[str]:
    """damo's short ``report holistic``: a heatmap of every contiguous block of every target, the
    distributions of the working set size and the memory footprints, and the hottest functions of the CPU
    profile (*hotspots*: the ``perf report`` lines; None: no profile). *notes* are printed as ``#`` lines where
    a part is missing."""
    lines = ["# Heatmap"]
    for g in guides(records):
        for b in g.blocks:
            lines.append("# target %d, address range %d-%d" % (g.target_id, b.start, b.end))
            try:
                hm = heatmap(records, target_id=g.target_id, address_ranges=[(b.start, b.end)], resol=resol,
                             time_range=(g.start_time, g.end_time))
            except InvalidParamsError as err:
                lines.append(f"# (not drawn: {err})")
                continue
            lines += format_heatmap(hm, base_ns=g.start_time, colorset=colorset, show_colorset=False)
    lines.append("")
    lines.append("# Memory Footprints Distribution")
    lines.append("%10s %15s %15s %15s %15s %15s" % ("percentile", "0", "25", "50", "75", "100"))
    rows: list[tuple[str, list[int]]] = [("wss", _wss_for_holistic(records))]
    if footprints is not None:
        rows += [(m, footprint_dists(footprints, m)) for m in ("rss", "vsz", "sys_used")]
    for name, d in rows:
        lines.append("%10s " % name + "".join("%15s " % _pct(d, p) for p in range(0, 101, 25)))
    lines += [f"# {n}" for n in notes]
    if hotspots is not None:
        lines.append("")
        lines.append("# Hotspot functions")
        lines += list(hotspots)
    return lines


def plot_holistic(records: Sequence[Record], footprints: Sequence[MemFootprint] | None, path: str, *,
                  target_id: int | None = None, resol: tuple[int, int] = (300, 400)) -> None:
    """Draw the holistic picture to exactly *path* (format from its suffix, PNG for any other; written as
    :func:`damon_bpf.linux.files.save_figure` does): the access heatmap of one target (default the largest;
    every contiguous block side by side, gaps skipped) above the memory of the same time span: the working
    set size of each snapshot (all targets) and, with *footprints*, the targets' RSS and virtual size and the
    system's used memory, on one time axis (seconds from the record's start).

    :raises MissingDependencyError: matplotlib is not installed
    :raises DamonBpfError: *path* cannot be written
    """
    plt = pyplot()
    hm = heatmap(records, target_id=target_id, resol=resol)
    base = min(r.snapshots[0].start_time for r in records if r.snapshots)
    # a narrow third column holds the colour bar, so that both panels keep one time axis of the same width
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), dpi=100, sharex="col",
                             gridspec_kw={"height_ratios": [3, 2], "width_ratios": [40, 1]})
    (ax_h, ax_cb), (ax_m, ax_none) = axes
    ax_none.axis("off")
    im = draw_heatmap(ax_h, hm, base_ns=base)
    fig.colorbar(im, cax=ax_cb, label=f"access frequency ({hm.unit})")
    ax_h.set_ylabel("address (gaps skipped)" if len(hm.ranges) > 1 else "address")
    ax_h.set_title(f"access heatmap, target {hm.target_id}")
    # working set size per snapshot end, summed over targets
    wss: dict[int, int] = {}
    for rec in records:
        for snap in rec.snapshots:
            if snap.nr_regions:
                wss[snap.end_time] = wss.get(snap.end_time, 0) + int(snap.sizes[snap.nr_accesses >= 1].sum())
    mib = float(1 << 20)
    if wss:
        ts = sorted(wss)
        ax_m.plot([(t - base) / 1e9 for t in ts], [wss[t] / mib for t in ts], label="wss", linewidth=1)
    if footprints:
        ft = [(s.time * 1e9 - base) / 1e9 for s in footprints]
        for m in ("rss", "vsz", "sys_used"):
            ax_m.plot(ft, [v / mib for v in footprint_dists(footprints, m, sort=False)], label=m, marker=".",
                      linewidth=1)
    ax_m.set_xlabel("time (s)")
    ax_m.set_ylabel("memory (MiB)")
    ax_m.set_ylim(bottom=0)
    ax_m.grid(alpha=0.3)
    ax_m.legend(loc="best", fontsize=8)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)

