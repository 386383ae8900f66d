"""damon_bpf.results.records and damon_bpf.results.damo_reports: damo's record format written, read back, recovered; the reports."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.results import damo_reports as reports
from damon_bpf.engine import Snapshot, TargetSnapshot
from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import format_bytes
from damon_bpf.results.records import (
    Intervals,
    Record,
    RecordSnapshot,
    RecordWriter,
    read_records,
    records_to_kvpairs,
    recover,
    recover_file,
    write_perf_script,
    write_records,
)
from damon_bpf.results.records.encode import _adler32_combine

GiB, MiB = 1 << 30, 1 << 20
OFFSET = 1_700_000_000_000_000_000  # a fixed epoch offset, so times are predictable


def engine_snapshot(i: int, nr_targets: int = 1, *, aggr_us: int = 100_000, sample_us: int = 5000,
                    empty_target: int | None = None) -> Snapshot:
    """The i-th aggregation of a "stairs" pattern: 8 regions of 64 MiB per target, region i % 8 hot."""
    targets = []
    mx = aggr_us // sample_us
    for t in range(nr_targets):
        if t == empty_target:
            z = np.zeros(0, np.int64)
            targets.append(TargetSnapshot(2000 + t, z, z, z, z, z, z))
            continue
        start = np.arange(8, dtype=np.int64) * 64 * MiB + 4 * GiB + t * GiB
        hot = np.arange(8) == i % 8
        nr = np.where(hot, mx, 0).astype(np.int64)
        age = np.where(hot, 0, i % 5).astype(np.int64)
        targets.append(TargetSnapshot(2000 + t, start, start + 64 * MiB, nr, age, nr * 0, nr * 0))
    return Snapshot(time_ns=10**9 + (i + 1) * aggr_us * 1000, start_time_ns=10**9, passed_sample_intervals=0,
                    sample_interval_us=sample_us, aggr_interval_us=aggr_us, max_nr_accesses=mx,
                    targets=tuple(targets))


def write(path: Path, n: int, nr_targets: int = 1, **kw: object) -> list[Snapshot]:
    snaps = [engine_snapshot(i, nr_targets) for i in range(n)]
    with RecordWriter(str(path), time_offset_ns=OFFSET, **kw) as w:  # type: ignore[arg-type]
        for s in snaps:
            w(s)
    return snaps


def assert_same(recs: list[Record], snaps: list[Snapshot], *, time_step_ns: int = 1) -> None:
    for ti, rec in enumerate(recs):
        assert rec.target_id == ti
        assert len(rec.snapshots) == len(snaps)
        for rs, es in zip(rec.snapshots, snaps):
            t = es.targets[ti]
            assert abs(rs.end_time - (es.time_ns + OFFSET)) < time_step_ns
            for k in ("start", "end", "nr_accesses", "age"):
                assert np.array_equal(getattr(rs, k), getattr(t, k)), k


# -- writer and reader ------------------------------------------------------------------------------------------


def test_round_trip_two_targets(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    snaps = write(path, 25, 2)
    assert not (tmp_path / "damon.data.journal").exists()  # removed after a clean close
    recs = read_records(str(path))
    assert [r.pid for r in recs] == [2000, 2001]
    assert recs[0].intervals == Intervals(sample_us=5000, aggr_us=100_000, ops_update_us=1_000_000)
    assert_same(recs, snaps)
    s = recs[0].snapshots
    assert s[0].start_time == s[0].end_time - 100_000_000  # one aggregation before the first end
    assert all(a.end_time == b.start_time for a, b in zip(s, s[1:]))  # contiguous


def test_file_is_damo_full_variant(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    write(path, 3)
    raw = path.read_bytes()
    assert raw[:2] == b"\x78\x9c"  # a plain zlib stream, as damo writes (not gzip)
    (rec,) = json.loads(zlib.decompress(raw))
    assert set(rec) >= {"kdamond_idx", "context_idx", "scheme_idx", "target_id", "intervals", "scheme_filters",
                        "snapshots", "data_source"}
    assert set(rec["intervals"]) == {"sample_us", "aggr_us", "ops_update_us", "intervals_goal"}
    snap = rec["snapshots"][1]
    assert set(snap) == {"start_time", "end_time", "regions", "total_bytes", "damos_stats", "sample_interval_us"}
    assert snap["total_bytes"] == 8 * 64 * MiB
    region = snap["regions"][1]
    assert set(region) == {"start", "end", "nr_accesses", "age", "probe_hits", "sz_filter_passed"}
    assert region["nr_accesses"] == {"samples": 20, "percent": 100}
    assert region["age"] == {"usec": 0, "aggr_intervals": 0}
    assert snap["regions"][0]["age"] == {"usec": 100_000, "aggr_intervals": 1}
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_incremental_stream_matches_a_fresh_compression(tmp_path: Path) -> None:
    path = tmp_path / "r.data"
    w = RecordWriter(str(path), time_offset_ns=OFFSET, rewrite_interval_s=3600)
    snaps = []
    for i in range(30):
        snaps.append(engine_snapshot(i, 3, empty_target=1 if i < 10 else None))
        w(snaps[-1])
        w.flush()
        recs = read_records(str(path))  # complete and valid after every rewrite
        assert sum(len(r.snapshots) for r in recs) == (i + 1) * 2 + max(0, i - 9)
    w.close()
    recs = read_records(str(path))
    assert [len(r.snapshots) for r in recs] == [30, 20, 30]
    assert json.loads(zlib.decompress(path.read_bytes())) == records_to_kvpairs(recs)


def test_adler32_combine() -> None:
    rng = random.Random(1)
    for _ in range(50):
        a = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 70000)))
        assert _adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_existing_files_renamed_old(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    write(path, 3)
    (tmp_path / "damon.data.attribution").write_text("old\n")
    write(path, 5)
    assert len(read_records(str(path))[0].snapshots) == 5
    assert len(read_records(str(path) + ".old")[0].snapshots) == 3
    assert (tmp_path / "damon.data.attribution.old").read_text() == "old\n"


def test_attribution_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    calls = iter(range(100))

    def ips() -> list[list[tuple[int, int, int, int]]]:
        n = next(calls)
        return [[(4 * GiB, 4 * GiB + MiB, 0x401000 + n, 7)], []] if n % 2 == 0 else []

    snaps = write(path, 4, 2, ips=ips)
    lines = [json.loads(ln) for ln in (tmp_path / "damon.data.attribution").read_text().splitlines()]
    assert len(lines) == 2
    ends = [s.end_time for s in read_records(str(path))[0].snapshots]
    assert lines[0] == {"time_ns": snaps[0].time_ns + OFFSET, "target_id": 0, "pid": 2000,
                        "ips": [[4 * GiB, 4 * GiB + MiB, 0x401000, 7]]}
    assert lines[1]["time_ns"] == ends[2]  # matches the snapshot's end_time in the record


def test_reader_of_damo_string_values(tmp_path: Path) -> None:
    # what damo's own --json output and old records look like: human-formatted strings everywhere
    rec = {
        "kdamond_idx": 0, "context_idx": 0, "scheme_idx": None, "target_id": 0, "scheme_filters": [],
        "intervals": {"sample_us": "5 ms", "aggr_us": "100 ms", "ops_update_us": "1 s",
                      "intervals_goal": {"access_bp": "0 %", "aggrs": "0", "min_sample_us": "0 ns",
                                         "max_sample_us": "0 ns"}},
        "snapshots": [
            {"start_time": "20,779 d 20 h 8 m 33 s 672 ms 795 us 529 ns",
             "end_time": "20,779 d 20 h 8 m 33 s 772 ms 795 us 529 ns",
             "regions": [
                 {"start": "4,294,967,296", "end": "4,298,305,536", "nr_accesses": {"samples": "3", "percent": None},
                  "age": {"usec": None, "aggr_intervals": "11"}, "probe_hits": [], "sz_filter_passed": "0 B"},
                 {"start": "4,298,305,536", "end": "4.5 GiB", "nr_accesses": {"samples": None, "percent": "50 %"},
                  "age": {"usec": "1 s", "aggr_intervals": None}},
             ],
             "total_bytes": "3.750 GiB", "damos_stats": None, "sample_interval_us": None},
        ],
        "data_source": "unknown",
    }
    for name, data in (("s.data", zlib.compress(json.dumps([rec]).encode())),
                       ("s.json", json.dumps([rec], indent=4).encode())):
        p = tmp_path / name
        p.write_bytes(data)
        (r,) = read_records(str(p))
        assert r.intervals is not None and (r.intervals.sample_us, r.intervals.aggr_us) == (5000, 100_000)
        (s,) = r.snapshots
        assert s.end_time - s.start_time == 100_000_000
        assert s.end_time == 1795378113772795529  # exact, not rounded through a float
        assert s.start.tolist() == [4 * GiB, 4 * GiB + 3338240]
        assert s.end.tolist() == [4 * GiB + 3338240, 4 * GiB + 512 * MiB]
        assert s.nr_accesses.tolist() == [3, 10]  # 50 % of aggr/sample = 20
        assert s.age.tolist() == [11, 10]  # 1 s of 100 ms aggregations


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"\x78\x9c\x00\x01garbage", "corrupt zlib"),
    (zlib.compress(b"[{\"snapshots\": []}]"), "missing key 'target_id'"),
    (zlib.compress(b"{\"a\": 1}"), "not a list of records"),
    (b"[1, 2", "corrupt JSON"),
    (b"\x00\x01\x02\xff\xfe", "binary data"),
    (b"hello\nworld\n", "no damon:damon_aggregated lines"),
    (zlib.compress(json.dumps([{"target_id": 0, "snapshots": [{"start_time": 0, "end_time": 1, "regions": [
        {"start": 0, "end": 1, "nr_accesses": {"samples": 1}}]}]}]).encode()), "missing key 'age'"),
])
def test_reader_errors_are_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "bad.data"
    p.write_bytes(content)
    with pytest.raises(InvalidParamsError, match=message) as ei:
        read_records(str(p))
    assert "\n" not in str(ei.value)


def test_reader_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidParamsError, match="cannot read .*No such file"):
        read_records(str(tmp_path / "nope"))


# -- journal recovery -----------------------------------------------------------------------------------------


def test_recover_abandoned_journal_with_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    w = RecordWriter(str(path), time_offset_ns=OFFSET, rewrite_interval_s=3600)  # only the first rewrite
    snaps = [engine_snapshot(i, 2) for i in range(12)]
    for s in snaps:
        w(s)
    # the writer "dies" here: no close(); the last journal line was being written
    with open(str(path) + ".journal", "a") as f:
        f.write('{"type":"snapshot","end_time":12')
    assert sum(len(r.snapshots) for r in read_records(str(path))) == 2  # the last rewrite: the first snapshot
    recs = recover(str(path) + ".journal")
    assert_same(recs, snaps)
    assert [len(r.snapshots) for r in read_records(str(path) + ".journal")] == [12, 12]  # the reader takes journals
    out, recs2 = recover_file(str(path))
    assert out == str(path) and os.path.exists(str(path) + ".old")
    assert_same(read_records(str(path)), snaps)


def test_sigkilled_writer_leaves_readable_file_and_journal(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_records import engine_snapshot, OFFSET
        from damon_bpf.results.records import RecordWriter
        w = RecordWriter({str(path)!r}, time_offset_ns=OFFSET, rewrite_interval_s=0.2)
        i = 0
        while True:
            w(engine_snapshot(i, 2))
            i += 1
            if i == 20:
                print("ready", flush=True)
            time.sleep(0.005)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    recs = read_records(str(path))  # the last atomic rewrite: complete
    n_file = len(recs[0].snapshots)
    assert n_file >= 1
    recovered = recover(str(path) + ".journal")
    n_journal = len(recovered[0].snapshots)
    assert n_journal >= max(n_file, 20)
    assert_same(recovered, [engine_snapshot(i, 2) for i in range(n_journal)])


# -- perf script ----------------------------------------------------------------------------------------------


def test_perf_script_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    snaps = write(path, 10, 2)
    recs = read_records(str(path))
    buf = io.StringIO()
    write_perf_script(recs, buf)
    text = buf.getvalue()
    assert all(len(ln) < 200 for ln in text.splitlines())
    first = text.splitlines()[0]
    assert first.startswith("kdamond.x xxxx xxxx ") and ": damon:damon_aggregated: target_id=0 nr_regions=8 " in first
    p = tmp_path / "perf.txt"
    p.write_text(text)
    back = read_records(str(p))
    assert back[0].intervals is None
    assert_same(back, snaps, time_step_ns=1000)  # perf script keeps µs
    s = back[0].snapshots
    assert abs((s[0].end_time - s[0].start_time) - 100_000_000) < 2000  # inferred from the average


def test_perf_script_single_snapshot_gets_fake_trailer(tmp_path: Path) -> None:
    path = tmp_path / "damon.data"
    write(path, 1)
    recs = read_records(str(path))
    buf = io.StringIO()
    write_perf_script(recs, buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 9 and lines[-1].endswith("target_id=0 nr_regions=1 0-0: -1 -1")
    p = tmp_path / "one.txt"
    p.write_text(buf.getvalue())
    (r,) = read_records(str(p))
    (s,) = r.snapshots  # the fake one is dropped again
    assert s.nr_regions == 8 and abs(s.duration_ns - 100_000_000) < 2000


# -- reports --------------------------------------------------------------------------------------------------


def stairs_records(n: int = 16) -> list[Record]:
    base = 10**12
    snaps = []
    for i in range(n):
        start = np.arange(8, dtype=np.int64) * 64 * MiB + 4 * GiB
        nr = np.where(np.arange(8) == (i * 8) // n, 18, 0).astype(np.int64)
        snaps.append(RecordSnapshot(base + i * 10**8, base + (i + 1) * 10**8, start, start + 64 * MiB, nr,
                                    np.zeros(8, np.int64)))
    return [Record(0, Intervals(5000, 100_000), snaps)]


def test_heatmap_stairs_like_damo() -> None:
    recs = stairs_records()
    hm = reports.heatmap(recs, resol=(8, 8))
    assert hm.heat_range() == (0.0, 180.0)
    assert np.allclose(np.diag(hm.pixels), 180.0) and np.nansum(hm.pixels) == pytest.approx(8 * 180.0)
    lines = reports.format_heatmap(hm, base_ns=recs[0].snapshots[0].start_time, colorset=None)
    assert lines[:8] == ["".join("8" if c == r else "0" for c in range(8)) for r in range(8)]
    assert lines[8:] == [
        "# access_frequency: 0123456789 (0.000-180.000 hz)",
        "# x-axis: space [4.000000 GiB, 4.500000 GiB) (512.000 MiB)",
        "# y-axis: time [0 ns, 1.600 s) (1.600 s)",
        "# resolution: 8x8 (64.000 MiB and 200 ms for each character)",
    ]
    coloured = reports.format_heatmap(hm, colorset="gray")
    assert "\x1b[48;5;232m\x1b[38;5;253m8" in coloured[0]


def test_heatmap_skips_gaps_and_ages_backfill() -> None:
    recs = stairs_records(4)
    for s in recs[0].snapshots:  # a second block far above: two blocks, the gap between them skipped
        s.start = np.concatenate([s.start, [1 << 40]])
        s.end = np.concatenate([s.end, [(1 << 40) + 64 * MiB]])
        s.nr_accesses = np.concatenate([s.nr_accesses, [20]])
        s.age = np.concatenate([s.age, [0]])
    recs[0].snapshots[0].age[:] = 2  # observed since two aggregations before the first snapshot
    g = reports.guides(recs)[0]
    assert [(b.start, b.end) for b in g.blocks] == [(4 * GiB, 4 * GiB + 512 * MiB), (1 << 40, (1 << 40) + 64 * MiB)]
    assert g.start_time == recs[0].snapshots[0].start_time - 2 * 10**8
    hm = reports.heatmap(recs, resol=(6, 50))
    assert hm.ranges == [(b.start, b.end) for b in g.blocks]
    assert [n for _, _, n in hm.columns] == [44, 6]  # columns in proportion to the sizes
    assert 575 * MiB < hm.space <= 576 * MiB  # the terabyte gap is gone
    assert not np.isnan(hm.pixels).any()
    assert np.allclose(hm.pixels[:, -1], 200.0)  # the upper block, always hot


def test_wss_and_dists() -> None:
    recs = stairs_records(30)
    d = reports.wss_dists(recs, exclude_samples=0)
    assert d == {0: [64 * MiB] * 30}
    assert reports.wss_dists(recs) == {0: [64 * MiB] * 10}  # damo's default skips 20
    assert reports.format_dists("wss", [], range(0, 101, 25)) == ["# <percentile> <wss>", "# no snapshot"]
    lines = reports.format_dists("wss", [2 * MiB, 4 * MiB, 6 * MiB, 8 * MiB], range(0, 101, 25), nr_cols_bar=8)
    assert lines == ["# <percentile> <wss>", "# avr:\t5.000 MiB", "  0       2.000 MiB |**      |",
                     " 25       4.000 MiB |****    |", " 50       6.000 MiB |******  |", " 75       8.000 MiB |********|",
                     "100       8.000 MiB |********|"]
    assert format_bytes(MiB) == "1024.000 KiB"  # damo compares with '>'; kept for identical output
    assert format_bytes(1024) == "1024 B" and format_bytes(1025) == "1.001 KiB"
    assert format_bytes(MiB, raw=True) == "1048576"


def test_access_and_raw_text() -> None:
    recs = stairs_records()
    out = reports.format_access(recs)
    assert out[0] == "target_id: 0"
    assert out[1] == "snapshot time: [1.500 s, 1.600 s) (100 ms)"
    assert out[2] == "intervals: sample 5 ms aggr 100 ms (max access hz 200)"
    assert any(ln.startswith("00011c000000-000120000000 (  64.000 MiB)   18  90%    180 hz") for ln in out)
    assert out[-1] == "total size: 512.000 MiB, accessed: 64.000 MiB"
    raw = reports.format_raw(recs)
    assert raw[:3] == ["base_time_absolute: 16 m 40 s", "data source: unknown\n", "monitoring_start:                0 ns"]
    assert "000100000000-000104000000 (  64.000 MiB)          18     0" in raw
    with pytest.raises(InvalidParamsError, match="no index 99"):
        reports.format_access(recs, snapshot_idx=99)


def test_records_to_kvpairs_round_trip(tmp_path: Path) -> None:
    recs = stairs_records()
    p = tmp_path / "x.data"
    write_records(recs, str(p))
    back = read_records(str(p))
    assert back[0].intervals == recs[0].intervals
    for a, b in zip(recs[0].snapshots, back[0].snapshots):
        assert (a.start_time, a.end_time) == (b.start_time, b.end_time)
        assert np.array_equal(a.nr_accesses, b.nr_accesses) and np.array_equal(a.start, b.start)


def test_a_killed_recording_is_completed_by_the_next_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the writer registers its record; when the writer is gone with a journal holding more than the body, the
    # next session's complete_dead_recordings() rewrites the record from the journal, and a read has nothing left
    from damon_bpf.results import records as rmod
    from damon_bpf.results.records import journal, readers

    monkeypatch.setattr(journal, "RECORDINGS_DIR", tmp_path / "run")
    path = str(tmp_path / "killed.data")
    w = RecordWriter(path, time_offset_ns=OFFSET, rewrite_interval_s=3600)
    snaps = [engine_snapshot(i) for i in range(6)]
    for s in snaps:
        w(s)
    w._journal.flush()  # type: ignore[union-attr]  # the state a SIGKILL leaves: journal ahead of the body
    (reg,) = (tmp_path / "run").glob("record-*.json")
    assert rmod.complete_dead_recordings() == []  # the writer (this process) is alive: left alone
    info = json.loads(reg.read_text())
    info["pid"] = 2**22 + 7  # no such process: the writer is gone
    reg.write_text(json.dumps(info))
    body_before = sum(len(r.snapshots) for r in readers.read_file(path))
    assert body_before < 6
    assert rmod.complete_dead_recordings() == [(os.path.abspath(path), 6 - body_before)]
    assert not reg.exists()
    told: list[int] = []
    assert sum(len(r.snapshots) for r in read_records(path, on_recover=lambda p, n: told.append(n))) == 6
    assert told == []


# -- intervals that change during a recording; what damo's reports need ---------------------------------------


def changing_snapshots() -> list[Snapshot]:
    """Eight "stairs" aggregations whose intervals change: 100 ms / 5 ms, then 1 s / 50 ms (the same 20 samples
    per aggregation, as auto-tuning keeps), then 200 ms / 20 ms (10 samples per aggregation)."""
    out = []
    t = 10**9
    for i, (aggr_us, sample_us) in enumerate([(100_000, 5000)] * 3 + [(1_000_000, 50_000)] * 3
                                             + [(200_000, 20_000)] * 2):
        s = engine_snapshot(i, aggr_us=aggr_us, sample_us=sample_us)
        t += aggr_us * 1000
        out.append(Snapshot(time_ns=t, start_time_ns=10**9, passed_sample_intervals=0, sample_interval_us=sample_us,
                            aggr_interval_us=aggr_us, max_nr_accesses=aggr_us // sample_us, targets=s.targets))
    return out


def test_changing_intervals_are_written_on_one_scale(tmp_path: Path) -> None:
    # damo converts samples to hz with each snapshot's own intervals only when the record has an intervals goal;
    # the file has none (even for an auto-tuned session), so damo's heats keep one scale: the first snapshot's
    from damon_bpf.engine import Attrs, IntervalsGoal

    path = tmp_path / "tuned.data"
    snaps = changing_snapshots()
    attrs = Attrs(intervals_goal=IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=5000, max_sample_us=50_000))
    with RecordWriter(str(path), attrs=attrs, time_offset_ns=OFFSET, keep_journal=True) as w:
        for s in snaps:
            w(s)
    (kv,) = json.loads(zlib.decompress(path.read_bytes()))
    assert kv["intervals"] == {"sample_us": 5000, "aggr_us": 100_000, "ops_update_us": 60_000_000,
                               "intervals_goal": {"access_bp": 0, "aggrs": 0, "min_sample_us": 0, "max_sample_us": 0}}
    header = json.loads((tmp_path / "tuned.data.journal").read_text().splitlines()[0])
    assert header["attrs"]["intervals_goal"]["aggrs"] == 3  # the session's goal is kept in the journal
    ks = kv["snapshots"]
    assert [s["sample_interval_us"] for s in ks] == [5000] * 3 + [50_000] * 3 + [20_000] * 2  # the real ones
    assert [s["end_time"] - s["start_time"] for s in ks] == [10**8] * 3 + [10**9] * 3 + [2 * 10**8] * 2
    hot = [next(r for r in s["regions"] if r["nr_accesses"]["percent"] == 100) for s in ks]
    assert [r["nr_accesses"]["samples"] for r in hot] == [20] * 8  # 10 of 10 samples is 20 of the first 20
    cold = ks[7]["regions"][0]
    assert cold["age"] == {"usec": 2 * 200_000, "aggr_intervals": 2}  # ages in µs: the snapshot's own aggr
    (rec,) = read_records(str(path))
    assert not rec.intervals.tuned  # type: ignore[union-attr]
    # so a region hot in every sample has the same heat all along (damo: hz at the first intervals)
    ivs = [rec.snapshot_intervals_us(s) for s in rec.snapshots]
    assert set(ivs) == {(5000.0, 100_000.0)}
    assert [int(s.nr_accesses.max()) / (iv[1] / 1e6) for s, iv in zip(rec.snapshots, ivs) if iv] == [200.0] * 8
    assert recover(str(tmp_path / "tuned.data.journal"))[0].intervals == rec.intervals


def test_rescaled_samples_stay_in_range(tmp_path: Path) -> None:
    path = tmp_path / "r.data"
    snaps = changing_snapshots()[6:]  # the first at 10 samples per aggregation, then 20
    later = engine_snapshot(9, aggr_us=100_000, sample_us=5000)
    later.targets[0].nr_accesses[:] = [0, 1, 2, 3, 19, 20, 7, 11]
    snaps.append(Snapshot(time_ns=snaps[-1].time_ns + 10**8, start_time_ns=10**9, passed_sample_intervals=0,
                          sample_interval_us=5000, aggr_interval_us=100_000, max_nr_accesses=20,
                          targets=later.targets))
    with RecordWriter(str(path), time_offset_ns=OFFSET) as w:
        for s in snaps:
            w(s)
    (kv,) = json.loads(zlib.decompress(path.read_bytes()))
    assert kv["intervals"]["sample_us"] == 20_000 and kv["intervals"]["aggr_us"] == 200_000
    regions = kv["snapshots"][-1]["regions"]
    assert [r["nr_accesses"]["samples"] for r in regions] == [0, 1, 1, 2, 10, 10, 4, 6]  # half, rounded
    assert [r["nr_accesses"]["percent"] for r in regions] == [0, 5, 10, 15, 95, 100, 35, 55]  # from the real ones


def test_damo_caveat() -> None:
    from damon_bpf.results.records import DAMO_SKIPPED_SNAPSHOTS, damo_caveat

    assert DAMO_SKIPPED_SNAPSHOTS == 20  # damo 3.4.3: wss --exclude_samples default, nr_regions' snapshots[20:]
    assert damo_caveat({0: 21}) is None and damo_caveat({0: 300, 1: 21}) is None
    assert "no snapshot was recorded" in (damo_caveat({}) or "") and damo_caveat({0: 0}) == damo_caveat({})
    one = damo_caveat({0: 20}) or ""
    assert one.startswith("only 20 snapshots: ") and "'damo report wss' prints '# no snapshot'" in one
    assert "--exclude_samples 0" in one and "'damo report nr_regions' fails" in one and "\n" not in one
    assert (damo_caveat({0: 3, 1: 9}) or "").startswith("only 3 to 9 per target snapshots")
    some = damo_caveat({0: 300, 1: 5, 2: 300, 3: 20}) or ""
    assert some.startswith("targets 1, 3 have 20 snapshots or fewer: 'damo report nr_regions' fails")
    assert "'damo report wss' leaves them out" in some
    assert (damo_caveat({0: 300, 4: 2}) or "").startswith("target 4 has 20 snapshots or fewer")
