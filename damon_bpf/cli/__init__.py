"""The ``damon-bpf`` command line: argument parsing, messages and exit codes, nothing else.

Each subcommand is a module ``damon_bpf.cli.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``
(damo's ``set_argparser``/``main`` contract), listed once in :data:`SUBCOMMANDS`. Subcommand modules are imported
lazily so ``damon-bpf --help`` never pulls in bcc.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NamedTuple, NoReturn, Sequence

from damon_bpf.errors import (
    DamonBpfError,
    InvalidParamsError,
    IOFailureError,
    MissingDependencyError,
    NotSupportedError,
    PermissionDeniedError,
    TargetGoneError,
)

__all__ = ("main", "SUBCOMMANDS", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_NOT_SUPPORTED")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SUPPORTED = 3
EXIT_PERMISSION = 4
EXIT_TARGET_GONE = 5
EXIT_IO = 6
EXIT_INTERRUPTED = 130


class SubCommand(NamedTuple):
    name: str
    module: str
    help: str


SUBCOMMANDS: tuple[SubCommand, ...] = (
    SubCommand("features", "damon_bpf.cli.features", "show what this machine supports"),
    SubCommand("monitor", "damon_bpf.cli.monitor", "monitor data accesses of processes live"),
    SubCommand("demo", "damon_bpf.cli.demo", "run the bundled workload and monitor it live"),
    SubCommand("probe", "damon_bpf.cli.probe", "inspect the BPF programs (probe dump NAME)"),
    SubCommand("record", "damon_bpf.cli.record", "record monitoring results to a file damo reads"),
    SubCommand("report", "damon_bpf.cli.report", "show recorded results (heatmap, wss, access, raw, code)"),
    SubCommand("import", "damon_bpf.cli.import_perf", "build a record from a perf recording with data addresses"),
    SubCommand("compare", "damon_bpf.cli.compare", "run several access sources side by side on one target"),
    SubCommand("export", "damon_bpf.cli.export", "monitor processes and serve the figures to Prometheus"),
)


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (``damon-bpf monitor: error: ...``, exit 2) instead of the
    usage block; ``--help`` still prints the usage."""

    def error(self, message: str) -> NoReturn:
        if "expected one argument" in message:
            message += " (a value that starts with '-' goes as --option=VALUE)"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="damon-bpf",
        description="DAMON-style data access monitoring and DAMOS actions, fed by eBPF.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    for sc in SUBCOMMANDS:
        try:
            mod = importlib.import_module(sc.module)
        except ModuleNotFoundError as err:
            if err.name != sc.module:
                raise
            continue  # a subcommand of a partial installation
        p = sub.add_parser(sc.name, help=sc.help, description=sc.help)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def error_message(err: BaseException) -> str:
    """One line describing *err* for the user."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"damon-bpf: error: {msg}"


def exit_code_for(err: DamonBpfError) -> int:
    if isinstance(err, PermissionDeniedError):
        return EXIT_PERMISSION
    if isinstance(err, TargetGoneError):
        return EXIT_TARGET_GONE
    if isinstance(err, (NotSupportedError, MissingDependencyError)):
        return EXIT_NOT_SUPPORTED
    if isinstance(err, InvalidParamsError):
        return EXIT_USAGE
    if isinstance(err, IOFailureError):
        return EXIT_IO
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:  # `damon-bpf monitor [options] -- CMD ARGS`: the command is not parsed as options
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    args.command = command
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="damon-bpf: %(name)s: %(message)s",
    )
    if command and args.command_name not in ("monitor", "record", "compare", "export"):
        parser.error(f"'{args.command_name}' does not run a command after --")
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args))
    except DamonBpfError as err:
        print(error_message(err), file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
