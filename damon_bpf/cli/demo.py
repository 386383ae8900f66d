"""``damon-bpf demo``: run the bundled workload and monitor it live, then score the result against the
workload's ground truth."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from damon_bpf.cli._args import (
    add_monitoring_args,
    attrs_from_args,
    nonnegative_int,
    positive_int,
    wss_window_from_args,
)
from damon_bpf.cli.monitor import run_session
from damon_bpf.errors import DamonBpfError
from damon_bpf.ops import sources
from damon_bpf.session.monitor import MonitorSpec
from damon_bpf.config.units import format_bytes, text_to_sec
from damon_bpf.workload import disk_backed_dir
from damon_bpf.linux.process import spawn, terminate


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pattern", default="hotcold", help="bundled workload pattern (hotcold, stairs, zigzag)")
    p.add_argument("--threads", type=int, default=2, help="workload threads (default 2)")
    p.add_argument("--duration", default="15s", metavar="TIME", help="how long to monitor (default 15s)")
    p.add_argument("--source", default=sources.AUTO,
                   choices=(sources.AUTO, *(d.name for d in sources.SOURCES if d.in_demo)),
                   help="auto (default): what 'monitor' picks on this machine (hardware sampling, else pte), on "
                        "the workload's anonymous memory; pte: PTE Accessed bits; fault: page faults with pageout "
                        "probing of a file-backed workload; synthetic: generated accesses that follow the "
                        "workload's phases")
    p.add_argument("--json", action="store_true", help="JSON lines instead of the live view")
    p.add_argument("--every", type=positive_int, default=1, metavar="N", help="show every N-th aggregation interval")
    p.add_argument("--rows", type=nonnegative_int, default=0, metavar="N", help="region rows in the live view")
    add_monitoring_args(p)


def _wait_for_start(proc: subprocess.Popen[bytes], truth: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DamonBpfError(f"the bundled workload exited early (exit code {proc.returncode})")
        try:
            with open(truth) as f:
                if f.readline().endswith("\n"):
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise DamonBpfError("the bundled workload did not start within 30 s")


def run(args: argparse.Namespace) -> int:
    duration = text_to_sec(args.duration)
    source = sources.auto_source() if args.source == sources.AUTO else sources.get_source(args.source)
    with tempfile.TemporaryDirectory(prefix="damon-bpf-demo-") as tmp:
        truth = os.path.join(tmp, "truth.jsonl")
        cmd = [sys.executable, "-m", "damon_bpf.workload", "--pattern", args.pattern, "--threads",
               str(args.threads), "--truth", truth, "--quiet"]
        if source.demo_file_backed:
            cmd += ["--file-backed", disk_backed_dir()]
        print(f"damon-bpf: starting the bundled workload: damon-bpf-workload --pattern {args.pattern} "
              f"--threads {args.threads}", file=sys.stderr)
        proc = spawn(cmd)
        try:
            _wait_for_start(proc, truth)
            spec = MonitorSpec(pids=[proc.pid], source=source.name,
                               source_options=source.demo_options(truth, args.seed),
                               attrs=attrs_from_args(args, source_chooses=source.chooses_intervals),
                               duration_s=duration, seed=args.seed, working_set_window_us=wss_window_from_args(args))
            rc, mon, view = run_session(spec, args)
        finally:
            terminate(proc)
        if view.last is not None and not args.json:
            _score(truth, view.last)
    return rc


def _score(truth_path: str, snap: object) -> None:
    """Print how the last snapshot's hot regions compare with the ground truth's hot set (by bytes)."""
    from damon_bpf.workload import load_truth

    truth = load_truth(truth_path)
    if truth.start is None or not truth.phases:
        return
    hot = [(r.start, r.end) for r in truth.phases[-1].regions if r.hot]
    t = snap.targets[0]  # type: ignore[attr-defined]
    mx = snap.max_nr_accesses  # type: ignore[attr-defined]
    sel = t.nr_accesses >= max(1, mx // 10)
    starts, ends = t.start[sel], t.end[sel]
    # scored within the workload's own regions: the interpreter's own hot memory is real, but not in the truth
    detected = overlap = 0
    for r in truth.start.regions:
        detected += int(np.clip(np.minimum(ends, r.end) - np.maximum(starts, r.start), 0, None).sum())
    for hs, he in hot:
        overlap += int(np.clip(np.minimum(ends, he) - np.maximum(starts, hs), 0, None).sum())
    truth_bytes = sum(e - s for s, e in hot)
    precision = overlap / detected if detected else 0.0
    recall = overlap / truth_bytes if truth_bytes else 0.0
    print(f"damon-bpf: ground truth hot set {format_bytes(truth_bytes)}; monitor's hot regions in the workload's "
          f"{format_bytes(detected)}; precision {precision:.2f}, recall {recall:.2f} (by bytes)", file=sys.stderr)
    window = snap.working_set_window_us  # type: ignore[attr-defined]
    if window:
        print(f"damon-bpf: working set (accessed in the last {window / 1e6:.3g} s) "
              f"{format_bytes(t.working_set_bytes)}: the hot set and the interpreter's own memory", file=sys.stderr)
