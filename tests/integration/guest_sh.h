/* guest_sh.h - `sh -c SCRIPT` in a leased Linux VM, its output kept, for
 * the Linux integration tests (test_linux_snapshot, test_linux_disk_pool).
 * Failures of the call itself fail the test. The output buffer is one,
 * static: valid until the next call. */
#ifndef HATCHERY_TESTS_GUEST_SH_H
#define HATCHERY_TESTS_GUEST_SH_H

#include <stddef.h>

struct guest_out {
	char buf[2][1 << 16]; /* stdout, stderr; NUL-terminated, cut at 64 KiB */
	size_t len[2];
};
extern struct guest_out guest_out;

/* The script's exit code (128 + N if it died of signal N). */
int guest_sh_rc(int vm, const char *script);

/* The script must exit 0; returns its stdout. */
const char *guest_sh(int vm, const char *script);

#endif
