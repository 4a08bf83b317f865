/* The daemon suite, part two: clients that misbehave or may not ask
 * (garbage, oversized packets, wrong fds, an unauthorized uid), many fds,
 * and pipelined requests. Same suite as test_daemon.c ("daemon"), same
 * leak checks at the end of each test.
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_tests.h"
#include "harness.h"
#include "hatchery/ipc.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* ---- 7 ------------------------------------------------------------------------ */

/* A Request field 10 (ping) whose length runs past the packet: can never
 * decode. */
static const uint8_t garbage[] = { 0x08, 0x01, 0x52, 0x7f, 0x00, 0xff, 0xfe };

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

Test(daemon, garbage_and_oversized)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 4"));
	cr_assert_null(hatchery__v1__request__unpack(NULL, sizeof(garbage), garbage),
		       "test bug: the garbage decodes");
	cr_assert_null(hatchery__v1__vm_request__unpack(NULL, sizeof(garbage), garbage),
		       "test bug: the garbage decodes");
	struct hatch_client *bystander = h_connect(h);
	ping_ok(bystander, "bystander");

	int raw = h_raw_connect(h);
	raw_ping_ok(raw, 1, "raw connection"); /* accepted by now */

	/* (a) garbage: MALFORMED with id 0, and the connection stays usable. */
	cr_assert_eq(h_send(raw, garbage, sizeof(garbage), NULL, 0), 0);
	expect_error_reply(raw, 0, E(MALFORMED), "garbage");
	raw_ping_ok(raw, 2, "after garbage");
	ping_ok(bystander, "bystander after garbage");

	/* Random packets: one reply each, in order. MALFORMED exactly when
	 * the packet does not decode; otherwise the id is echoed. */
	uint32_t seed = 0x9e3779b9;
	for (int i = 0; i < 64; i++) {
		uint8_t pkt[256];
		size_t len = 1 + xorshift(&seed) % sizeof(pkt);
		for (size_t j = 0; j < len; j++)
			pkt[j] = (uint8_t)xorshift(&seed);
		Hatchery__V1__Request *dec = hatchery__v1__request__unpack(NULL, len, pkt);
		cr_assert_eq(h_send(raw, pkt, len, NULL, 0), 0);
		Hatchery__V1__Reply *rep = recv_reply(raw, H_CLIENT_TIMEOUT_MS, NULL, "random packet");
		if (!dec) {
			cr_assert(rep->error && rep->error->code == E(MALFORMED),
				  "random packet %d (%zu bytes, undecodable): got %s", i, len,
				  rep->error ? hatch_err_code_name(rep->error->code) : "success");
			cr_assert_eq(rep->id, 0);
		} else {
			cr_assert(!rep->error || rep->error->code != E(MALFORMED),
				  "random packet %d decodes, yet MALFORMED", i);
			cr_assert_eq(rep->id, dec->id, "random packet %d: id not echoed", i);
			hatchery__v1__request__free_unpacked(dec, NULL);
		}
		hatch_free(rep);
	}
	raw_ping_ok(raw, 3, "after random packets");

	/* (b) oversized: MESSAGE_TOO_LARGE, then the daemon hangs up. */
	int big = h_raw_connect(h);
	raw_ping_ok(big, 1, "second raw connection");
	size_t blen = 70000;
	uint8_t *bbuf = calloc(1, blen);
	cr_assert_not_null(bbuf);
	memset(bbuf, 0x55, blen);
	cr_assert_eq(h_send(big, bbuf, blen, NULL, 0), 0, "send 70000 bytes");
	free(bbuf);
	expect_error_reply(big, 0, E(MESSAGE_TOO_LARGE), "70000-byte packet");
	char tmp[64];
	ssize_t n = h_recv(big, tmp, sizeof(tmp), NULL, NULL, H_CLIENT_TIMEOUT_MS);
	cr_assert_eq(n, 0, "after MESSAGE_TOO_LARGE the daemon should close: got %zd", n);
	close(big);
	ping_ok(bystander, "bystander after oversized");

	/* (c) an fd where none belongs: UNEXPECTED_FDS, and it is closed. */
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_geq(devnull, 0);
	int before = h_fd_count(h->pid);
	cr_assert_eq(h_send_ping_req(raw, 4, &devnull, 1), 0);
	/* The request decodes: the error carries its id (docs/protocol.md). */
	expect_error_reply(raw, 4, E(UNEXPECTED_FDS), "Ping with an fd");
	int after = h_fd_count(h->pid);
	cr_assert_eq(after, before, "a Ping carrying an fd left hatcheryd with %d fds, was %d",
		     after, before);
	close(devnull);
	raw_ping_ok(raw, 5, "after the fd");

	/* (d) a Request without a body. */
	Hatchery__V1__Request empty = HATCHERY__V1__REQUEST__INIT;
	empty.id = 7; /* id 0 and no body packs to 0 bytes: end of stream */
	cr_assert_eq(h_send_pb(raw, &empty.base, NULL, 0), 0);
	expect_error_reply(raw, 7, E(INVALID_ARGUMENT), "Request without body");
	raw_ping_ok(raw, 8, "after the empty request");

	/* The bystander still gets VMs. */
	ping_ok(bystander, "bystander");
	int vm = acquire_ok(bystander, "p", 5000, NULL);
	vm_ping_ok(vm, "bystander's VM");

	/* On a VM socket: garbage gets MALFORMED and the VM keeps serving. */
	cr_assert_eq(h_send(vm, garbage, sizeof(garbage), NULL, 0), 0);
	ProtobufCMessage *m = NULL;
	int r = h_recv_pb(vm, &hatchery__v1__vm_reply__descriptor, H_CLIENT_TIMEOUT_MS, &m, NULL);
	cr_assert_eq(r, 1, "VM reply to garbage: %d", r);
	Hatchery__V1__VmReply *vr = (Hatchery__V1__VmReply *)m;
	cr_assert(vr->error && vr->error->code == E(MALFORMED), "VM garbage: got %s",
		  vr->error ? hatch_err_code_name(vr->error->code) : "success");
	hatch_free(vr);
	vm_ping_ok(vm, "VM after garbage");

	/* ... an oversized packet gets MESSAGE_TOO_LARGE, the VM stays ... */
	bbuf = calloc(1, blen);
	cr_assert_not_null(bbuf);
	cr_assert_eq(h_send(vm, bbuf, blen, NULL, 0), 0, "send 70000 bytes to the VM");
	free(bbuf);
	r = h_recv_pb(vm, &hatchery__v1__vm_reply__descriptor, H_CLIENT_TIMEOUT_MS, &m, NULL);
	cr_assert_eq(r, 1, "VM reply to an oversized packet: %d", r);
	vr = (Hatchery__V1__VmReply *)m;
	cr_assert(vr->error && vr->error->code == E(MESSAGE_TOO_LARGE), "VM oversized: got %s",
		  vr->error ? hatch_err_code_name(vr->error->code) : "success");
	hatch_free(vr);
	vm_ping_ok(vm, "VM after an oversized packet");

	/* ... and a VmRequest without a body gets INVALID_ARGUMENT. */
	Hatchery__V1__VmRequest vempty = HATCHERY__V1__VM_REQUEST__INIT;
	vempty.id = 9;
	cr_assert_eq(h_send_pb(vm, &vempty.base, NULL, 0), 0);
	r = h_recv_pb(vm, &hatchery__v1__vm_reply__descriptor, H_CLIENT_TIMEOUT_MS, &m, NULL);
	cr_assert_eq(r, 1, "VM reply to an empty request: %d", r);
	vr = (Hatchery__V1__VmReply *)m;
	cr_assert(vr->error && vr->error->code == E(INVALID_ARGUMENT), "VM empty request: got %s",
		  vr->error ? hatch_err_code_name(vr->error->code) : "success");
	cr_assert_eq(vr->id, 9);
	hatch_free(vr);
	vm_ping_ok(vm, "VM after an empty request");
	vm_release_ok(vm);

	close(raw);
	hatch_close(bystander);
	h_finish(h);
}

/* ---- 8 ------------------------------------------------------------------------ */

#define NOBODY 65534

/* In a forked child: become uid/gid 65534 for good. */
static void become_nobody_or_exit(void)
{
	if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) < 0)
		_exit(2);
}

/* Exit codes of the forked clients, for the parent's message. */
static const char *nobody_step(int code)
{
	switch (code) {
	case 2: return "could not switch to uid 65534";
	case 10: return "connect failed";
	case 11: return "Ping was not refused with PERMISSION_DENIED";
	case 12: return "Acquire was not refused with PERMISSION_DENIED";
	case 13: return "Status was not refused with PERMISSION_DENIED";
	case 14: return "Stats was not refused with PERMISSION_DENIED";
	case 20: return "Ping failed for an allowed uid";
	case 21: return "Acquire from the pool allowing 65534 failed";
	case 22: return "the VM leased to uid 65534 did not answer ping";
	case 23: return "VmInfo pid does not match AcquireReply";
	case 24: return "Acquire from the pool not allowing 65534 was not PERMISSION_DENIED";
	case 25: return "VM release failed";
	default: return "unexpected exit code";
	}
}

static void nobody_refused_everywhere(const char *sock)
{
	become_nobody_or_exit();
	struct hatch_client *c = NULL;
	struct hatch_err err = { 0 };
	if (hatch_connect(sock, &c, &err) < 0)
		_exit(10);
	hatch_set_timeout(c, H_CLIENT_TIMEOUT_MS);
	if (hatch_ping(c, NULL, &err) == 0 || err.code != E(PERMISSION_DENIED))
		_exit(11);
	int fd = -1;
	if (hatch_acquire(c, "p", 0, &fd, NULL, &err) == 0 || err.code != E(PERMISSION_DENIED))
		_exit(12);
	Hatchery__V1__StatusReply *st = NULL;
	if (hatch_status(c, &st, &err) == 0 || err.code != E(PERMISSION_DENIED))
		_exit(13);
	Hatchery__V1__StatsReply *ss = NULL;
	if (hatch_stats(c, &ss, &err) == 0 || err.code != E(PERMISSION_DENIED))
		_exit(14);
	_exit(0);
}

static void nobody_per_pool(const char *sock)
{
	become_nobody_or_exit();
	struct hatch_client *c = NULL;
	struct hatch_err err = { 0 };
	if (hatch_connect(sock, &c, &err) < 0)
		_exit(10);
	hatch_set_timeout(c, H_CLIENT_TIMEOUT_MS);
	if (hatch_ping(c, NULL, &err) < 0)
		_exit(20);
	int vm = -1;
	Hatchery__V1__AcquireReply *info = NULL;
	if (hatch_acquire(c, "open", 5000, &vm, &info, &err) < 0)
		_exit(21);
	if (hatch_vm_ping(vm, &err) < 0)
		_exit(22);
	Hatchery__V1__VmInfoReply *vi = NULL;
	if (hatch_vm_info(vm, &vi, &err) < 0 || vi->pid != info->child_pid)
		_exit(23);
	int fd = -1;
	if (hatch_acquire(c, "closed", 0, &fd, NULL, &err) == 0 ||
	    err.code != E(PERMISSION_DENIED))
		_exit(24);
	if (hatch_vm_release(vm, &err) < 0)
		_exit(25);
	_exit(0);
}

static void run_as_nobody(struct harness *h, void (*fn)(const char *sock), const char *what)
{
	/* mkdtemp made the directory 0700: let uid 65534 reach the socket. */
	cr_assert_eq(chmod(h->dir, 0711), 0, "chmod %s: %s", h->dir, strerror(errno));
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0)
		fn(h->sock); /* never returns */
	int st = 0;
	uint64_t until = h_now_ms() + 2 * H_WAIT_MS;
	pid_t w;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && h_now_ms() < until)
		usleep(5000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		cr_assert_fail("%s: the uid 65534 client hung", what);
	}
	cr_assert(WIFEXITED(st), "%s: the uid 65534 client died of signal %d", what,
		  WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	cr_assert_eq(WEXITSTATUS(st), 0, "%s: %s (exit %d)", what,
		     nobody_step(WEXITSTATUS(st)), WEXITSTATUS(st));
}

Test(daemon, unauthorized_uid_refused)
{
	h_require_kvm();
	if (geteuid() != 0)
		t_skip("needs root to switch to uid 65534: not run");
	/* A uid in no pool's allow_uids: every request refused. */
	struct harness *h = h_start(POOL("p", "min_idle = 1\nmax = 2\nallow_uids = 0"));
	run_as_nobody(h, nobody_refused_everywhere, "uid in no allow_uids");
	struct h_stats s = h_stats(h, "p");
	cr_assert_eq(s.acquisitions, 0, "a refused uid got a VM");
	h_finish(h);

	/* Allowed by one pool only: that pool leases, the other refuses. */
	h = h_start(POOL("open", "min_idle = 1\nmax = 2\nallow_uids = 0, 65534")
		    POOL("closed", "min_idle = 1\nmax = 2\nallow_uids = 0"));
	run_as_nobody(h, nobody_per_pool, "uid allowed by one pool");
	cr_assert_eq(h_stats(h, "open").acquisitions, 1);
	cr_assert_eq(h_stats(h, "closed").acquisitions, 0);
	h_finish(h);
}

/* ---- 13 ----------------------------------------------------------------------- */

/* The protocol: "More than 4 fds on one packet: the same" (UNEXPECTED_FDS,
 * the fds closed). Whatever the count, none may stay in the daemon. Every
 * case is tried and the leaky ones reported together. */
Test(daemon, many_fds_not_leaked)
{
	struct harness *h = h_start(POOL("p", "min_idle = 1\nmax = 2"));
	int raw = h_raw_connect(h);
	raw_ping_ok(raw, 1, "raw connection");
	int fds[12];
	for (int i = 0; i < 12; i++) {
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cr_assert_geq(fds[i], 0);
	}
	char leaks[512] = "";
	size_t ll = 0;
	const size_t counts[] = { 1, 2, 4, 5, 6, 7, 8, 12 };
	uint64_t id = 10;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		int before = h_fd_count(h->pid);
		cr_assert_eq(h_send_ping_req(raw, id, fds, counts[i]), 0);
		char what[64];
		snprintf(what, sizeof(what), "Ping carrying %zu fds", counts[i]);
		/* Up to IPC_MAX_FDS the request is read and decoded, so the
		 * error carries its id; more are refused before the packet's
		 * length is known: id 0 (docs/protocol.md). */
		expect_error_reply(raw, counts[i] <= IPC_MAX_FDS ? id : 0, E(UNEXPECTED_FDS),
				   what);
		int after = h_fd_count(h->pid);
		if (after != before) {
			fprintf(stderr, "after a Ping carrying %zu fds:\n", counts[i]);
			h_print_fds(h->pid);
			ll += (size_t)snprintf(leaks + ll, sizeof(leaks) - ll,
					       "; Ping with %zu fds: %d -> %d fds", counts[i],
					       before, after);
		}
		raw_ping_ok(raw, ++id, what);
	}
	/* A zero-length packet carrying an fd is a message, not end of stream. */
	int before = h_fd_count(h->pid);
	cr_assert_eq(h_send(raw, "", 0, fds, 1), 0);
	expect_error_reply(raw, 0, E(UNEXPECTED_FDS), "empty packet with an fd");
	int after = h_fd_count(h->pid);
	if (after != before)
		ll += (size_t)snprintf(leaks + ll, sizeof(leaks) - ll,
				       "; empty packet with 1 fd: %d -> %d fds", before, after);
	raw_ping_ok(raw, ++id, "after an empty packet with an fd");

	/* An oversized packet with fds: the fds are closed as well. */
	for (size_t nf = 1; nf <= 6; nf += 5) {
		int big = h_raw_connect(h);
		raw_ping_ok(big, 1, "second raw connection");
		before = h_fd_count(h->pid);
		uint8_t *buf = calloc(1, 70000);
		cr_assert_not_null(buf);
		cr_assert_eq(h_send(big, buf, 70000, fds, nf), 0);
		free(buf);
		expect_error_reply(big, 0, E(MESSAGE_TOO_LARGE), "oversized packet with fds");
		char tmp[16];
		cr_assert_eq(h_recv(big, tmp, sizeof(tmp), NULL, NULL, H_CLIENT_TIMEOUT_MS), 0);
		close(big);
		/* Its connection is gone too: one fd fewer. */
		after = h_wait_fds(h->pid, before - 1, 3000);
		if (after != before - 1) {
			fprintf(stderr, "after an oversized packet with %zu fds:\n", nf);
			h_print_fds(h->pid);
			ll += (size_t)snprintf(leaks + ll, sizeof(leaks) - ll,
					       "; oversized packet with %zu fds: %d -> %d fds "
					       "(expected %d: its connection closed)",
					       nf, before, after, before - 1);
		}
	}
	cr_assert_eq(ll, 0, "hatcheryd kept fds it was sent%s", leaks);
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	close(raw);
	h_finish(h);
}

/* ---- 14 ----------------------------------------------------------------------- */

static bool nobody_waiting(void *arg)
{
	struct pool_arg *a = arg;
	return h_counts(a->h, a->pool).waiting == 0;
}

/* The protocol: replies come in request order, one per request, so a client
 * may pipeline; requests behind a waiting Acquire are answered after it. A
 * waiter that hangs up leaves the queue. */
Test(daemon, pipelined_replies_in_order)
{
	struct harness *h = h_start(POOL("p", "min_idle = 1\nmax = 2")
				    POOL("full", "min_idle = 0\nmax = 1"));
	int raw = h_raw_connect(h);
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__StatusRequest stq = HATCHERY__V1__STATUS_REQUEST__INIT;
	req.id = 2;
	req.body_case = HATCHERY__V1__REQUEST__BODY_STATUS;
	req.status = &stq;
	cr_assert_eq(h_send_ping_req(raw, 1, NULL, 0), 0);
	cr_assert_eq(h_send_pb(raw, &req.base, NULL, 0), 0);
	cr_assert_eq(h_send_acquire_req(raw, 3, "nope", 0), 0);
	cr_assert_eq(h_send_ping_req(raw, 4, NULL, 0), 0);
	const int want_case[] = { HATCHERY__V1__REPLY__BODY_PING, HATCHERY__V1__REPLY__BODY_STATUS,
				  HATCHERY__V1__REPLY__BODY__NOT_SET, HATCHERY__V1__REPLY__BODY_PING };
	for (int i = 0; i < 4; i++) {
		Hatchery__V1__Reply *rep = recv_reply(raw, H_CLIENT_TIMEOUT_MS, NULL, "pipelined");
		cr_assert_eq(rep->id, (uint64_t)i + 1, "pipelined reply %d has id %llu", i + 1,
			     (unsigned long long)rep->id);
		cr_assert_eq(rep->body_case, want_case[i], "pipelined reply %d: body %d", i + 1,
			     rep->body_case);
		hatch_free(rep);
	}

	/* Behind a waiting Acquire: fill "full", then queue Acquire + Ping. */
	struct hatch_client *c = h_connect(h);
	int vm = acquire_ok(c, "full", 5000, NULL);
	cr_assert_eq(h_send_acquire_req(raw, 5, "full", 300), 0);
	cr_assert_eq(h_send_ping_req(raw, 6, NULL, 0), 0);
	expect_error_reply(raw, 5, E(POOL_EXHAUSTED), "waiting acquire, pipelined");
	Hatchery__V1__Reply *rep = recv_reply(raw, H_CLIENT_TIMEOUT_MS, NULL, "ping behind acquire");
	cr_assert_eq(rep->id, 6);
	cr_assert_eq(rep->body_case, HATCHERY__V1__REPLY__BODY_PING);
	hatch_free(rep);

	/* A waiter that hangs up is dropped from the queue. */
	cr_assert_eq(h_send_acquire_req(raw, 7, "full", 30000), 0);
	struct pool_arg a = { .h = h, .pool = "full" };
	cr_assert(h_wait_until(waiting_one, &a, H_WAIT_MS), "acquire not waiting");
	close(raw);
	cr_assert(h_wait_until(nobody_waiting, &a, H_WAIT_MS),
		  "a waiter that hung up is still queued");
	vm_release_ok(vm);
	hatch_close(c);
	h_finish(h);
}
