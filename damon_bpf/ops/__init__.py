"""The operations sets (access sources) of damon-bpf: the user-space ``mm/damon/{vaddr,paddr}.c`` and friends.

Backends are listed here by name and import path (see "Operations sets" in ``docs/design.md``), and
registered into the engine's registry (:func:`damon_bpf.engine.ops.register_ops`, the kernel's
``damon_register_ops()`` from each ops file's initcall) when this package is imported. A backend module is
imported only when its id is selected (:func:`damon_bpf.engine.ops.select_ops`), so probe code and bcc load
only for the backends that use them.

The access sources among them are listed once, with their descriptors, in :data:`damon_bpf.ops.sources.SOURCES`
(a new source goes there); :data:`BUILTIN_OPS` adds the operations sets that are no source of their own.
"""

from __future__ import annotations

from damon_bpf.engine.ops import is_registered_ops, register_ops, registered_ops, select_ops
from damon_bpf.errors import DamonBpfError
from damon_bpf.ops.sources import SOURCES

__all__ = ("BUILTIN_OPS", "register_builtin_ops", "available_ops")

#: Built-in operations sets: id -> ``"module:attr"`` import path of a factory (the class).
BUILTIN_OPS: dict[str, str] = {
    "vaddr": "damon_bpf.ops.vaddr:VaddrOps",
    "fvaddr": "damon_bpf.ops.vaddr:FvaddrOps",
    **{d.name: d.ops_path for d in SOURCES},
}


def register_builtin_ops() -> None:
    """Register every :data:`BUILTIN_OPS` entry whose id is not registered yet (idempotent)."""
    for ops_id, path in BUILTIN_OPS.items():
        if not is_registered_ops(ops_id):
            register_ops(ops_id, path)


def available_ops(check_supported: bool = False) -> list[str]:
    """The registered operations-set ids, sorted.

    :param check_supported: keep only the ids whose backend can be built with no arguments and whose
        ``check_supported()`` passes on this machine (this imports their modules); a backend that raises any
        :class:`~damon_bpf.errors.DamonBpfError` while being built or checked is left out
    """
    ids = registered_ops()
    if not check_supported:
        return ids
    out = []
    for ops_id in ids:
        try:
            select_ops(ops_id).check_supported()
        except DamonBpfError:
            continue
        out.append(ops_id)
    return out


register_builtin_ops()
