"""``--probe_filter`` on the command line: one-line errors for bad probes, and sources that cannot evaluate them
refuse them (exit 3) before monitoring starts."""

from __future__ import annotations

import os
import subprocess
import sys


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=60)


def test_bad_probe_filter_is_a_usage_error() -> None:
    r = cli("monitor", "--source", "pte", "--probe_filter", "allow", "nope", "--duration", "1s", str(os.getppid()))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "unknown type 'nope'" in r.stderr


def test_weights_are_refused() -> None:
    r = cli("monitor", "--source", "pte", "--probe_filter", "allow", "anon", "--probe_weight", "1",
            "--duration", "1s", str(os.getppid()))
    assert r.returncode == 2 and "attributes-only" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_sources_without_page_frames_refuse_probes() -> None:
    for source in ("fault", "perf", "synthetic"):
        r = cli("monitor", "--source", source, "--probe_filter", "allow", "anon", "--duration", "1s",
                str(os.getppid()))
        assert r.returncode == 3, (source, r.stderr)
        assert r.stderr.count("\n") == 1 and "--source pte" in r.stderr, r.stderr
