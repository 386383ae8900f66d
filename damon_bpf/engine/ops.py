"""The operations-set contract between the monitoring core and its backends.

Mirrors ``struct damon_operations`` (``include/linux/damon.h``) and the ops registry of ``mm/damon/core.c``
(``damon_register_ops()``, ``damon_select_ops()``). The core never imports a backend; it calls these hooks:

- ``init(ctx)``: once, when the kdamond starts; builds the initial regions (vaddr).
- ``update(ctx)``: every ``ops_update_interval``; refreshes the target ranges (vaddr).
- ``prepare_access_checks(ctx)``: every sample, before the sleep; chooses ``sampling_addr`` and clears the
  accessed state (pull sources), or marks the start of a collection window (push sources).
- ``check_accesses(ctx, nr_samples)``: after the sleep; updates ``nr_accesses`` of each region through
  :func:`damon_bpf.engine.core.update_regions_access_rate` and returns the maximum
  ``nr_accesses``. ``nr_samples`` is the number of sampling intervals since ``prepare_access_checks``: always 1
  unless the ops set declares ``batched = True``, in which case the core sleeps straight to the next boundary
  (aggregation, DAMOS apply, ops update, tuning) and the ops account every sampling interval in between at
  once. Event sources whose evidence carries timestamps (BPF maps, perf samples) are batched; this is what
  keeps user-space cost per aggregation independent of the sampling rate.
- ``get_scheme_score(ctx, target, region, scheme) -> 0..99``: DAMOS quota prioritisation.
- ``apply_scheme(ctx, target, region, scheme) -> bytes applied``: apply a DAMOS action (or a tuple of the
  bytes applied and the bytes that passed the ops-layer filters, the kernel's ``sz_filter_passed``).
- ``target_valid(target)``: false once the target is gone; the kdamond stops when no target is valid.
- ``cleanup(ctx)``: always called when the kdamond ends (``kdamond_fn``'s ``done:`` path).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from damon_bpf.errors import InvalidParamsError

if TYPE_CHECKING:
    from damon_bpf.engine.model import Ctx, Region, Target

__all__ = (
    "DAMOS_MAX_SCORE",
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


@runtime_checkable
class Operations(Protocol):
    """``struct damon_operations``; see the module docstring for when each hook runs."""

    name: str
    batched: bool
    supported_actions: frozenset[str]

    def check_supported(self) -> None: ...
    def init(self, ctx: Ctx) -> None: ...
    def update(self, ctx: Ctx) -> None: ...
    def prepare_access_checks(self, ctx: Ctx) -> None: ...
    def check_accesses(self, ctx: Ctx, nr_samples: int = 1) -> int: ...
    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Any) -> int: ...
    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Any) -> int | tuple[int, int]: ...
    def target_valid(self, target: Target) -> bool: ...
    def cleanup(self, ctx: Ctx) -> None: ...


class BaseOperations:
    """No-op defaults for every hook, so backends override only what they implement (the kernel's NULL
    callbacks). ``apply_scheme`` returns 0 for every action, as vaddr does for actions it does not support."""

    name: str = "base"
    batched: bool = False
    supported_actions: frozenset[str] = frozenset()

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

    def get_scheme_score(self, ctx: Ctx, target: Target, region: Region, scheme: Any) -> int:
        return DAMOS_MAX_SCORE

    def apply_scheme(self, ctx: Ctx, target: Target, region: Region, scheme: Any) -> int | tuple[int, int]:
        """Bytes applied, or ``(bytes applied, bytes that passed the ops-layer filters)``."""
        return 0

    def target_valid(self, target: Target) -> bool:
        return True

    def cleanup(self, ctx: Ctx) -> None:
        pass


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
