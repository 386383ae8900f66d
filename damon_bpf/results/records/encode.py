"""Records written in damo's format: the JSON text of damo's records and its zlib stream, built incrementally.

Counterpart of damo's record writer (``src/_damo_records.py``, its ``json_compressed`` type: a zlib stream, not
gzip, of a JSON array with one record per target). :class:`RecordsBuilder` turns journal entries into that file,
compressing only what is new at each rewrite; :func:`write_records` writes whole :class:`Record` lists. Its
intervals are the first snapshot's, without an intervals goal, so damo's heats keep one scale when the intervals
change (see ``RecordsBuilder._intervals``). See docs/records.md for every field.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Iterable, Sequence

from damon_bpf.linux import files
from damon_bpf.results.records.model import Intervals, Record

__all__ = ("RecordsBuilder", "records_to_kvpairs", "write_records", "rename_old")


# -- writing: JSON text of records ----------------------------------------------------------------------------


def _snapshot_json(start_time: int, end_time: int, starts: Sequence[int], ends: Sequence[int],
                   nr_accesses: Sequence[int], ages: Sequence[int], max_nr_accesses: int, aggr_us: int,
                   sample_us: int | None, percents: Sequence[int] | None = None,
                   probe_hits: Sequence[Sequence[int]] | None = None) -> str:
    # Every key damo writes (the "full" variant of the writer contract), all values plain integers. Written
    # by hand rather than with json.dumps: this runs for every snapshot of a recording. percents: when not
    # n * 100 // max_nr_accesses (samples rescaled from another sampling ratio).
    mx = max(1, max_nr_accesses)
    pcts = percents if percents is not None else [n * 100 // mx for n in nr_accesses]
    # probe_hits: per region, the hits of each probe (damo's DamonRegion.probe_hits; [] without probes)
    phs = ["[" + ", ".join(str(int(h)) for h in row) + "]" for row in probe_hits] if probe_hits is not None \
        else ["[]"] * len(starts)
    regions = ", ".join(
        f'{{"start": {s}, "end": {e}, "nr_accesses": {{"samples": {n}, "percent": {pc}}}, '
        f'"age": {{"usec": {a * aggr_us}, "aggr_intervals": {a}}}, "probe_hits": {ph}, "sz_filter_passed": 0}}'
        for s, e, n, pc, a, ph in zip(starts, ends, nr_accesses, pcts, ages, phs))
    total = sum(ends) - sum(starts)
    si = "null" if sample_us is None else str(int(sample_us))
    return (f'{{"start_time": {start_time}, "end_time": {end_time}, "regions": [{regions}], '
            f'"total_bytes": {total}, "damos_stats": null, "sample_interval_us": {si}}}')


def _record_head(target_id: int, pid: int | None, intervals: Intervals | None) -> str:
    iv = "null" if intervals is None else json.dumps(intervals.to_kvpairs())
    pid_s = "" if pid is None else f'"pid": {int(pid)}, '
    return (f'{{"kdamond_idx": 0, "context_idx": 0, "intervals": {iv}, "scheme_idx": null, '
            f'"target_id": {int(target_id)}, {pid_s}"scheme_filters": [], "snapshots": [')


_RECORD_TAIL = '], "data_source": "unknown"}'


def records_to_kvpairs(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The records as damo's JSON structure (every key of damo's own records, plain integer values)."""
    out = []
    for rec in records:
        iv = rec.intervals
        mx = iv.max_nr_accesses if iv else 1
        aggr_us = iv.aggr_us if iv else 0
        text = _record_head(rec.target_id, rec.pid, iv) + ", ".join(
            _snapshot_json(s.start_time, s.end_time, s.start.tolist(), s.end.tolist(), s.nr_accesses.tolist(),
                           s.age.tolist(), mx, aggr_us, s.sample_interval_us,
                           probe_hits=s.probe_hits.tolist() if s.probe_hits is not None else None)
            for s in rec.snapshots) + _RECORD_TAIL
        kv = json.loads(text)
        kv["kdamond_idx"], kv["context_idx"], kv["scheme_idx"] = rec.kdamond_idx, rec.context_idx, rec.scheme_idx
        kv["data_source"] = rec.data_source
        if iv is None:  # without intervals, ages in µs cannot be known
            for snap in kv["snapshots"]:
                for r in snap["regions"]:
                    r["age"]["usec"] = None
                    r["nr_accesses"]["percent"] = None
        out.append(kv)
    return out


def write_records(records: Iterable[Record], path: str) -> None:
    """Write *records* to *path* as damo's default ``json_compressed`` type, atomically
    (:func:`damon_bpf.linux.files.atomic_write`).

    :raises InvalidParamsError: *path* is not a regular file damon-bpf may replace (a folder, device, symlink)
    :raises IOFailureError: the disk is full (or another device error)
    :raises DamonBpfError: the file cannot be written
    """
    data = zlib.compress(json.dumps(records_to_kvpairs(records)).encode())
    files.atomic_write(path, data)


def rename_old(path: str) -> None:
    """Rename an existing *path* to ``path.old`` (replacing an older one), as ``damo record`` does; only regular
    files (:func:`damon_bpf.linux.files.rename_old`).

    :raises InvalidParamsError: *path* or ``path.old`` is a folder, device, symlink or another user's file
    """
    files.rename_old(path)


# -- incremental zlib stream ----------------------------------------------------------------------------------

_ADLER_BASE = 65521


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    # zlib's adler32_combine(): the checksum of A+B from those of A and B and the length of B.
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (adler2 & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum2 >= _ADLER_BASE << 1:
        sum2 -= _ADLER_BASE << 1
    if sum2 >= _ADLER_BASE:
        sum2 -= _ADLER_BASE
    return sum1 | (sum2 << 16)


class _Segment:
    """A piece of the final text, compressed as raw deflate blocks ending on a byte boundary (sync flush).

    Why: the file holds one JSON array whose records (one per target) each list all their snapshots, so new
    snapshots land in the middle of the text. Compressing each record separately and concatenating the
    sync-flushed raw deflate streams (what pigz does) gives one valid zlib stream; the checksum is combined
    from the pieces' ones. Each periodic rewrite then compresses only the new snapshots::

        78 9c | "[" | record 0 head, snapshots... | "," | record 1 ... | "]" (final block) | adler32
    """

    def __init__(self, text: str = "") -> None:
        self._comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.data = bytearray()
        self.adler = 1
        self.length = 0
        self._dirty = False
        if text:
            self.feed(text)

    def feed(self, text: str) -> None:
        b = text.encode()
        self.data += self._comp.compress(b)
        self.adler = zlib.adler32(b, self.adler)
        self.length += len(b)
        self._dirty = True

    def sync(self) -> None:
        if self._dirty:
            self.data += self._comp.flush(zlib.Z_SYNC_FLUSH)
            self._dirty = False


def _small(text: str, final: bool = False) -> tuple[bytes, int, int]:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    b = text.encode()
    data = comp.compress(b) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    return data, zlib.adler32(b), len(b)


class RecordsBuilder:
    """Turns journal entries into damo's compressed records, incrementally (one :class:`_Segment` per target)."""

    def __init__(self, attrs: dict[str, Any] | None) -> None:
        self.attrs = attrs
        self.intervals: Intervals | None = None
        self._segments: dict[int, _Segment] = {}
        self._nr: dict[int, int] = {}
        self._prev_end: dict[int, int] = {}
        self.nr_snapshots = 0

    def _intervals(self, entry: dict[str, Any]) -> Intervals:
        # The first snapshot's intervals, with the intervals goal left out (all zero) even when the session
        # auto-tunes: with a goal, damo converts each snapshot's samples to hz with that snapshot's own
        # sampling interval (damo_report_access.snapshot_monitoring_intervals), so once the intervals grow a
        # region hot in every sample reads 1/sample_interval hz, many times less than before, and damo's
        # heatmap turns black (its colours span the whole record's heats). Without a goal damo uses these
        # intervals for every snapshot: the heat is the access ratio (samples / max), on one scale for the
        # whole record. Each snapshot keeps its real sampling interval (sample_interval_us, which damo then
        # ignores) and its real duration; the session's goal stays in the journal's header.
        a = self.attrs or {}
        return Intervals(sample_us=int(entry["sample_us"]), aggr_us=int(entry["aggr_us"]),
                         ops_update_us=int(a.get("ops_update_us", 1_000_000)))

    def add(self, entry: dict[str, Any]) -> None:
        if self.intervals is None:
            self.intervals = self._intervals(entry)
        end_time = int(entry["end_time"])
        aggr_us = int(entry["aggr_us"])
        mx = max(1, int(entry.get("max_nr_accesses") or self.intervals.max_nr_accesses))
        mx_rec = self.intervals.max_nr_accesses  # the scale of nr_accesses.samples in the whole file
        added = False
        for t in entry["targets"]:
            starts = t["start"]
            if not starts:
                continue
            tid = int(t["target_id"])
            start_time = self._prev_end.get(tid, end_time - aggr_us * 1000)
            if start_time >= end_time:  # keep end_time > start_time (a clock step or a resync)
                start_time = end_time - 1
            self._prev_end[tid] = end_time
            seg = self._segments.get(tid)
            if seg is None:
                seg = self._segments[tid] = _Segment(_record_head(tid, t.get("pid"), self.intervals))
                self._nr[tid] = 0
            nr = [min(max(int(n), 0), mx) for n in t["nr_accesses"]]
            pcts = None
            if mx != mx_rec:  # another aggr/sample ratio than the first snapshot's: samples on the file's scale
                pcts = [n * 100 // mx for n in nr]
                nr = [min((2 * n * mx_rec + mx) // (2 * mx), mx_rec) for n in nr]
            text = _snapshot_json(start_time, end_time, starts, t["end"], nr, t["age"], mx_rec, aggr_us,
                                  entry.get("sample_us"), pcts, probe_hits=t.get("probe_hits"))
            seg.feed(text if self._nr[tid] == 0 else ", " + text)
            self._nr[tid] += 1
            added = True
        if added:
            self.nr_snapshots += 1

    @property
    def nr_targets(self) -> int:
        return len(self._segments)

    @property
    def nr_per_target(self) -> dict[int, int]:
        return dict(self._nr)

    def to_bytes(self) -> bytes:
        """The complete zlib file for what was added so far."""
        parts: list[tuple[bytes, int, int]] = []
        first = True
        for tid in sorted(self._segments):
            seg = self._segments[tid]
            seg.sync()
            parts.append(_small("[" if first else ", "))
            parts.append((bytes(seg.data), seg.adler, seg.length))
            parts.append(_small(_RECORD_TAIL))
            first = False
        parts.append(_small("[]" if first else "]", final=True))
        adler = 1
        body = bytearray(b"\x78\x9c")
        for data, a, n in parts:
            body += data
            adler = _adler32_combine(adler, a, n)
        body += adler.to_bytes(4, "big")
        return bytes(body)
