"""The live view's probes column and the Prometheus exporter's bytes per probe (issue #19)."""

from __future__ import annotations

import numpy as np

from damon_bpf.cli.view import render_text
from damon_bpf.engine import Snapshot, TargetSnapshot


def _snap(ph: list[list[int]] | None, n: int = 2) -> Snapshot:
    start = np.arange(n, dtype=np.int64) * 0x100000 + 0x10000000
    end = start + 0x100000
    nr = np.full(n, 10, np.int64)
    age = np.ones(n, np.int64)
    t = TargetSnapshot(7, start, end, nr, age, nr * 10000, nr, 0, None if ph is None else np.array(ph, np.int64))
    return Snapshot(2 * 10**9, 10**9, 40, 5000, 100000, 20, (t,))


def test_column_shows_each_probes_share() -> None:
    lines = render_text(_snap([[20, 0], [10, 20]]), width=200)
    assert any("probes%" in ln for ln in lines)
    rows = [ln for ln in lines if ln.startswith("00001")]
    assert "100/0 " in rows[0] and "50/100 " in rows[1]


def test_rows_grouping_weights_by_size() -> None:
    lines = render_text(_snap([[20], [0], [20], [0]], n=4), max_rows=3, width=200)
    rows = [ln for ln in lines if ln.startswith("00001")]
    # every region's share is 100 or 0; the row of the last two regions shows their size-weighted mean
    assert [r.split()[-1] for r in rows] == ["100", "0", "50"]


def test_no_column_without_probes() -> None:
    assert not any("probes%" in ln for ln in render_text(_snap(None), width=200))


def test_exporter_bytes_per_probe() -> None:
    import os
    from types import SimpleNamespace

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from damon_bpf.engine.ops import BaseOperations
    from damon_bpf.session.exporter import PrometheusExporter

    class _Ops(BaseOperations):
        def target_valid(self, target):  # type: ignore[no-untyped-def,override]
            return True

    s = np.array([0, 4096 * 10], dtype=np.int64)
    e = np.array([4096 * 10, 4096 * 40], dtype=np.int64)
    nr = np.array([20, 0], dtype=np.int64)
    # probe 0: all of region 0, half of region 1; probe 1: nothing
    t = TargetSnapshot(os.getpid(), s, e, nr, nr, nr * 10000, nr, 0, np.array([[20, 0], [10, 0]], np.int64))
    mon = SimpleNamespace(ctx=SimpleNamespace(ops=_Ops(), targets=[SimpleNamespace(pid=os.getpid())], schemes=[]))
    exp = PrometheusExporter(mon, "pte")
    exp(Snapshot(10**9, 0, 20, 5000, 100000, 20, (t,)))
    text = generate_latest(exp.registry).decode()
    fam = {f.name: f.samples for f in text_string_to_metric_families(text)}
    got = {smp.labels["probe"]: smp.value for smp in fam["damon_probe_bytes"]}
    assert got == {"0": 4096 * 10 + 4096 * 15, "1": 0.0}
