"""damon_bpf.linux.sysfs: the kernel's list format and PMU format specs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damon_bpf.errors import InvalidParamsError, NotSupportedError
from damon_bpf.linux.sysfs import format_list, parse_list, parse_pmu_format, parse_ranges, place_pmu_format


@pytest.mark.parametrize(
    "text, values",
    [
        ("", ()),
        ("\n", ()),
        ("0", (0,)),
        ("0\n", (0,)),
        ("0-3", (0, 1, 2, 3)),
        ("0-3,5\n", (0, 1, 2, 3, 5)),
        ("0-2,5", (0, 1, 2, 5)),
        ("5,0-1", (0, 1, 5)),  # sorted
        ("1,1-2", (1, 2)),  # distinct
        ("7-7", (7,)),
        ("0-1,16-17\n", (0, 1, 16, 17)),
    ],
)
def test_parse_list(text: str, values: tuple[int, ...]) -> None:
    assert parse_list(text) == values


def test_parse_list_of_nodes() -> None:
    # node/has_memory masks (moved from tests/unit/ops/test_damos_ops.py)
    assert parse_list("0") == (0,) and parse_list("0-2,5\n") == (0, 1, 2, 5)
    assert parse_list("") == ()


@pytest.mark.parametrize("text", ["a", "1,,2", ",1", "1,", "3-1", "-1", "1-", "0x1", "1 2", "1-2-3"])
def test_parse_list_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_list(text)


def test_parse_ranges_keeps_order() -> None:
    assert parse_ranges("32-35,0-7\n") == [(32, 35), (0, 7)]
    assert parse_ranges("") == []


@pytest.mark.parametrize(
    "values, text",
    [((), ""), ((0,), "0"), ((0, 1, 2, 3), "0-3"), ((0, 1, 2, 3, 8), "0-3,8"), ((8, 0, 2, 1, 3, 3), "0-3,8"),
     ((1, 3, 5), "1,3,5"), ((0, 1, 10, 11, 12), "0-1,10-12")],
)
def test_format_list(values: tuple[int, ...], text: str) -> None:
    assert format_list(values) == text


def test_format_list_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_list([-1])


@given(st.sets(st.integers(min_value=0, max_value=300)))
def test_list_round_trip(values: set[int]) -> None:
    text = format_list(values)
    assert parse_list(text) == tuple(sorted(values))
    assert parse_list(text + "\n") == tuple(sorted(values))


def test_parse_pmu_format() -> None:
    assert parse_pmu_format("config:0-7\n") == ("config", [(0, 7)])
    assert parse_pmu_format("config1:0-15") == ("config1", [(0, 15)])
    assert parse_pmu_format("config:0-7,32-35") == ("config", [(0, 7), (32, 35)])
    assert parse_pmu_format("config2:0") == ("config2", [(0, 0)])
    for bad in ("config:", "config3:0-7", "config:7-0", "config:0-64", "event:0-7", ""):
        with pytest.raises(NotSupportedError, match="sysfs format|bit range"):
            parse_pmu_format(bad, "cpu/format/x")


def test_place_pmu_format() -> None:
    words = {"config": 0, "config1": 0, "config2": 0}
    place_pmu_format(words, "config:0-7", 0xCD)
    place_pmu_format(words, "config:8-15", 0x1)
    place_pmu_format(words, "config1:0-15", 3)
    assert words == {"config": 0x1CD, "config1": 3, "config2": 0}
    place_pmu_format(words, "config:0-7", 0xD0)  # replaces what was there
    assert words["config"] == 0x1D0
    split = {"config": 0}
    place_pmu_format(split, "config:0-7,32-35", 0xABC)  # low bits to the first range
    assert split["config"] == 0xBC | (0xA << 32)
    with pytest.raises(InvalidParamsError, match="does not fit in 8 bit"):
        place_pmu_format(words, "config:0-7", 0x100)
    with pytest.raises(InvalidParamsError):
        place_pmu_format(words, "config:0-7", -1)
