"""`damon-bpf monitor` and `damon-bpf demo` end to end, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PY = sys.executable


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, code, text", [
    (["monitor", "999999999"], 5, "no such process"),
    (["monitor"], 2, "nothing to monitor"),
    (["monitor", "--sample", "5xs", "1"], 2, "invalid time unit"),
    (["monitor", "--sample", "200ms", "--aggr", "100ms", "1"], 2, "sample interval"),
    (["monitor", "--minr", "2", "1"], 2, "min_nr_regions"),
    (["monitor", "notapid"], 2, "not a pid"),
    (["monitor", "--", "/nonexistent/cmd"], 2, "cannot run"),
    (["monitor", "2"], 3, "kernel thread"),
    (["features", "--", "x"], 2, "does not run a command"),
])
def test_bad_input_is_one_line_and_nonzero(args: list[str], code: int, text: str) -> None:
    r = cli(*args)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert text in r.stderr
    assert "Traceback" not in r.stderr
    if code != 2 or "usage" not in r.stderr:
        assert len([ln for ln in r.stderr.splitlines() if ln.startswith("damon-bpf: error")]) == 1


def test_monitor_command_json_until_exit() -> None:
    t0 = time.monotonic()
    r = cli("monitor", "--source", "synthetic", "--json", "--aggr", "50ms", "--", "sleep", "1")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 10
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(lines) >= 5
    for obj in lines:
        assert obj["max_nr_accesses"] == 10
        (t,) = obj["targets"]
        regs = t["regions"]
        assert regs and all(r["start"] < r["end"] for r in regs)
        assert all(a["end"] <= b["start"] for a, b in zip(regs, regs[1:]))
        assert all(0 <= r["nr_accesses"] <= 10 for r in regs)
        assert all(r["age"] >= 0 for r in regs)


def _start_workload(tmp: Path, pattern: str = "hotcold") -> tuple[subprocess.Popen[bytes], Path]:
    truth = tmp / "truth.jsonl"
    proc = subprocess.Popen([PY, "-m", "damon_bpf.workload", "--pattern", pattern, "--scale", "0.25",
                             "--truth", str(truth), "--quiet"])
    for _ in range(200):
        if truth.exists() and truth.read_text().endswith("\n"):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("workload did not start")
    return proc, truth


def test_monitor_synthetic_workload_finds_hot_region(tmp_path: Path) -> None:
    proc, truth = _start_workload(tmp_path)
    try:
        r = cli("monitor", "--source", "synthetic", "--json", "--duration", "3s", "--synthetic-workload", str(truth),
                "--seed", "1",
                str(proc.pid))
    finally:
        proc.terminate()
        proc.wait()
    assert r.returncode == 0, r.stderr
    start = json.loads(truth.read_text().splitlines()[0])
    hot = next(x for x in start["regions"] if x["name"] == "hot")
    cold = next(x for x in start["regions"] if x["name"] == "cold")
    last = json.loads(r.stdout.splitlines()[-1])
    regs = last["targets"][0]["regions"]
    mx = last["max_nr_accesses"]
    hot_regs = [x for x in regs if x["nr_accesses"] >= mx // 2]
    assert hot_regs
    # every hot-looking region overlaps the true hot range, and the cold range reads as idle
    for x in hot_regs:
        assert x["start"] < hot["end"] and x["end"] > hot["start"], x
    for x in regs:
        if x["start"] >= cold["start"] and x["end"] <= cold["end"]:
            assert x["nr_accesses"] == 0


def test_demo_runs_and_scores() -> None:
    r = cli("demo", "--source", "synthetic", "--duration", "4s", "--every", "10", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "damon-bpf monitor" in r.stdout and "address range" in r.stdout
    line = next(ln for ln in r.stderr.splitlines() if "precision" in ln)
    prec = float(line.split("precision ")[1].split(",")[0])
    rec = float(line.split("recall ")[1].split()[0])
    # the synthetic source replays the workload's own truth: the hot set plus region edges (0.88-0.94 here)
    assert prec >= 0.8 and rec >= 0.95, line


def test_monitor_sigterm_stops_cleanly() -> None:
    p = subprocess.Popen([PY, "-m", "damon_bpf", "monitor", "--source", "synthetic", "--json", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.terminate()
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    assert all(json.loads(ln) for ln in out.splitlines())
