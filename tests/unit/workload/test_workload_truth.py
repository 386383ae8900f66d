"""Reading ground-truth files back and asking what was hot when."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.workload.truth import TruthWriter, hot_ranges_at, load_truth, phase_at

_START = {
    "type": "start", "pid": 42, "time": 10.0, "page_size": 4096, "threads": 2, "pattern": "t", "seed": 7,
    "regions": [
        {"name": "a", "start": 0x1000, "end": 0x3000, "file_backed": False},
        {"name": "b", "start": 0x8000, "end": 0x9000, "file_backed": True},
    ],
}


def _phase(name: str, start: float, end: float, hot: set[str]) -> dict[str, Any]:
    regions = []
    for r in _START["regions"]:  # type: ignore[attr-defined]
        h = r["name"] in hot
        regions.append({
            "name": r["name"], "start": r["start"], "end": r["end"], "hot": h,
            "pattern": "random" if h else None, "access": "read" if h else None,
            "nr_touches": 100 if h else 0, "touches_per_sec": 100.0 / (end - start) if h else 0.0,
        })
    return {"type": "phase", "name": name, "start": start, "end": end, "regions": regions}


def _write(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    w = TruthWriter(path)
    for r in records:
        w.write(r)
    w.close()
    w.close()
    if tail:
        with open(path, "a") as f:
            f.write(tail)
    return path


def test_roundtrip(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.jsonl", [
        _START, _phase("p0", 10.0, 11.0, {"b"}), _phase("p1", 11.001, 12.0, {"a", "b"}), {"type": "end", "time": 12.5},
    ])
    t = load_truth(f)
    assert t.start.pid == 42 and t.start.threads == 2 and t.start.seed == 7
    assert [(r.name, r.start, r.end, r.file_backed) for r in t.start.regions] == [
        ("a", 0x1000, 0x3000, False), ("b", 0x8000, 0x9000, True)]
    assert [p.name for p in t.phases] == ["p0", "p1"]
    assert t.end_time == 12.5
    assert t.phases[0].regions[0].hot is False and t.phases[0].regions[1].nr_touches == 100

    assert hot_ranges_at(t, 9.0) == []
    assert hot_ranges_at(t, 10.0) == [(0x8000, 0x9000)]
    assert hot_ranges_at(t, 10.5) == [(0x8000, 0x9000)]
    assert hot_ranges_at(t, 11.0005) == []  # between phases
    assert hot_ranges_at(t, 11.5) == [(0x1000, 0x3000), (0x8000, 0x9000)]
    assert hot_ranges_at(t.phases, 11.5) == [(0x1000, 0x3000), (0x8000, 0x9000)]
    assert hot_ranges_at(t, 12.0) == []
    p = phase_at(t, 11.2)
    assert p is not None and p.name == "p1"


def test_running_file_partial_last_line(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.jsonl", [_START, _phase("p0", 10.0, 11.0, {"a"})], tail='{"type": "pha')
    t = load_truth(f)
    assert len(t.phases) == 1 and t.end_time is None


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([], "no start record"),
        (["{oops"], "not a JSON record"),
        ([json.dumps(_phase("p", 1, 2, set()))], "before the start record"),
        ([json.dumps(_START), json.dumps(_START)], "second start"),
        ([json.dumps(_START), '{"type": "weird"}'], "unknown record type"),
        ([json.dumps({**_START, "pid": "x"})], "bad 'pid'"),
        ([json.dumps({k: v for k, v in _START.items() if k != "regions"})], "missing key 'regions'"),
    ],
)
def test_bad_truth(tmp_path: Path, lines: list[str], match: str) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(InvalidParamsError, match=match):
        load_truth(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidParamsError, match="cannot read truth"):
        load_truth(tmp_path / "none")
