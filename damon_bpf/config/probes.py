"""damo's data attribute probe options (``--probe_filter``, ``--nr_probe_filters``, ``--probe_weight``), parsed
into :class:`~damon_bpf.engine.probes.Probe` lists.

Grammar (damo 3.4's ``_damon_args.probe_filter_for()``): ``--probe_filter allow|reject [non] TYPE [ARGS]``, once
per filter; ``--nr_probe_filters N...`` says how many of the filters, in order, each probe takes (default: one
probe with every filter); ``--probe_weight W...`` gives the probes' weights (default 0). Types: the kernel's
``anon``, ``memcg PATH``, ``hugepage_size MIN MAX``, and damon-bpf's ``written``, ``file``, ``active``,
``node N`` (:data:`~damon_bpf.engine.probes.USER_FILTER_TYPES`).
"""

from __future__ import annotations

from typing import Sequence

from damon_bpf.config.units import text_to_bytes
from damon_bpf.engine.probes import DAMON_MAX_PROBES, FILTER_TYPES, Probe, ProbeFilter, validate_probes
from damon_bpf.errors import InvalidParamsError

__all__ = ("probe_filter_from_words", "probes_from_options", "PROBE_FILTER_USAGE")

PROBE_FILTER_USAGE = ("allow|reject [non] TYPE [ARGS] (types: anon, file, written, active, memcg PATH, "
                      "hugepage_size MIN MAX, node N)")


def probe_filter_from_words(words: Sequence[str]) -> ProbeFilter:
    """One ``--probe_filter``'s words.

    :raises InvalidParamsError: the words do not follow :data:`PROBE_FILTER_USAGE`
    """
    w = list(words)
    where = f"--probe_filter {' '.join(w)}"
    if len(w) < 2 or w[0] not in ("allow", "reject"):
        raise InvalidParamsError(f"{where}: expected {PROBE_FILTER_USAGE}")
    allow = w[0] == "allow"
    w = w[1:]
    matching = True
    if w and w[0] == "non":
        matching = False
        w = w[1:]
    if not w:
        raise InvalidParamsError(f"{where}: no filter type")
    ftype, args = w[0], w[1:]
    if ftype not in FILTER_TYPES:
        raise InvalidParamsError(f"{where}: unknown type {ftype!r} (one of {', '.join(FILTER_TYPES)})")
    need = {"memcg": 1, "hugepage_size": 2, "node": 1}.get(ftype, 0)
    if len(args) != need:
        raise InvalidParamsError(f"{where}: {ftype} takes {need} argument(s), got {len(args)}")
    f = ProbeFilter(ftype, allow=allow, matching=matching)
    try:
        if ftype == "memcg":
            f.memcg_path = args[0]
        elif ftype == "hugepage_size":
            f.min_sz, f.max_sz = text_to_bytes(args[0]), text_to_bytes(args[1])
        elif ftype == "node":
            f.node = int(args[0])
    except (ValueError, InvalidParamsError) as err:
        raise InvalidParamsError(f"{where}: {err}") from None
    try:
        f.validate()
    except InvalidParamsError as err:
        raise InvalidParamsError(f"{where}: {err}") from None
    return f


def probes_from_options(filters: Sequence[Sequence[str]] | None, nr_filters: Sequence[int] | None = None,
                        weights: Sequence[Sequence[int]] | None = None) -> list[Probe]:
    """The probes of damo's options (each argument as argparse gives it with ``action="append"``).

    :raises InvalidParamsError: counts that do not add up, more than four probes, a bad filter, or a weight
        (attributes-only mode is not implemented)
    """
    fl = [probe_filter_from_words(ws) for ws in (filters or [])]
    counts = list(nr_filters) if nr_filters else ([len(fl)] if fl else [])
    if any(n < 0 for n in counts):
        raise InvalidParamsError("--nr_probe_filters: counts must not be negative")
    if sum(counts) != len(fl):
        raise InvalidParamsError(f"--nr_probe_filters mismatches --probe_filter ({sum(counts)} != {len(fl)})")
    if len(counts) > DAMON_MAX_PROBES:
        raise InvalidParamsError(f"at most {DAMON_MAX_PROBES} probes (--nr_probe_filters gives {len(counts)})")
    ws = [w for group in (weights or []) for w in group]
    if len(ws) > len(counts):
        raise InvalidParamsError(f"--probe_weight mismatches --nr_probe_filters ({len(ws)} > {len(counts)})")
    ws += [0] * (len(counts) - len(ws))
    probes = []
    i = 0
    for n, wt in zip(counts, ws):
        probes.append(Probe(filters=fl[i:i + n], weight=wt))
        i += n
    validate_probes(probes)
    return probes
