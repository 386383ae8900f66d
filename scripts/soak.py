#!/usr/bin/env python3
"""Soak test of damon-bpf's cleanup (issue #17): monitor, record and export sessions killed at random moments.

Rounds, for ``--minutes`` (default 20; ``--quick``: 2), each with its settings drawn from ``--seed``:

1. **A session** of the ``damon-bpf`` of this checkout (``python -m damon_bpf`` with ``PYTHONPATH`` set to it):
   ``monitor --json``, ``record -o DIR/rN.data`` or ``export --listen 127.0.0.1:PORT`` (a free port, sometimes
   ``--textfile DIR`` too), with ``--source pte`` or ``--source fault`` (``fault`` with ``--numa-hint-faults``
   half the time: it turns ``kernel.numa_balancing`` on for the session), ``--follow-children`` half the time,
   against the soak's long-lived workload (``PID``) or a fresh one it starts itself (``-- CMD``).
2. **The workload** (this file with ``--workload``) keeps forking short-lived children (each maps and touches a
   few MiB, some ``exec()`` a fresh interpreter), maps, touches, ``MADV_DONTNEED``\\s and unmaps anonymous
   memory from two threads, and ``exec()``\\s a fresh interpreter of itself every 5-20 s (same pid, new mm).
3. **The end**, after 2-10 s (the ``fault`` source's BPF compile takes 1-3 s of that, so some ends land in
   the start-up): SIGTERM, SIGINT, SIGKILL, or SIGSTOP for 1-4 s, SIGCONT, then SIGTERM. ``export``'s
   ``/metrics`` is scraped a few times while it runs.
4. **The checks**, once the session has exited (each failure is counted by kind, with examples):

   ====================== ==========================================================================================
   ``bpf_prog_left``      a BPF program of ours (the functions of ``bpf/*.bpf.c``: ``pte_walk``, ``on_fault_raw``...)
                          loaded during the round is still loaded 3 s after the exit, held by one of our processes
                          or by none (``bpftool prog show``; holders from ``/proc/*/fdinfo``)
   ``sysctl_left``        ``kernel.numa_balancing``, ``kernel.bpf_stats_enabled`` or ``kernel.task_delayacct``, which
                          the session changed (it was among the holders of ``/run/damon-bpf/sysctl-NAME.json``),
                          is not back to its value before the round within 3 s (the watchdog's delay after a
                          SIGKILL);
                          ``sysctl_record_left``: the session is still a holder in ``/run/damon-bpf/sysctl-*.json``
   ``process_left``       a process started by the session (the ``-- CMD`` child, its children, the sysctl
                          watchdog: every process whose environment has the round's marker) is alive 3 s after
   ``tmp_left``           a file beside the records or in the textfile folder other than ``rN.data``, its
                          journal, sidecars and side files (``.journal``, ``.attribution``, ``.threads``,
                          ``.kdamonds``, ``.mem_footprint``, ``.vmas``, ``.proc_stats``, ``.profile``), their
                          ``.old``, and ``damon_bpf.prom``, or
                          a file of the session in ``/run/damon-bpf`` (its pid in the name) that is not ``.json``
   ``registration_left``  a ``/run/damon-bpf/record-*.json`` of a record of the soak whose writer is gone: at once
                          after a clean end, or once the next record session has started (it completes killed
                          recordings; monitor and export sessions do not)
   ``record_not_completed`` the next record session started and the record file still holds fewer snapshots than its
                          journal; ``journal_left``: a cleanly ended record kept its journal; ``record_missing``:
                          a record session that started and ended cleanly wrote no file
   ``report_info_failed`` ``damon-bpf report info -i FILE`` did not exit 0 with ``snapshots`` in its output
   ``damo_failed``        ``damo report wss --input FILE --exclude_samples 0`` did not exit 0 (or printed a
                          traceback); a record without snapshots is a note (``empty_record``), not a failure
   ``exit_code``          not 0 after SIGTERM/SIGINT (also allowed: death by the signal before the handlers are
                          installed, 130 or 143), not -9 after SIGKILL; ``exited_early``: ended before the signal;
                          ``no_exit``: still running 20 s after it (then SIGKILLed); ``traceback``: one on stderr
   ``json_output``        a line of ``monitor --json`` that is not JSON (a torn last line after SIGKILL is allowed)
   ``scrape_failed``      a scrape of ``/metrics`` failed after the exporter announced itself; ``port_left``: its
                          port is still bound after the exit
   ====================== ==========================================================================================

At the end one more short record session completes the last killed recording, and every record of the soak is read
once more by both readers (failures then count as ``final_*``). The summary also says how often the watched paths
were taken (``exercised``): rounds whose session changed a sysctl (and of those, how many were SIGKILLed: the
watchdog's path), killed recordings whose file was behind its journal at the kill (the next record session's completion
path), ``-- CMD`` and ``--follow-children`` rounds, scrapes.

Other developers' damon-bpf sessions and tests on the machine are told apart, noted (``foreign_*``) and not
counted: a program held by a process not ours, and a changed sysctl that a live session not ours holds (its
``/run/damon-bpf/sysctl-*.json``) or that the round's session did not record changing (a session records before
it changes; a test may keep its records elsewhere). "Ours" is a marker in the environment of every process the
soak starts (inherited by their children), read from ``/proc/PID/environ``.

The soak cleans up at exit, also on Ctrl-C or SIGTERM: it kills the session and the workload (by pid), every
process left with its marker, restores a sysctl that one of its sessions changed if it is not back (unless a live
session not ours holds it), removes its registrations from ``/run/damon-bpf`` and its temporary folder
(``--keep`` keeps the folder).

Usage: scripts/soak.py [--minutes 20 | --quick] [--seed N] [--rounds N] [--json FILE] [--keep]
Writes bench/results/soak.json (or --json FILE) and prints a summary table. Needs root (BPF, sysctls).
Not part of the test suite: run it before a release (``sudo .venv/bin/python scripts/soak.py``).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import mmap
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "soak.json"
#: where damon-bpf keeps its sysctl records and its registry of live recordings (damon_bpf/linux/sysctl.py,
#: damon_bpf/results/records/journal.py)
STATE_DIR = Path("/run/damon-bpf")
SYSCTLS = ("kernel.numa_balancing", "kernel.bpf_stats_enabled", "kernel.task_delayacct")
#: marker of every process the soak starts: "<soak pid>-<random>"; rounds add ROUND_ENV = "<token>:<round>"
TOKEN_ENV = "DAMON_BPF_SOAK"
ROUND_ENV = "DAMON_BPF_SOAK_ROUND"
BPF_OBJ_NAME_LEN = 16  # include/uapi/linux/bpf.h: program names are cut to 15 characters
PAGE = mmap.PAGESIZE
MiB = 1 << 20
GRACE_S = 3.0  # how long a check waits for the state to come back (the sysctl watchdog's delay)
EXIT_WAIT_S = 20.0  # how long a session may take to end after its signal
#: a record and what a recording writes beside it: the journal, the code and thread sidecars, damo's profiling
#: recipe's side files (record --do_record: kdamonds, mem_footprint, vmas, proc_stats, profile), and their .old
RECORD_FILE = re.compile(r"^r\d+\.data(\.journal|\.attribution|\.threads|\.kdamonds|\.mem_footprint|\.vmas"
                         r"|\.proc_stats|\.profile)?(\.old)?$")

# ================================================================================================ the workload

_CHILD_SNIPPET = ("import mmap, random, time\n"
                  "m = mmap.mmap(-1, 4 << 20)\n"
                  "for i in range(0, 4 << 20, 4096): m[i] = 1\n"
                  "time.sleep(random.random() * 0.3)\n")


def _set_pdeathsig() -> None:
    # PR_SET_PDEATHSIG (include/uapi/linux/prctl.h): SIGKILL when the parent (the forking thread) dies
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)


def _touch(m: mmap.mmap, rng: random.Random, nr_pages: int | None = None) -> None:
    n = len(m) // PAGE
    if nr_pages is None:
        for i in range(n):
            m[i * PAGE] = 1
    else:
        for _ in range(nr_pages):
            m[rng.randrange(n) * PAGE] = 1


def _workload_child(parent: int, r: float, size_mib: int, nap_s: float) -> None:
    # a short-lived child: dies with the workload (its own business: the monitor answers for its direct child
    # only), maps and touches memory or exec()s a fresh interpreter that does
    try:
        _set_pdeathsig()
        if os.getppid() != parent:
            os._exit(0)
        if r < 0.15:
            os.execv(sys.executable, [sys.executable, "-c", _CHILD_SNIPPET])
        m = mmap.mmap(-1, size_mib * MiB)
        _touch(m, random.Random(r))
        time.sleep(nap_s)
        m.close()
    finally:
        os._exit(0)


def workload_main(max_mib: int, generation: int) -> int:
    """The soak's target: forks, exec()s, maps and unmaps forever (``--workload``); never returns."""
    rng = random.Random(os.getpid() * 1_000_003 + time.time_ns())
    maps: list[mmap.mmap] = []
    lock = threading.Lock()

    def toucher() -> None:  # a second thread: numa balancing scans only multi-threaded processes on one node
        trng = random.Random(rng.random())
        while True:
            with lock:
                if maps:
                    _touch(trng.choice(maps), trng, 256)
            time.sleep(0.01)

    threading.Thread(target=toucher, daemon=True).start()
    children: set[int] = set()
    now = time.monotonic()
    reexec_at = now + rng.uniform(5.0, 20.0)
    next_map = next_fork = now
    while True:
        now = time.monotonic()
        if now >= next_map:
            m = mmap.mmap(-1, rng.randint(1, 16) * MiB)
            _touch(m, rng)
            with lock:
                maps.append(m)
                if rng.random() < 0.3:
                    rng.choice(maps).madvise(mmap.MADV_DONTNEED)
                while sum(len(x) for x in maps) > max_mib * MiB:
                    maps.pop(rng.randrange(len(maps))).close()
            next_map = now + rng.uniform(0.2, 0.8)
        if now >= next_fork:
            r, size, nap = rng.random(), rng.randint(1, 4), rng.uniform(0.0, 0.3)
            me = os.getpid()
            pid = os.fork()
            if pid == 0:
                _workload_child(me, r, size, nap)
            children.add(pid)
            next_fork = now + rng.uniform(0.1, 0.4)
        for pid in list(children):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
            except ChildProcessError:
                children.discard(pid)
        if now >= reexec_at:
            for pid in children:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), "--workload",
                                      "--max-mib", str(max_mib), "--generation", str(generation + 1)])
        time.sleep(0.05)


# ================================================================================================ /proc and /run


def _read(path: str | Path) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _environ(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return "?"


def _pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def processes_with(entry: str) -> list[int]:
    """Live processes (not zombies) whose environment holds *entry* (``NAME=VALUE``), this one left out."""
    me = os.getpid()
    return [p for p in _pids() if p != me and entry in _environ(p) and _alive(p)]


def is_ours(pid: int, token: str) -> bool:
    return f"{TOKEN_ENV}={token}" in _environ(pid)


def read_sysctls() -> dict[str, str]:
    return {n: _read("/proc/sys/" + n.replace(".", "/")).strip() for n in SYSCTLS}


def write_sysctl(name: str, value: str) -> None:
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(value + "\n")


def state_files(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """``/run/damon-bpf/<kind>-*.json`` (``sysctl``, ``record``) with their contents (unreadable ones: {})."""
    out = []
    if STATE_DIR.is_dir():
        for p in sorted(STATE_DIR.glob(f"{kind}-*.json")):
            try:
                data = json.loads(p.read_text())
            except (OSError, ValueError):
                data = {}
            out.append((p, data if isinstance(data, dict) else {}))
    return out


def sysctl_holders(data: dict[str, Any]) -> list[int]:
    """The pids holding a sysctl changed, from its record: ``sysctl-NAME.json`` (``holders``: the sessions that
    share the change) or, of older versions, ``sysctl-NAME-PID.json`` (``pid``)."""
    holders = data.get("holders")
    if isinstance(holders, list):
        return [h["pid"] for h in holders if isinstance(h, dict) and isinstance(h.get("pid"), int)]
    pid = data.get("pid")
    return [pid] if isinstance(pid, int) else []


def bpf_program_names() -> tuple[str, ...]:
    """The BPF functions of ``bpf/*.bpf.c`` (``int NAME(...ctx...)`` at the start of a line), as the kernel
    names the programs (15 characters at most)."""
    names = set()
    for src in (REPO / "bpf").glob("*.bpf.c"):
        for m in re.finditer(r"^int\s+(\w+)\s*\(", src.read_text(), re.M):
            names.add(m.group(1)[:BPF_OBJ_NAME_LEN - 1])
    return tuple(sorted(names)) or ("pte_walk", "pte_observe", "pte_walk_slots", "on_fault_raw", "on_fault_tp",
                                    "on_fault_perf", "on_sample_read", "on_sample_write")


def bpf_programs(names: tuple[str, ...]) -> dict[int, str]:
    """Loaded BPF programs with one of *names*: id -> name (``bpftool prog show -j``)."""
    try:
        out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, timeout=30).stdout
        progs = json.loads(out or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    return {int(p["id"]): str(p.get("name", "")) for p in progs if p.get("name") in names}


def max_bpf_prog_id() -> int:
    try:
        out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, timeout=30).stdout
        return max((int(p["id"]) for p in json.loads(out or "[]")), default=0)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def bpf_holders() -> dict[int, set[int]]:
    """BPF program id -> the processes holding it through a program or link fd (``/proc/*/fdinfo``)."""
    held: dict[int, set[int]] = collections.defaultdict(set)
    for pid in _pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if "bpf-prog" not in link and "bpf_link" not in link:
                continue
            m = re.search(r"^prog_id:\s*(\d+)", _read(f"/proc/{pid}/fdinfo/{fd}"), re.M)
            if m:
                held[int(m.group(1))].add(pid)
    return held


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_bound(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def file_snapshots(path: str) -> int | None:
    """Snapshots in a record file (damo's zlib JSON), read without damon-bpf (which would complete it from its
    journal); None when unreadable."""
    try:
        with open(path, "rb") as f:
            recs = json.loads(zlib.decompress(f.read()))
        return sum(len(r.get("snapshots", [])) for r in recs)
    except (OSError, ValueError, zlib.error, TypeError, AttributeError):
        return None


def journal_snapshots(path: str) -> int | None:
    """Snapshots (per target with regions, as in the record file) in a journal; a torn last line is left out."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    n = 0
    for line in data.split(b"\n")[1:-1]:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("type") == "snapshot":
            n += sum(1 for t in e.get("targets", []) if t.get("start"))
    return n


# ================================================================================================ the soak


@dataclass
class Round:
    """One session of the soak and what its checks found."""

    n: int
    command: str  # monitor | record | export
    source: str  # pte | fault
    numa: bool
    follow: bool
    target: str  # pid | cmd
    textfile: bool
    run_s: float
    action: str  # TERM | INT | KILL | STOP
    stop_s: float = 0.0
    rc: int | None = None
    started: bool = False
    exit_s: float | None = None
    scrapes_ok: int = 0
    scrapes_failed: int = 0
    #: sysctls the session changed: it was seen holding /run/damon-bpf/sysctl-NAME.json while it ran (the restore paths
    #: the round exercised; a change without such a record is another program's)
    sysctls_changed: list[str] = field(default_factory=list)
    #: a killed record: (snapshots in the file, in the journal) right after the kill
    record_at_kill: tuple[int | None, int | None] | None = None
    record_completed: bool | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        src = self.source + ("+numa" if self.numa else "") + ("+follow" if self.follow else "")
        return f"{self.command} {src} {self.target}{' +textfile' if self.textfile else ''}"


@dataclass
class _Pending:
    # a record of a killed session: the next record session must complete it and drop its registration
    path: str
    round: Round


class Soak:
    """Runs the rounds, keeps the counts, and cleans up (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.token = f"{os.getpid()}-{random.SystemRandom().getrandbits(48):012x}"
        self.dir = Path(tempfile.mkdtemp(prefix="damon-bpf-soak-"))
        os.chmod(self.dir, 0o755)
        self.records_dir = self.dir / "records"
        self.textfile_dir = self.dir / "textfile"
        self.logs_dir = self.dir / "logs"
        self.run_dir = self.dir / "cwd"
        for d in (self.records_dir, self.textfile_dir, self.logs_dir, self.run_dir):
            d.mkdir()
        self.prog_names = bpf_program_names()
        self.damo = args.damo or shutil.which("damo") or str(Path(sys.executable).with_name("damo"))
        self.initial_sysctls = read_sysctls()
        self.env = dict(os.environ, PYTHONPATH=str(REPO), **{TOKEN_ENV: self.token})
        self.env.pop(ROUND_ENV, None)
        self.workload: subprocess.Popen[bytes] | None = None
        self.session: subprocess.Popen[bytes] | None = None
        self.session_pids: set[int] = set()
        self.rounds: list[Round] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)
        self.notes: collections.Counter[str] = collections.Counter()
        self.note_examples: dict[str, list[str]] = collections.defaultdict(list)
        self.pending: list[_Pending] = []
        self.ready: list[str] = []  # records whose writer is gone and that a later session saw: to be read
        self.records: dict[str, int] = {}  # every record file of the soak -> the round that wrote it
        self.records_read: dict[str, dict[str, Any]] = {}
        self.tmp_seen: set[str] = set()
        self.workload_starts = 0
        self.readers_runs = 0
        self.t0 = time.monotonic()

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def fail(self, rnd: Round | None, kind: str, detail: str) -> None:
        self.failures[kind] += 1
        where = f"round {rnd.n} ({rnd.label}, {rnd.action})" if rnd is not None else "final"
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(f"{where}: {detail}")
        if rnd is not None:
            rnd.failures.append(f"{kind}: {detail}")

    def note(self, rnd: Round | None, kind: str, detail: str) -> None:
        self.notes[kind] += 1
        where = f"round {rnd.n}" if rnd is not None else "final"
        if len(self.note_examples[kind]) < 3:
            self.note_examples[kind].append(f"{where}: {detail}")
        if rnd is not None:
            rnd.notes.append(f"{kind}: {detail}")

    # -- the workload --------------------------------------------------------------------------------------

    def workload_cmd(self) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--workload", "--max-mib", str(self.args.max_mib)]

    def ensure_workload(self) -> int:
        if self.workload is not None and self.workload.poll() is None and _alive(self.workload.pid):
            return self.workload.pid
        if self.workload is not None:
            self.note(None, "workload_restarted", f"the workload ended with {self.workload.returncode}")
        self.workload = subprocess.Popen(self.workload_cmd(), env=self.env, cwd=self.run_dir,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
        self.workload_starts += 1
        time.sleep(0.5)  # its first mappings
        return self.workload.pid

    # -- one round -----------------------------------------------------------------------------------------

    def draw(self, n: int) -> Round:
        r = self.rng
        source = r.choice(("pte", "fault"))
        action = r.choice(("TERM", "INT", "KILL", "STOP"))
        return Round(n=n, command=r.choice(("monitor", "record", "export")), source=source,
                     numa=source == "fault" and r.random() < 0.5, follow=r.random() < 0.5,
                     target="cmd" if r.random() < 0.3 else "pid", textfile=False, run_s=round(r.uniform(2, 10), 2),
                     action=action, stop_s=round(r.uniform(1, 4), 2) if action == "STOP" else 0.0)

    def session_cmd(self, rnd: Round, port: int) -> tuple[list[str], str | None]:
        cmd = [sys.executable, "-m", "damon_bpf", rnd.command]
        record = None
        if rnd.command == "monitor":
            cmd.append("--json")
        elif rnd.command == "record":
            record = str(self.records_dir / f"r{rnd.n}.data")
            cmd += ["-o", record]
        else:
            cmd += ["--listen", f"127.0.0.1:{port}"]
            rnd.textfile = self.rng.random() < 0.3
            if rnd.textfile:
                cmd += ["--textfile", str(self.textfile_dir)]
        cmd += ["--source", rnd.source]
        if rnd.numa:
            cmd.append("--numa-hint-faults")
        if rnd.follow:
            cmd.append("--follow-children")
        if rnd.target == "pid":
            cmd.append(str(self.ensure_workload()))
        else:
            cmd += ["--"] + self.workload_cmd()
        return cmd, record

    def run_round(self, n: int) -> Round:
        rnd = self.draw(n)
        self.rounds.append(rnd)
        port = free_port()
        cmd, record = self.session_cmd(rnd, port)
        before = read_sysctls()
        prog_floor = max_bpf_prog_id()
        state_before = set(os.listdir(STATE_DIR)) if STATE_DIR.is_dir() else set()
        marker = f"{ROUND_ENV}={self.token}:{n}"
        env = dict(self.env, **{ROUND_ENV: f"{self.token}:{n}"})
        out_path, err_path = self.logs_dir / f"r{n}.out", self.logs_dir / f"r{n}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.session = p = subprocess.Popen(cmd, env=env, cwd=self.run_dir, stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=err)
        self.session_pids.add(p.pid)
        t0 = time.monotonic()
        checked_pending = False
        next_scrape = t0 + self.rng.uniform(0.5, 2.0)
        while time.monotonic() < t0 + rnd.run_s and p.poll() is None:
            time.sleep(0.2)
            self.see_sysctl_records(rnd, p.pid)
            if not rnd.started:
                rnd.started = self.session_started(rnd, out_path, err_path)
            if rnd.started and not checked_pending and rnd.command == "record":  # only a recording completes
                self.check_pending(rnd)
                checked_pending = True
            if rnd.command == "export" and time.monotonic() >= next_scrape:
                self.scrape(rnd, port, err_path)
                next_scrape = time.monotonic() + self.rng.uniform(0.5, 2.0)
        if p.poll() is not None:
            self.fail(rnd, "exited_early", f"exit {p.returncode} after {time.monotonic() - t0:.1f} s: "
                      f"{self.tail(err_path)}")
        else:
            self.end_session(rnd, p)
        rnd.rc = p.returncode
        self.session = None
        if not rnd.started:
            rnd.started = self.session_started(rnd, out_path, err_path)
        if rnd.started and not checked_pending and rnd.command == "record":
            self.check_pending(rnd)
        self.check_exit(rnd, err_path)
        self.check_processes(rnd, marker)
        self.check_sysctls(rnd, before, p.pid)
        self.check_bpf(rnd, prog_floor)
        self.check_files(rnd)
        self.check_state_tmp(rnd, state_before, p.pid)
        if rnd.command == "export" and port_bound(port):
            self.fail(rnd, "port_left", f"127.0.0.1:{port} still bound")
        if rnd.command == "monitor":
            self.check_json(rnd, out_path)
        if record is not None:
            self.after_record(rnd, record)
        self.read_ready()
        for path in (out_path, err_path):
            if not rnd.failures and not self.args.keep:
                path.unlink(missing_ok=True)
        return rnd

    def session_started(self, rnd: Round, out_path: Path, err_path: Path) -> bool:
        # the start-up line (a record session prints it after its writer completed killed recordings), or
        # monitor --json's output
        if rnd.command == "monitor":
            return out_path.stat().st_size > 0
        doing = "recording" if rnd.command == "record" else "exporting"
        return f"damon-bpf: {doing} pid" in _read(err_path)

    def end_session(self, rnd: Round, p: subprocess.Popen[bytes]) -> None:
        sig = {"TERM": signal.SIGTERM, "INT": signal.SIGINT, "KILL": signal.SIGKILL}.get(rnd.action)
        if sig is None:  # STOP: stopped for a while, continued, then ended with SIGTERM
            p.send_signal(signal.SIGSTOP)
            time.sleep(rnd.stop_s)
            p.send_signal(signal.SIGCONT)
            time.sleep(self.rng.uniform(0.3, 1.5))
            sig = signal.SIGTERM
        t = time.monotonic()
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.fail(rnd, "no_exit", f"still running {EXIT_WAIT_S:.0f} s after SIG{rnd.action}; SIGKILLed")
            p.kill()
            p.wait()
        rnd.exit_s = round(time.monotonic() - t, 3)

    def scrape(self, rnd: Round, port: int, err_path: Path) -> None:
        announced = "damon-bpf: serving" in _read(err_path)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                body = resp.read().decode(errors="replace")
            if resp.status != 200 or "# HELP damon_working_set_bytes" not in body:
                raise ValueError(f"status {resp.status}, {len(body)} bytes without damon_working_set_bytes")
            rnd.scrapes_ok += 1
        except (OSError, ValueError) as err:
            if announced:
                rnd.scrapes_failed += 1
                self.fail(rnd, "scrape_failed", f"{type(err).__name__}: {err}")

    # -- checks --------------------------------------------------------------------------------------------

    @staticmethod
    def tail(path: Path, lines: int = 2) -> str:
        text = [ln for ln in _read(path).splitlines() if ln.strip()]
        return " | ".join(ln.strip()[:200] for ln in text[-lines:]) or "(no stderr)"

    def check_exit(self, rnd: Round, err_path: Path) -> None:
        rc = rnd.rc
        err = _read(err_path)
        if "Traceback (most recent call last)" in err:
            last = [ln for ln in err.splitlines() if ln.strip()][-1]
            self.fail(rnd, "traceback", f"exit {rc}: {last.strip()[:200]}")
        if any(f.startswith(("exited_early", "no_exit")) for f in rnd.failures):
            return
        allowed = {"TERM": {0, -15, 143}, "STOP": {0, -15, 143}, "INT": {0, -2, 130}, "KILL": {-9}}[rnd.action]
        if rc not in allowed:
            self.fail(rnd, "exit_code", f"exit {rc} after SIG{rnd.action}: {self.tail(err_path)}")
        elif rc in (-15, -2):
            self.note(rnd, "killed_by_signal_in_startup", f"exit {rc}: the signal came before the handlers")

    def check_processes(self, rnd: Round, marker: str) -> None:
        deadline = time.monotonic() + GRACE_S
        left = processes_with(marker)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = processes_with(marker)
        for pid in left:
            self.fail(rnd, "process_left", f"pid {pid}: {_cmdline(pid)}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def foreign_sysctl_holders(self, name: str) -> list[int]:
        # live sessions not ours that hold *name* changed (their /run/damon-bpf/sysctl-*.json)
        out = []
        for _, data in state_files("sysctl"):
            if data.get("name") != name:
                continue
            out += [pid for pid in sysctl_holders(data) if _alive(pid) and not is_ours(pid, self.token)]
        return out

    @staticmethod
    def see_sysctl_records(rnd: Round, session_pid: int) -> None:
        for _, data in state_files("sysctl"):
            name = data.get("name")
            if session_pid in sysctl_holders(data) and isinstance(name, str) and name not in rnd.sysctls_changed:
                rnd.sysctls_changed.append(name)

    def check_sysctls(self, rnd: Round, before: dict[str, str], session_pid: int) -> None:
        self.see_sysctl_records(rnd, session_pid)
        deadline = time.monotonic() + GRACE_S
        now = read_sysctls()
        while now != before and time.monotonic() < deadline:
            time.sleep(0.1)
            now = read_sysctls()
        for name in SYSCTLS:
            if now[name] == before[name]:
                continue
            # other developers' sessions and tests change these too: only a change this session recorded (it
            # records before it changes) is its own
            foreign = self.foreign_sysctl_holders(name)
            if foreign or name not in rnd.sysctls_changed:
                who = (f"held by pid {', '.join(map(str, foreign))} (not ours)" if foreign
                       else "not changed by this session (no record of it)")
                self.note(rnd, "foreign_sysctl", f"{name}={now[name]} (was {before[name]}), {who}")
                continue
            self.fail(rnd, "sysctl_left", f"{name}={now[name]}, was {before[name]} before the round")
            write_sysctl(name, before[name])
        for path, data in state_files("sysctl"):
            if session_pid in sysctl_holders(data):
                self.fail(rnd, "sysctl_record_left", f"{path.name}: {json.dumps(data)}")
                if "pid" in data:  # a record of one session (older versions); a shared one is the library's
                    path.unlink(missing_ok=True)

    def check_bpf(self, rnd: Round, prog_floor: int) -> None:
        deadline = time.monotonic() + GRACE_S
        while True:
            left = {i: n for i, n in bpf_programs(self.prog_names).items() if i > prog_floor}
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not left:
            return
        holders = bpf_holders()
        for pid_, name in sorted(left.items()):
            by = holders.get(pid_, set())
            ours = sorted(p for p in by if is_ours(p, self.token))
            if by and not ours:
                self.note(rnd, "foreign_bpf", f"prog {pid_} {name} held by pid {sorted(by)} (not ours)")
                continue
            who = (f"held by our pid {', '.join(f'{p} ({_cmdline(p)})' for p in ours)}" if ours
                   else "held by no process")
            self.fail(rnd, "bpf_prog_left", f"prog {pid_} {name} {who}")

    def check_files(self, rnd: Round) -> None:
        for d, ok in ((self.records_dir, lambda n: bool(RECORD_FILE.match(n))),
                      (self.textfile_dir, lambda n: n == "damon_bpf.prom")):
            for name in sorted(os.listdir(d)):
                path = str(d / name)
                if ok(name) or path in self.tmp_seen:
                    continue
                self.tmp_seen.add(path)
                self.fail(rnd, "tmp_left", f"{d.name}/{name} ({os.path.getsize(path)} bytes)")

    def check_state_tmp(self, rnd: Round, before: set[str], session_pid: int) -> None:
        # temporary files of state files (record-PID-CRC.json.RANDOM.tmp, sysctl-NAME.json.RANDOM.tmp) left in
        # /run/damon-bpf; another session's may exist for a moment, so only one still there after the grace counts
        if not STATE_DIR.is_dir():
            return
        new = [n for n in sorted(set(os.listdir(STATE_DIR)) - before) if not n.endswith((".json", ".lock"))]
        if new:
            time.sleep(GRACE_S)
        for name in new:
            if (STATE_DIR / name).exists():
                self.fail(rnd, "tmp_left", f"{STATE_DIR}/{name}")
                (STATE_DIR / name).unlink(missing_ok=True)

    def check_json(self, rnd: Round, out_path: Path) -> None:
        data = out_path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: empty, or a line cut by SIGKILL
        if torn and rnd.action != "KILL":
            self.fail(rnd, "json_output", f"output ends without a newline after SIG{rnd.action}")
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError:
                self.fail(rnd, "json_output", f"line {i} is not JSON: {line[:80]!r}")
                break

    def registration_of(self, path: str) -> Path | None:
        for reg, data in state_files("record"):
            if data.get("path") == path:
                return reg
        return None

    def after_record(self, rnd: Round, record: str) -> None:
        exists = os.path.exists(record) or os.path.exists(record + ".journal")
        if exists:
            self.records[record] = rnd.n
        if rnd.action == "KILL" or rnd.rc == -9:
            if exists:
                rnd.record_at_kill = (file_snapshots(record), journal_snapshots(record + ".journal"))
                self.pending.append(_Pending(record, rnd))
            return
        if not exists:
            if rnd.started and rnd.rc == 0:
                self.fail(rnd, "record_missing", f"{Path(record).name}: no file after a clean end")
            return
        reg = self.registration_of(record)
        if reg is not None:
            self.fail(rnd, "registration_left", f"{reg.name} after a clean end (exit {rnd.rc})")
        if os.path.exists(record + ".journal"):
            self.fail(rnd, "journal_left", f"{Path(record).name}.journal after a clean end (exit {rnd.rc})")
        self.ready.append(record)

    def check_pending(self, rnd: Round | None) -> None:
        # a record session has started since these records' writers were killed: it must have completed them
        for pend in self.pending:
            name = Path(pend.path).name
            reg = self.registration_of(pend.path)
            if reg is not None:
                self.fail(rnd, "registration_left", f"{reg.name} of {name} (killed in round {pend.round.n}) "
                          f"after the next record session started")
                reg.unlink(missing_ok=True)
            fs, js = file_snapshots(pend.path), journal_snapshots(pend.path + ".journal")
            pend.round.record_completed = not (js is not None and (fs is None or fs < js))
            if not pend.round.record_completed:
                self.fail(rnd, "record_not_completed", f"{name} (killed in round {pend.round.n}): "
                          f"{fs} snapshots in the file, {js} in the journal, after the next record session started")
            self.ready.append(pend.path)
        self.pending = []

    def read_ready(self) -> None:
        for path in self.ready:
            self.read_record(path, final=False)
        self.ready = []

    def read_record(self, path: str, final: bool) -> None:
        """``damon-bpf report info`` and ``damo report wss`` on *path*."""
        rnd = next((r for r in self.rounds if r.n == self.records.get(path)), None)
        kind = "final_" if final else ""
        name = Path(path).name
        self.readers_runs += 1
        info = subprocess.run([sys.executable, "-m", "damon_bpf", "report", "info", "-i", path], env=self.env,
                              cwd=self.run_dir, capture_output=True, text=True, timeout=120)
        m = re.search(r"snapshots: (\d+)", info.stdout)
        nr = int(m.group(1)) if m else None
        damo = subprocess.run([self.damo, "report", "wss", "--input", path, "--exclude_samples", "0"],
                              cwd=self.run_dir, capture_output=True, text=True, timeout=120)
        # a recording ended before its first snapshot: both readers may refuse it, with a message
        empty = nr == 0 or (nr is None and file_snapshots(path) == 0)
        for who, res, ok in (("report_info", info, info.returncode == 0 and "snapshots" in info.stdout),
                             ("damo", damo, damo.returncode == 0)):
            err = (res.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]
            if "Traceback" in res.stderr:
                self.fail(rnd, f"{kind}{who}_failed", f"{name}: exit {res.returncode}, traceback: {err}")
            elif not ok and empty:
                self.note(rnd, "empty_record", f"{name}: no snapshot; {who}: exit {res.returncode}: {err}")
            elif not ok:
                self.fail(rnd, f"{kind}{who}_failed", f"{name}: exit {res.returncode}: {err}")
        self.records_read[path] = {"round": self.records.get(path), "snapshots": nr,
                                   "info_rc": info.returncode, "damo_rc": damo.returncode}

    # -- the whole soak ------------------------------------------------------------------------------------

    def run(self) -> None:
        deadline = self.t0 + self.args.minutes * 60
        n = 0
        while time.monotonic() < deadline and (self.args.rounds is None or n < self.args.rounds):
            n += 1
            rnd = self.run_round(n)
            status = "ok" if not rnd.failures else "; ".join(rnd.failures)[:300]
            print(f"round {n:3d}  {time.monotonic() - self.t0:6.0f}s  {rnd.label:<32} {rnd.run_s:5.1f}s "
                  f"SIG{rnd.action:<4} exit {rnd.rc!s:>4}  {status}", flush=True)
        self.finish()

    def finish(self) -> None:
        # one more record session completes the last killed recordings; then every record is read once more
        if self.pending:
            pid = self.ensure_workload()
            env = dict(self.env, **{ROUND_ENV: f"{self.token}:final"})
            # --duration bounds the start-up too (BPF compilation: seconds): long enough to get to the writer
            subprocess.run([sys.executable, "-m", "damon_bpf", "record", "--source", "pte", "--duration", "15s",
                            "-o", str(self.dir / "final.data"), str(pid)], env=env, cwd=self.run_dir,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            self.check_pending(None)
            self.read_ready()
        for path in sorted(self.records, key=lambda p: self.records[p]):
            self.read_record(path, final=True)

    def cleanup(self) -> None:
        """Kill what the soak started (by pid), put back what its sessions left, remove its files."""
        for p in (self.session, self.workload):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:  # the sysctl watchdogs of killed sessions restore, then exit
            left = processes_with(f"{TOKEN_ENV}={self.token}")
            if not left:
                break
            time.sleep(0.2)
        for pid in processes_with(f"{TOKEN_ENV}={self.token}"):
            print(f"soak: killing leftover pid {pid}: {_cmdline(pid)}", file=sys.stderr)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        now = read_sysctls()
        ours = {n for r in self.rounds for n in r.sysctls_changed}
        for name, value in self.initial_sysctls.items():
            if now[name] != value and name in ours and not self.foreign_sysctl_holders(name):
                print(f"soak: restoring {name}={value} (found {now[name]})", file=sys.stderr)
                write_sysctl(name, value)
        for path, data in state_files("sysctl"):
            holders = sysctl_holders(data)
            if holders and all(p in self.session_pids and not _alive(p) for p in holders):
                path.unlink(missing_ok=True)  # held only by our dead sessions: its value is back (above)
        for path, data in state_files("record"):
            if str(data.get("path", "")).startswith(str(self.dir) + os.sep):
                path.unlink(missing_ok=True)
        if self.args.keep:
            print(f"soak: kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- results -------------------------------------------------------------------------------------------

    def results(self, interrupted: bool) -> dict[str, Any]:
        by_cell: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        exit_codes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for r in self.rounds:
            by_cell[r.command][f"SIG{r.action}"] += 1
            exit_codes[f"SIG{r.action}"][str(r.rc)] += 1
        return {
            "bench": "soak", "interrupted": interrupted, "seed": self.args.seed, "minutes": self.args.minutes,
            "elapsed_s": round(time.monotonic() - self.t0, 1), "machine": platform.platform(),
            "cpus": os.cpu_count(), "commit": _git_head(), "rounds": len(self.rounds),
            "rounds_failed": sum(1 for r in self.rounds if r.failures),
            "rounds_by_command_and_signal": {k: dict(v) for k, v in by_cell.items()},
            "exit_codes_by_signal": {k: dict(v) for k, v in exit_codes.items()},
            "records": len(self.records), "records_read": self.readers_runs,
            "exercised": self.exercised(),
            "workload_starts": self.workload_starts,
            "failures": dict(self.failures), "failure_examples": dict(self.examples),
            "notes": dict(self.notes), "note_examples": dict(self.note_examples),
            "initial_sysctls": self.initial_sysctls, "bpf_program_names": list(self.prog_names),
            "round_details": [asdict(r) for r in self.rounds],
        }

    def exercised(self) -> dict[str, Any]:
        """How often the restore paths the checks watch were actually taken."""
        changed = [r for r in self.rounds if r.sysctls_changed]
        killed = [r for r in self.rounds if r.record_at_kill is not None]
        behind = [r for r in killed if r.record_at_kill and r.record_at_kill[1] is not None
                  and (r.record_at_kill[0] or 0) < r.record_at_kill[1]]
        return {
            "rounds_with_sysctl_changed": len(changed),
            "of_them_killed": sum(1 for r in changed if r.rc == -9),
            "sysctls": dict(collections.Counter(n for r in changed for n in r.sysctls_changed)),
            "killed_recordings": len(killed),
            "killed_recordings_file_behind_journal": len(behind),
            "killed_recordings_completed": sum(1 for r in killed if r.record_completed),
            "follow_children_rounds": sum(1 for r in self.rounds if r.follow),
            "cmd_rounds": sum(1 for r in self.rounds if r.target == "cmd"),
            "scrapes_ok": sum(r.scrapes_ok for r in self.rounds),
            "scrapes_failed": sum(r.scrapes_failed for r in self.rounds),
        }

    def summary(self, res: dict[str, Any]) -> str:
        lines = [f"soak: {res['rounds']} rounds in {res['elapsed_s']:.0f} s (seed {res['seed']}), "
                 f"{res['rounds_failed']} with failures; {res['records']} records, read {res['records_read']} "
                 f"times; workload started {res['workload_starts']} times"]
        sigs = ("SIGTERM", "SIGINT", "SIGKILL", "SIGSTOP")
        lines.append(f"{'rounds':<10}" + "".join(f"{s:>9}" for s in sigs) + f"{'total':>9}")
        for cmd in ("monitor", "record", "export"):
            c = res["rounds_by_command_and_signal"].get(cmd, {})
            lines.append(f"{cmd:<10}" + "".join(f"{c.get(s, 0):>9}" for s in sigs) + f"{sum(c.values()):>9}")
        ex = res["exercised"]
        lines.append(f"exercised: sysctls changed in {ex['rounds_with_sysctl_changed']} rounds "
                     f"({', '.join(f'{k} {v}' for k, v in ex['sysctls'].items()) or '-'}), "
                     f"{ex['of_them_killed']} of them SIGKILLed; {ex['killed_recordings']} recordings killed, "
                     f"{ex['killed_recordings_file_behind_journal']} with the file behind its journal, "
                     f"{ex['killed_recordings_completed']} completed by the next record session; "
                     f"{ex['cmd_rounds']} '-- CMD' rounds, {ex['follow_children_rounds']} --follow-children; "
                     f"{ex['scrapes_ok']} scrapes ({ex['scrapes_failed']} failed)")
        lines.append("exit codes: " + "; ".join(f"{s}: " + ", ".join(f"{rc} x{n}" for rc, n in sorted(v.items()))
                                                for s, v in sorted(res["exit_codes_by_signal"].items())))
        if not res["failures"]:
            lines.append("failures: none")
        else:
            lines.append(f"{'failure':<24}{'count':>6}  first example")
            for kind, n in sorted(res["failures"].items(), key=lambda kv: -kv[1]):
                lines.append(f"{kind:<24}{n:>6}  {res['failure_examples'][kind][0][:150]}")
        for kind, n in sorted(res["notes"].items()):
            lines.append(f"note {kind}: {n} ({res['note_examples'][kind][0][:120]})")
        return "\n".join(lines)


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


class _Interrupted(Exception):
    pass


def _on_term(signum: int, frame: Any) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Soak test of damon-bpf's cleanup (issue #17); see the docstring.")
    p.add_argument("--minutes", type=float, default=20.0, help="how long to run rounds (default 20)")
    p.add_argument("--quick", action="store_true", help="2 minutes")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and printed)")
    p.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    p.add_argument("--json", default=str(RESULTS), metavar="FILE", help=f"results (default {RESULTS})")
    p.add_argument("--damo", default=None, help="damo executable (default: on PATH or beside this Python)")
    p.add_argument("--max-mib", type=int, default=96, help="the workload's mapped memory at most (default 96)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (records, logs)")
    p.add_argument("--workload", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--generation", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workload:
        return workload_main(args.max_mib, args.generation)
    if os.geteuid() != 0:
        print("soak: needs root (BPF programs, sysctls, /proc/PID/environ of the sessions)", file=sys.stderr)
        return 4
    if args.quick:
        args.minutes = 2.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    if shutil.which("bpftool") is None:
        print("soak: warning: no bpftool: BPF programs left behind cannot be seen", file=sys.stderr)
    soak = Soak(args)
    print(f"soak: {args.minutes:g} min, seed {args.seed}, folder {soak.dir}, programs {', '.join(soak.prog_names)}",
          flush=True)
    old = {s: signal.signal(s, _on_term) for s in (signal.SIGTERM, signal.SIGHUP)}
    interrupted = False
    try:
        soak.run()
    except (KeyboardInterrupt, _Interrupted):
        interrupted = True
        print("soak: interrupted; cleaning up", file=sys.stderr)
    finally:
        try:
            soak.cleanup()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    res = soak.results(interrupted)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(soak.summary(res))
    print(f"soak: wrote {out}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
