"""``damon-bpf export`` end to end: the working set it serves at /metrics matches a process's hot set, an address
in use is one line and exit 2 (issue #11)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

TOUCHER = str(Path(__file__).parents[1] / "kernel" / "toucher.py")
MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_address_in_use_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "damon_bpf", "export", "--source", "synthetic", "--listen",
                            f"127.0.0.1:{port}", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], r.stderr


def test_served_working_set_matches_the_hot_set() -> None:
    toucher = subprocess.Popen([sys.executable, TOUCHER, "128", "16", "-", "1", "-"], stdout=subprocess.PIPE,
                               text=True)
    port = _free_port()
    exp = None
    try:
        assert toucher.stdout is not None
        toucher.stdout.readline()
        exp = subprocess.Popen([sys.executable, "-m", "damon_bpf", "export", str(toucher.pid), "--source", "pte",
                                "--listen", f"127.0.0.1:{port}", "--duration", "40s", "--sample", "5ms", "--aggr", "100ms",
                                "--damos_action", "stat"],
                               stderr=subprocess.PIPE, text=True)
        values: list[float] = []
        tried: list[float] = []
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline and len(values) < 5:
            time.sleep(2)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
            fams = {f.name: f.samples for f in text_string_to_metric_families(text)}
            ws = [s for s in fams.get("damon_working_set_bytes", []) if s.labels["pid"] == str(toucher.pid)]
            if ws and time.monotonic() > deadline - 30:  # past the first seconds (regions adapting)
                values.append(ws[0].value)
                tried.append(fams["damos_tried_bytes"][0].value)
        assert len(values) >= 3, exp.stderr.read() if exp.poll() is not None else "no metrics served"
        med = sorted(values)[len(values) // 2]
        assert 12 * MiB <= med <= 24 * MiB, values  # 16 MiB touched
        assert tried[-1] > tried[0] >= 0, tried  # the stat scheme's counters grow
    finally:
        if exp is not None:
            exp.terminate()
            exp.wait(timeout=30)
        toucher.kill()
        toucher.wait()
    assert exp.returncode == 0


def test_record_serves_prometheus_too(tmp_path: Path) -> None:
    port = _free_port()
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(8 << 20); time.sleep(30)"])
    try:
        rec = subprocess.Popen([sys.executable, "-m", "damon_bpf", "record", "--source", "pte", "--sample", "5ms",
                                "--aggr", "100ms", "--duration", "6s", "-o", str(tmp_path / "r.data"),
                                "--prometheus", f"127.0.0.1:{port}", str(child.pid)], stderr=subprocess.PIPE,
                               text=True)
        text = ""
        for _ in range(20):
            time.sleep(0.5)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
            if f'pid="{child.pid}"' in text:
                break
        rec.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert rec.returncode == 0, rec.stderr.read() if rec.stderr else ""
    assert f'damon_monitored_bytes{{cgroup=' in text and f'pid="{child.pid}"' in text
