from __future__ import annotations

import pytest

from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import (
    U64_MAX,
    format_bytes,
    text_to_bool,
    text_to_bp,
    text_to_bytes,
    text_to_ms,
    text_to_percent,
    text_to_sec,
    text_to_us,
)


@pytest.mark.parametrize("text, expect", [
    ("4KiB", 4096), ("4K", 4096), ("1.5 GiB", 3 << 29), ("4,294,967,296", 1 << 32), ("max", U64_MAX),
    ("min", 0), (123, 123), ("10 B", 10),
])
def test_text_to_bytes(text: str, expect: int) -> None:
    assert text_to_bytes(text) == expect


@pytest.mark.parametrize("text, expect", [
    ("5ms", 5000), ("1s", 1_000_000), ("100", 100), ("8 m 13 s 438 ms", 493_438_000), ("250us", 250),
    ("1.5s", 1_500_000),
])
def test_text_to_us(text: str, expect: int) -> None:
    assert text_to_us(text) == expect


def test_other_units() -> None:
    assert text_to_ms("2s") == 2000
    assert text_to_sec("2m") == 120.0
    assert text_to_sec("1.5") == 1.5
    assert text_to_bp("4%") == 400
    assert text_to_percent("10%") == 10
    assert text_to_bool("yes") and not text_to_bool("n")
    assert format_bytes(4096) == "4.000 KiB" and format_bytes(U64_MAX) == "max"


@pytest.mark.parametrize("bad", ["5xs", "", "abc", "1..2s"])
def test_bad_times(bad: str) -> None:
    with pytest.raises(InvalidParamsError):
        text_to_us(bad)
