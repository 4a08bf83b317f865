/* tables.h - the kernel-less runtime's x86 state in guest RAM: where its
 * own pages are, and the functions that write them (tables.c). Internal
 * to runtime/.
 *
 * The VMM writes everything a CPU needs to run 64-bit code at CPL 3 into
 * guest RAM (GDT, IDT, TSS with an I/O bitmap, 4-level page tables, a CPL 0
 * fault stub) and sets the vCPU's registers with KVM_SET_SREGS/REGS: no
 * firmware and no guest kernel. Under kvm-pvm, CPL 3 runs natively and CPL 0
 * is emulated, so CPL 0 runs only when the guest faults, and then only to
 * report the fault on HATCH_FAULT_PORT.
 */
#ifndef HATCHERY_VMP_RT_TABLES_H
#define HATCHERY_VMP_RT_TABLES_H

#include <stdbool.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "runtime/runtime.h"

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

/* Guest RAM at guest-physical (= guest-virtual: identity map) address a. */
static inline uint8_t *rt_gpa(const struct vmp_guest *g, uint64_t a)
{
	return g->vm->mem + a;
}

/* GDT, TSS (I/O bitmap: only the hypercall port), the CPL 0 fault stub and
 * the IDT that points at it. */
void vmp_rt_write_tables(struct vmp_guest *g);

/* Identity map: runtime pages supervisor-only, the shared page user RW NX,
 * the image window per segment (4 KiB pages), buffers, stack and heap user
 * RW NX (2 MiB pages). `code_page` maps only the window's first page, RX,
 * for vmp_guest_run_code (img unused then). */
void vmp_rt_write_page_tables(struct vmp_guest *g, const struct vmp_guest_image *img,
			      bool code_page);

/* vCPU 0 at CPL 3 on those tables, at rip with the stack at its top. */
int vmp_rt_reset_vcpu(struct vmp_guest *g, uint64_t rip, struct hatch_err *err);

/* A write to HATCH_FAULT_PORT: read the frame the stub left at the top of
 * the kernel stack into res (outcome FAULT, or BAD_IO for a #GP on a port
 * instruction, with its message). */
void vmp_rt_read_fault(struct vmp_guest *g, struct vmp_guest_result *res);

#endif
