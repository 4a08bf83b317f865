/* booted_tests.h - helpers shared by the booted suite's files
 * (test_booted.c: calls and misbehaving guests; test_booted_load.c: Load
 * into an empty VM). Every function fails the test on what it does not
 * expect, from the test's own thread. */
#ifndef HATCHERY_BOOTED_TESTS_H
#define HATCHERY_BOOTED_TESTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF (build/guest/default.elf)"
#endif

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* A booted pool of the default guest; 32 MiB is the least a guest runs in,
 * which leaves it an 8 MiB heap (docs/guest.md, "Memory layout"). */
#define BOOTED(name, body)                                                     \
	"[pool \"" name "\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST "\n" \
	"memory_mib = 32\n" body "\n"
#define EMPTY(name, body) "[pool \"" name "\"]\nkind = empty\nmemory_mib = 32\n" body "\n"

#define HEAP_MIB 8u /* 32 MiB of RAM minus the 24 MiB below HATCH_HEAP_BASE */

/* The largest result a call can return: vmproc keeps 8 KiB of the 64 KiB
 * reply packet for the envelope and the guest's log (RESULT_MAX in
 * vmproc/child/child.h). A request's payload may be larger: only the
 * packet bounds it. */
#define RESULT_MAX (IPC_MAX_MSG - 8192)

/* The default guest's functions (guest/default/main.c). */
#define N_DEFAULT_FNS 8u
extern const char *const default_fns[N_DEFAULT_FNS];

struct sym_range {
	uint64_t lo, hi;
};

int acquire_vm(struct harness *h, const char *pool, pid_t *pid);
void fill_random(uint8_t *buf, size_t len);
Hatchery__V1__VmCallReply *call_ok(int vm, const char *fn, const void *in,
					  size_t len, const char *what);
void echo_ok(int vm, size_t len, const char *what);
void call_fails(int vm, const char *fn, const void *in, size_t len,
		       uint32_t deadline_ms, int code, struct hatch_err *err,
		       const char *what);
Hatchery__V1__VmReply *vm_rpc(int vm, Hatchery__V1__VmRequest *req, const int *fds,
				     size_t nfds, const char *what);
Hatchery__V1__VmReply *raw_call(int vm, uint64_t id, const char *fn, const void *in,
				       size_t len, uint32_t deadline_ms, const char *what);
Hatchery__V1__VmReply *raw_load(int vm, uint64_t id, const int *fds, size_t nfds,
				       const char *what);
Hatchery__V1__VmReply *expect_error(Hatchery__V1__VmReply *rep, uint64_t id, int code,
					   const char *what);
void expect_eof(int vm, const char *what);
void expect_replaced(struct harness *h, const char *pool, pid_t pid, const char *what);
struct sym_range guest_symbol(const char *name);
long voluntary_switches(pid_t pid);

#endif
