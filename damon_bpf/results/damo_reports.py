"""Reports on recorded monitoring results: heatmap, working set sizes, snapshots, raw regions, pictures.

The counterparts of damo's ``report heatmap`` (``src/damo_report_heatmap.py``), ``report wss``
(``src/damo_wss.py``, ``src/_damo_dist.py``), ``report access`` (``src/damo_report_access.py``), its
``--raw_form``, and ``report record_info`` (``src/damo_report_record_info.py``), computed from
:class:`damon_bpf.results.records.Record` lists. Text output follows damo's layout (the ``# access_frequency``,
``# x-axis``, ``# y-axis`` and ``# resolution`` lines, the ``# <percentile> <wss>`` tables, the raw region
table), so damo users read it the same way. Functions return lines; nothing here prints.

Pictures (:func:`plot_heatmap`, :func:`plot_wss`; :func:`draw_heatmap` for other figures) need matplotlib (the
``plot`` extra); it is imported only when a picture is asked for, with the Agg backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import InvalidParamsError, MissingDependencyError
from damon_bpf.linux.files import save_figure
from damon_bpf.results.records import Record, RecordSnapshot
from damon_bpf.config.units import format_bytes

__all__ = (
    "Block",
    "Guide",
    "Heatmap",
    "guides",
    "select_target",
    "heatmap",
    "format_heatmap",
    "wss_dists",
    "format_dists",
    "format_access",
    "format_raw",
    "format_record_info",
    "plot_heatmap",
    "plot_wss",
    "pyplot",
    "draw_heatmap",
    "COLORSETS",
)

U64_MAX = 2**64 - 1

# -- damo's number formats (src/_damo_fmt_str.py), reproduced exactly for damo-identical text --------------


def fmt_sz_accurate(sz: float, raw: bool = False) -> str:
    """damo's ``format_sz_accurate``: ``4.000000 GiB``."""
    if raw:
        return "%d" % sz
    sz = float(sz)
    for shift, unit in ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if sz > 1 << shift:
            return "%f %s" % (sz / (1 << shift), unit)
    return "%d B" % sz


_NS = {"us": 1000, "ms": 1000_000, "s": 1000_000_000, "m": 60_000_000_000, "h": 3600_000_000_000}


def fmt_time_ns(t: float, raw: bool = False) -> str:
    """damo's ``format_time_ns``: ``5.121 s``, ``2 m 5.849 s``, ``100 ms``."""
    if raw:
        return "%d" % t
    t = float(t)
    sign = ""
    if t < 0:
        sign, t = "-", -t
    if t >= _NS["h"]:
        hours = int(t / _NS["h"])
        rest = t - hours * _NS["h"]
        return f"{sign}{hours} h" if rest == 0 else f"{sign}{hours} h {fmt_time_ns(rest)}"
    if t >= _NS["m"]:
        if t % _NS["m"] == 0:
            return "%s%d m" % (sign, t / _NS["m"])
        if t % _NS["s"] == 0:
            return "%s%d m %d s" % (sign, t / _NS["m"], (t % _NS["m"]) / _NS["s"])
        return "%s%d m %.3f s" % (sign, t / _NS["m"], (t % _NS["m"]) / _NS["s"])
    for unit in ("s", "ms", "us"):
        if t >= _NS[unit]:
            if t % _NS[unit] == 0:
                return "%s%d %s" % (sign, t / _NS[unit], unit)
            return "%s%.3f %s" % (sign, t / _NS[unit], unit)
    return "%s%d ns" % (sign, t)


def fmt_hz(hz: float) -> str:
    """damo's ``format_hz``."""
    if hz < 10 and hz != 0:
        return "%.3f hz" % hz
    return "{:,} hz".format(int(hz))


#: damo's terminal colour sets (``src/_damo_ascii_color.py``): background and foreground 256-colour codes
COLORSETS: dict[str, tuple[list[int], list[int]]] = {
    "gray": ([232] * 10, [237, 239, 241, 243, 245, 247, 249, 251, 253, 255]),
    "flame": ([232, 1, 1, 2, 3, 3, 20, 21, 26, 27], [239, 235, 237, 239, 243, 245, 247, 249, 251, 255]),
    "emotion": ([232, 234, 20, 21, 26, 2, 3, 1, 1, 1], [239, 235, 237, 239, 243, 245, 247, 249, 251, 255]),
}
_RESET = "\x1b[0m"


def _color(colorset: str, level: int) -> str:
    bg, fg = COLORSETS[colorset]
    return f"\x1b[48;5;{bg[level]}m\x1b[38;5;{fg[level]}m"


# -- guides: targets, time spans and contiguous address blocks (damo_report_record_info.get_guide_info) ---------


@dataclass
class Block:
    """A contiguous monitored address range: the union of regions over the snapshots, split at the gaps (as
    damo finds them, see :func:`guides`). ``heat`` sums ``size × samples`` of the accessed regions touching it
    (damo's ``heats``)."""

    start: int
    end: int
    heat: float = 0.0

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def heat_per_byte(self) -> float:
        return self.heat / self.size if self.size else 0.0


@dataclass
class Guide:
    target_id: int
    pid: int | None
    start_time: int  # the oldest monitored time: the first snapshot's start back-dated by the oldest age
    end_time: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def total_space(self) -> int:
        return sum(b.size for b in self.blocks)


def _gaps(snap: RecordSnapshot) -> list[tuple[int, int]]:
    if snap.nr_regions < 2:
        return []
    idx = np.nonzero(snap.end[:-1] != snap.start[1:])[0]
    return [(int(snap.end[i]), int(snap.start[i + 1])) for i in idx]


def _narrow_gaps(old: list[tuple[int, int]], new: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # damo's overlapping_regions(), not an intersection: each old gap is narrowed by every new gap it touches
    # (ends included) and kept even when none does
    out = []
    for lo, hi in old:
        for nlo, nhi in new:
            if not (hi < nlo or nhi < lo):
                lo, hi = max(lo, nlo), min(hi, nhi)
        out.append((lo, hi))
    return out


def _oldest_time(rec: Record, snap: RecordSnapshot) -> int:
    if rec.intervals is None or snap.nr_regions == 0:
        return snap.start_time
    return int(snap.start_time - max(0, int(snap.age.max())) * rec.intervals.aggr_us * 1000)


def guides(records: Sequence[Record]) -> list[Guide]:
    """Per target: its time span and contiguous address blocks, largest total space first, as damo's
    ``get_guide_info``: the span runs from the first snapshot (empty or not) to the last one's end; the gaps
    are those of the snapshots since the last one without any, each narrowed by the later gaps it touches;
    a block's heat sums ``size × samples`` of every accessed region touching it (ends included)."""
    by_tid: dict[int, list[Record]] = {}
    for rec in records:
        if rec.snapshots:
            by_tid.setdefault(rec.target_id, []).append(rec)
    out = []
    for tid, recs in by_tid.items():
        lo, hi = None, None
        gaps: list[tuple[int, int]] = []
        start_time = end_time = None
        for rec in recs:
            for snap in rec.snapshots:
                if start_time is None:
                    start_time = _oldest_time(rec, snap)
                end_time = snap.end_time
                if snap.nr_regions:
                    s0, e0 = int(snap.start.min()), int(snap.end.max())
                    lo = s0 if lo is None else min(lo, s0)
                    hi = e0 if hi is None else max(hi, e0)
                g = _gaps(snap)
                gaps = _narrow_gaps(gaps, g) if gaps else g
        if lo is None or hi is None or start_time is None or end_time is None:
            continue  # no snapshot with regions: nothing to show (damo fails on it)
        edges = [lo] + [x for gap in gaps for x in gap] + [hi]
        blocks = [Block(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
        heats: list[int | None] = [None] * len(blocks)
        for rec in recs:
            for snap in rec.snapshots:
                if not snap.nr_regions:
                    continue
                w = snap.sizes * snap.nr_accesses
                hot = snap.nr_accesses != 0
                for i, b in enumerate(blocks):
                    m = hot & (snap.end >= b.start) & (snap.start <= b.end)
                    if m.any():
                        heats[i] = (heats[i] or 0) + sum(w[m].tolist())
        for b, h in zip(blocks, heats):
            b.heat = float(h or 0)
        out.append(Guide(tid, next((r.pid for r in recs if r.pid is not None), None), start_time, end_time, blocks))
    out.sort(key=lambda g: g.total_space, reverse=True)
    return out


def select_target(records: Sequence[Record], target_id: int | None = None) -> tuple[list[Record], Guide]:
    """The records of one target (default: the one with the largest monitored space, as damo picks) and its
    guide.

    :raises InvalidParamsError: no snapshot with regions, or no such target
    """
    gs = guides(records)
    if not gs:
        raise InvalidParamsError("the record has no snapshot with regions")
    if target_id is None:
        g = gs[0]
    else:
        match = [x for x in gs if x.target_id == target_id]
        if not match:
            raise InvalidParamsError(f"no target {target_id} in the record (targets: "
                                     f"{', '.join(str(x.target_id) for x in gs)})")
        g = match[0]
    return [r for r in records if r.target_id == g.target_id], g


def base_time(records: Sequence[Record]) -> int:
    """The first snapshot's start time: report times are relative to it."""
    times = [r.snapshots[0].start_time for r in records if r.snapshots]
    if not times:
        raise InvalidParamsError("the record has no snapshot")
    return min(times)


# -- heatmap ----------------------------------------------------------------------------------------------


@dataclass
class Heatmap:
    """Heat (access frequency × time × space, averaged over each pixel) of one target.

    The grid is damo's: ``rows`` pixels of ``(t1 - t0) // rows`` ns from ``t0``, and per address range
    ``[a, b)`` with ``n`` columns, ``n`` pixels of ``(b - a) // n`` bytes from ``a``. Several ranges are laid
    side by side along the columns (the gaps between them skipped).

    :ivar pixels: ``rows × cols`` (time × address, the oldest row first); NaN where nothing was monitored
    :ivar columns: per range, ``(start address, bytes per column, number of columns)``
    """

    target_id: int
    time_start: int
    time_unit: int
    ranges: list[tuple[int, int]]
    columns: list[tuple[int, int, int]]
    pixels: npt.NDArray[np.float64]
    unit: str  # "hz", or "samples" for records without intervals

    @property
    def time_range(self) -> tuple[int, int]:
        return self.time_start, self.time_start + self.time_unit * self.pixels.shape[0]

    @property
    def space(self) -> int:
        """Bytes shown along the address axis."""
        return sum(u * n for _, u, n in self.columns)

    def heat_range(self) -> tuple[float, float] | None:
        ok = ~np.isnan(self.pixels)
        if not ok.any():
            return None
        return float(self.pixels[ok].min()), float(self.pixels[ok].max())


def _split_columns(ranges: list[tuple[int, int]], cols: int, weights: Sequence[float] | None) -> list[int]:
    # columns per range: proportional to the weights (default: sizes), at least 1/50 of them each
    if len(ranges) == 1:
        return [cols]
    floor = max(1, cols // 50)
    if cols < floor * len(ranges):
        raise InvalidParamsError(f"{cols} columns cannot show {len(ranges)} address ranges")
    w = np.array(weights if weights is not None else [b - a for a, b in ranges], np.float64)
    share = w / w.sum() * (cols - floor * len(ranges))
    ncols = (np.floor(share).astype(int) + floor).tolist()
    for i in np.argsort(-(share - np.floor(share)))[: cols - sum(ncols)]:
        ncols[int(i)] += 1
    return [int(n) for n in ncols]


def _pixel_idx(x: npt.NDArray[np.int64], unit: int) -> npt.NDArray[np.int64]:
    # damo's pixel index, int((x - start) / unit): a float division truncated toward zero. *x* is already
    # relative to the map's start, in integers: epoch nanoseconds (~1.8e18) as float64 are off by up to 128 ns,
    # enough to move a time to the next row or a heat in the third decimal.
    return np.trunc(x / unit).astype(np.int64)


def _add_snapshot_heat(heat: npt.NDArray[np.float64], reached: npt.NDArray[np.bool_], snap: RecordSnapshot,
                       hz: npt.NDArray[np.float64], obs: npt.NDArray[np.int64], obs_heat: npt.NDArray[np.int64],
                       end: int, tu: int, col0: int, a: int, u: int, n: int) -> None:
    """Add one snapshot's regions to the pixels of one address range (columns ``col0..col0+n``), as damo's
    ``HeatMap.add_heat``, float operation for float operation.

    Times are relative to the map's start. *obs* is when each region's observation began (for the rows it
    reaches), *obs_heat* the same for the accounted time (they differ only without intervals, as in damo).
    damo updates a pixel per region as ``heat = (hz * time * bytes + heat * area) / area``; that is not
    associative, so a pixel several regions reach in one snapshot gets them in address order: the (region,
    column) pairs are ranked within their column and applied rank by rank, the deep ranks of a few crowded
    columns (many small regions under one pixel) one by one.
    """
    rows = heat.shape[0]
    starts, ends = snap.start, snap.end
    inr = np.nonzero(~((ends < a) | (a + u * n < starts)))[0]
    if not inr.size:
        return
    r0 = np.maximum(_pixel_idx(obs[inr], tu), 0)
    r1 = min(int(end / tu), rows - 1)
    c0 = np.maximum(_pixel_idx(starts[inr] - a, u), 0)
    c1 = np.minimum(_pixel_idx(ends[inr] - a, u), n - 1)
    ok = (r0 <= r1) & (c0 <= c1)
    inr, r0, c0, c1 = inr[ok], r0[ok], c0[ok], c1[ok]
    if not inr.size:
        return
    # one entry per (region, column) pair, by column, then by address
    cnt = c1 - c0 + 1
    reg = np.repeat(np.arange(inr.size), cnt)
    col = np.repeat(c0 - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
    order = np.lexsort((reg, col))
    reg, col = reg[order], col[order]
    rank = np.arange(col.size) - np.searchsorted(col, col)
    lo = int(r0.min())
    rr = np.arange(lo, r1 + 1)
    i = inr[reg]
    at = np.minimum(end, (rr + 1) * tu)[:, None] - np.maximum(obs_heat[i][None, :], (rr * tu)[:, None])
    px0 = a + col * u
    sz = np.minimum(ends[i], px0 + u) - np.maximum(starts[i], px0)
    c = hz[i][None, :] * at * sz[None, :]  # damo's heat_val * account_time * account_sz, in that order
    m = rr[:, None] >= r0[reg][None, :]
    cols = col + col0
    ri, pi = np.nonzero(m)
    reached[lo + ri, cols[pi]] = True
    area = float(tu * u)
    counts = np.bincount(rank)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    k = 0
    while k < counts.size and counts[k] * rr.size >= 64:
        sel = by_rank[bounds[k]:bounds[k + 1]]
        old = heat[lo:r1 + 1, cols[sel]]
        heat[lo:r1 + 1, cols[sel]] = np.where(m[:, sel], (c[:, sel] + old * area) / area, old)
        k += 1
    if k == counts.size:
        return
    rest = np.nonzero(rank >= k)[0]  # still by column, then by address
    rest_cols = cols[rest].tolist()
    for row, crow, mrow in zip(range(lo, r1 + 1), c[:, rest].tolist(), m[:, rest].tolist()):
        hrow = heat[row]
        cur, p = -1, 0.0
        for cc, cv, mv in zip(rest_cols, crow, mrow):
            if cc != cur:
                if cur >= 0:
                    hrow[cur] = p
                cur, p = cc, float(hrow[cc])
            if mv:
                p = (cv + p * area) / area
        hrow[cur] = p


def heatmap(records: Sequence[Record], *, target_id: int | None = None,
            time_range: tuple[float, float] | None = None,
            address_ranges: Sequence[tuple[int, int]] | None = None,
            resol: tuple[int, int] = (40, 80), col_weights: Sequence[float] | None = None) -> Heatmap:
    """The heat of one target over time and addresses, as damo's ``heatmap_from_records``: each region's
    access frequency (hz, or samples without intervals) is spread over ``[snapshot start − age × aggr,
    snapshot end)`` (not before the previous snapshot's end) and over its addresses, then averaged per pixel.
    A pixel a region reaches (damo's index ranges, ends included) has data, even with no overlap; others are
    NaN. The arithmetic is damo's, in the same order, so the numbers are damo's to the last bit.

    :param time_range: absolute ns (default: the guide's span, as damo)
    :param address_ranges: ranges drawn side by side along the address axis (default: every contiguous block,
        gaps skipped). damo draws one range per map: pass one range for damo's picture.
    :param col_weights: columns per range in proportion to these (default: sizes; at least 1/50 each)
    """
    recs, guide = select_target(records, target_id)
    rows, cols = resol
    if rows < 1 or cols < 1:
        raise InvalidParamsError(f"invalid resolution {rows}x{cols}")
    t0, t1 = (int(x) for x in time_range) if time_range is not None else (guide.start_time, guide.end_time)
    tu = (t1 - t0) // rows
    if tu <= 0:
        raise InvalidParamsError(f"the time range is too short for {rows} rows")
    ranges = sorted((int(a), int(b)) for a, b in (address_ranges or [(b.start, b.end) for b in guide.blocks]))
    columns = []
    for (a, b), n in zip(ranges, _split_columns(ranges, cols, col_weights)):
        u = (b - a) // n
        if u <= 0:
            raise InvalidParamsError(f"the address range [{a:#x}, {b:#x}) is too small for {n} columns")
        columns.append((a, u, n))
    heat = np.zeros((rows, cols))
    reached = np.zeros((rows, cols), bool)
    unit = "hz" if any(r.intervals is not None for r in recs) else "samples"
    last_end: int | None = None
    for rec in recs:  # damo's order: records, then snapshots, empty ones included (they end the last one)
        for snap in rec.snapshots:
            start, end = snap.start_time - t0, snap.end_time - t0
            prev_end, last_end = last_end, end
            if not snap.nr_regions:
                continue
            iv = rec.snapshot_intervals_us(snap)
            if iv is not None:
                assert rec.intervals is not None
                hz = snap.nr_accesses / (iv[1] / 1000000)
                obs = start - snap.age * (rec.intervals.aggr_us * 1000)
                if prev_end is not None:
                    obs = np.maximum(obs, prev_end)
                obs_heat = obs
            else:  # damo accounts from the snapshot's start, but reaches rows from the previous end
                hz = snap.nr_accesses.astype(np.float64)
                obs_heat = np.full(snap.nr_regions, start, np.int64)
                obs = obs_heat if prev_end is None else np.maximum(obs_heat, prev_end)
            col0 = 0
            for a, u, n in columns:
                _add_snapshot_heat(heat, reached, snap, hz, obs, obs_heat, end, tu, col0, a, u, n)
                col0 += n
    pixels = np.where(reached, heat, np.nan)
    return Heatmap(guide.target_id, t0, tu, ranges, columns, pixels, unit)


def format_heatmap(hm: Heatmap, *, base_ns: int = 0, colorset: str | None = "gray",
                   show_colorset: bool = True) -> list[str]:
    """damo's terminal heatmap: one digit 0-9 per pixel (heat relative to the map's min and max; blank: no
    data), coloured when *colorset* is given, then the ``# access_frequency``, ``# x-axis``, ``# y-axis`` and
    ``# resolution`` lines. Times are printed relative to *base_ns*."""
    lines = []
    hr = hm.heat_range()
    rows, cols = hm.pixels.shape
    if hr is not None:
        lowest, highest = hr
        unit = (highest + 1 - lowest) / 9  # damo's scale: the top digit needs a heat of highest + 1
        levels = np.minimum(((hm.pixels - lowest) / unit), 9)
        for row in levels:
            chars = []
            for v in row.tolist():
                if math.isnan(v):
                    chars.append((_color(colorset, 4) if colorset else "") + " ")
                else:
                    lv = int(v)
                    chars.append((_color(colorset, lv) if colorset else "") + str(lv))
            lines.append("".join(chars) + (_RESET if colorset else ""))
        if show_colorset:
            sample = ("".join(_color(colorset, i) + str(i) for i in range(10)) + _RESET if colorset
                      else "0123456789")
            lines.append(f"# access_frequency: {sample} ({lowest:.3f}-{highest:.3f} {hm.unit})")
    a0 = hm.columns[0][0]
    a_last, u_last, n_last = hm.columns[-1]
    space = hm.space
    lines.append(f"# x-axis: space [{fmt_sz_accurate(a0)}, {fmt_sz_accurate(a_last + u_last * n_last)}) "
                 f"({format_bytes(space)})")
    if len(hm.ranges) > 1:
        lines.append("# x-axis gaps skipped: " + ", ".join(
            f"[{fmt_sz_accurate(e)}, {fmt_sz_accurate(s)})" for (_, e), (s, _) in zip(hm.ranges, hm.ranges[1:])))
    t0, t1 = hm.time_range
    lines.append(f"# y-axis: time [{fmt_time_ns(t0 - base_ns)}, {fmt_time_ns(t1 - base_ns)}) "
                 f"({fmt_time_ns(t1 - t0)})")
    lines.append(f"# resolution: {cols}x{rows} ({format_bytes(space / cols)} and {fmt_time_ns((t1 - t0) / rows)} for "
                 "each character)")
    return lines


# -- working set sizes (damo_wss.py) ----------------------------------------------------------------------------


def wss_dists(records: Sequence[Record], *, acc_thres: int = 1, sz_thres: int = 1, exclude_samples: int = 20,
              sort: bool = True, collapse_targets: bool = True) -> dict[int, list[int]]:
    """Working set size of each snapshot (bytes of regions with ``samples >= acc_thres`` and size
    ``>= sz_thres``), skipping the first *exclude_samples* snapshots; targets summed snapshot by snapshot
    unless *collapse_targets* is false (damo's ``get_wss_dists``)."""
    dists: dict[int, list[int]] = {}
    for rec in records:
        d = []
        for snap in rec.snapshots[exclude_samples:]:
            sz = snap.sizes
            d.append(int(sz[(snap.nr_accesses >= acc_thres) & (sz >= sz_thres)].sum()))
        if sort:
            d.sort()
        if rec.target_id in dists:  # several records of one target (schemes): keep them apart in order
            dists[rec.target_id] = dists[rec.target_id] + d
        else:
            dists[rec.target_id] = d
    if collapse_targets:
        merged: list[int] = []
        for d in dists.values():
            for i, v in enumerate(d):
                if i < len(merged):
                    merged[i] += v
                else:
                    merged.append(v)
        return {0: merged}
    return dists


def _percentile_value(d: Sequence[int], p: float) -> int:
    i = int(p / 100.0 * len(d))
    return d[min(i, len(d) - 1)]


def format_dists(name: str, d: Sequence[int], percentiles: Iterable[int], *, all_values: bool = False,
                 raw: bool = False, nr_cols_bar: int = 59) -> list[str]:
    """damo's ``fmt_dists``: ``# <percentile> <name>``, ``# avr:``, then one line per percentile with a bar."""
    lines = [f"# <percentile> <{name}>"]
    if not d:
        lines.append("# no snapshot")
        return lines
    lines.append(f"# avr:\t{format_bytes(sum(d) / len(d), raw)}")
    if all_values:
        lines.extend(f"{i} {format_bytes(v, raw)}" for i, v in enumerate(d))
        return lines
    pcts = list(percentiles)
    max_val = max((_percentile_value(d, p) for p in pcts), default=0)
    per_col = max_val / nr_cols_bar if nr_cols_bar > 0 and max_val > 0 else 1
    for p in pcts:
        v = _percentile_value(d, p)
        line = "%3d %15s" % (p, format_bytes(v, raw))
        if nr_cols_bar > 0:
            n = int(v / per_col)
            line += " |%s%s|" % ("*" * n, " " * (nr_cols_bar - n))
        lines.append(line)
    return lines


# -- snapshots (damo report access) ----------------------------------------------------------------------------


def _access_line(snap: RecordSnapshot, rec: Record, width: int = 80) -> tuple[str, float, float, int]:
    # One character per column of the snapshot's address span: the size-weighted access rate, 0-9.
    lo, hi = int(snap.start[0]), int(snap.end[-1])
    edges = np.linspace(lo, hi, width + 1)
    iv = rec.snapshot_intervals_us(snap)
    rate = snap.nr_accesses / (iv[1] / 1e6) if iv else snap.nr_accesses.astype(np.float64)
    xs = np.empty(2 * snap.nr_regions)
    xs[0::2], xs[1::2] = snap.start, snap.end
    cum = np.concatenate([[0.0], np.cumsum(rate * snap.sizes)])
    vals = np.empty_like(xs)
    vals[0::2], vals[1::2] = cum[:-1], cum[1:]
    cols = np.diff(np.interp(edges, xs, vals)) / np.diff(edges)
    mn, mx = float(cols.min()), float(cols.max())
    unit = (mx + 1 - mn) / 9
    digits = "".join(str(min(9, int((c - mn) / unit))) for c in cols.tolist())
    return digits, mn, mx, int((hi - lo) / width)


def format_access(records: Sequence[Record], *, target_id: int | None = None, snapshot_idx: int | None = -1,
                  base_ns: int | None = None, raw: bool = False) -> list[str]:
    """The regions of chosen snapshots: per target, a header (pid, snapshot time, intervals), an access-rate
    strip, and the table ``# start_addr end_addr length nr_accesses age`` with the rate in % and hz and the
    age in time (damo's ``report access`` data, in its raw-form table layout).

    :param snapshot_idx: which snapshot of each record (negative: from the end); None: all
    """
    base = base_time(records) if base_ns is None else base_ns
    lines: list[str] = []
    recs = [r for r in records if target_id is None or r.target_id == target_id]
    if not recs:
        raise InvalidParamsError(f"no target {target_id} in the record")
    for rec in recs:
        if not rec.snapshots:
            continue
        if snapshot_idx is None:
            snaps = rec.snapshots
        else:
            n = len(rec.snapshots)
            if not -n <= snapshot_idx < n:
                raise InvalidParamsError(f"target {rec.target_id} has {n} snapshots: no index {snapshot_idx}")
            snaps = [rec.snapshots[snapshot_idx]]
        for snap in snaps:
            iv = rec.snapshot_intervals_us(snap)
            head = f"target_id: {rec.target_id}" + (f" (pid {rec.pid})" if rec.pid is not None else "")
            lines.append(head)
            lines.append(f"snapshot time: [{fmt_time_ns(snap.start_time - base, raw)}, "
                         f"{fmt_time_ns(snap.end_time - base, raw)}) ({fmt_time_ns(snap.duration_ns, raw)})")
            if iv is not None:
                mx_hz = 1e6 / iv[0]
                lines.append(f"intervals: sample {fmt_time_ns(iv[0] * 1000)} aggr {fmt_time_ns(iv[1] * 1000)} "
                             f"(max access hz {mx_hz:.3f})".replace(".000)", ")"))
            if snap.nr_regions:
                digits, mn, mx, colsz = _access_line(snap, rec)
                unit = "hz" if iv else "samples"
                lines.append(f"heatmap: {digits}")
                lines.append(f"# min/max access rates: {mn:.3f}, {mx:.3f} {unit}, column size: {format_bytes(colsz)}")
            lines.append("# %10s %12s  %12s  %18s %16s" % ("start_addr", "end_addr", "length", "nr_accesses",
                                                           "age"))
            mxn = iv[1] / iv[0] if iv else None
            for s, e, n, a in zip(snap.start.tolist(), snap.end.tolist(), snap.nr_accesses.tolist(),
                                  snap.age.tolist()):
                if iv is not None and mxn:
                    acc = "%4d %3d%% %s" % (n, int(n * 100 / mxn), _short_hz(n / (iv[1] / 1e6)))
                    age = "%5d %10s" % (a, fmt_time_ns(a * iv[1] * 1000))
                else:
                    acc, age = "%18d" % n, "%16d" % a
                lines.append("%012x-%012x (%12s) %18s %16s" % (s, e, format_bytes(e - s, raw), acc, age))
            wss = int(snap.sizes[snap.nr_accesses > 0].sum())
            lines.append(f"total size: {format_bytes(snap.total_bytes, raw)}, accessed: {format_bytes(wss, raw)}")
            lines.append("")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _short_hz(hz: float) -> str:
    s = fmt_hz(hz)
    return "%9s" % s


def format_raw(records: Sequence[Record], *, raw: bool = False) -> list[str]:
    """Every snapshot's regions in damo's ``report access --raw_form`` layout (per record: its base time, then
    per snapshot its times relative to it, target id, region count and ``start-end (length) nr_accesses age``)."""
    lines: list[str] = []
    for rec in records:
        if not rec.snapshots:
            continue
        base = rec.snapshots[0].start_time
        lines.append(f"base_time_absolute: {fmt_time_ns(base, raw)}")
        lines.append(f"data source: {rec.data_source}\n")
        for snap in rec.snapshots:
            lines.append("monitoring_start:    %16s" % fmt_time_ns(snap.start_time - base, raw))
            lines.append("monitoring_end:      %16s" % fmt_time_ns(snap.end_time - base, raw))
            lines.append("monitoring_duration: %16s" % fmt_time_ns(snap.duration_ns, raw))
            lines.append(f"target_id: {rec.target_id}")
            lines.append(f"nr_regions: {snap.nr_regions}")
            lines.append("# %10s %12s  %12s  %11s %5s" % ("start_addr", "end_addr", "length", "nr_accesses", "age"))
            for s, e, n, a in zip(snap.start.tolist(), snap.end.tolist(), snap.nr_accesses.tolist(),
                                  snap.age.tolist()):
                lines.append("%012x-%012x (%12s) %11d %5d" % (s, e, format_bytes(e - s, raw), n, a))
            lines.append("")
    return lines


def format_record_info(records: Sequence[Record], *, base_ns: int | None = None, raw: bool = False) -> list[str]:
    """damo's ``report record_info``: per target its time span and contiguous address blocks."""
    base = base_time(records) if base_ns is None else base_ns
    lines = []
    for g in guides(records):
        lines.append(f"target_id: {g.target_id}" + (f" (pid {g.pid})" if g.pid is not None else ""))
        lines.append(f"time: [{fmt_time_ns(g.start_time - base, raw)}, {fmt_time_ns(g.end_time - base, raw)}) "
                     f"({fmt_time_ns(g.end_time - g.start_time, raw)})")
        for i, b in enumerate(g.blocks):
            lines.append("region\t%2d: [%s, %s) (%s)" % (i, fmt_sz_accurate(b.start, raw),
                                                         fmt_sz_accurate(b.end, raw), format_bytes(b.size, raw)))
    return lines


# -- pictures ---------------------------------------------------------------------------------------------------


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend.

    :raises MissingDependencyError: matplotlib is not installed
    """
    try:
        import matplotlib
    except ImportError as err:
        raise MissingDependencyError("pictures need matplotlib: pip install 'damon-bpf[plot]' "
                                     "(or apt install python3-matplotlib)") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(records: Sequence[Record], path: str, *, target_id: int | None = None,
                 time_range: tuple[float, float] | None = None,
                 address_ranges: Sequence[tuple[int, int]] | None = None,
                 resol: tuple[int, int] = (500, 500), title: str | None = None) -> Heatmap:
    """Draw a time × address heatmap to exactly *path* (format from its suffix: png, svg, pdf, ...; PNG for any
    other), written as :func:`damon_bpf.linux.files.save_figure` does. The address axis shows every contiguous
    monitored block side by side, big unmapped gaps skipped (marked by lines), each labelled with its start
    address.

    :raises MissingDependencyError: matplotlib is not installed
    :raises DamonBpfError: *path* cannot be written (InvalidParamsError: a folder, device, symlink is there)
    """
    plt = pyplot()
    base = base_time(records)
    hm = heatmap(records, target_id=target_id, time_range=time_range, address_ranges=address_ranges, resol=resol)
    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    im = draw_heatmap(ax, hm, base_ns=base)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("address (monitored ranges, gaps skipped)" if len(hm.ranges) > 1 else "address")
    ax.set_title(title or f"access heatmap, target {hm.target_id}")
    fig.colorbar(im, ax=ax, label=f"access frequency ({hm.unit})")
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return hm


def draw_heatmap(ax: Any, hm: Heatmap, *, base_ns: int = 0, scale: float = 1.0, vmax: float | None = None,
                 labels: Sequence[str] | None = None, max_labels: int | None = None) -> Any:
    """Draw *hm* on the matplotlib axes *ax*: time along x (seconds since *base_ns*), its address ranges side by
    side along y with a line between two, each labelled (*labels*, default: its start address) at its start;
    NaN pixels (not monitored) grey. Returns the image, for a colorbar.

    :param scale: the pixels are drawn multiplied by this (a unit change)
    :param vmax: the top of the colour scale (default: the largest pixel)
    :param max_labels: label at most this many ranges, spread evenly (default: all)
    """
    plt = pyplot()
    t0, t1 = hm.time_range
    img = np.ma.masked_invalid(hm.pixels.T * scale)
    cmap = plt.get_cmap("inferno").with_extremes(bad="#d8d8d8")
    extent = ((t0 - base_ns) / 1e9, (t1 - base_ns) / 1e9, 0, hm.pixels.shape[1])
    im = ax.imshow(img, origin="lower", aspect="auto", interpolation="nearest", cmap=cmap, extent=extent,
                   vmin=0.0 if vmax is not None else None, vmax=vmax)
    ticks: list[int] = []
    names: list[str] = []
    off = 0
    for i, (a, _, n) in enumerate(hm.columns):
        if i:
            ax.axhline(off, color="#3a7bd5", linewidth=0.8, linestyle="--")
        ticks.append(off)
        names.append(labels[i] if labels is not None else f"{a:#x}")
        off += n
    if max_labels is not None and len(ticks) > max_labels:
        keep = np.linspace(0, len(ticks) - 1, max_labels).astype(int).tolist()
        ticks, names = [ticks[i] for i in keep], [names[i] for i in keep]
    ax.set_yticks(ticks)
    ax.set_yticklabels(names, fontsize=7)
    return im


def plot_wss(dists: dict[int, list[int]], path: str, *, title: str | None = None, sorted_: bool = True) -> None:
    """Draw the working set size distribution (percentile curve per target) to exactly *path*, as
    :func:`plot_heatmap` does.

    :raises MissingDependencyError: matplotlib is not installed
    :raises DamonBpfError: *path* cannot be written
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for tid, d in dists.items():
        if not d:
            continue
        pct = np.arange(0, 101)
        vals = [_percentile_value(d, float(p)) / (1 << 20) for p in pct] if sorted_ else \
            [v / (1 << 20) for v in d]
        x = pct if sorted_ else np.linspace(0, 100, len(d))
        ax.plot(x, vals, marker="." if len(vals) < 120 else None, label=f"target {tid}")
    ax.set_xlabel("percentile" if sorted_ else "runtime (percent)")
    ax.set_ylabel("working set size (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if len(dists) > 1:
        ax.legend()
    ax.set_title(title or "working set size distribution")
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
