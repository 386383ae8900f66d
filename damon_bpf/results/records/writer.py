"""The record writer: monitoring results saved to damo's format while a session runs.

damon-bpf's counterpart of damo's ``damo record`` output (``src/_damo_records.py``). :class:`RecordWriter`
writes, for an output path ``FILE`` (existing files first renamed to ``*.old``; mode 0600, as damo; every file
created without following anyone's symlink and only ever replacing regular files: :mod:`damon_bpf.linux.files`):

- ``FILE``: damo's ``json_compressed`` type (:mod:`.encode`), rewritten atomically about every second and at
  close, so a reader always finds a complete file.
- ``FILE.journal``: append-only JSON lines, one per aggregation interval, for crash safety (:mod:`.journal`).
- ``FILE.attribution``: the code-attribution sidecar (:mod:`damon_bpf.results.attribution`), written only
  when the source attributes events to instruction pointers.

Before it writes, a new writer completes the records of killed recordings (its own file's and every registered
one whose writer is gone: :func:`~damon_bpf.results.records.journal.complete_dead_recordings`) and registers
itself until it closes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from damon_bpf.errors import DamonBpfError
from damon_bpf.linux import files
from damon_bpf.linux.process import start_time
from damon_bpf.results.records.encode import RecordsBuilder
from damon_bpf.results.records.journal import complete_dead_recordings, complete_from_journal, register_recording
from damon_bpf.results.records.model import ATTRIBUTION_SUFFIX, JOURNAL_FORMAT, JOURNAL_SUFFIX, JOURNAL_VERSION

__all__ = ("RecordWriter", "check_record_path")

# the package's logger: its messages read "damon_bpf.results.records: ..." whichever module says them
log = logging.getLogger(__package__)


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
    :ivar completed_records: ``(record path, snapshots recovered)`` of each killed recording this writer
        completed from its journal before it started (:func:`complete_dead_recordings`)
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
        self._builder = RecordsBuilder(attrs_kv)
        self._next_rewrite = 0.0
        self._rewrite_cost = 0.0
        self._attribution: IO[str] | None = None
        self.closed = False
        self.nr_rewrites = 0
        self._journal: IO[str] | None = None
        self._registration: Path | None = None
        self.completed_records: list[tuple[str, int]] = []
        check_record_path(path)  # refuse before anything is touched
        try:
            self.completed_records = complete_dead_recordings()  # killed recordings of other sessions
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
            self._registration = register_recording(path)
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
                         "nr_accesses": t.nr_accesses.tolist(), "age": t.age.tolist(),
                         **({"probe_hits": t.probe_hits.tolist()} if getattr(t, "probe_hits", None) is not None
                            else {})}
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



def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
