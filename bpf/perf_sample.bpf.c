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
 * Maps and parameters: see access_agg_types.h; the maps: access_agg_maps.bpf.h; the shared
 * logic: access_agg.h.
 */
#include <uapi/linux/bpf_perf_event.h>
#include <uapi/linux/ptrace.h>

#include "access_agg_types.h"
#include "access_agg_maps.bpf.h"	/* spliced in by the loader: see that header */
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
