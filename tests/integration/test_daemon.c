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

#include "daemon_tests.h"
#include "harness.h"
#include "hatchery/ipc.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

TestSuite(daemon, .fini = h_teardown, .timeout = 60);

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

