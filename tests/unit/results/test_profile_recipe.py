"""damo's profiling recipe (issue #19): the /proc parsers, the side files' writers and readers, and the reports
(footprints, times, nr_regions, holistic) on crafted inputs. The real recordings, read by the real damo, are in
tests/kernel/test_profile_recipe.py."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from damon_bpf.config.units import format_bytes
from damon_bpf.engine import Attrs
from damon_bpf.errors import InvalidParamsError, MissingDependencyError
from damon_bpf.linux.proc_footprint import (parse_meminfo, parse_statm, read_meminfo, read_stat_fields, read_statm,
                                            split_stat)
from damon_bpf.results import profile_reports as pr
from damon_bpf.results.data_objects import read_vmas_file
from damon_bpf.results.profile import (DAMO_DO_RECORD_DEFAULT, DO_RECORD_DEFAULT, JsonListFile, MemFootprint, ProfileRecorder, Recipe,
                                       kdamonds_kvpairs, read_kdamonds, read_mem_footprints, read_proc_stats,
                                       read_vmas, recipe_from_args, side_file, side_paths)
from damon_bpf.results.records import Intervals, Record, RecordSnapshot

DAMO_DIR = next((Path(p) / "damo" for p in sys.path if (Path(p) / "damo" / "_damo_records.py").exists()), None)


# -- /proc parsers ----------------------------------------------------------------------------------------


def test_statm_meminfo_and_stat_parse_the_kernels_formats() -> None:
    assert parse_statm("126154 78454 4499 691 0 95318 0\n") == (126154, 78454, 4499, 691, 0, 95318, 0)
    with pytest.raises(InvalidParamsError, match="statm"):
        parse_statm("1 2 3")
    mi = parse_meminfo("MemTotal:       24683772 kB\nMemFree:        22141632 kB\nMemAvailable:   23013012 kB\n"
                       "Buffers:           53544 kB\nCached:          1145100 kB\nSwapCached:            0 kB\n")
    assert mi == {"total": 24683772, "free": 22141632, "available": 23013012, "buffers": 53544, "cached": 1145100}
    # a comm with spaces and parentheses is one field; the others keep the kernel's numbering
    f = split_stat("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 10 0 0 0 3 4 0 0 20 0 1 0 777 100 25\n")
    assert f[:4] == ["4242", "(a) b (c))", "S", "1"] and f[21] == "777"
    with pytest.raises(InvalidParamsError):
        split_stat("garbage")


def test_readers_of_this_process_agree_with_status() -> None:
    statm = read_statm(os.getpid())
    assert statm is not None
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss_kib = int(status["VmRSS"].split()[0])
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    assert abs(statm[1] * page_kib - rss_kib) <= 0.2 * rss_kib
    fields = read_stat_fields(os.getpid())
    assert fields is not None and fields[0] == str(os.getpid()) and fields[2] in "RSD"
    assert read_meminfo()["total"] > 0
    assert read_statm(2**22 + 7) is None and read_stat_fields(2**22 + 7) is None  # no such process


# -- recipe --------------------------------------------------------------------------------------------------


def test_recipe_spellings_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    assert recipe_from_args(["access,vmas", "mem_footprint"]).items == {"access", "vmas", "mem_footprint"}
    for words, msg in ((["access", "bogus"], "unknown item 'bogus'"), (["damon_trace_events", "access"], "no kernel"),
                       (["mem_footprint"], "always records accesses")):
        with pytest.raises(InvalidParamsError, match=msg):
            recipe_from_args(words)
    monkeypatch.setenv("PERF", "no-such-perf-binary")
    # the default: the cheap items, no perf needed
    r = recipe_from_args(None)
    assert r.items == set(DO_RECORD_DEFAULT) == {"access", "mem_footprint", "proc_stats"} and r.perf is None
    assert side_paths("d", r) == ["d.kdamonds", "d.mem_footprint", "d.proc_stats"]
    # damo's default needs perf: without it, an error (exit 3)
    with pytest.raises(MissingDependencyError, match="--do_record cpu_profile"):
        recipe_from_args(list(DAMO_DO_RECORD_DEFAULT))
    r = recipe_from_args(["access", "mem_footprint", "vmas", "proc_stats"])
    assert side_paths("d", r) == ["d.kdamonds", "d.mem_footprint", "d.vmas", "d.proc_stats"]
    assert side_file("d", ".vmas") == "d.vmas" and side_file("d.vmas", ".vmas") == "d.vmas"


# -- the JSON list files -----------------------------------------------------------------------------------


def test_json_list_file_is_a_complete_list_after_every_write(tmp_path: Path) -> None:
    p = tmp_path / "x.mem_footprint"
    p.write_text("old")
    f = JsonListFile(str(p))
    assert (tmp_path / "x.mem_footprint.old").read_text() == "old"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert json.loads(p.read_text()) == []
    items: list[Any] = []
    for i in range(5):
        item = {"time": i, "v": "x" * (i * 7)}
        f.append(item)
        items.append(item)
        assert json.loads(p.read_text()) == items
    f.close()
    with pytest.raises(ValueError):
        f.append({})


def test_json_list_file_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "x.vmas").symlink_to(victim)
    with pytest.raises(InvalidParamsError, match="symbolic link"):
        JsonListFile(str(tmp_path / "x.vmas"))
    assert victim.read_text() == "precious"


def test_a_torn_last_sample_is_left_out(tmp_path: Path) -> None:
    p = tmp_path / "x.mem_footprint"
    good = MemFootprint(1.0, {7: dict.fromkeys(("size", "resident", "shared", "trs", "lrs", "drs", "dt"), 1)},
                        dict.fromkeys(("total", "free", "available", "buffers", "cached"), 2))
    p.write_text("[\n" + json.dumps(good.to_kvpairs()) + ",\n" + json.dumps(good.to_kvpairs())[:30])
    (snap,) = read_mem_footprints(str(p))
    assert snap.procs == good.procs and snap.sys == good.sys


@pytest.mark.parametrize("content, msg", [
    ("{}", "expected a JSON list"),
    ('[{"time": "x", "footprints": []}]', r"\[0\].time: expected a number"),
    ('[{"time": 1, "footprints": [{"pid": 1}]}]', r"footprints\[0\]: expected"),
    ("not json", "not JSON|cannot parse|invalid"),
])
def test_bad_footprint_files_are_one_line_errors(tmp_path: Path, content: str, msg: str) -> None:
    p = tmp_path / "f"
    p.write_text(content)
    with pytest.raises(InvalidParamsError, match=msg):
        read_mem_footprints(str(p))


def test_readers_refuse_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for reader in (read_mem_footprints, read_vmas, read_proc_stats, read_kdamonds):
        with pytest.raises(InvalidParamsError, match="FIFO|not a regular file"):
            reader(str(tmp_path / "fifo"))  # type: ignore[operator]


# -- the recorder on a fake /proc ----------------------------------------------------------------------------


def _fake_proc(root: Path, pid: int, rss_pages: int) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "statm").write_text(f"1000 {rss_pages} 10 5 0 900 0\n")
    (d / "stat").write_text(f"{pid} (my prog) S 1 {pid} {pid} 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 55 4096000 "
                            f"{rss_pages}\n")
    (d / "maps").write_text("00400000-00401000 r-xp 00000000 08:01 1234 /usr/bin/my prog\n"
                            "00601000-00602000 rw-p 00001000 08:01 1234 /usr/bin/my prog\n"
                            "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
                            "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0   [stack]\n")


def test_recorder_writes_damos_files_and_follows_the_targets(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _fake_proc(proc, 100, 50)
    (proc / "meminfo").parent.mkdir(exist_ok=True)
    (proc / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 400 kB\nMemAvailable: 500 kB\nBuffers: 1 kB\n"
                                  "Cached: 2 kB\n")
    out = str(tmp_path / "rec")
    recipe = Recipe(frozenset({"access", "mem_footprint", "vmas", "proc_stats"}))
    clock = iter(float(t) for t in range(1000, 2000))
    rec = ProfileRecorder(out, recipe, [100], Attrs(), interval_s=3600, clock=lambda: next(clock),
                          proc_root=str(proc))
    rec.start()  # the first sample at once
    _fake_proc(proc, 101, 20)
    # the session's first snapshot: a second target, and the intervals the source chose
    rec(SimpleNamespace(targets=[SimpleNamespace(pid=100), SimpleNamespace(pid=101)], sample_interval_us=10_000,
                        aggr_interval_us=200_000))
    rec.sample()
    for name in ("statm", "stat", "maps"):  # the first target exits: zero, as damo counts it
        (proc / "100" / name).unlink()
    rec.sample()
    rec.close()
    assert sorted(os.listdir(tmp_path)) == ["proc", "rec.kdamonds", "rec.mem_footprint", "rec.proc_stats", "rec.vmas"]
    fps = read_mem_footprints(out + ".mem_footprint")
    assert [s.time for s in fps] == [1000.0, 1001.0, 1002.0]
    assert [sorted(s.procs) for s in fps] == [[100], [100, 101], [100, 101]]
    assert fps[1].procs[100]["resident"] == 50 and fps[2].procs[100]["resident"] == 0
    assert fps[0].sys == {"total": 1000, "free": 400, "available": 500, "buffers": 1, "cached": 2}
    assert pr.footprint_dists(fps, "rss", sort=False, page_size=4096) == [50 * 4096, 70 * 4096, 20 * 4096]
    assert pr.footprint_dists(fps, "sys_used") == [600 * 1024] * 3
    vmas = read_vmas(out + ".vmas")
    v = vmas[0].procs[100]
    assert [x.pathname for x in v] == ["/usr/bin/my prog", "/usr/bin/my prog", "", "[stack]"]
    assert v[1].offset == 0x1000 and v[1].perms == "rw-p" and v[1].inode == 1234
    assert not vmas[0].without_offsets  # damon-bpf keeps the whole maps line
    # the data namer's view of the same file: per pid, (time, mappings, offsets_known)
    names = ["/usr/bin/my prog", "/usr/bin/my prog", "", "[stack]"]
    assert [(t, [x.pathname for x in m], k) for t, m, k in read_vmas_file(out + ".vmas")[101]] == \
        [(1001.0, names, True), (1002.0, names, True)]
    raw = json.loads(Path(out + ".vmas").read_text())
    # damo's "name": the last word of the line (the inode for an unnamed mapping)
    assert [x["name"] for x in raw[0]["procvmas"][0]["vmas"]] == ["prog", "prog", "0", "[stack]"]
    stats = read_proc_stats(out + ".proc_stats")
    assert stats[0].stats[0] is None  # this process is not in the fake /proc
    first = stats[0].stats[1]
    assert first is not None and first[1] == "(my prog)"
    assert stats[2].stats[1] is None and stats[2].stats[2] is not None
    (kd,) = read_kdamonds(out + ".kdamonds")
    ctx = kd["contexts"][0]
    assert kd["pid"] == os.getpid() and ctx["ops"] == "vaddr"
    assert [t["pid"] for t in ctx["targets"]] == [100, 101]
    assert ctx["intervals"]["sample_us"] == 10_000 and ctx["intervals"]["aggr_us"] == 200_000
    for p in (tmp_path / n for n in os.listdir(tmp_path) if n.startswith("rec")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


@pytest.mark.skipif(DAMO_DIR is None, reason="damo (a test dependency) is not installed")
def test_damo_reads_our_files_and_we_read_damos(tmp_path: Path) -> None:
    # damo 3.4.3's own loader and classes (src/_damo_records.py, src/_damon.py) on our files, and back
    assert DAMO_DIR is not None
    sys.path.insert(0, str(DAMO_DIR))
    try:
        import _damo_records  # type: ignore[import-not-found]
        import _damon  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DAMO_DIR))
    out = str(tmp_path / "rec")
    rec = ProfileRecorder(out, Recipe(frozenset({"access", "mem_footprint", "vmas", "proc_stats"})), [os.getpid()],
                          Attrs(), interval_s=3600)
    rec.start()
    rec.sample()
    rec.close()
    theirs = _damo_records.load_mem_footprint(out + ".mem_footprint")
    ours = read_mem_footprints(out + ".mem_footprint")
    assert [s.time for s in theirs] == [s.time for s in ours]
    assert theirs[0].footprints[os.getpid()].resident == ours[0].procs[os.getpid()]["resident"]
    assert theirs[0].footprints[None].total == ours[0].sys["total"]  # type: ignore[index]
    kds = [_damon.Kdamond.from_kvpairs(k) for k in read_kdamonds(out + ".kdamonds")]
    assert kds[0].contexts[0].targets[0].pid == os.getpid()
    assert kds[0].contexts[0].intervals.sample == 5000
    # damo's own writer, read by ours
    snaps = [_damo_records.MemFootprintsSnapshot([os.getpid()])]
    _damo_records.save_mem_footprint(snaps, str(tmp_path / "d.mem_footprint"), 0o600)
    (s,) = read_mem_footprints(str(tmp_path / "d.mem_footprint"))
    assert s.procs[os.getpid()]["size"] > 0 and s.sys is not None
    vs = [_damo_records.ProcVmasSnapshot([os.getpid()])]
    _damo_records.save_proc_vmas(vs, str(tmp_path / "d.vmas"), 0o600)
    (v,) = read_vmas(str(tmp_path / "d.vmas"))
    assert any(x.pathname == "[stack]" for x in v.procs[os.getpid()])
    assert all(x.pathname == "" for x in v.procs[os.getpid()] if x.pathname.isdigit())
    assert v.without_offsets == {os.getpid()}  # damo keeps start, end and the last word only


def test_kdamonds_carry_the_schemes() -> None:
    from damon_bpf.config.schemes import schemes_from_cli

    attrs = Attrs()
    schemes = schemes_from_cli([("--damos_action", ["stat"]), ("--damos_age", ["1s", "max"])], attrs)
    (kd,) = kdamonds_kvpairs([5], attrs, schemes, pid=9)
    (s,) = kd["contexts"][0]["schemes"]
    assert s["action"] == "stat" and s["access_pattern"]["age"]["min"] == "1 s"


# -- reports -------------------------------------------------------------------------------------------------


def _record(tid: int, nr: int, t0: int = 10**18, hot_from: int = 0) -> Record:
    snaps = []
    for i in range(nr):
        k = 3 + i % 4
        start = np.arange(k, dtype=np.int64) * 4096 + (1 << 30)
        snaps.append(RecordSnapshot(t0 + i * 100_000_000, t0 + (i + 1) * 100_000_000, start, start + 4096,
                                    np.array([20 if i >= hot_from else 0] + [0] * (k - 1), np.int64),
                                    np.array([0] + [i] * (k - 1), np.int64)))
    return Record(tid, Intervals(5000, 100_000), snaps)


def test_nr_regions_counts_a_short_record_whole_and_says_so() -> None:
    long, short = _record(0, 30), _record(1, 5)
    nr = pr.nr_regions_dists([long, short])
    assert nr.dists[0] == sorted(3 + i % 4 for i in range(20, 30))
    assert nr.dists[1] == sorted(3 + i % 4 for i in range(5))
    assert nr.notes == ["target 1: 5 snapshots, not more than 20: all of them counted (damo's nr_regions fails "
                        "on this record)"]
    lines = pr.format_nr_regions(nr, [0, 50, 100])
    assert lines[:5] == ["# <percentile> <# regions>", "# target_id\t0", "# avr:\t4", "0\t3", "50\t4"]


def test_times_join_consecutive_snapshots_and_filter_by_pattern() -> None:
    rec = _record(0, 10, hot_from=6)
    assert pr.snapshot_times([rec]) == [(10**18, 10**18 + 10 * 100_000_000)]
    hot = pr.RegionFilter(access_rate_pct=(50.0, 100.0))
    assert pr.snapshot_times([rec], hot) == [(10**18 + 6 * 100_000_000, 10**18 + 10 * 100_000_000)]
    old = pr.RegionFilter(age_us=(300_000, 2**64 - 1), addresses=[((1 << 30) + 4096, (1 << 30) + 8192)])
    assert pr.snapshot_times([rec], old)[0][0] == 10**18 + 3 * 100_000_000
    assert pr.format_times([(1796587926654405000, 1796587928466922999)]) == [
        "1796587926.654405-1796587928.466923", "# (seconds)"]


def test_holistic_text_without_footprints_or_profile_says_what_is_missing() -> None:
    rec = _record(0, 30, hot_from=10)
    lines = pr.format_holistic([rec], None, None, notes=["no memory footprints: x"])
    assert lines[0] == "# Heatmap" and lines[1] == "# target 0, address range %d-%d" % (1 << 30, (1 << 30) + 6 * 4096)
    assert any(ln.startswith("       wss ") for ln in lines) and not any("rss" in ln for ln in lines)
    assert "# no memory footprints: x" in lines and "# Hotspot functions" not in lines
    fp = MemFootprint(1.0, {1: {"size": 10, "resident": 5, "shared": 0, "trs": 0, "lrs": 0, "drs": 0, "dt": 0}},
                      {"total": 100, "free": 50, "available": 0, "buffers": 0, "cached": 0})
    lines = pr.format_holistic([rec], [fp], ["top function"])
    rss = format_bytes(5 * os.sysconf("SC_PAGE_SIZE"))  # 5 pages at every percentile
    assert "       rss " + "%15s " % rss * 5 in lines
    assert "  sys_used " + "     50.000 KiB " * 5 in lines
    assert lines[-2:] == ["# Hotspot functions", "top function"]


def test_perf_report_of_a_missing_profile_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidParamsError, match="no such file .*cpu_profile"):
        pr.perf_report(str(tmp_path / "nothing.profile"), "perf")
