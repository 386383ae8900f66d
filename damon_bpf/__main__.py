"""``python -m damon_bpf``: nothing interesting here, see :mod:`damon_bpf.cli`."""

import sys

from damon_bpf.cli import main

sys.exit(main())
