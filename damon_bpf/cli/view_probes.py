"""The live view's data attribute column: per row, each probe's hits as a share of the samples.

A region's ``probe_hits[i] / max_nr_accesses`` is the share of the aggregation interval's samples whose page
passed probe ``i`` (e.g. with ``--probe_filter allow anon``: how much of the region is anonymous memory). Rows
that stand for several regions show the size-weighted mean, grouped as :func:`damon_bpf.cli.view._rows` groups
them.
"""

from __future__ import annotations

import numpy as np

from damon_bpf.engine import TargetSnapshot

__all__ = ("probe_header", "probe_cells")


def probe_header(t: TargetSnapshot) -> str:
    """The column's header (empty without probes)."""
    return "" if t.probe_hits is None else f"{'probes%':<{_width(t)}} "


def _width(t: TargetSnapshot) -> int:
    n = 0 if t.probe_hits is None else t.probe_hits.shape[1]
    return max(7, 4 * n - 1)


def probe_cells(t: TargetSnapshot, max_rows: int, max_nr_accesses: int) -> list[str]:
    """One cell per row of the view (``"100/0"``: probe 0 passed every sample, probe 1 none), each followed by
    a space; empty without probes."""
    ph = t.probe_hits
    n = t.nr_regions
    if ph is None or n == 0:
        return []
    share = np.minimum(ph / max(max_nr_accesses, 1), 1.0)
    if n > max_rows:
        sz = (t.end - t.start).astype(np.float64)
        bounds = np.linspace(0, n, max_rows + 1).astype(int)
        share = np.array([(share[lo:hi] * sz[lo:hi, None]).sum(axis=0) / sz[lo:hi].sum()
                          for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo])
    w = _width(t)
    return [f"{'/'.join(f'{v * 100:.0f}' for v in row):<{w}} " for row in share.tolist()]
