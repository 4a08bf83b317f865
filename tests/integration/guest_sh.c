/* guest_sh.c - see guest_sh.h. */
#include <criterion/criterion.h>
#include <string.h>

#include "guest_sh.h"
#include "hatchery/client.h"

struct guest_out guest_out;

static void collect(void *ctx, int stream, const void *data, size_t len)
{
	struct guest_out *p = ctx;
	int s = stream == HATCH_STDERR;
	size_t room = sizeof(p->buf[s]) - 1 - p->len[s];
	memcpy(p->buf[s] + p->len[s], data, len < room ? len : room);
	p->len[s] += len < room ? len : room;
	p->buf[s][p->len[s]] = '\0';
}

int guest_sh_rc(int vm, const char *script)
{
	const char *argv[] = { "sh", "-c", script };
	struct hatch_exec x = { .argv = argv, .argc = 3 };
	Hatchery__V1__VmExecReply *r = NULL;
	struct hatch_err err = { 0 };
	memset(guest_out.len, 0, sizeof(guest_out.len));
	guest_out.buf[0][0] = guest_out.buf[1][0] = '\0';
	cr_assert_eq(hatch_vm_exec(vm, &x, collect, &guest_out, &r, &err), 0, "%s: %s", script,
		     err.msg);
	int rc = r->signal ? 128 + r->signal : r->exit_code;
	hatch_free(r);
	return rc;
}

const char *guest_sh(int vm, const char *script)
{
	int rc = guest_sh_rc(vm, script);
	cr_assert_eq(rc, 0, "%s: exit %d, stderr %s", script, rc, guest_out.buf[1]);
	return guest_out.buf[0];
}
