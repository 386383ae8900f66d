"""DAMOS schemes from damo's words: the ``--damos_*`` command-line options and damo's JSON scheme shape.

The library side of damo's ``_damon_args.damos_options_to_schemes()`` and ``_damon.Damos.from_kvpairs()`` /
``to_kvpairs()`` (damo's ``_damon.py``). It builds :class:`~damon_bpf.engine.damos.Scheme` objects in the
kernel's units and converts back; it prints nothing and raises :class:`~damon_bpf.errors.InvalidParamsError`
with the offending option or JSON field in the message.

**Units.** damo's human forms are converted to DAMON's raw units with the monitoring
:class:`~damon_bpf.engine.Attrs`, as damo does: an access rate in percent of ``max_nr_accesses`` to samples, an
age given as a time to aggregation intervals, ``max`` to the field's largest value. The pattern also keeps a
percentage or a time as given, and the engine converts it again whenever the intervals change
(:meth:`~damon_bpf.engine.damos.AccessPattern.rebase`), so ``5s`` stays five seconds; ``N samples`` and
``N aggr_intervals`` stay as given. Bare numbers are in the field's unit; strings may carry their own
(:mod:`damon_bpf.config.units`).

**Patterns that cannot match.** :func:`schemes_never_matching` names the schemes of an initialised context
that can match no region in the session (a minimum age longer than the run, an access rate above what an
aggregation interval can have, a minimum above its maximum or above the size monitored).

**Command line.** Each ``--damos_action`` starts a scheme, and the ``--damos_*`` options after it apply to that
scheme. As in damo, a ``--damos_quotas`` without a reset interval never resets its charge window (``max``),
its unset weights are 0, and quota goals need a reset interval.

The package, one module a job: :mod:`.values` (the values and their units, shared by both readers), :mod:`.cli`
(the command-line grammar), :mod:`.from_json` (damo's JSON, ``--schemes``), :mod:`.to_json` (back to damo's
JSON) and :mod:`.matching` (schemes that cannot match).

See docs/schemes.md for the unit rules and the full option grammar.
"""

from __future__ import annotations

from damon_bpf.config.schemes.cli import DAMOS_CLI_OPTIONS, schemes_from_cli, schemes_from_cli_words, split_cli_words
from damon_bpf.config.schemes.from_json import load_schemes, scheme_from_json, schemes_from_json
from damon_bpf.config.schemes.matching import pattern_never_matches, schemes_never_matching
from damon_bpf.config.schemes.to_json import scheme_to_json, schemes_to_json
from damon_bpf.config.schemes.values import (
    GOAL_TUNERS,
    MIGRATE_ACTIONS,
    age_from_text,
    check_nr_schemes,
    nr_accesses_from_text,
)

__all__ = (
    "DAMOS_CLI_OPTIONS",
    "GOAL_TUNERS",
    "MIGRATE_ACTIONS",
    "split_cli_words",
    "schemes_from_cli",
    "schemes_from_cli_words",
    "scheme_from_json",
    "schemes_from_json",
    "load_schemes",
    "check_nr_schemes",
    "scheme_to_json",
    "schemes_to_json",
    "nr_accesses_from_text",
    "age_from_text",
    "pattern_never_matches",
    "schemes_never_matching",
)
