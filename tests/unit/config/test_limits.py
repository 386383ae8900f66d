"""The bounded readers of damon_bpf.config.limits: regular files only, size caps, decompression caps, JSON depth
(issue #17, item 4)."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from damon_bpf.config import limits
from damon_bpf.config.limits import JsonDepth, check_json_depth, inflate, json_loads, read_regular
from damon_bpf.errors import InvalidParamsError


def test_read_regular_refuses_what_it_cannot_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidParamsError, match="a FIFO, not a regular file"):
        read_regular(str(fifo))  # no writer: a blocking open would wait forever
    with pytest.raises(InvalidParamsError, match="a character device, not a regular file"):
        read_regular("/dev/zero")
    with pytest.raises(InvalidParamsError, match="a directory, not a regular file"):
        read_regular(str(tmp_path))
    with pytest.raises(InvalidParamsError, match="No such file"):
        read_regular(str(tmp_path / "none"))
    with pytest.raises(InvalidParamsError, match="cannot read"):
        read_regular("a\0b")


def test_read_regular_size_cap(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    assert read_regular(str(p), 100) == b"x" * 100
    with pytest.raises(InvalidParamsError, match="larger than the 99 B a record file may have"):
        read_regular(str(p), 99, "record file")


def _true_max_depth(text: str) -> int:
    # a plain character-by-character JSON scanner
    depth = best = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth -= 1
    return best


_json = st.recursive(st.none() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(alphabet='[{"\\k', max_size=4), c,
                                                                         max_size=3), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(obj=_json, step=st.integers(1, 9))
def test_json_depth_matches_a_plain_scanner_in_any_pieces(obj: object, step: int) -> None:
    text = json.dumps(obj)
    want = _true_max_depth(text)
    data = text.encode()
    for limit in {max(want - 1, 0), want}:
        d = JsonDepth("t", limit)
        try:
            for i in range(0, len(data), step):
                d.feed(data[i:i + step])
        except InvalidParamsError:
            assert limit < want
        else:
            assert limit >= want


def test_depth_limit_and_json_loads() -> None:
    check_json_depth("[" * 64 + "]" * 64, "t")
    with pytest.raises(InvalidParamsError, match="t: JSON nested deeper than 64 levels"):
        check_json_depth("[" * 65 + "]" * 65, "t")
    with pytest.raises(InvalidParamsError, match="nested deeper"):
        json_loads("[" * 100_000, "t")  # RecursionError before this check
    assert json_loads('{"a": ["[[[[", 1]}', "t") == {"a": ["[[[[", 1]}
    with pytest.raises(InvalidParamsError, match="t: not JSON"):
        json_loads("[1,", "t")
    with pytest.raises(InvalidParamsError, match="t: not UTF-8"):
        json_loads(b"[\"\xff\"]", "t")
    with pytest.raises(InvalidParamsError, match="t: not JSON"):
        json_loads("1" * 5000, "t")  # more digits than int() converts


def test_inflate_round_trip_and_corruption() -> None:
    text = json.dumps([{"a": list(range(1000))}]).encode()
    assert inflate(zlib.compress(text), "f", json_text=True) == text
    assert inflate(gzip.compress(text) + gzip.compress(b" "), "f", gzip=True) == text + b" "
    with pytest.raises(InvalidParamsError, match="f: corrupt zlib data"):
        inflate(zlib.compress(text)[:-20], "f")
    with pytest.raises(InvalidParamsError, match="f: corrupt zlib data"):
        inflate(b"\x78\x9c\x00\x01garbage", "f")
    with pytest.raises(InvalidParamsError, match="f: the zlib data is not JSON"):
        inflate(zlib.compress(b"\0" * 1000), "f", json_text=True)
    with pytest.raises(InvalidParamsError, match="f: JSON nested deeper than 64"):
        inflate(zlib.compress(b"[" * 100), "f", json_text=True)


def _bomb(byte: bytes, nr_mib: int, head: bytes = b"") -> bytes:
    c = zlib.compressobj(9)
    out = [c.compress(head)]
    block = byte * (1 << 20)
    out += [c.compress(block) for _ in range(nr_mib)]
    return b"".join(out) + c.flush()


def test_inflate_stops_a_bomb_at_the_ratio_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "RATIO_FREE_BYTES", 1 << 20)
    bomb = _bomb(b" ", 64, b"[")  # 64 MiB of valid JSON prefix in about 64 KiB
    with pytest.raises(InvalidParamsError, match="inflates more than 200 times .*decompression bomb"):
        inflate(bomb, "b", json_text=True)


def test_inflate_stops_at_the_size_cap() -> None:
    data = zlib.compress(os.urandom(1 << 16))  # incompressible: the ratio cap does not apply
    with pytest.raises(InvalidParamsError, match="inflates past 32 KiB"):
        inflate(data, "b", limit=32 << 10)
