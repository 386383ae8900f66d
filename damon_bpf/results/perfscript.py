"""Reading perf recordings with data addresses: ``perf script -F ...`` text into numpy arrays.

No kernel counterpart; this is the offline twin of the ``perf`` access source. It reads any ``perf.data`` whose
samples carry a data address (``PERF_SAMPLE_ADDR``): ``perf record -d`` with any event (``-e page-faults -d``
works without a PMU), ``perf mem record`` and ``perf c2c record``.

**How.** ``perf evlist -v`` tells which sample fields each event recorded, and ``perf script -i FILE --force
--ns -G -F ...`` is asked for exactly the fields every event has (perf aborts on one an event lacks). Lines are
matched from the ``pid/tid`` on and ``ip``/``weight`` read from the end, since ``comm`` and the decoded
``data_src`` contain spaces.

**Writes** are samples of a store event or with ``PERF_MEM_OP_STORE`` in ``data_src``. **Sampled or exact**:
software and tracepoint events with a fixed period of 1 are exact; every other sample stands for ``period``
events (:attr:`PerfEvent.sampled`).

See docs/records.md, section "Perf recording import", for the command line, the line format and the bits.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from damon_bpf.config.limits import MAX_PERF_SCRIPT_BYTES, describe_size, require_regular
from damon_bpf.errors import InvalidParamsError, MissingDependencyError, PermissionDeniedError

__all__ = (
    "PerfDataError",
    "PerfEvent",
    "PerfSamples",
    "perf_binary",
    "parse_evlist",
    "read_evlist",
    "script_fields",
    "parse_script",
    "parse_symbols",
    "read_perf_data",
    "read_symbols",
    "PERF_MEM_OP_STORE",
    "PERF_TYPE_SOFTWARE",
    "PERF_TYPE_TRACEPOINT",
)

log = logging.getLogger(__name__)

#: ``PERF_TYPE_*`` (``include/uapi/linux/perf_event.h``).
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
#: ``PERF_MEM_OP_STORE`` in ``perf_mem_data_src.mem_op`` (bits 0-4, ``PERF_MEM_OP_SHIFT`` 0).
PERF_MEM_OP_STORE = 0x04
_PERF_MEM_OP_MASK = 0x1F
#: Addresses at or above this are kernel addresses (x86-64 and arm64 canonical upper halves).
KERNEL_ADDR_MIN = 1 << 63

_INSTALL_HINT = "perf is not installed: apt install linux-perf (Debian) or linux-tools-$(uname -r) (Ubuntu)"


class PerfDataError(InvalidParamsError):
    """A perf recording cannot be read: not a perf.data file, empty, or recorded without data addresses (bad
    input: exit code 2)."""


@dataclass(frozen=True)
class PerfEvent:
    """One event of a recording, from ``perf evlist -v``.

    :ivar name: perf's name for it (``page-faults``, ``cpu/mem-loads,ldlat=30/P``, ``page-faults:u``)
    :ivar type: ``perf_event_attr.type`` (``PERF_TYPE_*`` or a dynamic PMU type such as ``ibs_op``)
    :ivar config: ``perf_event_attr.config``
    :ivar sample_type: the ``PERF_SAMPLE_*`` names it recorded (``IP``, ``TID``, ``TIME``, ``ADDR``, ...)
    :ivar sample_period: the fixed period; None in frequency mode
    :ivar freq: frequency mode (``-F``/the default ``-F 4000``): each sample carries its own period
    """

    name: str
    type: int
    config: int = 0
    sample_type: frozenset[str] = frozenset()
    sample_period: int | None = None
    freq: bool = False

    @property
    def sampled(self) -> bool:
        """Each sample stands for ``period`` events (hardware events, periods above 1, frequency mode); False for
        software and tracepoint events reported one by one (``-c 1``), the exact events."""
        if self.type not in (PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT):
            return True
        return self.freq or (self.sample_period or 1) > 1

    @property
    def has_addr(self) -> bool:
        return "ADDR" in self.sample_type

    @property
    def is_store(self) -> bool:
        """The event counts stores (``mem-stores``, ``cpu/mem-stores/P``, ``..._STORES...`` raw names)."""
        return "store" in self.name.lower()

    @property
    def is_dummy(self) -> bool:
        """perf's side-band tracking event (``dummy:HG``, ``dummy:u``): software config 9, never sampled."""
        return self.type == PERF_TYPE_SOFTWARE and self.config == 9


@dataclass(eq=False)
class PerfSamples:
    """Samples of a recording as columns (one row per sample, in the file's order, which is time order).

    :ivar time_ns: perf timestamps, ns (perf's clock: ``perf_clock``/``sched_clock`` unless recorded with
        ``-k``; only differences matter here)
    :ivar addr: sampled data addresses
    :ivar ip: instruction pointers (the first user-space call-chain entry when chains were recorded)
    :ivar period: the events each sample stands for
    :ivar event: index into :attr:`events` per sample
    :ivar is_write: store events or ``data_src`` store operations
    :ivar data_src: ``perf_mem_data_src`` (0 where not recorded)
    :ivar weight: sample weight (load latency for PEBS; 0 where not recorded)
    :ivar cpu: CPU per sample (-1 where not recorded)
    :ivar comms: the last command name seen per pid
    """

    time_ns: npt.NDArray[np.int64]
    pid: npt.NDArray[np.int64]
    tid: npt.NDArray[np.int64]
    addr: npt.NDArray[np.uint64]
    ip: npt.NDArray[np.uint64]
    period: npt.NDArray[np.int64]
    event: npt.NDArray[np.int64]
    is_write: npt.NDArray[np.bool_]
    data_src: npt.NDArray[np.uint64]
    weight: npt.NDArray[np.int64]
    cpu: npt.NDArray[np.int64]
    events: tuple[PerfEvent, ...] = ()
    comms: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.time_ns.size)

    @property
    def sampled(self) -> npt.NDArray[np.bool_]:
        """Per sample, whether it stands for ``period`` events (:attr:`PerfEvent.sampled` of its event)."""
        flags = np.array([e.sampled for e in self.events] or [False], dtype=bool)
        return flags[self.event] if len(self) else np.zeros(0, dtype=bool)

    def pids(self) -> list[int]:
        """The processes with samples, by decreasing number of samples."""
        if not len(self):
            return []
        u, c = np.unique(self.pid, return_counts=True)
        order = np.lexsort((u, -c))
        return [int(p) for p in u[order]]

    def select(self, mask: npt.NDArray[np.bool_]) -> PerfSamples:
        """The samples where *mask* is true (a copy)."""
        return PerfSamples(self.time_ns[mask], self.pid[mask], self.tid[mask], self.addr[mask], self.ip[mask],
                           self.period[mask], self.event[mask], self.is_write[mask], self.data_src[mask],
                           self.weight[mask], self.cpu[mask], self.events, dict(self.comms))

    def for_pids(self, pids: Iterable[int]) -> PerfSamples:
        """The samples of the given processes."""
        return self.select(np.isin(self.pid, np.asarray(list(pids), dtype=np.int64)))

    @classmethod
    def empty(cls, events: Sequence[PerfEvent] = ()) -> PerfSamples:
        i = np.zeros(0, np.int64)
        u = np.zeros(0, np.uint64)
        return cls(i, i.copy(), i.copy(), u, u.copy(), i.copy(), i.copy(), np.zeros(0, bool), u.copy(), i.copy(),
                   i.copy(), tuple(events))


def perf_binary(perf: str | None = None) -> str:
    """The ``perf`` executable to run.

    :param perf: an explicit path or name; default ``$PERF`` or ``perf`` on ``$PATH``
    :raises MissingDependencyError: not found
    """
    name = perf or os.environ.get("PERF") or "perf"
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(_INSTALL_HINT if name == "perf" else f"perf not found at {name!r}")
    return path


def _run_perf(args: list[str], path: str, limit: int = MAX_PERF_SCRIPT_BYTES) -> str:
    # perf's standard output, at most *limit* bytes (perf is stopped past that); its standard error goes to a
    # temporary file, so neither pipe can fill up while the other is read
    try:
        with tempfile.TemporaryFile() as err_f:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err_f)
            assert proc.stdout is not None
            with proc.stdout:
                out = proc.stdout.read(limit + 1)
                if len(out) > limit:
                    proc.kill()
                    proc.wait()
                    raise InvalidParamsError(f"{path}: perf's text of the recording is larger than "
                                             f"{describe_size(limit)}; cut the recording down (perf record "
                                             "--duration, or perf script --time) or lower its sampling rate")
            proc.wait()
            err_f.seek(0)
            stderr = err_f.read().decode(errors="replace")
    except FileNotFoundError as err:
        raise MissingDependencyError(_INSTALL_HINT) from err
    if proc.returncode != 0:
        _raise_perf_error(stderr, path)
    return out.decode(errors="replace")


def _raise_perf_error(stderr: str, path: str) -> None:
    msg = " ".join(stderr.strip().split("\n")[-3:]).strip() or "perf failed"
    low = stderr.lower()
    if "no such file" in low or "failed to open" in low and not os.path.exists(path):
        raise InvalidParamsError(f"{path}: no such file")
    if "permission denied" in low:
        raise PermissionDeniedError(f"{path}: permission denied ({msg})")
    if "incompatible file format" in low or "not a perf" in low or "bad magic" in low:
        raise PerfDataError(f"{path} is not a perf.data file ({msg})")
    if "zero-sized" in low or "empty" in low:
        raise PerfDataError(f"{path} has no samples ({msg})")
    if "addr" in low and "attribute" in low:
        raise PerfDataError(f"{path}: samples have no data address: record with -d (perf record -d ...)")
    raise PerfDataError(f"perf could not read {path}: {msg}")


_EVLIST_RE = re.compile(r"^(?P<name>.+?): type: (?P<type>\d+), (?P<rest>.*)$")


def parse_evlist(text: str) -> list[PerfEvent]:
    """Parse ``perf evlist -v`` output (one event per line: ``NAME: type: T, size: S, config: 0x2, ...``)."""
    events = []
    for line in text.splitlines():
        m = _EVLIST_RE.match(line.strip())
        if m is None:
            continue
        attrs: dict[str, str] = {}
        for part in re.split(r",\s+(?![^{]*\})", m.group("rest")):
            k, sep, v = part.partition(": ")
            if sep:
                attrs[k.strip()] = v.strip()
        period_key = next((k for k in attrs if "sample_period" in k or k == "sample_freq"), None)
        freq = attrs.get("freq", "0") == "1"
        period: int | None = None
        if period_key is not None and not freq:
            try:
                period = int(attrs[period_key], 0)
            except ValueError:
                period = None
        try:
            config = int(attrs.get("config", "0"), 0)
        except ValueError:
            config = 0
        st = frozenset(s.strip() for s in attrs.get("sample_type", "").split("|") if s.strip())
        events.append(PerfEvent(m.group("name"), int(m.group("type")), config, st, period, freq))
    return events


def read_evlist(path: str, perf: str | None = None) -> list[PerfEvent]:
    """The events of the recording *path* (``perf evlist -v -f -i path``).

    :raises MissingDependencyError: perf is not installed
    :raises PerfDataError: *path* is not a readable perf.data file
    """
    exe = perf_binary(perf)
    if not os.path.lexists(path):
        raise InvalidParamsError(f"{path}: no such file")
    require_regular(path)  # perf would wait on a FIFO and read a device forever
    out = _run_perf([exe, "evlist", "-v", "-f", "-i", path], path)
    events = parse_evlist(out)
    if not events:
        raise PerfDataError(f"{path}: perf evlist shows no events (not a perf.data file?)")
    return events


def script_fields(events: Sequence[PerfEvent]) -> list[str]:
    """The ``perf script -F`` fields to ask for: the common ones plus the optional ones every sampling event of
    *events* recorded (perf aborts on a field an event lacks).

    :raises PerfDataError: some event recorded no data address
    """
    sampling = [e for e in events if not e.is_dummy] or list(events)
    if not any(e.sample_type for e in sampling):
        # an evlist that shows no sample types (other perf versions): ask for the basic fields and let perf
        # say if addr is missing
        return ["comm", "pid", "tid", "time", "event", "addr", "ip"]
    missing = [e.name for e in sampling if not e.has_addr]
    if missing:
        raise PerfDataError(f"events {', '.join(missing)} have no data addresses (PERF_SAMPLE_ADDR): record with "
                            f"-d (perf record -d ...), or use perf mem record / perf c2c record")
    common = frozenset.intersection(*(e.sample_type for e in sampling))
    fields = ["comm", "pid", "tid"]
    if "CPU" in common:
        fields.append("cpu")
    fields.append("time")
    if "PERIOD" in common:
        fields.append("period")
    fields += ["event", "addr"]
    if "DATA_SRC" in common:
        fields.append("data_src")
    if "WEIGHT" in common or "WEIGHT_STRUCT" in common:
        fields.append("weight")
    fields.append("ip")
    return fields


_HEAD_RE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+(?:\[(?P<cpu>\d+)\]\s+)?"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?:(?P<period>\d+)\s+)?(?P<event>\S+?):\s+(?P<rest>.*)$")


def _fast_re(fields: Sequence[str]) -> re.Pattern[str]:
    # One multi-line pattern for the whole text when there are no call chains: findall() does the work in C.
    tail = r"\s+([0-9a-fA-F]+)"  # addr
    if "data_src" in fields:
        tail += r"\s+([0-9a-fA-F]+)(?:[ \t][^\n]*)?"  # data_src, then its decoded text
    if "weight" in fields:
        tail += r"\s+(\d+)"
    if "ip" in fields:
        tail += r"\s+([0-9a-fA-F]+)"
    return re.compile(
        r"^[ \t]*(.*?)[ \t]+(-?\d+)/(-?\d+)[ \t]+(?:\[(\d+)\][ \t]+)?(\d+)\.(\d+):[ \t]+(?:(\d+)[ \t]+)?"
        r"(\S+?):" + tail + r"[ \t]*$", re.M)


def parse_script(text: str, fields: Sequence[str], events: Sequence[PerfEvent], *,
                 callchains: bool = False) -> PerfSamples:
    """Parse ``perf script --ns -F <fields>`` output (see the module docstring for the line format).

    :param fields: the ``-F`` fields the text was made with (:func:`script_fields`)
    :param events: the recording's events; samples name them, and their fixed periods fill in a missing
        ``period`` field
    :param callchains: the text has call chains (made without ``-G``): one tab-indented address per line after
        each sample line, which has no ``ip`` of its own; the first user-space entry becomes the sample's ``ip``
    :raises PerfDataError: a sample line cannot be parsed
    """
    rows: list[tuple[str, ...]] | None = None
    if not callchains:
        rows = _fast_re(fields).findall(text)
        nr_lines = sum(1 for line in text.splitlines() if line.strip())
        if len(rows) != nr_lines:
            rows = None  # some line did not match: the line parser says which
    if rows is None:
        rows = _parse_lines(text, fields, callchains)
    return _columns(rows, fields, events)


def _parse_lines(text: str, fields: Sequence[str], callchains: bool) -> list[tuple[str, ...]]:
    # Rows in the fast pattern's group order: comm pid tid cpu sec frac period event addr [ds] [w] [ip]
    has_ds = "data_src" in fields
    has_w = "weight" in fields
    has_ip = "ip" in fields and not callchains
    rows: list[list[str]] = []
    chain_open = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            chain_open = False
            continue
        if callchains and line[0] in "\t " and _is_chain_line(line):
            if chain_open:
                tok = line.split(None, 1)[0]
                ip = int(tok, 16)
                cur = int(rows[-1][-1], 16) if rows[-1][-1] else None
                if cur is None or (cur >= KERNEL_ADDR_MIN and ip < KERNEL_ADDR_MIN):
                    rows[-1][-1] = tok
                    if ip < KERNEL_ADDR_MIN:
                        chain_open = False
            continue
        m = _HEAD_RE.match(line)
        toks = m.group("rest").split() if m is not None else []
        row: list[str] = []
        try:
            if m is None:
                raise ValueError
            row = [m.group("comm"), m.group("pid"), m.group("tid"), m.group("cpu") or "", m.group("sec"),
                   m.group("frac"), m.group("period") or "", m.group("event"), str(int(toks[0], 16) and toks[0])]
            if has_ds:
                int(toks[1], 16)
                row.append(toks[1])
            if has_w:
                row.append(str(int(toks[-2] if has_ip else toks[-1])))
            if has_ip:
                int(toks[-1], 16)
                row.append(toks[-1])
        except (IndexError, ValueError) as err:
            raise PerfDataError(f"perf script line {lineno} is not a sample with the fields {list(fields)}: "
                                f"{line.strip()[:120]!r}") from err
        if callchains:
            row.append("")
        rows.append(row)
        chain_open = callchains
    return [tuple(r) for r in rows]


def _columns(rows: list[tuple[str, ...]], fields: Sequence[str], events: Sequence[PerfEvent]) -> PerfSamples:
    if not rows:
        return PerfSamples.empty(events)
    cols = list(zip(*rows))
    comm, pid_s, tid_s, cpu_s, sec_s, frac_s, period_s, event_s, addr_s = cols[:9]
    k = 9
    ds_s = w_s = ip_s = None
    if "data_src" in fields:
        ds_s, k = cols[k], k + 1
    if "weight" in fields:
        w_s, k = cols[k], k + 1
    if k < len(cols):
        ip_s = cols[k]
    n = len(rows)
    by_name = {e.name: i for i, e in enumerate(events)}
    extra: list[PerfEvent] = []
    ev_idx: dict[str, int] = {}
    for name in set(event_s):
        i = by_name.get(name)
        if i is None:
            i = len(events) + len(extra)
            extra.append(PerfEvent(name, -1))
        ev_idx[name] = i
    all_events = tuple(events) + tuple(extra)
    ev = np.fromiter(map(ev_idx.__getitem__, event_s), dtype=np.int64, count=n)
    pid = np.array(pid_s, dtype=np.int64)
    comms = dict(zip(pid_s, comm))
    comms = {int(k): v for k, v in comms.items()}
    if all(len(f) == 9 for f in frac_s):
        frac = np.array(frac_s, dtype=np.int64)
    else:  # perf script without --ns: microseconds
        frac = np.array([f.ljust(9, "0")[:9] for f in frac_s], dtype=np.int64)
    time_ns = np.array(sec_s, dtype=np.int64) * 1_000_000_000 + frac
    fixed = np.array([e.sample_period or 1 for e in all_events], dtype=np.int64)
    if all(period_s):
        period = np.array(period_s, dtype=np.int64)
    else:
        period = fixed[ev].copy()
        have = np.array([bool(p) for p in period_s])
        if have.any():
            period[have] = np.array([p for p in period_s if p], dtype=np.int64)

    def hex_col(col: Sequence[str] | None) -> npt.NDArray[np.uint64]:
        return np.zeros(n, dtype=np.uint64) if col is None else _hex_to_u64(col)

    ds = hex_col(ds_s)
    store = np.array([e.is_store for e in all_events], dtype=bool)
    is_write = store[ev] | ((ds & np.uint64(_PERF_MEM_OP_MASK)) & np.uint64(PERF_MEM_OP_STORE) > 0)
    return PerfSamples(
        time_ns=time_ns,
        pid=pid,
        tid=np.array(tid_s, dtype=np.int64),
        addr=hex_col(addr_s),
        ip=hex_col(ip_s),
        period=np.maximum(period, 1),
        event=ev,
        is_write=is_write,
        data_src=ds,
        weight=np.zeros(n, dtype=np.int64) if w_s is None else np.array(w_s, dtype=np.int64),
        cpu=np.array(cpu_s, dtype=np.int64) if all(cpu_s) else np.full(n, -1, dtype=np.int64),
        events=all_events,
        comms=comms,
    )


def _hex_to_u64(col: Sequence[str]) -> npt.NDArray[np.uint64]:
    # int(x, 16) over a column ('' is 0); map() keeps the loop in C
    if "" in col:
        col = [x or "0" for x in col]
    try:
        return np.fromiter(map(int, col, itertools.repeat(16)), dtype=np.uint64, count=len(col))
    except OverflowError:
        raise PerfDataError("an address wider than 64 bits") from None


def _is_chain_line(line: str) -> bool:
    # A call-chain entry: indented, and the first word is a hex address (sample lines start with the comm,
    # which perf right-aligns with spaces, so the pid/tid check decides for those)
    tok = line.split(None, 1)
    if not tok:
        return False
    return re.fullmatch(r"[0-9a-fA-F]+", tok[0]) is not None and _HEAD_RE.match(line) is None


def read_perf_data(path: str, *, pids: Iterable[int] | None = None, perf: str | None = None) -> PerfSamples:
    """Read the samples of the recording *path* (``perf.data``) through ``perf script``.

    :param pids: keep only these processes' samples (default: all)
    :param perf: the perf executable (default ``$PERF`` or ``perf``)
    :raises MissingDependencyError: perf is not installed
    :raises PerfDataError: not a perf.data file, no samples, or no data addresses recorded
    :raises InvalidParamsError: no such file
    """
    exe = perf_binary(perf)
    events = read_evlist(path, exe)
    fields = script_fields(events)
    callchains = any("CALLCHAIN" in e.sample_type for e in events if not e.is_dummy)
    if callchains:
        fields = [f for f in fields if f != "ip"] + ["ip"]
    cmd = [exe, "script", "-i", path, "--force", "--ns", "-F", ",".join(fields)]
    if not callchains:
        cmd.append("-G")
    log.debug("running %s", " ".join(cmd))
    text = _run_perf(cmd, path)
    samples = parse_script(text, fields, events, callchains=callchains)
    if pids is not None:
        samples = samples.for_pids(pids)
    return samples


_SYM_RE = re.compile(r"^\s*(?P<pid>-?\d+)\s+(?P<ip>[0-9a-fA-F]+)\s+(?P<sym>.*?)(?:\s+\((?P<dso>[^()]*)\))?\s*$")


def parse_symbols(text: str) -> dict[tuple[int, int], str]:
    """Parse ``perf script -F pid,ip,sym,symoff,dso -G`` output into ``{(pid, ip): "symbol+0xoff [module]"}``
    (the form of bcc's ``BPF.sym(..., show_module=True, show_offset=True)``). Unresolved symbols
    (``[unknown]``) keep their module: ``"[unknown] [libfoo.so]"``."""
    out: dict[tuple[int, int], str] = {}
    for line in text.splitlines():
        m = _SYM_RE.match(line)
        if m is None:
            continue
        key = (int(m.group("pid")), int(m.group("ip"), 16))
        if key in out:
            continue
        sym = m.group("sym").strip() or "[unknown]"
        dso = m.group("dso")
        out[key] = f"{sym} [{os.path.basename(dso)}]" if dso else sym
    return out


def read_symbols(path: str, *, perf: str | None = None) -> dict[tuple[int, int], str]:
    """Symbolize every sample's instruction pointer with perf's own symbolizer (the recording's mmap events and
    the binaries on this machine: works after the processes exited). ``{(pid, ip): "sym+0xoff [module]"}``;
    empty when the recording has call chains (their first entries are not the sampled ``ip``).

    :raises MissingDependencyError: perf is not installed
    :raises PerfDataError: perf cannot read *path*
    """
    exe = perf_binary(perf)
    events = read_evlist(path, exe)
    if any("CALLCHAIN" in e.sample_type for e in events if not e.is_dummy):
        return {}
    text = _run_perf([exe, "script", "-i", path, "--force", "-G", "-F", "pid,ip,sym,symoff,dso"], path)
    return parse_symbols(text)
