"""Records completed from their journals, and the registry of live recordings that makes it possible.

A :class:`~damon_bpf.results.records.RecordWriter` appends every snapshot to ``FILE.journal`` before it rewrites
``FILE`` (about every second), so a killed recording leaves a record behind its journal. It is completed:

- when the user asks (``damon-bpf record --recover FILE``: :func:`recover_file`, which checks no owners);
- when the record is read (:func:`read_records`, ``damon-bpf report``) or overwritten by a new recording of the
  same file (:func:`complete_from_journal`);
- by the next recording, whatever its file (:func:`complete_dead_recordings`): each recording registers itself
  in root's state folder (``/run/damon-bpf``, :mod:`damon_bpf.linux.state`) while it runs.

Unasked, only from files of root (or the caller) in a folder others cannot change (:func:`recovery_problem`).
Sessions that do not record (``monitor``, ``export``, ``compare``) complete nothing.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

from damon_bpf.config import limits
from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.linux import files
from damon_bpf.linux.process import is_running, start_time
from damon_bpf.linux.state import STATE_DIR, state_dir
from damon_bpf.results.records.encode import write_records
from damon_bpf.results.records.model import JOURNAL_SUFFIX, Record
from damon_bpf.results.records.readers import journal_entries, read_file, recover

__all__ = (
    "read_records",
    "recover_file",
    "recovery_problem",
    "complete_from_journal",
    "complete_dead_recordings",
    "register_recording",
    "RECORDINGS_DIR",
)

# the package's logger: its messages read "damon_bpf.results.records: ..." whichever module says them
log = logging.getLogger(__package__)


# -- completing one record ------------------------------------------------------------------------------------


def _writer_alive(header: dict[str, Any]) -> bool:
    pid = header.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    st = header.get("starttime")
    return is_running(pid, st if isinstance(st, int) else None)


def _nr_snapshots(records: Iterable[Record]) -> int:
    return sum(len(r.snapshots) for r in records)


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
        header, _ = journal_entries(journal)
        if not writer_gone and _writer_alive(header):
            return None
        full = recover(journal)
        if body is None:
            body = read_file(path) if os.path.exists(path) else []
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


def read_records(path: str, on_recover: Callable[[str, int], None] | None = None) -> list[Record]:
    """Read a record file: damon-bpf's or damo's (zlib JSON, plain JSON, ``perf script`` text), or a
    damon-bpf journal.

    A record whose journal holds more (the recording was killed) is completed from the journal first, and the
    file rewritten so damo reads everything too (:func:`complete_from_journal`); *on_recover(path, n)* is told
    how many snapshots came back (default: a log warning).

    :raises InvalidParamsError: missing, unreadable, corrupt, or not a record file (one-line message)
    """
    records = read_file(path)
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


# -- the registry of live recordings --------------------------------------------------------------------------


#: where live recordings are listed, so that a later session can complete the record of one that was killed
#: (root's state folder, :mod:`damon_bpf.linux.state`)
RECORDINGS_DIR = STATE_DIR


def register_recording(path: str) -> Path | None:
    """Register this process's recording of *path* while it runs: a file in :data:`RECORDINGS_DIR` naming the
    process and the record; the writer removes it when it closes.

    :return: the registration, or None when the folder cannot be used (not root: silently; not trusted: a
        warning)
    """
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

