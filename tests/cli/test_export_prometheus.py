"""``damon-bpf export`` scraped by a real Prometheus server (Debian's ``prometheus``, 2.42): the working set it
records matches the bundled workload's hot set, a DAMOS ``stat`` scheme's tried bytes and a ``cold`` scheme's
applied bytes grow, the series of a target that exits go away while the exporter keeps serving, ``promtool check
metrics`` passes, the ``--textfile`` file holds the same; ``--cgroup`` follows a cgroup v2 directory's processes,
also through an empty spell (issue #11)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from damon_bpf.linux.cgroups import cgroup2_root

PY = sys.executable
MiB = 1 << 20
REQUIRE = os.environ.get("DAMON_BPF_REQUIRE_KERNEL") == "1"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{tool} is not installed (scripts/setup.sh installs the 'prometheus' package)")
        pytest.skip(f"{tool} is not installed")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def _metrics(port: int) -> dict[str, list[Any]]:
    text = _get(f"http://127.0.0.1:{port}/metrics")
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _query(prom_port: int, q: str) -> list[dict[str, Any]]:
    body = json.loads(_get(f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _wait(pred: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            v = pred()
        except OSError:
            v = None
        if v:
            return v
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def _start_workload(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    truth = tmp / "truth.jsonl"
    proc = subprocess.Popen([PY, "-m", "damon_bpf.workload", "--pattern", "hotcold", "--truth", str(truth),
                             "--quiet"])
    _wait(lambda: truth.exists() and truth.read_text().count("\n") >= 1, 30, "the workload's truth file")
    return proc, json.loads(truth.read_text().splitlines()[0])


def _stop(*procs: subprocess.Popen[Any] | None) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_prometheus_scrapes_the_workload(tmp_path: Path) -> None:
    prometheus = _need("prometheus")
    promtool = _need("promtool")
    work, start = _start_workload(tmp_path)
    hot = next(r for r in start["regions"] if r["name"] == "hot")
    hot_bytes = hot["end"] - hot["start"]
    # a second target that exits while the exporter runs: its series must go away
    short = subprocess.Popen([PY, "-c", "import time; b = bytearray(8 << 20); time.sleep(7)"])
    port, prom_port = _free_port(), _free_port()
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    exp = prom = None
    try:
        exp = subprocess.Popen([PY, "-m", "damon_bpf", "export", str(work.pid), str(short.pid), "--source", "pte",
                                "--sample", "5ms", "--aggr", "100ms", "--damos_action", "stat",
                                "--damos_action", "cold", "--damos_access_rate", "0%", "0%", "--damos_age", "1s",
                                "max",
                                "--listen", f"127.0.0.1:{port}", "--textfile", str(textfile_dir)],
                               stderr=subprocess.PIPE, text=True)
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: damon-bpf\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
        prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: f'pid="{work.pid}"' in _get(f"http://127.0.0.1:{port}/metrics"), 30, "the exporter")
        t0 = time.monotonic()
        _wait(lambda: _get(f"http://127.0.0.1:{prom_port}/-/ready"), 30, "prometheus")
        # the exporter's real output passes promtool's lint
        text = _get(f"http://127.0.0.1:{port}/metrics")
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=30)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        # the short-lived target is exported while it lives, then its series go away; the exporter goes on
        assert f'pid="{short.pid}"' in text
        short.wait(timeout=30)
        _wait(lambda: f'pid="{short.pid}"' not in _get(f"http://127.0.0.1:{port}/metrics"), 20,
              "the exited target's series to go")
        assert exp.poll() is None
        ws = [s for s in _metrics(port)["damon_working_set_bytes"] if s.labels["pid"] == str(work.pid)]
        assert ws, "the workload's series went away too"
        time.sleep(max(0.0, 20 - (time.monotonic() - t0)))  # ~20 s of scrapes
        sel = f'{{job="damon-bpf",pid="{work.pid}"}}'
        (med,) = _query(prom_port, f"quantile_over_time(0.5, damon_working_set_bytes{sel}[12s])")
        value = float(med["value"][1])
        assert med["metric"]["source"] == "pte" and med["metric"]["comm"]
        # the pte source samples one page per region: the hot set within +-25 %, plus the interpreter's own
        # touched memory (a few MiB)
        assert 0.75 * hot_bytes <= value <= 1.25 * hot_bytes + 4 * MiB, (value, hot_bytes)
        assert not _query(prom_port, f'damon_working_set_bytes{{pid="{short.pid}"}}')  # stale: gone
        (t1,) = _query(prom_port, 'damos_tried_bytes_total{job="damon-bpf",scheme="0",action="stat"}')
        time.sleep(3)
        (t2,) = _query(prom_port, 'damos_tried_bytes_total{job="damon-bpf",scheme="0",action="stat"}')
        assert float(t2["value"][1]) > float(t1["value"][1]) > 0, (t1, t2)
        # the cold scheme (MADV_COLD of the idle regions, re-applied as they stay idle) applies bytes, more and
        # more; the stat scheme never applies any (the kernel's stat action counts tried bytes only)
        sel = '{job="damon-bpf",scheme="1",action="cold"}'
        (a1,) = _query(prom_port, f"damos_applied_bytes_total{sel}")
        _wait(lambda: float(_query(prom_port, f"damos_applied_bytes_total{sel}")[0]["value"][1])
              > float(a1["value"][1]), 10, "the cold scheme's applied bytes to grow")
        assert float(a1["value"][1]) > 0, a1
        (stat_applied,) = _query(prom_port, 'damos_applied_bytes_total{job="damon-bpf",scheme="0"}')
        assert float(stat_applied["value"][1]) == 0, stat_applied
        (up,) = _query(prom_port, 'up{job="damon-bpf"}')
        assert up["value"][1] == "1"
        # the textfile beside it: the same families, the live target only, never a temporary file left over
        families = {f.name: f.samples for f in
                    text_string_to_metric_families((textfile_dir / "damon_bpf.prom").read_text())}
        assert {s.labels["pid"] for s in families["damon_working_set_bytes"]} == {str(work.pid)}
        assert set(families) == set(_metrics(port))
        assert [f.name for f in textfile_dir.iterdir()] == ["damon_bpf.prom"]
    finally:
        _stop(prom, exp, work, short)
    assert exp is not None and exp.returncode == 0, exp.stderr.read() if exp.stderr else ""


def test_cgroup_processes_are_followed(tmp_path: Path) -> None:
    try:
        root = cgroup2_root()
    except Exception:
        if REQUIRE:
            raise
        pytest.skip("no cgroup v2 mount")
    cg = Path(root) / f"damon-bpf-test-{os.getpid()}"
    cg.mkdir()
    port = _free_port()
    exp = None
    procs: list[subprocess.Popen[bytes]] = []

    def spawn_in_cgroup(seconds: float) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec {PY} -c "import time; '
                                          f'b = bytearray(4 << 20); time.sleep({seconds})"'])
        procs.append(p)
        return p

    def pids() -> set[str]:
        return {s.labels["pid"] for s in _metrics(port).get("damon_monitored_bytes", [])}

    try:
        a = spawn_in_cgroup(4)
        _wait(lambda: (cg / "cgroup.procs").read_text().split(), 10, "the process in the cgroup")
        exp = subprocess.Popen([PY, "-m", "damon_bpf", "export", "--cgroup", cg.name, "--source", "pte",
                                "--sample", "5ms", "--aggr", "100ms", "--listen", f"127.0.0.1:{port}"],
                               stderr=subprocess.PIPE, text=True)
        _wait(lambda: str(a.pid) in pids(), 30, "the cgroup's first process")
        (s,) = [s for s in _metrics(port)["damon_monitored_bytes"] if s.labels["pid"] == str(a.pid)]
        assert s.labels["cgroup"].endswith(cg.name), s.labels
        a.wait(timeout=20)
        # the cgroup is empty now: no series, the exporter keeps serving
        _wait(lambda: not pids(), 20, "the exited process's series to go")
        assert exp.poll() is None, exp.stderr.read() if exp.stderr else ""
        b = spawn_in_cgroup(30)
        _wait(lambda: str(b.pid) in pids(), 20, "a new process of the cgroup")
        c = spawn_in_cgroup(30)
        _wait(lambda: {str(b.pid), str(c.pid)} <= pids(), 20, "a second process added while running")
    finally:
        _stop(exp, *procs)
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert exp is not None and exp.returncode == 0, exp.stderr.read() if exp.stderr else ""


@pytest.mark.parametrize("argv, says", [
    (["--cgroup", "no/such/cgroup-xyz", "--source", "pte"], "no such cgroup v2 directory"),
    (["1", "--source", "synthetic", "--listen", "localhost"], "is not ADDR:PORT"),
    (["1", "--source", "synthetic", "--listen", "127.0.0.1:99999"], "is not ADDR:PORT"),
])
def test_bad_input_is_one_line(argv: list[str], says: str) -> None:
    r = subprocess.run([PY, "-m", "damon_bpf", "export", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
