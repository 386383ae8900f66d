"""``damon-bpf monitor <pid>... | -- CMD ARGS``: watch processes' memory access patterns live."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from typing import Any, Callable, TextIO

from damon_bpf.cli._args import (
    add_monitoring_args,
    add_target_args,
    attrs_from_args,
    duration_from_args,
    nonnegative_int,
    positive_int,
    started_at,
    targets_from_args,
    wss_window_from_args,
)
from damon_bpf.cli._damos_args import add_damos_args, schemes_from_args
from damon_bpf.cli._threads import region_threads
from damon_bpf.cli._writes_only import add_writes_only_arg, writes_only_option
from damon_bpf.cli.view import render_text, snapshot_to_json
from damon_bpf.config import limits
from damon_bpf.engine import Snapshot, StopReason
from damon_bpf.errors import InvalidParamsError
from damon_bpf.session.monitor import Monitor, MonitorSpec, synthetic_pattern_for_workload

SOURCES = ("auto", "pte", "fault", "perf", "synthetic")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "damon-bpf monitor [options] PID... | damon-bpf monitor [options] -- CMD [ARGS...]"
    p.epilog = ("With -- CMD, the exit code is CMD's own exit status when CMD ended by itself (128+N for signal N); "
                "otherwise 0, or the code of an error (see the README's exit codes).")
    add_target_args(p)
    p.add_argument("--follow-children", action="store_true",
                   help="also monitor the processes the targets fork later (process-events connector)")
    add_source_args(p)
    p.add_argument("--synthetic-pattern", metavar="FILE",
                   help="synthetic source: a JSON access pattern (see damon_bpf.ops.synthetic)")
    p.add_argument("--synthetic-workload", metavar="TRUTH",
                   help="synthetic source: follow the phases of a bundled workload, from its --truth file")
    p.add_argument("--json", action="store_true", help="one JSON object per line per aggregation interval")
    p.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="show every N-th aggregation interval (default 1)")
    p.add_argument("--rows", type=nonnegative_int, default=0, metavar="N",
                   help="region rows in the live view (default: fit the terminal)")
    p.add_argument("--prometheus", metavar="ADDR:PORT",
                   help="also serve the session's figures to Prometheus at http://ADDR:PORT/metrics (see "
                        "'damon-bpf export')")
    add_monitoring_args(p)
    add_damos_args(p)


def add_source_args(p: argparse.ArgumentParser, default: str = "auto") -> None:
    g = p.add_argument_group("access source")
    g.add_argument("--source", default=default, choices=SOURCES,
                   help="pte: PTE Accessed bits, DAMON's own check (BPF page-table walk); fault: page faults (BPF); "
                        "perf: perf samples with data addresses (BPF; PEBS/IBS when the CPU has them); synthetic: "
                        "generated from a pattern; auto (default): perf with hardware sampling if available, else "
                        "pte, else fault")
    g.add_argument("--pte-clear", choices=("auto", "page_idle", "madvise", "clear_refs"), default="auto",
                   help="pte source: how the probes' Accessed bits are cleared: /sys/kernel/mm/page_idle/bitmap "
                        "(the kernel's own mkold, where it has idle page tracking), process_madvise(MADV_COLD) of "
                        "the probes, /proc/PID/clear_refs for the whole process, or auto (page_idle where "
                        "available, else madvise unless clear_refs is much cheaper)")
    g.add_argument("--cpu-budget", default="1%", metavar="SHARE",
                   help="pte source: the share of one core the monitor may spend; with the source's own intervals "
                        "(no --sample/--aggr) the aggregation interval (100 ms..1 s) is kept long enough "
                        "(default 1%%; 0: none)")
    g.add_argument("--numa-hint-faults", action="store_true",
                   help="fault source: enable kernel.numa_balancing for the session (restored after) so resident "
                        "memory keeps faulting; needs a multi-threaded target on one-node machines")
    g.add_argument("--probe", choices=("pageout",),
                   help="fault source: make one page per region non-present each sampling interval "
                        "(MADV_PAGEOUT) so its next access faults; file-backed memory, or anonymous with swap")
    g.add_argument("--event", metavar="EVENTS",
                   help="perf source: perf event names, e.g. page-faults, mem-loads,mem-stores, ibs_op//, "
                        "cpu/mem-loads,ldlat=30/P (default: hardware data-address sampling, else page-faults)")
    g.add_argument("--period", type=positive_int, metavar="N",
                   help="perf source: sampling period (default: per event)")
    g.add_argument("--rate-limit", type=nonnegative_int, default=200_000, metavar="N",
                   help="BPF sources: count at most N events per second per CPU (overhead bound; 0: none)")
    g.add_argument("--no-bpf-stats", action="store_true",
                   help="BPF sources: do not enable kernel.bpf_stats_enabled (no BPF ns per event figure)")
    add_writes_only_arg(g)


def resolve_source(args: argparse.Namespace) -> str:
    """The source ``auto`` stands for: hardware data-address sampling when the CPU has it, else ``pte`` (the
    kernel's own primitive), else ``fault``; options that belong to one source select it."""
    if args.source != "auto":
        return str(args.source)
    if args.numa_hint_faults or args.probe or getattr(args, "writes_only", False):
        return "fault"
    if args.event:
        return "perf"
    return auto_source()


def auto_source() -> str:
    """What ``--source auto`` picks on this machine (see :func:`resolve_source`)."""
    try:
        from damon_bpf.probes.perf_events import hardware_sampling_status

        ok, _ = hardware_sampling_status()
    except Exception:  # no bcc, no sysfs: the next sources report what is missing
        ok = False
    if ok:
        return "perf"
    from damon_bpf.engine.ops import select_ops
    from damon_bpf.errors import DamonBpfError

    try:
        select_ops("pte").check_supported()
    except DamonBpfError:
        return "fault"
    return "pte"


def blind_to_resident(source: str, options: dict[str, Any]) -> str | None:
    """One line saying that *source* with *options* cannot see accesses to memory that stays resident, or None."""
    if source == "fault" and not options.get("numa_hint_faults") and not options.get("probe"):
        return ("the fault source sees natural page faults only (first touches, swap-ins, COW): accesses to "
                "resident memory are not seen; use --source pte, --probe pageout or --numa-hint-faults")
    if source == "perf":
        events = str(options.get("events") or "")
        if not events:
            try:
                from damon_bpf.probes.perf_events import hardware_sampling_status

                hw, _ = hardware_sampling_status()
            except Exception:
                hw = False
            if hw:
                return None
        elif "fault" not in events:
            return None
        return ("the perf source counts software page faults here (no hardware sampling): accesses to resident "
                "memory are not seen; use --source pte")
    return None


def source_options(args: argparse.Namespace, source: str | None = None) -> dict[str, Any]:
    source = source or args.source
    bpf_common = {"rate_limit": args.rate_limit, "bpf_stats": not args.no_bpf_stats,
                  **writes_only_option(args, source)}
    if source == "pte":
        from damon_bpf.config.units import text_to_bp

        budget = str(args.cpu_budget).strip()
        try:
            share = text_to_bp(budget) / 10000 if budget.endswith("%") else float(budget)
        except (ValueError, InvalidParamsError):
            raise InvalidParamsError(f"--cpu-budget: not a share of a core: {args.cpu_budget!r}") from None
        return {"clear": args.pte_clear, "cpu_budget": share}
    if args.pte_clear != "auto" or args.cpu_budget != "1%":
        raise InvalidParamsError("--pte-clear and --cpu-budget belong to the pte source")
    if source != "fault" and (args.numa_hint_faults or args.probe):
        raise InvalidParamsError("--numa-hint-faults and --probe belong to the fault source")
    if source != "perf" and (args.event or args.period):
        raise InvalidParamsError("--event and --period belong to the perf source")
    if source == "fault":
        return {"numa_hint_faults": args.numa_hint_faults, "probe": args.probe, **bpf_common}
    if source == "perf":
        return {"events": args.event, "period": args.period, **bpf_common}
    if source != "synthetic":
        return {}
    if args.synthetic_pattern and args.synthetic_workload:
        raise InvalidParamsError("give --synthetic-pattern or --synthetic-workload, not both")
    if args.synthetic_pattern:
        path = args.synthetic_pattern
        data = limits.read_regular(path, limits.MAX_CONFIG_BYTES, "--synthetic-pattern file")
        return {"pattern": limits.json_loads(data, path), "seed": args.seed}
    if args.synthetic_workload:
        return {"pattern": pattern_from_truth(args.synthetic_workload), "seed": args.seed}
    return {"seed": args.seed}


def pattern_from_truth(path: str) -> dict[str, Any]:
    from damon_bpf.workload import BUILTIN_PATTERNS, builtin_pattern, load_truth

    try:
        truth = load_truth(path)
    except OSError as err:
        raise InvalidParamsError(f"cannot read {path}: {err.strerror}") from err
    if truth.start is None:
        raise InvalidParamsError(f"{path}: no start record")
    if truth.start.pattern not in BUILTIN_PATTERNS:
        raise InvalidParamsError(f"{path}: workload {truth.start.pattern!r} is not a built-in pattern; "
                                 "describe it with --synthetic-pattern")
    return synthetic_pattern_for_workload(truth.start, builtin_pattern(truth.start.pattern))


class _Mappings:
    """Names the mapping an address lies in, from /proc/<pid>/maps read once per snapshot."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def lookup(self) -> Callable[[int], str] | None:
        if self.pid is None:
            return None
        from damon_bpf.linux import procmaps

        try:
            vmas = procmaps.read_maps(self.pid)
        except Exception:  # the target may have exited; the view then shows no names
            return None

        def name(addr: int) -> str:
            v = procmaps.mapping_at(vmas, addr)
            return procmaps.classify(v) if v is not None else "-"

        return name


class LiveView:
    """Prints each snapshot: redrawn in place on a terminal, as text blocks or JSON lines otherwise."""

    def __init__(self, monitor: Monitor, out: TextIO, *, as_json: bool, every: int, rows: int, source: str) -> None:
        self.monitor = monitor
        self.out = out
        self.as_json = as_json
        self.every = max(1, every)
        self.rows = rows
        self.source = source
        self.tty = out.isatty() and not as_json
        self.nr = 0
        self.last: Snapshot | None = None
        #: one line shown under the header (a source that cannot see resident memory says so here)
        self.warning: str | None = None
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot) -> None:
        self.last = snap
        self.nr += 1
        if (self.nr - 1) % self.every:
            return
        stats = self.monitor.source_stats()
        # the schemes' stats as of this aggregation (DAMOS runs in this thread, after the consumers)
        schemes = list(self.monitor.ctx.schemes) if self.monitor.ctx else []
        dry_run = self.monitor.spec.dry_run
        with self._lock:
            if self.as_json:
                ops = self.monitor.ctx.ops if self.monitor.ctx else None
                raw = [ops.raw_counts(i, t.start, t.end) for i, t in enumerate(snap.targets)] if ops else None
                if raw is not None and all(r is None for r in raw):
                    raw = None
                self.out.write(snapshot_to_json(snap, stats, self.source, raw, schemes=schemes,
                                                dry_run=dry_run, region_extra=region_threads(ops, snap)) + "\n")
            else:
                width, height = 80, 24
                if self.tty:
                    try:
                        width, height = os.get_terminal_size(self.out.fileno())
                    except OSError:
                        pass
                rows = self.rows or max(5, height - 8 - (len(schemes) + 1 if schemes else 0))
                maps = [_Mappings(t.pid).lookup() for t in snap.targets]
                lines = render_text(snap, mappings=maps, stats=stats, source=self.source, max_rows=rows,
                                    width=max(60, width), schemes=schemes, dry_run=dry_run,
                                    warning=self.warning)
                if self.tty:
                    self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
                else:
                    self.out.write("\n".join(lines) + "\n\n")
            self.out.flush()


def prometheus_exporter(mon: Monitor, args: argparse.Namespace) -> Any:
    """``--prometheus ADDR:PORT``: an exporter consumer on *mon*, already serving (None without the option).

    :raises InvalidParamsError: a bad address, or one that cannot be bound
    """
    if not getattr(args, "prometheus", None):
        return None
    from damon_bpf.session.exporter import PrometheusExporter, parse_listen

    exporter = PrometheusExporter(mon, mon.spec.source)
    exporter.serve(*parse_listen(args.prometheus))
    mon.consumers.append(exporter)
    return exporter


def announce(mon: Monitor, doing: str, to: str = "") -> None:
    """The start-up lines on standard error: what is monitored, by which source (and where it attaches), the
    source's notes and the session's (:func:`print_session_notes`)."""
    ops = mon.ctx.ops if mon.ctx else None
    if ops is None:
        print_session_notes(mon)
        return
    what = " ".join(str(p) for p in mon.pids)
    via = f" ({ops.attach_point})" if ops.attach_point else ""
    print(f"damon-bpf: {doing} pid {what} with source {mon.spec.source}{via}{' to ' + to if to else ''}; "
          f"Ctrl-C to stop", file=sys.stderr)
    print_notes(mon)


def print_notes(mon: Monitor) -> None:
    """The source's notes (a cost, another session clearing the same process, ...) and the session's, on standard
    error."""
    ops = mon.ctx.ops if mon.ctx else None
    for note in ops.notes if ops is not None else ():
        print(f"damon-bpf: note: {note}", file=sys.stderr)
    print_session_notes(mon)


def print_session_notes(mon: Monitor) -> None:
    """The session's notes (``Monitor.notes``: DAMOS schemes that can never match, ...) on standard error."""
    for note in mon.notes:
        print(f"damon-bpf: note: {note}", file=sys.stderr)


def run_session(spec: MonitorSpec, args: argparse.Namespace,
                out: TextIO | None = None) -> tuple[int, Monitor, LiveView]:
    """Run a monitoring session with the live view until it ends; returns (exit code, monitor, view).

    :param out: where the view goes (default: the standard output of the time of the call)
    """
    out = out if out is not None else sys.stdout
    mon = Monitor(spec)
    view = LiveView(mon, out, as_json=args.json, every=args.every, rows=args.rows, source=spec.source)
    mon.consumers.append(view)
    exporter = prometheus_exporter(mon, args)
    with mon.stopping_on_signals(), contextlib.ExitStack() as stack:
        if exporter is not None:
            stack.callback(exporter.close)
        try:
            mon.open()
            if not args.json:
                announce(mon, "monitoring")
            else:  # standard output is JSON; the source's notes (numbers that are off) still go to stderr
                print_notes(mon)
            view.warning = blind_to_resident(spec.source, spec.source_options)
            if view.warning:
                print(f"damon-bpf: warning: {view.warning}", file=sys.stderr)
            reason = mon.run()
        finally:
            mon.close()
    if reason is StopReason.TARGETS_GONE and not args.json:
        print("damon-bpf: every target exited", file=sys.stderr)
    return command_exit_code(mon), mon, view


def command_exit_code(mon: Monitor) -> int:
    """The exit code of ``monitor``/``record``: the spawned command's exit status when it ended by itself (so a
    failed ``-- CMD`` is not hidden), else 0."""
    return mon.command_status or 0


def spec_from_args(args: argparse.Namespace) -> MonitorSpec:
    """The session the monitoring options describe (``monitor`` and ``record`` share it). The ``pte`` source
    tunes its intervals unless the options fix them: its cost follows the sampling rate."""
    pids, cmd = targets_from_args(args)
    source = resolve_source(args)
    attrs = attrs_from_args(args, source_chooses=source == "pte")
    schemes = schemes_from_args(args, attrs)
    return MonitorSpec(pids=pids, command=cmd, source=source, source_options=source_options(args, source),
                       attrs=attrs, duration_s=duration_from_args(args), started_at=started_at(args),
                       seed=args.seed,
                       command_stdout_to_stderr=bool(args.json),
                       follow_children=bool(getattr(args, "follow_children", False)),
                       schemes=schemes, dry_run=bool(getattr(args, "dry_run", False)),
                       working_set_window_us=wss_window_from_args(args))


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    rc, _, _ = run_session(spec, args)
    return rc
