/* test_error.c - error messages (ipc/): ipc_strerror's texts and the
 * hatch_err type (set, wrap, truncation). Split from test_frame.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hatchery/cleanup.h"
#include "hatchery/error.h"
#include "hatchery/ipc.h"

/* ---- messages -------------------------------------------------------- */

Test(error, ipc_strerror_distinct_nonempty)
{
	static const int codes[] = { 0, -EMSGSIZE, -ETOOMANYREFS, -EBADMSG,
				     -EAGAIN, -EPIPE, -EINVAL };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(codes); i++) {
		const char *a = ipc_strerror(codes[i]);
		cr_assert_not_null(a);
		cr_assert_gt(strlen(a), 0, "code %d has no text", codes[i]);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(a, ipc_strerror(codes[j]),
					  "codes %d and %d read the same",
					  codes[i], codes[j]);
	}
	/* the size in the message is the real limit */
	char lim[32];
	snprintf(lim, sizeof(lim), "%d", IPC_MAX_MSG);
	cr_assert_not_null(strstr(ipc_strerror(-EMSGSIZE), lim));
}

/* hatch_err: a struct on the heap with exact size, so ASan sees overflow. */
static struct hatch_err *new_err(void)
{
	struct hatch_err *e = malloc(sizeof(*e));
	cr_assert_not_null(e);
	memset(e, 0x5a, sizeof(*e)); /* garbage, as if never touched */
	hatch_err_clear(e);
	return e;
}

Test(error, set_appends_strerror)
{
	struct hatch_err *e = new_err();
	cr_assert_eq(hatch_err_set(e, 6, ENOENT, "open `%s`", "pool.ini"), -1);
	char want[HATCH_ERR_MSG_MAX];
	snprintf(want, sizeof(want), "open `pool.ini`: %s", strerror(ENOENT));
	cr_assert_str_eq(e->msg, want);
	cr_assert_eq(e->code, 6);
	cr_assert_eq(e->sys_errno, ENOENT);

	cr_assert_eq(hatch_err_set(e, 1, 0, "bad %s", "size"), -1);
	cr_assert_str_eq(e->msg, "bad size");
	cr_assert_eq(e->code, 1);
	cr_assert_eq(e->sys_errno, 0);
	free(e);
}

Test(error, wrap_prefixes)
{
	struct hatch_err *e = new_err();
	hatch_err_set(e, 9, EACCES, "open /dev/kvm");
	hatch_err_wrap(e, "pool %s", "web");
	cr_assert_eq(hatch_err_wrap(e, "spawn"), -1);
	char want[HATCH_ERR_MSG_MAX];
	snprintf(want, sizeof(want), "spawn: pool web: open /dev/kvm: %s",
		 strerror(EACCES));
	cr_assert_str_eq(e->msg, want);
	cr_assert_eq(e->code, 9, "wrap changed the code");
	cr_assert_eq(e->sys_errno, EACCES, "wrap changed the errno");
	free(e);
}

Test(error, null_is_harmless)
{
	cr_assert_eq(hatch_err_set(NULL, 1, EIO, "x"), -1);
	cr_assert_eq(hatch_err_wrap(NULL, "y"), -1);
	hatch_err_clear(NULL);
}

Test(error, clear_and_code_names)
{
	struct hatch_err *e = new_err();
	hatch_err_set(e, 7, EIO, "x");
	hatch_err_clear(e);
	cr_assert_eq(e->code, 0);
	cr_assert_eq(e->sys_errno, 0);
	cr_assert_str_eq(e->msg, "");
	cr_assert_str_eq(hatch_err_code_name(7), "POOL_EXHAUSTED");
	cr_assert_str_eq(hatch_err_code_name(0), "OK");
	cr_assert_str_eq(hatch_err_code_name(9999), "UNKNOWN");
	free(e);
}

static void assert_terminated_full(const struct hatch_err *e)
{
	size_t n = strnlen(e->msg, sizeof(e->msg));
	cr_assert_eq(n, sizeof(e->msg) - 1, "length %zu", n);
}

Test(error, set_long_truncates)
{
	struct hatch_err *e = new_err();
	char big[2 * HATCH_ERR_MSG_MAX];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	hatch_err_set(e, 2, ENOENT, "%s", big);
	assert_terminated_full(e);
	cr_assert_eq(strncmp(e->msg, big, sizeof(e->msg) - 1), 0);

	/* the message fits, the strerror suffix only partly */
	size_t fits = sizeof(e->msg) - 5;
	big[fits] = '\0';
	hatch_err_set(e, 2, ENOENT, "%s", big);
	assert_terminated_full(e);
	cr_assert_eq(strncmp(e->msg + fits, ": ", 2), 0);
	cr_assert_eq(strncmp(e->msg + fits + 2, strerror(ENOENT), 2), 0);
	free(e);
}

Test(error, wrap_long_truncates)
{
	struct hatch_err *e = new_err();
	char big[2 * HATCH_ERR_MSG_MAX];
	memset(big, 'o', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';

	/* long old message: the prefix stays whole, the old tail is cut */
	hatch_err_set(e, 2, 0, "%s", big);
	hatch_err_wrap(e, "ctx");
	assert_terminated_full(e);
	cr_assert_eq(strncmp(e->msg, "ctx: ooo", 8), 0, "got \"%.16s...\"", e->msg);

	/* long prefix: it is cut, still followed by ": " and terminated */
	hatch_err_set(e, 2, 0, "old");
	memset(big, 'p', sizeof(big) - 1);
	hatch_err_wrap(e, "%s", big);
	assert_terminated_full(e);
	cr_assert_eq(e->msg[0], 'p');
	cr_assert_eq(strncmp(e->msg + sizeof(e->msg) - 3, ": ", 2), 0);

	/* both fit exactly: nothing lost */
	size_t pl = 100, ol = sizeof(e->msg) - 1 - pl - 2;
	memset(big, 'o', ol);
	big[ol] = '\0';
	hatch_err_set(e, 2, 0, "%s", big);
	memset(big, 'p', pl);
	big[pl] = '\0';
	hatch_err_wrap(e, "%s", big);
	assert_terminated_full(e);
	cr_assert_eq(strncmp(e->msg + pl, ": o", 3), 0);
	cr_assert_eq(e->msg[sizeof(e->msg) - 2], 'o');

	/* wrapping many times never overflows */
	for (int i = 0; i < 200; i++)
		hatch_err_wrap(e, "level %d", i);
	assert_terminated_full(e);
	cr_assert_eq(strncmp(e->msg, "level 199: level 198: ", 22), 0);
	free(e);
}
