/* SPDX-License-Identifier: GPL-2.0 */
/*
 * access_agg_types.h - structs and parameters of the in-kernel aggregation (access_agg.h).
 *
 * BCC C dialect. Shared by pagefault.bpf.c and perf_sample.bpf.c; the maps are declared in
 * access_agg_maps.bpf.h. damon_bpf.probes.access mirrors each struct with ctypes
 * (tests/unit/test_bpf_sources.py compares the two).
 *
 * Map layout (the arrays are BPF_F_MMAPABLE: user space reads and writes them in place,
 * with no system call; "per CPU" arrays are plain arrays with one block of slots per CPU,
 * key cpu * slots + slot, so each CPU writes only its own block, as with a per-CPU map):
 *   agg_config    ARRAY[1]        struct agg_config: window start | generation, sample ns
 *   agg_targets   HASH[T]         u32 tgid -> u32 target index (all threads of a process)
 *   agg_regions   ARRAY[2*R]      struct agg_region {start, end}: the region tables of all
 *                                 targets, slot gen * R + span.off + i, sorted per target
 *   agg_spans     ARRAY[2*T]      struct agg_span {off, nr} of (gen * T + target)
 *   agg_counters  ARRAY[C*2*R]    per CPU, struct agg_counter, same slots as agg_regions:
 *                                 events, writes, bitmap of sampling intervals hit
 *   agg_pcpu      ARRAY[C]        per CPU, struct agg_pcpu: u64 counters (enum agg_stat) and
 *                                 the token bucket of the rate limit (one lookup per event)
 *   agg_ips       HASH[IP_ENTRIES] struct agg_ip_key {slot, ip} -> u64 events
 *   agg_threads   HASH[THREAD_ENTRIES] struct agg_thread_key {slot, tid} -> u64 events (per-thread
 *                                 attribution; per-CPU attribution needs no map: agg_counters has one
 *                                 block per CPU)
 *
 * User space (damon_bpf.probes.access) writes the next region table into the idle
 * generation, then publishes it together with the new window start in one 8-byte
 * store of agg_config.gen_start, so a program never reads a half-written table: it
 * reads the generation once per event and uses that table and that counter set.
 *
 * Parameters (-D, set by damon_bpf.probes): MAX_TARGETS (T), MAX_REGIONS (R: regions of
 * all targets together, a power of two), SEARCH_STEPS (log2(R) + 1), BITMAP_WORDS (u64
 * words of interval bits, a power of two), MAX_CPUS (C: possible CPUs,
 * bpf_get_smp_processor_id() < C), IP_ENTRIES (0: no attribution), RATE_LIMIT (events per
 * second per CPU, 0: none), RATE_BURST (events), THREAD_ENTRIES (0: no per-thread attribution),
 * WRITES_ONLY (1: events that are not writes are dropped before anything is counted).
 */
#ifndef ACCESS_AGG_TYPES_H
#define ACCESS_AGG_TYPES_H

#ifndef MAX_TARGETS
#error "MAX_TARGETS must be set by damon_bpf.probes"
#endif
#ifndef MAX_REGIONS
#error "MAX_REGIONS must be set by damon_bpf.probes"
#endif
#ifndef SEARCH_STEPS
#error "SEARCH_STEPS must be set by damon_bpf.probes"
#endif
#ifndef BITMAP_WORDS
#error "BITMAP_WORDS must be set by damon_bpf.probes"
#endif
#ifndef MAX_CPUS
#error "MAX_CPUS must be set by damon_bpf.probes"
#endif
#ifndef IP_ENTRIES
#error "IP_ENTRIES must be set by damon_bpf.probes"
#endif
#ifndef RATE_LIMIT
#error "RATE_LIMIT must be set by damon_bpf.probes"
#endif
#ifndef RATE_BURST
#error "RATE_BURST must be set by damon_bpf.probes"
#endif
#ifndef THREAD_ENTRIES
#error "THREAD_ENTRIES must be set by damon_bpf.probes"
#endif
#ifndef WRITES_ONLY
#error "WRITES_ONLY must be set by damon_bpf.probes"
#endif

#define AGG_SLOTS (2 * MAX_REGIONS)
/* BPF_F_MMAPABLE (include/uapi/linux/bpf.h) */
#define AGG_MMAPABLE (1U << 10)
#define AGG_BITS (BITMAP_WORDS * 64)
#define NSEC_PER_SEC 1000000000ULL

struct agg_config {
	u64 gen_start;		/* window start in ns (CLOCK_MONOTONIC), bit 0: generation */
	u64 sample_ns;		/* sampling interval */
};

struct agg_region {
	u64 start;
	u64 end;
};

struct agg_span {
	u32 off;		/* first slot of the target's table within the generation */
	u32 nr;			/* number of regions */
};

struct agg_counter {
	u64 nr_events;
	u64 nr_writes;
	u64 bits[BITMAP_WORDS];	/* bit i: an event in sampling interval i of the window */
};


struct agg_ip_key {
	u32 slot;		/* index into agg_regions / agg_counters */
	u32 pad;
	u64 ip;
};

struct agg_thread_key {
	u32 slot;		/* index into agg_regions / agg_counters */
	u32 tid;		/* the thread (the kernel's pid) */
};

enum agg_stat {
	AGG_EVENTS,		/* events of target processes */
	AGG_COUNTED,		/* events counted into a region */
	AGG_DROP_RATE,		/* dropped by the rate limit */
	AGG_NO_REGION,		/* outside every region of the target */
	AGG_IP_FULL,		/* attribution map full */
	AGG_LATE,		/* after the window's last interval bit (kept in it) */
	AGG_THREAD_FULL,	/* per-thread attribution map full */
	AGG_NR_STATS,
};

struct agg_pcpu {
	u64 stats[AGG_NR_STATS];	/* enum agg_stat */
	u64 tokens;		/* token bucket, in nano-events: one event costs NSEC_PER_SEC */
	u64 last_ns;
};

#endif /* ACCESS_AGG_TYPES_H */
