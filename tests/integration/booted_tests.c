/* booted_tests.c - helpers shared by the booted suite's files; see
 * booted_tests.h. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "booted_tests.h"
#include "harness.h"
#include "hatchery/ipc.h"

const char *const default_fns[N_DEFAULT_FNS] = { "echo",  "sha256", "alloc", "fault",
						 "spin",  "ports",  "log",   "random" };

int acquire_vm(struct harness *h, const char *pool, pid_t *pid)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	Hatchery__V1__AcquireReply *info = NULL;
	cr_assert_eq(hatch_acquire(h->c, pool, 5000, &fd, &info, &err), 0,
		     "Acquire from \"%s\": %s (%s)", pool, err.msg,
		     hatch_err_code_name(err.code));
	cr_assert_geq(fd, 0);
	if (pid)
		*pid = (pid_t)info->child_pid;
	hatch_free(info);
	return fd;
}

void fill_random(uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		cr_assert_gt(n, 0, "getrandom: %s", strerror(errno));
		got += (size_t)n;
	}
}

/* hatch_vm_call that must succeed; the caller frees the reply. */
Hatchery__V1__VmCallReply *call_ok(int vm, const char *fn, const void *in,
					  size_t len, const char *what)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, fn, in, len, 0, &rep, &err), 0,
		     "%s: call %s (%zu bytes): %s (%s)", what, fn, len, err.msg,
		     hatch_err_code_name(err.code));
	return rep;
}

/* echo round trip of `len` random bytes, compared byte for byte. */
void echo_ok(int vm, size_t len, const char *what)
{
	uint8_t *in = malloc(len ? len : 1);
	cr_assert_not_null(in);
	fill_random(in, len);
	Hatchery__V1__VmCallReply *rep = call_ok(vm, "echo", in, len, what);
	cr_assert_eq(rep->result.len, len, "%s: echo of %zu bytes returned %zu", what, len,
		     rep->result.len);
	if (len) {
		size_t i = 0;
		while (i < len && rep->result.data[i] == in[i])
			i++;
		cr_assert_eq(i, len, "%s: echo of %zu bytes differs at byte %zu", what, len, i);
	}
	hatch_free(rep);
	free(in);
}

/* hatch_vm_call that must fail with `code`; returns the message. */
void call_fails(int vm, const char *fn, const void *in, size_t len,
		       uint32_t deadline_ms, int code, struct hatch_err *err,
		       const char *what)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	*err = (struct hatch_err){ 0 };
	int r = hatch_vm_call(vm, fn, in, len, deadline_ms, &rep, err);
	if (r == 0)
		hatch_free(rep);
	cr_assert_eq(r, -1, "%s: call %s succeeded, expected %s", what, fn,
		     hatch_err_code_name(code));
	cr_assert_eq(err->code, code, "%s: call %s: %s (\"%s\"), expected %s", what, fn,
		     hatch_err_code_name(err->code), err->msg, hatch_err_code_name(code));
}

/* One raw VmRequest (with fds) and its VmReply; fails the test on a
 * transport error. The caller frees the reply. */
Hatchery__V1__VmReply *vm_rpc(int vm, Hatchery__V1__VmRequest *req, const int *fds,
				     size_t nfds, const char *what)
{
	cr_assert_eq(h_send_pb(vm, &req->base, fds, nfds), 0, "%s: send", what);
	ProtobufCMessage *m = NULL;
	int r = h_recv_pb(vm, &hatchery__v1__vm_reply__descriptor, H_CLIENT_TIMEOUT_MS, &m, NULL);
	cr_assert_eq(r, 1, "%s: expected a VmReply, got %s", what,
		     r == 0 ? "end of stream" : r == -EBADMSG ? "a packet that is no VmReply"
							     : strerror(-r));
	return (Hatchery__V1__VmReply *)m;
}

Hatchery__V1__VmReply *raw_call(int vm, uint64_t id, const char *fn, const void *in,
				       size_t len, uint32_t deadline_ms, const char *what)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmCallRequest body = HATCHERY__V1__VM_CALL_REQUEST__INIT;
	body.function = (char *)fn;
	body.payload.data = (uint8_t *)in;
	body.payload.len = len;
	body.deadline_ms = deadline_ms;
	req.id = id;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_CALL;
	req.call = &body;
	return vm_rpc(vm, &req, NULL, 0, what);
}

Hatchery__V1__VmReply *raw_load(int vm, uint64_t id, const int *fds, size_t nfds,
				       const char *what)
{
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmLoadRequest body = HATCHERY__V1__VM_LOAD_REQUEST__INIT;
	req.id = id;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_LOAD;
	req.load = &body;
	return vm_rpc(vm, &req, fds, nfds, what);
}

/* The reply must be an error `code` with reply id `id`; returns it for
 * more checks (the caller frees it). */
Hatchery__V1__VmReply *expect_error(Hatchery__V1__VmReply *rep, uint64_t id, int code,
					   const char *what)
{
	cr_assert_not_null(rep->error, "%s: no error in the reply (body %d), expected %s", what,
			   rep->body_case, hatch_err_code_name(code));
	cr_assert_eq(rep->error->code, code, "%s: %s (\"%s\"), expected %s", what,
		     hatch_err_code_name(rep->error->code), rep->error->message,
		     hatch_err_code_name(code));
	cr_assert_eq(rep->id, id, "%s: reply id %llu, expected %llu", what,
		     (unsigned long long)rep->id, (unsigned long long)id);
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY__NOT_SET,
		     "%s: an error reply with a body", what);
	cr_assert(rep->error->message && rep->error->message[0], "%s: error without a message",
		  what);
	return rep;
}

void expect_eof(int vm, const char *what)
{
	char buf[256];
	ssize_t n = h_recv(vm, buf, sizeof(buf), NULL, NULL, H_WAIT_MS);
	cr_assert_eq(n, 0, "%s: the VM socket should reach end of stream, got %zd (%s)", what,
		     n, n < 0 ? strerror((int)-n) : "another packet");
}

struct pool_arg {
	struct harness *h;
	const char *pool;
	pid_t exclude;
};

/* Back at min_idle idle children, none spawning, and `exclude` not among
 * the children (other leases may go on). */
static bool refilled_without(void *arg)
{
	struct pool_arg *a = arg;
	struct h_counts k = h_counts(a->h, a->pool);
	if (k.idle != k.min_idle || k.spawning)
		return false;
	pid_t pids[64];
	size_t n = h_child_pids(a->h, a->pool, NULL, pids, 64);
	return !h_pid_in(a->exclude, pids, n < 64 ? n : 64);
}

/* The child ended (the VM is never reused) and the pool forked another. */
void expect_replaced(struct harness *h, const char *pool, pid_t pid, const char *what)
{
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "%s: child %d still exists (state %c)", what,
		  pid, h_proc_state(pid));
	struct pool_arg a = { .h = h, .pool = pool, .exclude = pid };
	cr_assert(h_wait_until(refilled_without, &a, H_WAIT_MS),
		  "%s: pool \"%s\" not refilled to min_idle without child %d", what, pool, pid);
}

/* [value, value + size) of a function symbol in the guest ELF's symbol
 * table (the default guest is built with -g and not stripped). */


struct sym_range guest_symbol(const char *name)
{
	int fd = open(HATCH_DEFAULT_GUEST, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", HATCH_DEFAULT_GUEST, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	size_t len = (size_t)st.st_size;
	uint8_t *f = malloc(len);
	cr_assert_not_null(f);
	cr_assert_eq(read(fd, f, len), (ssize_t)len, "read %s", HATCH_DEFAULT_GUEST);
	close(fd);
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f;
	cr_assert(len >= sizeof(*eh) && eh->e_shentsize == sizeof(Elf64_Shdr) &&
		  eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) <= len,
		  "%s: no usable section headers", HATCH_DEFAULT_GUEST);
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(f + eh->e_shoff);
	struct sym_range r = { 0, 0 };
	for (unsigned i = 0; i < eh->e_shnum && !r.hi; i++) {
		if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum)
			continue;
		const Elf64_Shdr *strs = &sh[sh[i].sh_link];
		cr_assert(sh[i].sh_offset + sh[i].sh_size <= len &&
			  strs->sh_offset + strs->sh_size <= len, "symbol table out of the file");
		const Elf64_Sym *sym = (const Elf64_Sym *)(f + sh[i].sh_offset);
		const char *names = (const char *)(f + strs->sh_offset);
		for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++) {
			if (sym[k].st_name >= strs->sh_size ||
			    ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC ||
			    strncmp(names + sym[k].st_name, name, strs->sh_size - sym[k].st_name))
				continue;
			r.lo = sym[k].st_value;
			r.hi = sym[k].st_value + sym[k].st_size;
			break;
		}
	}
	free(f);
	cr_assert(r.hi > r.lo, "no function %s in %s's symbol table", name, HATCH_DEFAULT_GUEST);
	return r;
}

/* Voluntary context switches of a process: it sleeps in poll() while idle,
 * so each wake-up (a health ping, a request) adds at least one. */
long voluntary_switches(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
	long v = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
			break;
	fclose(f);
	cr_assert_geq(v, 0, "no voluntary_ctxt_switches in %s", path);
	return v;
}
