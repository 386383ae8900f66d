"""``damon-bpf report threads``: which threads touched which ranges, and on which CPUs, from ``FILE.threads``
(recorded by the ``fault`` and ``perf`` sources). See :mod:`damon_bpf.results.threads` and docs/threads.md."""

from __future__ import annotations

import argparse
import dataclasses
import json

from damon_bpf.config.units import format_bytes
from damon_bpf.errors import InvalidParamsError
from damon_bpf.results.threads import ThreadReport, thread_report

__all__ = ("add_arguments", "run", "format_report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", default="damon.data", metavar="FILE",
                   help="the record (default damon.data); its thread attribution is FILE.threads")
    p.add_argument("--threads-file", metavar="FILE", help="the sidecar (default: INPUT.threads)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="hottest ranges per thread (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def format_report(rep: ThreadReport) -> list[str]:
    """The report as text lines (under 80 columns)."""
    lines = []
    for t in rep.threads:
        name = f" ({t.comm})" if t.comm else ""
        lines.append(f"pid {t.pid} tid {t.tid}{name}: {t.events} events")
        for r in t.ranges:
            lines.append(f"  {r.start:#x}-{r.end:#x} {format_bytes(r.end - r.start):>10} "
                         f"{r.events:12.0f} {100 * r.share:5.1f}%")
    if rep.cpus:
        lines.append("cpus: " + ", ".join(
            f"{c.cpu}" + (f" (node {c.node})" if c.node is not None else "") + f": {c.events}" for c in rep.cpus))
    lines.extend(f"note: {n}" for n in rep.notes)
    return lines


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise InvalidParamsError("--top must be at least 1")
    rep = thread_report(args.input, args.threads_file, top=args.top)
    if args.json:
        print(json.dumps(dataclasses.asdict(rep)))
    else:
        print("\n".join(format_report(rep)))
    return 0
