"""``damon-bpf report code [-i FILE] [--top N] [--folded OUT]``: the code behind the hottest and coldest regions.

Ranks the regions of a record's last snapshot by their recent ``nr_accesses`` and lists, for each, the
instructions that touched it (from ``FILE.attribution``: live records and ``damon-bpf import``), symbolized with
perf's names (imports) or BCC (live processes), else in hex. ``--folded OUT`` writes folded stacks for
flame-graph tools. See :mod:`damon_bpf.results.attribution` for the formats.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from damon_bpf.results.attribution import (
    CodeShare,
    RankedRegion,
    Symbolizer,
    attribute,
    folded_lines,
    load_record,
    rank_regions,
    read_attribution,
    sidecar_path,
    write_folded,
)
from damon_bpf.config.limits import require_regular
from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import format_bytes

__all__ = ("add_arguments", "run", "build_report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", default="damon.data", metavar="FILE",
                   help="the record (default damon.data); its code attribution is FILE.attribution")
    p.add_argument("--attribution", metavar="FILE", help="the attribution sidecar (default: INPUT.attribution)")
    p.add_argument("--top", type=int, default=5, metavar="N",
                   help="list the N hottest and N coldest regions per target (default 5)")
    p.add_argument("--ips", type=int, default=5, metavar="M", help="code locations per region (default 5)")
    p.add_argument("--last", type=int, default=5, metavar="K",
                   help="rank regions by nr_accesses over the last K snapshots (default 5)")
    p.add_argument("--folded", metavar="OUT",
                   help="write folded stacks (comm;region [start-end];module`symbol count) for flame-graph tools")
    p.add_argument("--no-bcc", action="store_true", help="never symbolize with BCC (hex for unnamed addresses)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def build_report(record: str, sidecar: str | None = None, *, top: int = 5, ips: int = 5, last: int = 5,
                 symbolizer: Symbolizer | None = None) -> tuple[list[RankedRegion], dict[int, str], list[str]]:
    """The ranked regions of *record* with their code (sorted by events, at most *ips* each, the rest summed
    into no entry), the comm per pid, and notes for the user.

    :raises InvalidParamsError: no such record or sidecar
    """
    targets = load_record(record)
    side = sidecar or sidecar_path(record)
    notes: list[str] = []
    lines: list[dict[str, Any]] = []
    if os.path.exists(side):
        require_regular(side)  # a FIFO or a device would block or never end
        lines = read_attribution(side)
    elif sidecar:
        raise InvalidParamsError(f"{sidecar}: no such file")
    else:
        notes.append(f"no code attribution ({side} does not exist): record with IP attribution or import a perf "
                     f"recording")
    sym = symbolizer or Symbolizer.from_lines(lines)
    if symbolizer is not None:
        sym.syms.update(Symbolizer.from_lines(lines, live=None).syms)
    pids: dict[int, int | None] = {}
    comms: dict[int, str] = {}
    for line in lines:
        tid = int(line.get("target_id", 0))
        if line.get("pid") is not None:
            pids[tid] = int(line["pid"])
            if line.get("comm"):
                comms[int(line["pid"])] = str(line["comm"])
    out: list[RankedRegion] = []
    for rr in sorted(targets, key=lambda r: r.target_id):
        hot, cold = rank_regions(rr, top, last)
        regions = hot + cold
        pid = pids.get(rr.target_id, rr.pid)
        shares = attribute(regions, lines, rr.target_id)
        for i, r in enumerate(regions):
            r.pid = pid
            by_ip = sorted(shares[i].items(), key=lambda kv: (-kv[1], kv[0]))
            r.total_events = float(sum(v for _, v in by_ip))
            chosen = by_ip[:max(0, ips)]
            names = sym.resolve(pid, [ip for ip, _ in chosen])
            r.code = [CodeShare(ip, ev, nm) for (ip, ev), nm in zip(chosen, names)]
        out.extend(regions)
    notes.extend(sym.notes)
    return out, comms, notes


def _fmt_events(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 or x == int(x) else f"{x:.1f}"


def run(args: argparse.Namespace) -> int:
    if args.top <= 0 or args.last <= 0 or args.ips < 0:
        raise InvalidParamsError("--top and --last must be positive, --ips not negative")
    symbolizer = Symbolizer(live=None) if args.no_bcc else None
    regions, comms, notes = build_report(args.input, args.attribution, top=args.top, ips=args.ips,
                                         last=args.last, symbolizer=symbolizer)
    if args.folded:
        write_folded(args.folded, folded_lines(regions, comms))
    if args.json:
        print(json.dumps({"regions": [
            {"kind": r.kind, "target_id": r.target_id, "pid": r.pid, "start": r.start, "end": r.end,
             "nr_accesses": round(r.nr_accesses, 3), "age": r.age, "events": round(r.total_events, 3),
             "code": [{"ip": c.ip, "symbol": c.symbol, "events": round(c.events, 3)} for c in r.code]}
            for r in regions], "notes": notes}))
        return 0
    cur: tuple[int, str] | None = None
    for r in regions:
        if cur != (r.target_id, r.kind):
            if cur is None or cur[0] != r.target_id:
                who = f"pid {r.pid}" + (f" ({comms[r.pid]})" if r.pid in comms else "") if r.pid else "pid ?"
                print(f"# target {r.target_id}: {who}; ranked by nr_accesses over the last {args.last} snapshots")
            print(f"# {'hottest' if r.kind == 'hot' else 'coldest'} regions")
            cur = (r.target_id, r.kind)
        print(f"[{r.start:#x}, {r.end:#x}) {format_bytes(r.end - r.start):>12}  nr_accesses {r.nr_accesses:6.2f}  "
              f"age {r.age}  events {_fmt_events(r.total_events)}")
        for c in r.code:
            pct = 100.0 * c.events / r.total_events if r.total_events else 0.0
            print(f"    {_fmt_events(c.events):>10} {pct:5.1f}%  {c.symbol}")
        if not r.code:
            print("    (no code seen touching it)")
    if not regions:
        print("# the record has no regions")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.folded:
        print(f"folded stacks written to {args.folded}", file=sys.stderr)
    return 0
