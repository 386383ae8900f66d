// SPDX-License-Identifier: GPL-2.0
/*
 * perf_sample.bpf.c - perf samples with a data address (PERF_SAMPLE_ADDR: Intel PEBS
 * mem-loads/mem-stores, AMD IBS op, software page faults), aggregated per DAMON region.
 *
 * BCC C dialect. Programs (attached to per-CPU perf events by damon_bpf.probes.access):
 *   on_sample_read   samples of loads (or of events that do not tell)
 *   on_sample_write  samples of stores
 * Samples without a data address (addr 0) are counted as AGG_NO_REGION.
 *
 * Maps and parameters: see access_agg_types.h; the shared logic: access_agg.h.
 */
#include <uapi/linux/bpf_perf_event.h>
#include <uapi/linux/ptrace.h>

#include "access_agg_types.h"

/* The maps of access_agg_types.h and their accessors (bcc rewrites map accesses only here). */
BPF_F_TABLE("array", u32, struct agg_config, agg_config, 1, AGG_MMAPABLE);
BPF_HASH(agg_targets, u32, u32, MAX_TARGETS);
BPF_F_TABLE("array", u32, struct agg_region, agg_regions, AGG_SLOTS, AGG_MMAPABLE);
BPF_F_TABLE("array", u32, struct agg_span, agg_spans, 2 * MAX_TARGETS, AGG_MMAPABLE);
BPF_F_TABLE("array", u32, struct agg_counter, agg_counters, MAX_CPUS * AGG_SLOTS, AGG_MMAPABLE);
BPF_F_TABLE("array", u32, struct agg_pcpu, agg_pcpu, MAX_CPUS, AGG_MMAPABLE);
#if IP_ENTRIES > 0
BPF_HASH(agg_ips, struct agg_ip_key, u64, IP_ENTRIES);
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

#include "access_agg.h"

static __always_inline int on_sample(struct bpf_perf_event_data *ctx, int is_write)
{
	if (!ctx->addr) {
		struct agg_pcpu *pc = agg_pcpu_get(bpf_get_smp_processor_id());

		if (pc)
			pc->stats[AGG_NO_REGION]++;
		return 0;
	}
	return agg_account(ctx->addr, PT_REGS_IP(&ctx->regs), is_write);
}

int on_sample_read(struct bpf_perf_event_data *ctx)
{
	return on_sample(ctx, 0);
}

int on_sample_write(struct bpf_perf_event_data *ctx)
{
	return on_sample(ctx, 1);
}
