"""The pure parts of per-thread attribution: region_top (ops/threads.py), the FILE.threads sidecar and the
report (results/threads.py), and --writes-only's parsing (the source descriptors, ops/sources/)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.ops import sources
from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.ops.threads import ThreadWindow, region_top
from damon_bpf.results.threads import ThreadsWriter, read_threads, spread_events, thread_report, threads_path


def _win() -> ThreadWindow:
    # drained regions [0,10) [10,20) [20,30) [30,40); snapshot regions merge the first two
    starts = np.array([0, 10, 20, 30], np.int64)
    ends = starts + 10
    rows = np.array([[0, 7, 5], [1, 7, 4], [1, 8, 6], [2, 8, 3], [3, 9, 1]], np.int64)
    cpu = np.array([[1, 0, 3, 0], [2, 2, 0, 0]], np.int64)
    return ThreadWindow(starts, ends, rows, cpu)


def test_region_top_sums_merged_regions_and_orders_by_events() -> None:
    threads, cpus = region_top(_win(), [0, 20, 30], [20, 30, 40], top=4)
    assert threads == [[(7, 9), (8, 6)], [(8, 3)], [(9, 1)]]
    assert cpus == [[(1, 4), (0, 1)], [(0, 3)], []]


def test_region_top_is_bounded_and_skips_uncovered() -> None:
    threads, cpus = region_top(_win(), [0], [20], top=1)
    assert threads == [[(7, 9)]] and cpus == [[(1, 4)]]
    threads, _ = region_top(_win(), [100], [200])
    assert threads == [[]]


def test_window_tuples() -> None:
    w = _win()
    assert w.thread_tuples()[0] == (0, 10, 7, 5)
    assert sorted(w.cpu_tuples()) == [(0, 10, 0, 1), (0, 10, 1, 2), (10, 20, 1, 2), (20, 30, 0, 3)]


def test_spread_events_counts_partial_overlap_in_proportion() -> None:
    out = spread_events(np.array([0, 100]), np.array([100, 200]), [(50, 150, 10), (0, 100, 4)])
    assert out.tolist() == [9.0, 5.0]


def test_sidecar_round_trip_and_report(tmp_path: Path) -> None:
    rec = str(tmp_path / "r.data")
    with contextlib.closing(ThreadsWriter(threads_path(rec))) as w:
        w.write(1, 0, 42, [(0, 4096, 7, 90), (8192, 12288, 7, 10), (8192, 12288, 8, 50)], [(0, 4096, 1, 90)],
                comms={7: "worker", 8: "other"}, nodes={1: 0})
        w.write(2, 0, 42, [(0, 4096, 7, 5)], [], comms={7: "worker"})
        w.write(3, 0, 42, [], [])  # nothing: no line
    assert stat.S_IMODE(os.stat(threads_path(rec)).st_mode) == 0o600
    lines = read_threads(threads_path(rec))
    assert len(lines) == 2 and lines[0]["comms"] == {"7": "worker", "8": "other"} and "comms" not in lines[1]
    rep = thread_report(rec, top=1)  # no record: the sidecar's own ranges
    assert [(t.tid, t.comm, t.events) for t in rep.threads] == [(7, "worker", 105), (8, "other", 50)]
    assert (rep.threads[0].ranges[0].start, rep.threads[0].ranges[0].events) == (0, 95.0)
    assert rep.cpus[0].cpu == 1 and rep.cpus[0].node == 0 and rep.notes


def test_sidecar_reader_skips_bad_lines_and_refuses_missing(tmp_path: Path) -> None:
    p = tmp_path / "x.threads"
    p.write_text('{"threads": [[1, 2, "a", 4]]}\nnot json\n' + json.dumps({"threads": [[0, 10, 1, 2]]}) + "\n")
    assert len(read_threads(str(p))) == 1
    with pytest.raises(InvalidParamsError):
        thread_report(str(tmp_path / "none.data"))


@pytest.mark.parametrize("source, expect", [("fault", {"writes_only": True}), ("perf", {"writes_only": True}),
                                            ("pte", NotSupportedError), ("synthetic", InvalidParamsError)])
def test_writes_only_option(source: str, expect: object) -> None:
    parser = argparse.ArgumentParser()
    sources.add_source_arguments(parser)
    args = parser.parse_args(["--source", source, "--writes-only"])
    if isinstance(expect, dict):
        _, options = sources.source_from_args(args)
        assert options.writes_only is expect["writes_only"]  # type: ignore[attr-defined]
    else:
        with pytest.raises(expect):  # type: ignore[call-overload]
            sources.source_from_args(args)
    _, options = sources.source_from_args(parser.parse_args(["--source", "pte"]))
    assert not hasattr(options, "writes_only")
    # under --source auto it picks a source that counts writes
    desc, options = sources.source_from_args(parser.parse_args(["--writes-only"]))
    assert desc.counts_writes and options.writes_only  # type: ignore[attr-defined]
