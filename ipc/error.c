/* error.c - struct hatch_err helpers. */
#include <stdio.h>
#include <string.h>

#include "hatchery/error.h"
#include "hatchery/v1/common.pb-c.h"

int hatch_err_set(struct hatch_err *e, int code, int errnum, const char *fmt, ...)
{
	if (!e)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	if (errnum && n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %s",
			 strerror(errnum));
	e->code = code;
	e->sys_errno = errnum;
	return -1;
}

int hatch_err_wrap(struct hatch_err *e, const char *fmt, ...)
{
	if (!e)
		return -1;
	char prefix[HATCH_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	/* Build "prefix: old" in place; the old message moves right and is
	 * cut at the end if the two do not fit together. */
	size_t pl = strnlen(prefix, sizeof(prefix) - 1);
	if (pl + 2 >= sizeof(e->msg))
		pl = sizeof(e->msg) - 3;
	size_t ol = strnlen(e->msg, sizeof(e->msg) - 1);
	if (pl + 2 + ol >= sizeof(e->msg))
		ol = sizeof(e->msg) - 1 - pl - 2;
	memmove(e->msg + pl + 2, e->msg, ol);
	memcpy(e->msg, prefix, pl);
	e->msg[pl] = ':';
	e->msg[pl + 1] = ' ';
	e->msg[pl + 2 + ol] = '\0';
	return -1;
}

void hatch_err_clear(struct hatch_err *e)
{
	if (!e)
		return;
	e->code = 0;
	e->sys_errno = 0;
	e->msg[0] = '\0';
}

const char *hatch_err_code_name(int code)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
		&hatchery__v1__error_code__descriptor, code);
	return v ? v->name : "UNKNOWN";
}
