/* Integration tests: a real hatcheryd, real KVM children, the real client
 * library and the raw wire protocol. Each test starts its own daemon on a
 * temporary socket (harness.h) and ends with the leak checks: the pools back
 * at steady state, the daemon's fd count back at its start-up baseline, no
 * zombie children, and a clean exit 0 on SIGTERM.
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

#include "harness.h"
#include "hatchery/ipc.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* A [pool] section: every pool's VMs are small. */
#define POOL(name, body) "[pool \"" name "\"]\nmemory_mib = 16\n" body "\n"

TestSuite(daemon, .fini = h_teardown, .timeout = 60);

/* ---- helpers local to these tests ------------------------------------------ */

static int acquire_ok(struct hatch_client *c, const char *pool, uint32_t deadline_ms,
		      Hatchery__V1__AcquireReply **info)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_acquire(c, pool, deadline_ms, &fd, info, &err), 0,
		     "Acquire from \"%s\": %s (%s)", pool, err.msg,
		     hatch_err_code_name(err.code));
	cr_assert_geq(fd, 0);
	return fd;
}

static void vm_ping_ok(int vm_fd, const char *what)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_ping(vm_fd, &err), 0, "%s: VM ping: %s (%s)", what,
		     err.msg, hatch_err_code_name(err.code));
}

static void vm_release_ok(int vm_fd)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm_fd, &err), 0, "VM release: %s", err.msg);
}

static void ping_ok(struct hatch_client *c, const char *what)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_ping(c, NULL, &err), 0, "%s: Ping: %s (%s)", what,
		     err.msg, hatch_err_code_name(err.code));
}

/* Receive one Reply on a raw connection; fails the test on anything else. */
static Hatchery__V1__Reply *recv_reply(int fd, unsigned timeout_ms, int *fd_out,
				       const char *what)
{
	ProtobufCMessage *m = NULL;
	int r = h_recv_pb(fd, &hatchery__v1__reply__descriptor, timeout_ms, &m, fd_out);
	cr_assert_eq(r, 1, "%s: expected a Reply, got %s", what,
		     r == 0 ? "end of stream" : r == -EBADMSG ? "a packet that is no Reply"
							     : strerror(-r));
	return (Hatchery__V1__Reply *)m;
}

static void expect_error_reply(int fd, uint64_t id, int code, const char *what)
{
	Hatchery__V1__Reply *rep = recv_reply(fd, H_CLIENT_TIMEOUT_MS, NULL, what);
	cr_assert_not_null(rep->error, "%s: reply carries no error (body %d)", what,
			   rep->body_case);
	cr_assert_eq(rep->error->code, code, "%s: error %s (\"%s\"), expected %s", what,
		     hatch_err_code_name(rep->error->code), rep->error->message,
		     hatch_err_code_name(code));
	cr_assert_eq(rep->id, id, "%s: reply id %llu, expected %llu", what,
		     (unsigned long long)rep->id, (unsigned long long)id);
	cr_assert_eq(rep->body_case, HATCHERY__V1__REPLY__BODY__NOT_SET,
		     "%s: error reply also carries a body", what);
	hatch_free(rep);
}

static void raw_ping_ok(int fd, uint64_t id, const char *what)
{
	cr_assert_eq(h_send_ping_req(fd, id, NULL, 0), 0, "%s: send Ping", what);
	Hatchery__V1__Reply *rep = recv_reply(fd, H_CLIENT_TIMEOUT_MS, NULL, what);
	cr_assert_null(rep->error, "%s: Ping failed: %s", what,
		       rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__REPLY__BODY_PING, "%s", what);
	cr_assert_eq(rep->id, id, "%s: reply id", what);
	hatch_free(rep);
}

struct pool_arg {
	struct harness *h;
	const char *pool;
	pid_t exclude;       /* a pid that must not be among the children */
	unsigned want_idle;
	unsigned max_total;  /* for sampling: fail if ever above (0: no check) */
	unsigned max_seen;
};

/* Sample the pool; every sample checks the bound on live children. */
static struct h_counts sample(struct pool_arg *a)
{
	struct h_counts k = h_counts(a->h, a->pool);
	unsigned total = k.idle + k.leased + k.spawning;
	if (total > a->max_seen)
		a->max_seen = total;
	if (a->max_total) {
		cr_assert_leq(total, a->max_total,
			      "pool \"%s\": idle %u + leased %u + spawning %u exceeds max %u",
			      a->pool, k.idle, k.leased, k.spawning, a->max_total);
		cr_assert_leq(k.children, a->max_total,
			      "pool \"%s\": %u children alive (dying included), max %u",
			      a->pool, k.children, a->max_total);
	}
	return k;
}

static bool idle_at_least(void *arg)
{
	struct pool_arg *a = arg;
	return sample(a).idle >= a->want_idle;
}

static bool waiting_one(void *arg)
{
	return sample(arg).waiting == 1;
}

/* Back at min_idle, all ready, and `exclude` not among the children. */
static bool refilled_without(void *arg)
{
	struct pool_arg *a = arg;
	struct h_counts k = h_counts(a->h, a->pool);
	if (k.idle != k.min_idle || k.children != k.idle || k.not_ready)
		return false;
	pid_t pids[64];
	size_t n = h_child_pids(a->h, a->pool, NULL, pids, 64);
	return !h_pid_in(a->exclude, pids, n < 64 ? n : 64);
}

static bool child_gone_from_status(void *arg)
{
	struct pool_arg *a = arg;
	pid_t pids[64];
	size_t n = h_child_pids(a->h, a->pool, NULL, pids, 64);
	return !h_pid_in(a->exclude, pids, n < 64 ? n : 64);
}

/* ---- 1 ------------------------------------------------------------------------ */

Test(daemon, acquire_n_distinct)
{
	struct harness *h = h_start(POOL("p", "min_idle = 4\nmax = 8"));
	pid_t ready[8];
	cr_assert_eq(h_child_pids(h, "p", "ready", ready, 8), 4, "4 ready children at start");

	struct hatch_client *c = h_connect(h);
	int vm[4];
	pid_t pid[4];
	for (int i = 0; i < 4; i++) {
		Hatchery__V1__AcquireReply *info = NULL;
		vm[i] = acquire_ok(c, "p", 5000, &info);
		pid[i] = (pid_t)info->child_pid;
		cr_assert(info->hit, "acquire %d: 4 children were ready, yet hit == false", i);
		cr_assert(h_pid_in(pid[i], ready, 4),
			  "acquire %d: pid %d was not one of the ready children", i, pid[i]);
		for (int j = 0; j < i; j++)
			cr_assert_neq(pid[i], pid[j], "acquires %d and %d got the same child %d",
				      j, i, pid[i]);

		Hatchery__V1__VmInfoReply *vi = NULL;
		struct hatch_err err = { 0 };
		cr_assert_eq(hatch_vm_info(vm[i], &vi, &err), 0, "VM info: %s", err.msg);
		cr_assert_eq(vi->pid, info->child_pid,
			     "VM says pid %u, AcquireReply said %u", vi->pid, info->child_pid);
		cr_assert_eq(vi->child_id, info->child_id, "child_id mismatch");
		cr_assert_str_eq(vi->pool, "p");
		cr_assert_eq(vi->memory_mib, 16);
		hatch_free(vi);
		hatch_free(info);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(kill(pid[i], 0), 0, "leased child %d not alive: %s", pid[i],
			     strerror(errno));
		vm_ping_ok(vm[i], "leased VM");
	}
	pid_t leased[8];
	cr_assert_eq(h_child_pids(h, "p", "leased", leased, 8), 4, "4 leased in status");
	for (int i = 0; i < 4; i++)
		cr_assert(h_pid_in(pid[i], leased, 4), "pid %d not leased in status", pid[i]);

	/* The pool refills to min_idle beside the leases. A leased child costs
	 * the daemon 2 fds (control socket, pidfd; its VM socket's end went to
	 * the client), an idle one 3 (that end too), and `c` one more: 4 idle
	 * children at the baseline, 4 idle + 4 leased now. */
	struct pool_arg a = { .h = h, .pool = "p", .want_idle = 4, .max_total = 8 };
	cr_assert(h_wait_until(idle_at_least, &a, H_WAIT_MS),
		  "pool did not refill to 4 idle beside 4 leases");
	int want_fds = h->baseline_fds + 1 + 2 * 4;
	int fds = h_wait_fds(h->pid, want_fds, 3000);
	cr_assert_eq(fds, want_fds,
		     "with 8 children and 2 connections hatcheryd holds %d fds; expected "
		     "baseline %d + 1 + 2 per leased child = %d", fds, h->baseline_fds, want_fds);

	for (int i = 0; i < 4; i++)
		vm_release_ok(vm[i]);
	for (int i = 0; i < 4; i++)
		cr_assert(h_wait_pid_gone(pid[i], H_WAIT_MS), "released child %d still exists",
			  pid[i]);
	h_wait_steady(h, H_WAIT_MS);
	pid_t now[8];
	cr_assert_eq(h_child_pids(h, "p", NULL, now, 8), 4);
	for (int i = 0; i < 4; i++)
		cr_assert(!h_pid_in(pid[i], now, 4), "released child %d is back in the pool",
			  pid[i]);

	struct h_stats s = h_stats(h, "p");
	cr_assert_eq(s.acquisitions, 4);
	cr_assert_eq(s.hits, 4);
	cr_assert_eq(s.misses, 0);
	cr_assert_eq(s.unexpected_exits, 0, "released leases are not unexpected exits");
	cr_assert_eq(s.spawned, 8, "4 at start + 4 replacements");
	hatch_close(c);
	h_finish(h);
}

/* ---- 2 ------------------------------------------------------------------------ */

Test(daemon, kill_ready_child_replaced)
{
	struct harness *h = h_start(POOL("p", "min_idle = 3\nmax = 6"));
	struct h_stats s0 = h_stats(h, "p");
	pid_t ready[8];
	cr_assert_eq(h_child_pids(h, "p", "ready", ready, 8), 3);
	pid_t victim = ready[1];
	cr_assert_eq(kill(victim, SIGKILL), 0);

	cr_assert(h_wait_pid_gone(victim, H_WAIT_MS), "killed child %d was not reaped", victim);
	struct pool_arg a = { .h = h, .pool = "p", .exclude = victim };
	cr_assert(h_wait_until(refilled_without, &a, H_WAIT_MS),
		  "pool not back at 3 ready children without %d", victim);
	struct h_stats s1 = h_stats(h, "p");
	cr_assert_eq(s1.unexpected_exits, s0.unexpected_exits + 1,
		     "unexpected_exits %llu -> %llu after SIGKILL of an idle child",
		     (unsigned long long)s0.unexpected_exits,
		     (unsigned long long)s1.unexpected_exits);
	cr_assert_eq(s1.spawned, s0.spawned + 1, "one replacement spawned");
	cr_assert_eq(s1.health_failures, 0);
	h_finish(h);
}

/* ---- 3 ------------------------------------------------------------------------ */

Test(daemon, kill_leased_child_client_eof)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 4"));
	struct h_stats s0 = h_stats(h, "p");
	struct hatch_client *c = h_connect(h);
	Hatchery__V1__AcquireReply *info = NULL;
	int vm = acquire_ok(c, "p", 5000, &info);
	pid_t pid = (pid_t)info->child_pid;
	hatch_free(info);
	vm_ping_ok(vm, "before the kill");

	cr_assert_eq(kill(pid, SIGKILL), 0);
	char buf[256];
	ssize_t n = h_recv(vm, buf, sizeof(buf), NULL, NULL, H_WAIT_MS);
	cr_assert_eq(n, 0, "VM socket of a killed child: expected end of stream, got %zd (%s)",
		     n, n < 0 ? strerror((int)-n) : "data");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_ping(vm, &err), -1, "ping of a killed VM succeeded");
	cr_assert_eq(err.code, E(UNAVAILABLE), "ping of a killed VM: %s (%s)", err.msg,
		     hatch_err_code_name(err.code));
	close(vm);

	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "killed child %d was not reaped", pid);
	h_wait_steady(h, H_WAIT_MS);
	struct h_stats s1 = h_stats(h, "p");
	cr_assert_eq(s1.unexpected_exits, s0.unexpected_exits + 1,
		     "a leased child killed by a signal is an unexpected exit");
	hatch_close(c);
	h_finish(h);
}

/* ---- 4 ------------------------------------------------------------------------ */

static bool health_failed(void *arg)
{
	struct pool_arg *a = arg;
	return child_gone_from_status(a) && h_stats(a->h, a->pool).health_failures >= 1;
}

/* Stopped, or already killed for it on a fast tick: either way SIGSTOP
 * took effect. */
static bool is_stopped(void *arg)
{
	char st = h_proc_state(*(pid_t *)arg);
	return st == 'T' || st == 'Z' || st == 0;
}

Test(daemon, health_failure_replaced)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 4\n"
					      "health_interval_ms = 100\nhealth_timeout_ms = 50"));
	/* With a 50 ms timeout a slow machine may lose a healthy child too;
	 * the assertions below only rely on the one stopped here. */
	pid_t ready[8];
	cr_assert_geq(h_child_pids(h, "p", "ready", ready, 8), 1);
	pid_t victim = ready[0];
	cr_assert_eq(kill(victim, SIGSTOP), 0);
	cr_assert(h_wait_until(is_stopped, &victim, 2000), "child %d did not stop", victim);

	struct pool_arg a = { .h = h, .pool = "p", .exclude = victim };
	cr_assert(h_wait_until(health_failed, &a, H_WAIT_MS),
		  "stopped child %d not removed for a missed health check", victim);
	/* It was SIGKILLed (a stopped process dies of SIGKILL) and reaped. */
	cr_assert(h_wait_pid_gone(victim, H_WAIT_MS), "stopped child %d still exists (state %c)",
		  victim, h_proc_state(victim));
	cr_assert(h_wait_until(refilled_without, &a, H_WAIT_MS), "pool not refilled");
	struct h_stats s = h_stats(h, "p");
	cr_assert_geq(s.health_failures, 1);
	cr_assert_eq(s.unexpected_exits, 0,
		     "a child killed for its health check is no unexpected exit");
	h_finish(h);
}

/* ---- 5 ------------------------------------------------------------------------ */

Test(daemon, client_disconnect_ends_lease)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 4"));
	struct hatch_client *c = h_connect(h);
	Hatchery__V1__AcquireReply *info = NULL;
	int vm = acquire_ok(c, "p", 5000, &info);
	pid_t pid = (pid_t)info->child_pid;
	hatch_free(info);
	vm_ping_ok(vm, "leased VM");

	close(vm); /* no Release */
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS),
		  "child %d still exists after its client closed the VM socket", pid);
	struct pool_arg a = { .h = h, .pool = "p", .exclude = pid };
	cr_assert(h_wait_until(refilled_without, &a, H_WAIT_MS), "pool not refilled");
	struct h_stats s = h_stats(h, "p");
	cr_assert_eq(s.unexpected_exits, 0, "a hang-up ends the lease cleanly");
	cr_assert_eq(s.active_leases, 0);
	hatch_close(c);
	h_finish(h);
}

/* ---- 6 ------------------------------------------------------------------------ */

Test(daemon, max_never_exceeded)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 3"));
	struct pool_arg a = { .h = h, .pool = "p", .max_total = 3, .want_idle = 1 };
	sample(&a);
	struct hatch_client *c = h_connect(h);
	int vm[3];
	for (int i = 0; i < 3; i++) {
		cr_assert(h_wait_until(idle_at_least, &a, H_WAIT_MS), "no idle child for acquire %d", i);
		Hatchery__V1__AcquireReply *info = NULL;
		vm[i] = acquire_ok(c, "p", 0, &info);
		cr_assert(info->hit, "acquire %d found an idle child, yet hit == false", i);
		hatch_free(info);
		sample(&a);
	}
	struct h_counts k = sample(&a);
	cr_assert_eq(k.leased, 3);
	cr_assert_eq(k.idle + k.spawning, 0, "pool at max, yet idle %u spawning %u", k.idle,
		     k.spawning);

	/* deadline 0: refused at once. */
	struct hatch_err err = { 0 };
	int fd = -1;
	uint64_t t0 = h_now_ms();
	cr_assert_eq(hatch_acquire(c, "p", 0, &fd, NULL, &err), -1, "4th acquire succeeded");
	uint64_t dt = h_now_ms() - t0;
	cr_assert_eq(err.code, E(POOL_EXHAUSTED), "4th acquire: %s (%s)", err.msg,
		     hatch_err_code_name(err.code));
	cr_assert_lt(dt, 500, "deadline 0 took %llu ms", (unsigned long long)dt);
	sample(&a);

	/* deadline 200 ms: refused when it passes, not before; meanwhile the
	 * request shows as waiting and nothing is forked past max. */
	int raw = h_raw_connect(h);
	t0 = h_now_ms();
	cr_assert_eq(h_send_acquire_req(raw, 5, "p", 200), 0);
	bool saw_waiting = false;
	ProtobufCMessage *m = NULL;
	int r;
	while ((r = h_recv_pb(raw, &hatchery__v1__reply__descriptor, 10, &m, NULL)) == -ETIMEDOUT) {
		saw_waiting |= sample(&a).waiting == 1;
		cr_assert_lt(h_now_ms() - t0, (uint64_t)H_WAIT_MS, "no reply to the 200 ms acquire");
	}
	dt = h_now_ms() - t0;
	cr_assert_eq(r, 1, "200 ms acquire: %s", r == 0 ? "end of stream" : strerror(-r));
	Hatchery__V1__Reply *rep = (Hatchery__V1__Reply *)m;
	cr_assert(rep->error && rep->error->code == E(POOL_EXHAUSTED),
		  "200 ms acquire: expected POOL_EXHAUSTED, got %s",
		  rep->error ? hatch_err_code_name(rep->error->code) : "success");
	cr_assert_eq(rep->id, 5);
	hatch_free(rep);
	cr_assert_geq(dt, 200, "POOL_EXHAUSTED after %llu ms, before the 200 ms deadline",
		      (unsigned long long)dt);
	cr_assert_lt(dt, 2000, "POOL_EXHAUSTED only after %llu ms", (unsigned long long)dt);
	cr_assert(saw_waiting, "status never showed the acquire as waiting");

	/* A waiting acquire is served once a lease ends and its replacement
	 * is ready. */
	cr_assert_eq(h_send_acquire_req(raw, 6, "p", 5000), 0);
	cr_assert(h_wait_until(waiting_one, &a, H_WAIT_MS), "acquire not shown as waiting");
	vm_release_ok(vm[0]);
	int got = -1;
	t0 = h_now_ms();
	while ((r = h_recv_pb(raw, &hatchery__v1__reply__descriptor, 10, &m, &got)) == -ETIMEDOUT) {
		sample(&a);
		cr_assert_lt(h_now_ms() - t0, (uint64_t)H_WAIT_MS, "waiting acquire not served");
	}
	cr_assert_eq(r, 1, "waiting acquire: %s", r == 0 ? "end of stream" : strerror(-r));
	rep = (Hatchery__V1__Reply *)m;
	cr_assert_null(rep->error, "waiting acquire failed: %s",
		       rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__REPLY__BODY_ACQUIRE);
	cr_assert_eq(rep->id, 6);
	cr_assert_not(rep->acquire->hit, "served by a spawn, yet hit == true");
	cr_assert_geq(got, 0, "AcquireReply carried no fd");
	hatch_free(rep);
	vm_ping_ok(got, "VM of the waiting acquire");
	sample(&a);

	struct h_stats s = h_stats(h, "p");
	cr_assert_eq(s.misses, 3, "misses: deadline 0, deadline 200 and the waited one; got %llu",
		     (unsigned long long)s.misses);
	cr_assert_eq(s.hits, 3);
	cr_assert_eq(s.acquisitions, 4);
	cr_assert_leq(a.max_seen, 3);

	vm_release_ok(got);
	vm_release_ok(vm[1]);
	vm_release_ok(vm[2]);
	close(raw);
	hatch_close(c);
	h_finish(h);
}

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

/* ---- 9 ------------------------------------------------------------------------ */

Test(daemon, unknown_pool)
{
	struct harness *h = h_start(POOL("p", "min_idle = 1\nmax = 2"));
	struct hatch_client *c = h_connect(h);
	const uint32_t deadlines[] = { 0, 2000 };
	for (size_t i = 0; i < 2; i++) {
		struct hatch_err err = { 0 };
		int fd = -1;
		uint64_t t0 = h_now_ms();
		cr_assert_eq(hatch_acquire(c, "no-such-pool", deadlines[i], &fd, NULL, &err), -1,
			     "acquire from an unknown pool succeeded");
		cr_assert_eq(err.code, E(NOT_FOUND), "unknown pool: %s (%s)", err.msg,
			     hatch_err_code_name(err.code));
		cr_assert_not_null(strstr(err.msg, "no-such-pool"),
				   "the message does not name the pool: \"%s\"", err.msg);
		cr_assert_lt(h_now_ms() - t0, 1000, "NOT_FOUND should not wait for the deadline");
	}
	ping_ok(c, "after NOT_FOUND");
	cr_assert_eq(h_stats(h, "p").misses, 0, "an unknown pool is no miss of another");
	hatch_close(c);
	h_finish(h);
}

/* ---- 10 ----------------------------------------------------------------------- */

Test(daemon, sigterm_cleanup)
{
	struct harness *h = h_start(POOL("p", "min_idle = 3\nmax = 6")
				    POOL("full", "min_idle = 0\nmax = 1"));
	h_check_leaks(h);

	/* Something in every state: ready children, a lease, and an Acquire
	 * waiting on a full pool. */
	struct hatch_client *c = h_connect(h);
	int vm = acquire_ok(c, "p", 5000, NULL);
	int vm_full = acquire_ok(c, "full", 5000, NULL);
	int raw = h_raw_connect(h);
	cr_assert_eq(h_send_acquire_req(raw, 42, "full", 30000), 0);
	struct pool_arg a = { .h = h, .pool = "full" };
	cr_assert(h_wait_until(waiting_one, &a, H_WAIT_MS), "acquire not waiting");
	struct pool_arg ap = { .h = h, .pool = "p", .want_idle = 3 };
	cr_assert(h_wait_until(idle_at_least, &ap, H_WAIT_MS), "pool p not refilled");

	pid_t pids[32];
	size_t n = h_child_pids(h, "p", NULL, pids, 16);
	n += h_child_pids(h, "full", NULL, pids + n, 16);
	cr_assert_eq(n, 5, "3 idle + 1 leased in p, 1 leased in full; got %zu", n);

	uint64_t t0 = h_now_ms();
	int st = h_stop(h, 5000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "hatcheryd after SIGTERM: %s %d, expected exit status 0",
		  WIFEXITED(st) ? "exit status" : "signal",
		  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	cr_assert_lt(h_now_ms() - t0, 5000);
	cr_assert(access(h->sock, F_OK) < 0 && errno == ENOENT,
		  "socket %s still exists after shutdown", h->sock);
	for (size_t i = 0; i < n; i++)
		cr_assert(kill(pids[i], 0) < 0 && errno == ESRCH,
			  "child %d outlived hatcheryd (state %c)", pids[i],
			  h_proc_state(pids[i]));

	/* The waiting client was told, then hung up on; the leases ended. */
	Hatchery__V1__Reply *rep = recv_reply(raw, 1000, NULL, "waiting acquire at shutdown");
	cr_assert(rep->error && rep->error->code == E(UNAVAILABLE),
		  "waiting acquire at shutdown: got %s",
		  rep->error ? hatch_err_code_name(rep->error->code) : "success");
	cr_assert_eq(rep->id, 42);
	hatch_free(rep);
	char buf[64];
	cr_assert_eq(h_recv(raw, buf, sizeof(buf), NULL, NULL, 1000), 0, "raw connection not closed");
	cr_assert_eq(h_recv(vm, buf, sizeof(buf), NULL, NULL, 1000), 0, "leased VM socket not at EOF");
	cr_assert_eq(h_recv(vm_full, buf, sizeof(buf), NULL, NULL, 1000), 0,
		     "leased VM socket not at EOF");
	close(raw);
	close(vm);
	close(vm_full);
	hatch_close(c);
	h->passed = true; /* stopped and checked here; teardown only cleans up */
}

/* ---- 11 ----------------------------------------------------------------------- */

Test(daemon, waiting_acquire_served_on_spawn)
{
	struct harness *h = h_start(POOL("p", "min_idle = 0\nmax = 2"));
	struct h_counts k = h_counts(h, "p");
	cr_assert_eq(k.children, 0, "min_idle 0: no child before the first acquire");

	struct hatch_client *c = h_connect(h);
	Hatchery__V1__AcquireReply *info = NULL;
	int vm = acquire_ok(c, "p", 5000, &info);
	cr_assert_not(info->hit, "no child was idle, yet hit == true");
	pid_t pid = (pid_t)info->child_pid;
	hatch_free(info);
	pid_t leased[4];
	cr_assert_eq(h_child_pids(h, "p", "leased", leased, 4), 1);
	cr_assert_eq(leased[0], pid);
	vm_ping_ok(vm, "VM spawned on demand");

	struct h_stats s = h_stats(h, "p");
	cr_assert_eq(s.misses, 1);
	cr_assert_eq(s.hits, 0);
	cr_assert_eq(s.acquisitions, 1);
	cr_assert_eq(s.spawned, 1);
	vm_release_ok(vm);
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "released child %d still exists", pid);
	hatch_close(c);
	h_finish(h);
}

/* ---- 12 ----------------------------------------------------------------------- */

#define N_CLIENTS 20
#define ROUNDS 3

struct client_run {
	const char *sock;
	pthread_barrier_t *go;
	int done;
	char error[HATCH_ERR_MSG_MAX + 64];
};

/* No Criterion asserts off the test's thread: record the first failure. */
static void *client_thread(void *arg)
{
	struct client_run *r = arg;
	struct hatch_client *c = NULL;
	struct hatch_err err = { 0 };
	if (hatch_connect(r->sock, &c, &err) < 0) {
		snprintf(r->error, sizeof(r->error), "connect: %s", err.msg);
		return NULL;
	}
	hatch_set_timeout(c, H_CLIENT_TIMEOUT_MS);
	pthread_barrier_wait(r->go);
	for (int i = 0; i < ROUNDS; i++) {
		int vm = -1;
		Hatchery__V1__AcquireReply *info = NULL;
		if (hatch_acquire(c, "p", 5000, &vm, &info, &err) < 0) {
			snprintf(r->error, sizeof(r->error), "round %d acquire: %s (%s)", i,
				 err.msg, hatch_err_code_name(err.code));
			break;
		}
		hatch_free(info);
		if (hatch_vm_ping(vm, &err) < 0) {
			snprintf(r->error, sizeof(r->error), "round %d VM ping: %s", i, err.msg);
			close(vm);
			break;
		}
		if (hatch_vm_release(vm, &err) < 0) {
			snprintf(r->error, sizeof(r->error), "round %d release: %s", i, err.msg);
			break;
		}
		r->done++;
	}
	hatch_close(c);
	return NULL;
}

Test(daemon, many_clients)
{
	struct harness *h = h_start(POOL("p", "min_idle = 4\nmax = 16"));
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, N_CLIENTS + 1);
	struct client_run runs[N_CLIENTS];
	pthread_t th[N_CLIENTS];
	for (int i = 0; i < N_CLIENTS; i++) {
		runs[i] = (struct client_run){ .sock = h->sock, .go = &go };
		cr_assert_eq(pthread_create(&th[i], NULL, client_thread, &runs[i]), 0);
	}
	pthread_barrier_wait(&go);
	/* Sample the pool while they run: never above max. */
	struct pool_arg a = { .h = h, .pool = "p", .max_total = 16 };
	for (int i = 0; i < 50; i++)
		sample(&a);
	for (int i = 0; i < N_CLIENTS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < N_CLIENTS; i++)
		cr_assert_eq(runs[i].done, ROUNDS, "client %d: %s", i, runs[i].error);
#if defined(__SANITIZE_ADDRESS__)
	/* The client library's per-thread state must not outlive its threads. */
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer: memory leaked by %d client threads that have exited "
		     "(report above)", N_CLIENTS);
#endif
	struct h_stats s = h_stats(h, "p");
	cr_assert_eq(s.acquisitions, N_CLIENTS * ROUNDS);
	cr_assert_eq(s.hits + s.misses, N_CLIENTS * ROUNDS, "every acquire is a hit or a miss");
	cr_assert_eq(s.unexpected_exits, 0);
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
