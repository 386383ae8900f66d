/* SPDX-License-Identifier: GPL-2.0 */
/*
 * access_agg.h - in-kernel aggregation of memory access events into DAMON regions: the
 * logic shared by pagefault.bpf.c and perf_sample.bpf.c. Maps and parameters are
 * described in access_agg_types.h.
 *
 * BCC C dialect. This header uses the maps through the accessors of access_agg_maps.bpf.h
 * (bcc rewrites map accesses only in the main source file, where the loader splices that
 * header): agg_pcpu_get(cpu), agg_target_of(tgid), agg_config_get(), agg_span_at(key),
 * agg_region_at(slot), agg_counter_at(cpu, slot), agg_ip_add(key), agg_thread_add(key).
 */
#ifndef ACCESS_AGG_H
#define ACCESS_AGG_H

/* Token bucket per CPU: at most RATE_LIMIT events per second, bursts of RATE_BURST. */
static __always_inline int agg_rate_ok(struct agg_pcpu *b, u64 now)
{
#if RATE_LIMIT > 0
	u64 gap, cap = (u64)RATE_BURST * NSEC_PER_SEC;

	gap = now - b->last_ns;
	if (gap > NSEC_PER_SEC)
		gap = NSEC_PER_SEC;
	b->last_ns = now;
	b->tokens += gap * RATE_LIMIT;
	if (b->tokens > cap)
		b->tokens = cap;
	if (b->tokens < NSEC_PER_SEC)
		return 0;
	b->tokens -= NSEC_PER_SEC;
#endif
	return 1;
}

/*
 * Count one access of the current process at user address addr: find the region with a
 * bounded binary search and set the bit of the current sampling interval.
 */
static __always_inline int agg_account(u64 addr, u64 ip, int is_write)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 *tidx = agg_target_of(tgid);
	struct agg_config *cfg;
	struct agg_counter *c;
	struct agg_region *r;
	u64 now, gs, interval;
	struct agg_span *span;
	struct agg_pcpu *pc;
	u32 gen, base, off, lo = 0, hi, key, i, w, cpu;
	int k;

	if (!tidx || *tidx >= MAX_TARGETS)
		return 0;
#if WRITES_ONLY
	/* --writes-only: a read is not an event at all (it costs no rate-limit token either) */
	if (!is_write)
		return 0;
#endif
	cpu = bpf_get_smp_processor_id();
	if (cpu >= MAX_CPUS)
		return 0;
	pc = agg_pcpu_get(cpu);
	if (!pc)
		return 0;
	pc->stats[AGG_EVENTS]++;
	now = bpf_ktime_get_ns();
	if (!agg_rate_ok(pc, now)) {
		pc->stats[AGG_DROP_RATE]++;
		return 0;
	}
	cfg = agg_config_get();
	if (!cfg || !cfg->sample_ns)
		return 0;
	gs = cfg->gen_start;
	gen = gs & 1;
	key = gen * MAX_TARGETS + *tidx;
	span = agg_span_at(key);
	if (!span)
		return 0;
	hi = span->nr;
	if (hi > MAX_REGIONS)
		hi = MAX_REGIONS;
	off = span->off;
	base = gen * MAX_REGIONS + off;
	/*
	 * Branch-free fixed-step binary search: lo ends as the number of regions whose
	 * start <= addr. Each of the SEARCH_STEPS (unrolled) steps reads one slot and adds
	 * its step to lo through arithmetic only (user addresses and counts stay below
	 * 2^63, so the sign bit of a difference is the comparison), so the verifier walks
	 * one path instead of one per outcome. Slots past the target's table are read but
	 * never taken.
	 */
#pragma unroll
	for (k = SEARCH_STEPS - 1; k >= 0; k--) {
		u64 idx = lo + (1ULL << k);
		u64 in_table = 1 ^ (((u64)hi - idx) >> 63);
		u64 below;

		/* steps wider than the target's table cannot be taken: skip their lookups */
		if ((1ULL << k) > hi)
			continue;

		key = gen * MAX_REGIONS + ((off + idx - 1) & (MAX_REGIONS - 1));
		r = agg_region_at(key);
		if (!r)
			return 0;
		below = 1 ^ ((addr - r->start) >> 63);
		lo += (in_table & below) << k;
	}
	if (lo == 0) {
		pc->stats[AGG_NO_REGION]++;
		return 0;
	}
	i = base + lo - 1;
	r = agg_region_at(i);
	if (!r || addr >= r->end) {
		pc->stats[AGG_NO_REGION]++;
		return 0;
	}
	c = agg_counter_at(cpu, i);
	if (!c)
		return 0;
	gs &= ~1ULL;
	interval = now > gs ? (now - gs) / cfg->sample_ns : 0;
	if (interval >= AGG_BITS) {
		interval = AGG_BITS - 1;
		pc->stats[AGG_LATE]++;
	}
	c->nr_events++;
	if (is_write)
		c->nr_writes++;
	/* BITMAP_WORDS is a power of two: the mask gives the verifier the bound */
	w = (interval / 64) & (BITMAP_WORDS - 1);
	c->bits[w] |= 1ULL << (interval % 64);
#if IP_ENTRIES > 0
	{
		struct agg_ip_key ik = { .slot = i, .pad = 0, .ip = ip };

		if (agg_ip_add(&ik))
			pc->stats[AGG_IP_FULL]++;
	}
#endif
#if THREAD_ENTRIES > 0
	{
		/* the lower half of pid_tgid is the thread id */
		struct agg_thread_key tk = { .slot = i, .tid = (u32)bpf_get_current_pid_tgid() };

		if (agg_thread_add(&tk))
			pc->stats[AGG_THREAD_FULL]++;
	}
#endif
	/*
	 * Counted after the attribution entry is in: user space skips draining agg_ips
	 * while AGG_COUNTED has not moved since the last drain began.
	 */
	pc->stats[AGG_COUNTED]++;
	return 0;
}

#endif /* ACCESS_AGG_H */
