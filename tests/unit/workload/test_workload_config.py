"""Workload config parsing and validation, and the built-in patterns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.workload.config import (
    BUILTIN_PATTERNS,
    PAGE_SIZE,
    Access,
    Pattern,
    PhaseAccess,
    PhaseSpec,
    RegionSpec,
    WorkloadConfig,
    builtin_pattern,
    config_from_dict,
    load_config,
)


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "regions": [{"name": "a", "size": "64MiB"}, {"name": "b", "size": 8192, "file_backed": True}],
        "phases": [
            {
                "name": "p0",
                "duration": "500ms",
                "regions": [
                    {"region": "a", "pattern": "sequential", "stride": "64", "weight": 3, "access": "write"},
                    {"region": "b"},
                ],
            },
            {"name": "idle", "duration": 2},
        ],
    }
    doc.update(over)
    return doc


def test_parse_full() -> None:
    cfg = config_from_dict(_doc(), default_name="x")
    assert cfg.name == "x"
    assert cfg.regions == (RegionSpec("a", 64 << 20), RegionSpec("b", 8192, file_backed=True))
    assert cfg.total_bytes == (64 << 20) + 8192
    p0, idle = cfg.phases
    assert p0.duration_s == pytest.approx(0.5)
    assert p0.accesses[0] == PhaseAccess("a", Pattern.SEQUENTIAL, 64, 3.0, Access.WRITE)
    # Defaults: random, one page stride, weight 1, read.
    assert p0.accesses[1] == PhaseAccess("b", Pattern.RANDOM, PAGE_SIZE, 1.0, Access.READ)
    assert idle.duration_s == 2.0 and idle.accesses == ()


def test_load_config_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(_doc()))
    assert load_config(f).name == "mine"
    f.write_text(json.dumps(_doc(name="named")))
    assert load_config(f).name == "named"


def test_size_rounded_up_to_pages() -> None:
    cfg = config_from_dict(_doc(regions=[{"name": "a", "size": "1000"}, {"name": "b", "size": "4KiB"}]))
    assert [r.size_bytes for r in cfg.regions] == [PAGE_SIZE, PAGE_SIZE]


@pytest.mark.parametrize("size", ["64XB", "", "lots", -5, 0, True, None, [1]])
def test_bad_size(size: Any) -> None:
    with pytest.raises(InvalidParamsError, match="region 'a'"):
        config_from_dict(_doc(regions=[{"name": "a", "size": size}, {"name": "b", "size": 4096}]))


def test_unknown_region_in_phase() -> None:
    doc = _doc(phases=[{"name": "p", "duration": 1, "regions": [{"region": "nope"}]}])
    with pytest.raises(InvalidParamsError, match=r"phase 'p': unknown region 'nope'"):
        config_from_dict(doc)


@pytest.mark.parametrize(
    ("access", "match"),
    [
        ({"region": "a", "pattern": "zigzag"}, "invalid pattern 'zigzag'"),
        ({"region": "a", "access": "exec"}, "invalid access 'exec'"),
        ({"region": "a", "weight": 0}, "weight must be positive"),
        ({"region": "a", "weight": "heavy"}, "weight must be a number"),
        ({"region": "b", "stride": "1MiB"}, "larger than the region"),
        ({"region": "a", "stride": 0}, "stride"),
        ({"region": "a", "speed": 3}, "unknown key"),
        ({"pattern": "random"}, "missing key"),
    ],
)
def test_bad_phase_access(access: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParamsError, match=match):
        config_from_dict(_doc(phases=[{"name": "p", "duration": 1, "regions": [access]}]))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"regions": []}, "at least one region"),
        ({"phases": []}, "at least one phase"),
        ({"regions": [{"name": "a", "size": 4096}, {"name": "a", "size": 4096}]}, "duplicate region"),
        ({"phases": [{"name": "p", "duration": 1}, {"name": "p", "duration": 1}]}, "duplicate phase"),
        ({"phases": [{"name": "p", "duration": 0}]}, "duration must be positive"),
        ({"phases": [{"name": "p", "duration": "soon"}]}, "phase 'p'"),
        ({"phases": [{"name": "p"}]}, "missing key"),
        ({"phases": [{"name": "p", "duration": 1, "regions": [{"region": "a"}, {"region": "a"}]}]}, "twice"),
        ({"regions": [{"name": "a", "size": 4096, "file_backed": "yes"}]}, "file_backed"),
        ({"extra": 1}, "unknown key"),
        ({"regions": {"a": 1}}, "expected a list"),
    ],
)
def test_bad_config(over: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParamsError, match=match):
        config_from_dict(_doc(**over))


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidParamsError, match="cannot read config"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidParamsError, match="not valid JSON.*line 1"):
        load_config(bad)
    bad.write_text("[]")
    with pytest.raises(InvalidParamsError, match="bad.json.*expected an object"):
        load_config(bad)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidParamsError, match="unknown region"):
        WorkloadConfig("w", (RegionSpec("a", PAGE_SIZE),), (PhaseSpec("p", 1.0, (PhaseAccess("x"),)),))
    with pytest.raises(InvalidParamsError, match="multiple of"):
        WorkloadConfig("w", (RegionSpec("a", 100),), (PhaseSpec("p", 1.0, ()),))


@pytest.mark.parametrize("name", BUILTIN_PATTERNS)
def test_builtin_patterns(name: str) -> None:
    cfg = builtin_pattern(name)
    assert cfg.name == name
    assert 0 < cfg.total_bytes < 512 << 20
    assert len(cfg.phases) >= 1
    names = {r.name for r in cfg.regions}
    for p in cfg.phases:
        assert p.duration_s >= 1.0
        assert {a.region for a in p.accesses} <= names


def test_builtin_shapes() -> None:
    stairs = builtin_pattern("stairs")
    assert len({r.size_bytes for r in stairs.regions}) == 1
    assert [[a.region for a in p.accesses] for p in stairs.phases] == [[r.name] for r in stairs.regions]
    zz = builtin_pattern("zigzag")
    assert all(a.pattern is Pattern.SEQUENTIAL for p in zz.phases for a in p.accesses)
    assert [p.accesses[0].region for p in zz.phases] == ["zz0", "zz1", "zz2", "zz3", "zz2", "zz1"]
    hc = builtin_pattern("hotcold")
    assert hc.region("hot").size_bytes == 16 << 20 and hc.region("cold").size_bytes == 256 << 20
    assert all(a.region == "hot" for p in hc.phases for a in p.accesses)


def test_scale() -> None:
    hc = builtin_pattern("hotcold", scale=0.25)
    assert hc.region("hot").size_bytes == 4 << 20
    assert hc.region("cold").size_bytes == 64 << 20
    tiny = builtin_pattern("stairs", scale=1e-9)
    assert all(r.size_bytes == PAGE_SIZE for r in tiny.regions)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidParamsError, match="scale"):
            builtin_pattern("hotcold", scale=bad)


def test_unknown_builtin() -> None:
    with pytest.raises(InvalidParamsError, match="unknown pattern 'nope'.*hotcold"):
        builtin_pattern("nope")


def test_file_backing() -> None:
    cfg = builtin_pattern("hotcold").with_file_backing()
    assert all(r.file_backed for r in cfg.regions)


def test_access_thread_parses_and_is_checked() -> None:
    from damon_bpf.workload.config import config_from_dict

    base = {"regions": [{"name": "a", "size": "4KiB"}], "phases": [{"name": "p", "duration": 1,
                                                                      "regions": [{"region": "a", "thread": 1}]}]}
    assert config_from_dict(base).phases[0].accesses[0].thread == 1
    for bad in (-1, True, "1", 5000):
        base["phases"][0]["regions"][0]["thread"] = bad  # type: ignore[index]
        with pytest.raises(InvalidParamsError, match="thread"):
            config_from_dict(base)
