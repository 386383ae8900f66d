/* SPDX-License-Identifier: GPL-2.0 */
/*
 * access_agg_maps.bpf.h - the maps of access_agg_types.h and the accessors access_agg.h calls:
 * the declarations pagefault.bpf.c and perf_sample.bpf.c share.
 *
 * BCC C dialect. Spliced, not included: bcc rewrites map accesses (map.lookup()) only in the
 * main source file, so damon_bpf.probes replaces each line #include "<name>.bpf.h" of a
 * program with the text of that header before bcc compiles it (bpf_source_text() in
 * damon_bpf/probes/_bcc.py). The including file includes access_agg_types.h before, and
 * access_agg.h after this header.
 */
#ifndef ACCESS_AGG_MAPS_BPF_H
#define ACCESS_AGG_MAPS_BPF_H

BPF_F_TABLE("array", u32, struct agg_config, agg_config, 1, AGG_MMAPABLE);
BPF_HASH(agg_targets, u32, u32, MAX_TARGETS);
BPF_F_TABLE("array", u32, struct agg_region, agg_regions, AGG_SLOTS, AGG_MMAPABLE);
BPF_F_TABLE("array", u32, struct agg_span, agg_spans, 2 * MAX_TARGETS, AGG_MMAPABLE);
BPF_F_TABLE("array", u32, struct agg_counter, agg_counters, MAX_CPUS * AGG_SLOTS, AGG_MMAPABLE);
BPF_F_TABLE("array", u32, struct agg_pcpu, agg_pcpu, MAX_CPUS, AGG_MMAPABLE);
#if IP_ENTRIES > 0
BPF_HASH(agg_ips, struct agg_ip_key, u64, IP_ENTRIES);
#endif
#if THREAD_ENTRIES > 0
BPF_HASH(agg_threads, struct agg_thread_key, u64, THREAD_ENTRIES);
#endif

static __always_inline struct agg_pcpu *agg_pcpu_get(u32 cpu) { return agg_pcpu.lookup(&cpu); }
static __always_inline u32 *agg_target_of(u32 tgid) { return agg_targets.lookup(&tgid); }
static __always_inline struct agg_config *agg_config_get(void) { u32 z = 0; return agg_config.lookup(&z); }
static __always_inline struct agg_span *agg_span_at(u32 key) { return agg_spans.lookup(&key); }
static __always_inline struct agg_region *agg_region_at(u32 slot) { return agg_regions.lookup(&slot); }
static __always_inline struct agg_counter *agg_counter_at(u32 cpu, u32 slot)
{
	u32 key = cpu * AGG_SLOTS + slot;

	return agg_counters.lookup(&key);
}
#if IP_ENTRIES > 0
static __always_inline int agg_ip_add(struct agg_ip_key *k)
{
	u64 zero = 0, *v = agg_ips.lookup_or_try_init(k, &zero);

	if (!v)
		return 1;
	(*v)++;
	return 0;
}
#endif
#if THREAD_ENTRIES > 0
static __always_inline int agg_thread_add(struct agg_thread_key *k)
{
	u64 zero = 0, *v = agg_threads.lookup_or_try_init(k, &zero);

	if (!v)
		return 1;
	(*v)++;
	return 0;
}
#endif

#endif /* ACCESS_AGG_MAPS_BPF_H */
