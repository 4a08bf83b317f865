/* hatchctl snapshot / restore against a real hatcheryd: a warmed guest
 * saved to a 0600 file and restored into two VMs of an empty pool (whose
 * `random` then differs, generation 1 on each), usage errors (exit 2),
 * and a garbage or missing file (exit 1 with the reason). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

TestSuite(cli_snapshot, .fini = h_teardown, .timeout = 60);

static int ctl(char *out, size_t cap, const char *const *args)
{
	return h_run(HATCHCTL_PATH, args, 0, out, cap, 10000);
}

#define CTL(h, out, ...) ctl(out, sizeof(out), (const char *[]){ "-s", (h)->sock, __VA_ARGS__, NULL })

/* The hex after "call random: ...: " (32 bytes random + 16 generation). */
static void random_hex(const char *out, char hex[49])
{
	const char *p = strstr(out, "call random: 24 bytes");
	cr_assert_not_null(p, "no call line: %s", out);
	p = strstr(p, "): ");
	cr_assert_not_null(p, "%s", out);
	memcpy(hex, p + 3, 48);
	hex[48] = '\0';
}

Test(cli_snapshot, snapshot_then_restore_twice)
{
	struct harness *h = h_start("[pool \"b\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST "\n"
				    "memory_mib = 32\nmin_idle = 1\nmax = 2\nallow_uids = 0\n\n"
				    "[pool \"e\"]\nmemory_mib = 32\nmin_idle = 2\nmax = 3\n"
				    "allow_uids = 0\n");
	char out[8192], file[160], junk[160], orig[49], c1[49], c2[49];
	snprintf(file, sizeof(file), "%s/warm.snap", h->dir);
	snprintf(junk, sizeof(junk), "%s/junk.snap", h->dir);

	cr_assert_eq(CTL(h, out, "snapshot", "b", file, "--call", "random", ""), 0, "%s", out);
	random_hex(out, orig);
	cr_assert_not_null(strstr(out, "saved "), "%s", out);
	cr_assert_not_null(strstr(out, "memory write "), "%s", out);
	struct stat st;
	cr_assert_eq(stat(file, &st), 0, "%s: %s", file, strerror(errno));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	char size[64];
	snprintf(size, sizeof(size), ": %lld bytes", (long long)st.st_size);
	cr_assert_not_null(strstr(out, size), "the size (%s) is printed: %s", size, out);

	cr_assert_eq(CTL(h, out, "restore", "e", file, "--call", "random", ""), 0, "%s", out);
	cr_assert_not_null(strstr(out, "map "), "%s", out);
	cr_assert_not_null(strstr(out, "vcpu state "), "%s", out);
	random_hex(out, c1);
	cr_assert_eq(CTL(h, out, "restore", "e", file, "--call", "random", ""), 0, "%s", out);
	random_hex(out, c2);
	cr_assert_str_eq(orig + 32, "0000000000000000", "the original: generation 0");
	cr_assert_str_eq(c1 + 32, "0100000000000000", "a clone: generation 1");
	cr_assert_str_eq(c2 + 32, "0100000000000000", "a clone: generation 1");
	cr_assert(strncmp(c1, c2, 32) != 0, "two clones gave the same random bytes: %s", c1);
	/* Without --call: the phases alone. */
	cr_assert_eq(CTL(h, out, "restore", "e", file), 0, "%s", out);
	cr_assert_null(strstr(out, "call "), "%s", out);

	/* Usage errors: exit 2 and no VM used. */
	cr_assert_eq(CTL(h, out, "snapshot", "b"), 2, "no FILE: %s", out);
	cr_assert_eq(CTL(h, out, "restore", "e", file, "--call", "random"), 2,
		     "--call without PAYLOAD: %s", out);
	cr_assert_eq(CTL(h, out, "restore", "e", file, "--frob"), 2, "%s", out);
	cr_assert_eq(CTL(h, out, "snapshot", "b", file, "extra"), 2, "%s", out);

	/* A garbage file: the daemon's reason, exit 1. */
	int fd = open(junk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	char garbage[8192];
	memset(garbage, 0x5a, sizeof(garbage));
	cr_assert_eq(write(fd, garbage, sizeof(garbage)), (ssize_t)sizeof(garbage));
	close(fd);
	cr_assert_eq(CTL(h, out, "restore", "e", junk), 1, "garbage: %s", out);
	cr_assert_not_null(strstr(out, "INVALID_ARGUMENT"), "%s", out);
	cr_assert_not_null(strstr(out, "snapshot"), "%s", out);
	unlink(junk);
	cr_assert_eq(CTL(h, out, "restore", "e", junk), 1, "missing file: %s", out);
	cr_assert_not_null(strstr(out, "No such file"), "%s", out);
	/* A VM of an empty pool has nothing to save. */
	cr_assert_eq(CTL(h, out, "snapshot", "e", junk), 1, "%s", out);
	cr_assert_not_null(strstr(out, "FAILED_PRECONDITION"), "%s", out);
	h_finish(h);
}
