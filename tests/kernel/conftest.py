"""Everything under tests/kernel/ needs root and bcc: mark it ``kernel`` (gated in tests/conftest.py).

Tests marked ``nokernel`` are exempt (pure parsing tests that live next to the kernel tests they belong to).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents and item.get_closest_marker("nokernel") is None:
            item.add_marker(pytest.mark.kernel)
