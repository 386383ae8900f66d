"""What this machine supports, found by feature probing: the table behind ``damon-bpf features``.

Counterpart of damo's ``_damon_features.py`` (a named feature table) and of the kernel's habit of probing for a
capability instead of comparing versions: every check tries the syscall, opens the file or compiles and attaches
the program, and never looks at ``uname -r`` to decide. Names are ``<area>/<feature>``.

The checks are those the sources use, not copies: the ``pmu/*`` rows call
:func:`damon_bpf.probes.perf_events.check_hardware_events`, the decision behind
:func:`~damon_bpf.probes.perf_events.hardware_sampling_status` (``--source auto``, ``--source perf``), and the
``probe/pte_accessed_bit`` row starts with :func:`damon_bpf.probes.pte.check_walk_supported`, the check of
``PteOps.check_supported()``, before it walks the monitor's own pages.

Each check returns a :class:`Feature`; a check never raises (an unexpected exception becomes ``supported=False``
with the exception text as reason). :func:`require` turns a missing feature into the matching
:class:`~damon_bpf.errors.DamonBpfError`.

The file system roots (:data:`PROC_ROOT`, :data:`SYS_ROOT`, :data:`MODULES_ROOT`) are module constants read at
call time, so tests can point them at a fake tree. The checks live in
:mod:`~damon_bpf.probes.features.bpf_checks` (``bpf/*``, ``bcc/*``, ``probe/*``) and
:mod:`~damon_bpf.probes.features.machine_checks` (``pmu/*``, ``numa/*``, ``mm/*``, ``taskstats/*``, ``psi/*``,
``damon/*``, ``perf/*``), in table order; the syscalls themselves are :mod:`damon_bpf.linux.syscalls`.
"""

from __future__ import annotations

from collections.abc import Iterable

# Imported for their @feature registrations, in table order.
from damon_bpf.probes.features import bpf_checks, machine_checks  # noqa: F401
from damon_bpf.errors import InvalidParamsError
from damon_bpf.probes.features.common import CHECKS, CheckPass, Feature, run_check

__all__ = (
    "MODULES_ROOT",
    "PROC_ROOT",
    "SYS_ROOT",
    "Feature",
    "check",
    "check_all",
    "names",
    "require",
)

#: Root of procfs; tests point it at a fake tree.
PROC_ROOT = "/proc"
#: Root of sysfs; tests point it at a fake tree.
SYS_ROOT = "/sys"
#: Where kernel modules and the ``build``/``source`` header links live.
MODULES_ROOT = "/lib/modules"


def names() -> tuple[str, ...]:
    """Names of all features, in table order."""
    return tuple(CHECKS)


def check_all(selected: Iterable[str] | None = None) -> list[Feature]:
    """Run every check (or the *selected* ones, in table order).

    Never raises for a failing check; takes a few seconds because one BPF program is compiled.

    :raises InvalidParamsError: a selected name is unknown.
    """
    wanted = set(CHECKS) if selected is None else set(selected)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise InvalidParamsError(f"unknown feature(s): {', '.join(sorted(unknown))}; known: {', '.join(CHECKS)}")
    check_pass = CheckPass(proc_root=PROC_ROOT, sys_root=SYS_ROOT, modules_root=MODULES_ROOT)
    try:
        return [run_check(name, check_pass) for name in CHECKS if name in wanted]
    finally:
        check_pass.close()


def check(name: str) -> Feature:
    """Run one check.

    :raises InvalidParamsError: *name* is unknown.
    """
    return check_all([name])[0]


def require(name: str) -> Feature:
    """Check *name* and raise unless it is supported.

    :return: the supported feature (its ``detail``).
    :raises MissingDependencyError: a package is missing (bcc, pyroute2, perf).
    :raises PermissionDeniedError: the check needs privileges the caller lacks.
    :raises NotSupportedError: otherwise; the message is the reason.
    """
    feat = check(name)
    if not feat.supported:
        raise feat._error(f"{name}: {feat.reason}")
    return feat
