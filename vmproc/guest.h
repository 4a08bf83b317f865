/* guest.h - the kernel-less guest runtime: load a static ELF into a VM, run
 * it at CPL 3, and call its functions.
 *
 * Lifecycle:
 *   vmp_guest_elf_parse()    pure: validate an untrusted ELF, no KVM
 *   vmp_guest_deadline_init() once per process, before the jail (it installs
 *                             a signal handler and creates a POSIX timer)
 *   vmp_guest_boot()         tables + image into guest RAM, run to READY
 *   vmp_guest_call() / vmp_guest_heartbeat()   any number of times
 *   after any outcome but OK or GUEST_ERROR the guest is dead: calls fail
 *   with FAILED_PRECONDITION, and the caller (vmproc) exits after replying.
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
#include "kvm.h"

#define VMP_GUEST_MAX_SEGS 16
#define VMP_GUEST_MAX_ELF (16u << 20) /* the image window's size */

struct vmp_guest_seg {
	uint64_t vaddr, memsz;       /* page-aligned start is vaddr & ~4095 */
	uint64_t offset, filesz;     /* bytes from the file */
	bool write, exec;
};

/* A validated image. Borrows the ELF bytes it was parsed from. */
struct vmp_guest_image {
	const uint8_t *elf;
	size_t elf_len;
	uint64_t entry;
	unsigned nsegs;
	struct vmp_guest_seg seg[VMP_GUEST_MAX_SEGS];
};

/* Validate `elf` (untrusted): ELF64, little-endian, x86-64, ET_EXEC; every
 * offset and size in bounds without overflow; 1..16 PT_LOAD segments inside
 * [HATCH_IMAGE_BASE, HATCH_IMAGE_END), not sharing a page with each other;
 * the entry point inside an executable segment; no segment both writable
 * and executable. On failure err says what is wrong (INVALID_ARGUMENT). */
int vmp_guest_elf_parse(const uint8_t *elf, size_t len,
			struct vmp_guest_image *img, struct hatch_err *err);

/* Install the deadline signal handler and create the timer. Before the
 * jail: rt_sigaction and timer_create are not on the allowlist. */
int vmp_guest_deadline_init(struct hatch_err *err);

enum vmp_guest_outcome {
	VMP_GUEST_OK = 0,
	VMP_GUEST_ERROR,        /* the function returned an error (guest lives on) */
	VMP_GUEST_NO_FUNCTION,  /* no function of that name (guest lives on) */
	VMP_GUEST_FAULT,        /* a CPU exception at CPL 3: see fault */
	VMP_GUEST_DEADLINE,     /* the deadline passed first */
	VMP_GUEST_TRIPLE_FAULT, /* KVM_EXIT_SHUTDOWN */
	VMP_GUEST_BAD_IO,       /* an I/O port or MMIO exit the ABI does not have */
	VMP_GUEST_PROTOCOL,     /* a malformed hypercall (bad number, bad lengths) */
	VMP_GUEST_HOST_ERROR,   /* a KVM ioctl failed, or the VM is dead */
};

struct vmp_guest_fault {
	uint32_t vector;        /* 0 #DE, 6 #UD, 13 #GP, 14 #PF, ... */
	uint64_t error_code;
	uint64_t rip;
	uint64_t address;       /* CR2 for #PF, else 0 */
};

#define VMP_GUEST_LOG_MAX 4096  /* log bytes kept per call; the rest is counted */

struct vmp_guest_result {
	enum vmp_guest_outcome outcome;
	struct vmp_guest_fault fault;   /* VMP_GUEST_FAULT */
	const uint8_t *out;             /* VMP_GUEST_OK: in guest RAM */
	size_t out_len;
	char message[HATCH_ERR_MSG_MAX]; /* for every outcome but OK */
	char log[VMP_GUEST_LOG_MAX];    /* log lines, '\n'-separated */
	size_t log_len;
	uint32_t log_dropped;           /* lines that did not fit */
	uint64_t exits;                 /* KVM exits during the call */
	uint64_t run_ns;                /* wall time inside the run loop */
};

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

const char *vmp_guest_outcome_name(enum vmp_guest_outcome o);

#endif
