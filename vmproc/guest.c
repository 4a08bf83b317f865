/* guest.c - the kernel-less guest runtime. See guest.h and docs/guest.md.
 *
 * The VMM writes everything a CPU needs to run 64-bit code at CPL 3 into
 * guest RAM (GDT, IDT, TSS with an I/O bitmap, 4-level page tables, a CPL 0
 * fault stub) and sets the vCPU's registers with KVM_SET_SREGS/REGS: no
 * firmware and no guest kernel. Under kvm-pvm, CPL 3 runs natively and CPL 0
 * is emulated, so CPL 0 runs only when the guest faults, and then only to
 * report the fault on HATCH_FAULT_PORT.
 */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>

#include "guest.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* ---- the runtime's own pages (supervisor-only, below the shared page) --- */
#define RT_GDT     0x1000ull
#define RT_IDT     0x2000ull
#define RT_TSS     0x3000ull
#define RT_STUB    0x4000ull
#define RT_KSTACK  0x5000ull   /* one page; the CPU switches to its top (RSP0) */
#define RT_KSTACK_TOP 0x6000ull
#define RT_PML4    0x6000ull
#define RT_PDPT    0x7000ull
#define RT_PD      0x8000ull
#define RT_PT0     0x9000ull   /* 0 .. 2 MiB: runtime pages and the shared page */
#define RT_PT_IMG  0xa000ull   /* 8 page tables: the 16 MiB image window */
#define RT_PT_IMG_N 8
#define RT_END     (RT_PT_IMG + RT_PT_IMG_N * 0x1000ull)

/* GDT laid out as Linux's, because kvm-pvm runs CPL 3 on the host's own
 * descriptors (the guest's CS reads back as the host's __USER_CS, 0x33):
 * with the same selectors the two views agree. */
#define SEL_KERNEL_CS 0x10
#define SEL_KERNEL_DS 0x18
#define SEL_USER32_CS 0x23
#define SEL_USER_DS   0x2b
#define SEL_USER_CS   0x33
#define SEL_TSS       0x40
#define GDT_ENTRIES   10

/* The I/O bitmap covers ports 0 .. IOBM_BYTES*8-1; beyond the TSS limit
 * every port is denied, so the bitmap only has to reach HATCH_FAULT_PORT. */
#define TSS_IOBM_OFF 0x68
#define IOBM_BYTES   ((HATCH_FAULT_PORT / 8) + 2) /* the CPU reads 2 bytes */

#define IDT_VECTORS 32
#define STUB_ENTRY_SIZE 16

#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_PS  (1ull << 7)
#define PTE_NX  (1ull << 63)

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

#define PAGE 4096ull
#define MIB2 (2ull << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- ELF ------------------------------------------------------------------ */

static bool add_overflows(uint64_t a, uint64_t b, uint64_t *sum)
{
	return __builtin_add_overflow(a, b, sum);
}

int vmp_guest_elf_parse(const uint8_t *elf, size_t len,
			struct vmp_guest_image *img, struct hatch_err *err)
{
	memset(img, 0, sizeof(*img));
	const int EINV = E(INVALID_ARGUMENT);
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return hatch_err_set(err, EINV, 0, "guest ELF: %zu bytes, shorter than an ELF header", len);
	if (len > VMP_GUEST_MAX_ELF)
		return hatch_err_set(err, EINV, 0, "guest ELF: %zu bytes, more than %u", len, VMP_GUEST_MAX_ELF);
	memcpy(&eh, elf, sizeof(eh)); /* the buffer need not be aligned */
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return hatch_err_set(err, EINV, 0, "guest ELF: bad magic");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_ident[EI_VERSION] != EV_CURRENT)
		return hatch_err_set(err, EINV, 0, "guest ELF: not a little-endian ELF64 (version 1)");
	if (eh.e_machine != EM_X86_64)
		return hatch_err_set(err, EINV, 0, "guest ELF: machine %u, not x86-64", eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return hatch_err_set(err, EINV, 0, "guest ELF: type %u, need ET_EXEC (a static, non-PIE executable)", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr))
		return hatch_err_set(err, EINV, 0, "guest ELF: e_phentsize %u, need %zu", eh.e_phentsize, sizeof(Elf64_Phdr));
	if (eh.e_phnum == 0 || eh.e_phnum > 64)
		return hatch_err_set(err, EINV, 0, "guest ELF: %u program headers, need 1..64", eh.e_phnum);
	uint64_t ph_end;
	if (add_overflows(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), &ph_end) || ph_end > len)
		return hatch_err_set(err, EINV, 0, "guest ELF: program headers outside the file");

	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, elf + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
			return hatch_err_set(err, EINV, 0, "guest ELF: dynamic executables are not supported (segment %u)", i);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (img->nsegs == VMP_GUEST_MAX_SEGS)
			return hatch_err_set(err, EINV, 0, "guest ELF: more than %d PT_LOAD segments", VMP_GUEST_MAX_SEGS);
		uint64_t fend, vend;
		if (ph.p_filesz > ph.p_memsz)
			return hatch_err_set(err, EINV, 0, "guest ELF: segment %u: p_filesz %#llx > p_memsz %#llx",
					     i, (unsigned long long)ph.p_filesz, (unsigned long long)ph.p_memsz);
		if (add_overflows(ph.p_offset, ph.p_filesz, &fend) || fend > len)
			return hatch_err_set(err, EINV, 0, "guest ELF: segment %u: file bytes outside the file", i);
		if (add_overflows(ph.p_vaddr, ph.p_memsz, &vend) ||
		    ph.p_vaddr < HATCH_IMAGE_BASE || vend > HATCH_IMAGE_END)
			return hatch_err_set(err, EINV, 0,
					     "guest ELF: segment %u at %#llx..%#llx is outside the image window %#llx..%#llx",
					     i, (unsigned long long)ph.p_vaddr, (unsigned long long)vend,
					     (unsigned long long)HATCH_IMAGE_BASE, (unsigned long long)HATCH_IMAGE_END);
		bool w = ph.p_flags & PF_W, x = ph.p_flags & PF_X;
		if (w && x)
			return hatch_err_set(err, EINV, 0, "guest ELF: segment %u is writable and executable", i);
		/* Permissions are per page: two segments on one page would
		 * merge them. The SDK's linker script page-aligns each. */
		uint64_t lo = ph.p_vaddr & ~(PAGE - 1), hi = (vend + PAGE - 1) & ~(PAGE - 1);
		for (unsigned j = 0; j < img->nsegs; j++) {
			const struct vmp_guest_seg *o = &img->seg[j];
			uint64_t olo = o->vaddr & ~(PAGE - 1);
			uint64_t ohi = (o->vaddr + o->memsz + PAGE - 1) & ~(PAGE - 1);
			if (lo < ohi && olo < hi)
				return hatch_err_set(err, EINV, 0, "guest ELF: segments %u and %u share a page", j, img->nsegs);
		}
		img->seg[img->nsegs++] = (struct vmp_guest_seg){
			.vaddr = ph.p_vaddr, .memsz = ph.p_memsz,
			.offset = ph.p_offset, .filesz = ph.p_filesz,
			.write = w, .exec = x,
		};
	}
	if (img->nsegs == 0)
		return hatch_err_set(err, EINV, 0, "guest ELF: no PT_LOAD segment");
	bool entry_ok = false;
	for (unsigned j = 0; j < img->nsegs; j++) {
		const struct vmp_guest_seg *s = &img->seg[j];
		if (s->exec && eh.e_entry >= s->vaddr && eh.e_entry < s->vaddr + s->memsz)
			entry_ok = true;
	}
	if (!entry_ok)
		return hatch_err_set(err, EINV, 0, "guest ELF: entry point %#llx is not in an executable segment",
				     (unsigned long long)eh.e_entry);
	img->elf = elf;
	img->elf_len = len;
	img->entry = eh.e_entry;
	return 0;
}

/* ---- deadline ------------------------------------------------------------- */

/* One timer per process (vmproc is single-threaded: one vCPU thread). The
 * handler makes KVM_RUN return -EINTR, or, if the signal lands between our
 * deadline check and the ioctl, makes the next KVM_RUN return at once
 * (immediate_exit): without that a guest that never exits would run on. */
static timer_t deadline_timer;
static bool deadline_ready;
static volatile sig_atomic_t deadline_fired;
static struct kvm_run *volatile deadline_run;

static void on_deadline(int sig)
{
	(void)sig;
	deadline_fired = 1;
	struct kvm_run *r = deadline_run;
	if (r)
		r->immediate_exit = 1;
}

int vmp_guest_deadline_init(struct hatch_err *err)
{
	if (deadline_ready)
		return 0;
	/* No SA_RESTART: KVM_RUN must come back with EINTR. */
	struct sigaction sa = { .sa_handler = on_deadline };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "sigaction SIGALRM");
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM };
	if (timer_create(CLOCK_MONOTONIC, &sev, &deadline_timer) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "timer_create");
	deadline_ready = true;
	return 0;
}

static int deadline_arm(struct kvm_run *run, uint32_t ms)
{
	deadline_fired = 0;
	run->immediate_exit = 0;
	if (!ms)
		return 0;
	if (!deadline_ready)
		return -ENOTSUP;
	deadline_run = run;
	struct itimerspec its = {
		.it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
	};
	if (timer_settime(deadline_timer, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

static void deadline_disarm(struct kvm_run *run, uint32_t ms)
{
	if (ms) {
		struct itimerspec off = { 0 };
		timer_settime(deadline_timer, 0, &off, NULL);
	}
	deadline_run = NULL;
	/* A signal that came after the last exit must not cut the next run short. */
	run->immediate_exit = 0;
}

/* ---- tables --------------------------------------------------------------- */

static uint8_t *gpa(struct vmp_guest *g, uint64_t a)
{
	return g->vm->mem + a;
}

static void write_gdt(struct vmp_guest *g)
{
	uint64_t *gdt = (uint64_t *)gpa(g, RT_GDT);
	memset(gdt, 0, PAGE);
	gdt[SEL_KERNEL_CS >> 3] = 0x00209a0000000000ull; /* P, DPL0, code, L */
	gdt[SEL_KERNEL_DS >> 3] = 0x0000920000000000ull; /* P, DPL0, data */
	gdt[SEL_USER32_CS >> 3] = 0x00cffa000000ffffull; /* P, DPL3, code, D, 4 GiB */
	gdt[SEL_USER_DS >> 3] = 0x00cff2000000ffffull;   /* P, DPL3, data */
	gdt[SEL_USER_CS >> 3] = 0x0020fa0000000000ull;   /* P, DPL3, code, L */
	uint64_t base = RT_TSS, limit = TSS_IOBM_OFF + IOBM_BYTES - 1;
	/* P, DPL 0, and the type TR is loaded with (reset_vcpu): 9 or 11 by
	 * host vendor (vmp_kvm_tr_type). The descriptor is never read (no LTR
	 * or task switch happens), but it says what an LTR would have left. */
	uint64_t access = 0x80u | g->vm->tr_type;
	gdt[SEL_TSS >> 3] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
			    (access << 40) | (((limit >> 16) & 0xf) << 48) |
			    (((base >> 24) & 0xff) << 56);
	gdt[(SEL_TSS >> 3) + 1] = base >> 32;
}

static void write_tss(struct vmp_guest *g)
{
	uint8_t *tss = gpa(g, RT_TSS);
	memset(tss, 0, PAGE);
	uint64_t rsp0 = RT_KSTACK_TOP;
	memcpy(tss + 4, &rsp0, 8);               /* RSP0: CPL 3 -> 0 switches here */
	uint16_t iobm = TSS_IOBM_OFF;
	memcpy(tss + 102, &iobm, 2);
	/* Deny every port but the hypercall port. HATCH_FAULT_PORT is denied
	 * at CPL 3 too: only the CPL 0 stub may write it. */
	memset(tss + TSS_IOBM_OFF, 0xff, IOBM_BYTES);
	tss[TSS_IOBM_OFF + HATCH_HC_PORT / 8] &= (uint8_t)~(1u << (HATCH_HC_PORT % 8));
}

static bool vector_has_error_code(unsigned v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* The CPL 0 stub: per vector, push a 0 error code if the CPU did not, push
 * the vector, jump to the common tail, which pushes CR2 and writes
 * HATCH_FAULT_PORT. The host reads the frame at the top of the kernel
 * stack (the CPU switched to RSP0, so a fault from CPL 3 always lands
 * there). It runs emulated under kvm-pvm, hence as few instructions as
 * possible, and none that the emulator lacks (no INT3, XSAVE, CMPXCHG16B).
 * It never returns: a faulted guest is never resumed. */
static void write_stub_and_idt(struct vmp_guest *g)
{
	uint8_t *stub = gpa(g, RT_STUB);
	memset(stub, 0xf4, PAGE); /* hlt: a stray jump at CPL 0 stops */
	uint64_t common = RT_STUB + IDT_VECTORS * STUB_ENTRY_SIZE;
	uint8_t *idt = gpa(g, RT_IDT);
	memset(idt, 0, PAGE);
	for (unsigned v = 0; v < IDT_VECTORS; v++) {
		uint8_t *p = stub + v * STUB_ENTRY_SIZE;
		unsigned k = 0;
		if (!vector_has_error_code(v)) {
			p[k++] = 0x6a; /* push $0 */
			p[k++] = 0x00;
		}
		p[k++] = 0x6a; /* push $v (imm8, v < 128) */
		p[k++] = (uint8_t)v;
		p[k++] = 0xe9; /* jmp rel32 common */
		int32_t rel = (int32_t)(common - (RT_STUB + v * STUB_ENTRY_SIZE + k + 4));
		memcpy(p + k, &rel, 4);

		uint64_t h = RT_STUB + v * STUB_ENTRY_SIZE;
		uint8_t *e = idt + v * 16;
		uint16_t lo = h & 0xffff, mid = (h >> 16) & 0xffff, sel = SEL_KERNEL_CS;
		uint32_t hi = (uint32_t)(h >> 32);
		memcpy(e, &lo, 2);
		memcpy(e + 2, &sel, 2);
		e[4] = 0;
		/* Interrupt gate, present; DPL 3 for #BP and #OF so that INT3 and
		 * INTO at CPL 3 report themselves instead of a #GP. */
		e[5] = (v == 3 || v == 4) ? 0xee : 0x8e;
		memcpy(e + 6, &mid, 2);
		memcpy(e + 8, &hi, 4);
	}
	static const uint8_t tail[] = {
		0x0f, 0x20, 0xd0,           /* mov %cr2, %rax */
		0x50,                       /* push %rax */
		0xe6, HATCH_FAULT_PORT,     /* out %al, $HATCH_FAULT_PORT */
		0xf4,                       /* hlt */
		0xeb, 0xfd,                 /* jmp hlt */
	};
	memcpy(gpa(g, common), tail, sizeof(tail));
}

/* Identity map: runtime pages supervisor-only, the shared page user RW NX,
 * the image window per segment (4 KiB pages), buffers, stack and heap user
 * RW NX (2 MiB pages). `code_page` maps only the window's first page, RX,
 * for vmp_guest_run_code. */
static void write_page_tables(struct vmp_guest *g, const struct vmp_guest_image *img,
			      bool code_page)
{
	uint64_t *pml4 = (uint64_t *)gpa(g, RT_PML4);
	uint64_t *pdpt = (uint64_t *)gpa(g, RT_PDPT);
	uint64_t *pd = (uint64_t *)gpa(g, RT_PD);
	uint64_t *pt0 = (uint64_t *)gpa(g, RT_PT0);
	memset(pml4, 0, PAGE);
	memset(pdpt, 0, PAGE);
	memset(pd, 0, PAGE);
	memset(pt0, 0, PAGE);
	/* Upper levels allow everything; the leaves decide. */
	pml4[0] = RT_PDPT | PTE_P | PTE_W | PTE_U;
	pdpt[0] = RT_PD | PTE_P | PTE_W | PTE_U;
	pd[0] = RT_PT0 | PTE_P | PTE_W | PTE_U;
	for (uint64_t a = RT_GDT; a < RT_END; a += PAGE) {
		uint64_t f = PTE_P | PTE_W | PTE_NX;
		if (a == RT_STUB)
			f = PTE_P; /* read + execute, supervisor */
		pt0[a / PAGE] = a | f;
	}
	pt0[HATCH_SHARED_ADDR / PAGE] = HATCH_SHARED_ADDR | PTE_P | PTE_W | PTE_U | PTE_NX;

	for (unsigned i = 0; i < RT_PT_IMG_N; i++) {
		uint64_t pt_gpa = RT_PT_IMG + i * PAGE;
		memset(gpa(g, pt_gpa), 0, PAGE);
		pd[1 + i] = pt_gpa | PTE_P | PTE_W | PTE_U;
	}
	if (code_page) {
		uint64_t *pt = (uint64_t *)gpa(g, RT_PT_IMG);
		pt[0] = HATCH_IMAGE_BASE | PTE_P | PTE_U;
	} else {
		for (unsigned j = 0; j < img->nsegs; j++) {
			const struct vmp_guest_seg *s = &img->seg[j];
			uint64_t lo = s->vaddr & ~(PAGE - 1);
			uint64_t hi = (s->vaddr + s->memsz + PAGE - 1) & ~(PAGE - 1);
			for (uint64_t a = lo; a < hi; a += PAGE) {
				uint64_t idx = (a - HATCH_IMAGE_BASE) / PAGE;
				uint64_t *pt = (uint64_t *)gpa(g, RT_PT_IMG + (idx / 512) * PAGE);
				pt[idx % 512] = a | PTE_P | PTE_U | (s->write ? PTE_W : 0) |
						(s->exec ? 0 : PTE_NX);
			}
		}
	}
	uint64_t big = PTE_P | PTE_W | PTE_U | PTE_NX | PTE_PS;
	pd[HATCH_IN_BUF / MIB2] = HATCH_IN_BUF | big; /* both buffers */
	/* HATCH_IN_BUF + 2 MiB .. HATCH_STACK_BASE: unmapped, a stack guard. */
	pd[HATCH_STACK_BASE / MIB2] = HATCH_STACK_BASE | big;
	for (uint64_t a = HATCH_HEAP_BASE; a + MIB2 <= g->heap_end; a += MIB2)
		pd[a / MIB2] = a | big;
}

static int reset_vcpu(struct vmp_guest *g, uint64_t rip, struct hatch_err *err)
{
	int fd = g->vm->vcpu_fd[0];
	struct kvm_sregs s;
	if (ioctl(fd, KVM_GET_SREGS, &s) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_SREGS");
	struct kvm_segment cs = {
		.base = 0, .limit = 0xffffffff, .selector = SEL_USER_CS, .type = 11,
		.present = 1, .dpl = 3, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.base = 0, .limit = 0xffffffff, .selector = SEL_USER_DS, .type = 3,
		.present = 1, .dpl = 3, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	s.cs = cs;
	s.ss = s.ds = s.es = s.fs = s.gs = ds;
	/* Not always 11 (busy), the type LTR leaves: QEMU's emulator ignores
	 * the I/O bitmap of a busy TSS and #GPs every port, the hypercall
	 * port included, so AMD hosts use 9. See vmp_kvm_tr_type. */
	s.tr = (struct kvm_segment){
		.base = RT_TSS, .limit = TSS_IOBM_OFF + IOBM_BYTES - 1,
		.selector = SEL_TSS, .type = g->vm->tr_type, .present = 1,
	};
	s.ldt = (struct kvm_segment){ .unusable = 1 };
	s.gdt.base = RT_GDT;
	s.gdt.limit = GDT_ENTRIES * 8 - 1;
	s.idt.base = RT_IDT;
	s.idt.limit = IDT_VECTORS * 16 - 1;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	s.cr3 = RT_PML4;
	/* OSFXSR/OSXMMEXCPT: SSE works at CPL 3 (compilers use it freely).
	 * No OSXSAVE: AVX state would need XSAVE, which the emulator lacks. */
	s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	/* No EFER.SCE: SYSCALL at CPL 3 is a #UD, reported like any fault. */
	s.efer = EFER_LME | EFER_LMA | EFER_NXE;
	s.cr2 = 0;
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	if (ioctl(fd, KVM_SET_SREGS, &s) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_SREGS");
	/* IOPL 0 and IF 0: port access is decided by the TSS bitmap alone,
	 * and CLI/STI/HLT are #GPs, not ways to stall the vCPU. */
	struct kvm_regs r = { .rip = rip, .rsp = HATCH_STACK_TOP, .rflags = 0x2 };
	if (ioctl(fd, KVM_SET_REGS, &r) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_REGS");
	return 0;
}

/* ---- the run loop --------------------------------------------------------- */

static const char *vector_name(unsigned v)
{
	static const char *const n[] = {
		[0] = "#DE divide error", [1] = "#DB debug", [2] = "NMI",
		[3] = "#BP breakpoint", [4] = "#OF overflow", [5] = "#BR bound range",
		[6] = "#UD invalid opcode", [7] = "#NM device not available",
		[8] = "#DF double fault", [10] = "#TS invalid TSS",
		[11] = "#NP segment not present", [12] = "#SS stack fault",
		[13] = "#GP general protection", [14] = "#PF page fault",
		[16] = "#MF x87 error", [17] = "#AC alignment check",
		[18] = "#MC machine check", [19] = "#XM SIMD error",
	};
	return v < HATCH_ARRAY_SIZE(n) && n[v] ? n[v] : "exception";
}

/* Is the instruction at rip a port I/O instruction? Then a #GP there is the
 * guest touching a port it may not, which deserves its own message. */
static bool is_port_io_insn(struct vmp_guest *g, uint64_t rip)
{
	if (rip < HATCH_IMAGE_BASE || rip + 16 > HATCH_IMAGE_END)
		return false;
	const uint8_t *p = gpa(g, rip);
	unsigned i = 0;
	while (i < 15 && (p[i] == 0x66 || p[i] == 0xf2 || p[i] == 0xf3 ||
			  (p[i] >= 0x40 && p[i] <= 0x4f)))
		i++;
	uint8_t op = p[i];
	return (op >= 0xe4 && op <= 0xe7) || (op >= 0xec && op <= 0xef) ||
	       (op >= 0x6c && op <= 0x6f);
}

static void read_fault(struct vmp_guest *g, struct vmp_guest_result *res)
{
	const uint64_t *top = (const uint64_t *)gpa(g, RT_KSTACK_TOP);
	/* Pushed by the CPU: SS, RSP, RFLAGS, CS, RIP, error code; by the
	 * stub: the error code if the CPU had none, the vector, CR2. */
	struct vmp_guest_fault *f = &res->fault;
	f->rip = top[-5];
	f->error_code = top[-6];
	f->vector = (uint32_t)top[-7];
	f->address = f->vector == 14 ? top[-8] : 0;
	if (f->vector == 13 && is_port_io_insn(g, f->rip)) {
		res->outcome = VMP_GUEST_BAD_IO;
		snprintf(res->message, sizeof(res->message),
			 "guest used an I/O port it may not (only port %#x is the ABI) at rip %#llx",
			 HATCH_HC_PORT, (unsigned long long)f->rip);
		return;
	}
	res->outcome = VMP_GUEST_FAULT;
	if (f->vector == 14)
		snprintf(res->message, sizeof(res->message),
			 "guest fault: %s at rip %#llx, address %#llx (%s, %s%s)",
			 vector_name(f->vector), (unsigned long long)f->rip,
			 (unsigned long long)f->address,
			 f->error_code & 1 ? "protection violation" : "not mapped",
			 f->error_code & 16 ? "instruction fetch" :
			 f->error_code & 2 ? "write" : "read",
			 f->address >= g->heap_end && f->address < (1ull << 30) ?
				 ", beyond guest memory" : "");
	else
		snprintf(res->message, sizeof(res->message),
			 "guest fault: %s (vector %u) at rip %#llx, error code %#llx",
			 vector_name(f->vector), f->vector, (unsigned long long)f->rip,
			 (unsigned long long)f->error_code);
}

static void take_log(struct vmp_guest *g, struct vmp_guest_result *res)
{
	struct hatch_shared *sh = g->shared;
	uint32_t n = sh->log_len;
	if (n > HATCH_LOG_MAX)
		n = HATCH_LOG_MAX; /* the guest's word is not trusted */
	if (res->log_len + n + 1 > sizeof(res->log)) {
		res->log_dropped++;
		return;
	}
	memcpy(res->log + res->log_len, sh->log, n);
	res->log_len += n;
	res->log[res->log_len++] = '\n';
}

/* Run until the guest says `want` (READY or DONE) or something ends the
 * run. Returns the outcome; res->message is set for every non-OK one. */
static enum vmp_guest_outcome run(struct vmp_guest *g, uint8_t want, uint32_t deadline_ms,
				  struct vmp_guest_result *res)
{
	struct kvm_run *kr = g->vm->run[0];
	int fd = g->vm->vcpu_fd[0];
	uint64_t t0 = now_ns();
	int r = deadline_arm(kr, deadline_ms);
	if (r < 0) {
		snprintf(res->message, sizeof(res->message), "deadline timer: %s", strerror(-r));
		return res->outcome = VMP_GUEST_HOST_ERROR;
	}
	res->outcome = VMP_GUEST_OK;
	for (bool go = true; go;) {
		if (ioctl(fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR) {
				if (deadline_fired) {
					res->outcome = VMP_GUEST_DEADLINE;
					snprintf(res->message, sizeof(res->message),
						 "the guest did not finish within the deadline (%u ms)", deadline_ms);
					break;
				}
				kr->immediate_exit = 0;
				continue;
			}
			res->outcome = VMP_GUEST_HOST_ERROR;
			snprintf(res->message, sizeof(res->message), "KVM_RUN: %s", strerror(errno));
			break;
		}
		res->exits++;
		switch (kr->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t v = *((uint8_t *)kr + kr->io.data_offset);
			if (kr->io.port == HATCH_FAULT_PORT) {
				read_fault(g, res);
				go = false;
				break;
			}
			if (kr->io.port != HATCH_HC_PORT) {
				/* The bitmap should make this impossible; if the
				 * hypervisor let it through, it is still an error. */
				res->outcome = VMP_GUEST_BAD_IO;
				snprintf(res->message, sizeof(res->message),
					 "guest accessed I/O port %#x", kr->io.port);
				go = false;
				break;
			}
			if (kr->io.direction != KVM_EXIT_IO_OUT || kr->io.size != 1 ||
			    kr->io.count != 1) {
				res->outcome = VMP_GUEST_PROTOCOL;
				snprintf(res->message, sizeof(res->message),
					 "malformed hypercall: %s of size %u x %u on port %#x",
					 kr->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
					 kr->io.size, kr->io.count, kr->io.port);
				go = false;
				break;
			}
			if (v == HATCH_HC_LOG) {
				take_log(g, res);
				break;
			}
			if (v == want) {
				go = false;
				break;
			}
			res->outcome = VMP_GUEST_PROTOCOL;
			snprintf(res->message, sizeof(res->message),
				 "unexpected hypercall %u (waiting for %u)", v, want);
			go = false;
			break;
		}
		case KVM_EXIT_MMIO:
			res->outcome = VMP_GUEST_BAD_IO;
			snprintf(res->message, sizeof(res->message),
				 "guest accessed MMIO address %#llx",
				 (unsigned long long)kr->mmio.phys_addr);
			go = false;
			break;
		case KVM_EXIT_SHUTDOWN:
			res->outcome = VMP_GUEST_TRIPLE_FAULT;
			snprintf(res->message, sizeof(res->message),
				 "guest triple fault (an exception could not be delivered)");
			go = false;
			break;
		case KVM_EXIT_HLT:
			res->outcome = VMP_GUEST_FAULT;
			snprintf(res->message, sizeof(res->message), "guest halted");
			go = false;
			break;
		case KVM_EXIT_INTR:
			if (deadline_fired) {
				res->outcome = VMP_GUEST_DEADLINE;
				snprintf(res->message, sizeof(res->message),
					 "the guest did not finish within the deadline (%u ms)", deadline_ms);
				go = false;
			}
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			/* E.g. the emulator met an instruction it cannot do:
			 * the guest's doing, since only the stub runs at CPL 0. */
			res->outcome = VMP_GUEST_FAULT;
			snprintf(res->message, sizeof(res->message),
				 "KVM internal error (suberror %u): the guest did something KVM cannot emulate",
				 kr->internal.suberror);
			go = false;
			break;
		default:
			res->outcome = VMP_GUEST_HOST_ERROR;
			snprintf(res->message, sizeof(res->message),
				 "unexpected KVM exit reason %u", kr->exit_reason);
			go = false;
			break;
		}
	}
	deadline_disarm(kr, deadline_ms);
	res->run_ns = now_ns() - t0;
	return res->outcome;
}

static void result_init(struct vmp_guest_result *res)
{
	res->outcome = VMP_GUEST_OK;
	memset(&res->fault, 0, sizeof(res->fault));
	res->out = NULL;
	res->out_len = 0;
	res->message[0] = '\0';
	res->log_len = 0;
	res->log_dropped = 0;
	res->exits = 0;
	res->run_ns = 0;
}

static void mark_dead(struct vmp_guest *g, struct vmp_guest_result *res)
{
	if (res->outcome != VMP_GUEST_OK && res->outcome != VMP_GUEST_ERROR &&
	    res->outcome != VMP_GUEST_NO_FUNCTION)
		g->dead = true;
}

/* The host-side fields a VM of this size gives, without writing RAM. */
static int setup_fields(struct vmp_vm *vm, struct vmp_guest *g, struct hatch_err *err)
{
	memset(g, 0, sizeof(*g));
	g->vm = vm;
	if (vm->nvcpus < 1 || !vm->run[0])
		return hatch_err_set(err, E(VM_ERROR), 0, "the VM has no vCPU");
	if (vm->mem_size < HATCH_MIN_MEMORY)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "a guest needs at least %llu MiB of memory, the VM has %zu",
				     HATCH_MIN_MEMORY >> 20, vm->mem_size >> 20);
	/* One page directory maps the first GiB; more RAM stays unmapped. */
	uint64_t end = vm->mem_size < (1ull << 30) ? vm->mem_size : (1ull << 30);
	g->heap_end = end & ~(MIB2 - 1);
	g->shared = (struct hatch_shared *)gpa(g, HATCH_SHARED_ADDR);
	return 0;
}

/* Give the guest its generation and fresh seed bytes (struct hatch_shared,
 * "Uniqueness"). getrandom in the jailed child, at the moment of use: bytes
 * drawn before the fork, or by the supervisor ahead of time, could end up
 * in two VMs. */
static int set_generation(struct vmp_guest *g, uint64_t generation, struct hatch_err *err)
{
	uint8_t seed[HATCH_SEED_SIZE];
	for (size_t got = 0; got < sizeof(seed);) {
		ssize_t n = getrandom(seed + got, sizeof(seed) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return hatch_err_set(err, E(VM_ERROR), n < 0 ? errno : EIO,
					     "getrandom: seed bytes for the guest");
		got += (size_t)n;
	}
	memcpy(g->shared->seed, seed, sizeof(seed));
	g->shared->generation = generation;
	return 0;
}

static int setup(struct vmp_vm *vm, struct vmp_guest *g, struct hatch_err *err)
{
	if (setup_fields(vm, g, err) < 0)
		return -1;
	memset(g->shared, 0, PAGE);
	g->shared->magic = HATCH_SHARED_MAGIC;
	g->shared->abi_version = HATCH_ABI_VERSION;
	g->shared->heap_base = HATCH_HEAP_BASE;
	g->shared->heap_end = g->heap_end;
	if (set_generation(g, 0, err) < 0)
		return -1;
	write_gdt(g);
	write_tss(g);
	write_stub_and_idt(g);
	return 0;
}

int vmp_guest_boot(struct vmp_vm *vm, const struct vmp_guest_image *img,
		   uint32_t deadline_ms, struct vmp_guest *g,
		   struct vmp_guest_result *res, struct hatch_err *err)
{
	uint64_t t0 = now_ns();
	result_init(res);
	if (setup(vm, g, err) < 0)
		return -1;
	write_page_tables(g, img, false);
	for (unsigned j = 0; j < img->nsegs; j++) {
		const struct vmp_guest_seg *s = &img->seg[j];
		memcpy(gpa(g, s->vaddr), img->elf + s->offset, s->filesz);
		/* .bss: RAM is fresh and zero, but say so rather than rely on it. */
		memset(gpa(g, s->vaddr + s->filesz), 0, s->memsz - s->filesz);
	}
	if (reset_vcpu(g, img->entry, err) < 0)
		return -1;
	if (run(g, HATCH_HC_READY, deadline_ms, res) != VMP_GUEST_OK) {
		g->dead = true;
		return hatch_err_set(err, E(VM_ERROR), 0, "guest did not get ready: %s", res->message);
	}
	uint32_t n = g->shared->n_fn;
	if (n > HATCH_FN_MAX) {
		g->dead = true;
		return hatch_err_set(err, E(VM_ERROR), 0, "guest registered %u functions, at most %d", n, HATCH_FN_MAX);
	}
	for (uint32_t i = 0; i < n; i++) {
		memcpy(g->fn[i], g->shared->fn[i], HATCH_FN_NAME_MAX);
		g->fn[i][HATCH_FN_NAME_MAX - 1] = '\0'; /* untrusted */
	}
	g->n_fn = n;
	g->ready = true;
	g->boot_ns = now_ns() - t0;
	return 0;
}

static int request(struct vmp_guest *g, uint32_t op, uint32_t fn_index,
		   const void *in, size_t in_len, uint32_t deadline_ms,
		   struct vmp_guest_result *res)
{
	struct hatch_shared *sh = g->shared;
	if (in_len)
		memcpy(gpa(g, HATCH_IN_BUF), in, in_len);
	sh->op = op;
	sh->fn_index = fn_index;
	sh->in_len = in_len;
	sh->status = 0;
	sh->out_len = 0;
	sh->error_len = 0;
	if (run(g, HATCH_HC_DONE, deadline_ms, res) != VMP_GUEST_OK) {
		mark_dead(g, res);
		return -1;
	}
	/* Everything the guest wrote is untrusted: bound it before use. */
	uint32_t status = sh->status;
	uint64_t out_len = sh->out_len;
	if (status == HATCH_STATUS_OK) {
		if (out_len > HATCH_BUF_SIZE) {
			res->outcome = VMP_GUEST_PROTOCOL;
			snprintf(res->message, sizeof(res->message),
				 "guest returned %llu bytes, more than its %llu-byte buffer",
				 (unsigned long long)out_len, HATCH_BUF_SIZE);
			g->dead = true;
			return -1;
		}
		res->out = gpa(g, HATCH_OUT_BUF);
		res->out_len = out_len;
		return 0;
	}
	uint32_t el = sh->error_len < HATCH_ERROR_MAX ? sh->error_len : HATCH_ERROR_MAX - 1;
	if (status == HATCH_STATUS_NO_FUNCTION) {
		res->outcome = VMP_GUEST_NO_FUNCTION;
		snprintf(res->message, sizeof(res->message), "the guest has no function %u", fn_index);
		return -1;
	}
	res->outcome = VMP_GUEST_ERROR;
	snprintf(res->message, sizeof(res->message), "%.*s", (int)el,
		 el ? sh->error : "the guest function failed");
	return -1;
}

int vmp_guest_call(struct vmp_guest *g, const char *name, const void *in,
		   size_t in_len, uint32_t deadline_ms, struct vmp_guest_result *res)
{
	result_init(res);
	if (!g->ready || g->dead) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "the guest is %s",
			 g->dead ? "dead (an earlier call ended it)" : "not loaded");
		return -1;
	}
	if (in_len > HATCH_BUF_SIZE) {
		res->outcome = VMP_GUEST_ERROR;
		snprintf(res->message, sizeof(res->message), "payload of %zu bytes, at most %llu",
			 in_len, HATCH_BUF_SIZE);
		return -1;
	}
	for (unsigned i = 0; i < g->n_fn; i++)
		if (strcmp(g->fn[i], name) == 0)
			return request(g, HATCH_OP_CALL, i, in, in_len, deadline_ms, res);
	res->outcome = VMP_GUEST_NO_FUNCTION;
	snprintf(res->message, sizeof(res->message), "the guest has no function \"%s\"", name);
	return -1;
}

int vmp_guest_heartbeat(struct vmp_guest *g, uint32_t deadline_ms,
			struct vmp_guest_result *res)
{
	result_init(res);
	if (!g->ready || g->dead) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "the guest is not alive");
		return -1;
	}
	return request(g, HATCH_OP_HEARTBEAT, 0, NULL, 0, deadline_ms, res);
}

int vmp_guest_run_code(struct vmp_guest *g, const void *code, size_t len,
		       uint32_t deadline_ms, struct vmp_guest_result *res)
{
	result_init(res);
	struct hatch_err err = { 0 };
	if (len > PAGE) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "code longer than a page");
		return -1;
	}
	if (!g->shared || g->ready) {
		/* First run on this VM: the runtime and a one-page window. Page
		 * tables are written once: KVM shadows them, and a host write
		 * through our mapping would not be seen by the shadow. */
		struct vmp_vm *vm = g->vm;
		if (setup(vm, g, &err) < 0) {
			res->outcome = VMP_GUEST_HOST_ERROR;
			snprintf(res->message, sizeof(res->message), "%s", err.msg);
			return -1;
		}
		write_page_tables(g, NULL, true);
	}
	uint8_t *page = gpa(g, HATCH_IMAGE_BASE);
	/* Running off the end meets UD2s. */
	for (size_t i = 0; i < PAGE; i += 2) {
		page[i] = 0x0f;
		page[i + 1] = 0x0b;
	}
	memcpy(page, code, len);
	if (reset_vcpu(g, HATCH_IMAGE_BASE, &err) < 0) {
		res->outcome = VMP_GUEST_HOST_ERROR;
		snprintf(res->message, sizeof(res->message), "%s", err.msg);
		return -1;
	}
	/* Any hypercall ends a run: 0 is no hypercall number. */
	return run(g, 0, deadline_ms, res) == VMP_GUEST_OK ? 0 : -1;
}

/* Layout, little-endian: u32 magic "HRT1", u32 version 1, u64 heap_end,
 * u32 n_fn, u32 zero, then n_fn names of HATCH_FN_NAME_MAX bytes each. */
size_t vmp_guest_runtime_save(const struct vmp_guest *g, uint8_t buf[VMP_GUEST_RT_MAX])
{
	uint32_t hdr32[2] = { VMP_GUEST_RT_MAGIC, 1 };
	uint32_t n[2] = { g->n_fn, 0 };
	memcpy(buf, hdr32, 8);
	memcpy(buf + 8, &g->heap_end, 8);
	memcpy(buf + 16, n, 8);
	memcpy(buf + VMP_GUEST_RT_HDR, g->fn, (size_t)g->n_fn * HATCH_FN_NAME_MAX);
	return VMP_GUEST_RT_HDR + (size_t)g->n_fn * HATCH_FN_NAME_MAX;
}

int vmp_guest_runtime_restore(struct vmp_vm *vm, const void *buf_, size_t len,
			      struct vmp_guest *g, struct hatch_err *err)
{
	const uint8_t *buf = buf_;
	const int EINV = E(INVALID_ARGUMENT);
	struct hatch_err e2 = { 0 };
	if (setup_fields(vm, g, &e2) < 0)
		return hatch_err_set(err, e2.code, 0, "%s", e2.msg);
	uint32_t hdr32[2], n[2];
	uint64_t heap_end;
	if (len < VMP_GUEST_RT_HDR)
		return hatch_err_set(err, EINV, 0, "runtime section: %zu bytes, shorter than its header", len);
	memcpy(hdr32, buf, 8);
	memcpy(&heap_end, buf + 8, 8);
	memcpy(n, buf + 16, 8);
	if (hdr32[0] != VMP_GUEST_RT_MAGIC || hdr32[1] != 1)
		return hatch_err_set(err, EINV, 0, "runtime section: bad magic or version %u", hdr32[1]);
	if (n[0] > HATCH_FN_MAX || n[1] != 0 ||
	    len != VMP_GUEST_RT_HDR + (size_t)n[0] * HATCH_FN_NAME_MAX)
		return hatch_err_set(err, EINV, 0, "runtime section: %u functions in %zu bytes", n[0], len);
	if (heap_end != g->heap_end)
		return hatch_err_set(err, EINV, 0, "runtime section: heap end %#llx, this VM's is %#llx",
				     (unsigned long long)heap_end, (unsigned long long)g->heap_end);
	if (g->shared->magic != HATCH_SHARED_MAGIC || g->shared->abi_version != HATCH_ABI_VERSION)
		return hatch_err_set(err, EINV, 0, "restored memory holds no hatchery shared page (ABI %u)",
				     HATCH_ABI_VERSION);
	/* The restored RAM is a copy another VM may also hold: a new
	 * generation and new seed bytes before the guest runs again. */
	if (set_generation(g, g->shared->generation + 1, err) < 0)
		return -1;
	memcpy(g->fn, buf + VMP_GUEST_RT_HDR, (size_t)n[0] * HATCH_FN_NAME_MAX);
	for (uint32_t i = 0; i < n[0]; i++)
		g->fn[i][HATCH_FN_NAME_MAX - 1] = '\0'; /* untrusted */
	g->n_fn = n[0];
	g->ready = true;
	return 0;
}

void vmp_guest_break_idt(struct vmp_guest *g)
{
	memset(gpa(g, RT_IDT), 0, PAGE);
}

const char *vmp_guest_outcome_name(enum vmp_guest_outcome o)
{
	static const char *const n[] = {
		[VMP_GUEST_OK] = "ok", [VMP_GUEST_ERROR] = "error",
		[VMP_GUEST_NO_FUNCTION] = "no function", [VMP_GUEST_FAULT] = "fault",
		[VMP_GUEST_DEADLINE] = "deadline", [VMP_GUEST_TRIPLE_FAULT] = "triple fault",
		[VMP_GUEST_BAD_IO] = "bad I/O", [VMP_GUEST_PROTOCOL] = "protocol",
		[VMP_GUEST_HOST_ERROR] = "host error",
	};
	return (unsigned)o < HATCH_ARRAY_SIZE(n) && n[o] ? n[o] : "?";
}
