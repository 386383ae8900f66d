// SPDX-License-Identifier: GPL-2.0
/*
 * pte.bpf.c - read the Accessed bits of a process's page-table entries: the check half of
 * DAMON's own access check (damon_va_check_accesses() / damon_young_pmd_entry() in
 * mm/damon/vaddr.c), from user space.
 *
 * BCC C dialect. One program, never attached to an event: damon_bpf.probes.pte loads it as
 * BPF_PROG_TYPE_RAW_TRACEPOINT and runs it with BPF_PROG_TEST_RUN, so it runs in the
 * monitor's own thread, only when the monitor asks, and costs nothing to anyone else.
 *
 * Which address space: the monitor holds /proc/<pid>/mem open for each target. Opening it
 * takes a reference on the target's mm_struct (proc_mem_open() -> mmgrab()) and stores the
 * mm in file->private_data (__mem_open() in fs/proc/base.c). The program finds that file in
 * the monitor's own fd table:
 *   current->files->fdt->fd[MEM_FD]->private_data = struct mm_struct *
 * and walks mm->pgd through the direct map (entry & PFN mask, + DIRECT_MAP_BASE), x86-64
 * with 4- or 5-level paging. All struct offsets come from the running kernel's BTF, as -D
 * flags (never from kernel headers, which are from another kernel here).
 *
 * Why reading is safe without the mm's locks: every read is bpf_probe_read_kernel(), which
 * cannot fault the kernel (copy_from_kernel_nofault()), and nothing is written. The mm_struct
 * and its pgd page stay allocated while the fd is open (mm_count). A table below the pgd
 * can be freed by a concurrent munmap()/exit while it is read; the read then returns the
 * stale or reused contents of that page: at worst one wrong sample, counted in no way we can
 * tell, and rare (a table freed in the few hundred ns of a walk). A dead mm (exit, exec:
 * mm_users == 0) is reported to user space, which stops using it.
 *
 * Parameters (-D, set by damon_bpf.probes.pte):
 *   MAX_SLOTS          entries of pte_addrs / pte_out
 *   WALK_BATCH         addresses one run walks (the bounded loop)
 *   PGTABLE_LEVELS     4 or 5
 *   DIRECT_MAP_BASE    PAGE_OFFSET (__PAGE_OFFSET_BASE_L4/L5) when not randomized
 *   DIRECT_MAP_BASE_PTR  address of page_offset_base when the kernel randomizes it, else 0
 *   OFF_TASK_FILES, OFF_FILES_FDT, OFF_FDT_MAX_FDS, OFF_FDT_FD, OFF_FILE_PRIVATE_DATA,
 *   OFF_MM_PGD, OFF_MM_USERS   byte offsets of task_struct.files, files_struct.fdt,
 *                      fdtable.max_fds, fdtable.fd, file.private_data, mm_struct.pgd,
 *                      mm_struct.mm_users (BTF)
 *
 * Two programs:
 *   pte_walk     walks args[1] (<= WALK_BATCH) addresses from slot args[0] in the mm of the
 *                /proc/<pid>/mem fd args[2]; every result goes to pte_out.
 *   pte_observe  the reads of a window (damon_bpf.ops.pte): walks the slots from args[0]
 *                (args[1] of them, <= WALK_BATCH) whose pte_first entry is still 0, each in
 *                the mm of its own fd (pte_fds), and where a present leaf has its Accessed
 *                bit set writes args[2] (the read's number, > 0) to pte_first and the result
 *                to pte_out. A slot whose fd no longer leads to a live mm gets
 *                PTE_R_MM_GONE in pte_out. One run serves every target: no per-read work in
 *                user space but this one call.
 *   pte_walk_slots   walks every slot from args[0] (args[1] of them), each in the mm of its
 *                own fd (pte_fds), and writes every result to pte_out (PTE_R_MM_GONE where
 *                the fd leads to no live mm): the walk that prepares a window, for every
 *                target at once. (A program of its own: one loop that does both would be
 *                too complex for the verifier.)
 *
 * Context (BPF_PROG_TEST_RUN ctx_in, u64 each): as above.
 *
 * Return value (test_run retval): PTE_OK, PTE_NO_FILE (no such fd), PTE_MM_DEAD
 * (mm_users == 0: the target exited or exec()-ed), PTE_READ_FAULT (the fd chain could not
 * be read).
 *
 * Maps:
 *   pte_addrs  array, mmap-able  key: u32 slot; value: u64 user virtual address to check
 *   pte_out    array, mmap-able  key: u32 slot; value: u64 result:
 *                bit 0 PTE_R_PRESENT  a present (or PROT_NONE) leaf maps the address
 *                bit 1 PTE_R_ACCESSED the leaf's Accessed bit (_PAGE_BIT_ACCESSED, 5)
 *                bit 2 PTE_R_DIRTY    the leaf's Dirty bit (_PAGE_BIT_DIRTY, 6)
 *                bits 4-6 level: of the leaf if present (1 PTE, 2 PMD, 3 PUD), else of
 *                         the first non-present entry (1 PTE .. 4 PGD/P4D)
 *                bits 12-51 physical address of the 4 KiB page of the address
 *                bit 3 PTE_R_MM_GONE (pte_observe) the slot's fd leads to no live mm
 *   pte_fds    array, mmap-able  key: u32 slot; value: u64 fd of /proc/<pid>/mem (pte_observe)
 *   pte_first  array, mmap-able  key: u32 slot; value: u64 read that first found it accessed
 *   pte_stats  BPF_ARRAY  key: u32 enum pte_stat; value: u64 counter
 */

#ifndef MAX_SLOTS
#error "MAX_SLOTS must be set by damon_bpf.probes"
#endif
#ifndef WALK_BATCH
#error "WALK_BATCH must be set by damon_bpf.probes"
#endif
#ifndef PGTABLE_LEVELS
#error "PGTABLE_LEVELS must be set by damon_bpf.probes"
#endif
#ifndef DIRECT_MAP_BASE
#error "DIRECT_MAP_BASE must be set by damon_bpf.probes"
#endif
#ifndef DIRECT_MAP_BASE_PTR
#error "DIRECT_MAP_BASE_PTR must be set by damon_bpf.probes"
#endif
#if !defined(OFF_TASK_FILES) || !defined(OFF_FILES_FDT) || !defined(OFF_FDT_MAX_FDS) || \
	!defined(OFF_FDT_FD) || !defined(OFF_FILE_PRIVATE_DATA) || !defined(OFF_MM_PGD) || \
	!defined(OFF_MM_USERS)
#error "the struct offsets (OFF_*) must be set by damon_bpf.probes from BTF"
#endif

enum pte_ret { PTE_OK = 0, PTE_NO_FILE = 1, PTE_MM_DEAD = 2, PTE_READ_FAULT = 3 };

enum pte_stat {
	PTE_ST_RUNS = 0,	/* program runs */
	PTE_ST_WALKS,		/* addresses walked */
	PTE_ST_ACCESSED,	/* ... found with the Accessed bit set */
	PTE_ST_NP_PGD,		/* ... stopped at a non-present PGD/P4D entry */
	PTE_ST_NP_PUD,		/* ... at a non-present PUD entry */
	PTE_ST_NP_PMD,		/* ... at a non-present PMD entry */
	PTE_ST_NP_PTE,		/* ... at a non-present PTE */
	PTE_ST_HUGE,		/* ... mapped by a PMD or PUD leaf */
	PTE_ST_READ_FAULT,	/* table reads that failed */
	PTE_NR_STATS,
};

/* arch/x86/include/asm/pgtable_types.h */
#define _PAGE_PRESENT	(1ULL << 0)
#define _PAGE_PSE	(1ULL << 7)
#define _PAGE_ACCESSED	(1ULL << 5)
#define _PAGE_DIRTY	(1ULL << 6)
#define _PAGE_PROTNONE	(1ULL << 8)	/* leaves only, when _PAGE_PRESENT is clear */
/* PTE_PFN_MASK: physical address bits 12..51 (__PHYSICAL_MASK_SHIFT 52) */
#define PFN_MASK_4K	0x000ffffffffff000ULL
#define PFN_MASK_2M	0x000fffffffe00000ULL	/* bit 12 is PAT in a huge entry */
#define PFN_MASK_1G	0x000fffffc0000000ULL

#define PTE_R_PRESENT	(1ULL << 0)
#define PTE_R_ACCESSED	(1ULL << 1)
#define PTE_R_DIRTY	(1ULL << 2)
#define PTE_R_MM_GONE	(1ULL << 3)
#define PTE_R_LEVEL(l)	((u64)(l) << 4)

/* BPF_F_MMAPABLE (include/uapi/linux/bpf.h): user space reads and writes these two in place */
#define PTE_MAP_MMAPABLE (1U << 10)
BPF_F_TABLE("array", u32, u64, pte_addrs, MAX_SLOTS, PTE_MAP_MMAPABLE);
BPF_F_TABLE("array", u32, u64, pte_out, MAX_SLOTS, PTE_MAP_MMAPABLE);
BPF_F_TABLE("array", u32, u64, pte_fds, MAX_SLOTS, PTE_MAP_MMAPABLE);
BPF_F_TABLE("array", u32, u64, pte_first, MAX_SLOTS, PTE_MAP_MMAPABLE);
BPF_ARRAY(pte_stats, u64, PTE_NR_STATS);

static __always_inline void pte_stat_add(u32 k, u64 n)
{
	u64 *v = pte_stats.lookup(&k);

	if (v)
		__sync_fetch_and_add(v, n);
}

/* One u64 of kernel memory; *err is set when the read faulted. */
static __always_inline u64 rd64(u64 addr, int *err)
{
	u64 v = 0;

	if (bpf_probe_read_kernel(&v, sizeof(v), (void *)addr))
		*err = 1;
	return v;
}

static __always_inline u64 leaf(u64 e, u64 addr, u64 mask, u64 level)
{
	u64 r = PTE_R_PRESENT | PTE_R_LEVEL(level);

	if (e & _PAGE_ACCESSED)
		r |= PTE_R_ACCESSED;
	if (e & _PAGE_DIRTY)
		r |= PTE_R_DIRTY;
	/* the 4 KiB page of addr inside the leaf */
	return r | (((e & mask) + (addr & ~mask & PFN_MASK_4K)) & PFN_MASK_4K);
}

/* Walk one user address of the page tables at pgd (a direct-map pointer). */
static __always_inline u64 walk(u64 pgd, u64 addr, u64 base, int *err)
{
	u64 e, tbl = pgd;

#if PGTABLE_LEVELS == 5
	e = rd64(tbl + ((addr >> 48) & 511) * 8, err);
	if (!(e & _PAGE_PRESENT))
		return PTE_R_LEVEL(4);
	tbl = base + (e & PFN_MASK_4K);
#endif
	/* PGD (4-level) or P4D (5-level): bits 39..47 */
	e = rd64(tbl + ((addr >> 39) & 511) * 8, err);
	if (!(e & _PAGE_PRESENT))
		return PTE_R_LEVEL(4);
	tbl = base + (e & PFN_MASK_4K);
	/* PUD: bits 30..38; PSE: a 1 GiB leaf (hugetlb) */
	e = rd64(tbl + ((addr >> 30) & 511) * 8, err);
	if (!(e & (_PAGE_PRESENT | _PAGE_PROTNONE)))
		return PTE_R_LEVEL(3);
	if (e & _PAGE_PSE)
		return leaf(e, addr, PFN_MASK_1G, 3);
	tbl = base + (e & PFN_MASK_4K);
	/* PMD: bits 21..29; PSE: a 2 MiB leaf (THP, hugetlb) */
	e = rd64(tbl + ((addr >> 21) & 511) * 8, err);
	if (!(e & (_PAGE_PRESENT | _PAGE_PROTNONE)))
		return PTE_R_LEVEL(2);
	if (e & _PAGE_PSE)
		return leaf(e, addr, PFN_MASK_2M, 2);
	tbl = base + (e & PFN_MASK_4K);
	/* PTE: bits 12..20 */
	e = rd64(tbl + ((addr >> 12) & 511) * 8, err);
	if (!(e & (_PAGE_PRESENT | _PAGE_PROTNONE)))
		return PTE_R_LEVEL(1);
	return leaf(e, addr, PFN_MASK_4K, 1);
}

/*
 * The pgd of the mm behind fd fdnum of the current task (a /proc/<pid>/mem file), or 0 with
 * *ret set: PTE_NO_FILE, PTE_MM_DEAD or PTE_READ_FAULT.
 */
static __always_inline u64 mm_pgd(u64 task, u64 fdnum, int *ret)
{
	u64 files, fdt, fdarr, file, mm, pgd;
	u32 max_fds = 0, users = 0;
	int err = 0;

	files = rd64(task + OFF_TASK_FILES, &err);
	fdt = rd64(files + OFF_FILES_FDT, &err);
	if (err) {
		*ret = PTE_READ_FAULT;
		return 0;
	}
	bpf_probe_read_kernel(&max_fds, sizeof(max_fds), (void *)(fdt + OFF_FDT_MAX_FDS));
	if (fdnum >= max_fds) {
		*ret = PTE_NO_FILE;
		return 0;
	}
	fdarr = rd64(fdt + OFF_FDT_FD, &err);
	file = rd64(fdarr + fdnum * 8, &err);
	if (err || !file) {
		*ret = err ? PTE_READ_FAULT : PTE_NO_FILE;
		return 0;
	}
	mm = rd64(file + OFF_FILE_PRIVATE_DATA, &err);
	if (err || !mm) {
		*ret = err ? PTE_READ_FAULT : PTE_MM_DEAD;
		return 0;
	}
	if (bpf_probe_read_kernel(&users, sizeof(users), (void *)(mm + OFF_MM_USERS))) {
		*ret = PTE_READ_FAULT;
		return 0;
	}
	if (!users) {
		*ret = PTE_MM_DEAD;
		return 0;
	}
	pgd = rd64(mm + OFF_MM_PGD, &err);
	if (err || !pgd) {
		*ret = PTE_READ_FAULT;
		return 0;
	}
	*ret = PTE_OK;
	return pgd;
}

static __always_inline u64 direct_map_base(void)
{
	int err = 0;
	u64 base = DIRECT_MAP_BASE;

	if (DIRECT_MAP_BASE_PTR)
		base = rd64(DIRECT_MAP_BASE_PTR, &err);
	return base;
}

/* What one run saw, for pte_stats: per result, present and accessed, huge, or where the walk stopped. */
struct pte_counts {
	u64 walks, acc, huge, np_pgd, np_pud, np_pmd, np_pte;
};

static __always_inline void pte_count(struct pte_counts *c, u64 r)
{
	c->walks++;
	if (r & PTE_R_PRESENT) {
		if (r & PTE_R_ACCESSED)
			c->acc++;
		if (((r >> 4) & 7) >= 2)
			c->huge++;
		return;
	}
	switch ((r >> 4) & 7) {
	case 1: c->np_pte++; break;
	case 2: c->np_pmd++; break;
	case 3: c->np_pud++; break;
	default: c->np_pgd++; break;
	}
}

static __always_inline void pte_counts_add(struct pte_counts *c, int faults)
{
	pte_stat_add(PTE_ST_WALKS, c->walks);
	pte_stat_add(PTE_ST_ACCESSED, c->acc);
	pte_stat_add(PTE_ST_NP_PGD, c->np_pgd);
	pte_stat_add(PTE_ST_NP_PUD, c->np_pud);
	pte_stat_add(PTE_ST_NP_PMD, c->np_pmd);
	pte_stat_add(PTE_ST_NP_PTE, c->np_pte);
	pte_stat_add(PTE_ST_HUGE, c->huge);
	pte_stat_add(PTE_ST_READ_FAULT, faults);
}

int pte_walk(struct bpf_raw_tracepoint_args *ctx)
{
	u64 first = ctx->args[0], n = ctx->args[1], fdnum = ctx->args[2];
	u64 pgd, base;
	struct pte_counts c = {};
	int err = 0, faults = 0, ret = PTE_OK;

	pte_stat_add(PTE_ST_RUNS, 1);
	base = direct_map_base();
	pgd = mm_pgd((u64)bpf_get_current_task(), fdnum, &ret);
	if (!pgd)
		return ret;

	for (u32 i = 0; i < WALK_BATCH; i++) {
		u32 slot = first + i;
		u64 *a, *o, r;

		if (i >= n)
			break;
		a = pte_addrs.lookup(&slot);
		o = pte_out.lookup(&slot);
		if (!a || !o)
			break;
		err = 0;
		r = walk(pgd, *a, base, &err);
		if (err) {
			faults++;
			r = 0;
		}
		*o = r;
		pte_count(&c, r);
	}
	pte_counts_add(&c, faults);
	return PTE_OK;
}

int pte_observe(struct bpf_raw_tracepoint_args *ctx)
{
	u64 first = ctx->args[0], n = ctx->args[1], mark = ctx->args[2];
	u64 task = (u64)bpf_get_current_task();
	u64 pgd = 0, base;
	u64 nr_walks = 0, nr_acc = 0;
	u64 cur_fd = ~0ULL;
	int err = 0, faults = 0, ret = PTE_OK;

	pte_stat_add(PTE_ST_RUNS, 1);
	base = direct_map_base();
	for (u32 i = 0; i < WALK_BATCH; i++) {
		u32 slot = first + i;
		u64 *a, *o, *f, *fd, r;

		if (i >= n)
			break;
		f = pte_first.lookup(&slot);
		a = pte_addrs.lookup(&slot);
		o = pte_out.lookup(&slot);
		fd = pte_fds.lookup(&slot);
		if (!f || !a || !o || !fd)
			break;
		if (*f)
			continue;
		if (*fd != cur_fd) {
			cur_fd = *fd;
			pgd = mm_pgd(task, cur_fd, &ret);
		}
		if (!pgd) {
			*o = PTE_R_MM_GONE;
			continue;
		}
		err = 0;
		r = walk(pgd, *a, base, &err);
		nr_walks++;
		if (err) {
			faults++;
			continue;
		}
		if ((r & (PTE_R_PRESENT | PTE_R_ACCESSED)) == (PTE_R_PRESENT | PTE_R_ACCESSED)) {
			*f = mark;
			*o = r;
			nr_acc++;
		}
	}
	pte_stat_add(PTE_ST_WALKS, nr_walks);
	pte_stat_add(PTE_ST_ACCESSED, nr_acc);
	pte_stat_add(PTE_ST_READ_FAULT, faults);
	return PTE_OK;
}

int pte_walk_slots(struct bpf_raw_tracepoint_args *ctx)
{
	u64 first = ctx->args[0], n = ctx->args[1];
	u64 task = (u64)bpf_get_current_task();
	u64 pgd = 0, base;
	u64 cur_fd = ~0ULL;
	struct pte_counts c = {};
	int err = 0, faults = 0, ret = PTE_OK;

	pte_stat_add(PTE_ST_RUNS, 1);
	base = direct_map_base();
	for (u32 i = 0; i < WALK_BATCH; i++) {
		u32 slot = first + i;
		u64 *a, *o, *fd, r;

		if (i >= n)
			break;
		a = pte_addrs.lookup(&slot);
		o = pte_out.lookup(&slot);
		fd = pte_fds.lookup(&slot);
		if (!a || !o || !fd)
			break;
		if (*fd != cur_fd) {
			cur_fd = *fd;
			pgd = mm_pgd(task, cur_fd, &ret);
		}
		if (!pgd) {
			*o = PTE_R_MM_GONE;
			continue;
		}
		err = 0;
		r = walk(pgd, *a, base, &err);
		if (err) {
			faults++;
			r = 0;
		}
		*o = r;
		pte_count(&c, r);
	}
	pte_counts_add(&c, faults);
	return PTE_OK;
}
