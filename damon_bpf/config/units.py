"""damo's value grammar for sizes, times and ratios (``src/_damo_fmt_str.py``).

One parser serves the CLI, JSON configs and record files: plain numbers are taken in the unit the field
expects, and human-formatted strings carry their own unit (``5ms``, ``1 GiB``, ``4%``). Commas are ignored and
``min``/``max`` mean 0 and 2**64-1, as in damo.
"""

from __future__ import annotations

import argparse
import math
import re

from damon_bpf.errors import InvalidParamsError

__all__ = (
    "U64_MAX",
    "text_to_bytes",
    "text_to_us",
    "text_to_ms",
    "text_to_ns",
    "text_to_sec",
    "text_to_percent",
    "text_to_permil",
    "text_to_bp",
    "text_to_bool",
    "format_bytes",
    "format_time_us",
    "positive_int",
    "nonnegative_int",
)

U64_MAX = 2**64 - 1

_SIZE_UNITS = {
    "b": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
    "p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50,
    "e": 1 << 60, "eb": 1 << 60, "eib": 1 << 60,
}
_TIME_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "sec": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "min": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}
_NUM_UNIT = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z%]*)")


def _special(text: str) -> int | None:
    if not isinstance(text, str):  # e.g. argparse's [] for `--opt=--` (Python < 3.12)
        raise InvalidParamsError(f"invalid value: {text!r}")
    t = text.strip().lower()
    if t == "min":
        return 0
    if t == "max":
        return U64_MAX
    return None


def _int(x: float, text: object, what: str) -> int:
    # a finite number to int; infinity (1e400) and NaN are one-line input errors, not OverflowError/ValueError
    if not math.isfinite(x):
        raise InvalidParamsError(f"invalid {what} value: {text!r} (not a finite number)")
    return int(x)


def _pairs(text: str, what: str) -> list[tuple[float, str]]:
    s = str(text).replace(",", "").strip()
    if not s:
        raise InvalidParamsError(f"empty {what} value")
    pos = 0
    out: list[tuple[float, str]] = []
    while pos < len(s):
        m = _NUM_UNIT.match(s, pos)
        if not m or m.end() == pos:
            raise InvalidParamsError(f"invalid {what} value: {text!r}")
        out.append((float(m.group(1)), m.group(2).lower()))
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
    return out


def text_to_bytes(text: str | int | float) -> int:
    """Parse a size (binary suffixes: ``4KiB``, ``1.5 G``); a bare number is in bytes."""
    if isinstance(text, (int, float)):
        return _int(text, text, "size")
    sp = _special(text)
    if sp is not None:
        return sp
    total = 0.0
    for num, unit in _pairs(text, "size"):
        if unit == "":
            total += num
        elif unit in _SIZE_UNITS:
            total += num * _SIZE_UNITS[unit]
        else:
            raise InvalidParamsError(f"invalid size unit {unit!r} in {text!r}")
    return _int(total, text, "size")


def _text_to_time(text: str | int | float, unit_ns: int, default_ns: int) -> int:
    if isinstance(text, (int, float)):
        return _int(text * default_ns // unit_ns, text, "time")
    sp = _special(text)
    if sp is not None:
        return sp
    total_ns = 0.0
    for num, unit in _pairs(text, "time"):
        if unit == "":
            total_ns += num * default_ns
        elif unit in _TIME_UNITS_NS:
            total_ns += num * _TIME_UNITS_NS[unit]
        else:
            raise InvalidParamsError(f"invalid time unit {unit!r} in {text!r}")
    _int(total_ns, text, "time")  # refuses infinity
    return int(round(total_ns / unit_ns))


def text_to_ns(text: str | int | float) -> int:
    """Parse a time into ns; a bare number is in ns."""
    return _text_to_time(text, 1, 1)


def text_to_us(text: str | int | float) -> int:
    """Parse a time into µs; a bare number is in µs (damo's ``--monitoring_intervals`` convention)."""
    return _text_to_time(text, 1_000, 1_000)


def text_to_ms(text: str | int | float) -> int:
    """Parse a time into ms; a bare number is in ms."""
    return _text_to_time(text, 1_000_000, 1_000_000)


def text_to_sec(text: str | int | float) -> float:
    """Parse a time into seconds (float); a bare number is in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    sp = _special(text)
    if sp is not None:
        return float(sp)
    return _text_to_time(text, 1, 1_000_000_000) / 1e9


def _ratio(text: str | int | float, scale: int, name: str) -> int:
    if isinstance(text, (int, float)):
        return _int(text, text, name)
    s = str(text).replace(",", "").strip()
    try:
        if s.endswith("%"):
            return int(round(float(s[:-1]) * scale / 100))
        if s.endswith("bp"):
            return int(round(float(s[:-2]) * scale / 10000))
        return int(round(float(s)))
    except (ValueError, OverflowError) as err:  # OverflowError: 1e400
        raise InvalidParamsError(f"invalid {name} value: {text!r}") from err


def text_to_percent(text: str | int | float) -> int:
    """Parse a percentage (``10%`` or ``10``)."""
    return _ratio(text, 100, "percent")


def text_to_permil(text: str | int | float) -> int:
    """Parse a permil value (``10%`` is 100)."""
    return _ratio(text, 1000, "permil")


def text_to_bp(text: str | int | float) -> int:
    """Parse basis points (``4%`` is 400)."""
    return _ratio(text, 10000, "bp")


def text_to_bool(text: str | bool) -> bool:
    """Parse y/yes/true/n/no/false."""
    if isinstance(text, bool):
        return text
    t = text.strip().lower()
    if t in ("y", "yes", "true", "1", "on"):
        return True
    if t in ("n", "no", "false", "0", "off"):
        return False
    raise InvalidParamsError(f"invalid boolean value: {text!r}")


def format_bytes(nr_bytes: int | float, raw: bool = False) -> str:
    """damo's ``format_sz``: ``4.000 KiB``, ``1.625 GiB``; a unit is used only for sizes *above* it, so 1024
    bytes print as ``1024 B`` and 1 MiB as ``1024.000 KiB``, exactly as damo prints them. *raw* gives the plain
    number (damo's ``--raw``); negative sizes (differences) get a sign."""
    if raw:
        return "%d" % nr_bytes
    if nr_bytes == U64_MAX:
        return "max"
    if nr_bytes < 0:
        return "-" + format_bytes(-nr_bytes)
    sz = float(nr_bytes)
    for unit, size in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30),
                       ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if sz > size:
            return f"{sz / size:.3f} {unit}"
    return "%d B" % sz


def format_time_us(us: int | float) -> str:
    """Format a duration given in µs (``5 ms``, ``1.500 s``)."""
    if us >= 60_000_000:
        return f"{us / 60_000_000:.3f} m"
    if us >= 1_000_000:
        return f"{us / 1_000_000:.3f} s"
    if us >= 1000:
        v = us / 1000
        return f"{v:g} ms" if v == int(v) else f"{v:.3f} ms"
    return f"{us:g} us"


# -- argparse types for counts (the options of every layer that adds its own: commands, access sources) --------


def _int_arg(text: str, minimum: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts that must be 1 or more (``--every``): a one-line error otherwise."""
    return _int_arg(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse ``type=`` for counts where 0 means "none" or "default" (``--rows``, ``--rate-limit``)."""
    return _int_arg(text, 0, "0 or more")
