"""``damon-bpf-workload`` end to end: real subprocesses, their /proc entries, signals and the truth they write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from damon_bpf.workload.cli import main
from damon_bpf.workload.truth import Truth, load_truth

_ROOT = Path(__file__).resolve().parents[3]
_PREFIX = "damon-bpf-workload: "


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "damon_bpf.workload", *args],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_start(proc: subprocess.Popen[str], truth: Path, timeout: float = 15.0) -> Truth:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"workload exited early: {proc.returncode} {proc.communicate()}")
        try:
            return load_truth(truth)
        except Exception:
            time.sleep(0.02)
    proc.kill()
    raise AssertionError("no start record")


def _finish(proc: subprocess.Popen[str], timeout: float = 10.0) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    assert out == ""
    assert "Traceback" not in err
    return out, err


def _maps(pid: int) -> list[tuple[int, int, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            out.append((lo, hi, fields[5].strip() if len(fields) > 5 else ""))
    return out


def _check_records(t: Truth) -> None:
    assert t.end_time is not None
    assert t.start.page_size == 4096
    prev = t.start.time
    for p in t.phases:
        assert prev <= p.start < p.end <= t.end_time
        prev = p.end
        assert [(r.name, r.start, r.end) for r in p.regions] == [(r.name, r.start, r.end) for r in t.start.regions]
        for r in p.regions:
            assert r.hot or (r.nr_touches == 0 and r.touches_per_sec == 0 and r.pattern is None)


def test_hotcold_run(tmp_path: Path) -> None:
    truth = tmp_path / "t.jsonl"
    proc = _start("--pattern", "hotcold", "--duration", "1.5", "--threads", "2", "--truth", str(truth), "--seed", "9")
    t = _wait_start(proc, truth)
    assert t.start.pid == proc.pid and t.start.threads == 2 and t.start.pattern == "hotcold" and t.start.seed == 9
    maps = _maps(proc.pid)
    for r in t.start.regions:
        assert not r.file_backed
        assert any(lo <= r.start and r.end <= hi for lo, hi, _ in maps), r
    assert len(os.listdir(f"/proc/{proc.pid}/task")) >= 2
    _, err = _finish(proc)
    assert err.strip().splitlines() == [f"{_PREFIX}pid {proc.pid}, 2 regions, 272.000 MiB"]

    t = load_truth(truth)
    _check_records(t)
    assert [r.name for r in t.start.regions] == ["hot", "cold"]
    assert [(r.end - r.start) >> 20 for r in t.start.regions] == [16, 256]
    assert len(t.phases) >= 2 and all(p.name == "hot" for p in t.phases)
    assert sum(p.end - p.start for p in t.phases) == pytest.approx(1.5, abs=0.2)
    for p in t.phases:
        hot, cold = p.regions
        assert hot.hot and hot.pattern == "random" and hot.access == "rw"
        assert cold.nr_touches == 0 and not cold.hot
    full = [p for p in t.phases if p.end - p.start > 0.5]
    assert full and all(p.regions[0].touches_per_sec > 10000 for p in full)


def test_config_run_scaled(tmp_path: Path) -> None:
    cfg = tmp_path / "w.json"
    cfg.write_text(json.dumps({
        "regions": [{"name": "a", "size": "4MiB"}, {"name": "b", "size": "4MiB"}, {"name": "c", "size": "2MiB"}],
        "phases": [
            {"name": "pa", "duration": "250ms", "regions": [{"region": "a", "pattern": "sequential"}]},
            {"name": "pb", "duration": "250ms", "regions": [{"region": "b", "access": "write"},
                                                             {"region": "a", "weight": 0.5}]},
        ],
    }))
    truth = tmp_path / "t.jsonl"
    proc = _start("--config", str(cfg), "--scale", "0.5", "--duration", "1.5", "--truth", str(truth), "--quiet")
    _, err = _finish(proc)
    assert err == ""
    t = load_truth(truth)
    _check_records(t)
    assert t.start.pattern == "w" and t.start.threads == 1
    assert [(r.end - r.start) >> 20 for r in t.start.regions] == [2, 2, 1]
    assert [p.name for p in t.phases][:6] == ["pa", "pb"] * 3
    for p in t.phases:
        a, b, c = p.regions
        assert c.nr_touches == 0 and not c.hot
        assert a.hot and (b.hot == (p.name == "pb"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path: Path, sig: int) -> None:
    truth = tmp_path / "t.jsonl"
    proc = _start("--pattern", "stairs", "--scale", "0.05", "--truth", str(truth), "--quiet")
    _wait_start(proc, truth)
    time.sleep(0.4)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _finish(proc, timeout=5)
    assert time.monotonic() - t0 < 2
    t = load_truth(truth)
    _check_records(t)
    # Stairs phases last 2 s: the signal cut the first one short, and it was still recorded.
    assert [p.name for p in t.phases] == ["stair0"]
    p = t.phases[0]
    assert 0.3 < p.end - p.start < 1.5
    assert [r.hot for r in p.regions] == [True, False, False, False]
    assert p.regions[0].nr_touches > 0


def test_file_backed(tmp_path: Path) -> None:
    d = tmp_path / "files"
    d.mkdir()
    truth = tmp_path / "t.jsonl"
    proc = _start("--pattern", "zigzag", "--scale", "0.0625", "--file-backed", str(d), "--truth", str(truth),
                  "--threads", "2", "--quiet")
    t = _wait_start(proc, truth)
    files = sorted(str(p) for p in d.iterdir())
    assert len(files) == 4
    assert all(r.file_backed for r in t.start.regions)
    maps = _maps(proc.pid)
    for r in t.start.regions:
        assert any(lo == r.start and hi == r.end and name in files for lo, hi, name in maps), r
    time.sleep(0.2)
    proc.terminate()
    _finish(proc)
    assert list(d.iterdir()) == []
    t = load_truth(truth)
    _check_records(t)
    assert t.phases and t.phases[0].regions[0].pattern == "sequential"


def test_bad_input_subprocess() -> None:
    proc = _start("--pattern", "nope")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and out == ""
    assert err.splitlines() == [f"{_PREFIX}error: unknown pattern 'nope' (choose stairs, zigzag, hotcold, perthread)"]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--pattern", "nope"], "unknown pattern"),
        (["--config", "/nonexistent/w.json"], "cannot read config"),
        (["--pattern", "hotcold", "--config", "x.json"], "not allowed with"),
        (["--scale", "0"], "scale"),
        (["--scale", "lots"], "--scale"),
        (["--threads", "0"], "--threads"),
        (["--duration", "soon"], "time"),
        (["--duration", "-1"], "--duration"),
        (["--seed", "-3"], "--seed"),
        (["--file-backed", "/nonexistent/dir"], "not a directory"),
        (["--bogus"], "unrecognized arguments"),
        (["--scale", "100000"], "available"),
    ],
)
def test_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{_PREFIX}error: ") and match in lines[0], lines


def test_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "w.json"
    doc: dict[str, Any] = {"regions": [{"name": "a", "size": "1MiB"}],
                           "phases": [{"name": "p", "duration": 1, "regions": [{"region": "zz"}]}]}
    cfg.write_text(json.dumps(doc))
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown region 'zz'" in err and len(err.splitlines()) == 1
