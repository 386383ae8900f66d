"""The record model: damo's ``DamonRecord`` (:class:`Record`), its snapshots, intervals, and the names of a
record's files.

Counterpart of the record classes of damo's ``src/_damo_records.py``. :func:`check_regions` is what every
reader checks of a snapshot; :func:`damo_caveat` says what damo's own reports cannot show on a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

__all__ = (
    "Intervals",
    "Record",
    "RecordSnapshot",
    "Snapshot",
    "check_regions",
    "damo_caveat",
    "DAMO_SKIPPED_SNAPSHOTS",
    "JOURNAL_SUFFIX",
    "ATTRIBUTION_SUFFIX",
    "JOURNAL_FORMAT",
    "JOURNAL_VERSION",
)

#: ``FILE.journal``: the append-only journal beside a record ``FILE`` (docs/records.md)
JOURNAL_SUFFIX = ".journal"
#: ``FILE.attribution``: the code-attribution sidecar (:mod:`damon_bpf.results.attribution`)
ATTRIBUTION_SUFFIX = ".attribution"
#: the ``format`` and ``version`` of a journal's header line
JOURNAL_FORMAT = "damon-bpf-record-journal"
JOURNAL_VERSION = 1

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
    #: per region, each probe's hits (``(nr_regions, nr_probes)``), when the record has probes
    probe_hits: _I64 | None = None

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


def check_regions(snap: RecordSnapshot) -> None:
    """Check what the reports rely on: every region of *snap* non-empty, its counts not negative.

    :raises ValueError: the first region that is not, in one line
    """
    bad = np.flatnonzero((snap.end <= snap.start) | (snap.start < 0) | (snap.nr_accesses < 0) | (snap.age < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"region {i}: {int(snap.start[i])}-{int(snap.end[i])} with nr_accesses "
                         f"{int(snap.nr_accesses[i])} and age {int(snap.age[i])} (an empty range or a negative count)")

