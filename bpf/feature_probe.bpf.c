// SPDX-License-Identifier: GPL-2.0
/*
 * feature_probe.bpf.c - one-shot programs behind `damon-bpf features`.
 *
 * BCC C dialect: compiled at run time by damon_bpf.probes (bcc's BPF(src_file=...)).
 * BPF_HASH() and map.increment() are bcc macros; bcc rewrites ctx->addr into the
 * context load the verifier checks. Function names avoid bcc's auto-attach prefixes
 * (tracepoint__, raw_tracepoint__), so nothing is attached until Python asks.
 *
 * Parameters, set with -D by damon_bpf (never edited into this text):
 *   TARGET_TGID   only events of this process (tgid) are recorded
 *   MAX_ENTRIES   capacity of each hash map
 *
 * Programs:
 *   on_page_fault_user      tracepoint exceptions:page_fault_user (attached via tracefs)
 *   on_page_fault_user_raw  raw tracepoint page_fault_user (BPF_RAW_TRACEPOINT_OPEN,
 *                           needs no tracefs)
 *   on_page_fault_perf      perf event PERF_TYPE_SOFTWARE / PERF_COUNT_SW_PAGE_FAULTS
 *
 * Maps:
 *   tp_addrs    BPF_HASH  key: u64 faulting user address (tracepoint field "address",
 *                         raw tracepoint args[0]); value: u64 number of events
 *   perf_addrs  BPF_HASH  key: u64 ctx->addr of struct bpf_perf_event_data (the
 *                         faulting address); value: u64 number of samples
 */
#include <uapi/linux/bpf_perf_event.h>

#ifndef TARGET_TGID
#error "TARGET_TGID must be set by damon_bpf.probes"
#endif
#ifndef MAX_ENTRIES
#error "MAX_ENTRIES must be set by damon_bpf.probes"
#endif

BPF_HASH(tp_addrs, u64, u64, MAX_ENTRIES);
BPF_HASH(perf_addrs, u64, u64, MAX_ENTRIES);

/*
 * Record of exceptions:page_fault_user, as in
 * /sys/kernel/tracing/events/exceptions/page_fault_user/format (TRACE_EVENT in
 * arch/x86/include/asm/trace/exceptions.h). Spelled out instead of bcc's
 * TRACEPOINT_PROBE() so that compiling needs no tracefs and bcc does not
 * auto-attach; damon_bpf.features checks the "address" offset in the format
 * file before attaching.
 */
struct page_fault_user_args {
	u64 common;		/* common_type, _flags, _preempt_count, _pid */
	unsigned long address;
	unsigned long ip;
	unsigned long error_code;
};

static __always_inline int is_target(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == TARGET_TGID;
}

int on_page_fault_user(struct page_fault_user_args *args)
{
	u64 addr;

	if (!is_target())
		return 0;
	addr = args->address;
	tp_addrs.increment(addr);
	return 0;
}

/*
 * Raw tracepoint arguments are the TP_PROTO of page_fault_user:
 * (unsigned long address, struct pt_regs *regs, unsigned long error_code).
 */
int on_page_fault_user_raw(struct bpf_raw_tracepoint_args *ctx)
{
	u64 addr;

	if (!is_target())
		return 0;
	addr = ctx->args[0];
	tp_addrs.increment(addr);
	return 0;
}

int on_page_fault_perf(struct bpf_perf_event_data *ctx)
{
	u64 addr;

	if (!is_target())
		return 0;
	addr = ctx->addr;
	perf_addrs.increment(addr);
	return 0;	/* 0: nothing goes to the (unused) perf ring buffer */
}
