/* hatchery_guest.h - the guest SDK: write functions the host can call.
 *
 * A guest is a static, freestanding x86-64 ELF linked with the SDK's
 * library (libhatch_guest.a: the entry point, the request loop, a few
 * libc-style helpers) and its linker script (guest.ld). It runs at CPL 3
 * with no kernel: no syscalls, no threads, no interrupts. See docs/guest.md.
 *
 *   #include <hatchery_guest.h>
 *
 *   HATCH_GUEST_FUNCTION(echo)
 *   {
 *       hatch_memcpy(call->out, call->in, call->in_len);
 *       call->out_len = call->in_len;
 *       return 0;
 *   }
 *
 * A function returns 0 on success (call->out_len bytes of call->out are the
 * result) or non-zero on failure, with a message set by hatch_fail(). It
 * may log with hatch_log(). Anything else it does wrong (a fault, an
 * endless loop, a forbidden port) ends the call with an error on the host,
 * and the VM is thrown away.
 */
#ifndef HATCHERY_GUEST_H
#define HATCHERY_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "hatchery_guest_abi.h"

struct hatch_call {
	const uint8_t *in;      /* the payload, in_len bytes (read-only by contract) */
	uint64_t in_len;
	uint8_t *out;           /* the result buffer, out_cap bytes */
	uint64_t out_cap;
	uint64_t out_len;       /* set by the function */
};

typedef int (*hatch_fn_t)(struct hatch_call *call);

struct hatch_fn_desc {
	const char *name;       /* < HATCH_FN_NAME_MAX bytes */
	hatch_fn_t fn;
};

/* Define and register a function named `fname` (a C identifier). The
 * descriptor goes into the section "hatch_fn", which the SDK walks at
 * start-up to tell the host which functions exist. */
#define HATCH_GUEST_FUNCTION(fname)                                            \
	static int hatch_fn_##fname(struct hatch_call *call);                  \
	static const struct hatch_fn_desc hatch_desc_##fname                   \
		__attribute__((used, section("hatch_fn"), aligned(8))) = {     \
			#fname, hatch_fn_##fname };                            \
	static int hatch_fn_##fname(__attribute__((unused)) struct hatch_call *call)

/* Fail the current call with `msg` (copied, cut at HATCH_ERROR_MAX - 1).
 * Returns 1, so that `return hatch_fail("...")` reads naturally. */
int hatch_fail(const char *msg);

/* Send one log line to the host (cut at HATCH_LOG_MAX bytes). One exit to
 * the host per line; the host keeps at most 4 KiB per call and counts the
 * rest as dropped. */
void hatch_log(const char *msg);
void hatch_log_n(const char *msg, size_t len);

/* A bump allocator over the heap (HATCH_HEAP_BASE .. end of guest RAM).
 * 16-byte aligned; NULL when the heap is exhausted. Nothing is freed one
 * by one: hatch_heap_reset() drops everything. */
void *hatch_alloc(size_t size);
void hatch_heap_reset(void);
uint64_t hatch_heap_size(void);

/* Uniqueness. A VM restored from a snapshot runs on from the very bytes
 * the snapshot holds, and so would every other VM restored from it: any
 * secret, key or PRNG state the guest derived before the snapshot is
 * shared by all its clones. The host therefore gives each VM a generation
 * (0 after boot, +1 on every restore) and HATCH_SEED_SIZE fresh random
 * bytes at boot and on every restore. A guest that derives anything that
 * must be unique from the seed must check hatch_guest_generation() before
 * using it (at the start of each call is enough: the host restores only
 * between calls) and re-derive it when the generation changed. */
uint64_t hatch_guest_generation(void);
/* Copy min(len, HATCH_SEED_SIZE) seed bytes of the current generation to
 * buf; returns the number copied. */
size_t hatch_guest_seed(void *buf, size_t len);

/* Freestanding helpers (the compiler may also emit calls to memcpy,
 * memset, memmove and memcmp: the SDK defines them). */
void *hatch_memcpy(void *dst, const void *src, size_t n);
void *hatch_memset(void *dst, int c, size_t n);
size_t hatch_strlen(const char *s);
/* Decimal representation of v into buf (at least 21 bytes); returns length. */
size_t hatch_utoa(uint64_t v, char *buf);

#endif
