"""``damon-bpf report code``: hottest/coldest regions with the code that touched them, symbolization (perf's names
from the sidecar, BCC for live processes, hex otherwise) and the folded-stack output.

Records are built from synthetic perf samples with :func:`damon_bpf.cli.import_perf.import_perf` (no perf run).
The live-symbolization test uses this test process itself: its instruction pointers are addresses of the
interpreter's own C functions, which BCC must name (``PyObject_Free``, ...). It needs bcc, not root.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.results.attribution import (
    AttributionWriter,
    RankedRegion,
    CodeShare,
    Symbolizer,
    folded_lines,
    frame_label,
    read_attribution,
    region_scores,
    RecordRegions,
)
from damon_bpf.cli import report_code
from damon_bpf.cli.import_perf import import_perf
from damon_bpf.engine import Attrs
from damon_bpf.errors import MissingDependencyError
from damon_bpf.results.perfscript import PerfEvent, PerfSamples

MiB = 1 << 20
HOT = 0x7F00_0000_0000
COLD = HOT + 8 * MiB
FOLDED_RE = re.compile(r"^[^;\n]+;region \[0x[0-9a-f]+-0x[0-9a-f]+\];[^;\n]+ \d+$")


def _fn_addr(name: str) -> int:
    return int(ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value or 0)


def _samples(pid: int, hot_ip: int, cold_ip: int, seconds: float = 1.5) -> PerfSamples:
    rng = np.random.default_rng(1)
    t0 = 5 * 10**12
    n_hot = int(20_000 * seconds)
    hot_t = t0 + np.sort(rng.integers(0, int(seconds * 1e9), n_hot))
    hot_a = HOT + rng.integers(0, 2048, n_hot) * 4096
    cold_t = t0 + np.sort(rng.integers(0, 50_000_000, 14336))
    cold_a = COLD + np.arange(14336) * 4096
    other_t = np.array([t0, t0 + int(seconds * 1e9) - 1, t0 + 1, t0 + 2])
    other_a = np.array([0x5600_0000_0000, 0x5600_0000_1000, 0x7FFF_F000_0000, 0x7FFF_F000_2000])
    t = np.concatenate([hot_t, cold_t, other_t]).astype(np.int64)
    a = np.concatenate([hot_a, cold_a, other_a]).astype(np.uint64)
    ip = np.concatenate([np.full(n_hot, hot_ip), np.full(cold_a.size + 4, cold_ip)]).astype(np.uint64)
    o = np.argsort(t, kind="stable")
    n = t.size
    ev = PerfEvent("page-faults", 1, 2, frozenset({"ADDR"}), 1, False)
    return PerfSamples(t[o], np.full(n, pid, np.int64), np.full(n, pid, np.int64), a[o], ip[o], np.ones(n, np.int64),
                       np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, np.uint64), np.zeros(n, np.int64),
                       np.full(n, -1, np.int64), (ev,), {pid: "toy prog"})


def _import(tmp_path: Path, pid: int, hot_ip: int, cold_ip: int) -> Path:
    out = tmp_path / "damon.data"
    import_perf("", str(out), Attrs(ops_update_interval_us=1_000_000, max_nr_regions=100), seed=0,
                samples=_samples(pid, hot_ip, cold_ip))
    return out


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    report_code.add_arguments(p)
    return report_code.run(p.parse_args(argv))


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_sidecar_lines(tmp_path: Path) -> None:
    out = _import(tmp_path, 4242, 0x401000, 0x402000)
    lines = read_attribution(str(out) + ".attribution")
    assert lines and all(set(ln) >= {"time_ns", "target_id", "pid", "ips"} for ln in lines)
    assert lines[0]["comm"] == "toy prog" and lines[0]["pid"] == 4242
    assert all(len(row) == 4 for ln in lines for row in ln["ips"])
    assert lines[0]["time_ns"] == 5 * 10**12 + 100_000_000  # perf time at the end of the first interval
    # every sample is in some region, so the sidecar counts all of them
    assert sum(row[3] for ln in lines for row in ln["ips"]) == 30_000 + 14336 + 4


def test_report_hot_and_cold_with_hex_for_a_dead_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _import(tmp_path, _dead_pid(), 0x401000, 0x402000)
    assert _run(["-i", str(out), "--top", "2", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    kinds = [r["kind"] for r in rep["regions"]]
    assert kinds == ["hot", "hot", "cold", "cold"]
    for r in rep["regions"]:
        if r["kind"] == "hot":
            in_hot = min(r["end"], COLD) - max(r["start"], HOT)
            assert in_hot >= (r["end"] - r["start"]) // 2 and r["nr_accesses"] >= 10, r
            assert r["code"][0]["ip"] == 0x401000 and r["code"][0]["symbol"] == "0x401000"
        else:
            assert r["nr_accesses"] < 1
    assert any("has exited" in n for n in rep["notes"])


def test_report_text_and_folded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "damon.data"
    samples = _samples(4243, 0x401000, 0x402000)
    import_perf("", str(out), Attrs(ops_update_interval_us=1_000_000, max_nr_regions=100), seed=0,
                samples=samples, symbols=False)
    # perf's names as import writes them ("syms"): used without asking BCC
    side = str(out) + ".attribution"
    lines = read_attribution(side)
    with AttributionWriter(side) as w:
        for i, ln in enumerate(lines):
            w.write(ln["time_ns"], ln["target_id"], ln["pid"], ln["ips"], comm=ln.get("comm"),
                    syms={0x401000: "touch_hot+0x10 [toy]", 0x402000: "[unknown] [libinit.so]"})
    folded = tmp_path / "out.folded"
    assert _run(["-i", str(out), "--top", "1", "--no-bcc", "--folded", str(folded)]) == 0
    text = capsys.readouterr().out
    assert "# target 0: pid 4243 (toy prog)" in text
    assert "# hottest regions" in text and "# coldest regions" in text
    assert "touch_hot+0x10 [toy]" in text and "0x402000 [libinit.so]" in text
    rows = folded.read_text().splitlines()
    assert rows and all(FOLDED_RE.match(r) for r in rows), rows
    assert any(r.startswith("toy prog;region [0x7f") and ";toy`touch_hot " in r for r in rows)
    assert any(";libinit.so`0x402000 " in r for r in rows)


def test_frame_labels_and_folded_counts() -> None:
    assert frame_label("PyObject_Free+0x1d [python3.11]") == "python3.11`PyObject_Free"
    assert frame_label("operator new(unsigned long)+0x1c [libstdc++.so.6]") == \
        "libstdc++.so.6`operator new(unsigned long)"
    assert frame_label("0x401000") == "0x401000"
    assert frame_label("a;b [m]") == "m`a:b"
    r = RankedRegion("hot", 0, 7, 0x1000, 0x3000, 5.0, 1,
                     [CodeShare(1, 2.4, "f+0x1 [m]"), CodeShare(2, 0.2, "f+0x9 [m]"), CodeShare(3, 0.1, "")])
    assert folded_lines([r], {7: "app"}) == ["app;region [0x1000-0x3000];m`f 3", "app;region [0x1000-0x3000];0x3 1"]


def test_region_scores_average_overlapping_snapshots() -> None:
    a = np.array
    rr = RecordRegions(0, [
        (1, a([0, 100]), a([100, 200]), a([10, 0]), a([0, 0])),
        (2, a([0, 50]), a([50, 200]), a([4, 2]), a([1, 1])),
    ])
    starts, ends, score, ages = region_scores(rr, 2)
    assert starts.tolist() == [0, 50] and ages.tolist() == [1, 1]
    # [0,50): (10 + 4) / 2; [50,200): ((10*50 + 0*100)/150 + 2) / 2
    assert score[0] == pytest.approx(7.0) and score[1] == pytest.approx((500 / 150 + 2) / 2)


def test_live_process_symbolized_with_bcc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("bcc") is None:
        pytest.skip("bcc is not installed (python3-bpfcc)")
    free, append = _fn_addr("PyObject_Free"), _fn_addr("PyList_Append")
    assert free and append
    out = _import(tmp_path, os.getpid(), free + 4, append)
    assert _run(["-i", str(out), "--top", "1", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    hot = [r for r in rep["regions"] if r["kind"] == "hot"][0]
    cold = [r for r in rep["regions"] if r["kind"] == "cold"][0]
    # python's own C functions: in libpython, or in the interpreter binary where it is linked statically
    assert hot["code"][0]["symbol"].startswith("PyObject_Free+0x4 ["), hot
    assert cold["code"][0]["symbol"].startswith("PyList_Append+0x0 ["), cold
    assert re.search(r"\[(libpython[\d.]+\.so[\d.]*|python[\d.]*)\]$", hot["code"][0]["symbol"])


def test_symbolizer_without_bcc_falls_back_to_hex() -> None:
    def no_bcc(pid: int, ips: list[int]) -> list[str]:
        raise MissingDependencyError("bcc is not installed")

    s = Symbolizer(live=no_bcc, alive=lambda pid: True)
    assert s.resolve(1, [0x10, 0x20]) == ["0x10", "0x20"]
    assert any("bcc is not installed" in n for n in s.notes)


def test_through_damon_bpf_report_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from damon_bpf.cli import main

    out = _import(tmp_path, _dead_pid(), 0x401000, 0x402000)
    assert main(["report", "code", "-i", str(out), "--top", "1", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rep["regions"]] == ["hot", "cold"]
