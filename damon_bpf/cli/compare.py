"""``damon-bpf compare <pid>... | -- CMD | --workload PATTERN``: several access sources side by side."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
import types

from damon_bpf.cli._args import add_monitoring_args, attrs_from_args, targets_from_args
from damon_bpf.eval.compare import (
    DEFAULT_SOURCES,
    MIN_RECALL_SEEN,
    REFERENCE_SOURCE,
    Comparison,
    ComparisonResult,
    parse_sources,
)
from damon_bpf.errors import InvalidParamsError, MissingDependencyError
from damon_bpf.ops.sources import compare_workload_names
from damon_bpf.config.units import format_time_us, text_to_sec

EXIT_NOT_SUPPORTED = 3

_DESCRIPTION = """\
Run several access sources at once on the same processes, each with its own
monitoring engine (its own kdamond thread) and the same monitoring attributes,
and print one table with a row per source: events per second, events dropped by
the rate limit, BPF run time per program run (about 160 ns per page fault
measured on the development machine), CPU time of the source's kdamond thread,
working-set size and hot bytes; for the bundled workload (--workload) also
precision and recall of the hot set against its ground truth and the delay until
a phase change shows. Then the pairwise agreement of the hot sets, by bytes.

sources:
  fault          natural page faults (first touch, swap-in, copy-on-write)
  fault+numa     page faults plus NUMA hint faults (kernel.numa_balancing=1 for
                 the session, restored after; one node: multi-threaded targets)
  fault+pageout  page faults plus DAMON-style probing: one page per region made
                 non-present each sampling interval (MADV_PAGEOUT; file-backed
                 memory, or anonymous memory with swap)
  perf           the default perf events: PEBS/IBS if the CPU has them, else
                 software page faults
  perf:EVENTS    explicit perf events, perf's syntax (perf:mem-loads,mem-stores)
  synthetic      only with --workload: generated accesses that follow the
                 workload's ground truth, a reference for a perfect source
Sources that cannot run here are listed with the reason; the others go on.

interference: sources run at once see each other's re-arming. The pages
fault+pageout makes non-present, and the PTEs NUMA balancing makes inaccessible
(system-wide while fault+numa runs), fault on their next access, and every
fault-based source (fault, fault+*, perf with software page faults) counts that
fault: fault and perf then read more than natural faults alone would show.
--sequential runs the sources one after the other, each for the whole duration,
instead."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = ("damon-bpf compare [options] PID...\n"
               "       damon-bpf compare [options] -- CMD [ARGS...]\n"
               "       damon-bpf compare [options] --workload PATTERN")
    p.description = _DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("pids", nargs="*", metavar="PID", help="processes to monitor (all their threads)")
    p.add_argument("--sources", metavar="LIST",
                   help=f"comma-separated sources (default: {','.join(DEFAULT_SOURCES)}; plus synthetic with "
                        "--workload)")
    p.add_argument("--workload", metavar="PATTERN",
                   help="start the bundled workload (hotcold, stairs, zigzag) file-backed under /var/tmp, "
                        "monitor it, and score every source against its ground truth")
    p.add_argument("--workload-threads", type=int, default=2, metavar="N",
                   help="threads of the bundled workload (default 2; NUMA hint faults need 2 or more on one node)")
    p.add_argument("--duration", default="10s", metavar="TIME",
                   help="how long the sources run (each, with --sequential; default 10s)")
    p.add_argument("--sequential", action="store_true",
                   help="run the sources one after the other instead of at once (no interference)")
    p.add_argument("--settle", default="1s", metavar="TIME",
                   help="leave each source's first TIME out of the medians while its regions adapt (default 1s)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    p.add_argument("--png", metavar="FILE",
                   help="write a time x address heatmap per source, side by side (needs matplotlib)")
    p.add_argument("--rate-limit", type=int, default=200_000, metavar="N",
                   help="BPF sources: count at most N events per second per CPU (overhead bound; 0: none)")
    p.add_argument("--no-bpf-stats", action="store_true",
                   help="do not enable kernel.bpf_stats_enabled (no BPF ns per event figure)")
    add_monitoring_args(p)


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError("--png needs matplotlib (pip install matplotlib)") from err


def run(args: argparse.Namespace) -> int:
    pids, cmd = targets_from_args(args)
    if args.png:
        _check_matplotlib()
        from damon_bpf.linux.files import check_replaceable

        check_replaceable(args.png)  # refused before the sources run, not after
    names = parse_sources(args.sources) if args.sources is not None else list(DEFAULT_SOURCES)
    if args.sources is None and args.workload is not None:
        names += compare_workload_names()
    duration = text_to_sec(args.duration)
    settle = text_to_sec(args.settle)
    if not duration > 0:
        raise InvalidParamsError(f"invalid duration {args.duration!r}")

    def progress(msg: str) -> None:
        print(f"damon-bpf: {msg}", file=sys.stderr, flush=True)

    comp = Comparison(names, pids=pids, command=cmd, workload=args.workload,
                      workload_threads=args.workload_threads, attrs=attrs_from_args(args), duration_s=duration,
                      settle_s=settle, sequential=args.sequential, rate_limit=args.rate_limit,
                      bpf_stats=not args.no_bpf_stats, seed=args.seed, command_stdout_to_stderr=args.json,
                      progress=progress)

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        comp.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = comp.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(format_table(result))
    if args.png:
        from damon_bpf.eval.compare import write_heatmap

        if any(s.snapshots for s in result.sources):
            write_heatmap(result, args.png)
            progress(f"wrote {args.png}")
    if not any(s.ok for s in result.sources):
        print("damon-bpf: error: no source could run here (reasons above)", file=sys.stderr)
        return EXIT_NOT_SUPPORTED
    return 0


# -- the table -------------------------------------------------------------------------------------------------


def _count(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v / (1 << 20):.1f}M"


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [headers] + rows if i < len(r)) for i in range(len(headers))]
    out = []
    for r in [headers] + rows:
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def format_table(result: ComparisonResult) -> str:
    """The text report of a comparison: a header line, one row per source, the agreement matrix, notes."""
    a = result.attrs
    what = f"pid {' '.join(str(p) for p in result.pids)}"
    if result.workload:
        what += f" (bundled workload {result.workload})"
    how = "one after the other" if result.mode == "sequential" else "at once"
    n = len(result.sources)
    lines = [f"damon-bpf compare: {what}",
             f"{n} source{'s' if n != 1 else ''} {how} for {result.duration_s:g} s"
             f"{' each' if result.mode == 'sequential' else ''}; sampling {format_time_us(a.sample_interval_us)}, "
             f"aggregation {format_time_us(a.aggr_interval_us)}, regions {a.min_nr_regions}..{a.max_nr_regions}",
             ""]
    truth = result.workload is not None
    headers = ["source", "ev/s", "drops", "ns/ev", "CPU%", "WSS", "hot"]
    if truth:
        headers += ["prec", "recall", "delay"]
    ref = REFERENCE_SOURCE if any(s.name == REFERENCE_SOURCE and s.nr_snapshots for s in result.sources) else None
    if ref:
        headers.append(f"vs {ref}")
    rows: list[list[str]] = []
    failed: list[str] = []
    for s in result.sources:
        name = s.name if len(s.name) <= 16 else s.name[:15] + "~"
        if s.status == "not run":
            failed.append(f"{name}  not run: {s.reason or 'not started'}")
            continue
        row = [name, _count(s.events_per_s), _count(s.dropped), _f(s.bpf_ns_per_event, ".0f"),
               _f(s.cpu_pct, ".1f"), _mib(s.wss_bytes), _mib(s.hot_bytes)]
        if truth:
            if not s.phase_delays_s:
                delay = "-"
            elif s.phase_delay_s is None:
                delay = "missed"
            else:
                delay = f"{s.phase_delay_s:.2f}s"
            row += [_f(s.precision, ".2f"), _f(s.recall, ".2f"), delay]
        if ref:
            p = result.pair(s.name, ref) if s.name != ref else None
            row.append("ref" if s.name == ref else _f(p.jaccard if p else None, ".2f"))
        rows.append(row)
        if s.status == "failed":
            failed.append(f"{name}  failed while running: {s.reason}")
    lines += _table(headers, rows)
    for f in failed:
        lines += _wrap(f)
    if truth:
        th = "-" if result.truth_hot_bytes is None else _mib(result.truth_hot_bytes)
        lines.append(f"{'truth':<{max(len(r[0]) for r in rows) if rows else 6}}  hot set {th}")
    ran = [s for s in result.sources if s.nr_snapshots and s.status != "not run"]
    if len(ran) >= 2:
        lines += [""] + _wrap("hot-set agreement (bytes): Jaccard above the diagonal, overlap coefficient below"
                              + ("; weighted by how often each byte was hot" if result.mode == "sequential" else "")
                              + "; '-': neither saw a hot byte")
        idx = {s.name: i for i, s in enumerate(ran)}
        mat: list[list[str]] = [["-"] * len(ran) for _ in ran]
        for p in result.pairs:
            if p.a in idx and p.b in idx:
                lo, hi = sorted((idx[p.a], idx[p.b]))
                mat[lo][hi] = _f(p.jaccard, ".2f")
                mat[hi][lo] = _f(p.overlap, ".2f")
        hdr = [""] + [str(i + 1) for i in range(len(ran))]
        mrows = [[f"{i + 1} {s.name[:16]}"] + mat[i] for i, s in enumerate(ran)]
        lines += _table(hdr, mrows)
    lines += [""] + _wrap(_legend(result))
    for note in result.notes:
        lines += _wrap(f"note: {note}")
    for s in result.sources:
        for note in s.notes:
            lines += _wrap(f"note ({s.name}): {note}")
    return "\n".join(lines)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=80, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)


def _legend(result: ComparisonResult) -> str:
    parts = [
        "ev/s: events per second (synthetic: generated reports); drops: events over the rate limit; ns/ev: BPF "
        "run time per program run; CPU%: the source's kdamond thread, % of one CPU; WSS / hot: median bytes "
        f"with any access / hot (nr_accesses >= {result.hot_fraction:.0%} of the samples) after the first "
        f"{result.settle_s:g} s"]
    if any(s.name == REFERENCE_SOURCE for s in result.sources):
        parts.append(f"; vs {REFERENCE_SOURCE}: Jaccard of the hot set with {REFERENCE_SOURCE}'s, the kernel's own "
                     "access check (PTE Accessed bits)")
    if result.workload:
        parts.append(f"; prec / recall: hot set against the ground truth, by bytes in the workload's regions; "
                     f"delay: median time until a phase change shows (recall >= {MIN_RECALL_SEEN:g}), '-' when "
                     "the truth had no phase change")
    return "".join(parts) + "."
