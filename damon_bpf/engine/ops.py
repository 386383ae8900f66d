"""The operations-set contract between the monitoring core and its backends.

Mirrors ``struct damon_operations`` (``include/linux/damon.h``) and the ops registry of ``mm/damon/core.c``
(``damon_register_ops()``, ``damon_select_ops()``). The core never imports a backend; it calls the hooks
``init``, ``update``, ``prepare_access_checks``, ``check_accesses``, ``get_scheme_score``, ``apply_scheme``,
``target_valid`` and ``cleanup``, at the kernel's intervals.

**Batched checks.** ``check_accesses(ctx, nr_samples)`` returns the maximum ``nr_accesses``; ``nr_samples`` is
always 1 unless the ops set declares ``batched = True``, in which case the core sleeps straight to the next
boundary and the ops account every sampling interval in between at once.

**Sampling points.** An ops set with ``observes_samples = True`` (and ``batched``) reads state that accumulates
between its ``prepare_access_checks`` and ``check_accesses`` (PTE Accessed bits): the kdamond calls
``observe(ctx, i)`` after the sampling intervals ``i`` it names (``sample_points()``: every one by default) of a
batched window, and every window starts when
``prepare_access_checks`` returns, so each observation covers full sampling intervals after the preparation.

**Intervals for cost.** ``requested_intervals(ctx)`` lets a source choose the intervals when the attrs allow it
(``Attrs.source_intervals``); ``min_sample_us(ctx)`` is its floor for the kernel's intervals tuner. A source never
writes ``ctx.attrs`` itself.

**Beyond the kernel's**: ``add_target``, ``get_scheme_scores``, ``check_scheme``, ``action_unsupported_reason``
and what a source tells about itself (``attach_point``, ``notes``, ``stats``, ``raw_counts``, ``last_ips``).
Every hook is a member of :class:`Operations`; :class:`BaseOperations` gives each its default, so callers call
hooks directly and "not supported" is explicit.

See docs/engine.md, section "The operations contract", for each hook's contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
import numpy.typing as npt

from damon_bpf.errors import InvalidParamsError, NotSupportedError

if TYPE_CHECKING:
    from damon_bpf.engine.damos import Action, Scheme
    from damon_bpf.engine.model import Ctx, Region, Target

__all__ = (
    "DAMOS_MAX_SCORE",
    "Applied",
    "Operations",
    "BaseOperations",
    "register_ops",
    "unregister_ops",
    "registered_ops",
    "is_registered_ops",
    "select_ops",
)

#: ``DAMOS_MAX_SCORE`` (``include/linux/damon.h``).
DAMOS_MAX_SCORE = 99


class Applied(NamedTuple):
    """What ``apply_scheme`` did to one region: the kernel hook's return value (bytes the action was applied
    to) and its ``sz_filter_passed`` out-parameter (``struct damon_operations``, ``include/linux/damon.h``)."""

    sz_applied: int = 0
    #: bytes of the region that passed the scheme's ops-layer filters (0 when it has none)
    sz_ops_filter_passed: int = 0


@runtime_checkable
class Operations(Protocol):
    """``struct damon_operations``: every hook an operations set has, all of them members. See the module
    docstring for when each runs; :class:`BaseOperations` gives each its "not supported" default."""

    # what the set is and says (read-only here: a class attribute, an instance attribute or a property does)
    @property
    def name(self) -> str: ...
    @property
    def batched(self) -> bool: ...
    @property
    def supported_actions(self) -> frozenset[str]: ...
    @property
    def has_scheme_score(self) -> bool: ...
    @property
    def can_add_targets(self) -> bool: ...
    @property
    def attach_point(self) -> str: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def last_ips(self) -> list[list[tuple[int, int, int, int]]] | None: ...
    @property
    def observes_samples(self) -> bool: ...

    # monitoring (the kernel's hooks)
    def check_supported(self) -> None: ...
    def init(self, ctx: Ctx) -> None: ...
    def update(self, ctx: Ctx) -> None: ...
    def prepare_access_checks(self, ctx: Ctx) -> None: ...
    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int: ...
    def observe(self, ctx: Ctx, nr_passed: int) -> None: ...
    def apply_probes(self, ctx: Ctx, nr_samples: int = 1) -> None: ...
    def sample_points(self, ctx: Ctx, nr_samples: int) -> Sequence[int]: ...
    def requested_intervals(self, ctx: Ctx) -> tuple[int, int] | None: ...
    def min_sample_us(self, ctx: Ctx) -> int: ...
    def working_set_bytes(self, ctx: Ctx, window_us: int) -> tuple[list[int], int]: ...
    def target_valid(self, target: Target) -> bool: ...
    def cleanup(self, ctx: Ctx) -> None: ...
    def add_target(self, ctx: Ctx, pid: int) -> Target: ...
    # DAMOS
    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> int: ...
    def get_scheme_scores(self, ctx: Ctx, target: Target, scheme: Scheme) -> npt.NDArray[np.int64]: ...
    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> Applied: ...
    def check_scheme(self, scheme: Scheme, ctx: Ctx | None = None) -> None: ...
    def action_unsupported_reason(self, action: Action | str | None) -> str: ...
    # what the source tells about itself
    def stats(self) -> dict[str, Any]: ...
    def raw_counts(self, target_idx: int, starts: npt.ArrayLike, ends: npt.ArrayLike) -> Any: ...


class BaseOperations:
    """Every hook with its default, so backends override only what they implement; a default is the kernel's
    NULL callback or an explicit "not supported".

    - ``apply_scheme`` applies nothing (``Applied(0)``) for every action, as vaddr does for actions it does not
      support;
    - ``get_scheme_score`` gives every region ``DAMOS_MAX_SCORE`` and ``get_scheme_scores`` maps it over a
      target; ``has_scheme_score = False`` makes DAMOS skip prioritisation, as a NULL ``get_scheme_score`` does;
    - ``add_target`` raises :class:`~damon_bpf.errors.NotSupportedError` unless ``can_add_targets``;
    - ``stats``, ``notes``, ``last_ips`` and ``raw_counts`` report nothing (empty, None).
    """

    name: str = "base"
    batched: bool = False
    supported_actions: frozenset[str] = frozenset()
    #: the scores mean something: DAMOS builds its quota histogram from them
    has_scheme_score: bool = True
    #: ``add_target()`` works while the kdamond runs (``--follow-children``)
    can_add_targets: bool = False
    #: where the source attaches (a tracepoint, perf events), for the start-up line; "" when it does not
    attach_point: str = ""
    #: lines worth telling the user at start-up (what the source cannot see, settings it changed); a backend
    #: that has some assigns its own list
    notes: Sequence[str] = ()
    #: per target, ``(ip, ...)`` rows of the last window's events; None: the source records no IPs
    last_ips: list[list[tuple[int, int, int, int]]] | None = None
    #: the kdamond calls :meth:`observe` after each sampling interval of a batched window (see the module
    #: docstring); windows start when :meth:`prepare_access_checks` returns
    observes_samples: bool = False

    def check_supported(self) -> None:
        """Raise :class:`~damon_bpf.errors.NotSupportedError` when this machine cannot run the backend."""

    def init(self, ctx: Ctx) -> None:
        pass

    def update(self, ctx: Ctx) -> None:
        pass

    def prepare_access_checks(self, ctx: Ctx) -> None:
        pass

    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int:
        return max((int(t.ra.nr_accesses.max()) for t in ctx.targets if len(t.ra)), default=0)

    def apply_probes(self, ctx: Ctx, nr_samples: int = 1) -> None:
        """7.2's ``apply_probes``: after :meth:`check_accesses` of *nr_samples* sampling intervals, add each
        region's hits of ``ctx.probes`` to its ``probe_hits`` (:mod:`damon_bpf.engine.probes`). Only called when
        the context has probes; a source that cannot look at pages refuses probes in :meth:`check_supported`
        or its setup (the default does nothing)."""

    def observe(self, ctx: Ctx, nr_passed: int) -> None:
        """Look at the targets after *nr_passed* sampling intervals of the current window (only called when
        :attr:`observes_samples`)."""

    def sample_points(self, ctx: Ctx, nr_samples: int) -> Sequence[int]:
        """After which sampling intervals (1..*nr_samples* - 1) of a window of *nr_samples* to :meth:`observe`
        (only asked when :attr:`observes_samples`): every one by default."""
        return range(1, nr_samples)

    def requested_intervals(self, ctx: Ctx) -> tuple[int, int] | None:
        """``(sample_interval_us, aggr_interval_us)`` this source asks for at an aggregation boundary, applied by
        the kdamond when ``ctx.attrs.source_intervals`` allows it; None: keep them."""
        return None

    def min_sample_us(self, ctx: Ctx) -> int:
        """The shortest sampling interval the kernel's intervals tuner may choose for this source's cost (0: no
        bound of its own)."""
        return 0

    def working_set_bytes(self, ctx: Ctx, window_us: int) -> tuple[list[int], int]:
        """Per target, the bytes accessed within the last *window_us*, and the window the estimate covers (µs).

        The default estimates it from the regions' access rates of the aggregation just completed: a region whose
        random page was accessed in ``nr_accesses`` of ``max_nr_accesses`` sampling intervals has a page accessed
        with chance ``p = nr_accesses / max_nr_accesses`` per interval, so within the window with chance
        ``1 - (1 - p) ** (window / sample interval)``. Sources that see more (pte) override it.
        """
        a = ctx.attrs
        mx = max(a.max_nr_accesses, 1)
        k = window_us / a.sample_us_nonzero
        out = []
        for t in ctx.targets:
            ra = t.ra
            if not len(ra):
                out.append(0)
                continue
            p = np.clip(ra.nr_accesses / mx, 0.0, 1.0)
            frac = 1.0 - np.power(1.0 - p, k)
            out.append(int(((ra.end - ra.start) * frac).sum()))
        return out, window_us

    def target_valid(self, target: Target) -> bool:
        return True

    def cleanup(self, ctx: Ctx) -> None:
        pass

    def add_target(self, ctx: Ctx, pid: int) -> Target:
        """Monitor one more process while running; appends it to ``ctx.targets`` and returns it."""
        raise NotSupportedError(f"the {self.name} source cannot add processes while running")

    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> int:
        return DAMOS_MAX_SCORE

    def get_scheme_scores(self, ctx: Ctx, target: Target, scheme: Scheme) -> npt.NDArray[np.int64]:
        """:meth:`get_scheme_score` of every region of *target*, in ``target.ra`` order."""
        return np.array([self.get_scheme_score(ctx, target, r, scheme) for r in target.regions], dtype=np.int64)

    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Scheme) -> Applied:
        """The bytes applied and the bytes that passed the scheme's ops-layer filters (:class:`Applied`)."""
        return Applied(0)

    def check_scheme(self, scheme: Scheme, ctx: Ctx | None = None) -> None:
        """Refuse, before the kdamond starts, a scheme this set cannot apply as asked (raise
        :class:`~damon_bpf.errors.NotSupportedError` with the reason); the default accepts every scheme whose
        action is in :attr:`supported_actions`."""
        action = getattr(getattr(scheme, "action", None), "value", getattr(scheme, "action", None))
        if action not in self.supported_actions:
            raise NotSupportedError(self.action_unsupported_reason(action))

    def action_unsupported_reason(self, action: Action | str | None) -> str:
        """One line saying why DAMOS *action* is not in :attr:`supported_actions`."""
        return f"the {self.name} operations set cannot apply DAMOS action {getattr(action, 'value', action)!r}"

    def stats(self) -> dict[str, Any]:
        """The source's counters (events, drops, costs); empty when it keeps none."""
        return {}

    def raw_counts(self, target_idx: int, starts: npt.ArrayLike, ends: npt.ArrayLike) -> Any:
        """Per region, the source's raw evidence of the last window (events, writes); None: not kept."""
        return None


OpsFactory = Callable[..., Operations]
# name -> factory, or "module:attr" import path resolved on first use (so probe modules load lazily)
_registry: dict[str, OpsFactory | str] = {}


def register_ops(ops_id: str, factory: OpsFactory | str) -> None:
    """``damon_register_ops()``: register a backend factory (or ``"module:Class"`` path) under *ops_id*.

    :raises InvalidParamsError: *ops_id* is already registered (the kernel's ``-EINVAL``)
    """
    if ops_id in _registry:
        raise InvalidParamsError(f"operations set {ops_id!r} is already registered")
    _registry[ops_id] = factory


def unregister_ops(ops_id: str) -> None:
    _registry.pop(ops_id, None)


def is_registered_ops(ops_id: str) -> bool:
    """``damon_is_registered_ops()``."""
    return ops_id in _registry


def registered_ops() -> list[str]:
    return sorted(_registry)


def select_ops(ops_id: str, **kwargs: Any) -> Operations:
    """``damon_select_ops()``: build the backend registered as *ops_id* with *kwargs*.

    :raises InvalidParamsError: unknown *ops_id*
    """
    try:
        factory = _registry[ops_id]
    except KeyError:
        known = ", ".join(registered_ops()) or "none"
        raise InvalidParamsError(f"unknown operations set {ops_id!r} (known: {known})") from None
    if isinstance(factory, str):
        mod_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(mod_name), attr)
        _registry[ops_id] = factory
    assert not isinstance(factory, str)
    return factory(**kwargs)
