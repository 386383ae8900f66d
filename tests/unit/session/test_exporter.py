"""The Prometheus exposition of a session's figures: names, labels and values for a known snapshot, exited
targets without series, the textfile written atomically, and ADDR:PORT parsing (issue #11)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from damon_bpf.engine import Snapshot, TargetSnapshot
from damon_bpf.engine.damos import Action, Scheme
from damon_bpf.engine.ops import BaseOperations
from damon_bpf.errors import InvalidParamsError
from damon_bpf.session.exporter import TEXTFILE_NAME, PrometheusExporter, parse_listen


class _Ops(BaseOperations):
    def __init__(self) -> None:
        self.valid = {os.getpid(): True, 1: True}

    def target_valid(self, target):  # type: ignore[no-untyped-def,override]
        return self.valid.get(target.pid, False)

    def stats(self):  # type: ignore[no-untyped-def,override]
        return {"events": 1234, "dropped_rate_limit": 5, "bpf_ns_per_event": 250.0}


def _snap(pids: list[int]) -> Snapshot:
    ts = []
    for pid in pids:
        s = np.array([0, 4096 * 10], dtype=np.int64)
        e = np.array([4096 * 10, 4096 * 40], dtype=np.int64)
        nr = np.array([20, 0], dtype=np.int64)
        age = np.array([2, 9], dtype=np.int64)
        ts.append(TargetSnapshot(pid, s, e, nr, age, nr * 10000, nr))
    return Snapshot(10**9, 0, 20, 5000, 100000, 20, tuple(ts))


def _families(exp: PrometheusExporter) -> dict[str, list]:  # type: ignore[type-arg]
    text = generate_latest(exp.registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_exposition_of_a_snapshot() -> None:
    ops = _Ops()
    scheme = Scheme(action=Action.PAGEOUT)
    scheme.stat.sz_tried, scheme.stat.sz_applied, scheme.stat.nr_tried = 8192, 4096, 2
    mon = SimpleNamespace(ctx=SimpleNamespace(ops=ops, targets=[SimpleNamespace(pid=os.getpid())], schemes=[scheme]))
    exp = PrometheusExporter(mon, "pte")
    exp(_snap([os.getpid()]))
    fam = _families(exp)
    (ws,) = fam["damon_working_set_bytes"]
    assert ws.value == 4096 * 10 and ws.labels["pid"] == str(os.getpid()) and ws.labels["source"] == "pte"
    assert ws.labels["comm"] == open("/proc/self/comm").read().strip()
    assert fam["damon_monitored_bytes"][0].value == 4096 * 40
    # DAMON_STAT: 40960 bytes * 20 accesses per 100 ms
    assert fam["damon_estimated_memory_bandwidth_bytes_per_second"][0].value == 4096 * 10 * 20 * 10
    q = {s.labels["quantile"]: s.value for s in fam["damon_memory_idle_seconds"] if "quantile" in s.labels}
    assert q["0"] == -0.3 and q["0.25"] == -0.3 and q["0.5"] == 1.0 and q["1"] == 1.0
    buckets = {s.labels["le"]: s.value for s in fam["damon_access_rate_bytes"] if s.name.endswith("_bucket")}
    assert buckets["0"] == 4096 * 30 and buckets["1"] == 4096 * 40 and buckets["+Inf"] == 4096 * 40
    assert fam["damon_source_events"][0].value == 1234 and fam["damon_source_dropped_events"][0].value == 5
    assert fam["damon_bpf_ns_per_event"][0].value == 250.0
    assert fam["damon_sample_interval_seconds"][0].value == 0.005
    assert fam["damon_aggregation_interval_seconds"][0].value == 0.1
    applied = fam["damos_applied_bytes"][0]
    assert applied.value == 4096 and applied.labels == {"scheme": "0", "action": "pageout", "source": "pte"}
    assert fam["damon_monitor_cpu_seconds"][0].value > 0


def test_exited_targets_have_no_series(tmp_path: Path) -> None:
    ops = _Ops()
    targets = [SimpleNamespace(pid=os.getpid()), SimpleNamespace(pid=1)]
    mon = SimpleNamespace(ctx=SimpleNamespace(ops=ops, targets=targets, schemes=[]))
    exp = PrometheusExporter(mon, "fault")
    exp.write_textfile_to(str(tmp_path))
    exp(_snap([os.getpid(), 1]))
    assert {s.labels["pid"] for s in _families(exp)["damon_working_set_bytes"]} == {str(os.getpid()), "1"}
    text = (tmp_path / TEXTFILE_NAME).read_text()
    assert 'pid="1"' in text and not list(tmp_path.glob("*.tmp*"))
    ops.valid[1] = False  # the target exited
    exp._next_textfile = 0.0
    exp(_snap([os.getpid(), 1]))
    assert {s.labels["pid"] for s in _families(exp)["damon_working_set_bytes"]} == {str(os.getpid())}
    assert 'pid="1"' not in (tmp_path / TEXTFILE_NAME).read_text()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9465") == ("127.0.0.1", 9465)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    for bad in ("9465", "host:", "host:0", "host:70000", "host:port"):
        with pytest.raises(InvalidParamsError):
            parse_listen(bad)
    with pytest.raises(InvalidParamsError):
        PrometheusExporter(SimpleNamespace(ctx=None), "x").write_textfile_to("/nonexistent/dir")
