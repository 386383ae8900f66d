"""DAMOS schemes from damo's ``--damos_*`` command-line options (damo's ``_damon_args.damos_options_to_schemes()``).

Each ``--damos_action`` starts a scheme, and the ``--damos_*`` options after it apply to that scheme. As in damo, a
``--damos_quotas`` without a reset interval never resets its charge window (``max``), its unset weights are 0, and
quota goals need a reset interval. See docs/schemes.md for the full grammar."""

from __future__ import annotations

from typing import Iterable, Sequence

from damon_bpf.config.schemes.values import (
    MIGRATE_ACTIONS,
    _ACTIONS,
    _FILTER_TYPES,
    _MEMCG_METRICS,
    _NID_METRICS,
    _NO_ARG_FILTERS,
    _action,
    _addr,
    _bytes,
    _err,
    _filter_type,
    _goal_metric,
    _goal_value,
    _int,
    _permil,
    _set_pattern_bounds,
    _time_ms,
    _time_us,
    _tuner,
    _validate,
    _wmark_metric,
    check_nr_schemes,
)
from damon_bpf.config.units import U64_MAX
from damon_bpf.engine.damos import (
    Action,
    Filter,
    FilterType,
    QuotaGoal,
    QuotaGoalMetric,
    Scheme,
    Watermarks,
    WmarkMetric,
)
from damon_bpf.engine.model import Attrs
from damon_bpf.errors import InvalidParamsError


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
