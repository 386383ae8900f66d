"""damo's profiling recipe: the files ``damo record --do_record ...`` writes beside the record, written while
recording and read back.

damon-bpf's counterpart of ``RecordingHandle``, ``start_recording()`` and ``save_recording_outputs()`` in damo's
``src/_damo_records.py`` (3.4.3). For a record ``FILE``, :class:`ProfileRecorder` writes (``--do_record`` item
in brackets; damon-bpf's default is ``access mem_footprint proc_stats``, see :data:`DO_RECORD_DEFAULT`):

- ``FILE.kdamonds`` (always, as damo): a JSON list with one kdamond in damo's ``Kdamond.to_kvpairs()`` shape:
  the ``vaddr`` context with the targets' pids, the record's intervals (the first snapshot's, as in ``FILE``),
  the regions range and the DAMOS schemes. ``damo report attrs`` refuses a record without it.
- ``FILE.mem_footprint`` (``mem_footprint``): a JSON list of ``{"time": <epoch s>, "footprints": [{"pid": P,
  "footprint": {"size", "resident", "shared", "trs", "lrs", "drs", "dt"}}, ..., {"pid": null, "footprint":
  {"total", "free", "available", "buffers", "cached"}}]}``: each target's ``/proc/P/statm`` (pages; all zero
  once it exited, as damo) and the system's ``/proc/meminfo`` (KiB). ``damo report footprints`` and
  ``holistic`` read it.
- ``FILE.vmas`` (``vmas``): a JSON list of ``{"time", "procvmas": [{"pid", "vmas": [{"start", "end",
  "name"}]}]}`` from ``/proc/P/maps``. ``name`` is what damo writes, the line's last word (the inode, ``0``,
  for an unnamed mapping); damon-bpf adds the rest of the line: ``perms``, ``offset`` (bytes), ``dev``,
  ``inode`` and ``path`` (the whole pathname column, ``""`` for an unnamed mapping), so a range can be named
  after the process exited (:func:`read_vmas` gives :class:`~damon_bpf.linux.procmaps.Vma` objects).
- ``FILE.proc_stats`` (``proc_stats``): a JSON list of ``{"time", "proc_stats": [{"fields": [...]}]}``: the
  fields of ``/proc/P/stat`` of the recording process (damo's kdamonds) and then of each target (``null``
  once it exited).
- ``FILE.profile`` (``cpu_profile``): a system-wide CPU profile, ``perf record -a`` as damo runs it, in perf's
  pipe format (``perf report -i FILE.profile`` reads it) and with sample times on the wall clock (``-k
  CLOCK_REALTIME``), the clock of the record's snapshot times, so that ``damo report profile`` picks the
  samples of the snapshots it selects.

The three JSON lists are sampled every :data:`SAMPLE_INTERVAL_S` (damo's recording loop sleeps one second),
first when the recording starts, by a thread of their own (the monitoring loop pays nothing). Each sample is
appended in place: the file is ``[`` + one line per sample + ``]`` after every write, so a recording that is
killed leaves files damo reads (damo itself writes them only at the end). Every file is created 0600 without
following a symlink, an existing one renamed to ``*.old`` first, as damo does (:mod:`damon_bpf.linux.files`).
The readers (:func:`read_mem_footprints`, :func:`read_vmas`, :func:`read_proc_stats`) take damo's files too.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from damon_bpf.config import limits
from damon_bpf.config.schemes import schemes_to_json
from damon_bpf.engine.probes import probes_to_kvpairs
from damon_bpf.errors import DamonBpfError, InvalidParamsError, MissingDependencyError
from damon_bpf.linux import files
from damon_bpf.linux.proc_footprint import (MEMINFO_FIELDS, STATM_FIELDS, read_meminfo, read_stat_fields,
                                            read_statm)
from damon_bpf.linux.procmaps import Vma, parse_maps, read_maps_text
from damon_bpf.results.perfscript import perf_binary

__all__ = (
    "DO_RECORD_CHOICES",
    "DO_RECORD_DEFAULT",
    "DAMO_DO_RECORD_DEFAULT",
    "SAMPLE_INTERVAL_S",
    "KDAMONDS_SUFFIX",
    "MEM_FOOTPRINT_SUFFIX",
    "VMAS_SUFFIX",
    "PROC_STATS_SUFFIX",
    "PROFILE_SUFFIX",
    "Recipe",
    "MemFootprint",
    "VmasSnapshot",
    "ProcStatsSnapshot",
    "JsonListFile",
    "ProfileRecorder",
    "recipe_from_args",
    "side_paths",
    "check_side_paths",
    "side_file",
    "kdamonds_kvpairs",
    "read_kdamonds",
    "read_mem_footprints",
    "read_vmas",
    "read_proc_stats",
)

log = logging.getLogger(__name__)

#: damo's ``--do_record`` items (``damo_record.set_argparser``)
DO_RECORD_CHOICES = ("access", "cpu_profile", "mem_footprint", "vmas", "proc_stats", "damon_trace_events")
#: damo's default ``--do_record``: every item but ``damon_trace_events``
DAMO_DO_RECORD_DEFAULT = ("access", "cpu_profile", "mem_footprint", "vmas", "proc_stats")
#: damon-bpf's default: the cheap items (1.2 ms of CPU and about 1 KiB a second). A system-wide ``perf record -a``
#: (``cpu_profile``: about 1.3% of a CPU and 0.4 MiB/s here) and every mapping every second (``vmas``: 52 KiB/s,
#: 190 MiB an hour, for a process of 215 mappings) are recorded when asked for, as in damo's default recipe
DO_RECORD_DEFAULT = ("access", "mem_footprint", "proc_stats")
#: how often footprints, mappings and task stats are sampled: damo's recording loop sleeps 1 s
SAMPLE_INTERVAL_S = 1.0

KDAMONDS_SUFFIX = ".kdamonds"
MEM_FOOTPRINT_SUFFIX = ".mem_footprint"
VMAS_SUFFIX = ".vmas"
PROC_STATS_SUFFIX = ".proc_stats"
PROFILE_SUFFIX = ".profile"

_SUFFIX_OF = {"mem_footprint": MEM_FOOTPRINT_SUFFIX, "vmas": VMAS_SUFFIX, "proc_stats": PROC_STATS_SUFFIX,
              "cpu_profile": PROFILE_SUFFIX}

#: perf's clock for the samples: the wall clock, as the record's snapshot times (epoch ns)
_PERF_CLOCK = "CLOCK_REALTIME"
#: how long perf may take to write its last samples after SIGINT before it is killed
_PERF_STOP_S = 10.0


# -- the recipe ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What a recording writes (damo's ``--do_record``), resolved for this machine.

    :ivar items: the ``--do_record`` items that will be recorded
    :ivar perf: the perf executable, when ``cpu_profile`` is recorded
    :ivar notes: one line each for the user about what is recorded
    """

    items: frozenset[str]
    perf: str | None = None
    notes: tuple[str, ...] = ()

    def __contains__(self, item: object) -> bool:
        return item in self.items


def recipe_from_args(words: Sequence[str] | None, perf_path: str | None = None) -> Recipe:
    """The recipe of ``--do_record WORDS`` (damo's spellings; ``None``: :data:`DO_RECORD_DEFAULT`). Items may also be
    given comma-separated (``access,mem_footprint``).

    :raises InvalidParamsError: an unknown item, ``damon_trace_events`` (there is no kernel DAMON to trace), or
        no ``access`` (damon-bpf always records accesses)
    :raises MissingDependencyError: ``cpu_profile`` asked for by name, and perf is not installed
    """
    items: list[str] = []
    for w in (words if words is not None else DO_RECORD_DEFAULT):
        for item in w.split(","):
            item = item.strip()
            if not item:
                continue
            if item not in DO_RECORD_CHOICES:
                # --do_record takes every word after it, as damo's does: a target given later lands here
                hint = "; give the PIDs before --do_record" if item.isdigit() else ""
                raise InvalidParamsError(f"--do_record: unknown item {item!r} (choose from "
                                         f"{', '.join(DO_RECORD_CHOICES)}{hint})")
            items.append(item)
    if "damon_trace_events" in items:
        raise InvalidParamsError("--do_record damon_trace_events: damon-bpf runs no kernel DAMON whose trace "
                                 "events could be recorded (its monitoring results are the record itself)")
    if "access" not in items:
        raise InvalidParamsError("--do_record: damon-bpf record always records accesses; add 'access'")
    perf: str | None = None
    if "cpu_profile" in items:
        try:
            perf = perf_binary(perf_path)
        except MissingDependencyError as err:
            raise MissingDependencyError(f"--do_record cpu_profile: {err}") from err
    return Recipe(frozenset(items), perf)


def side_paths(path: str, recipe: Recipe) -> list[str]:
    """The files besides *path* a recording with *recipe* writes (``FILE.kdamonds`` always)."""
    return [path + KDAMONDS_SUFFIX] + [path + sfx for item, sfx in _SUFFIX_OF.items() if item in recipe]


def check_side_paths(path: str, recipe: Recipe) -> None:
    """Check, before a recording starts, that it may write its side files (and move existing ones to ``.old``):
    absent, or regular files damon-bpf may replace.

    :raises InvalidParamsError: one is not (a folder, a device, a symlink, another user's file)
    """
    for p in side_paths(path, recipe):
        files.check_replaceable(p)
        if os.path.lexists(p):
            files.check_replaceable(p + ".old")


def side_file(path: str, suffix: str) -> str:
    """The side file named *suffix* of the record *path*; *path* itself when it already is one (so ``-i``
    takes ``damon.data`` or ``damon.data.mem_footprint`` alike)."""
    return path if path.endswith(suffix) else path + suffix


# -- the kdamonds file --------------------------------------------------------------------------------------


def kdamonds_kvpairs(pids: Sequence[int], attrs: Any, schemes: Sequence[Any] = (), *, pid: int | None = None,
                     sample_us: int | None = None, aggr_us: int | None = None,
                     probes: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """damo's ``FILE.kdamonds`` content for a session: one kdamond (the recording process *pid*) with one
    ``vaddr`` context of *pids*, the intervals of *attrs* (or *sample_us*/*aggr_us*, the record's first
    snapshot's), the regions range and *schemes* in damo's JSON (:func:`damon_bpf.config.schemes.schemes_to_json`).

    :param attrs: the session's ``damon_bpf.engine.Attrs``
    """
    g = attrs.intervals_goal
    ctx = {
        "ops": "vaddr",
        "addr_unit": 1,
        "targets": [{"pid": p, "obsolete": False, "regions": []} for p in pids],
        "intervals": {"sample_us": int(sample_us if sample_us is not None else attrs.sample_interval_us),
                      "aggr_us": int(aggr_us if aggr_us is not None else attrs.aggr_interval_us),
                      "ops_update_us": int(attrs.ops_update_interval_us),
                      # as the record: the goal left out (FILE keeps the first snapshot's intervals)
                      "intervals_goal": {"access_bp": 0, "aggrs": 0, "min_sample_us": 0, "max_sample_us": 0}
                      if sample_us is not None else
                      {"access_bp": int(g.access_bp), "aggrs": int(g.aggrs), "min_sample_us": int(g.min_sample_us),
                       "max_sample_us": int(g.max_sample_us)}},
        "nr_regions": {"min": int(attrs.min_nr_regions), "max": int(attrs.max_nr_regions)},
        "probes": probes_to_kvpairs(list(probes)),  # damon_bpf.engine.probes.Probe
        "pause": False,
        "schemes": schemes_to_json(list(schemes), attrs) if schemes else [],
    }
    return [{"state": "on", "pid": pid, "refresh_ms": 0, "contexts": [ctx]}]


# -- sample types -------------------------------------------------------------------------------------------


@dataclass
class MemFootprint:
    """One sample of ``FILE.mem_footprint``.

    :ivar time: when, in seconds since the epoch
    :ivar procs: pid -> ``/proc/<pid>/statm`` fields (pages) by damo's names (:data:`STATM_FIELDS`)
    :ivar sys: ``/proc/meminfo`` by damo's names (KiB), or None when the sample has none
    """

    time: float
    procs: dict[int, dict[str, int]] = field(default_factory=dict)
    sys: dict[str, int] | None = None

    def to_kvpairs(self) -> dict[str, Any]:
        fps: list[dict[str, Any]] = [{"pid": p, "footprint": fp} for p, fp in self.procs.items()]
        if self.sys is not None:
            fps.append({"pid": None, "footprint": self.sys})
        return {"time": self.time, "footprints": fps}

    @classmethod
    def from_kvpairs(cls, kv: Any, where: str) -> MemFootprint:
        t, entries = _sample(kv, "footprints", where)
        snap = cls(t)
        for w, fp in _entries(entries, "footprint", dict, f"{where}.footprints"):
            pid = fp.get("pid")
            names = tuple(MEMINFO_FIELDS.values()) if pid is None else STATM_FIELDS
            values = {k: int(_number(fp["footprint"].get(k, 0), f"{w}.footprint.{k}")) for k in names}
            if pid is None:
                snap.sys = values
            else:
                snap.procs[int(_number(pid, f"{w}.pid"))] = values
        return snap


@dataclass
class VmasSnapshot:
    """One sample of ``FILE.vmas``: pid -> its mappings.

    :ivar without_offsets: the pids whose mappings were read from damo's keys only (``start``, ``end``,
        ``name``): their permissions, file offsets, device and inode are not known (``----``, 0)
    """

    time: float
    procs: dict[int, list[Vma]] = field(default_factory=dict)
    without_offsets: set[int] = field(default_factory=set)

    def to_kvpairs(self) -> dict[str, Any]:
        return {"time": self.time,
                "procvmas": [{"pid": p, "vmas": [_vma_kv(v) for v in vmas]} for p, vmas in self.procs.items()]}

    @classmethod
    def from_kvpairs(cls, kv: Any, where: str) -> VmasSnapshot:
        t, entries = _sample(kv, "procvmas", where)
        snap = cls(t)
        for w, pv in _entries(entries, "vmas", list, f"{where}.procvmas"):
            pid = int(_number(pv.get("pid"), f"{w}.pid"))
            if len(pv["vmas"]) > limits.MAX_MAPPINGS:
                raise InvalidParamsError(f"{w}: pid {pid} has more than {limits.MAX_MAPPINGS} mappings")
            snap.procs[pid] = [_vma_from_kv(v, f"{w}.vmas[{j}]") for j, v in enumerate(pv["vmas"])]
            if not all("path" in v for v in pv["vmas"]):
                snap.without_offsets.add(pid)
        return snap


@dataclass
class ProcStatsSnapshot:
    """One sample of ``FILE.proc_stats``: the fields of ``/proc/<pid>/stat`` of each process (None: it was
    gone), the recording process first."""

    time: float
    stats: list[list[str] | None] = field(default_factory=list)

    def to_kvpairs(self) -> dict[str, Any]:
        return {"time": self.time, "proc_stats": [{"fields": f} for f in self.stats]}

    @classmethod
    def from_kvpairs(cls, kv: Any, where: str) -> ProcStatsSnapshot:
        t, entries = _sample(kv, "proc_stats", where)
        snap = cls(t)
        for i, ps in enumerate(entries):
            f = ps.get("fields") if isinstance(ps, dict) else None
            if f is not None and not (isinstance(f, list) and all(isinstance(x, str) for x in f)):
                raise InvalidParamsError(f"{where}.proc_stats[{i}].fields: expected a list of strings or null")
            snap.stats.append(f)
        return snap


def _sample(kv: Any, key: str, where: str) -> tuple[float, list[Any]]:
    # damo's sample: {"time": <epoch s>, KEY: [...]}
    if not isinstance(kv, dict) or not isinstance(kv.get(key), list):
        raise InvalidParamsError(f"{where}: no '{key}' list (expected {{\"time\": ..., \"{key}\": [...]}})")
    return _number(kv.get("time"), f"{where}.time"), kv[key]


def _entries(entries: list[Any], key: str, kind: type, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    # the per-process entries of a sample: {"pid": P, KEY: <kind>}, with the place of each for messages
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get(key), kind):
            shape = "{...}" if kind is dict else "[...]"
            raise InvalidParamsError(f"{w}: expected {{\"pid\": ..., \"{key}\": {shape}}}")
        yield w, e


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidParamsError(f"{where}: expected a number, not {v!r:.40}")
    return v


def _vma_kv(v: Vma) -> dict[str, Any]:
    # damo's three keys ("name": the line's last word, as damo splits it), then the rest of the maps line
    words = v.pathname.split()
    name = words[-1] if words else str(v.inode)
    return {"start": v.start, "end": v.end, "name": name, "perms": v.perms, "offset": v.offset, "dev": v.dev,
            "inode": v.inode, "path": v.pathname}


def _vma_from_kv(kv: Any, where: str) -> Vma:
    if not isinstance(kv, dict):
        raise InvalidParamsError(f"{where}: expected {{\"start\", \"end\", \"name\"}}")
    start, end = int(_number(kv.get("start"), f"{where}.start")), int(_number(kv.get("end"), f"{where}.end"))
    if not 0 <= start < end < 1 << 64:
        raise InvalidParamsError(f"{where}: mapping [{start:#x}, {end:#x}) is not an address range")
    if "path" in kv:  # damon-bpf's file: the whole maps line
        path = kv["path"] if isinstance(kv["path"], str) else ""
        return Vma(start, end, str(kv.get("perms", "---p")), int(_number(kv.get("offset", 0), f"{where}.offset")),
                   str(kv.get("dev", "00:00")), int(_number(kv.get("inode", 0), f"{where}.inode")), path)
    # damo's: the last word of the line, which is the inode (a number) of an unnamed mapping; no permissions
    name = kv.get("name")
    name = "" if name is None else str(name)
    if name.isdigit():
        return Vma(start, end, "----", inode=int(name))
    return Vma(start, end, "----", pathname=name)


# -- writing ------------------------------------------------------------------------------------------------


class JsonListFile:
    """A JSON list written one item at a time, valid after every write: the file is ``[``, one line per item
    separated by ``,``, and ``]``; each item is written with one ``pwrite`` over the closing ``]``, so the file
    is never truncated and a process killed between two writes leaves a complete list.

    :raises DamonBpfError: the file cannot be created (:func:`damon_bpf.linux.files.create_file`)
    """

    def __init__(self, path: str) -> None:
        self.path = path
        files.rename_old(path)
        self._fd: int | None = files.create_file(path)
        self._pos = 2  # where the next item goes: over "\n]\n"
        self.nr_items = 0
        try:
            self._write(b"[\n]\n", 0)
        except OSError as err:
            self.close()
            raise files.write_error(path, err) from err

    def _write(self, data: bytes, pos: int) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, pos)
            view, pos = view[n:], pos + n

    def append(self, item: Any) -> None:
        """Add *item* (JSON-serialisable).

        :raises OSError: the write failed (the file then holds the items before)
        """
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        text = json.dumps(item, separators=(",", ":")).encode()
        data = (b",\n" if self.nr_items else b"") + text
        self._write(data + b"\n]\n", self._pos)
        self._pos += len(data)
        self.nr_items += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _PerfProfile:
    """``perf record -a`` into ``FILE.profile`` (created here, 0600, no symlink followed: perf writes its pipe
    format to the descriptor it is given as standard output), stopped with SIGINT, as damo stops it; perf gets
    SIGINT too when the recording process dies (``PR_SET_PDEATHSIG``), so it never outlives a killed one."""

    def __init__(self, path: str, perf: str) -> None:
        self.path = path
        self._err: collections.deque[str] = collections.deque(maxlen=4)
        files.rename_old(path)
        fd = files.create_file(path)
        parent = os.getpid()

        def _die_with_parent() -> None:  # in the child, before exec
            from damon_bpf.linux.syscalls import set_pdeathsig

            set_pdeathsig(signal.SIGINT)
            if os.getppid() != parent:
                os._exit(1)

        try:
            self.proc = subprocess.Popen(
                [perf, "record", "-a", "-k", _PERF_CLOCK, "-o", "-"], stdin=subprocess.DEVNULL, stdout=fd,
                stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        except OSError as err:
            os.close(fd)
            _unlink(path)
            raise MissingDependencyError(f"cannot run {perf}: {err.strerror}") from err
        os.close(fd)
        self._drain = threading.Thread(target=self._read_stderr, name="damon-bpf-perf-stderr", daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self._err.append(line)

    def stop(self) -> str | None:
        """Stop perf; a one-line note when it failed (its last message), else None."""
        early = self.proc.poll() is not None
        if not early:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=_PERF_STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=2)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        rc = self.proc.returncode
        empty = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        if rc in (0, -signal.SIGINT) and not empty:
            return None
        msgs = [m for m in self._err if not m.startswith("[ perf record:")] or list(self._err)
        why = msgs[-1] if msgs else f"exit status {rc}"
        if empty:
            _unlink(self.path)
            return f"no CPU profile: perf record failed ({why})"
        return f"the CPU profile in {self.path} may be incomplete: perf record ended with status {rc} ({why})"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.debug("cannot remove %s: %s", path, err)


class ProfileRecorder:
    """Writes the side files of damo's profiling recipe for a record (see the module docstring) while a session
    records: :meth:`start` once the targets are known (the session is open), pass every engine ``Snapshot`` to
    it (it is a session consumer: it learns the targets added later and the record's intervals), and
    :meth:`close` at the end. Sampling runs in a thread of its own; a write that fails stops that file (said in
    :attr:`notes`) but not the recording.

    :param path: the record file (damo's ``damon.data``)
    :param recipe: what to record (:func:`recipe_from_args`)
    :param pids: the targets' pids when the recording starts
    :param attrs: the session's ``damon_bpf.engine.Attrs`` (for ``FILE.kdamonds``)
    :param schemes: the session's DAMOS schemes (for ``FILE.kdamonds``)
    :param interval_s: the sampling interval (default damo's, :data:`SAMPLE_INTERVAL_S`)
    """

    def __init__(self, path: str, recipe: Recipe, pids: Sequence[int], attrs: Any, schemes: Sequence[Any] = (), *,
                 interval_s: float = SAMPLE_INTERVAL_S, clock: Callable[[], float] = time.time,
                 proc_root: str = "/proc", probes: Sequence[Any] = ()) -> None:
        self.path = path
        self.probes = list(probes)
        self.recipe = recipe
        self.attrs = attrs
        self.schemes = list(schemes)
        self.interval_s = interval_s
        self._clock = clock
        self._proc_root = proc_root
        self._pids: list[int] = list(pids)
        self._intervals: tuple[int, int] | None = None
        self._kdamonds_stale = False
        self._lists: dict[str, JsonListFile] = {}
        self._perf: _PerfProfile | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: one line each for the user: files not written, or cut short, and why
        self.notes: list[str] = list(recipe.notes)
        #: the side files written
        self.written: list[str] = []
        self.nr_samples = 0
        self.closed = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the files, start perf (``cpu_profile``) and the sampling thread; takes the first sample at
        once. Call it from the thread that lives as long as the recording (perf's death signal follows it).

        :raises DamonBpfError: a file cannot be created, or perf cannot be started
        """
        try:
            self._write_kdamonds()
            for item in ("mem_footprint", "vmas", "proc_stats"):
                if item in self.recipe:
                    self._lists[item] = JsonListFile(self.path + _SUFFIX_OF[item])
                    self.written.append(self.path + _SUFFIX_OF[item])
            if "cpu_profile" in self.recipe:
                assert self.recipe.perf is not None
                self._perf = _PerfProfile(self.path + PROFILE_SUFFIX, self.recipe.perf)
            self.sample()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._loop, name="damon-bpf-profile", daemon=True)
        self._thread.start()

    def __call__(self, snap: Any) -> None:
        """Session consumer: the targets of *snap* (an engine ``Snapshot``), and the first snapshot's intervals
        (those of the record) for ``FILE.kdamonds``."""
        pids = [int(t.pid) for t in snap.targets if t.pid is not None]
        with self._lock:
            if pids != self._pids and pids:
                self._pids = pids
                self._kdamonds_stale = True
            if self._intervals is None:
                self._intervals = (int(snap.sample_interval_us), int(snap.aggr_interval_us))
                self._kdamonds_stale = True

    def close(self) -> None:
        """Stop sampling and perf; write ``FILE.kdamonds`` a last time. Safe to call twice; never raises for a
        file that could not be written (see :attr:`notes`)."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._perf is not None:
            note = self._perf.stop()
            if note is None:
                self.written.append(self._perf.path)
            else:
                self.notes.append(note)
                if os.path.exists(self._perf.path):
                    self.written.append(self._perf.path)
            self._perf = None
        for f in self._lists.values():
            f.close()
        if self._kdamonds_stale:
            try:
                self._write_kdamonds()
            except DamonBpfError as err:
                self.notes.append(f"{self.path}{KDAMONDS_SUFFIX} keeps the targets of the start ({err})")

    def __enter__(self) -> ProfileRecorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sampling ------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_t = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t += self.interval_s
            if next_t < time.monotonic():  # a slow sample: keep the rhythm, skip what was missed
                next_t = time.monotonic() + self.interval_s
            self.sample()
            if self._kdamonds_stale:
                try:
                    self._write_kdamonds()
                except DamonBpfError as err:
                    log.debug("%s", err)

    def sample(self) -> None:
        """Take one sample of each JSON list now (the thread calls it every interval)."""
        with self._lock:
            pids = list(self._pids)
        now = self._clock()
        for item, f in list(self._lists.items()):
            try:
                if item == "mem_footprint":
                    f.append(self._mem_footprint(now, pids).to_kvpairs())
                elif item == "vmas":
                    f.append(self._vmas(now, pids).to_kvpairs())
                else:
                    f.append(self._proc_stats(now, pids).to_kvpairs())
            except OSError as err:  # disk full: this file stops, the recording goes on
                f.close()
                del self._lists[item]
                self.notes.append(f"{f.path} stopped after {f.nr_items} samples: {files.write_error(f.path, err)}")
        self.nr_samples += 1

    def _mem_footprint(self, now: float, pids: list[int]) -> MemFootprint:
        snap = MemFootprint(now)
        for pid in pids:
            try:
                statm = read_statm(pid, self._proc_root)
            except (OSError, InvalidParamsError):
                statm = None
            # damo: a process that terminated counts as using no memory
            snap.procs[pid] = dict(zip(STATM_FIELDS, statm or (0,) * len(STATM_FIELDS)))
        try:
            mi = read_meminfo(self._proc_root)
        except OSError:
            mi = {}
        snap.sys = {k: mi.get(k, 0) for k in MEMINFO_FIELDS.values()}
        return snap

    def _vmas(self, now: float, pids: list[int]) -> VmasSnapshot:
        snap = VmasSnapshot(now)
        for pid in pids:
            try:
                snap.procs[pid] = parse_maps(read_maps_text(pid, self._proc_root))
            except DamonBpfError:  # gone (or not readable): no mappings, as damo
                snap.procs[pid] = []
        return snap

    def _proc_stats(self, now: float, pids: list[int]) -> ProcStatsSnapshot:
        snap = ProcStatsSnapshot(now)
        for pid in [os.getpid(), *pids]:
            try:
                snap.stats.append(read_stat_fields(pid, self._proc_root))
            except (OSError, InvalidParamsError):
                snap.stats.append(None)
        return snap

    def _write_kdamonds(self) -> None:
        with self._lock:
            pids, iv = list(self._pids), self._intervals
            self._kdamonds_stale = False
        kv = kdamonds_kvpairs(pids, self.attrs, self.schemes, pid=os.getpid(),
                              sample_us=iv[0] if iv else None, aggr_us=iv[1] if iv else None, probes=self.probes)
        path = self.path + KDAMONDS_SUFFIX
        if path not in self.written:
            files.rename_old(path)
        files.atomic_write(path, (json.dumps(kv, indent=4) + "\n").encode())
        if path not in self.written:
            self.written.append(path)


# -- reading ------------------------------------------------------------------------------------------------


def _load_list(path: str, name: str, data: bytes | None = None) -> list[Any]:
    # damo's file *name* (``vmas``) at *path*, or its bytes *data* when already read
    if data is None:
        data = limits.read_regular(path, limits.MAX_INPUT_BYTES, f"{name} file")
    try:
        obj = limits.json_loads(data, path)
    except InvalidParamsError:
        obj = _repaired(data, path)
        if obj is None:
            raise
    if not isinstance(obj, list):
        raise InvalidParamsError(f"{path}: not damo's {name} format (expected a JSON list)")
    return obj


def _repaired(data: bytes, path: str) -> list[Any] | None:
    # a file of JsonListFile whose last write was cut (the machine went down mid-write): its items are whole
    # lines; keep those before the broken one
    lines = data.split(b"\n")
    if not lines or lines[0].strip() != b"[":
        return None
    items: list[Any] = []
    for line in lines[1:]:
        line = line.strip().rstrip(b",")
        if not line or line == b"]":
            continue
        try:
            items.append(limits.json_loads(line, path))
        except InvalidParamsError:
            break
    log.info("%s: the last sample was cut short; read %d samples", path, len(items))
    return items


def read_kdamonds(path: str) -> list[dict[str, Any]]:
    """The kdamonds of a ``FILE.kdamonds`` (damo's or ours), as JSON.

    :raises InvalidParamsError: missing, not a regular file, too large or not a JSON list of objects
    """
    obj = _load_list(path, "kdamonds")
    if not all(isinstance(k, dict) for k in obj):
        raise InvalidParamsError(f"{path}: expected a list of kdamond objects")
    return obj


def read_mem_footprints(path: str) -> list[MemFootprint]:
    """The samples of a ``FILE.mem_footprint`` (damo's or ours).

    :raises InvalidParamsError: missing, not a regular file, too large, or not in damo's format (the message
        names the entry)
    """
    return [MemFootprint.from_kvpairs(kv, f"{path}: [{i}]") for i, kv in
            enumerate(_load_list(path, "mem_footprint"))]


def read_vmas(path: str, data: bytes | None = None) -> list[VmasSnapshot]:
    """The samples of a ``FILE.vmas`` (damo's or ours): mappings by pid, at most
    :data:`~damon_bpf.config.limits.MAX_MAPPINGS` a process.

    :param data: the file's bytes, when they were read already
    :raises InvalidParamsError: as :func:`read_mem_footprints`
    """
    return [VmasSnapshot.from_kvpairs(kv, f"{path}: [{i}]") for i, kv in enumerate(_load_list(path, "vmas", data))]


def read_proc_stats(path: str) -> list[ProcStatsSnapshot]:
    """The samples of a ``FILE.proc_stats`` (damo's or ours).

    :raises InvalidParamsError: as :func:`read_mem_footprints`
    """
    return [ProcStatsSnapshot.from_kvpairs(kv, f"{path}: [{i}]") for i, kv in
            enumerate(_load_list(path, "proc_stats"))]

