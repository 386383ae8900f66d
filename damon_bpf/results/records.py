"""Record files: damo's monitoring-results format, written while monitoring, read back, and recovered.

damon-bpf's counterpart of damo's ``damo record`` output (``src/_damo_records.py``). :class:`RecordWriter`
writes, for an output path ``FILE`` (existing files first renamed to ``*.old``; mode 0600, as damo; every file
created without following anyone's symlink and only ever replacing regular files: :mod:`damon_bpf.linux.files`):

- ``FILE``: damo's ``json_compressed`` type, a zlib stream (not gzip) of a JSON array with one record per
  target; plain integers, epoch-nanosecond times, ``nr_accesses`` on the kernel's scale. Its intervals are the
  first snapshot's, without an intervals goal, so damo's heats keep one scale when the intervals change (see
  ``_RecordsBuilder._intervals``). It is rewritten atomically about every second and at close, so a reader
  always finds a complete file. :func:`damo_caveat` says what damo's reports cannot show on a record.
- ``FILE.journal``: append-only JSON lines, one per aggregation interval, for crash safety; :func:`recover`
  and :func:`recover_file` rebuild ``FILE`` from it (``damon-bpf record --recover FILE``). A later session
  completes the record of a killed recording by itself (:func:`complete_from_journal`), but only from files of
  root (or the caller) in a folder others cannot change (:func:`recovery_problem`).
- ``FILE.attribution``: the code-attribution sidecar (:mod:`damon_bpf.results.attribution`), written only
  when the source attributes events to instruction pointers.

:func:`read_records` reads these files and damo's own records (compressed or plain JSON, with damo's
human-formatted values, and ``perf script`` text of ``damon:damon_aggregated``); :func:`write_perf_script`
writes that text exactly as damo's ``write_perf_script`` does. See docs/records.md for every field.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from pathlib import Path
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.config import limits
from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.linux import files
from damon_bpf.linux.process import is_running, start_time
from damon_bpf.linux.state import STATE_DIR, state_dir
from damon_bpf.config.units import U64_MAX, text_to_bp, text_to_bytes, text_to_ns, text_to_us

__all__ = (
    "Intervals",
    "Record",
    "RecordSnapshot",
    "Snapshot",
    "RecordWriter",
    "read_records",
    "write_records",
    "records_to_kvpairs",
    "recover",
    "recover_file",
    "complete_from_journal",
    "complete_dead_recordings",
    "recovery_problem",
    "check_record_path",
    "write_perf_script",
    "rename_old",
    "damo_caveat",
    "DAMO_SKIPPED_SNAPSHOTS",
    "JOURNAL_SUFFIX",
    "ATTRIBUTION_SUFFIX",
)

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal"
ATTRIBUTION_SUFFIX = ".attribution"
JOURNAL_FORMAT = "damon-bpf-record-journal"
JOURNAL_VERSION = 1
FILE_MODE = files.FILE_MODE

_I64 = npt.NDArray[np.int64]


# -- data model ---------------------------------------------------------------------------------------------


@dataclass
class Intervals:
    """damo's ``DamonIntervals`` (µs) with its ``intervals_goal`` (all zero: tuning disabled)."""

    sample_us: int
    aggr_us: int
    ops_update_us: int = 1_000_000
    goal_access_bp: int = 0
    goal_aggrs: int = 0
    goal_min_sample_us: int = 0
    goal_max_sample_us: int = 0

    @property
    def max_nr_accesses(self) -> int:
        """``aggr_us / sample_us``, the largest ``nr_accesses.samples`` (at least 1)."""
        return max(1, self.aggr_us // max(1, self.sample_us))

    @property
    def tuned(self) -> bool:
        return self.goal_aggrs != 0

    def to_kvpairs(self) -> dict[str, Any]:
        return {"sample_us": self.sample_us, "aggr_us": self.aggr_us, "ops_update_us": self.ops_update_us,
                "intervals_goal": {"access_bp": self.goal_access_bp, "aggrs": self.goal_aggrs,
                                   "min_sample_us": self.goal_min_sample_us,
                                   "max_sample_us": self.goal_max_sample_us}}


@dataclass(eq=False)
class RecordSnapshot:
    """One aggregation interval of one target: regions as ``int64`` columns, sorted by address.

    :ivar start_time: ns, same time base as every other snapshot of the file
    :ivar nr_accesses: ``nr_accesses.samples``: sampling intervals with an access, 0..``aggr/sample``
    :ivar age: ``age.aggr_intervals``: aggregation intervals the region kept its access rate
    :ivar sample_interval_us: this snapshot's sampling interval, when known (changes under auto-tuning)
    """

    start_time: int
    end_time: int
    start: _I64
    end: _I64
    nr_accesses: _I64
    age: _I64
    sample_interval_us: int | None = None

    @property
    def nr_regions(self) -> int:
        return int(self.start.size)

    @property
    def sizes(self) -> _I64:
        return self.end - self.start

    @property
    def total_bytes(self) -> int:
        return int(self.sizes.sum())

    @property
    def duration_ns(self) -> int:
        return self.end_time - self.start_time


#: the name the record model uses in prose (``Record.snapshots[i]``); not the engine's ``Snapshot``
Snapshot = RecordSnapshot


@dataclass(eq=False)
class Record:
    """damo's ``DamonRecord``: the snapshots of one monitoring target.

    :ivar intervals: None for records without intervals (old damo records, perf-script text)
    :ivar pid: the process, when the file says (damon-bpf's records do)
    """

    target_id: int
    intervals: Intervals | None
    snapshots: list[RecordSnapshot] = field(default_factory=list)
    pid: int | None = None
    kdamond_idx: int | None = 0
    context_idx: int | None = 0
    scheme_idx: int | None = None
    data_source: str = "unknown"

    def snapshot_intervals_us(self, snap: RecordSnapshot) -> tuple[float, float] | None:
        """(sample, aggr) µs of *snap*, as damo's ``snapshot_monitoring_intervals`` infers them under
        auto-tuning; None without intervals."""
        iv = self.intervals
        if iv is None:
            return None
        if not iv.tuned:
            return float(iv.sample_us), float(iv.aggr_us)
        ratio = iv.aggr_us / max(1, iv.sample_us)
        if snap.sample_interval_us is not None:
            return float(snap.sample_interval_us), snap.sample_interval_us * ratio
        aggr = snap.duration_ns / 1000
        if iv.aggr_us and abs(aggr - iv.aggr_us) / iv.aggr_us < 0.1:
            return float(iv.sample_us), float(iv.aggr_us)
        return aggr / ratio, aggr


# -- what damo's reports need ----------------------------------------------------------------------------------

#: snapshots that damo 3.4.3 leaves out at the start of each record (target), DAMON's regions being still
#: adaptive then: ``damo report wss`` (``--exclude_samples``, default 20; with none left it prints
#: ``# no snapshot``) and ``damo report nr_regions`` (fixed ``snapshots[20:]``; with none left it divides by
#: zero)
DAMO_SKIPPED_SNAPSHOTS = 20


def damo_caveat(nr_snapshots: Mapping[int, int]) -> str | None:
    """The damo reports that cannot work on a record for a reason in damo itself, in one line (None when all
    of them work).

    :param nr_snapshots: target id -> snapshots of that target in the record
    """
    counts = {t: n for t, n in nr_snapshots.items() if n > 0}
    if not counts:
        return ("no snapshot was recorded (the recording ended within its first aggregation interval): damo's "
                "reports have nothing to show ('damo report heatmap' fails)")
    skip = DAMO_SKIPPED_SNAPSHOTS
    short = sorted(t for t, n in counts.items() if n <= skip)
    if not short:
        return None
    if len(short) == len(counts):
        lo, hi = min(counts.values()), max(counts.values())
        have = f"only {hi}" if lo == hi else f"only {lo} to {hi} per target"
        return (f"{have} snapshots: damo leaves out the first {skip} of each target, so 'damo report wss' "
                f"prints '# no snapshot' (give it --exclude_samples 0) and 'damo report nr_regions' fails "
                f"(ZeroDivisionError); record more than {skip} aggregation intervals")
    ids = ", ".join(str(t) for t in short)
    one = len(short) == 1
    return (f"target{'' if one else 's'} {ids} {'has' if one else 'have'} {skip} snapshots or fewer: 'damo "
            f"report nr_regions' fails on this record (ZeroDivisionError; it leaves out the first {skip} "
            f"snapshots of each target) and 'damo report wss' leaves {'it' if one else 'them'} out")


# -- writing: JSON text of records ----------------------------------------------------------------------------


def _snapshot_json(start_time: int, end_time: int, starts: Sequence[int], ends: Sequence[int],
                   nr_accesses: Sequence[int], ages: Sequence[int], max_nr_accesses: int, aggr_us: int,
                   sample_us: int | None, percents: Sequence[int] | None = None) -> str:
    # Every key damo writes (the "full" variant of the writer contract), all values plain integers. Written
    # by hand rather than with json.dumps: this runs for every snapshot of a recording. percents: when not
    # n * 100 // max_nr_accesses (samples rescaled from another sampling ratio).
    mx = max(1, max_nr_accesses)
    pcts = percents if percents is not None else [n * 100 // mx for n in nr_accesses]
    regions = ", ".join(
        f'{{"start": {s}, "end": {e}, "nr_accesses": {{"samples": {n}, "percent": {pc}}}, '
        f'"age": {{"usec": {a * aggr_us}, "aggr_intervals": {a}}}, "probe_hits": [], "sz_filter_passed": 0}}'
        for s, e, n, pc, a in zip(starts, ends, nr_accesses, pcts, ages))
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
                           s.age.tolist(), mx, aggr_us, s.sample_interval_us) for s in rec.snapshots) + _RECORD_TAIL
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


class _RecordsBuilder:
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
                                  entry.get("sample_us"), pcts)
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


# -- the writer -----------------------------------------------------------------------------------------------


def _attrs_kv(attrs: Any) -> dict[str, Any] | None:
    if attrs is None:
        return None
    g = getattr(attrs, "intervals_goal", None)
    return {"sample_us": int(attrs.sample_interval_us), "aggr_us": int(attrs.aggr_interval_us),
            "ops_update_us": int(attrs.ops_update_interval_us),
            "intervals_goal": {"access_bp": int(g.access_bp), "aggrs": int(g.aggrs),
                               "min_sample_us": int(g.min_sample_us), "max_sample_us": int(g.max_sample_us)}
            if g is not None else None}


def check_record_path(path: str) -> None:
    """Check that a :class:`RecordWriter` may write the record *path*: ``FILE``, ``FILE.journal`` and
    ``FILE.attribution`` (and their ``.old`` names, where they exist) are absent or regular files damon-bpf may
    replace (:func:`damon_bpf.linux.files.replace_problem`).

    :raises InvalidParamsError: one is not (a folder, a device, a symlink, another user's file), with the reason
    """
    for p in (path, path + JOURNAL_SUFFIX, path + ATTRIBUTION_SUFFIX):
        files.check_replaceable(p)
        if os.path.lexists(p):
            files.check_replaceable(p + ".old")


class RecordWriter:
    """Records monitoring results to damo's format: call it with every engine ``Snapshot`` (it is a
    ``Monitor`` consumer), then :meth:`close`. See the module docstring for the files.

    :param path: the record file (damo's ``damon.data``)
    :param attrs: the session's ``Attrs``, for ``ops_update_us`` and the intervals goal (optional)
    :param ips: returns, per target, ``(region start, region end, instruction pointer, events)`` tuples of
        the source's last window (``BpfAccessOps.last_ips``); enables ``FILE.attribution``
    :param rewrite_interval_s: rewrite the record file at least this often (stretched when rewriting gets
        slow, so it costs at most a few percent of the time)
    :param keep_journal: keep ``FILE.journal`` after a clean close
    :raises DamonBpfError: the files cannot be created
    """

    def __init__(self, path: str, *, attrs: Any = None,
                 ips: Callable[[], Sequence[Sequence[tuple[int, int, int, int]]] | None] | None = None,
                 rewrite_interval_s: float = 1.0, keep_journal: bool = False,
                 time_offset_ns: int | None = None) -> None:
        self.path = path
        self.journal_path = path + JOURNAL_SUFFIX
        self.attribution_path = path + ATTRIBUTION_SUFFIX
        self.rewrite_interval_s = rewrite_interval_s
        self.keep_journal = keep_journal
        self._ips = ips
        self.time_offset_ns = time.time_ns() - time.monotonic_ns() if time_offset_ns is None else time_offset_ns
        attrs_kv = _attrs_kv(attrs)
        self._builder = _RecordsBuilder(attrs_kv)
        self._next_rewrite = 0.0
        self._rewrite_cost = 0.0
        self._attribution: IO[str] | None = None
        self.closed = False
        self.nr_rewrites = 0
        self._journal: IO[str] | None = None
        self._registration: Path | None = None
        check_record_path(path)  # refuse before anything is touched
        try:
            complete_from_journal(path)  # a killed recording of the same file: make its record whole first
            for p in (path, self.journal_path, self.attribution_path):
                files.rename_old(p)
            fd = files.create_file(self.journal_path, append=True)
            self._journal = os.fdopen(fd, "w")
            self._journal.write(json.dumps({
                "type": "header", "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION,
                "time_offset_ns": self.time_offset_ns, "created": time.time(), "attrs": attrs_kv,
                "pid": os.getpid(), "starttime": start_time(os.getpid())}) + "\n")
            self._journal.flush()
            self._registration = _register_recording(path)
            self._write_file()  # an empty record list: the file exists from the start
            self._next_rewrite = 0.0  # and gets the first snapshot at once
        except OSError as err:
            self._abandon()
            raise files.write_error(err.filename or self.journal_path, err) from err
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        # the writer could not start: nothing of it stays (its journal holds no snapshot yet)
        self.closed = True
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError:
                pass
            self._journal = None
            _unlink(self.journal_path)
        if self._registration is not None:
            _unlink(str(self._registration))
            self._registration = None

    # -- consumer ----------------------------------------------------------------------------------------

    @property
    def nr_snapshots(self) -> int:
        """Aggregation intervals recorded so far."""
        return self._builder.nr_snapshots

    @property
    def nr_targets(self) -> int:
        return self._builder.nr_targets

    @property
    def nr_snapshots_per_target(self) -> dict[int, int]:
        """Target id -> snapshots recorded of that target (a target is in a snapshot while it has regions)."""
        return self._builder.nr_per_target

    def __call__(self, snap: Any) -> None:
        """Record one engine ``Snapshot`` (``damon_bpf.engine.Snapshot``)."""
        if self.closed:
            return
        end_time = int(snap.time_ns) + self.time_offset_ns
        entry = {
            "type": "snapshot", "end_time": end_time, "sample_us": int(snap.sample_interval_us),
            "aggr_us": int(snap.aggr_interval_us), "max_nr_accesses": int(snap.max_nr_accesses),
            "targets": [{"target_id": i, "pid": t.pid, "start": t.start.tolist(), "end": t.end.tolist(),
                         "nr_accesses": t.nr_accesses.tolist(), "age": t.age.tolist()}
                        for i, t in enumerate(snap.targets)],
        }
        try:
            if self._journal is not None:
                self._journal.write(json.dumps(entry, separators=(",", ":")) + "\n")
                self._journal.flush()
            self._builder.add(entry)
            self._write_attribution(end_time, snap)
            if time.monotonic() >= self._next_rewrite:
                self._write_file()
        except OSError as err:
            raise files.write_error(err.filename or self.journal_path, err) from err

    def _write_attribution(self, end_time: int, snap: Any) -> None:
        if self._ips is None:
            return
        try:
            per_target = self._ips()
        except Exception:  # an attribution failure must not end the recording
            log.debug("no instruction pointers this interval", exc_info=True)
            return
        if not per_target:
            return
        lines = []
        for i, ips in enumerate(per_target):
            if not ips or i >= len(snap.targets):
                continue
            lines.append(json.dumps({"time_ns": end_time, "target_id": i, "pid": snap.targets[i].pid,
                                     "ips": [[int(s), int(e), int(ip), int(n)] for s, e, ip, n in ips]},
                                    separators=(",", ":")))
        if not lines:
            return
        if self._attribution is None:
            self._attribution = os.fdopen(files.create_file(self.attribution_path, append=True), "w")
        self._attribution.write("\n".join(lines) + "\n")
        self._attribution.flush()

    def _write_file(self) -> None:
        t0 = time.monotonic()
        files.atomic_write(self.path, self._builder.to_bytes())
        self.nr_rewrites += 1
        now = time.monotonic()
        self._rewrite_cost = now - t0
        self._next_rewrite = now + max(self.rewrite_interval_s, 20 * self._rewrite_cost)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Rewrite the record file now.

        :raises DamonBpfError: it cannot be written (:class:`~damon_bpf.errors.IOFailureError`: disk full)
        """
        self._write_file()

    def close(self) -> None:
        """Write the final record file; remove the journal (unless kept, or the record could not be completed:
        then the error says how to rebuild it from the journal). The recording's registration in
        ``/run/damon-bpf`` goes in every case. Safe to call twice.

        :raises DamonBpfError: the final record cannot be written (IOFailureError: disk full)
        """
        if self.closed:
            return
        self.closed = True
        error: DamonBpfError | None = None
        try:
            self._write_file()
        except DamonBpfError as err:
            error = err
        finally:
            for f in (self._journal, self._attribution):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            self._journal = self._attribution = None
            if self._registration is not None:
                _unlink(str(self._registration))
                self._registration = None
        if error is None:
            # the final record holds every snapshot the journal has (a snapshot goes to the journal first)
            if not self.keep_journal:
                _unlink(self.journal_path)
            return
        if os.path.exists(self.journal_path):
            raise type(error)(f"{error}; {self.journal_path} keeps what was recorded: 'damon-bpf record --recover "
                              f"{self.path}' rebuilds the record from it") from error
        raise error

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- journal recovery -----------------------------------------------------------------------------------------


def _journal_entries(path: str) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
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


def _is_journal(head: bytes) -> bool:
    return head.startswith(b"{") and b'"format": "' + JOURNAL_FORMAT.encode() + b'"' in head.split(b"\n", 1)[0]


def recover(journal_path: str) -> list[Record]:
    """Rebuild the records from a journal left by a :class:`RecordWriter` that did not close (killed, crashed).

    :raises InvalidParamsError: not a journal, or unreadable
    """
    header, entries = _journal_entries(journal_path)
    b = _RecordsBuilder(header.get("attrs"))
    for e in entries:
        try:
            b.add(e)
        except (KeyError, TypeError, ValueError) as err:
            log.warning("%s: ignoring a malformed snapshot (%s)", journal_path, err)
    return _parse_json_records(json.loads(zlib.decompress(b.to_bytes())), journal_path)


def recover_file(path: str) -> tuple[str, list[Record]]:
    """Rebuild the record file *path* from ``path.journal`` (or, if *path* is a journal, the record file it
    belongs to). An existing record file is renamed to ``*.old``. The caller asked for it: the files' owners
    are not checked (:func:`complete_from_journal` does that), but nothing is written through a symlink, and
    only a regular file is renamed.

    :return: (the record file written, its records)
    :raises InvalidParamsError: no journal, or the record file may not be replaced (a folder, device, symlink)
    """
    if path.endswith(JOURNAL_SUFFIX):
        journal, out = path, path[: -len(JOURNAL_SUFFIX)]
    else:
        journal, out = path + JOURNAL_SUFFIX, path
    if not os.path.exists(journal):
        raise InvalidParamsError(f"no journal to recover from: {journal} does not exist")
    files.check_replaceable(out)
    records = recover(journal)
    files.rename_old(out)
    write_records(records, out)
    return out, records


# -- reading --------------------------------------------------------------------------------------------------


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
    if n and np.any(start[1:] < start[:-1]):
        order = np.argsort(start, kind="stable")
        start, end, nr, age = start[order], end[order], nr[order], age[order]
    si = kv.get("sample_interval_us")
    snap = RecordSnapshot(start_time=_ns(kv["start_time"]), end_time=_ns(kv["end_time"]),
                          start=start, end=end, nr_accesses=nr, age=age,
                          sample_interval_us=int(text_to_us(si)) if si is not None else None)
    _check_regions(snap)
    return snap


def _check_regions(snap: RecordSnapshot) -> None:
    # what the reports rely on: every region non-empty, counts not negative
    bad = np.flatnonzero((snap.end <= snap.start) | (snap.start < 0) | (snap.nr_accesses < 0) | (snap.age < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"region {i}: {int(snap.start[i])}-{int(snap.end[i])} with nr_accesses "
                         f"{int(snap.nr_accesses[i])} and age {int(snap.age[i])} (an empty range or a negative count)")


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


_AGGR_EVENTS = ("damon:damon_aggregated:", "damon_aggregated:")
_TUNE_EVENTS = ("damon:damon_monitor_intervals_tune:", "damon_monitor_intervals_tune:")
_TS = re.compile(r"^\d+(\.\d+)?:$")


def _parse_perf_script(text: str, path: str) -> list[Record]:
    """``perf script`` (or ``trace-cmd report``) text of DAMON tracepoints, as damo's ``parse_damon_trace``."""
    records: dict[int, Record] = {}
    order: list[int] = []
    open_snap: dict[int, tuple[RecordSnapshot, list[tuple[int, int, int, int]], int]] = {}
    sample_us: int | None = None
    nr_lines = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        k = next((i for i, f in enumerate(fields) if f in _AGGR_EVENTS or f in _TUNE_EVENTS), -1)
        if k < 1 or not _TS.match(fields[k - 1]):
            continue
        if fields[k] in _TUNE_EVENTS:
            try:
                sample_us = int(fields[k + 1].split("=")[1])
            except (IndexError, ValueError):
                pass
            continue
        rest = fields[k + 1:]
        try:
            end_time = int(float(fields[k - 1][:-1]) * 1e9)
            tid = int(rest[0].split("=")[1])
            nr_regions = int(rest[1].split("=")[1])
            s, e = (int(x) for x in rest[2].rstrip(":").split("-"))
            nr = int(rest[3])
            age = int(rest[4]) if len(rest) > 4 else 0
        except (IndexError, ValueError) as err:
            raise InvalidParamsError(f"{path}:{lineno}: malformed damon_aggregated line") from err
        nr_lines += 1
        rec = records.get(tid)
        if rec is None:
            rec = records[tid] = Record(target_id=tid, intervals=None, kdamond_idx=0, context_idx=0)
            order.append(tid)
        if tid not in open_snap:
            start_time = rec.snapshots[-1].end_time if rec.snapshots else -1
            if start_time > end_time:
                raise InvalidParamsError(f"{path}:{lineno}: the trace is not time-sorted")
            z = np.empty(0, np.int64)
            snap = RecordSnapshot(start_time, end_time, z, z, z, z, sample_interval_us=sample_us)
            rec.snapshots.append(snap)
            open_snap[tid] = (snap, [], nr_regions)
        snap, regions, want = open_snap[tid]
        regions.append((s, e, nr, age))
        if len(regions) >= want:
            _fill(snap, regions)
            del open_snap[tid]
    for snap, regions, _ in open_snap.values():  # a torn last snapshot: keep what is there
        _fill(snap, regions)
    if not nr_lines:
        raise InvalidParamsError(f"{path}: no damon:damon_aggregated lines")
    out = []
    for tid in order:
        rec = records[tid]
        snaps = rec.snapshots
        # set_first_snapshot_start_time(): the first start is one average snapshot duration before its end
        if len(snaps) >= 2:
            avg = (snaps[-1].end_time - snaps[0].end_time) / (len(snaps) - 1)
            snaps[0].start_time = int(snaps[0].end_time - avg)
        if snaps and _is_fake(snaps[-1]):
            snaps.pop()
        for i, sn in enumerate(snaps):
            if sn.start_time < 0 or sn.start_time >= sn.end_time:
                sn.start_time = sn.end_time - 1
            try:
                _check_regions(sn)
            except ValueError as err:
                raise InvalidParamsError(f"{path}: target {tid} snapshot {i}: {err}") from None
        out.append(rec)
    return out


def _fill(snap: RecordSnapshot, regions: list[tuple[int, int, int, int]]) -> None:
    a = np.array(regions, dtype=np.int64).reshape(-1, 4)
    snap.start, snap.end, snap.nr_accesses, snap.age = (a[:, i].copy() for i in range(4))


def _is_fake(snap: RecordSnapshot) -> bool:
    # add_fake_snapshot_if_needed()'s marker: one region 0-0 with -1 samples and -1 age
    return (snap.nr_regions == 1 and snap.start[0] == 0 and snap.end[0] == 0 and snap.nr_accesses[0] == -1
            and snap.age[0] == -1)


def _writer_alive(header: dict[str, Any]) -> bool:
    pid = header.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    st = header.get("starttime")
    return is_running(pid, st if isinstance(st, int) else None)


def _nr_snapshots(records: Iterable[Record]) -> int:
    return sum(len(r.snapshots) for r in records)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


#: where live recordings are listed, so that a later session can complete the record of one that was killed
#: (root's state folder, :mod:`damon_bpf.linux.state`)
RECORDINGS_DIR = STATE_DIR


def _register_recording(path: str) -> Path | None:
    # a file in RECORDINGS_DIR naming this process and its record; None when the folder cannot be used (not
    # root: silently; not trusted: a warning)
    try:
        d = state_dir(RECORDINGS_DIR)
        reg = d / f"record-{os.getpid()}-{zlib.crc32(os.path.abspath(path).encode()):08x}.json"
        files.atomic_write(str(reg), json.dumps({"pid": os.getpid(), "starttime": start_time(os.getpid()),
                                                 "path": os.path.abspath(path)}).encode())
        return reg
    except (OSError, DamonBpfError) as err:
        if os.geteuid() == 0:
            log.warning("%s is not completed by a later session if this one is killed: %s", path, err)
        return None


def complete_dead_recordings() -> list[tuple[str, int]]:
    """Complete the records of recordings that were killed (their writer is gone) from their journals, so that
    damo reads everything too; returns ``(record path, snapshots recovered)`` of each one completed. Only the
    registrations root's state folder holds are believed, and only records :func:`complete_from_journal` may
    complete."""
    done: list[tuple[str, int]] = []
    if not os.access(RECORDINGS_DIR, os.R_OK | os.W_OK | os.X_OK):  # none, or root's and this is not root
        return done
    try:
        d = state_dir(RECORDINGS_DIR, create=False)
    except FileNotFoundError:
        return done
    except (OSError, DamonBpfError) as err:
        log.warning("killed recordings not completed: %s", err)
        return done
    for reg in d.glob("record-*.json"):
        try:
            info = json.loads(files.read_private(reg))
            if _writer_alive(info):
                continue
            path = info["path"]
            if not isinstance(path, str) or not os.path.isabs(path):
                raise ValueError(f"not an absolute path: {path!r}")
            result = (complete_from_journal(path, writer_gone=True) if os.path.exists(path + JOURNAL_SUFFIX)
                      else None)
            if result is not None:
                done.append((path, result[1]))
            reg.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s: %s", reg, err)
    return done


def recovery_problem(path: str) -> str | None:
    """Why the record *path* may not be completed from its journal without being asked (a later session, a
    reader), in a few words: the journal or the record is not a regular file of root or the caller, or their
    folder is not root's or the caller's, or others may write in it (a sticky folder, as ``/tmp``, is fine:
    others cannot move or replace these files there). None: it may."""
    for p in (path + JOURNAL_SUFFIX, path):
        problem = files.file_problem(p)
        if problem is not None:
            return f"{p}: {problem}"
    folder = os.path.dirname(os.path.abspath(path))
    problem = files.folder_problem(folder, sticky_ok=True)
    if problem is not None:
        return f"{folder}: {problem}"
    return None


def complete_from_journal(path: str, body: list[Record] | None = None,
                          writer_gone: bool = False) -> tuple[list[Record], int] | None:
    """When ``path.journal`` holds more snapshots than the record file *path* (its recording was killed
    between two rewrites), rebuild *path* from the journal, as ``record --recover`` does, unless the recording
    is still running (then the file is its writer's and is left alone), or the files could be someone else's
    (:func:`recovery_problem`: then a warning says so, and how to recover them by hand).

    :param body: the records already read from *path* (read here when None)
    :param writer_gone: the caller knows the writer is gone (the journal's own pid is not checked)
    :return: ``(the journal's records, snapshots recovered)``, or None when there is nothing to recover
    """
    journal = path + JOURNAL_SUFFIX
    if path.endswith(JOURNAL_SUFFIX) or not os.path.exists(journal):
        return None
    try:
        header, _ = _journal_entries(journal)
        if not writer_gone and _writer_alive(header):
            return None
        full = recover(journal)
        if body is None:
            body = _read_file(path) if os.path.exists(path) else []
    except DamonBpfError as err:
        log.warning("%s: not recovered from the journal: %s", path, err)
        return None
    extra = _nr_snapshots(full) - _nr_snapshots(body)
    if extra <= 0:
        return None
    problem = recovery_problem(path)
    if problem is not None:
        log.warning("%s: the recording was cut short; %d more snapshots in %s are not recovered unasked (%s): "
                    "'damon-bpf record --recover %s' recovers them", path, extra, journal, problem, path)
        return None
    try:
        write_records(full, path)
    except (OSError, DamonBpfError) as err:
        log.warning("%s: recovered %d snapshots from %s but cannot rewrite it: %s", path, extra, journal, err)
    return full, extra


def read_records(path: str, on_recover: Callable[[str, int], None] | None = None) -> list[Record]:
    """Read a record file: damon-bpf's or damo's (zlib JSON, plain JSON, ``perf script`` text), or a
    damon-bpf journal.

    A record whose journal holds more (the recording was killed) is completed from the journal first, and the
    file rewritten so damo reads everything too (:func:`complete_from_journal`); *on_recover(path, n)* is told
    how many snapshots came back (default: a log warning).

    :raises InvalidParamsError: missing, unreadable, corrupt, or not a record file (one-line message)
    """
    records = _read_file(path)
    journal = path + JOURNAL_SUFFIX
    if os.path.lexists(journal):
        try:
            limits.require_regular(journal)  # a FIFO there would block the recovery
        except InvalidParamsError as err:
            log.warning("%s: not recovered from the journal: %s", path, err)
            return records
    try:
        done = complete_from_journal(path, records)
    except RecursionError:
        log.warning("%s: not recovered from the journal: JSON nested too deeply", path)
        return records
    if done is None:
        return records
    full, extra = done
    if on_recover is not None:
        on_recover(path, extra)
    else:
        log.warning("%s: recovered %d snapshots from %s%s", path, extra, path, JOURNAL_SUFFIX)
    return full


def _read_file(path: str) -> list[Record]:
    # a regular file of at most MAX_INPUT_BYTES, inflated to at most MAX_DECOMPRESSED_BYTES, JSON at most
    # MAX_JSON_DEPTH deep (damon_bpf.config.limits)
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
    if _is_journal(data[:400]):
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
    return _parse_perf_script(text_s, path)


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


# -- perf script ---------------------------------------------------------------------------------------------


def write_perf_script(records: Iterable[Record], out: IO[str]) -> None:
    """Write *records* as ``perf script`` text of ``damon:damon_aggregated``, as damo's ``write_perf_script``
    does: one line per region; a record with a single snapshot gets a trailing fake snapshot (``0-0: -1 -1``)
    so a reader can infer the real one's start time. Lines stay short, so ``file`` calls it ``ASCII text``
    (what damo's reader looks for)."""
    for rec in records:
        snaps = list(rec.snapshots)
        if len(snaps) == 1:
            s = snaps[0]
            fake = RecordSnapshot(s.end_time, s.end_time + s.duration_ns, np.zeros(1, np.int64),
                                  np.zeros(1, np.int64), np.full(1, -1, np.int64), np.full(1, -1, np.int64))
            snaps.append(fake)
        for snap in snaps:
            head = (f"kdamond.x xxxx xxxx {snap.end_time / 1e9:f}: damon:damon_aggregated: "
                    f"target_id={rec.target_id} nr_regions={snap.nr_regions} ")
            out.write("".join(f"{head}{s}-{e}: {n} {a}\n" for s, e, n, a in zip(
                snap.start.tolist(), snap.end.tolist(), snap.nr_accesses.tolist(), snap.age.tolist())))
