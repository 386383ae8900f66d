"""Options shared by the commands that monitor (``monitor``, later ``record`` and ``compare``), in damo's
words and value grammar (``5ms``, ``1s``, ``64MiB``)."""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from damon_bpf.engine import Attrs, IntervalsGoal, SourceIntervals
from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import nonnegative_int, positive_int, text_to_bp, text_to_sec, text_to_us

__all__ = ("AUTOTUNE_GOAL", "add_target_args", "add_monitoring_args", "add_probe_args", "attrs_from_args",
           "probes_from_args", "targets_from_args", "positive_int", "nonnegative_int")


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pids", nargs="*", metavar="PID", help="processes to monitor (all their threads)")
    p.add_argument("--duration", metavar="TIME",
                   help="stop after this long (e.g. 30s, 2m); a start-up (schemes, BPF compilation) longer than "
                        "that ends the command with an error")


def add_monitoring_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("monitoring attributes (damo's names and units)")
    g.add_argument("-s", "--sample", metavar="TIME", help="sampling interval (default 5ms)")
    g.add_argument("-a", "--aggr", metavar="TIME", help="aggregation interval (default 100ms)")
    g.add_argument("-u", "--updr", default="1s", metavar="TIME",
                   help="operations update interval: how often target address ranges are refreshed (default 1s)")
    g.add_argument("-n", "--minr", default=10, type=int, metavar="N", help="minimum number of regions (10)")
    g.add_argument("-m", "--maxr", default=1000, type=int, metavar="N", help="maximum number of regions (1000)")
    g.add_argument("--monitoring_intervals_goal", nargs=4,
                   metavar=("ACCESS_BP", "AGGRS", "MIN_SAMPLE", "MAX_SAMPLE"),
                   help="adaptive intervals tuning goal, e.g. '4%% 3 5ms 10s'")
    g.add_argument("--monitoring_intervals_autotune", action="store_true",
                   help="the kernel's intervals tuning with the recommended goal: 4%% 3 5ms 10s (without it and "
                        "without --sample/--aggr, the pte source chooses its own intervals)")
    g.add_argument("--wss-window", default="1s", metavar="TIME",
                   help="the window of the working set: bytes accessed within the last TIME (default 1s)")
    g.add_argument("--seed", type=nonnegative_int, help="seed the random number generator (reproducible splits)")


def add_probe_args(p: argparse.ArgumentParser) -> None:
    """damo's data attribute probe options (Linux 7.2 probes; see damon_bpf.config.probes): ``monitor``,
    ``record`` and ``export``, whose sessions evaluate them (:func:`probes_from_args`)."""
    g = p.add_argument_group("data attribute probes (damo's names; the pte source)")
    g.add_argument("--probe_filter", nargs="+", action="append", metavar="WORD",
                   help="a probe filter: allow|reject [non] TYPE [ARGS]; types anon, file, written (Dirty: not "
                        "re-armed), active, memcg PATH, hugepage_size MIN MAX, node N; repeat for more")
    g.add_argument("--nr_probe_filters", type=int, nargs="+", metavar="N",
                   help="how many of the --probe_filter, in order, each probe takes (default: one probe)")
    g.add_argument("--probe_weight", type=int, nargs="+", action="append", metavar="W",
                   help="the probes' weights (only 0: attributes-only monitoring is not implemented)")


def probes_from_args(args: argparse.Namespace) -> list[Any]:
    """The probes of the options (:func:`damon_bpf.config.probes.probes_from_options`)."""
    from damon_bpf.config.probes import probes_from_options

    return probes_from_options(getattr(args, "probe_filter", None), getattr(args, "nr_probe_filters", None),
                               getattr(args, "probe_weight", None))


#: The recommended intervals tuning goal (damo's ``--monitoring_intervals_autotune``).
AUTOTUNE_GOAL = ("4%", "3", "5ms", "10s")


#: Where a source chooses its intervals (``Attrs.source_intervals``), the first ones, before it has measured
#: what a window costs.
SOURCE_START_INTERVALS = ("10ms", "200ms")


def attrs_from_args(args: argparse.Namespace, source_chooses: bool = False) -> Attrs:
    """The monitoring attributes of the options.

    :param source_chooses: let the access source choose the intervals for its cost
        (:class:`~damon_bpf.engine.model.SourceIntervals`: the aggregation interval within 100 ms .. 1 s) unless
        the options fix them or ask for the kernel's tuning (``pte`` wants this)
    """
    fixed = getattr(args, "sample", None) is not None or getattr(args, "aggr", None) is not None
    goal = args.monitoring_intervals_goal
    by_source = source_chooses and not fixed and goal is None and not args.monitoring_intervals_autotune
    sample = getattr(args, "sample", None) or (SOURCE_START_INTERVALS[0] if by_source else "5ms")
    aggr = getattr(args, "aggr", None) or (SOURCE_START_INTERVALS[1] if by_source else "100ms")
    for opt, v in (("--minr", args.minr), ("--maxr", args.maxr)):
        if v < 1:
            raise InvalidParamsError(f"{opt}: the number of regions must be positive (got {v})")
    try:
        attrs = Attrs(sample_interval_us=text_to_us(sample), aggr_interval_us=text_to_us(aggr),
                      ops_update_interval_us=text_to_us(args.updr), min_nr_regions=args.minr,
                      max_nr_regions=args.maxr)
    except InvalidParamsError as err:
        raise InvalidParamsError(f"monitoring attributes: {err}") from None
    if args.monitoring_intervals_autotune:
        goal = list(AUTOTUNE_GOAL)
    if by_source:
        attrs.source_intervals = SourceIntervals()
    if goal:
        try:
            aggrs = int(goal[1])
        except ValueError:
            raise InvalidParamsError(f"--monitoring_intervals_goal: AGGRS is not an integer: {goal[1]!r}") from None
        attrs.intervals_goal = IntervalsGoal(access_bp=text_to_bp(goal[0]), aggrs=aggrs,
                                             min_sample_us=text_to_us(goal[2]), max_sample_us=text_to_us(goal[3]))
    if attrs.sample_interval_us <= 0:
        raise InvalidParamsError("the sampling interval must be positive")
    attrs.validate()
    return attrs


def wss_window_from_args(args: argparse.Namespace) -> int:
    """``--wss-window`` in µs."""
    us = text_to_us(getattr(args, "wss_window", None) or "1s")
    if us <= 0:
        raise InvalidParamsError(f"--wss-window: not a positive time: {args.wss_window!r}")
    return us


def duration_from_args(args: argparse.Namespace) -> float | None:
    if args.duration is None:
        return None
    d = text_to_sec(args.duration)
    if not d > 0:
        raise InvalidParamsError(f"invalid duration {args.duration!r}")
    if d >= threading.TIMEOUT_MAX:  # "max", or longer than a timer can wait (292 years): no limit
        return None
    return d


def started_at(args: argparse.Namespace) -> float:
    """When the command started, after its options were parsed (``time.monotonic()``, set by
    :func:`damon_bpf.cli.main`): a start-up (schemes, the access source, BPF compilation) longer than
    ``--duration`` from there ends the command (``MonitorSpec.started_at``)."""
    t = getattr(args, "started_at", None)
    return float(t) if t is not None else time.monotonic()


def targets_from_args(args: argparse.Namespace) -> tuple[list[int], list[str] | None]:
    """Split the positional words into pids and a ``-- CMD ARGS`` command."""
    words = list(args.pids)
    cmd = list(getattr(args, "command", None) or [])
    pids: list[int] = []
    for w in words:
        try:
            pids.append(int(w))
        except ValueError:
            raise InvalidParamsError(f"not a pid: {w!r} (to run a command, put it after --)") from None
    for pid in pids:
        if pid == os.getpid() or (pid > 0 and os.path.exists(f"/proc/self/task/{pid}")):
            # `exec damon-bpf monitor $$`: the shell's pid is now ours
            raise InvalidParamsError(f"pid {pid} is this damon-bpf process: it does not monitor itself")
    return pids, cmd or None
