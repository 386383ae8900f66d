"""`damon-bpf record` and `damon-bpf report` end to end, checked against the real damo (the PyPI package).

damo picks its reader by running `file -b` on the record, so the tests that run damo need the `file` command
(apt package `file`); they are skipped, with that reason, where it or damo is missing. damo is always given the
record file explicitly (`--input`): without it, damo would snapshot the system's running kdamond.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Iterator

import pytest

import numpy as np

from damon_bpf.results.records import Intervals, Record, RecordSnapshot, read_records, write_records

PY = sys.executable
DAMO = str(Path(PY).with_name("damo"))
TOUCHER = str(Path(__file__).parents[1] / "kernel" / "toucher.py")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=timeout, env=env)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``damon-bpf ARGS`` in this process (reports need no subprocess): (exit code, stdout, stderr)."""
    from damon_bpf.cli import main

    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def need_damo() -> None:
    # damo is a test dependency (the [test] extra): without it the environment is broken, not the record
    assert os.path.exists(DAMO), "damo is not installed (pip install -e '.[test]')"
    if shutil.which("file") is None:
        pytest.skip("damo needs the 'file' command to read records (apt install file)")


def damo(*args: str) -> subprocess.CompletedProcess[str]:
    need_damo()
    assert "--input" in args  # never let damo look at the live system
    r = subprocess.run([DAMO, *args], capture_output=True, text=True, timeout=60)
    return r


def damo_ok(*args: str) -> str:
    r = damo(*args)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "failed" not in r.stdout, (args, r.stdout[-2000:], r.stderr)
    return ANSI.sub("", r.stdout)


def check_damo_reads(path: str, min_snapshots: int, full: bool = True) -> None:
    """The damo reports a record feeds: heatmap, wss, access, record_info (and access --raw_form, validate)."""
    heat = damo_ok("report", "heatmap", "--input", path, "--resol", "10", "40")
    rows = [ln for ln in heat.splitlines() if not ln.startswith("#")]
    assert len(rows) == 10 and all(re.fullmatch(r"[0-9 ]{40}", r) for r in rows), heat
    assert re.search(r"^# access_frequency: 0123456789 \(\d+\.\d+-\d+\.\d+ hz\)$", heat, re.M), heat
    assert "# x-axis: space [" in heat and "# resolution: 40x10" in heat
    wss = damo_ok("report", "wss", "--input", path, "--exclude_samples", "0")
    assert "# <percentile> <wss>" in wss and "# avr:" in wss and "# no snapshot" not in wss, wss
    access = damo_ok("report", "access", "--input", path)
    assert "total size:" in access and "record DAMON intervals: sample" in access, access[-1000:]
    info = damo_ok("report", "record_info", "--input", path)
    assert "target_id: 0" in info and re.search(r"region\s+0: \[", info), info
    if not full:
        return
    raw = damo_ok("report", "access", "--input", path, "--raw_form")
    assert raw.count("monitoring_start:") >= min_snapshots
    val = damo_ok("validate", "--input", path, "--aggr", "1000", "10000000", "--nr_regions", "1", "100000",
                  "--nr_accesses", "0", "1000000")
    assert "invalid" not in val and "wrong" not in val, val


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    tmp = tmp_path_factory.mktemp("workload")
    truth = tmp / "truth.jsonl"
    proc = subprocess.Popen([PY, "-m", "damon_bpf.workload", "--pattern", "hotcold", "--scale", "0.25",
                             "--truth", str(truth), "--quiet"])
    for _ in range(200):
        if truth.exists() and truth.read_text().endswith("\n"):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("workload did not start")
    yield proc.pid, truth
    proc.terminate()
    proc.wait()


@pytest.fixture(scope="module")
def record(workload: tuple[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-second synthetic-source record of the bundled workload."""
    pid, truth = workload
    out = tmp_path_factory.mktemp("rec") / "damon.data"
    r = cli("record", "--source", "synthetic", "--synthetic-workload", str(truth), "--seed", "1", "--aggr", "50ms",
            "--duration", "3s", "-o", str(out), str(pid))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"damon-bpf: recording pid {pid} with source synthetic to {out}; Ctrl-C to stop"
    assert re.fullmatch(r"damon-bpf: recorded \d+ snapshots of 1 target to .* \(.*\)", lines[-1]), lines
    assert r.stdout == ""
    assert not Path(str(out) + ".journal").exists()
    return out


# -- record, read by damo ---------------------------------------------------------------------------------------


def test_synthetic_record_is_read_by_damo(record: Path) -> None:
    (rec,) = read_records(str(record))
    assert 40 <= len(rec.snapshots) <= 70
    assert rec.intervals is not None and (rec.intervals.sample_us, rec.intervals.aggr_us) == (5000, 50_000)
    now = time.time_ns()
    assert now - 600 * 10**9 < rec.snapshots[0].start_time < now  # epoch nanoseconds
    check_damo_reads(str(record), len(rec.snapshots))


def test_our_heatmap_matches_damo(record: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "report", "heatmap", "-i", str(record), "--resol", "12", "50", "--color", "never")
    assert rc == 0, err
    theirs = damo_ok("report", "heatmap", "--input", str(record), "--resol", "12", "50")
    o, t = out.splitlines(), theirs.splitlines()
    assert o[:13] == t[:13]  # the map and '# access_frequency'
    assert o[13] == t[13] and o[15] == t[15]  # x-axis and resolution; the y-axis is relative in ours
    assert re.fullmatch(r"# y-axis: time \[-?[0-9.]+ m?s, [0-9.]+ s\) \([0-9.]+ s\)", o[14]), o[14]
    wss_o = run(capsys, "report", "wss", "-i", str(record), "--exclude_samples", "0")[1]
    assert wss_o == damo_ok("report", "wss", "--input", str(record), "--exclude_samples", "0")


def _snap(t0: int, t1: int, regions: list[tuple[int, int, int, int]]) -> RecordSnapshot:
    cols = np.array(regions, np.int64).reshape(-1, 4)  # start, end, nr_accesses, age
    return RecordSnapshot(t0, t1, cols[:, 0].copy(), cols[:, 1].copy(), cols[:, 2].copy(), cols[:, 3].copy())


_T = 1750273160522904126  # epoch ns: ~1.8e18, where float64 is off by up to 128 ns
_A, _G, _M = 0x7F0000000000, 1 << 30, 1 << 20
CRAFTED = {
    # Times as float64 epoch ns put the lowest heat at 6.0795 (prints 6.079); damo's integers give 6.0796
    "epoch-times": [
        _snap(_T, _T + 100642868, [(_A, _A + 0x400000, 14, 2), (_A + 0x400000, _A + 0xC00000, 5, 2),
                                   (_A + 0xC00000, _A + 0x1000000, 3, 1)]),
        _snap(_T + 100642868, _T + 201473944, [(_A, _A + 0x400000, 2, 0), (_A + 0x400000, _A + 0xC00000, 7, 1),
                                               (_A + 0xC00000, _A + 0x1000000, 8, 2)]),
        _snap(_T + 201473944, _T + 301661781, [(_A, _A + 0x400000, 17, 2), (_A + 0x400000, _A + 0xC00000, 13, 0),
                                               (_A + 0xC00000, _A + 0x1000000, 1, 2)]),
    ],
    # damo's guide: the span starts at the empty first snapshot; the middle snapshot, without the upper block,
    # has no gap, so damo keeps the last snapshot's gap (two blocks, the upper one hottest), not none
    "empty-snapshot-and-lost-gap": [
        _snap(10**12, 10**12 + 10**8, []),
        _snap(10**12 + 10**8, 10**12 + 2 * 10**8, [(4 * _G, 4 * _G + 8 * _M, 10, 1),
                                                   (8 * _G, 8 * _G + 4 * _M, 20, 0)]),
        _snap(10**12 + 2 * 10**8, 10**12 + 3 * 10**8, [(4 * _G, 4 * _G + 8 * _M, 10, 0)]),
        _snap(10**12 + 3 * 10**8, 10**12 + 4 * 10**8, [(4 * _G, 4 * _G + 8 * _M, 5, 0),
                                                       (8 * _G, 8 * _G + 4 * _M, 20, 1)]),
    ],
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_our_heatmap_matches_damo_on_crafted_records(name: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "crafted.data"
    write_records([Record(0, Intervals(5000, 100_000), CRAFTED[name])], str(path))
    rc, out, err = run(capsys, "report", "heatmap", "-i", str(path), "--resol", "4", "8", "--color", "never")
    assert rc == 0, err
    theirs = damo_ok("report", "heatmap", "--input", str(path), "--resol", "4", "8")
    o, t = out.splitlines(), theirs.splitlines()
    assert len(o) == len(t) == 8
    assert o[:6] + o[7:] == t[:6] + t[7:]  # all but the y-axis (relative in ours)


# -- damo's reports on records whose intervals change mid-way, and on short records ----------------------------


def _changing_intervals_record(path: Path) -> int:
    """A crafted 30 s recording, written by the writer `damon-bpf record` uses, whose intervals change as
    auto-tuning changes them: snapshots of 200 ms (sampling 10 ms) for 10 s, of 1 s (50 ms) for 10 s, then of
    500 ms (25 ms). A 16 MiB region is hot in every sample, a 16 MiB one warm, 256 MiB cold. Returns the
    number of snapshots."""
    from damon_bpf.engine import Attrs, IntervalsGoal, Snapshot, TargetSnapshot
    from damon_bpf.results.records import RecordWriter

    mib = 1 << 20
    starts = np.array([_A, _A + 16 * mib, _A + 32 * mib], np.int64)
    ends = np.array([_A + 16 * mib, _A + 32 * mib, _A + 288 * mib], np.int64)
    attrs = Attrs(sample_interval_us=10_000, aggr_interval_us=200_000,
                  intervals_goal=IntervalsGoal(400, 3, 10_000, 50_000))
    t = t0 = 10**9
    n = 0
    with RecordWriter(str(path), attrs=attrs, time_offset_ns=_T) as w:
        while t < t0 + 30 * 10**9:
            aggr_us = 200_000 if t < t0 + 10 * 10**9 else 1_000_000 if t < t0 + 20 * 10**9 else 500_000
            t += aggr_us * 1000
            nr = np.array([20, 5 + n % 3, 0], np.int64)
            age = np.array([n % 4, 0, n], np.int64)
            w(Snapshot(time_ns=t, start_time_ns=t0, passed_sample_intervals=0, sample_interval_us=aggr_us // 20,
                       aggr_interval_us=aggr_us, max_nr_accesses=20,
                       targets=(TargetSnapshot(4242, starts, ends, nr, age, nr * 0, nr * 0),)))
            n += 1
    return n


def _raw_heat_rows(path: Path, resol: tuple[int, int]) -> list[list[float]]:
    """damo's `report heatmap --output raw` of the record: heats (NaN where nothing) by time row."""
    raw = damo_ok("report", "heatmap", "--input", str(path), "--output", "raw", "--resol", str(resol[0]),
                  str(resol[1]))
    rows: dict[int, list[float]] = {}
    for line in raw.splitlines():
        t, _, h = line.split("\t")
        rows.setdefault(int(t), []).append(float(h))
    assert len(rows) == resol[0] and all(len(r) == resol[1] for r in rows.values())
    return list(rows.values())


def test_damo_reports_on_changing_intervals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tuned.data"
    n = _changing_intervals_record(path)
    assert n == 50 + 10 + 20
    # heatmap: the hot region has one heat over the whole 30 s (damo's hz on the first snapshot's intervals),
    # not 5 times less after 10 s, so no time row is black
    rows = _raw_heat_rows(path, (30, 40))
    assert [max(r) for r in rows] == pytest.approx([100.0] * 30)
    heat = damo_ok("report", "heatmap", "--input", str(path), "--resol", "30", "40")
    lines = heat.splitlines()
    assert all(re.fullmatch(r"[0-9]{40}", ln) and max(ln) == "8" for ln in lines[:30]), heat
    assert "# y-axis: time [" in lines[32] and "(30 s)" in lines[32]
    ours = run(capsys, "report", "heatmap", "-i", str(path), "--resol", "30", "40", "--color", "never")[1]
    assert ours.splitlines()[:32] == lines[:32]
    # wss and nr_regions with their default options (the first 20 snapshots left out)
    wss = damo_ok("report", "wss", "--input", str(path))
    assert "# no snapshot" not in wss and "# avr:\t32.000 MiB" in wss, wss
    assert run(capsys, "report", "wss", "-i", str(path))[1] == wss
    nr_regions = damo_ok("report", "nr_regions", "--input", str(path))
    assert "# avr:\t3" in nr_regions and "100\t3" in nr_regions, nr_regions
    access = damo_ok("report", "access", "--input", str(path))
    assert "record DAMON intervals: sample 10 ms, aggr 200 ms" in access
    info = run(capsys, "report", "info", "-i", str(path))[1]
    assert "intervals: sample 10 ms, aggr 200 ms, update 1 m (sampling changed during the recording: 10 ms to " \
           "50 ms)" in info


def test_short_record_says_what_damo_cannot_report(tmp_path: Path) -> None:
    target = subprocess.Popen(["sleep", "60"])
    out = tmp_path / "short.data"
    try:
        r = cli("record", "--source", "synthetic", "--aggr", "100ms", "--duration", "1s", "-o", str(out),
                str(target.pid))
    finally:
        target.kill()
        target.wait()
    assert r.returncode == 0, r.stderr
    n = len(read_records(str(out))[0].snapshots)
    assert 1 <= n <= 20
    lines = r.stderr.strip().splitlines()
    assert lines[-2].startswith(f"damon-bpf: recorded {n} snapshots of 1 target to ")
    assert lines[-1] == (f"damon-bpf: warning: only {n} snapshots: damo leaves out the first 20 of each target, "
                         "so 'damo report wss' prints '# no snapshot' (give it --exclude_samples 0) and 'damo "
                         "report nr_regions' fails (ZeroDivisionError); record more than 20 aggregation intervals")
    # what the line says, in damo 3.4.3 itself
    assert "# no snapshot" in damo_ok("report", "wss", "--input", str(out))
    assert "# avr:" in damo_ok("report", "wss", "--input", str(out), "--exclude_samples", "0")
    nr_regions = damo("report", "nr_regions", "--input", str(out))
    assert nr_regions.returncode != 0 and "ZeroDivisionError" in nr_regions.stderr
    heat = damo_ok("report", "heatmap", "--input", str(out), "--resol", "5", "20")
    assert all(re.fullmatch(r"[0-9 ]{20}", ln) for ln in heat.splitlines()[:5]), heat


@pytest.mark.kernel
def test_short_default_record_of_the_workload_is_read_by_damo(tmp_path: Path) -> None:
    # the default source and intervals (whatever they are) on the bundled stairs workload, 16 MiB of its 64 hot
    # at a time: from the first snapshots on, when DAMON's regions are still large, the hot part is a quarter of
    # them (hotcold's 4 MiB of 68 would be black until the regions have adapted: DAMON, not the record)
    truth = tmp_path / "truth.jsonl"
    proc = subprocess.Popen([PY, "-m", "damon_bpf.workload", "--pattern", "stairs", "--scale", "0.25", "--truth",
                             str(truth), "--quiet"])
    out = tmp_path / "default.data"
    try:
        for _ in range(200):
            if truth.exists() and truth.read_text().endswith("\n"):
                break
            time.sleep(0.05)
        r = cli("record", "--duration", "6s", "-o", str(out), str(proc.pid), timeout=120)
    finally:
        proc.terminate()
        proc.wait()
    assert r.returncode == 0, r.stderr
    regions = json.loads(truth.read_text().splitlines()[0])["regions"]
    lo, hi = min(x["start"] for x in regions), max(x["end"] for x in regions)
    (rec,) = read_records(str(out))
    n = len(rec.snapshots)
    assert n >= 2, r.stderr
    # the workload's memory over the whole recording: every time row shows heat, also after the intervals grew
    heat = damo_ok("report", "heatmap", "--input", str(out), "--resol", "8", "32", "--address_range", str(lo),
                   str(hi))
    rows = heat.splitlines()[:8]
    assert all(re.fullmatch(r"[0-9 ]{32}", ln) and max(ln) >= "1" for ln in rows), heat
    assert "# access_frequency: 0123456789" in heat
    nr_regions = damo("report", "nr_regions", "--input", str(out))
    wss = damo_ok("report", "wss", "--input", str(out))
    if n <= 20:  # damo itself cannot: record says so
        assert r.stderr.strip().splitlines()[-1].startswith(f"damon-bpf: warning: only {n} snapshots: ")
        assert "# no snapshot" in wss and "ZeroDivisionError" in nr_regions.stderr
    else:
        assert "damo report" not in r.stderr
        assert "# avr:" in wss and nr_regions.returncode == 0 and "# avr:" in nr_regions.stdout
    assert "# avr:" in damo_ok("report", "wss", "--input", str(out), "--exclude_samples", "0")


@pytest.mark.kernel
def test_fault_record_is_read_by_damo(tmp_path: Path) -> None:
    out = tmp_path / "fault.data"
    r = cli("record", "--source", "fault", "--duration", "6s", "-o", str(out), "--", PY, TOUCHER, "64", "8", "-",
            "1", "churn", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "with source fault" in r.stderr
    (rec,) = read_records(str(out))
    assert rec.pid is not None and len(rec.snapshots) >= 10
    assert sum(int(s.nr_accesses.sum()) for s in rec.snapshots) > 0
    check_damo_reads(str(out), 10, full=False)
    attribution = [json.loads(ln) for ln in Path(str(out) + ".attribution").read_text().splitlines()]
    ends = {s.end_time for s in rec.snapshots}
    assert attribution and all(a["pid"] == rec.pid and a["time_ns"] in ends for a in attribution)
    assert all(len(x) == 4 and x[0] < x[1] and x[3] > 0 for a in attribution for x in a["ips"])


def test_sigkill_leaves_a_readable_record_and_a_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = subprocess.Popen(["sleep", "60"])
    out = tmp_path / "k.data"
    rec_proc = subprocess.Popen([PY, "-m", "damon_bpf", "record", "--source", "synthetic", "--aggr", "50ms",
                                 "--flush", "500ms", "-o", str(out), str(target.pid)],
                                stderr=subprocess.PIPE, text=True)
    try:
        assert rec_proc.stderr is not None and "recording pid" in rec_proc.stderr.readline()
        time.sleep(2.5)
    finally:
        rec_proc.send_signal(signal.SIGKILL)
        rec_proc.wait()
        target.kill()
        target.wait()
    journal = Path(str(out) + ".journal")
    assert journal.exists()
    n_file = len(read_records(str(out))[0].snapshots)  # the last atomic rewrite, complete
    assert n_file >= 10
    check_damo_reads(str(out), n_file, full=False)
    rc, _, err = run(capsys, "record", "--recover", str(out))
    assert rc == 0, err
    assert re.fullmatch(r"damon-bpf: recovered \d+ snapshots of 1 target into .*\n", err), err
    assert Path(str(out) + ".old").exists()
    n_rec = len(read_records(str(out))[0].snapshots)
    assert n_rec >= n_file
    assert "target_id: 0" in damo_ok("report", "record_info", "--input", str(out))


def test_only_a_recording_completes_killed_recordings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # issue #18: Monitor.open() of a session that does not record (monitor, export, compare) leaves the
    # registration and the record of a killed recording alone; the next `record` completes it before it writes
    from damon_bpf.results.records import journal, readers
    from damon_bpf.session.monitor import Monitor, MonitorSpec
    from tests.unit.results.test_record_safety import DEAD, killed

    monkeypatch.setattr(journal, "RECORDINGS_DIR", tmp_path / "run")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    killed_path = private / "x"
    n = killed(killed_path, registered=True)
    (reg,) = (tmp_path / "run").glob("record-*.json")
    info = json.loads(reg.read_text())
    info["pid"] = DEAD  # the writer is gone
    reg.write_text(json.dumps(info))

    def nr_in_file() -> int:
        return sum(len(r.snapshots) for r in readers.read_file(str(killed_path)))

    assert nr_in_file() == 1
    target = subprocess.Popen(["sleep", "60"])
    try:
        mon = Monitor(MonitorSpec(pids=[target.pid], source="synthetic"))
        try:
            mon.open()
        finally:
            mon.close()
        assert reg.exists() and nr_in_file() == 1
        rc, _, err = run(capsys, "monitor", "--source", "synthetic", "--duration", "0.2s", str(target.pid))
        assert rc == 0, err
        assert "killed recording" not in err
        assert reg.exists() and nr_in_file() == 1
        rc, _, err = run(capsys, "record", "--source", "synthetic", "--duration", "0.2s", "-o",
                         str(tmp_path / "new.data"), str(target.pid))
    finally:
        target.kill()
        target.wait()
    assert rc == 0, err
    assert (f"damon-bpf: {killed_path}: completed a killed recording: {n - 1} snapshots recovered from its "
            f"journal\n") in err, err
    assert not reg.exists() and nr_in_file() == n


def test_sigterm_and_target_exit_end_with_a_complete_file(tmp_path: Path) -> None:
    out = tmp_path / "t.data"
    rec_proc = subprocess.Popen([PY, "-m", "damon_bpf", "record", "--source", "synthetic", "--aggr", "50ms",
                                 "-o", str(out), "--", "sleep", "30"], stderr=subprocess.PIPE, text=True)
    assert rec_proc.stderr is not None and "recording pid" in rec_proc.stderr.readline()
    time.sleep(1.5)
    rec_proc.send_signal(signal.SIGTERM)
    assert rec_proc.wait(timeout=20) == 0
    assert "damon-bpf: recorded" in rec_proc.stderr.read()
    assert not Path(str(out) + ".journal").exists()
    assert len(read_records(str(out))[0].snapshots) >= 10

    out2 = tmp_path / "e.data"
    r = cli("record", "--source", "synthetic", "--aggr", "50ms", "-o", str(out2), "--", "sleep", "1")
    assert r.returncode == 0, r.stderr
    assert "every target exited" in r.stderr
    assert len(read_records(str(out2))[0].snapshots) >= 10


# -- damon-bpf report --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damo_string_record(record: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The record as damo itself writes JSON: human-formatted strings ("5 ms", "4,096", "8 m 13 s ...")."""
    js = damo_ok("report", "access", "--input", str(record), "--json")
    assert '"sample_us": "5 ms"' in js
    out = tmp_path_factory.mktemp("damo") / "strings.data"
    out.write_bytes(zlib.compress(js.encode()))
    return out


def test_reports_on_our_file_and_damos(record: Path, damo_string_record: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for path in (record, damo_string_record):
        rc, out, err = run(capsys, "report", "heatmap", "-i", str(path), "--resol", "8", "30")
        assert rc == 0, err
        lines = out.splitlines()
        assert all(re.fullmatch(r"[0-9 ]{30}", ln) for ln in lines[:8]) and lines[8].startswith("# access_frequency")
        assert [ln.split(":")[0] for ln in lines[8:]] == ["# access_frequency", "# x-axis", "# y-axis",
                                                         "# resolution"]
        rc, out, _ = run(capsys, "report", "wss", "-i", str(path), "--exclude_samples", "0", "--range", "0", "101",
                         "50")
        assert rc == 0 and out.splitlines()[:2] == ["# target_id\t0", "# <percentile> <wss>"]
        assert len(out.splitlines()) == 6
        rc, out, _ = run(capsys, "report", "access", "-i", str(path))
        assert rc == 0 and "# start_addr     end_addr" in out and "total size:" in out
        rc, out, _ = run(capsys, "report", "raw", "-i", str(path))
        assert rc == 0 and out.count("monitoring_start:") == len(read_records(str(path))[0].snapshots)
        rc, out, _ = run(capsys, "report", "info", "-i", str(path))
        assert rc == 0 and "region\t 0: [" in out
    # the same numbers from both files
    assert run(capsys, "report", "raw", "-i", str(record)) == run(capsys, "report", "raw", "-i",
                                                                  str(damo_string_record))
    rc, out, _ = run(capsys, "report", "wss", "-i", str(record))  # damo's default: the first 20 left out
    assert rc == 0 and "# avr:" in out


def test_heatmap_options(record: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rec,) = read_records(str(record))
    lo = int(rec.snapshots[-1].start[0])
    rc, out, err = run(capsys, "report", "heatmap", "-i", str(record), "--resol", "5", "20", "--time_range", "1s",
                       "2s", "--address_range", hex(lo), hex(lo + 20 * 65536), "--target", "0", "--color", "always")
    assert rc == 0, err
    assert "\x1b[48;5;232m" in out
    plain = ANSI.sub("", out).splitlines()
    assert "# y-axis: time [1 s, 2 s) (1 s)" in plain
    assert "# resolution: 20x5 (64.000 KiB and 200 ms for each character)" in plain
    rc, out, _ = run(capsys, "report", "heatmap", "-i", str(record), "--draw_range", "all", "--resol", "4", "10")
    assert rc == 0 and out.count("# x-axis") >= 2
    rc, _, err = run(capsys, "report", "heatmap", "-i", str(record), "--target", "7")
    assert rc == 2 and "no target 7" in err


def test_png_pictures(record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("heatmap", "wss"):
        png = tmp_path / f"{kind}.png"
        extra = ["--exclude_samples", "0"] if kind == "wss" else ["--resol", "100", "100"]
        rc, out, err = run(capsys, "report", kind, "-i", str(record), "--png", str(png), *extra)
        assert rc == 0, err
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5000
        assert out == ""


def test_png_without_matplotlib_is_one_line(record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    rc, _, err = run(capsys, "report", "heatmap", "-i", str(record), "--png", str(tmp_path / "x.png"))
    assert rc == 3, err
    assert err.count("\n") == 1 and "matplotlib" in err and "Traceback" not in err


def test_perf_script_output_is_read_by_damo(record: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    txt = tmp_path / "perf.txt"
    rc, _, err = run(capsys, "report", "raw", "-i", str(record), "--format", "perf-script", "-o", str(txt))
    assert rc == 0, err
    need_damo()
    assert subprocess.run(["file", "-b", str(txt)], capture_output=True, text=True).stdout.strip() == "ASCII text"
    heat = damo_ok("report", "heatmap", "--input", str(txt), "--resol", "6", "30")
    assert "# access_frequency: 0123456789" in heat and "samples)" in heat  # no intervals in perf script
    assert "# avr:" in damo_ok("report", "wss", "--input", str(txt), "--exclude_samples", "0")
    ours = read_records(str(txt))
    orig = read_records(str(record))
    assert [len(r.snapshots) for r in ours] == [len(r.snapshots) for r in orig]
    assert run(capsys, "report", "heatmap", "-i", str(txt))[0] == 0


@pytest.mark.parametrize("content", [None, b"", b"\x78\x9cnot zlib at all", b"[{\"target_id\": 0}]", b"\x00\xff"])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, content: bytes | None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.data"
    if content is not None:
        p.write_bytes(content)
    for kind in ("heatmap", "wss", "access", "raw", "info"):
        rc, _, err = run(capsys, "report", kind, "-i", str(p))
        assert rc == 2, (kind, err)
        assert err.count("\n") == 1 and err.startswith("damon-bpf: error: "), err
    rc, _, err = run(capsys, "record", "--recover", str(p))
    assert rc == 2 and "journal" in err


def test_report_without_type_and_record_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "report")[0] == 2
    r = cli("record", "--source", "synthetic", "999999999")
    assert r.returncode == 5 and "no such process" in r.stderr
    assert run(capsys, "record", "--source", "synthetic", "--flush", "0s", "1")[0] == 2
