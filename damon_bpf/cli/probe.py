"""``damon-bpf probe dump NAME``: the BPF C source a probe family compiles and its final ``-D`` flags (bcc's
``--ebpf``), without loading anything."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from damon_bpf.errors import InvalidParamsError

FAMILIES = ("pagefault", "perf_sample")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="probe_command", metavar="SUBCOMMAND", required=True)
    d = sub.add_parser("dump", help="print a probe's source path and compile flags")
    d.add_argument("name", choices=FAMILIES, help="probe family")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (max_targets, max_regions, max_intervals, ip_entries, rate_limit, "
                        "thread_entries, writes_only, "
                        "rate_burst)")
    d.add_argument("--source", action="store_true", help="also print the C source")
    d.add_argument("--json", action="store_true", help="JSON output")


def run(args: argparse.Namespace) -> int:
    from damon_bpf.probes._bcc import bpf_source_path
    from damon_bpf.probes.access import AccessProbeConfig

    fields = {f.name for f in dataclasses.fields(AccessProbeConfig)} - {"family"}
    overrides: dict[str, Any] = {}
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not sep or k not in fields:
            raise InvalidParamsError(f"--set {kv!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        try:
            overrides[k] = int(v, 0)
        except ValueError:
            raise InvalidParamsError(f"--set {kv!r}: {v!r} is not an integer") from None
    cfg = AccessProbeConfig(family=args.name, **overrides)
    cfg.validate()
    path = bpf_source_path(args.name)
    flags = cfg.cflags()
    if args.json:
        print(json.dumps({"source": str(path), "cflags": flags, "config": dataclasses.asdict(cfg)}))
    else:
        print(f"source: {path}")
        print("cflags: " + " ".join(flags))
    if args.source:
        print(path.read_text())
    return 0
