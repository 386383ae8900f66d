"""damo's profiling recipe on real recordings (issue #19): ``damon-bpf record`` with damo's default
``--do_record`` (access, cpu_profile, mem_footprint, vmas, proc_stats) of the bundled workload and of the
distribution's python3 running a small script, then the real damo 3.4.3 on the files: ``report footprints``,
``holistic``, ``times``, ``profile``, ``nr_regions``, ``attrs`` and every ``report access --style`` asked for,
and ``damon-bpf report`` giving the same text. A recording killed with SIGKILL leaves files damo reads, and no
perf behind.

The recordings run a few seconds after the session has started (SIGINT then, as Ctrl-C), so that a slow BPF
compilation on a busy machine does not eat the monitoring time; 100 ms aggregation intervals give damo's
``nr_regions`` more than the 20 snapshots it leaves out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from damon_bpf.results.profile import DAMO_DO_RECORD_DEFAULT, read_mem_footprints, read_vmas
from damon_bpf.results.records import read_records

PY = sys.executable
DAMO = str(Path(PY).with_name("damo"))
WORKLOAD = str(Path(PY).with_name("damon-bpf-workload"))
SYSTEM_PYTHON = "/usr/bin/python3"
RECORD_SECONDS = 5.0
SIDE = (".kdamonds", ".mem_footprint", ".vmas", ".proc_stats", ".profile")

# a real program nobody here wrote: the distribution's python3, holding 96 MiB and touching 8 MiB of it
PY_SCRIPT = """
import time
buf = bytearray(96 << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
print("ready", flush=True)
while True:
    for i in range(0, 8 << 20, 4096):
        buf[i] = (buf[i] + 1) & 0xff
    time.sleep(0.005)
"""


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Recording:
    out: Path
    pid: int
    stderr: str
    #: the largest VmRSS of the target seen from /proc/PID/status while recording, in bytes
    max_rss: int
    returncode: int
    perf_pids: list[int] = field(default_factory=list)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def record(out: Path, *target: str, seconds: float = RECORD_SECONDS, kill: bool = False,
           extra: tuple[str, ...] = ()) -> Recording:
    """``damon-bpf record`` of *target* (pids, or ``--`` and a command) with damo's default recipe (``--do_record``
    of every item), stopped *seconds* after the session started (SIGINT; SIGKILL with *kill*)."""
    pids = target[:target.index("--")] if "--" in target else target
    command = target[len(pids):]  # "--" CMD...: after the recipe's words, which --do_record would take
    proc = subprocess.Popen([PY, "-m", "damon_bpf", "record", "--aggr", "100ms", "-o", str(out), *extra, *pids,
                             "--do_record", *DAMO_DO_RECORD_DEFAULT, *command],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    started = threading.Event()
    pid_box: list[int] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"recording pid (\d+)", line)
            if m:
                pid_box.append(int(m.group(1)))
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(120), "the session did not start: " + "".join(lines)
        pid = pid_box[0]
        perf = [k for k in _children(proc.pid) if _comm(k) == "perf"]
        max_rss, t_end = 0, time.monotonic() + seconds
        while time.monotonic() < t_end:
            max_rss = max(max_rss, _rss_kib(pid) * 1024)
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    return Recording(out, pid, "".join(lines), max_rss, proc.returncode, perf)


def damo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert os.path.exists(DAMO), "damo is not installed (pip install -e '.[test]')"
    if shutil.which("file") is None:
        pytest.skip("damo needs the 'file' command to read records (apt install file)")
    r = subprocess.run([DAMO, *args], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr + r.stdout, (args, r.stderr[-3000:])
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r


def ours(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([PY, "-m", "damon_bpf", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (args, r.stderr)
    return r


def need_perf() -> None:
    if shutil.which("perf") is None:
        pytest.skip("the CPU profile needs perf (apt install linux-perf)")


@pytest.fixture(scope="module")
def workload_rec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """The bundled workload (hotcold: 16 MiB hot, 256 MiB cold), recorded by pid."""
    d = tmp_path_factory.mktemp("workload")
    truth = d / "truth.jsonl"
    wl = subprocess.Popen([WORKLOAD, "--pattern", "hotcold", "--truth", str(truth), "--quiet"])
    try:
        for _ in range(600):
            if truth.exists() and truth.read_text().endswith("\n"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the workload did not start")
        yield record(d / "damon.data", str(wl.pid))
    finally:
        wl.kill()
        wl.wait()


@pytest.fixture(scope="module")
def python_rec(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """The distribution's python3 running PY_SCRIPT, spawned by the recording (``-- CMD``)."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} is not installed")
    d = tmp_path_factory.mktemp("python3")
    return record(d / "py.data", "--", SYSTEM_PYTHON, "-c", PY_SCRIPT)


RECORDINGS = ("workload_rec", "python_rec")


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_recording_writes_damos_files_beside_the_record(name: str, request: pytest.FixtureRequest) -> None:
    rec: Recording = request.getfixturevalue(name)
    assert rec.returncode == 0, rec.stderr
    assert "no CPU profile" not in rec.stderr and "stopped after" not in rec.stderr, rec.stderr
    for sfx in ("", *SIDE):
        p = Path(str(rec.out) + sfx)
        if sfx == ".profile" and shutil.which("perf") is None:
            continue
        st = p.lstat()
        assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0 and st.st_size > 0, (p, oct(st.st_mode))
    # sampled every second from the start to the end (SIGINT at RECORD_SECONDS after the start line)
    fps = read_mem_footprints(str(rec.out) + ".mem_footprint")
    assert RECORD_SECONDS - 1 <= len(fps) <= RECORD_SECONDS + 4, [s.time for s in fps]
    steps = [b.time - a.time for a, b in zip(fps, fps[1:])]
    assert all(0.8 < s < 1.6 for s in steps), steps
    assert all(list(s.procs) == [rec.pid] for s in fps)
    kd = json.loads(Path(str(rec.out) + ".kdamonds").read_text())
    (rec_intervals,) = {json.dumps(r.intervals.to_kvpairs()) for r in read_records(str(rec.out)) if r.intervals}
    assert kd[0]["contexts"][0]["targets"][0]["pid"] == rec.pid
    assert kd[0]["contexts"][0]["intervals"] == json.loads(rec_intervals)


@pytest.mark.parametrize("name", RECORDINGS)
def test_damo_footprints_show_the_rss_the_program_reached(name: str, request: pytest.FixtureRequest) -> None:
    rec: Recording = request.getfixturevalue(name)
    out = damo("report", "footprints", "rss", "--raw_number", "--input", str(rec.out) + ".mem_footprint").stdout
    m = re.search(r"^100\s+(\d+)", out, re.M)
    assert m, out
    peak = int(m.group(1))
    assert rec.max_rss > 0 and abs(peak - rec.max_rss) <= 0.2 * rec.max_rss, (peak, rec.max_rss)
    floor = (272 if name == "workload_rec" else 96) << 20  # what each program holds resident at least
    assert peak >= floor, (peak, floor)
    # and damon-bpf's report says exactly what damo says
    assert ours("report", "footprints", "-i", str(rec.out)).stdout == \
        damo("report", "footprints", "--input", str(rec.out) + ".mem_footprint").stdout


DAMO_REPORTS = {
    "holistic": ["holistic", "--access_pattern"],
    "times": ["times", "--inputs"],
    "nr_regions": ["nr_regions", "--input"],
    "attrs": ["attrs", "--input"],
    "attrs-temperature": ["attrs", "--style", "temperature-sz-hist", "--input"],
    "access-temperature-sz-hist": ["access", "--style", "temperature-sz-hist", "--input"],
    "access-recency-sz-hist": ["access", "--style", "recency-sz-hist", "--input"],
    "access-hot": ["access", "--style", "hot", "--input"],
    "access-cold": ["access", "--style", "cold", "--input"],
    "profile": ["profile", "--access_rate", "1%", "100%", "--inputs"],
}


@pytest.mark.parametrize("report", DAMO_REPORTS)
@pytest.mark.parametrize("name", RECORDINGS)
def test_damo_reports_run_on_the_recording(name: str, report: str, request: pytest.FixtureRequest) -> None:
    rec: Recording = request.getfixturevalue(name)
    if report in ("holistic", "profile"):
        need_perf()
    argv = DAMO_REPORTS[report] + [str(rec.out)]
    if argv[-2] == "--inputs":
        argv.append(str(rec.out) + ".profile")
    out = damo("report", *argv).stdout
    (r,) = read_records(str(rec.out))
    t0, t1 = r.snapshots[0].start_time / 1e9, r.snapshots[-1].end_time / 1e9
    if report == "holistic":
        assert "# Memory Footprints Distribution" in out and "# Hotspot functions" in out
        rss = re.search(r"^\s+rss\s+(.*)$", out, re.M)
        assert rss and "0 B" not in rss.group(1), out
        assert re.search(r"^# Samples: [1-9]", out, re.M), out
    elif report == "times":
        spans = [tuple(float(x) for x in ln.split("-")) for ln in out.splitlines() if not ln.startswith("#")]
        assert spans and all(t0 - 1e-3 <= a < b <= t1 + 1e-3 for a, b in spans), (spans, t0, t1)
    elif report == "nr_regions":
        assert re.search(r"^# avr:\t\d+$", out, re.M) and re.search(r"^100\t\d+$", out, re.M), out
        assert ours("report", "nr_regions", "-i", str(rec.out)).stdout == out
    elif report == "profile":
        assert re.search(r"^# Samples: [1-9].*time slices: ", out, re.M), out[:2000]
    else:
        assert "total size:" in out, out[-2000:]
    if report == "times":
        assert ours("report", "times", "-i", str(rec.out)).stdout == out


def test_the_profile_has_the_programs_samples(workload_rec: Recording, python_rec: Recording) -> None:
    need_perf()
    for rec in (workload_rec, python_rec):
        r = subprocess.run(["perf", "report", "-i", str(rec.out) + ".profile", "--stdio", "--pid", str(rec.pid)],
                           capture_output=True, text=True, timeout=120)
        m = re.search(r"# Samples: (\d+)(K?)", r.stdout)
        assert r.returncode == 0 and m and int(m.group(1)) > 0, r.stdout[:2000] + r.stderr[-1000:]
        # our profile report: perf report of the snapshots' times (the wall clock in both)
        prof = ours("report", "profile", "-i", str(rec.out)).stdout
        assert re.search(r"^# Samples: [1-9].*time slices: ", prof, re.M), prof[:2000]


def test_vmas_name_the_programs_mappings(python_rec: Recording) -> None:
    snaps = read_vmas(str(python_rec.out) + ".vmas")
    vmas = snaps[-1].procs[python_rec.pid]
    exe = [v for v in vmas if v.path == os.path.realpath(SYSTEM_PYTHON)]
    assert exe and any(v.offset > 0 for v in exe) and any("x" in v.perms for v in exe), exe
    assert any(v.pathname == "[heap]" for v in vmas) and any(v.pathname == "" for v in vmas)
    # the 96 MiB buffer: an unnamed mapping at least that large
    assert any(v.pathname == "" and v.end - v.start >= 96 << 20 for v in vmas)


def test_holistic_picture(workload_rec: Recording, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "holistic.png"
    ours("report", "holistic", "-i", str(workload_rec.out), "--png", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_mode & 0o777 == 0o600
    text = ours("report", "holistic", "-i", str(workload_rec.out), "--color", "never").stdout
    # our heatmaps have rows (damo 3.4.3's holistic prints none: it selects records by a None kdamond index)
    assert re.search(r"^[0-9]{80}$", text, re.M), text[:3000]


def test_a_killed_recording_leaves_files_damo_reads(tmp_path: Path) -> None:
    rec = record(tmp_path / "killed.data", "--", SYSTEM_PYTHON, "-c", PY_SCRIPT, seconds=4, kill=True,
                 extra=("--do_record", "access", "cpu_profile", "mem_footprint", "vmas", "proc_stats")
                 if shutil.which("perf") else ())
    assert rec.returncode == -signal.SIGKILL
    for p in rec.perf_pids:  # perf got SIGINT when its parent died
        for _ in range(50):
            if not Path(f"/proc/{p}").exists() or _comm(p) != "perf":
                break
            time.sleep(0.1)
        assert not Path(f"/proc/{p}").exists() or _comm(p) != "perf", f"perf {p} outlived the killed recording"
    fp = damo("report", "footprints", "--input", str(rec.out) + ".mem_footprint").stdout
    assert "# avr:" in fp and "# no snapshot" not in fp
    for sfx in (".vmas", ".proc_stats", ".kdamonds"):
        assert isinstance(json.loads(Path(str(rec.out) + sfx).read_text()), list)
    if rec.perf_pids:
        damo("report", "holistic", "--access_pattern", str(rec.out))
