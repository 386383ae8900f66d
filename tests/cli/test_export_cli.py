"""``damon-bpf export`` and ``--prometheus``: an address in use is one line and exit 2, ``record`` serves the
session's figures too (issue #11; scraped by a real Prometheus: test_export_prometheus.py)."""

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
