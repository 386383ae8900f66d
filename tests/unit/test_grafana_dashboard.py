"""grafana/damon-bpf.json is valid JSON and every panel's PromQL reads metrics the exporter exports (issue #11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from damon_bpf.session.exporter import PrometheusExporter

DASHBOARD = Path(__file__).parents[2] / "grafana" / "damon-bpf.json"
# PromQL words that are not metric names
_KEYWORDS = {"sum", "by", "rate", "le", "without", "avg", "max", "min", "quantile", "histogram_quantile"}


def _exported_names() -> set[str]:
    from types import SimpleNamespace

    exp = PrometheusExporter(SimpleNamespace(ctx=None), "pte")
    names = set()
    for fam in text_string_to_metric_families(generate_latest(exp.registry).decode()):
        names.add(fam.name)
        for suffix in ("_total", "_bucket", "_sum", "_count"):
            names.add(fam.name + suffix)
    return names


def test_every_panel_reads_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exported = _exported_names()
    panels = dash["panels"]
    assert len(panels) >= 6
    for panel in panels:
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^]]*\]', "", t["expr"])  # drop selectors, strings, ranges
            metrics = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in _KEYWORDS}
            assert metrics, t["expr"]
            assert metrics <= exported, (panel["title"], metrics - exported)
    titles = " ".join(p["title"] for p in panels).lower()
    for what in ("working set", "idle", "damos", "cpu", "drops"):
        assert what in titles, what
