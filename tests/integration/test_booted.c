/* Booted pools through a real hatcheryd (jailed): guest function calls on
 * freshly leased VMs, every way the default guest can misbehave, Load into
 * an empty VM, health checks and Info. The guest runtime itself is tested
 * in process by test_guest; here the point is the whole path: the client
 * library or the raw VM protocol, the jailed child, its exit and the
 * supervisor's refill. Each test ends with h_finish (pools back at steady
 * state, no fd leak, no zombie, exit 0 on SIGTERM).
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
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

#include "harness.h"
#include "hatchery/ipc.h"
#include "sha256_ref.h"

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
static const char *const default_fns[] = { "echo", "sha256", "alloc", "fault",
					    "spin", "ports", "log", "random" };
#define N_DEFAULT_FNS (sizeof(default_fns) / sizeof(default_fns[0]))

TestSuite(booted, .fini = h_teardown, .timeout = 60);

/* ---- helpers ----------------------------------------------------------------- */

static int acquire_vm(struct harness *h, const char *pool, pid_t *pid)
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

static void fill_random(uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		cr_assert_gt(n, 0, "getrandom: %s", strerror(errno));
		got += (size_t)n;
	}
}

/* hatch_vm_call that must succeed; the caller frees the reply. */
static Hatchery__V1__VmCallReply *call_ok(int vm, const char *fn, const void *in,
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
static void echo_ok(int vm, size_t len, const char *what)
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
static void call_fails(int vm, const char *fn, const void *in, size_t len,
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
static Hatchery__V1__VmReply *vm_rpc(int vm, Hatchery__V1__VmRequest *req, const int *fds,
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

static Hatchery__V1__VmReply *raw_call(int vm, uint64_t id, const char *fn, const void *in,
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

static Hatchery__V1__VmReply *raw_load(int vm, uint64_t id, const int *fds, size_t nfds,
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
static Hatchery__V1__VmReply *expect_error(Hatchery__V1__VmReply *rep, uint64_t id, int code,
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

static void expect_eof(int vm, const char *what)
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
static void expect_replaced(struct harness *h, const char *pool, pid_t pid, const char *what)
{
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "%s: child %d still exists (state %c)", what,
		  pid, h_proc_state(pid));
	struct pool_arg a = { .h = h, .pool = pool, .exclude = pid };
	cr_assert(h_wait_until(refilled_without, &a, H_WAIT_MS),
		  "%s: pool \"%s\" not refilled to min_idle without child %d", what, pool, pid);
}

/* [value, value + size) of a function symbol in the guest ELF's symbol
 * table (the default guest is built with -g and not stripped). */
struct sym_range {
	uint64_t lo, hi;
};

static struct sym_range guest_symbol(const char *name)
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
static long voluntary_switches(pid_t pid)
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

/* ---- 1: echo, byte-exact, up to the packet's limits ----------------------- */

Test(booted, echo_is_byte_exact_up_to_the_packet_limit)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	/* The largest echo is RESULT_MAX (57,344) bytes, not ~60,000. */
	const size_t sizes[] = { 0, 1, 4096, RESULT_MAX };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		echo_ok(vm, sizes[i], "echo");

	/* One byte more than a result may be (and 60,000): the function ran,
	 * its result does not fit in a reply. GUEST_ERROR, the VM lives on. */
	struct hatch_err err;
	uint8_t *big = calloc(1, IPC_MAX_MSG + 1);
	cr_assert_not_null(big);
	const size_t too_big[] = { RESULT_MAX + 1, 60000 };
	for (size_t i = 0; i < 2; i++) {
		call_fails(vm, "echo", big, too_big[i], 0, E(GUEST_ERROR), &err,
			   "echo, result too big");
		cr_assert_not_null(strstr(err.msg, "does not fit in one reply packet"),
				   "echo of %zu bytes: unclear message \"%s\"", too_big[i], err.msg);
		echo_ok(vm, 100, "echo after a result that did not fit");
	}

	/* The request side: the largest payload whose VmRequest is exactly
	 * one 64 KiB packet is accepted (sha256 of it, checked on the host);
	 * one byte more is MESSAGE_TOO_LARGE (id 0) and the VM serves on. */
	Hatchery__V1__VmRequest req = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmCallRequest body = HATCHERY__V1__VM_CALL_REQUEST__INIT;
	body.function = (char *)"sha256";
	body.payload.data = big;
	req.id = 7;
	req.body_case = HATCHERY__V1__VM_REQUEST__BODY_CALL;
	req.call = &body;
	size_t max = IPC_MAX_MSG;
	for (body.payload.len = max;
	     protobuf_c_message_get_packed_size(&req.base) > IPC_MAX_MSG;)
		body.payload.len--;
	max = body.payload.len;
	cr_assert_eq(protobuf_c_message_get_packed_size(&req.base), IPC_MAX_MSG,
		     "a payload of %zu bytes should make a packet of exactly 64 KiB", max);
	fill_random(big, max + 1);
	Hatchery__V1__VmReply *rep = raw_call(vm, 7, "sha256", big, max, 0, "largest request");
	cr_assert_null(rep->error, "sha256 of %zu bytes (a 64 KiB packet): %s", max,
		       rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__VM_REPLY__BODY_CALL);
	uint8_t want[32];
	sha256_ref(big, max, want);
	cr_assert_eq(rep->call->result.len, 32);
	cr_assert_arr_eq(rep->call->result.data, want, 32, "sha256 of the largest request");
	hatch_free(rep);

	rep = raw_call(vm, 8, "sha256", big, max + 1, 0, "request one byte too big");
	expect_error(rep, 0, E(MESSAGE_TOO_LARGE), "a 64 KiB + 1 packet");
	hatch_free(rep);
	/* The client library refuses to send it at all (same function name,
	 * so the same packet size). */
	Hatchery__V1__VmCallReply *cr = NULL;
	err = (struct hatch_err){ 0 };
	cr_assert_eq(hatch_vm_call(vm, "sha256", big, max + 1, 0, &cr, &err), -1,
		     "hatch_vm_call sent a payload that does not fit in a packet");
	cr_assert_eq(err.code, E(INVALID_ARGUMENT),
		     "an oversized request is the caller's mistake, not an outage: %s (%s)",
		     hatch_err_code_name(err.code), err.msg);
	echo_ok(vm, 4096, "echo after an oversized request");
	cr_assert_eq(kill(pid, 0), 0, "child %d died serving oversized requests", pid);
	free(big);

	struct hatch_err rerr = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &rerr), 0, "release: %s", rerr.msg);
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "released child %d still exists", pid);
	struct h_stats s = h_stats(h, "b");
	cr_assert_eq(s.unexpected_exits, 0);
	h_finish(h);
}

/* ---- 2: sha256 against the host's -------------------------------------------- */

Test(booted, sha256_matches_the_host)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	int vm = acquire_vm(h, "b", NULL);
	/* Padding edges (55/56/64), several blocks, and a big one. */
	const size_t sizes[] = { 0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 1000, 4096, 40000, 65000 };
	uint8_t *in = malloc(65000);
	cr_assert_not_null(in);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill_random(in, sizes[i]);
		Hatchery__V1__VmCallReply *rep = call_ok(vm, "sha256", in, sizes[i], "sha256");
		uint8_t want[32];
		sha256_ref(in, sizes[i], want);
		cr_assert_eq(rep->result.len, 32, "sha256 of %zu bytes: %zu-byte result", sizes[i],
			     rep->result.len);
		cr_assert_arr_eq(rep->result.data, want, 32,
				 "sha256 of %zu random bytes differs from the host's", sizes[i]);
		hatch_free(rep);
	}
	free(in);
	/* "abc", FIPS 180-2 appendix B.1: the host reference is right too. */
	static const uint8_t abc[32] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
		0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	Hatchery__V1__VmCallReply *rep = call_ok(vm, "sha256", "abc", 3, "sha256 abc");
	cr_assert_eq(rep->result.len, 32);
	cr_assert_arr_eq(rep->result.data, abc, 32, "sha256(\"abc\")");
	hatch_free(rep);
	close(vm);
	h_finish(h);
}

/* ---- 3: a page fault ends the VM, and only that VM ------------------------- */

Test(booted, fault_reports_the_page_fault_and_the_vm_is_replaced)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 2\nmax = 4"));
	struct sym_range fn = guest_symbol("hatch_fn_fault");
	pid_t pid, other_pid;
	int vm = acquire_vm(h, "b", &pid);
	int other = acquire_vm(h, "b", &other_pid);
	echo_ok(vm, 10, "before the fault");

	/* The default guest's `fault` with no payload reads address 0. */
	Hatchery__V1__VmReply *rep = raw_call(vm, 3, "fault", NULL, 0, 0, "fault");
	expect_error(rep, 3, E(GUEST_FAULT), "fault");
	const Hatchery__V1__GuestFault *gf = rep->error->guest_fault;
	cr_assert_not_null(gf, "GUEST_FAULT without guest_fault: \"%s\"", rep->error->message);
	cr_assert_eq(gf->vector, 14, "vector %u, expected 14 (#PF): %s", gf->vector,
		     rep->error->message);
	cr_assert_eq(gf->address, 0, "faulting address %#llx, expected 0 (the NULL read)",
		     (unsigned long long)gf->address);
	cr_assert_eq(gf->error_code & 7, 4, "error code %#llx: expected a user-mode read of a "
		     "page not present", (unsigned long long)gf->error_code);
	cr_assert(gf->rip >= fn.lo && gf->rip < fn.hi,
		  "rip %#llx is not inside the guest's fault function [%#llx, %#llx)",
		  (unsigned long long)gf->rip, (unsigned long long)fn.lo,
		  (unsigned long long)fn.hi);
	char rip[32];
	snprintf(rip, sizeof(rip), "rip %#llx", (unsigned long long)gf->rip);
	cr_assert(strstr(rep->error->message, "#PF") && strstr(rep->error->message, rip),
		  "the message should name the #PF and %s: \"%s\"", rip, rep->error->message);
	hatch_free(rep);

	/* The reply was the last message: the child exits, a new one comes. */
	expect_eof(vm, "after GUEST_FAULT");
	close(vm);
	expect_replaced(h, "b", pid, "faulted VM");

	/* The other lease never noticed. */
	cr_assert_eq(kill(other_pid, 0), 0, "the other leased child %d died", other_pid);
	echo_ok(other, 1000, "the other VM after its sibling faulted");
	pid_t leased[4];
	cr_assert_eq(h_child_pids(h, "b", "leased", leased, 4), 1);
	cr_assert_eq(leased[0], other_pid);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(other, &err), 0, "release: %s", err.msg);
	h_finish(h);
}

/* ---- 4: a guest that never returns ----------------------------------------- */

Test(booted, spin_hits_its_deadline_and_the_vm_is_replaced)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	struct hatch_err err;
	uint64_t t0 = h_now_ms();
	call_fails(vm, "spin", NULL, 0, 100, E(DEADLINE_EXCEEDED), &err, "spin");
	uint64_t dt = h_now_ms() - t0;
	cr_assert_geq(dt, 100, "DEADLINE_EXCEEDED after %llu ms, before the 100 ms deadline",
		      (unsigned long long)dt);
	cr_assert_leq(dt, 600, "DEADLINE_EXCEEDED after %llu ms for a 100 ms deadline",
		      (unsigned long long)dt);
	cr_assert_not_null(strstr(err.msg, "100 ms"), "message: \"%s\"", err.msg);
	expect_eof(vm, "after DEADLINE_EXCEEDED");
	close(vm);
	expect_replaced(h, "b", pid, "spun VM");
	h_finish(h);
}

/* ---- 5: I/O ports and MMIO ------------------------------------------------------ */

Test(booted, ports_and_mmio_are_refused_and_the_vm_is_replaced)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	struct sym_range fn = guest_symbol("hatch_fn_ports");
	static const struct {
		const char *arg, *says;
	} k[] = {
		{ "", "I/O port it may not" },   /* outb to 0x80 */
		{ "in", "I/O port it may not" }, /* inb from 0x64 */
		{ "mmio", "#PF" },               /* the LAPIC: nothing but RAM is mapped */
	};
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "ports \"%s\"", k[i].arg);
		pid_t pid;
		int vm = acquire_vm(h, "b", &pid);
		Hatchery__V1__VmReply *rep =
			raw_call(vm, 5, "ports", k[i].arg, strlen(k[i].arg), 0, what);
		expect_error(rep, 5, E(GUEST_FAULT), what);
		cr_assert_not_null(strstr(rep->error->message, k[i].says), "%s: \"%s\"", what,
				   rep->error->message);
		const Hatchery__V1__GuestFault *gf = rep->error->guest_fault;
		if (strcmp(k[i].arg, "mmio") == 0) {
			cr_assert_not_null(gf, "%s: no guest_fault", what);
			cr_assert_eq(gf->vector, 14);
			cr_assert_eq(gf->address, 0xfee00000ull, "%s: address %#llx", what,
				     (unsigned long long)gf->address);
			cr_assert(gf->rip >= fn.lo && gf->rip < fn.hi, "%s: rip %#llx", what,
				  (unsigned long long)gf->rip);
		}
		hatch_free(rep);
		expect_eof(vm, what);
		close(vm);
		expect_replaced(h, "b", pid, what);
	}
	h_finish(h);
}

/* ---- 6: the heap ------------------------------------------------------------------- */

Test(booted, alloc_within_memory_works_beyond_it_is_a_guest_error)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	Hatchery__V1__VmCallReply *rep = call_ok(vm, "alloc", "4", 1, "alloc 4 MiB");
	cr_assert_eq(rep->result.len, strlen("touched 4 MiB"));
	cr_assert_arr_eq(rep->result.data, "touched 4 MiB", rep->result.len);
	hatch_free(rep);
	/* All of it: the 8 MiB heap of a 32 MiB VM. */
	rep = call_ok(vm, "alloc", "8", 1, "alloc the whole heap");
	cr_assert_arr_eq(rep->result.data, "touched 8 MiB", strlen("touched 8 MiB"));
	hatch_free(rep);

	struct hatch_err err;
	const char *too_much[] = { "9", "64", "100000" };
	for (size_t i = 0; i < 3; i++) {
		call_fails(vm, "alloc", too_much[i], strlen(too_much[i]), 0, E(GUEST_ERROR), &err,
			   "alloc beyond memory");
		cr_assert_not_null(strstr(err.msg, "out of memory"), "alloc %s MiB: \"%s\"",
				   too_much[i], err.msg);
		cr_assert_not_null(strstr(err.msg, "the heap has 8 MiB"), "alloc %s MiB: \"%s\"",
				   too_much[i], err.msg);
	}
	/* GUEST_ERROR leaves the VM usable, its heap too. */
	echo_ok(vm, 64, "echo after out of memory");
	rep = call_ok(vm, "alloc", "8", 1, "alloc after out of memory");
	hatch_free(rep);
	cr_assert_eq(kill(pid, 0), 0, "child %d died of a GUEST_ERROR", pid);
	close(vm);
	h_finish(h);
}

/* ---- 7: an unknown function --------------------------------------------------------- */

Test(booted, unknown_function_is_not_found_and_the_vm_lives_on)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	struct hatch_err err;
	const char *names[] = { "no_such_function", "", "ECHO", "echo2" };
	for (size_t i = 0; i < 4; i++) {
		call_fails(vm, names[i], "x", 1, 0, E(NOT_FOUND), &err, "unknown function");
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "\"%s\"", names[i]);
		cr_assert_not_null(strstr(err.msg, quoted), "the message does not name %s: \"%s\"",
				   quoted, err.msg);
		echo_ok(vm, 32, "echo after NOT_FOUND");
	}
	cr_assert_eq(kill(pid, 0), 0, "child %d died after NOT_FOUND", pid);
	struct hatch_err rerr = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &rerr), 0, "release: %s", rerr.msg);
	cr_assert_eq(h_stats(h, "b").unexpected_exits, 0);
	h_finish(h);
}

/* ---- 8: Load into an empty VM -------------------------------------------------------- */

static int tmpfile_with(struct harness *h, const void *data, size_t len)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/load.XXXXXX", h->dir);
	int fd = mkostemp(path, O_CLOEXEC);
	cr_assert_geq(fd, 0, "mkostemp: %s", strerror(errno));
	unlink(path);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	return fd;
}

static void *read_default_guest(size_t *len)
{
	int fd = open(HATCH_DEFAULT_GUEST, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", HATCH_DEFAULT_GUEST, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	void *b = malloc(*len);
	cr_assert_not_null(b);
	cr_assert_eq(read(fd, b, *len), (ssize_t)*len);
	close(fd);
	return b;
}

static void ping_ok(int vm, const char *what)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_ping(vm, &err), 0, "%s: VM ping: %s (%s)", what, err.msg,
		     hatch_err_code_name(err.code));
}

Test(booted, load_into_an_empty_vm)
{
	struct harness *h = h_start(EMPTY("e", "min_idle = 1\nmax = 3")
				    BOOTED("b", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "e", &pid);
	int nfds0 = h_fd_count(pid);
	cr_assert_gt(nfds0, 0, "count the fds of child %d", pid);

	/* No guest yet. */
	Hatchery__V1__VmReply *rep = raw_call(vm, 1, "echo", "x", 1, 0, "call before Load");
	hatch_free(expect_error(rep, 1, E(FAILED_PRECONDITION), "call before Load"));

	/* Load carries exactly one fd. */
	rep = raw_load(vm, 2, NULL, 0, "Load without an fd");
	hatch_free(expect_error(rep, 2, E(UNEXPECTED_FDS), "Load without an fd"));
	int guest = open(HATCH_DEFAULT_GUEST, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(guest, 0, "open %s: %s", HATCH_DEFAULT_GUEST, strerror(errno));
	int two[2] = { guest, guest };
	rep = raw_load(vm, 3, two, 2, "Load with two fds");
	hatch_free(expect_error(rep, 3, E(UNEXPECTED_FDS), "Load with two fds"));
	/* ... and no other request carries any. */
	Hatchery__V1__VmRequest preq = HATCHERY__V1__VM_REQUEST__INIT;
	Hatchery__V1__VmPingRequest pbody = HATCHERY__V1__VM_PING_REQUEST__INIT;
	preq.id = 4;
	preq.body_case = HATCHERY__V1__VM_REQUEST__BODY_PING;
	preq.ping = &pbody;
	rep = vm_rpc(vm, &preq, &guest, 1, "Ping with an fd");
	/* It decoded: the error carries its id (docs/protocol.md). */
	hatch_free(expect_error(rep, 4, E(UNEXPECTED_FDS), "Ping with an fd"));
	/* More fds than a packet may carry: discarded before it is decoded,
	 * so id 0; the VM serves on (the requests below are answered). */
	int five[5] = { guest, guest, guest, guest, guest };
	rep = vm_rpc(vm, &preq, five, 5, "Ping with five fds");
	hatch_free(expect_error(rep, 0, E(UNEXPECTED_FDS), "Ping with five fds"));

	/* Not an ELF, an empty file, a pipe: refused, the VM stays empty. */
	uint8_t junk[4096];
	fill_random(junk, sizeof(junk));
	int bad = tmpfile_with(h, junk, sizeof(junk));
	rep = raw_load(vm, 5, &bad, 1, "Load of random bytes");
	expect_error(rep, 5, E(INVALID_ARGUMENT), "Load of random bytes");
	cr_assert_not_null(strstr(rep->error->message, "ELF"), "unclear: \"%s\"",
			   rep->error->message);
	hatch_free(rep);
	close(bad);
	int empty = tmpfile_with(h, "", 0);
	rep = raw_load(vm, 6, &empty, 1, "Load of an empty file");
	hatch_free(expect_error(rep, 6, E(INVALID_ARGUMENT), "Load of an empty file"));
	close(empty);
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	rep = raw_load(vm, 7, &pfd[0], 1, "Load of a pipe");
	hatch_free(expect_error(rep, 7, E(INVALID_ARGUMENT), "Load of a pipe"));
	close(pfd[0]);
	close(pfd[1]);
	ping_ok(vm, "after the refused Loads");
	/* Every fd it was sent is closed again. */
	int nfds1 = h_fd_count(pid);
	cr_assert_eq(nfds1, nfds0, "child %d holds %d fds after the refused Loads, %d before",
		     pid, nfds1, nfds0);
	rep = raw_call(vm, 8, "echo", "x", 1, 0, "call after refused Loads");
	hatch_free(expect_error(rep, 8, E(FAILED_PRECONDITION), "call after refused Loads"));

	/* The real thing, through the client library. */
	Hatchery__V1__VmLoadReply *lr = NULL;
	struct hatch_err lerr = { 0 };
	cr_assert_eq(hatch_vm_load(vm, guest, &lr, &lerr), 0, "hatch_vm_load: %s (%s)",
		     lerr.msg, hatch_err_code_name(lerr.code));
	cr_assert_eq(lr->n_functions, N_DEFAULT_FNS, "Load lists %zu functions",
		     lr->n_functions);
	for (size_t i = 0; i < N_DEFAULT_FNS; i++) {
		bool found = false;
		for (size_t j = 0; j < lr->n_functions; j++)
			found |= strcmp(lr->functions[j], default_fns[i]) == 0;
		cr_assert(found, "Load's function list lacks %s", default_fns[i]);
	}
	cr_assert_gt(lr->boot_ns, 0);
	hatch_free(lr);
	echo_ok(vm, 5000, "echo after Load");
	/* The ELF stays mapped; its fd is closed. */
	cr_assert_eq(h_fd_count(pid), nfds0, "child %d holds %d fds after Load, %d before", pid,
		     h_fd_count(pid), nfds0);
	/* Once. */
	rep = raw_load(vm, 10, &guest, 1, "a second Load");
	hatch_free(expect_error(rep, 10, E(FAILED_PRECONDITION), "a second Load"));
	echo_ok(vm, 1, "echo after a second Load");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "release: %s", err.msg);
	expect_replaced(h, "e", pid, "released loaded VM");

	/* A booted pool's VM has its guest already. */
	int bvm = acquire_vm(h, "b", NULL);
	rep = raw_load(bvm, 11, &guest, 1, "Load into a booted VM");
	hatch_free(expect_error(rep, 11, E(FAILED_PRECONDITION), "Load into a booted VM"));
	echo_ok(bvm, 1, "booted VM after a refused Load");
	close(bvm);

	/* A guest that parses but cannot boot (ud2 at its entry point) takes
	 * the VM with it. */
	size_t len;
	uint8_t *elf = read_default_guest(&len);
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)elf;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(elf + eh->e_phoff);
	bool patched = false;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || eh->e_entry < ph[i].p_vaddr ||
		    eh->e_entry + 2 > ph[i].p_vaddr + ph[i].p_filesz)
			continue;
		uint8_t *at = elf + ph[i].p_offset + (eh->e_entry - ph[i].p_vaddr);
		at[0] = 0x0f;
		at[1] = 0x0b;
		patched = true;
	}
	cr_assert(patched, "no segment holds the entry point");
	int ud = tmpfile_with(h, elf, len);
	free(elf);
	pid_t upid;
	int uvm = acquire_vm(h, "e", &upid);
	rep = raw_load(uvm, 12, &ud, 1, "Load of a guest that faults at start");
	expect_error(rep, 12, E(GUEST_FAULT), "Load of a guest that faults at start");
	cr_assert_not_null(strstr(rep->error->message, "#UD"), "\"%s\"", rep->error->message);
	hatch_free(rep);
	close(ud);
	expect_eof(uvm, "after a failed boot");
	close(uvm);
	expect_replaced(h, "e", upid, "VM whose guest did not boot");
	close(guest);
	h_finish(h);
}

/* ---- 9: health checks on booted children ------------------------------------------ */

Test(booted, health_checks_pass_through_the_guest)
{
	/* Intervals and the window scale with the slowdown: under the
	 * emulator a heartbeat alone may take longer than 45 ms. */
	unsigned interval = t_ms(50), timeout = t_ms(45);
	struct harness *h = h_start(BOOTED("b", "min_idle = 2\nmax = 3\n"
					      "health_interval_ms = %u\nhealth_timeout_ms = %u"),
				    interval, timeout);
	struct h_stats s0 = h_stats(h, "b");
	pid_t pids[4];
	cr_assert_eq(h_child_pids(h, "b", "ready", pids, 4), 2);
	long sw0[2] = { voluntary_switches(pids[0]), voluntary_switches(pids[1]) };

	/* Eight intervals. Each check wakes the idle child, which runs its
	 * guest's heartbeat (vmproc answers only if the guest does) and pongs. */
	uint64_t t0 = h_now_ms();
	usleep(8 * interval * 1000);
	uint64_t dt = h_now_ms() - t0;

	long sw1[2] = { voluntary_switches(pids[0]), voluntary_switches(pids[1]) };
	struct h_stats s1 = h_stats(h, "b");
	pid_t now[4];
	cr_assert_eq(h_child_pids(h, "b", "ready", now, 4), 2);
	for (int i = 0; i < 2; i++) {
		cr_assert(h_pid_in(pids[i], now, 2), "child %d was replaced during health checks",
			  pids[i]);
		/* At least half the checks that were due: the count proves the
		 * checks happened, not just that nothing failed. */
		long due = (long)(dt / interval) / 2;
		cr_assert_geq(sw1[i] - sw0[i], due,
			      "child %d woke %ld times in %llu ms: health checks every %u ms "
			      "should have woken it at least %ld times", pids[i], sw1[i] - sw0[i],
			      (unsigned long long)dt, interval, due);
	}
	cr_assert_eq(s1.health_failures, 0, "%llu health failures",
		     (unsigned long long)s1.health_failures);
	cr_assert_eq(s1.unexpected_exits, 0, "%llu unexpected exits (a failed heartbeat ends "
		     "the child)", (unsigned long long)s1.unexpected_exits);
	cr_assert_eq(s1.spawned, s0.spawned, "children were spawned during the health checks");

	/* The guests are still fine after all those heartbeats. */
	int vm = acquire_vm(h, "b", NULL);
	echo_ok(vm, 100, "echo after health checks");
	close(vm);
	h_finish(h);
}

/* ---- 10: Info --------------------------------------------------------------------------- */

Test(booted, info_lists_the_guest_functions)
{
	struct harness *h = h_start(BOOTED("b", "min_idle = 1\nmax = 2")
				    EMPTY("e", "min_idle = 1\nmax = 2"));
	pid_t pid;
	int vm = acquire_vm(h, "b", &pid);
	Hatchery__V1__VmInfoReply *vi = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0, "VM info: %s", err.msg);
	cr_assert_str_eq(vi->kind, "booted");
	cr_assert_str_eq(vi->pool, "b");
	cr_assert_eq(vi->pid, (uint32_t)pid);
	cr_assert_eq(vi->memory_mib, 32);
	cr_assert(vi->jailed, "the child is not jailed");
	cr_assert_eq(vi->n_guest_functions, N_DEFAULT_FNS, "Info lists %zu guest functions",
		     vi->n_guest_functions);
	for (size_t i = 0; i < N_DEFAULT_FNS; i++) {
		bool found = false;
		for (size_t j = 0; j < vi->n_guest_functions; j++)
			found |= strcmp(vi->guest_functions[j], default_fns[i]) == 0;
		cr_assert(found, "Info's guest_functions lacks %s", default_fns[i]);
	}
	cr_assert_gt(vi->guest_boot_ns, 0, "guest_boot_ns is 0");
	cr_assert_lt(vi->guest_boot_ns, 1000000000ull, "guest_boot_ns %llu: over the 1 s boot "
		     "deadline", (unsigned long long)vi->guest_boot_ns);
	cr_assert_lt(vi->guest_boot_ns, vi->ready_ns, "booting is part of the way to ready");
	hatch_free(vi);
	close(vm);

	/* An empty VM has none. */
	vm = acquire_vm(h, "e", NULL);
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0, "VM info: %s", err.msg);
	cr_assert_str_eq(vi->kind, "empty");
	cr_assert_eq(vi->n_guest_functions, 0);
	cr_assert_eq(vi->guest_boot_ns, 0);
	hatch_free(vi);
	close(vm);
	h_finish(h);
}
