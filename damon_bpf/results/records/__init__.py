"""Record files: damo's monitoring-results format, written while monitoring, read back, and recovered.

damon-bpf's counterpart of damo's ``damo record`` output (``src/_damo_records.py``). For an output path ``FILE``
a :class:`RecordWriter` writes ``FILE`` (damo's ``json_compressed`` type), ``FILE.journal`` (for crash safety) and,
when the source attributes events to instruction pointers, ``FILE.attribution``. :func:`read_records` reads these
files and damo's own records (compressed or plain JSON, with damo's human-formatted values, and ``perf script``
text of ``damon:damon_aggregated``); :func:`write_perf_script` writes that text exactly as damo's
``write_perf_script`` does. See docs/records.md for every field.

One module per job; this package re-exports their public names:

- :mod:`.model`: :class:`Record`, :class:`RecordSnapshot`, :class:`Intervals`, :func:`damo_caveat` (what damo's
  reports cannot show on a record), the file suffixes;
- :mod:`.encode`: the JSON text of damo's records and its zlib stream (:func:`write_records`,
  :func:`records_to_kvpairs`, :func:`rename_old`);
- :mod:`.perf_script`: ``perf script`` text of ``damon:damon_aggregated``, read and written;
- :mod:`.readers`: one file read as it is (damo's JSON, a journal: :func:`recover`, perf script text);
- :mod:`.journal`: records completed from their journals (:func:`read_records`, :func:`recover_file`,
  :func:`complete_from_journal`, :func:`recovery_problem`) and the registry of live recordings in
  ``/run/damon-bpf`` (:func:`complete_dead_recordings`);
- :mod:`.writer`: :class:`RecordWriter`, :func:`check_record_path`.

A killed recording's record is completed where records are written or read: by the next :class:`RecordWriter`
(every registered recording whose writer is gone, and its own file), by :func:`read_records` (the file read) and
by :func:`recover_file` (``damon-bpf record --recover``); sessions that only monitor complete nothing.
"""

from __future__ import annotations

from damon_bpf.results.records.encode import records_to_kvpairs, rename_old, write_records
from damon_bpf.results.records.journal import (
    complete_dead_recordings, complete_from_journal, read_records, recover_file, recovery_problem)
from damon_bpf.results.records.model import (
    ATTRIBUTION_SUFFIX, DAMO_SKIPPED_SNAPSHOTS, JOURNAL_FORMAT, JOURNAL_SUFFIX, JOURNAL_VERSION, Intervals, Record,
    RecordSnapshot, Snapshot, damo_caveat)
from damon_bpf.results.records.perf_script import write_perf_script
from damon_bpf.results.records.readers import recover
from damon_bpf.results.records.writer import RecordWriter, check_record_path

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
    "JOURNAL_FORMAT",
    "JOURNAL_VERSION",
)
