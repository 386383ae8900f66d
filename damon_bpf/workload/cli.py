"""The ``damon-bpf-workload`` command: run a bundled or configured workload and write its ground truth.

The command-line face of masim (``sjp38/masim``): ``damon-bpf-workload --pattern hotcold --truth t.jsonl``
maps the regions, touches them phase by phase and logs what was hot when. This module only parses arguments,
handles signals and turns errors into messages and exit codes; the work is in :mod:`damon_bpf.workload.runner`.

Exit codes: 0 on success and on SIGINT/SIGTERM (the run is stopped cleanly after the current batch), 1 when the
workload fails while running, 2 for bad input, 3 when ``--verify`` finds data that differs from what was written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any, NoReturn, Sequence

from damon_bpf.errors import DamonBpfError, InvalidParamsError
from damon_bpf.config.units import format_bytes, text_to_sec
from damon_bpf.workload.config import BUILTIN_PATTERNS, WorkloadConfig, builtin_pattern, load_config
from damon_bpf.workload.runner import MAX_THREADS, DataIntegrityError, Workload

__all__ = ("main", "PROG", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_DATA_CHANGED")

PROG = "damon-bpf-workload"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DATA_CHANGED = 3
_DEFAULT_PATTERN = "hotcold"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; we want one error line and a return code from main().
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _build_parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description=(
            "Run a memory access workload (like DAMON's masim) and write the ground truth of which address "
            "ranges were hot when. Stops on SIGINT/SIGTERM with exit code 0."
        ),
        epilog=(
            f"Patterns: stairs (4x64 MiB regions hot one after another), zigzag (4x32 MiB regions swept "
            f"0 1 2 3 2 1 ...), hotcold (16 MiB hot, 256 MiB written once then cold). Default: {_DEFAULT_PATTERN}."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pattern", metavar="NAME", help=f"built-in pattern: {', '.join(BUILTIN_PATTERNS)}")
    src.add_argument("--config", metavar="FILE", help="JSON workload config (regions and phases)")
    p.add_argument("--scale", metavar="FLOAT", type=float, default=1.0, help="multiply region sizes (default 1)")
    p.add_argument("--threads", metavar="N", type=int, default=1, help="worker threads touching memory (default 1)")
    p.add_argument(
        "--duration",
        metavar="TIME",
        help="total run time (seconds or e.g. 1.5s, 2m); phases cycle until it is over (default: until signalled)",
    )
    p.add_argument(
        "--file-backed",
        metavar="DIR",
        dest="file_dir",
        help="back every region with a file created in DIR (removed on exit) instead of anonymous memory",
    )
    p.add_argument("--truth", metavar="FILE", help="write the ground truth to FILE (JSON lines)")
    p.add_argument("--seed", metavar="N", type=int, help="seed of the access pattern RNG")
    p.add_argument("--verify", action="store_true",
                   help="data-integrity check: every byte holds a known pattern (writes keep it), checked at each "
                        "phase end; exit 3 on any difference (e.g. a DAMOS action that changed what the process "
                        "reads)")
    p.add_argument("-q", "--quiet", action="store_true", help="no startup message")
    return p


def _load(args: argparse.Namespace) -> WorkloadConfig:
    if args.config is not None:
        cfg = load_config(args.config)
        return cfg.scaled(args.scale)
    return builtin_pattern(args.pattern or _DEFAULT_PATTERN, args.scale)


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    if not 1 <= args.threads <= MAX_THREADS:
        raise InvalidParamsError(f"--threads must be between 1 and {MAX_THREADS}")
    duration_s = None
    if args.duration is not None:
        try:
            duration_s = text_to_sec(args.duration)
        except InvalidParamsError as err:
            raise InvalidParamsError(f"--duration: {err}") from err
        if not duration_s >= 0:
            raise InvalidParamsError(f"--duration must not be negative: {args.duration!r}")
    if args.seed is not None and args.seed < 0:
        raise InvalidParamsError("--seed must not be negative")

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, _on_signal)
    try:
        wl = Workload(config, threads=args.threads, file_dir=args.file_dir, truth_path=args.truth, seed=args.seed,
                      verify=args.verify)
        try:
            wl.setup()
            if not args.quiet:
                print(
                    f"{PROG}: pid {wl.pid}, {len(wl.regions)} regions, {format_bytes(config.total_bytes)}",
                    file=sys.stderr,
                    flush=True,
                )
            wl.run(duration_s, stop)
            if args.verify:
                wl.check_integrity("the last")
                if not args.quiet:
                    print(f"{PROG}: verified {wl.nr_verified_pages} pages: no difference", file=sys.stderr)
        finally:
            wl.close()
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``damon-bpf-workload``.

    :param argv: arguments without the program name (default ``sys.argv[1:]``)
    :return: the exit code
    """
    try:
        args = _build_parser().parse_args(argv)
        return _run(args)
    except _UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidParamsError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except DataIntegrityError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_DATA_CHANGED
    except DamonBpfError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
