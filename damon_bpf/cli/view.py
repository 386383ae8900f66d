"""The live terminal view of ``damon-bpf monitor`` and its plain-text and JSON forms."""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from damon_bpf.cli.view_probes import probe_cells, probe_header
from damon_bpf.engine import Snapshot, TargetSnapshot
from damon_bpf.config.units import format_bytes, format_time_us

__all__ = ("render_text", "render_schemes", "schemes_json", "snapshot_to_json", "working_set_bytes")

BAR_WIDTH = 10


def working_set_bytes(t: TargetSnapshot, snap: Snapshot | None = None) -> int:
    """The source's estimate of the bytes accessed within the snapshot's working-set window; for a snapshot
    without one (built by hand, read from an old file), the bytes of the regions accessed at least once in
    the aggregation interval."""
    if snap is not None and snap.working_set_window_us:
        return int(t.working_set_bytes)
    return int(((t.end - t.start) * (t.nr_accesses > 0)).sum())


def _window(snap: Snapshot) -> str:
    return format_time_us(snap.working_set_window_us or snap.aggr_interval_us)


def _rows(t: TargetSnapshot, max_rows: int) -> list[tuple[int, int, float, int]]:
    """(start, end, nr_accesses, age) rows; when there are more regions than rows, neighbouring regions are
    shown together with their size-weighted mean access count and youngest age."""
    n = t.nr_regions
    if n == 0:
        return []
    sz = (t.end - t.start).astype(np.float64)
    if n <= max_rows:
        return [(int(s), int(e), float(a), int(g)) for s, e, a, g in
                zip(t.start.tolist(), t.end.tolist(), t.nr_accesses.tolist(), t.age.tolist())]
    bounds = np.linspace(0, n, max_rows + 1).astype(int)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        w = sz[lo:hi]
        acc = float((t.nr_accesses[lo:hi] * w).sum() / w.sum())
        out.append((int(t.start[lo]), int(t.end[hi - 1]), acc, int(t.age[lo:hi].min())))
    return out


def render_text(snap: Snapshot, *, mappings: Sequence[Any] | None = None, stats: dict[str, Any] | None = None,
                source: str = "", max_rows: int = 30, width: int = 80, schemes: Sequence[Any] | None = None,
                dry_run: bool = False, warning: str | None = None) -> list[str]:
    """Lines showing *snap*: per region the address range, size, access rate (% of the maximum and Hz),
    age, a heat bar and the mapping it lies in; then one line per DAMOS scheme (:func:`render_schemes`); then
    totals.

    :param mappings: per target, a callable ``addr -> str`` naming the mapping at an address (or None)
    :param schemes: the session's DAMOS schemes (``damon_bpf.engine.damos.Scheme``), with their stats
    :param dry_run: the schemes apply nothing (``--dry-run``): the header says so
    :param warning: one line under the header (e.g. that the source cannot see resident memory)
    """
    aggr_s = snap.aggr_interval_us / 1e6
    elapsed = (snap.time_ns - snap.start_time_ns) / 1e9
    lines = [
        f"damon-bpf monitor{'  DRY RUN' if dry_run else ''}  t={elapsed:7.1f}s  source {source}  "
        f"{format_time_us(snap.sample_interval_us)} / "
        f"{format_time_us(snap.aggr_interval_us)}  {snap.nr_regions} regions"[:width],
    ]
    if warning:
        lines.append(f"warning: {warning}"[:width])
    per_target_rows = max(3, max_rows // max(1, len(snap.targets)))
    for ti, t in enumerate(snap.targets):
        wss = working_set_bytes(t, snap)
        total = int((t.end - t.start).sum())
        lines.append(f"pid {t.pid}: {t.nr_regions} regions, {format_bytes(total)} monitored, "
                     f"working set ({_window(snap)}) {format_bytes(wss)}"[:width])
        lines.append(f"{'address range':<27} {'size':>10} {'rate':>4} {'Hz':>6} {'age':>9} "
                     f"{'heat':<{BAR_WIDTH}} {probe_header(t)}mapping"[:width])
        name_of = mappings[ti] if mappings and ti < len(mappings) else None
        cells = probe_cells(t, per_target_rows, snap.max_nr_accesses)  # data attribute probes, if any
        for k, (s, e, acc, age) in enumerate(_rows(t, per_target_rows)):
            pct = acc / snap.max_nr_accesses * 100 if snap.max_nr_accesses else 0.0
            hz = acc / aggr_s if aggr_s else 0.0
            nbar = int(round(pct / 100 * BAR_WIDTH))
            bar = "#" * nbar + "." * (BAR_WIDTH - nbar)
            mapping = name_of(s) if callable(name_of) else ""
            age_us = age * snap.aggr_interval_us
            line = (f"{s:012x}-{e:012x}  {format_bytes(e - s):>10} {pct:3.0f}% {hz:6.1f} "
                    f"{format_time_us(age_us):>9} {bar} {cells[k] if cells else ''}{mapping}")
            lines.append(line[:width])
    if schemes:
        lines += render_schemes(schemes, width=width, dry_run=dry_run)
    if stats:
        items = [f"{k}={_fmt(v)}" for k, v in stats.items()]
        cur = "totals:"
        for it in items:
            if len(cur) + 1 + len(it) > width and cur.strip() != "totals:":
                lines.append(cur)
                cur = "       "
            cur += " " + it
        lines.append(cur[:width])
    return lines


def render_schemes(schemes: Sequence[Any], *, width: int = 80, dry_run: bool = False) -> list[str]:
    """A header and one line per DAMOS scheme: its index and action, damo's statistics (``nr_tried sz_tried
    nr_applied sz_applied qt_exceeds``, cumulative since the start), the effective size quota (``esz``, ``-``
    without quota) and, with watermarks, whether the scheme is active. In a dry run "applied" is what would have
    been applied."""
    head = "DAMOS (dry run: nothing applied)" if dry_run else "DAMOS"
    lines = [f"{head:<14}{'tried':>7} {'sz_tried':>11} {'applied':>7} {'sz_applied':>11} {'qt_ex':>5} "
             f"{'esz':>11} wmarks"[:width]]
    for i, s in enumerate(schemes):
        st = s.stat
        q = s.quota
        quota_set = bool(q.ms or q.sz or q.goals)
        esz = format_bytes(q.esz) if quota_set else "-"
        wm = "-" if s.wmarks.metric.value == "none" else ("active" if s.wmarks.activated else "inactive")
        name = f"{i} {s.action.value}"
        lines.append(f"{name:<14}{st.nr_tried:>7} {format_bytes(st.sz_tried):>11} {st.nr_applied:>7} "
                     f"{format_bytes(st.sz_applied):>11} {st.qt_exceeds:>5} {esz:>11} {wm}"[:width])
    return lines


def schemes_json(schemes: Sequence[Any]) -> list[dict[str, Any]]:
    """The schemes for JSON output: ``Scheme.to_dict()`` (parameters in the kernel's units, access-pattern bounds
    in the unit they were given in, and ``stats``) plus ``"active"``, whether the watermarks let the scheme
    run."""
    return [dict(s.to_dict(), active=bool(s.wmarks.activated)) for s in schemes]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def snapshot_to_json(snap: Snapshot, stats: dict[str, Any] | None = None, source: str = "",
                     raw: Sequence[tuple[Any, Any]] | None = None, schemes: Sequence[Any] | None = None,
                     dry_run: bool = False, region_extra: Sequence[Any] | None = None) -> str:
    """One JSON object for *snap*; each region has ``start``, ``end``, ``nr_accesses`` (sampling intervals with
    an access in the aggregation interval: the kernel's scale, 0..``max_nr_accesses``), ``age`` (aggregation
    intervals) and ``nr_accesses_bp``; with *raw* (per target, arrays of events and write events per region)
    also the source's raw counts as ``events`` and ``writes``. With *schemes*, ``"schemes"`` lists them
    (:func:`schemes_json`); a dry run adds ``"dry_run": true``. *region_extra* (per target, None or one dict per
    region) adds its keys to the regions (the BPF sources' ``threads`` and ``cpus``)."""
    obj: dict[str, Any] = {
        "time": (snap.time_ns - snap.start_time_ns) / 1e9,
        "time_ns": snap.time_ns,
        "source": source,
        "sample_us": snap.sample_interval_us,
        "aggr_us": snap.aggr_interval_us,
        "max_nr_accesses": snap.max_nr_accesses,
        "working_set_window_us": snap.working_set_window_us or snap.aggr_interval_us,
        "targets": [
            {
                "pid": t.pid,
                "working_set_bytes": working_set_bytes(t, snap),
                "regions": [
                    {"start": r.start, "end": r.end, "nr_accesses": r.nr_accesses, "age": r.age,
                     "nr_accesses_bp": r.nr_accesses_bp,
                     **({"events": int(raw[ti][0][i]), "writes": int(raw[ti][1][i])} if raw else {}),
                     **({"probe_hits": t.probe_hits[i].tolist()} if t.probe_hits is not None else {}),
                     **(region_extra[ti][i] if region_extra and ti < len(region_extra) and region_extra[ti]
                        else {})}
                    for i, r in enumerate(t.regions)
                ],
            }
            for ti, t in enumerate(snap.targets)
        ],
    }
    if schemes:
        obj["schemes"] = schemes_json(schemes)
    if dry_run:
        obj["dry_run"] = True
    if stats:
        obj["stats"] = stats
    return json.dumps(obj, separators=(",", ":"))
