"""Value formats of sysfs files, each parsed and encoded once.

- The kernel's list format (``bitmap_parselist()`` / ``%*pbl`` in ``lib/bitmap-str.c``): comma-separated
  decimal numbers and inclusive ``lo-hi`` ranges, e.g. ``"0-3,5"``, as in ``/sys/devices/system/cpu/online``,
  ``/sys/devices/system/node/has_memory`` and PMU ``cpus`` files (:func:`parse_list`, :func:`format_list`).
- PMU format specs (``/sys/bus/event_source/devices/<pmu>/format/<term>``, e.g. ``"config:0-7,32-35"``): which
  bits of which ``perf_event_attr`` config word a term occupies (:func:`parse_pmu_format`, :func:`place_pmu_format`;
  ``pmu_format_value()`` in tools/perf/util/pmu.c).
"""

from __future__ import annotations

import re
from typing import Iterable

from damon_bpf.errors import InvalidParamsError, NotSupportedError

__all__ = ("parse_ranges", "parse_list", "format_list", "parse_pmu_format", "place_pmu_format")

_U64 = (1 << 64) - 1
_RE_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_RE_PMU_FORMAT = re.compile(r"(?P<word>config[12]?):(?P<bits>\S+)")


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """The inclusive ``(lo, hi)`` ranges of a kernel list, in the order written: ``"0-3,5\\n"`` ->
    ``[(0, 3), (5, 5)]``; empty text (or only whitespace) -> ``[]``.

    :raises ValueError: a part is not ``N`` or ``N-M`` with ``N <= M`` (empty parts, as in ``"1,,2"``, too)
    """
    text = text.strip()
    if not text:
        return []
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        m = _RE_RANGE.fullmatch(part.strip())
        if m is None:
            raise ValueError(f"bad list element {part!r} in {text!r} (expected N or N-M)")
        lo = int(m[1])
        hi = int(m[2]) if m[2] is not None else lo
        if hi < lo:
            raise ValueError(f"bad range {part!r} in {text!r}: end before start")
        out.append((lo, hi))
    return out


def parse_list(text: str) -> tuple[int, ...]:
    """A kernel list (``"0"``, ``"0-3,5"``, ``"0-2,5\\n"``, empty) as its sorted distinct numbers.

    :raises ValueError: the text is not in the list format (see :func:`parse_ranges`)
    """
    out: set[int] = set()
    for lo, hi in parse_ranges(text):
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def format_list(values: Iterable[int]) -> str:
    """Numbers in the kernel's list format, as ``%*pbl`` prints them: sorted, runs as ``lo-hi``:
    ``(0, 1, 2, 3, 8)`` -> ``"0-3,8"``; nothing -> ``""`` (no trailing newline).

    :raises ValueError: a number is negative
    """
    runs: list[list[int]] = []
    for v in sorted(set(values)):
        if v < 0:
            raise ValueError(f"negative number {v} in a kernel list")
        if runs and runs[-1][1] == v - 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def parse_pmu_format(spec: str, where: str = "PMU format") -> tuple[str, list[tuple[int, int]]]:
    """A PMU format spec: ``"config1:0-15"`` -> ``("config1", [(0, 15)])``; ``"config:0-7,32-35"`` ->
    ``("config", [(0, 7), (32, 35)])`` (bit ranges in the order written: low value bits go to the first).

    :param where: what the spec belongs to, for messages (``"cpu/format/event"``)
    :raises NotSupportedError: not ``config``, ``config1`` or ``config2`` with bit ranges inside 0-63
    """
    m = _RE_PMU_FORMAT.fullmatch(spec.strip())
    try:
        if m is None:
            raise ValueError("no config word")
        bits = parse_ranges(m["bits"])
    except ValueError:
        raise NotSupportedError(
            f"{where}: unsupported sysfs format {spec.strip()!r} (expected e.g. config:0-7)") from None
    for lo, hi in bits:
        if hi > 63:
            raise NotSupportedError(f"{where}: bad bit range {lo}-{hi} in sysfs format {spec.strip()!r}")
    if not bits:
        raise NotSupportedError(f"{where}: unsupported sysfs format {spec.strip()!r} (expected e.g. config:0-7)")
    return m["word"], bits


def place_pmu_format(words: dict[str, int], spec: str, value: int, where: str = "PMU format") -> None:
    """Spread *value* over the bit ranges of PMU format *spec*, low bits first (perf's ``pmu_format_value()``),
    replacing what an earlier term put there: ``words[word]`` is updated in place.

    :raises NotSupportedError: the spec is not understood (:func:`parse_pmu_format`)
    :raises InvalidParamsError: *value* is negative or does not fit in the spec's bits
    """
    word, bits = parse_pmu_format(spec, where)
    width = sum(hi - lo + 1 for lo, hi in bits)
    if value < 0 or value >> width:
        raise InvalidParamsError(f"{where}: value {value:#x} does not fit in {width} bit(s) ({spec.strip()})")
    acc = words.get(word, 0)
    for lo, hi in bits:
        n = hi - lo + 1
        mask = ((1 << n) - 1) << lo
        acc = (acc & ~mask) | ((value & ((1 << n) - 1)) << lo)
        value >>= n
    words[word] = acc & _U64
