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

See docs/schemes.md for the unit rules and the full option grammar.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

from damon_bpf.config import limits
from damon_bpf.engine.damos import (
    UINT_MAX,
    AccessPattern,
    Action,
    Filter,
    FilterType,
    Quota,
    QuotaGoal,
    QuotaGoalMetric,
    Scheme,
    Watermarks,
    WmarkMetric,
    access_pct_to_nr_accesses,
    age_us_to_aggr_intervals,
    format_pct,
)
from damon_bpf.engine.model import Attrs, Ctx
from damon_bpf.errors import InvalidParamsError
from damon_bpf.config.units import U64_MAX, format_bytes, text_to_bytes, text_to_ms, text_to_permil, text_to_us

__all__ = (
    "DAMOS_CLI_OPTIONS",
    "MIGRATE_ACTIONS",
    "split_cli_words",
    "schemes_from_cli",
    "schemes_from_cli_words",
    "scheme_from_json",
    "schemes_from_json",
    "load_schemes",
    "scheme_to_json",
    "schemes_to_json",
    "nr_accesses_from_text",
    "age_from_text",
    "pattern_never_matches",
    "schemes_never_matching",
)

#: The ``--damos_*`` options :func:`schemes_from_cli` understands, with the number of words each takes
#: (``None``: a variable number, checked by the parser).
DAMOS_CLI_OPTIONS: dict[str, int | None] = {
    "damos_action": None,
    "damos_access_rate": 2,
    "damos_sz_region": 2,
    "damos_age": 2,
    "damos_apply_interval": 1,
    "damos_quotas": None,
    "damos_quota_time": 1,
    "damos_quota_space": 1,
    "damos_quota_interval": 1,
    "damos_quota_weights": 3,
    "damos_quota_goal": None,
    "damos_quota_goal_tuner": 1,
    "damos_wmarks": 5,
    "damos_filter": None,
    "damos_max_nr_snapshots": 1,
}

MIGRATE_ACTIONS = frozenset({Action.MIGRATE_HOT, Action.MIGRATE_COLD})
GOAL_TUNERS = ("consist", "temporal")
_ACTIONS = ", ".join(a.value for a in Action)
_FILTER_TYPES = ", ".join(t.value for t in FilterType)
_GOAL_METRICS = ", ".join(m.value for m in QuotaGoalMetric)
_NO_ARG_FILTERS = frozenset({FilterType.ANON, FilterType.YOUNG, FilterType.ACTIVE, FilterType.UNMAPPED})
_NID_METRICS = frozenset({QuotaGoalMetric.NODE_MEM_USED_BP, QuotaGoalMetric.NODE_MEM_FREE_BP,
                          QuotaGoalMetric.NODE_ELIGIBLE_MEM_BP})
_MEMCG_METRICS = frozenset({QuotaGoalMetric.NODE_MEMCG_USED_BP, QuotaGoalMetric.NODE_MEMCG_FREE_BP})
_TIME_METRICS = frozenset({QuotaGoalMetric.SOME_MEM_PSI_US, QuotaGoalMetric.TASK_MEM_STALL_US})


# ================================================================================================ values

def _err(where: str, err: Exception | str) -> InvalidParamsError:
    return InvalidParamsError(f"{where}: {err}")


def _parsed(parse: Callable[[Any], int], v: Any, where: str, cap: int = U64_MAX) -> int:
    # one damo value through its parser, with the field's name in the error and no negative values
    try:
        n = parse(_scalar(v, where))
    except InvalidParamsError as err:
        raise _err(where, err) from None
    if n < 0:
        raise _err(where, f"must not be negative: {v!r}")
    return min(n, cap)


def _bytes(v: Any, where: str) -> int:
    return _parsed(text_to_bytes, v, where)


def _addr(v: Any, where: str) -> int:
    # an address: hexadecimal (0x7f00...) or any size form
    if isinstance(v, str) and v.strip().lower().startswith("0x"):
        try:
            return int(v.strip().replace(",", ""), 16)
        except ValueError:
            raise _err(where, f"invalid address {v!r}") from None
    return _bytes(v, where)


def _time_us(v: Any, where: str) -> int:
    return _parsed(text_to_us, v, where)


def _time_ms(v: Any, where: str) -> int:
    return _parsed(text_to_ms, v, where)


def _permil(v: Any, where: str) -> int:
    return _parsed(text_to_permil, v, where)


def _bp(v: Any, where: str) -> int:
    # basis points: "40%" is 4000, "4000 bp" and a bare 4000 too
    s = _scalar(v, where)
    if isinstance(s, (int, float)):
        n = int(s)
    else:
        t = s.replace(",", "").strip()
        try:
            if t.endswith("%"):
                n = int(Fraction(t[:-1].strip()) * 100)
            elif t.endswith("bp"):
                n = int(Fraction(t[:-2].strip()))
            else:
                n = int(Fraction(t))
        except (ValueError, ZeroDivisionError):
            raise _err(where, f"invalid ratio {s!r} (e.g. 40%, 4000bp or 4000)") from None
    if n < 0:
        raise _err(where, f"must not be negative: {v!r}")
    return n


def _int(v: Any, where: str, *, minimum: int = 0) -> int:
    s = _scalar(v, where)
    try:
        n = int(s) if isinstance(s, int) else int(str(s).replace(",", "").strip())
    except ValueError:
        raise _err(where, f"not an integer: {s!r}") from None
    if n < minimum:
        raise _err(where, f"must be at least {minimum}: {s!r}")
    return n


def _scalar(v: Any, where: str) -> str | int | float:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise _err(where, f"expected a number or a string, not {v!r}")
    return v


def _percent(v: Any, where: str) -> Fraction:
    s = _scalar(v, where)
    if isinstance(s, (int, float)):
        p = Fraction(s)
    else:
        t = s.replace(",", "").strip()
        if t.endswith("%"):
            t = t[:-1].strip()
        try:
            p = Fraction(t)
        except (ValueError, ZeroDivisionError):
            raise _err(where, f"invalid percentage {s!r} (e.g. 5%, 12.5 %)") from None
    if p < 0:
        raise _err(where, f"must not be negative: {s!r}")
    return p


def _unit_count(v: Any, unit: str) -> int | None:
    # "12 samples" / "3 aggr_intervals" -> 12 / 3; None when v is not in that form
    if not isinstance(v, str):
        return None
    parts = v.replace(",", "").split()
    if len(parts) == 2 and parts[1] == unit:
        try:
            return int(parts[0])
        except ValueError:
            return None
    return None


def _nr_bound(v: Any, attrs: Attrs, where: str) -> tuple[int, Fraction | None]:
    # (samples for attrs, the percentage when given as one)
    n = _unit_count(v, "samples")
    if n is not None:
        if n < 0:
            raise _err(where, f"must not be negative: {v!r}")
        return min(n, UINT_MAX), None
    if isinstance(v, str) and v.strip().lower() in ("min", "max"):
        return (0 if v.strip().lower() == "min" else UINT_MAX), None
    pct = _percent(v, where)
    return access_pct_to_nr_accesses(pct, attrs), pct


def _age_bound(v: Any, attrs: Attrs, where: str) -> tuple[int, int | None]:
    # (aggregation intervals for attrs, the time in µs when given as one; a time of 2**64-1 µs is damo's max)
    n = _unit_count(v, "aggr_intervals")
    if n is not None:
        if n < 0:
            raise _err(where, f"must not be negative: {v!r}")
        return min(n, UINT_MAX), None
    if isinstance(v, str) and v.strip().lower() in ("min", "max"):
        return (0 if v.strip().lower() == "min" else UINT_MAX), None
    us = _time_us(v, where)
    return age_us_to_aggr_intervals(us, attrs), (us if us < U64_MAX else None)


def nr_accesses_from_text(v: Any, attrs: Attrs, where: str = "nr_accesses") -> int:
    """An ``nr_accesses`` bound in sampling intervals: ``"N samples"``, a percentage of ``attrs``'
    ``max_nr_accesses`` (``"5 %"``, ``5``: damo's ``int(percent * max / 100)``), ``min`` or ``max``.

    :raises InvalidParamsError: not one of those forms (the message starts with *where*)
    """
    return _nr_bound(v, attrs, where)[0]


def age_from_text(v: Any, attrs: Attrs, where: str = "age") -> int:
    """An age bound in aggregation intervals: ``"N aggr_intervals"``, a time (µs when bare; damo's
    ``int(us / aggr_us)``), ``min`` or ``max``.

    :raises InvalidParamsError: not one of those forms (the message starts with *where*)
    """
    return _age_bound(v, attrs, where)[0]


def _set_pattern_bounds(p: AccessPattern, kind: str, lo: Any, hi: Any, attrs: Attrs, where: str,
                        sep: str = " ") -> None:
    # one pair of bounds in the kernel's units for attrs, and, for a time or a percentage, in the unit given
    # (AccessPattern.rebase converts those again when the intervals change)
    wlo, whi = f"{where}{sep}min", f"{where}{sep}max"
    if kind == "sz":
        a, b = _bytes(lo, wlo), _bytes(hi, whi)
        p.min_sz_bytes, p.max_sz_bytes = a, b
    elif kind == "nr":
        (a, a_pct), (b, b_pct) = _nr_bound(lo, attrs, wlo), _nr_bound(hi, attrs, whi)
        p.min_nr_accesses, p.max_nr_accesses = a, b
        p.min_nr_accesses_pct, p.max_nr_accesses_pct = a_pct, b_pct
    else:
        (a, a_us), (b, b_us) = _age_bound(lo, attrs, wlo), _age_bound(hi, attrs, whi)
        p.min_age_region, p.max_age_region = a, b
        p.min_age_us, p.max_age_us = a_us, b_us
    if a > b:
        raise _err(where, f"minimum {lo!r} is larger than maximum {hi!r}")


def _action(word: Any, where: str) -> Action:
    try:
        return Action(str(word).strip().lower())
    except ValueError:
        raise _err(where, f"unknown action {word!r} (choose {_ACTIONS})") from None


def _goal_metric(word: Any, where: str) -> QuotaGoalMetric:
    try:
        return QuotaGoalMetric(str(word))
    except ValueError:
        raise _err(where, f"unknown quota goal metric {word!r} (choose {_GOAL_METRICS})") from None


def _goal_value(metric: QuotaGoalMetric, v: Any, where: str) -> int:
    if metric in _TIME_METRICS:
        return _time_us(v, where)
    if metric is QuotaGoalMetric.USER_INPUT:
        return _int(v, where)
    return _bp(v, where)


def _wmark_metric(word: Any, where: str) -> WmarkMetric:
    try:
        return WmarkMetric(str(word))
    except ValueError:
        raise _err(where, f"unknown watermarks metric {word!r} (choose "
                          f"{', '.join(m.value for m in WmarkMetric)})") from None


def _tuner(word: Any, where: str) -> str:
    if word not in GOAL_TUNERS:
        raise _err(where, f"unknown quota goal tuner {word!r} (choose {', '.join(GOAL_TUNERS)})")
    return str(word)


def _check_count(nr: int, limit: int, what: str, where: str) -> None:
    if nr > limit:
        raise _err(where, f"{nr} {what}: at most {limit} are taken per scheme")


def _validate(s: Scheme, where: str) -> Scheme:
    _check_count(len(s.filters), limits.MAX_SCHEME_FILTERS, "filters", where)
    _check_count(len(s.quota.goals), limits.MAX_QUOTA_GOALS, "quota goals", where)
    for f in s.filters:
        if f.type is FilterType.ADDR and f.addr_start >= f.addr_end:
            raise _err(where, f"addr filter: start {f.addr_start:#x} is not below end {f.addr_end:#x}")
        if f.type is FilterType.HUGEPAGE_SIZE and f.sz_min > f.sz_max:
            raise _err(where, "hugepage_size filter: minimum is larger than maximum")
        if f.type is FilterType.MEMCG and not f.memcg_path:
            raise _err(where, "memcg filter: no memcg path")
    try:
        s.validate()
    except InvalidParamsError as err:
        raise _err(where, err) from None
    return s


# ================================================================================================ command line

def split_cli_words(words: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group a flat word list (``["--damos_action", "stat", "--damos_age", "1s", "max"]``) into
    ``(option, values)`` pairs, each option starting at a word that begins with ``--damos_``.

    :raises InvalidParamsError: the list does not start with a ``--damos_*`` option
    """
    groups: list[tuple[str, list[str]]] = []
    for w in words:
        if w.startswith("--damos_") or w.startswith("--damos-"):
            groups.append((w, []))
        elif not groups:
            raise InvalidParamsError(f"expected a --damos_* option, got {w!r}")
        else:
            groups[-1][1].append(w)
    return groups


def _option_name(opt: str) -> str:
    name = opt.lstrip("-").replace("-", "_")
    if name not in DAMOS_CLI_OPTIONS:
        raise InvalidParamsError(f"unknown DAMOS option --{name} (known: "
                                 f"{', '.join('--' + o for o in DAMOS_CLI_OPTIONS)})")
    return name


class _Building:
    """A scheme being assembled from its options, with what damo checks across options."""

    def __init__(self, idx: int, action: Action, nid: int) -> None:
        self.idx = idx
        self.scheme = Scheme(action=action, target_nid=nid)
        self.seen: set[str] = set()
        self.quotas_form: str | None = None  # "quotas" or "separate"
        self.reset_given = False
        self.weights_given = False


def schemes_from_cli(groups: Iterable[tuple[str, Sequence[str]]], attrs: Attrs) -> list[Scheme]:
    """Schemes from ``--damos_*`` options in command-line order: ``(option, values)`` pairs such as
    ``("--damos_access_rate", ["0%", "0%"])`` (the leading dashes are optional). Every ``--damos_action`` starts
    a scheme; the other options apply to the latest one. See the module docstring for the grammar.

    :param attrs: the monitoring attributes the percentages and ages are converted with at the start (bounds
        given as a percentage or a time are converted again when the intervals change)
    :raises InvalidParamsError: an option before any ``--damos_action``, a wrong number of values, or a bad
        value; the message names the option and the scheme
    """
    built: list[_Building] = []
    for opt, values in groups:
        name = _option_name(opt)
        vals = [str(v) for v in values]
        where = f"--{name}"
        if name == "damos_action":
            check_nr_schemes(len(built) + 1)
            built.append(_cli_action(vals, len(built), where))
            continue
        if not built:
            raise InvalidParamsError(f"--{name} is given before any --damos_action: each --damos_action starts a "
                                     f"scheme and the --damos_* options after it apply to that scheme")
        b = built[-1]
        where = f"--{name} (scheme {b.idx})"
        nargs = DAMOS_CLI_OPTIONS[name]
        if nargs is not None and len(vals) != nargs:
            raise _err(where, f"expected {nargs} value{'s' if nargs > 1 else ''}, got {len(vals)}: "
                              f"{' '.join(vals) or '(none)'}")
        repeatable = name in ("damos_quota_goal", "damos_filter")
        if not repeatable and name in b.seen:
            raise _err(where, "given twice for the same scheme")
        b.seen.add(name)
        _cli_apply(b, name, vals, attrs, where)
    out = []
    for b in built:
        q = b.scheme.quota
        if q.goals and not b.reset_given:
            raise InvalidParamsError(f"--damos_quota_goal (scheme {b.idx}): quota goals need a reset interval: give "
                                     f"it as the third value of --damos_quotas or with --damos_quota_interval")
        if b.quotas_form == "separate" and not b.reset_given:
            q.reset_interval_ms = U64_MAX
        if b.quotas_form == "separate" and not b.weights_given:
            # damo's separate quota options default the weights to 1 each
            q.weight_sz = q.weight_nr_accesses = q.weight_age = 1
        out.append(_validate(b.scheme, f"scheme {b.idx} ({b.scheme.action.value})"))
    return out


def schemes_from_cli_words(words: Sequence[str], attrs: Attrs) -> list[Scheme]:
    """:func:`schemes_from_cli` on a flat word list (``"--damos_action pageout --damos_age 30s max".split()``).

    :raises InvalidParamsError: see :func:`schemes_from_cli`
    """
    return schemes_from_cli(split_cli_words(words), attrs)


def _cli_action(vals: list[str], idx: int, where: str) -> _Building:
    if not vals:
        raise _err(where, f"no action given (choose {_ACTIONS})")
    action = _action(vals[0], where)
    nid = 0
    if action in MIGRATE_ACTIONS:
        if len(vals) != 2:
            raise _err(where, f"{action.value} needs a target node id: --damos_action {action.value} NID")
        nid = _int(vals[1], f"{where} {action.value} node id")
    elif len(vals) > 1:
        extra = " ".join(vals[1:])
        raise _err(where, f"{action.value} takes no further value, got {extra!r} (only migrate_hot and "
                          f"migrate_cold take a node id; put PIDs before the options)")
    return _Building(idx, action, nid)


def _cli_apply(b: _Building, name: str, vals: list[str], attrs: Attrs, where: str) -> None:
    s = b.scheme
    q = s.quota
    p = s.pattern
    if name == "damos_access_rate":
        _set_pattern_bounds(p, "nr", vals[0], vals[1], attrs, where)
    elif name == "damos_sz_region":
        _set_pattern_bounds(p, "sz", vals[0], vals[1], attrs, where)
    elif name == "damos_age":
        _set_pattern_bounds(p, "age", vals[0], vals[1], attrs, where)
    elif name == "damos_apply_interval":
        s.apply_interval_us = _time_us(vals[0], where)
    elif name == "damos_quotas":
        if b.quotas_form == "separate":
            raise _err(where, "cannot be combined with --damos_quota_time/_space/_interval/_weights")
        b.quotas_form = "quotas"
        if not 1 <= len(vals) <= 6:
            raise _err(where, f"expected TIME_MS [SIZE [RESET_MS [W_SZ [W_ACC [W_AGE]]]]] (1 to 6 values), "
                              f"got {len(vals)}: {' '.join(vals) or '(none)'}")
        q.ms = _time_ms(vals[0], f"{where} time")
        q.sz = _bytes(vals[1], f"{where} size") if len(vals) > 1 else 0
        q.reset_interval_ms = _time_ms(vals[2], f"{where} reset interval") if len(vals) > 2 else U64_MAX
        b.reset_given = len(vals) > 2
        # damo: weights not given are 0
        q.weight_sz = _permil(vals[3], f"{where} size weight") if len(vals) > 3 else 0
        q.weight_nr_accesses = _permil(vals[4], f"{where} access rate weight") if len(vals) > 4 else 0
        q.weight_age = _permil(vals[5], f"{where} age weight") if len(vals) > 5 else 0
    elif name in ("damos_quota_time", "damos_quota_space", "damos_quota_interval", "damos_quota_weights"):
        if b.quotas_form == "quotas":
            raise _err(where, "cannot be combined with --damos_quotas")
        b.quotas_form = "separate"
        if name == "damos_quota_time":
            q.ms = _time_ms(vals[0], where)
        elif name == "damos_quota_space":
            q.sz = _bytes(vals[0], where)
        elif name == "damos_quota_interval":
            q.reset_interval_ms = _time_ms(vals[0], where)
            b.reset_given = True
        else:
            q.weight_sz = _permil(vals[0], f"{where} size weight")
            q.weight_nr_accesses = _permil(vals[1], f"{where} access rate weight")
            q.weight_age = _permil(vals[2], f"{where} age weight")
            b.weights_given = True
    elif name == "damos_quota_goal":
        q.goals.append(_cli_goal(vals, where))
    elif name == "damos_quota_goal_tuner":
        q.goal_tuner = _tuner(vals[0], where)
    elif name == "damos_wmarks":
        metric = _wmark_metric(vals[0], where)
        s.wmarks = Watermarks(metric=metric, interval_us=_time_us(vals[1], f"{where} interval"),
                              high=_permil(vals[2], f"{where} high"), mid=_permil(vals[3], f"{where} mid"),
                              low=_permil(vals[4], f"{where} low"))
        if metric is not WmarkMetric.NONE and not (s.wmarks.low <= s.wmarks.mid <= s.wmarks.high):
            raise _err(where, f"watermarks must satisfy LOW <= MID <= HIGH, got high {s.wmarks.high} mid "
                              f"{s.wmarks.mid} low {s.wmarks.low} (permil)")
    elif name == "damos_filter":
        s.filters.extend(_cli_filters(vals, where))
    elif name == "damos_max_nr_snapshots":
        s.max_nr_snapshots = _int(vals[0], where)


def _cli_goal(vals: list[str], where: str) -> QuotaGoal:
    if len(vals) < 2:
        raise _err(where, f"expected METRIC VALUE [NID|MEMCG_PATH], got {' '.join(vals) or '(none)'}")
    metric = _goal_metric(vals[0], where)
    goal = QuotaGoal(metric=metric, target_value=_goal_value(metric, vals[1], f"{where} {metric.value} value"))
    extra = vals[2:]
    if metric is QuotaGoalMetric.USER_INPUT:
        if len(extra) > 1:
            raise _err(where, "user_input takes VALUE [CURRENT_VALUE]")
        if extra:
            goal.current_value = _int(extra[0], f"{where} user_input current value")
    elif metric in _NID_METRICS:
        if len(extra) > 1:
            raise _err(where, f"{metric.value} takes VALUE [NID]")
        if extra:
            goal.nid = _int(extra[0], f"{where} {metric.value} node id")
    elif metric in _MEMCG_METRICS:
        if not extra or len(extra) > 2:
            raise _err(where, f"{metric.value} takes VALUE MEMCG_PATH [NID] (or VALUE NID MEMCG_PATH)")
        for w in extra:
            if w.isdigit():
                goal.nid = int(w)
            elif goal.memcg_path is None:
                goal.memcg_path = w
            else:
                raise _err(where, f"{metric.value}: two memcg paths given")
        if goal.memcg_path is None:
            raise _err(where, f"{metric.value} needs a memcg path")
    elif extra:
        raise _err(where, f"{metric.value} takes only VALUE, got extra {' '.join(extra)!r}")
    if goal.target_value <= 0:
        raise _err(where, f"{metric.value}: the target value must be positive")
    return goal


_FILTER_USAGE = ("expected allow|reject [none] TYPE [ARGS] (types: anon, active, young, unmapped, memcg PATH, "
                 "addr START END, target IDX, hugepage_size MIN MAX, probe_hits_wsum MIN MAX), or the old form "
                 "TYPE matching|nomatching [ARGS] [allow|reject]")


def _filter_type(word: str) -> FilterType | None:
    try:
        return FilterType(word)
    except ValueError:
        return None


def _cli_filters(vals: list[str], where: str) -> list[Filter]:
    if not vals:
        raise _err(where, _FILTER_USAGE)
    if vals[0] in ("allow", "reject"):
        out = []
        words = list(vals)
        while words:
            f, used = _cli_filter_v2(words, where)
            out.append(f)
            words = words[used:]
        return out
    if _filter_type(vals[0]) is not None:
        return [_cli_filter_v1(vals, where)]
    raise _err(where, f"{vals[0]!r} is neither allow/reject nor a filter type; {_FILTER_USAGE}")


def _cli_filter_v2(words: list[str], where: str) -> tuple[Filter, int]:
    # allow|reject [none] TYPE [ARGS]; returns the filter and the words it used
    if words[0] not in ("allow", "reject"):
        raise _err(where, f"expected allow or reject, got {words[0]!r}; {_FILTER_USAGE}")
    allow = words[0] == "allow"
    i = 1
    matching = True
    if i < len(words) and words[i] == "none":
        matching = False
        i += 1
    if i >= len(words):
        raise _err(where, f"no filter type after {' '.join(words[:i])!r}; {_FILTER_USAGE}")
    ftype = _filter_type(words[i])
    if ftype is None:
        raise _err(where, f"unknown filter type {words[i]!r} (choose {_FILTER_TYPES})")
    i += 1
    f, used = _filter_args(ftype, words[i:], where)
    f.matching, f.allow = matching, allow
    return f, i + used


def _cli_filter_v1(words: list[str], where: str) -> Filter:
    # TYPE matching|nomatching [ARGS] [allow|reject|pass|block]; damo's default is reject
    ftype = _filter_type(words[0])
    assert ftype is not None
    if len(words) < 2 or words[1] not in ("matching", "nomatching"):
        raise _err(where, f"old form: {words[0]} must be followed by matching or nomatching; {_FILTER_USAGE}")
    rest = list(words[2:])
    allow = False
    if rest and rest[-1] in ("allow", "pass", "reject", "block"):
        allow = rest.pop() in ("allow", "pass")
    f, used = _filter_args(ftype, rest, where)
    if used != len(rest):
        raise _err(where, f"unexpected {' '.join(rest[used:])!r} after the {ftype.value} filter")
    f.matching, f.allow = words[1] == "matching", allow
    return f


def _filter_args(ftype: FilterType, args: list[str], where: str) -> tuple[Filter, int]:
    w = f"{where} {ftype.value}"
    if ftype in _NO_ARG_FILTERS:
        return Filter(type=ftype), 0
    if ftype is FilterType.MEMCG:
        if not args:
            raise _err(w, "no memcg path given (memcg PATH)")
        return Filter(type=ftype, memcg_path=args[0]), 1
    if ftype is FilterType.TARGET:
        if not args:
            raise _err(w, "no target index given (target IDX)")
        return Filter(type=ftype, target_idx=_int(args[0], f"{w} index")), 1
    if ftype is FilterType.PROBE_HITS_WSUM:
        if len(args) < 2:
            raise _err(w, "needs two values (probe_hits_wsum MIN MAX)")
        lo, hi = _int(args[0], f"{w} min"), _int(args[1], f"{w} max")
        if not 0 <= lo <= hi:
            raise _err(w, f"need 0 <= MIN <= MAX (got {args[0]!r} {args[1]!r})")
        return Filter(type=ftype, wsum_min=lo, wsum_max=hi), 2
    if len(args) < 2:
        usage = "addr START END" if ftype is FilterType.ADDR else "hugepage_size MIN MAX"
        raise _err(w, f"needs two values ({usage})")
    if ftype is FilterType.ADDR:
        lo, hi = _addr(args[0], f"{w} start"), _addr(args[1], f"{w} end")
        if lo >= hi:
            raise _err(w, f"start {args[0]!r} is not below end {args[1]!r}")
        return Filter(type=ftype, addr_start=lo, addr_end=hi), 2
    lo, hi = _bytes(args[0], f"{w} min"), _bytes(args[1], f"{w} max")
    if lo > hi:
        raise _err(w, f"minimum {args[0]!r} is larger than maximum {args[1]!r}")
    return Filter(type=ftype, sz_min=lo, sz_max=hi), 2


# ================================================================================================ JSON

def _get(d: Mapping[str, Any], key: str, default: Any, where: str, kind: type | tuple[type, ...] = object) -> Any:
    v = d.get(key, default)
    if v is None:
        return default
    if not isinstance(v, kind):
        raise _err(f"{where}.{key}", f"expected {_kind_name(kind)}, not {type(v).__name__}")
    return v


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if kind is dict:
        return "an object"
    if kind is list:
        return "a list"
    if kind is bool:
        return "true or false"
    return "a value"


def _minmax(d: Mapping[str, Any], key: str, where: str) -> tuple[Any, Any]:
    m = _get(d, key, {}, where, dict)
    return m.get("min", "min"), m.get("max", "max")


def scheme_from_json(d: Mapping[str, Any], attrs: Attrs, where: str = "scheme") -> Scheme:
    """One scheme from damo's JSON shape (``damo args damon``); fields left out take damo's defaults, unknown fields
    and output-only ones (``stats``, ``effective_sz_bytes``) are ignored.

    :param attrs: the monitoring attributes the percentages and ages are converted with at the start (bounds
        given as a percentage or a time are converted again when the intervals change)
    :raises InvalidParamsError: a missing action or a bad field; the message names the field
    """
    if not isinstance(d, Mapping):
        raise _err(where, f"a scheme must be an object, not {type(d).__name__}")
    if "action" not in d:
        raise _err(where, f"no \"action\" (choose {_ACTIONS})")
    action = _action(d["action"], f"{where}.action")
    s = Scheme(action=action)
    ap = _get(d, "access_pattern", {}, where, dict)
    w = f"{where}.access_pattern"
    p = s.pattern
    _set_pattern_bounds(p, "sz", *_minmax(ap, "sz_bytes", w), attrs, f"{w}.sz_bytes", ".")
    _set_pattern_bounds(p, "nr", *_minmax(ap, "nr_accesses", w), attrs, f"{w}.nr_accesses", ".")
    _set_pattern_bounds(p, "age", *_minmax(ap, "age", w), attrs, f"{w}.age", ".")
    s.apply_interval_us = _time_us(_get(d, "apply_interval_us", 0, where), f"{where}.apply_interval_us")
    # target node: "target_nid" (older damo, our to_dict) or the first of "dests" (damo 2.x/3.x)
    dests = _get(d, "dests", [], where, list)
    if "target_nid" in d and d["target_nid"] is not None:
        s.target_nid = _int(d["target_nid"], f"{where}.target_nid")
    elif dests:
        first = dests[0]
        nid = first.get("id", first.get("nid")) if isinstance(first, Mapping) else first
        s.target_nid = _int(nid, f"{where}.dests[0].id")
    s.max_nr_snapshots = _int(_get(d, "max_nr_snapshots", 0, where), f"{where}.max_nr_snapshots")
    qd = _get(d, "quotas", None, where, dict)
    if qd is not None:
        s.quota = _quota_from_json(qd, f"{where}.quotas")
    wd = _get(d, "watermarks", None, where, dict)
    if wd is not None:
        ww = f"{where}.watermarks"
        s.wmarks = Watermarks(metric=_wmark_metric(wd.get("metric", "none"), f"{ww}.metric"),
                              interval_us=_time_us(_get(wd, "interval_us", 0, ww), f"{ww}.interval_us"),
                              high=_permil(_get(wd, "high_permil", 0, ww), f"{ww}.high_permil"),
                              mid=_permil(_get(wd, "mid_permil", 0, ww), f"{ww}.mid_permil"),
                              low=_permil(_get(wd, "low_permil", 0, ww), f"{ww}.low_permil"))
    filters = _get(d, "filters", [], where, list)
    _check_count(len(filters), limits.MAX_SCHEME_FILTERS, "filters", f"{where}.filters")
    for i, fd in enumerate(filters):
        s.filters.append(_filter_from_json(fd, f"{where}.filters[{i}]"))
    return _validate(s, where)


def _quota_from_json(qd: Mapping[str, Any], w: str) -> Quota:
    wts = _get(qd, "weights", {}, w, dict)
    q = Quota(ms=_time_ms(_get(qd, "time_ms", 0, w), f"{w}.time_ms"),
              sz=_bytes(_get(qd, "sz_bytes", 0, w), f"{w}.sz_bytes"),
              reset_interval_ms=_time_ms(_get(qd, "reset_interval_ms", "max", w), f"{w}.reset_interval_ms"),
              goal_tuner=_tuner(_get(qd, "goal_tuner", "consist", w), f"{w}.goal_tuner"),
              weight_sz=_permil(_get(wts, "sz_permil", 0, f"{w}.weights"), f"{w}.weights.sz_permil"),
              weight_nr_accesses=_permil(_get(wts, "nr_accesses_permil", 0, f"{w}.weights"),
                                         f"{w}.weights.nr_accesses_permil"),
              weight_age=_permil(_get(wts, "age_permil", 0, f"{w}.weights"), f"{w}.weights.age_permil"),
              fail_charge_num=_int(_get(qd, "fail_charge_num", 0, w), f"{w}.fail_charge_num"),
              fail_charge_denom=_int(_get(qd, "fail_charge_denom", 0, w), f"{w}.fail_charge_denom"))
    goals = _get(qd, "goals", [], w, list)
    _check_count(len(goals), limits.MAX_QUOTA_GOALS, "quota goals", f"{w}.goals")
    for i, gd in enumerate(goals):
        gw = f"{w}.goals[{i}]"
        if not isinstance(gd, Mapping):
            raise _err(gw, "a quota goal must be an object")
        if "target_value_bp" in gd:  # damo's old naming
            metric = QuotaGoalMetric.USER_INPUT
            target, current = gd["target_value_bp"], gd.get("current_value_bp", 0)
        else:
            metric = _goal_metric(gd.get("metric", "user_input"), f"{gw}.metric")
            if "target_value" not in gd:
                raise _err(gw, "no \"target_value\"")
            target, current = gd["target_value"], gd.get("current_value", 0)
        g = QuotaGoal(metric=metric, target_value=_goal_value(metric, target, f"{gw}.target_value"),
                      current_value=_goal_value(metric, current if current is not None else 0,
                                                f"{gw}.current_value"),
                      nid=_int(_get(gd, "nid", 0, gw), f"{gw}.nid"),
                      memcg_path=_get(gd, "memcg_path", None, gw, str))
        if g.target_value <= 0:
            raise _err(f"{gw}.target_value", "must be positive")
        q.goals.append(g)
    return q


def _filter_from_json(fd: Any, w: str) -> Filter:
    if not isinstance(fd, Mapping):
        raise _err(w, "a filter must be an object")
    tname = fd.get("filter_type", fd.get("type"))
    ftype = _filter_type(str(tname)) if tname is not None else None
    if ftype is None:
        raise _err(f"{w}.filter_type", f"unknown filter type {tname!r} (choose {_FILTER_TYPES})")
    f = Filter(type=ftype, matching=_get(fd, "matching", True, w, bool))
    if "allow" in fd:
        f.allow = _get(fd, "allow", False, w, bool)
    elif "pass" in fd:  # damo 2.x
        f.allow = _get(fd, "pass", False, w, bool)
    if ftype is FilterType.MEMCG:
        f.memcg_path = _get(fd, "memcg_path", None, w, str)
    elif ftype is FilterType.ADDR:
        ar = _get(fd, "address_range", None, w, dict)
        if ar is None:
            raise _err(f"{w}.address_range", "an addr filter needs {\"start\", \"end\"}")
        f.addr_start = _addr(ar.get("start"), f"{w}.address_range.start")
        f.addr_end = _addr(ar.get("end"), f"{w}.address_range.end")
    elif ftype is FilterType.TARGET:
        f.target_idx = _int(fd.get("damon_target_idx"), f"{w}.damon_target_idx")
    elif ftype is FilterType.HUGEPAGE_SIZE:
        hs = _get(fd, "hugepage_size", None, w, dict)
        if hs is None:
            raise _err(f"{w}.hugepage_size", "a hugepage_size filter needs {\"min\", \"max\"}")
        f.sz_min = _bytes(hs.get("min", 0), f"{w}.hugepage_size.min")
        f.sz_max = _bytes(hs.get("max", "max"), f"{w}.hugepage_size.max")
    elif ftype is FilterType.PROBE_HITS_WSUM:
        rg = fd.get("probe_hits_wsum_range")
        if not isinstance(rg, list) or len(rg) != 2:
            raise _err(f"{w}.probe_hits_wsum_range", "a probe_hits_wsum filter needs [MIN, MAX]")
        f.wsum_min = _int(rg[0], f"{w}.probe_hits_wsum_range[0]")
        f.wsum_max = _int(rg[1], f"{w}.probe_hits_wsum_range[1]")
    return f


def _scheme_dicts(obj: Any) -> list[tuple[str, Any]]:
    # every scheme object in a list, a context, a kdamonds file or a single scheme, with its JSON path
    if isinstance(obj, list):
        return [(f"schemes[{i}]", s) for i, s in enumerate(obj)]
    if not isinstance(obj, Mapping):
        raise InvalidParamsError(f"expected a list of schemes or a {{\"kdamonds\": [...]}} object, not "
                                 f"{type(obj).__name__}")
    if "kdamonds" in obj:
        out = []
        kds = obj["kdamonds"]
        if not isinstance(kds, list):
            raise _err("kdamonds", "expected a list")
        for ki, kd in enumerate(kds):
            ctxs = kd.get("contexts", []) if isinstance(kd, Mapping) else None
            if not isinstance(ctxs, list):
                raise _err(f"kdamonds[{ki}].contexts", "expected a list")
            for ci, c in enumerate(ctxs):
                scs = c.get("schemes", []) if isinstance(c, Mapping) else None
                if not isinstance(scs, list):
                    raise _err(f"kdamonds[{ki}].contexts[{ci}].schemes", "expected a list")
                out += [(f"kdamonds[{ki}].contexts[{ci}].schemes[{i}]", s) for i, s in enumerate(scs)]
        return out
    if "schemes" in obj:
        scs = obj["schemes"]
        if not isinstance(scs, list):
            raise _err("schemes", "expected a list")
        return [(f"schemes[{i}]", s) for i, s in enumerate(scs)]
    if "action" in obj:
        return [("scheme", obj)]
    raise InvalidParamsError("expected a list of schemes, a {\"kdamonds\": [...]} object, a context with "
                             "\"schemes\", or one scheme with \"action\"")


def schemes_from_json(obj: Any, attrs: Attrs) -> list[Scheme]:
    """Schemes from parsed JSON in any of damo's shapes: a list of schemes, a full ``{"kdamonds": [{"contexts":
    [{"schemes": [...]}]}]}`` file (every context's schemes, in order), a context object with ``"schemes"``,
    or one scheme object. A string is parsed as JSON text first (at most
    :data:`~damon_bpf.config.limits.MAX_JSON_DEPTH` deep).

    :raises InvalidParamsError: not JSON, an unexpected shape, more than
        :data:`~damon_bpf.config.limits.MAX_SCHEMES` schemes, or a bad field (named with its JSON path)
    """
    if isinstance(obj, (str, bytes)):
        try:
            obj = limits.json_loads(obj, "JSON text")
        except InvalidParamsError as err:
            raise InvalidParamsError(str(err).removeprefix("JSON text: ")) from None
    dicts = _scheme_dicts(obj)
    check_nr_schemes(len(dicts))
    return [scheme_from_json(d, attrs, where) for where, d in dicts]


def check_nr_schemes(nr: int) -> None:
    """Refuse more than :data:`~damon_bpf.config.limits.MAX_SCHEMES` schemes.

    :raises InvalidParamsError: too many
    """
    if nr > limits.MAX_SCHEMES:
        raise InvalidParamsError(f"{nr} schemes: at most {limits.MAX_SCHEMES} are taken")


def load_schemes(file_or_json: str, attrs: Attrs) -> list[Scheme]:
    """damo's ``-c/--schemes`` argument: the path of a JSON file, or JSON text (see :func:`schemes_from_json`).
    A file must be a regular file of at most :data:`~damon_bpf.config.limits.MAX_CONFIG_BYTES`, in UTF-8.

    :raises InvalidParamsError: the file cannot be read, or its content is not valid
    """
    text: str | bytes = file_or_json
    src = "JSON text"
    if os.path.lexists(file_or_json):
        src = file_or_json
        data = limits.read_regular(file_or_json, limits.MAX_CONFIG_BYTES, "--schemes file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParamsError(f"{src}: not UTF-8 text (a JSON file is expected)") from None
    elif not file_or_json.lstrip().startswith(("[", "{")):
        raise InvalidParamsError(f"{file_or_json!r} is neither a file nor JSON text")
    elif len(file_or_json) > limits.MAX_CONFIG_BYTES:
        raise InvalidParamsError(f"JSON text: longer than {limits.describe_size(limits.MAX_CONFIG_BYTES)}")
    try:
        return schemes_from_json(text, attrs)
    except InvalidParamsError as err:
        raise InvalidParamsError(f"{src}: {err}") from None


# -- output ---------------------------------------------------------------------------------------------------

_BYTE_UNITS = (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
               ("KiB", 1 << 10))
_US_UNITS = (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000))


def _fmt_exact(n: int, units: tuple[tuple[str, int], ...], base: str) -> str:
    # exact: the largest unit that divides n, so the text parses back to n
    if n >= U64_MAX:
        return "max"
    for unit, size in units:
        if n and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} {base}"


def _fmt_bytes(n: int) -> str:
    return _fmt_exact(n, _BYTE_UNITS, "B")


def _fmt_us(us: int) -> str:
    return _fmt_exact(us, _US_UNITS, "us")


def _fmt_ms(ms: int) -> str:
    return "max" if ms >= U64_MAX else _fmt_us(ms * 1000)


def _fmt_nr_accesses(n: int, pct: Fraction | None) -> str:
    # in the unit given: a percentage, or samples
    if pct is not None:
        return format_pct(pct)
    return "max" if n >= UINT_MAX else f"{n} samples"


def _fmt_age(n: int, us: int | None) -> str:
    # in the unit given: a time, or aggregation intervals
    if us is not None:
        return _fmt_us(us)
    return "max" if n >= UINT_MAX else f"{n} aggr_intervals"


def scheme_to_json(s: Scheme, attrs: Attrs) -> dict[str, Any]:
    """*s* in damo's JSON shape with human units (``"30 s"``, ``"5 %"``, ``"128 MiB"``), written so that
    :func:`scheme_from_json` gives the same scheme back. Ages and access rates keep the unit they were given in
    (a time or ``"N aggr_intervals"``, a percentage or ``"N samples"``), so they mean the same after the read
    whatever the intervals; *attrs* is no longer needed for them."""
    p, q, w = s.pattern, s.quota, s.wmarks
    out: dict[str, Any] = {
        "action": s.action.value,
        "target_nid": s.target_nid,
        "access_pattern": {
            "sz_bytes": {"min": _fmt_bytes(p.min_sz_bytes), "max": _fmt_bytes(p.max_sz_bytes)},
            "nr_accesses": {"min": _fmt_nr_accesses(p.min_nr_accesses, p.min_nr_accesses_pct),
                            "max": _fmt_nr_accesses(p.max_nr_accesses, p.max_nr_accesses_pct)},
            "age": {"min": _fmt_age(p.min_age_region, p.min_age_us),
                    "max": _fmt_age(p.max_age_region, p.max_age_us)},
        },
        "apply_interval_us": _fmt_us(s.apply_interval_us),
        "quotas": {
            "time_ms": _fmt_ms(q.ms), "sz_bytes": _fmt_bytes(q.sz), "reset_interval_ms": _fmt_ms(q.reset_interval_ms),
            "goals": [{"metric": g.metric.value, "target_value": g.target_value, "current_value": g.current_value,
                       "nid": g.nid, "memcg_path": g.memcg_path} for g in q.goals],
            "goal_tuner": q.goal_tuner,
            "effective_sz_bytes": _fmt_bytes(q.esz),
            "weights": {"sz_permil": q.weight_sz, "nr_accesses_permil": q.weight_nr_accesses,
                        "age_permil": q.weight_age},
        },
        "watermarks": {"metric": w.metric.value, "interval_us": _fmt_us(w.interval_us), "high_permil": w.high,
                       "mid_permil": w.mid, "low_permil": w.low},
        "filters": [f.to_dict() for f in s.filters],
        "max_nr_snapshots": s.max_nr_snapshots,
    }
    if q.fail_charge_num or q.fail_charge_denom:
        out["quotas"]["fail_charge_num"] = q.fail_charge_num
        out["quotas"]["fail_charge_denom"] = q.fail_charge_denom
    return out


def schemes_to_json(schemes: Sequence[Scheme], attrs: Attrs, *, kdamonds: bool = False) -> Any:
    """*schemes* in damo's JSON shape (see :func:`scheme_to_json`): a list, or with *kdamonds* a full
    ``{"kdamonds": [{"contexts": [{"schemes": [...]}]}]}`` object."""
    lst = [scheme_to_json(s, attrs) for s in schemes]
    if kdamonds:
        return {"kdamonds": [{"contexts": [{"schemes": lst}]}]}
    return lst


# -- schemes that cannot match ---------------------------------------------------------------------------------

def pattern_never_matches(s: Scheme, attrs: Attrs, *, duration_us: int | None = None,
                          sz_monitored: int = 0) -> list[str]:
    """Why *s*'s access pattern can match no region in a session with *attrs* (after
    :meth:`~damon_bpf.engine.damos.AccessPattern.rebase` for them), each reason a short phrase; empty when it may
    match. Checked: a minimum age given as a time longer than the session's *duration_us*; a minimum access rate
    above the ``max_nr_accesses`` of *attrs*; a minimum above its maximum once converted; a minimum region size
    above the *sz_monitored* bytes all targets span (0: unknown, not checked).
    """
    p = s.pattern
    why: list[str] = []
    if duration_us is not None and p.min_age_us is not None and p.min_age_us > duration_us:
        why.append(f"its minimum age {_fmt_us(p.min_age_us)} is longer than the {_fmt_us(duration_us)} run")
    mx = attrs.max_nr_accesses
    nr_min = _fmt_nr_accesses(p.min_nr_accesses, p.min_nr_accesses_pct)
    if p.min_nr_accesses > mx:
        conv = "" if p.min_nr_accesses_pct is None else f" ({p.min_nr_accesses} samples)"
        why.append(f"its minimum access rate {nr_min}{conv} is above the {mx} samples an aggregation interval "
                   f"has")
    elif p.min_nr_accesses > p.max_nr_accesses:
        why.append(f"its minimum access rate {nr_min} ({p.min_nr_accesses} samples) is above its maximum "
                   f"{_fmt_nr_accesses(p.max_nr_accesses, p.max_nr_accesses_pct)} ({p.max_nr_accesses} samples)")
    if p.min_age_region > p.max_age_region:
        why.append(f"its minimum age {_fmt_age(p.min_age_region, p.min_age_us)} ({p.min_age_region} aggregation "
                   f"intervals) is above its maximum {_fmt_age(p.max_age_region, p.max_age_us)} "
                   f"({p.max_age_region})")
    if p.min_sz_bytes > p.max_sz_bytes:
        why.append(f"its minimum region size {_fmt_bytes(p.min_sz_bytes)} is above its maximum "
                   f"{_fmt_bytes(p.max_sz_bytes)}")
    elif sz_monitored and p.min_sz_bytes > sz_monitored:
        why.append(f"its minimum region size {_fmt_bytes(p.min_sz_bytes)} is larger than the "
                   f"{format_bytes(sz_monitored)} monitored")
    return why


def schemes_never_matching(ctx: Ctx, duration_us: int | None = None) -> list[str]:
    """One line for each scheme of *ctx* whose access pattern can match no region in this session (see
    :func:`pattern_never_matches`; the size monitored is the targets' regions as they are now), e.g.
    ``scheme 0 (pageout) can never match: its minimum age 5 s is longer than the 3 s run``. Call it once the
    context is initialised (``Kdamond.init()``: the regions are set and the bounds converted for ``ctx.attrs``).

    :param duration_us: how long the session runs; None: until stopped
    """
    sz = sum(t.ra.sz_total() for t in ctx.targets)
    out = []
    for i, s in enumerate(ctx.schemes):
        why = pattern_never_matches(s, ctx.attrs, duration_us=duration_us, sz_monitored=sz)
        if why:
            out.append(f"scheme {i} ({s.action.value}) can never match: {'; '.join(why)}")
    return out
