/* tables.c - the kernel-less runtime's x86 state: GDT, TSS, IDT and the
 * CPL 0 fault stub, page tables, the vCPU's registers, and reading a
 * fault's frame back. See tables.h and docs/guest.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "runtime/tables.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

static void write_gdt(struct vmp_guest *g)
{
	uint64_t *gdt = (uint64_t *)rt_gpa(g, RT_GDT);
	memset(gdt, 0, PAGE);
	gdt[SEL_KERNEL_CS >> 3] = 0x00209a0000000000ull; /* P, DPL0, code, L */
	gdt[SEL_KERNEL_DS >> 3] = 0x0000920000000000ull; /* P, DPL0, data */
	gdt[SEL_USER32_CS >> 3] = 0x00cffa000000ffffull; /* P, DPL3, code, D, 4 GiB */
	gdt[SEL_USER_DS >> 3] = 0x00cff2000000ffffull;   /* P, DPL3, data */
	gdt[SEL_USER_CS >> 3] = 0x0020fa0000000000ull;   /* P, DPL3, code, L */
	uint64_t base = RT_TSS, limit = TSS_IOBM_OFF + IOBM_BYTES - 1;
	/* P, DPL 0, and the type TR is loaded with (vmp_rt_reset_vcpu): 9 or 11 by
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
	uint8_t *tss = rt_gpa(g, RT_TSS);
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
	uint8_t *stub = rt_gpa(g, RT_STUB);
	memset(stub, 0xf4, PAGE); /* hlt: a stray jump at CPL 0 stops */
	uint64_t common = RT_STUB + IDT_VECTORS * STUB_ENTRY_SIZE;
	uint8_t *idt = rt_gpa(g, RT_IDT);
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
	memcpy(rt_gpa(g, common), tail, sizeof(tail));
}

void vmp_rt_write_tables(struct vmp_guest *g)
{
	write_gdt(g);
	write_tss(g);
	write_stub_and_idt(g);
}

void vmp_rt_write_page_tables(struct vmp_guest *g, const struct vmp_guest_image *img,
			      bool code_page)
{
	uint64_t *pml4 = (uint64_t *)rt_gpa(g, RT_PML4);
	uint64_t *pdpt = (uint64_t *)rt_gpa(g, RT_PDPT);
	uint64_t *pd = (uint64_t *)rt_gpa(g, RT_PD);
	uint64_t *pt0 = (uint64_t *)rt_gpa(g, RT_PT0);
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
		memset(rt_gpa(g, pt_gpa), 0, PAGE);
		pd[1 + i] = pt_gpa | PTE_P | PTE_W | PTE_U;
	}
	if (code_page) {
		uint64_t *pt = (uint64_t *)rt_gpa(g, RT_PT_IMG);
		pt[0] = HATCH_IMAGE_BASE | PTE_P | PTE_U;
	} else {
		for (unsigned j = 0; j < img->nsegs; j++) {
			const struct vmp_guest_seg *s = &img->seg[j];
			uint64_t lo = s->vaddr & ~(PAGE - 1);
			uint64_t hi = (s->vaddr + s->memsz + PAGE - 1) & ~(PAGE - 1);
			for (uint64_t a = lo; a < hi; a += PAGE) {
				uint64_t idx = (a - HATCH_IMAGE_BASE) / PAGE;
				uint64_t *pt = (uint64_t *)rt_gpa(g, RT_PT_IMG + (idx / 512) * PAGE);
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

int vmp_rt_reset_vcpu(struct vmp_guest *g, uint64_t rip, struct hatch_err *err)
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
	const uint8_t *p = rt_gpa(g, rip);
	unsigned i = 0;
	while (i < 15 && (p[i] == 0x66 || p[i] == 0xf2 || p[i] == 0xf3 ||
			  (p[i] >= 0x40 && p[i] <= 0x4f)))
		i++;
	uint8_t op = p[i];
	return (op >= 0xe4 && op <= 0xe7) || (op >= 0xec && op <= 0xef) ||
	       (op >= 0x6c && op <= 0x6f);
}

void vmp_rt_read_fault(struct vmp_guest *g, struct vmp_guest_result *res)
{
	const uint64_t *top = (const uint64_t *)rt_gpa(g, RT_KSTACK_TOP);
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

void vmp_guest_break_idt(struct vmp_guest *g)
{
	memset(rt_gpa(g, RT_IDT), 0, PAGE);
}
