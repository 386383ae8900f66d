"""The ctypes mirrors of ``damon_bpf.probes.access`` against the layout clang gives the structs of
``bpf/access_agg_types.h`` when bcc compiles the aggregation programs (root + bcc).

bcc describes each map's key and value type as clang laid it out (``Table.Key``/``Table.Leaf``, built from the
compiled program): their fields, offsets and sizes must be the mirrors'. tests/unit/test_bpf_sources.py compares the
mirrors with the header text, without a kernel.
"""

from __future__ import annotations

import ctypes

import pytest

from damon_bpf.probes.access import AccessProbe, AccessProbeConfig, _agg_structs

# map -> (struct of its value, or of its key for the attribution hash), as access_agg_maps.bpf.h declares them
_MAPS = {
    "agg_config": ("Leaf", "agg_config"),
    "agg_regions": ("Leaf", "agg_region"),
    "agg_spans": ("Leaf", "agg_span"),
    "agg_counters": ("Leaf", "agg_counter"),
    "agg_pcpu": ("Leaf", "agg_pcpu"),
    "agg_ips": ("Key", "agg_ip_key"),
    "agg_threads": ("Key", "agg_thread_key"),
}


def _layout(struct: type[ctypes.Structure]) -> list[tuple[str, int, int]]:
    fields = [(name, getattr(struct, name).offset, getattr(struct, name).size) for name, *_ in struct._fields_]
    return [*fields, ("sizeof", 0, ctypes.sizeof(struct))]


@pytest.mark.parametrize("family, max_intervals", [("pagefault", 64), ("perf_sample", 256)])
def test_mirrors_match_the_compiled_maps(family: str, max_intervals: int) -> None:
    cfg = AccessProbeConfig(family=family, max_targets=2, max_regions=64, max_intervals=max_intervals)
    mirrors = _agg_structs(cfg.bitmap_words)
    with AccessProbe(cfg) as probe:
        for map_name, (side, struct) in _MAPS.items():
            compiled = getattr(probe.bpf[map_name.encode()], side)
            assert compiled.__name__ == struct, map_name
            assert _layout(compiled) == _layout(mirrors[struct]), f"{map_name}: struct {struct}"
