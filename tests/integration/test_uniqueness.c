/* Uniqueness across clones, through a real jailed hatcheryd: two VMs
 * restored from one snapshot get generation 1 and fresh seed bytes each,
 * so the default guest's `random` differs between them and from the
 * original's own next output; two boots differ too.
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF"
#endif

#define POOL(name, kind, body)                                                   \
	"[pool \"" name "\"]\nkind = " kind "\n" body "memory_mib = 64"           \
	"\nmin_idle = 2\nmax = 4\n"
#define POOLS POOL("b", "booted", "guest = " HATCH_DEFAULT_GUEST "\n") \
	POOL("e", "empty", "")

TestSuite(uniqueness, .fini = h_teardown, .timeout = 60);

static int acquire_vm(struct harness *h, const char *pool)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	Hatchery__V1__AcquireReply *info = NULL;
	cr_assert_eq(hatch_acquire(h->c, pool, 5000, &fd, &info, &err), 0,
		     "Acquire from \"%s\": %s", pool, err.msg);
	hatch_free(info);
	return fd;
}

/* The default guest's `random`: 16 bytes, then the generation (u64 LE). */
static uint64_t call_random(int vm, uint8_t out[16], const char *what)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, "random", "", 0, 0, &rep, &err), 0, "%s: random: %s (%s)",
		     what, err.msg, hatch_err_code_name(err.code));
	cr_assert_eq(rep->result.len, 24, "%s: random returned %zu bytes", what, rep->result.len);
	memcpy(out, rep->result.data, 16);
	uint64_t gen = 0;
	for (int k = 0; k < 8; k++)
		gen |= (uint64_t)rep->result.data[16 + k] << (8 * k);
	hatch_free(rep);
	return gen;
}

static void differ(const uint8_t a[16], const uint8_t b[16], const char *what)
{
	cr_assert_neq(memcmp(a, b, 16), 0, "%s: the same 16 random bytes", what);
}

static int tmpfile_in(struct harness *h)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/snap.XXXXXX", h->dir);
	int fd = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(fd, 0, "mkostemp: %s", strerror(errno));
	unlink(path);
	return fd;
}

static void restore(int vm, int snap, const char *what)
{
	Hatchery__V1__VmRestoreReply *rr = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_restore(vm, snap, &rr, &err), 0, "%s: Restore: %s (%s)", what,
		     err.msg, hatch_err_code_name(err.code));
	hatch_free(rr);
}

Test(uniqueness, clones_of_one_snapshot_differ)
{
	struct harness *h = h_start(POOLS);
	struct hatch_err err = { 0 };
	uint8_t orig[16], orig_next[16], c1[16], c2[16], c1b[16];
	int b = acquire_vm(h, "b");
	cr_assert_eq(call_random(b, orig, "original"), 0, "a booted VM is generation 0");

	int snap = tmpfile_in(h);
	Hatchery__V1__VmSaveReply *sr = NULL;
	cr_assert_eq(hatch_vm_save(b, snap, &sr, &err), 0, "Save: %s", err.msg);
	hatch_free(sr);

	int e1 = acquire_vm(h, "e"), e2 = acquire_vm(h, "e");
	restore(e1, snap, "clone 1");
	restore(e2, snap, "clone 2");
	cr_assert_eq(call_random(e1, c1, "clone 1"), 1, "clone 1: generation");
	cr_assert_eq(call_random(e2, c2, "clone 2"), 1, "clone 2: generation");
	cr_assert_eq(call_random(b, orig_next, "original, after Save"), 0,
		     "Save does not change the original's generation");
	differ(c1, c2, "two clones");
	differ(c1, orig_next, "clone 1 and the original's next output");
	differ(c2, orig_next, "clone 2 and the original's next output");
	differ(c1, orig, "clone 1 and the original's output before Save");
	cr_assert_eq(call_random(e1, c1b, "clone 1, again"), 1);
	differ(c1, c1b, "clone 1's two calls");

	/* A snapshot of a clone restores as generation 2. */
	int snap2 = tmpfile_in(h);
	cr_assert_eq(hatch_vm_save(e1, snap2, &sr, &err), 0, "Save of a clone: %s", err.msg);
	hatch_free(sr);
	int e3 = acquire_vm(h, "e");
	restore(e3, snap2, "clone of a clone");
	uint8_t c3[16];
	cr_assert_eq(call_random(e3, c3, "clone of a clone"), 2);
	cr_assert_eq(hatch_vm_release(e3, &err), 0);

	cr_assert_eq(hatch_vm_release(e1, &err), 0);
	cr_assert_eq(hatch_vm_release(e2, &err), 0);
	cr_assert_eq(hatch_vm_release(b, &err), 0);
	close(snap);
	close(snap2);
	h_finish(h);
}

Test(uniqueness, two_boots_differ)
{
	struct harness *h = h_start(POOLS);
	struct hatch_err err = { 0 };
	uint8_t a[16], b[16];
	int v1 = acquire_vm(h, "b"), v2 = acquire_vm(h, "b");
	cr_assert_eq(call_random(v1, a, "boot 1"), 0);
	cr_assert_eq(call_random(v2, b, "boot 2"), 0);
	differ(a, b, "two booted VMs");
	cr_assert_eq(hatch_vm_release(v1, &err), 0);
	cr_assert_eq(hatch_vm_release(v2, &err), 0);
	h_finish(h);
}
