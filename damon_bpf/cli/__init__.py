"""The ``damon-bpf`` command line: argument parsing, messages and exit codes, nothing else.

Each subcommand is a module ``damon_bpf.cli.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``
(damo's ``set_argparser``/``main`` contract), listed once in :data:`SUBCOMMANDS`. Subcommand modules are imported
lazily so ``damon-bpf --help`` never pulls in bcc.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import time
import traceback
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

__all__ = ("main", "SUBCOMMANDS", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_NOT_SUPPORTED", "EXIT_PERMISSION",
           "EXIT_TARGET_GONE", "EXIT_IO", "EXIT_SOFTWARE", "EXIT_INTERRUPTED", "EXIT_CODES", "DEBUG_ENV")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SUPPORTED = 3
EXIT_PERMISSION = 4
EXIT_TARGET_GONE = 5
EXIT_IO = 6
EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: a bug in damon-bpf
EXIT_INTERRUPTED = 130

#: every exit code the CLI returns (besides a ``-- CMD``'s own status, passed on by ``monitor`` and ``record``)
EXIT_CODES = frozenset({EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_SUPPORTED, EXIT_PERMISSION, EXIT_TARGET_GONE,
                        EXIT_IO, EXIT_SOFTWARE, EXIT_INTERRUPTED})
#: set to 1 to get the traceback of an error as well as its line
DEBUG_ENV = "DAMON_BPF_DEBUG"


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
        self.exit(EXIT_USAGE, one_line(f"{self.prog}: error: {message}") + "\n")


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


def one_line(text: str) -> str:
    """*text* as one printable line: its first line, other control characters (and undecodable bytes of file
    names) escaped as Python does (``\\x1e``, ``\\udcff``)."""
    first = text.strip().split("\n", 1)[0].strip()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in first)


def error_message(err: BaseException) -> str:
    """One line describing *err* for the user."""
    msg = one_line(str(err)) or type(err).__name__
    return f"damon-bpf: error: {msg}"


def exit_code_for(err: DamonBpfError) -> int:
    if isinstance(err, PermissionDeniedError):
        return EXIT_PERMISSION
    if isinstance(err, TargetGoneError):
        # `-- CMD` that failed before monitoring began: its own status, so a failed command is not hidden
        return err.command_status or EXIT_TARGET_GONE
    if isinstance(err, (NotSupportedError, MissingDependencyError)):
        return EXIT_NOT_SUPPORTED
    if isinstance(err, InvalidParamsError):
        return EXIT_USAGE
    if isinstance(err, IOFailureError):
        return EXIT_IO
    return EXIT_ERROR


def _os_error_message(err: OSError) -> str:
    # "damon-bpf: error: FILE: No space left on device (ENOSPC)", or about the output when no file is named
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno is not None and err.errno in errno.errorcode:
        reason += f" ({errno.errorcode[err.errno]})"
    where = err.filename if err.filename is not None else "writing the output"
    return one_line(f"damon-bpf: error: {where}: {reason}")


def _say(line: str) -> None:
    # the error line; standard error itself may be closed or full
    try:
        print(line, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    # after standard output failed (a closed pipe, a full disk), point it at /dev/null so the interpreter's own
    # flush at exit neither fails again nor prints "Exception ignored ..." (as Python's signal docs advise)
    out = sys.stdout
    if out is not sys.__stdout__ or out is None:
        return
    try:
        fd = out.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _flush_stdout() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (the list is in the README, "Exit codes").

    Every error becomes one line on standard error and a documented exit code, never a traceback:
    :class:`~damon_bpf.errors.DamonBpfError` by its kind (2 bad input, 3 not supported, 4 permission, 5 target
    gone, 6 I/O), an :class:`OSError` that escaped the library by its errno (4 permission, 6 otherwise), a closed
    output pipe (``| head``) quietly with 0, Ctrl-C with 130, and anything else as ``damon-bpf: internal error:
    ...`` with 70 (``EX_SOFTWARE``). ``DAMON_BPF_DEBUG=1`` prints the traceback too.
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        rc = _main(argv)
        _flush_stdout()
        return rc
    except SystemExit as exc:  # argparse: --help, a usage error (its line is printed already)
        try:
            _flush_stdout()
        except OSError as err:
            return _output_failed(err, debug)
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        _say(one_line(f"damon-bpf: error: {exc.code}"))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _silence_stdout()
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `damon-bpf report raw | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_OK
    except DamonBpfError as err:
        if debug:
            traceback.print_exc()
        _silence_stdout_if_broken()
        _say(error_message(err))
        return exit_code_for(err)
    except OSError as err:
        return _output_failed(err, debug)
    except Exception as err:  # a bug: one line, the traceback only on request
        if debug:
            traceback.print_exc()
        _silence_stdout_if_broken()
        msg = one_line(str(err))
        _say(f"damon-bpf: internal error: {type(err).__name__}{': ' + msg if msg else ''}"
             f"{'' if debug else f' (run with {DEBUG_ENV}=1 for the traceback)'}")
        return EXIT_SOFTWARE


def _silence_stdout_if_broken() -> None:
    # an error line is coming; make sure what is left in standard output's buffer cannot fail at exit
    try:
        _flush_stdout()
    except (OSError, ValueError):
        _silence_stdout()


def _output_failed(err: OSError, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    _silence_stdout_if_broken()
    if isinstance(err, BrokenPipeError):
        return EXIT_OK
    _say(_os_error_message(err))
    return EXIT_PERMISSION if isinstance(err, PermissionError) else EXIT_IO


def _main(argv: Sequence[str] | None) -> int:
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:  # `damon-bpf monitor [options] -- CMD ARGS`: the command is not parsed as options
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    for a in argv:  # argparse (before Python 3.12) takes `--opt=--` as no value at all: a list, not a string
        if a.startswith("-") and a.endswith("=--"):
            parser.error(f"argument {a[:-3]}: '--' is not a value")
    args = parser.parse_args(argv)
    args.command = command
    # the start-up (schemes, the access source, BPF compilation) counts from here: --duration bounds it too
    args.started_at = time.monotonic()
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="damon-bpf: %(name)s: %(message)s",
    )
    if command and args.command_name not in ("monitor", "record", "compare", "export"):
        parser.error(f"'{args.command_name}' does not run a command after --")
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args._run(args))
