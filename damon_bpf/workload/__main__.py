"""``python -m damon_bpf.workload``: nothing interesting here, see :mod:`damon_bpf.workload.cli`."""

from __future__ import annotations

import sys

from damon_bpf.workload.cli import main

sys.exit(main())
