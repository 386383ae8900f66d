"""DAMOS options of the commands that monitor, in damo's words (``src/_damon_args.py: set_damos_argparser``).

Every ``--damos_action`` starts a scheme and the ``--damos_*`` options after it apply to that scheme, as in
damo. argparse only records the options in command-line order (:class:`_DamosWords`); turning them into
schemes, with every check and error message, is :func:`damon_bpf.config.schemes.schemes_from_cli`, so a bad value
is reported as one ``damon-bpf: error:`` line with exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from damon_bpf.config.schemes import check_nr_schemes, load_schemes, schemes_from_cli
from damon_bpf.engine import Attrs
from damon_bpf.engine.damos import Scheme
from damon_bpf.errors import InvalidParamsError

__all__ = ("add_damos_args", "schemes_from_args")

_DEST = "damos_words"


class _DamosWords(argparse.Action):
    """Appends ``(option, values)`` to ``namespace.damos_words`` so the order of the options is kept."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        words = list(getattr(namespace, _DEST, None) or [])  # a copy: never mutate the shared default
        vals = [values] if isinstance(values, str) else list(values or [])
        words.append((option_string or self.dest, [str(v) for v in vals]))
        setattr(namespace, _DEST, words)


# (option, nargs, metavar, help); nargs "+" are checked by damos_config, which names the option in its errors
_OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("--damos_action", "+", ("ACTION", "NID"),
     "start a new scheme with this action: willneed cold pageout hugepage nohugepage collapse lru_prio lru_deprio "
     "migrate_hot NID migrate_cold NID stat; the --damos_* options after it apply to this scheme"),
    ("--damos_access_rate", 2, ("MIN", "MAX"),
     "access rate range, percent of the maximum (aggr/sample), e.g. '0%% 0%%'; or 'N samples'"),
    ("--damos_sz_region", 2, ("MIN", "MAX"), "region size range, e.g. '4KiB max'"),
    ("--damos_age", 2, ("MIN", "MAX"),
     "age range: times (bare numbers are us; they stay times when the intervals change), e.g. '30s max'; or "
     "'N aggr_intervals'"),
    ("--damos_apply_interval", 1, "TIME", "apply the scheme every TIME (bare numbers are us; default: every "
                                          "aggregation interval)"),
    ("--damos_quotas", "+", ("TIME_MS", "SIZE"),
     "quotas: TIME_MS [SIZE [RESET_MS [W_SZ [W_ACC [W_AGE]]]]]: time and size per reset interval (default: never "
     "reset) and prioritisation weights (permil, default 0)"),
    ("--damos_quota_time", 1, "TIME_MS", "time quota alone (use instead of --damos_quotas)"),
    ("--damos_quota_space", 1, "SIZE", "size quota alone (use instead of --damos_quotas)"),
    ("--damos_quota_interval", 1, "RESET_MS", "quota reset interval alone (use instead of --damos_quotas)"),
    ("--damos_quota_weights", 3, ("W_SZ", "W_ACC", "W_AGE"),
     "prioritisation weights alone, permil (use instead of --damos_quotas; default 1 1 1)"),
    ("--damos_quota_goal", "+", ("METRIC", "VALUE"),
     "quota goal (repeatable): METRIC VALUE [NID|MEMCG_PATH]; metrics user_input some_mem_psi_us "
     "node_mem_used_bp node_mem_free_bp node_memcg_used_bp node_memcg_free_bp active_mem_bp inactive_mem_bp "
     "node_eligible_mem_bp task_mem_stall_us; needs a reset interval"),
    ("--damos_quota_goal_tuner", 1, "TUNER", "how goals tune the quota: consist (default) or temporal"),
    ("--damos_wmarks", 5, ("METRIC", "INTERVAL", "HIGH", "MID", "LOW"),
     "watermarks: none|free_mem_rate, check interval (us), high/mid/low marks (permil)"),
    ("--damos_filter", "+", ("ALLOW|REJECT", "TYPE"),
     "filter (repeatable): allow|reject [none] TYPE [ARGS]; types anon active young unmapped memcg PATH "
     "addr START END target IDX hugepage_size MIN MAX probe_hits_wsum MIN MAX; old form TYPE "
     "matching|nomatching [ARGS] [allow|reject]"),
    ("--damos_max_nr_snapshots", 1, "N", "stop applying the scheme after N passes over the regions (0: never)"),
)


def add_damos_args(p: argparse.ArgumentParser) -> None:
    """Add damo's ``--damos_*`` options, ``-c/--schemes`` and ``--dry-run`` to *p*."""
    g = p.add_argument_group(
        "DAMOS schemes (damo's options; each --damos_action starts a scheme, the --damos_* options after it "
        "apply to it; put PIDs before these options)")
    for opt, nargs, metavar, help_ in _OPTIONS:
        g.add_argument(opt, nargs=None if nargs == 1 else nargs, metavar=metavar, help=help_,
                       action=_DamosWords, dest=_DEST, default=None)
    g.add_argument("-c", "--schemes", metavar="FILE_OR_JSON",
                   help="schemes in damo's JSON shape: a list of schemes or a full {\"kdamonds\": [...]} file "
                        "(added before the --damos_* schemes)")
    g.add_argument("--dry-run", action="store_true",
                   help="monitor and decide as usual, count what would be applied, but apply nothing")


def schemes_from_args(args: argparse.Namespace, attrs: Attrs) -> list[Scheme]:
    """The schemes of ``--schemes`` then of the ``--damos_*`` options, converted with *attrs*.

    :raises InvalidParamsError: a bad option, value or file; the message names it
    """
    schemes: list[Scheme] = []
    if getattr(args, "schemes", None):
        try:
            schemes += load_schemes(args.schemes, attrs)
        except InvalidParamsError as err:
            raise InvalidParamsError(f"--schemes: {err}") from None
    words = getattr(args, _DEST, None) or []
    if words:
        schemes += schemes_from_cli(words, attrs)
        check_nr_schemes(len(schemes))  # --schemes and --damos_action together
    if getattr(args, "dry_run", False) and not schemes:
        raise InvalidParamsError("--dry-run needs a scheme (--damos_action or --schemes)")
    return schemes
