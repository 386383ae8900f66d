"""DAMOS schemes from damo's JSON scheme shape (``_damon.Damos.from_kvpairs()``): a list of schemes, one scheme,
or damo's whole ``kdamonds`` configuration; :func:`load_schemes` reads ``--schemes`` (a file or JSON text) within
:mod:`damon_bpf.config.limits`."""

from __future__ import annotations

import os
from typing import Any, Mapping

from damon_bpf.config import limits
from damon_bpf.config.schemes.values import (
    _ACTIONS,
    _FILTER_TYPES,
    _action,
    _addr,
    _bytes,
    _check_count,
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
from damon_bpf.engine.damos import (
    Filter,
    FilterType,
    Quota,
    QuotaGoal,
    QuotaGoalMetric,
    Scheme,
    Watermarks,
)
from damon_bpf.engine.model import Attrs
from damon_bpf.errors import InvalidParamsError


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
