/* error.h - errors that carry a message up to the user.
 *
 * Functions on user-facing paths take a `struct hatch_err *` and, on failure,
 * fill it and return a negative value (hatch_err_set returns -1 for that
 * purpose). Callers add context on the way up with hatch_err_wrap(), crun
 * style, and the message is turned into a protobuf Error in exactly one place
 * per conversation. `code` is a hatchery.v1.ErrorCode.
 */
#ifndef HATCHERY_ERROR_H
#define HATCHERY_ERROR_H

#include <stdarg.h>

#define HATCH_ERR_MSG_MAX 512

struct hatch_err {
	int code;      /* hatchery.v1.ErrorCode; 0 (OK) when unset */
	int sys_errno; /* errno that caused it, or 0 */
	char msg[HATCH_ERR_MSG_MAX];
};

/* Set *e (if non-NULL). When errnum != 0, ": strerror(errnum)" is appended.
 * Returns -1 so that `return hatch_err_set(...)` reads naturally. */
int hatch_err_set(struct hatch_err *e, int code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Prefix the existing message with "context: ". Returns -1. */
int hatch_err_wrap(struct hatch_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void hatch_err_clear(struct hatch_err *e);

/* Stable name of an ErrorCode ("POOL_EXHAUSTED"); "UNKNOWN" otherwise. */
const char *hatch_err_code_name(int code);

#endif
