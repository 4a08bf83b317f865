/* hatchery_guest_abi.h - the contract between vmproc and a guest (ABI v1).
 *
 * Shared by the host (vmproc/runtime/) and the guest SDK (guest/sdk.c), so it
 * is plain C with fixed-width types only: no libc, no host headers.
 * docs/guest.md explains it in prose.
 *
 * Memory: guest virtual = guest physical (identity map), 4-level paging,
 * built by the host. Everything below HATCH_IMAGE_BASE except the shared
 * page is the runtime's own (GDT, IDT, TSS, page tables, the fault stub and
 * its stack) and is mapped supervisor-only, so the guest (CPL 3) cannot
 * read or change it.
 *
 *   0x0000_0000  unmapped (NULL)
 *   0x0000_1000  runtime tables and fault stub        supervisor only
 *   0x0010_0000  shared page (struct hatch_shared)     user RW, NX
 *   0x0020_0000  guest ELF image window (16 MiB)       per ELF segment
 *   0x0120_0000  input buffer  (1 MiB)                 user RW, NX
 *   0x0130_0000  output buffer (1 MiB)                 user RW, NX
 *   0x0140_0000  unmapped guard (2 MiB)
 *   0x0160_0000  stack (2 MiB, grows down from 0x0180_0000)  user RW, NX
 *   0x0180_0000  heap, up to the end of guest RAM      user RW, NX
 *
 * Calls: one I/O port, HATCH_HC_PORT, written with `outb %al` at CPL 3; AL
 * is the hypercall number (HATCH_HC_*). Arguments and results travel in
 * the shared page and the two buffers, never in registers, so the host
 * needs no KVM_GET_REGS per exit and payloads are copied once with memcpy.
 * The guest's TSS I/O bitmap allows this port alone: any other port is a
 * #GP, reported as a fault.
 */
#ifndef HATCHERY_GUEST_ABI_H
#define HATCHERY_GUEST_ABI_H

#include <stdint.h>

#define HATCH_ABI_VERSION 1u
#define HATCH_SHARED_MAGIC 0x48415443u /* "HATC" */

#define HATCH_HC_PORT 0xe0      /* the one port the guest may use */
#define HATCH_FAULT_PORT 0xe1   /* written by the CPL 0 fault stub only */

/* Hypercall numbers (AL of `outb %al, $HATCH_HC_PORT`). */
enum hatch_hc {
	HATCH_HC_READY = 1,     /* functions are in shared->fn; wait for a request */
	HATCH_HC_DONE = 2,      /* the request in shared->op is answered */
	HATCH_HC_LOG = 3,       /* shared->log[0..log_len) is a log line */
};

/* Requests (shared->op, written by the host before it resumes the guest). */
enum hatch_op {
	HATCH_OP_NONE = 0,
	HATCH_OP_CALL = 1,      /* call fn[fn_index] on the input buffer */
	HATCH_OP_HEARTBEAT = 2, /* answer at once: the guest is alive */
};

/* Status the guest sets with HATCH_HC_DONE. */
enum hatch_status {
	HATCH_STATUS_OK = 0,
	HATCH_STATUS_ERROR = 1,        /* the function failed; shared->error says why */
	HATCH_STATUS_NO_FUNCTION = 2,  /* fn_index out of range */
};

#define HATCH_LAYOUT_NULL_END      0x00001000ull
#define HATCH_SHARED_ADDR          0x00100000ull
#define HATCH_IMAGE_BASE           0x00200000ull
#define HATCH_IMAGE_END            0x01200000ull
#define HATCH_IN_BUF               0x01200000ull
#define HATCH_OUT_BUF              0x01300000ull
#define HATCH_BUF_SIZE             0x00100000ull
#define HATCH_STACK_BASE           0x01600000ull
#define HATCH_STACK_TOP            0x01800000ull
#define HATCH_HEAP_BASE            0x01800000ull
/* Guest RAM must reach past the heap base by at least this much. */
#define HATCH_MIN_MEMORY           (32ull << 20)

#define HATCH_FN_MAX 64
#define HATCH_FN_NAME_MAX 32          /* including the NUL */
#define HATCH_LOG_MAX 1024
#define HATCH_ERROR_MAX 256
#define HATCH_SEED_SIZE 32

struct hatch_shared {
	uint32_t magic;            /* host: HATCH_SHARED_MAGIC */
	uint32_t abi_version;      /* host: HATCH_ABI_VERSION */
	uint64_t heap_base;        /* host: first heap byte */
	uint64_t heap_end;         /* host: end of guest RAM */

	/* Request (host -> guest). */
	uint32_t op;               /* enum hatch_op */
	uint32_t fn_index;
	uint64_t in_len;           /* bytes at HATCH_IN_BUF */

	/* Reply (guest -> host). */
	uint32_t status;           /* enum hatch_status */
	uint32_t error_len;
	uint64_t out_len;          /* bytes at HATCH_OUT_BUF, <= HATCH_BUF_SIZE */
	char error[HATCH_ERROR_MAX];

	/* HATCH_HC_LOG. */
	uint32_t log_len;
	uint32_t reserved0;
	char log[HATCH_LOG_MAX];

	/* HATCH_HC_READY: the guest's functions, in registration order. */
	uint32_t n_fn;
	uint32_t reserved1;
	char fn[HATCH_FN_MAX][HATCH_FN_NAME_MAX];

	/* Uniqueness (host -> guest). At boot the host sets generation 0 and
	 * fresh seed bytes; on every Restore of a snapshot it writes
	 * generation + 1 and new seed bytes before the guest runs again, so
	 * two VMs restored from one snapshot never share them. A guest that
	 * derives secrets or randomness must re-derive them when generation
	 * changes. Appended to ABI v1: these bytes were zero before. */
	uint64_t generation;
	uint8_t seed[HATCH_SEED_SIZE];
};

_Static_assert(sizeof(struct hatch_shared) <= 4096, "the shared page is one page");

#endif
