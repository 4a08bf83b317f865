/* runtime.h - the kernel-less guest runtime, the one guest kind today:
 * load a static ELF into a VM, run it at CPL 3, and call its functions.
 *
 * Lifecycle:
 *   vmp_guest_elf_parse()    pure: validate an untrusted ELF (guest_elf.h)
 *   vmp_guest_deadline_init() once per process, before the jail (kvm/vcpu.h:
 *                             a signal handler and a POSIX timer)
 *   vmp_guest_boot()         tables + image into guest RAM, run to READY
 *   vmp_guest_call() / vmp_guest_heartbeat()   any number of times
 *   after any outcome but OK or GUEST_ERROR the guest is dead: calls fail
 *   with FAILED_PRECONDITION, and the caller (vmproc) exits after replying.
 *
 * Layout of runtime/: guest_elf.c (the pure ELF check), tables.c (the x86
 * state: GDT, IDT, TSS, fault stub, page tables, registers), runtime.c
 * (boot, calls, the hypercall ABI, the runtime's snapshot section). The
 * vCPU loop is kvm/vcpu.c, shared with any other guest kind (a Linux
 * kernel would be a folder beside this one).
 *
 * Ownership: struct vmp_guest borrows the struct vmp_vm (not owned) and
 * owns nothing that needs freeing; the result's output points into guest
 * RAM and is valid until the next call.
 *
 * The machine this was built on runs kvm-pvm: guest CPL 3 runs natively,
 * CPL 0 is emulated (~2000x slower), so the guest runs at CPL 3 on tables
 * the host wrote, and CPL 0 is entered only by the fault stub. See
 * docs/guest.md.
 */
#ifndef HATCHERY_VMP_GUEST_H
#define HATCHERY_VMP_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "hatchery_guest_abi.h"
#include "kvm/kvm.h"
#include "kvm/vcpu.h"
#include "runtime/guest_elf.h"

struct vmp_guest {
	struct vmp_vm *vm;              /* not owned */
	struct hatch_shared *shared;    /* in guest RAM */
	uint64_t heap_end;
	bool ready, dead;
	unsigned n_fn;
	char fn[HATCH_FN_MAX][HATCH_FN_NAME_MAX];
	uint64_t boot_ns;               /* tables + image + run to READY */
};

/* Build the runtime in `vm` (vCPU 0), load `img`, and run the guest to its
 * READY hypercall, bounded by deadline_ms. `res` says how it went if it did
 * not get there (a fault in start-up code, a deadline...). Returns 0 when
 * the guest is ready, -1 otherwise (err filled). */
int vmp_guest_boot(struct vmp_vm *vm, const struct vmp_guest_image *img,
		   uint32_t deadline_ms, struct vmp_guest *g,
		   struct vmp_guest_result *res, struct hatch_err *err);

/* Call function `name` with `in` (at most HATCH_BUF_SIZE bytes). Fills res;
 * returns 0 when outcome is OK, -1 otherwise. deadline_ms 0: no deadline. */
int vmp_guest_call(struct vmp_guest *g, const char *name, const void *in,
		   size_t in_len, uint32_t deadline_ms,
		   struct vmp_guest_result *res);

/* The health check: a request the guest's SDK answers at once. */
int vmp_guest_heartbeat(struct vmp_guest *g, uint32_t deadline_ms,
			struct vmp_guest_result *res);

/* For tests (the fuzz test): put `code` at the start of the image window's
 * first executable page and run it at CPL 3 from a reset vCPU, as the
 * guest would run. The guest's tables are rewritten first, so one VM
 * serves any number of runs. */
int vmp_guest_run_code(struct vmp_guest *g, const void *code, size_t len,
		       uint32_t deadline_ms, struct vmp_guest_result *res);

/* For tests: break the IDT so the next exception cannot be delivered. */
void vmp_guest_break_idt(struct vmp_guest *g);

/* The runtime's host-side state for a snapshot's runtime section
 * (docs/snapshot.md, "The runtime section"). Everything else the runtime
 * uses (tables, shared page, buffers) is in guest RAM and travels with it.
 * VMP_GUEST_RT_MAX bytes always suffice. */
#define VMP_GUEST_RT_MAGIC 0x31545248u /* "HRT1" */
#define VMP_GUEST_RT_HDR 24
#define VMP_GUEST_RT_MAX (VMP_GUEST_RT_HDR + HATCH_FN_MAX * HATCH_FN_NAME_MAX)
/* Serialise a ready guest into buf; returns the length. */
size_t vmp_guest_runtime_save(const struct vmp_guest *g, uint8_t buf[VMP_GUEST_RT_MAX]);
/* Rebuild *g for `vm`, whose RAM already holds the restored guest, from a
 * runtime section (untrusted: every field checked; INVALID_ARGUMENT). */
int vmp_guest_runtime_restore(struct vmp_vm *vm, const void *buf, size_t len,
			      struct vmp_guest *g, struct hatch_err *err);

#endif
