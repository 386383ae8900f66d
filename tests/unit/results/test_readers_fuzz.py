"""Every file reader on random and truncated input: a typed error (a ``DamonBpfError``) or a valid result, never
another exception (issue #12). Record files (zlib JSON, plain JSON, journals), ``perf script`` text, ``perf
evlist`` text, DAMOS schemes JSON, and the perf-script records reader."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from damon_bpf.config.schemes import load_schemes, schemes_from_json
from damon_bpf.engine import Attrs, Snapshot, TargetSnapshot
from damon_bpf.errors import DamonBpfError
from damon_bpf.results.perfscript import parse_evlist, parse_script, script_fields
from damon_bpf.results.records import JOURNAL_SUFFIX, Record, RecordWriter, read_records

from .test_perfscript import EVLIST_CHAIN, SCRIPT_CHAIN

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _snap(i: int) -> Snapshot:
    start = np.array([0x1000, 0x5000], dtype=np.int64)
    end = np.array([0x5000, 0x9000], dtype=np.int64)
    nr = np.array([i % 20, 0], dtype=np.int64)
    age = np.array([i, i], dtype=np.int64)
    t = TargetSnapshot(4242, start, end, nr, age, nr * 10000, nr)
    return Snapshot(10**9 + i * 10**8, 10**9, 20 * (i + 1), 5000, 100000, 20, (t,))


def _valid_files(tmp: Path) -> tuple[bytes, bytes]:
    """A real record file and its journal (kept), written by the RecordWriter."""
    path = str(tmp / "valid.data")
    w = RecordWriter(path, attrs=Attrs(), rewrite_interval_s=0.0, keep_journal=True)
    for i in range(5):
        w(_snap(i))
    w.close()
    return Path(path).read_bytes(), Path(path + JOURNAL_SUFFIX).read_bytes()


def _read_or_typed_error(path: Path) -> None:
    try:
        recs = read_records(str(path))
    except DamonBpfError:
        return
    assert isinstance(recs, list) and all(isinstance(r, Record) for r in recs)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "random.data"
    p.write_bytes(data)
    _read_or_typed_error(p)


@FUZZ
@given(cut=st.floats(0, 1), flip=st.integers(0, 10**6), kind=st.sampled_from(["zlib", "json", "journal"]))
def test_truncated_and_corrupted_records(tmp_path: Path, cut: float, flip: int, kind: str) -> None:
    body, journal = _valid_files(tmp_path)
    raw = {"zlib": body, "json": zlib.decompress(body), "journal": journal}[kind]
    data = bytearray(raw[: int(len(raw) * cut)])
    if data and flip % 3 == 0:
        data[flip % len(data)] ^= 0x5A
    p = tmp_path / ("fuzz.journal" if kind == "journal" else "fuzz.data")
    p.write_bytes(bytes(data))
    _read_or_typed_error(p)


@FUZZ
@given(obj=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
                        max_leaves=20))
def test_json_records_of_any_shape(tmp_path: Path, obj: object) -> None:
    p = tmp_path / "shape.json"
    p.write_text(json.dumps(obj))
    _read_or_typed_error(p)


@FUZZ
@given(cut=st.integers(0, len(SCRIPT_CHAIN)), junk=st.text(max_size=40))
def test_perf_script_text(cut: int, junk: str) -> None:
    events = parse_evlist(EVLIST_CHAIN)
    fields = [f for f in script_fields(events) if f != "ip"] + ["ip"]
    text = SCRIPT_CHAIN[:cut] + junk
    for callchains in (True, False):
        try:
            s = parse_script(text, fields, events, callchains=callchains)
        except DamonBpfError:
            continue
        assert len(s.addr) == len(s.pid) == len(s.time_ns)


@FUZZ
@given(text=st.text(max_size=300))
def test_perf_evlist_text(text: str) -> None:
    events = parse_evlist(text)  # unparsable lines are skipped: always a list
    assert isinstance(events, list)


@FUZZ
@given(obj=st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=10),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(
                            st.sampled_from(["action", "access_pattern", "sz_bytes", "nr_accesses", "age", "min", "max",
                                             "quotas", "time_ms", "sz_bytes", "reset_interval_ms", "goals", "filters",
                                             "filter_type", "matching", "allow", "watermarks", "metric",
                                             "apply_interval_us", "schemes", "kdamonds", "contexts"]), c, max_size=5),
                        max_leaves=25))
def test_schemes_json(obj: object) -> None:
    try:
        schemes = schemes_from_json(obj, Attrs())
    except DamonBpfError:
        return
    assert isinstance(schemes, list)


@FUZZ
@given(text=st.text(max_size=200))
def test_schemes_text(text: str) -> None:
    try:
        load_schemes(text, Attrs())
    except DamonBpfError:
        pass
