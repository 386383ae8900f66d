// SPDX-License-Identifier: GPL-2.0
/*
 * pagefault.bpf.c - page faults of the monitored processes, aggregated per DAMON region.
 *
 * BCC C dialect. Programs (attached by damon_bpf.probes.access, in this order of preference):
 *   on_fault_raw   raw tracepoint page_fault_user (x86; needs no tracefs)
 *   on_fault_tp    tracepoint exceptions:page_fault_user (x86; needs tracefs)
 *   on_fault_perf  perf event PERF_TYPE_SOFTWARE/PERF_COUNT_SW_PAGE_FAULTS (any arch)
 * Faults cover first touches, swap-ins and COW, NUMA hinting faults (kernel.numa_balancing)
 * and refaults of pages made non-present on purpose (MADV_PAGEOUT probing).
 *
 * Maps and parameters: see access_agg_types.h; the maps: access_agg_maps.bpf.h; the shared
 * logic: access_agg.h.
 */
#include <uapi/linux/bpf_perf_event.h>
#include <uapi/linux/ptrace.h>

#include "access_agg_types.h"
#include "access_agg_maps.bpf.h"	/* spliced in by the loader: see that header */
#include "access_agg.h"

/* X86_PF_WRITE in the page fault error code (arch/x86/include/asm/trap_pf.h) */
#define PF_WRITE 0x2

/*
 * Raw tracepoint: the arguments are TP_PROTO(unsigned long address, struct pt_regs *regs,
 * unsigned long error_code) of page_fault_user (arch/x86/include/asm/trace/exceptions.h).
 */
int on_fault_raw(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[1];
	u64 ip = 0;

	bpf_probe_read_kernel(&ip, sizeof(ip), &regs->ip);
	return agg_account(ctx->args[0], ip, ctx->args[2] & PF_WRITE);
}

/* The record of exceptions:page_fault_user, as its tracefs format file lays it out. */
struct page_fault_user_args {
	u64 common;
	unsigned long address;
	unsigned long ip;
	unsigned long error_code;
};

int on_fault_tp(struct page_fault_user_args *args)
{
	return agg_account(args->address, args->ip, args->error_code & PF_WRITE);
}

/* Software page-fault perf event: the sample's data address is the faulting address. */
int on_fault_perf(struct bpf_perf_event_data *ctx)
{
	return agg_account(ctx->addr, PT_REGS_IP(&ctx->regs), 0);
}
