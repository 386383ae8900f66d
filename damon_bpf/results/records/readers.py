"""Record files read back: damo's JSON records (zlib, gzip or plain, with damo's human-formatted values), a
damon-bpf journal, and ``perf script`` text of ``damon:damon_aggregated`` (:mod:`.perf_script`).

Counterpart of damo's record readers (``src/_damo_records.py``). :func:`read_file` reads what is in one file and
nothing else; :func:`damon_bpf.results.records.read_records` also completes a record from its journal. Every
input is bounded (:mod:`damon_bpf.config.limits`): a regular file of at most ``MAX_INPUT_BYTES``, inflated to at
most ``MAX_DECOMPRESSED_BYTES``, JSON at most ``MAX_JSON_DEPTH`` deep; each failure is one
:class:`~damon_bpf.errors.InvalidParamsError` line.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import numpy.typing as npt

from damon_bpf.config import limits
from damon_bpf.config.units import U64_MAX, text_to_bp, text_to_bytes, text_to_ns, text_to_us
from damon_bpf.errors import InvalidParamsError
from damon_bpf.results.records.encode import RecordsBuilder
from damon_bpf.results.records.model import (
    JOURNAL_FORMAT, JOURNAL_VERSION, Intervals, Record, RecordSnapshot, check_regions)
from damon_bpf.results.records.perf_script import parse_perf_script

__all__ = ("read_file", "recover", "journal_entries", "is_journal")

# the package's logger: its messages read "damon_bpf.results.records: ..." whichever module says them
log = logging.getLogger(__package__)


# -- damo's JSON records -------------------------------------------------------------------------------------


def _nr(v: Any) -> int:
    # damo's text_to_nr: ints, floats, "4,096", "max"
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    s = str(v).replace(",", "").strip()
    if s == "max":
        return U64_MAX
    try:
        return int(s)
    except ValueError:
        return int(float(s))


_TIME_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "sec": 1_000_000_000,
            "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_PAIR = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)")


def _ns(v: Any) -> int:
    # A time in ns, exact: damo writes epoch times like "20,779 d 20 h 8 m 33 s 672 ms 795 us 529 ns", which a
    # float sum (units.text_to_ns) would round by a few hundred ns. Falls back to units' parser.
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    s = str(v).replace(",", "").strip().lower()
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        m = _PAIR.match(s, pos)
        if not m or m.end() == pos or m.group(2) not in _TIME_NS and m.group(2) != "":
            return int(text_to_ns(v))
        total += Fraction(m.group(1)) * _TIME_NS.get(m.group(2), 1)
        pos = m.end()
    return int(total)


def _num(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    s = str(v).replace(",", "").strip().rstrip("%").strip()
    return float(s)


def _parse_intervals(kv: Any) -> Intervals | None:
    if kv is None:
        return None
    g = kv.get("intervals_goal") or {}
    return Intervals(sample_us=int(text_to_us(kv["sample_us"])), aggr_us=int(text_to_us(kv["aggr_us"])),
                     ops_update_us=int(text_to_us(kv.get("ops_update_us", 1_000_000))),
                     goal_access_bp=int(text_to_bp(g.get("access_bp", 0))), goal_aggrs=_nr(g.get("aggrs", 0)),
                     goal_min_sample_us=int(text_to_us(g.get("min_sample_us", 0))),
                     goal_max_sample_us=int(text_to_us(g.get("max_sample_us", 0))))


def _parse_probe_hits(regions: list[Any]) -> npt.NDArray[np.int64] | None:
    # damo's region kvpairs "probe_hits": a list of counts per probe, the same length in every region (at most
    # DAMON_MAX_PROBES); None when no region has any
    lens = {len(r.get("probe_hits") or []) for r in regions}
    if lens == {0} or not regions:
        return None
    if len(lens) != 1 or max(lens) > 4:
        raise ValueError("probe_hits of different lengths, or of more than 4 probes")
    return np.array([[_nr(h) for h in r["probe_hits"]] for r in regions], np.int64)


def _parse_snapshot(kv: dict[str, Any], intervals: Intervals | None) -> RecordSnapshot:
    regions = kv["regions"]
    n = len(regions)
    start = np.empty(n, np.int64)
    end = np.empty(n, np.int64)
    nr = np.zeros(n, np.int64)
    age = np.zeros(n, np.int64)
    for i, r in enumerate(regions):
        start[i] = text_to_bytes(r["start"])
        end[i] = text_to_bytes(r["end"])
        acc = r.get("nr_accesses")
        if acc is not None:
            if acc.get("samples") is not None:
                nr[i] = _nr(acc["samples"])
            elif acc.get("percent") is not None:
                if intervals is None:
                    raise ValueError("nr_accesses in percent without intervals")
                nr[i] = int(_num(acc["percent"]) * intervals.max_nr_accesses / 100)
            ag = r["age"]
            if ag.get("aggr_intervals") is not None:
                age[i] = _nr(ag["aggr_intervals"])
            elif ag.get("usec") is not None:
                if intervals is None:
                    raise ValueError("age in usec without intervals")
                age[i] = int(text_to_us(ag["usec"]) // max(1, intervals.aggr_us))
    ph = _parse_probe_hits(regions)
    if n and np.any(start[1:] < start[:-1]):
        order = np.argsort(start, kind="stable")
        start, end, nr, age = start[order], end[order], nr[order], age[order]
        ph = ph[order] if ph is not None else None
    si = kv.get("sample_interval_us")
    snap = RecordSnapshot(start_time=_ns(kv["start_time"]), end_time=_ns(kv["end_time"]),
                          start=start, end=end, nr_accesses=nr, age=age,
                          sample_interval_us=int(text_to_us(si)) if si is not None else None, probe_hits=ph)
    check_regions(snap)
    return snap


def _parse_json_records(obj: Any, path: str) -> list[Record]:
    if isinstance(obj, dict) and "damo_records" in obj:  # damo's planned wrapped form
        obj = obj["damo_records"]
        if isinstance(obj, dict):
            obj = obj.get("damon_records", {}).get("record_list", obj)
    if not isinstance(obj, list):
        raise InvalidParamsError(f"{path}: not a record file (the JSON is not a list of records)")
    records = []
    for i, kv in enumerate(obj):
        try:
            if not isinstance(kv, dict):
                raise TypeError("not an object")
            if kv.get("data_source") == "damon_stat":
                raise InvalidParamsError(f"{path}: record {i}: DAMON_STAT records (idle-time percentiles, no "
                                         "regions) are not supported")
            intervals = _parse_intervals(kv.get("intervals"))
            snaps = [_parse_snapshot(s, intervals) for s in kv["snapshots"]]
            pid = kv.get("pid")

            def idx(key: str, default: int | None) -> int | None:
                v = kv.get(key, default)
                return None if v is None else _nr(v)

            records.append(Record(
                target_id=_nr(kv["target_id"]), intervals=intervals, snapshots=snaps,
                pid=_nr(pid) if pid is not None else None, kdamond_idx=idx("kdamond_idx", 0),
                context_idx=idx("context_idx", 0), scheme_idx=idx("scheme_idx", None),
                data_source=str(kv.get("data_source", "unknown"))))
        except InvalidParamsError as err:
            if str(err).startswith(path):
                raise
            raise InvalidParamsError(f"{path}: record {i}: {err}") from err
        except KeyError as err:
            raise InvalidParamsError(f"{path}: record {i}: missing key {err}") from err
        except (TypeError, ValueError, AttributeError, OverflowError) as err:
            raise InvalidParamsError(f"{path}: record {i}: bad value ({err})") from err
    return records


# -- the journal ----------------------------------------------------------------------------------------------


def journal_entries(path: str) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The header of the journal *path* and an iterator over its snapshot entries (a torn last line ends it, a
    corrupt line is skipped with a warning); the file stays open until the iterator ends.

    :raises InvalidParamsError: unreadable, not a journal, or a newer journal version
    """
    try:
        f = open(path, "rb")
    except OSError as err:
        raise InvalidParamsError(f"cannot read {path}: {err.strerror}") from err
    first = f.readline()
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
        f.close()
        raise InvalidParamsError(f"{path}: not a damon-bpf record journal")
    if int(header.get("version", 0)) > JOURNAL_VERSION:
        f.close()
        raise InvalidParamsError(f"{path}: journal version {header.get('version')} is newer than this damon-bpf")

    def entries() -> Iterator[dict[str, Any]]:
        with f:
            for lineno, line in enumerate(f, 2):
                if not line.endswith(b"\n"):
                    log.info("%s: ignoring the torn last line %d", path, lineno)
                    return
                try:
                    e = json.loads(line)
                except ValueError:
                    log.warning("%s: ignoring the corrupt line %d", path, lineno)
                    continue
                if isinstance(e, dict) and e.get("type") == "snapshot":
                    yield e

    return header, entries()


def is_journal(head: bytes) -> bool:
    """Whether a file starting with *head* is a damon-bpf journal (its header line names the format)."""
    return head.startswith(b"{") and b'"format": "' + JOURNAL_FORMAT.encode() + b'"' in head.split(b"\n", 1)[0]


def recover(journal_path: str) -> list[Record]:
    """Rebuild the records from a journal left by a :class:`~damon_bpf.results.records.RecordWriter` that did not
    close (killed, crashed).

    :raises InvalidParamsError: not a journal, or unreadable
    """
    header, entries = journal_entries(journal_path)
    b = RecordsBuilder(header.get("attrs"))
    for e in entries:
        try:
            b.add(e)
        except (KeyError, TypeError, ValueError) as err:
            log.warning("%s: ignoring a malformed snapshot (%s)", journal_path, err)
    return _parse_json_records(json.loads(zlib.decompress(b.to_bytes())), journal_path)


# -- one file -------------------------------------------------------------------------------------------------


def read_file(path: str) -> list[Record]:
    """The records in the file *path* as it is (damo's or damon-bpf's records, a journal, ``perf script`` text),
    within the module's limits; nothing is completed from a journal beside it.

    :raises InvalidParamsError: missing, unreadable, too large, corrupt, or not a record file (one line)
    """
    data = limits.read_regular(path, limits.MAX_INPUT_BYTES, "record file")
    if not data:
        raise InvalidParamsError(f"{path}: empty file")
    if len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0:
        return _from_json_bytes(limits.inflate(data, path, json_text=True), path, depth_checked=True)
    if data.startswith(b"\x1f\x8b"):
        return _from_json_bytes(limits.inflate(data, path, gzip=True, json_text=True), path, depth_checked=True)
    if data.startswith(b"PERFILE2"):
        raise InvalidParamsError(f"{path}: a perf.data file; convert it with 'perf script -i {path} > FILE.txt' "
                                 "and read that")
    if is_journal(data[:400]):
        try:
            return recover(path)
        except RecursionError:  # a line nested too deeply for json
            raise InvalidParamsError(f"{path}: JSON nested too deeply") from None
    stripped = data.lstrip()
    if stripped[:1] in (b"[", b"{"):
        return _from_json_bytes(data, path)
    try:
        text_s = data.decode()
    except UnicodeDecodeError as err:
        raise InvalidParamsError(f"{path}: not a record file (binary data)") from err
    return parse_perf_script(text_s, path)


def _from_json_bytes(data: bytes, path: str, depth_checked: bool = False) -> list[Record]:
    if not depth_checked:
        limits.check_json_depth(data, path)
    try:
        obj = json.loads(data)
    except RecursionError:
        raise InvalidParamsError(f"{path}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidParamsError(f"{path}: corrupt JSON ({err})") from err
    return _parse_json_records(obj, path)
