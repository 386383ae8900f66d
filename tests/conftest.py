"""Shared test configuration: the ``kernel`` marker and its gate.

Tests that need root and bcc carry the ``kernel`` marker (everything under ``tests/kernel/`` gets it
automatically) or use the ``kernel`` fixture. Without root or bcc they are skipped, with one cached reason; with
``DAMON_BPF_REQUIRE_KERNEL=1`` (``DAMON_BPF_RUN_KERNEL_TESTS=1`` also works) the skip becomes a failure, so a CI
job that is meant to run them cannot pass by skipping (drgn's ``LinuxKernelTestCase`` pattern).
"""

from __future__ import annotations

import functools
import os
import stat
import sys
from pathlib import Path
from typing import Iterator

import pytest

REQUIRE_KERNEL_ENV = ("DAMON_BPF_REQUIRE_KERNEL", "DAMON_BPF_RUN_KERNEL_TESTS")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kernel: needs root and bcc; skipped otherwise, a failure with DAMON_BPF_REQUIRE_KERNEL=1",
    )
    config.addinivalue_line("markers", "nokernel: under tests/kernel/ but needs neither root nor bcc")


@functools.cache
def kernel_skip_reason() -> str | None:
    """Why kernel tests cannot run here (None: they can). Computed once per session."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    from damon_bpf.errors import MissingDependencyError
    from damon_bpf.probes import load_bcc

    try:
        load_bcc()
    except MissingDependencyError as err:
        return f"kernel tests need bcc: {err}"
    return None


def kernel_required() -> bool:
    return any(os.environ.get(name) == "1" for name in REQUIRE_KERNEL_ENV)


def require_kernel() -> None:
    """Skip the calling test unless root and bcc are available; fail instead when kernel tests are required."""
    reason = kernel_skip_reason()
    if reason is None:
        return
    if kernel_required():
        pytest.fail(f"{reason} (and DAMON_BPF_REQUIRE_KERNEL=1 is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def kernel() -> None:
    """Use in a test to require root and bcc (see :func:`require_kernel`)."""
    require_kernel()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is not None and item.get_closest_marker("nokernel") is None:
        require_kernel()


@pytest.fixture
def nobody_can_reach() -> Iterator[None]:
    """Let another user (``nobody``) walk down to this checkout and its interpreter, for tests that run the CLI
    under that user: a clone in a private folder (``mktemp -d`` makes it 0700) is otherwise out of its reach and
    the exec fails with EACCES. Each folder on the way that others cannot search gets their search bit (o+x: no
    listing) for the test, and its mode back after."""
    here = Path(__file__).resolve().parent.parent
    paths = {here, Path(sys.executable).parent.absolute()}
    changed: list[tuple[Path, int]] = []
    try:
        for p in sorted({d for path in paths for d in (path, *path.parents)}):
            mode = stat.S_IMODE(p.stat().st_mode)
            if not mode & stat.S_IXOTH:
                os.chmod(p, mode | stat.S_IXOTH)
                changed.append((p, mode))
        yield
    finally:
        for p, mode in reversed(changed):
            os.chmod(p, mode)
