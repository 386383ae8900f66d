"""Probe hits in records (damo's region kvpairs ``probe_hits``): the writer, the journal recovery and the reader
keep them; the option parser of ``--probe_filter``/``--nr_probe_filters``/``--probe_weight``."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from damon_bpf.config.probes import probe_filter_from_words, probes_from_options
from damon_bpf.engine import Attrs, Snapshot, TargetSnapshot
from damon_bpf.errors import InvalidParamsError
from damon_bpf.results.records import RecordWriter, read_records, records_to_kvpairs
from damon_bpf.results.records.readers import _parse_probe_hits


def _snap(i: int, hits: list[list[int]] | None) -> Snapshot:
    start = np.array([0x1000, 0x5000], dtype=np.int64)
    end = np.array([0x5000, 0x9000], dtype=np.int64)
    nr = np.array([i % 20, 0], dtype=np.int64)
    age = np.array([i, i], dtype=np.int64)
    ph = np.array(hits, dtype=np.int64) if hits is not None else None
    t = TargetSnapshot(4242, start, end, nr, age, nr * 10000, nr, 0, ph)
    return Snapshot(10**9 + i * 10**8, 10**9, 20 * (i + 1), 5000, 100000, 20, (t,))


def test_probe_hits_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "p.data")
    w = RecordWriter(path, attrs=Attrs(), rewrite_interval_s=0.0)
    for i in range(3):
        w(_snap(i, [[20, i], [0, 3]]))
    w.close()
    kv = json.loads(zlib.decompress(Path(path).read_bytes()))
    assert kv[0]["snapshots"][2]["regions"][0]["probe_hits"] == [20, 2]
    assert kv[0]["snapshots"][2]["regions"][1]["probe_hits"] == [0, 3]
    recs = read_records(path)
    ph = recs[0].snapshots[1].probe_hits
    assert ph is not None and ph.tolist() == [[20, 1], [0, 3]]
    # and back out again (damon-bpf's own report writer path)
    again = records_to_kvpairs(recs)
    assert again[0]["snapshots"][1]["regions"][1]["probe_hits"] == [0, 3]


def test_no_probes_writes_empty_lists(tmp_path: Path) -> None:
    path = str(tmp_path / "n.data")
    w = RecordWriter(path, attrs=Attrs(), rewrite_interval_s=0.0)
    w(_snap(0, None))
    w.close()
    kv = json.loads(zlib.decompress(Path(path).read_bytes()))
    assert kv[0]["snapshots"][0]["regions"][0]["probe_hits"] == []
    assert read_records(path)[0].snapshots[0].probe_hits is None


def test_reader_refuses_ragged_probe_hits() -> None:
    with pytest.raises(ValueError):
        _parse_probe_hits([{"probe_hits": [1]}, {"probe_hits": [1, 2]}])
    with pytest.raises(ValueError):
        _parse_probe_hits([{"probe_hits": [1] * 5}])


def test_probe_filter_words() -> None:
    f = probe_filter_from_words(["reject", "non", "hugepage_size", "2M", "2M"])
    assert (f.type, f.allow, f.matching, f.min_sz, f.max_sz) == ("hugepage_size", False, False, 2 << 20, 2 << 20)
    assert probe_filter_from_words(["allow", "memcg", "/a/b"]).memcg_path == "/a/b"
    assert probe_filter_from_words(["allow", "node", "1"]).node == 1
    for bad in (["anon"], ["permit", "anon"], ["allow", "non"], ["allow", "nope"], ["allow", "memcg"],
                ["allow", "hugepage_size", "4M", "2M"], ["allow", "node", "x"], ["allow", "anon", "extra"]):
        with pytest.raises(InvalidParamsError):
            probe_filter_from_words(bad)


def test_probes_from_options() -> None:
    probes = probes_from_options([["allow", "anon"], ["allow", "written"], ["reject", "file"]], [1, 2])
    assert [[f.type for f in p.filters] for p in probes] == [["anon"], ["written", "file"]]
    assert [p.weight for p in probes] == [0, 0]
    assert len(probes_from_options([["allow", "anon"], ["allow", "written"]])) == 1  # default: one probe
    assert probes_from_options(None) == []
    with pytest.raises(InvalidParamsError, match="mismatches"):
        probes_from_options([["allow", "anon"]], [2])
    with pytest.raises(InvalidParamsError, match="at most 4"):
        probes_from_options([["allow", "anon"]] * 5, [1] * 5)
    with pytest.raises(InvalidParamsError, match="weight"):
        probes_from_options([["allow", "anon"]], [1], [[1, 2]])
    with pytest.raises(InvalidParamsError, match="attributes-only"):
        probes_from_options([["allow", "anon"]], [1], [[3]])
