/* daemon_tests.c - helpers shared by the daemon suite's files; see
 * daemon_tests.h. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "daemon_tests.h"

int acquire_ok(struct hatch_client *c, const char *pool, uint32_t deadline_ms,
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

void vm_ping_ok(int vm_fd, const char *what)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_ping(vm_fd, &err), 0, "%s: VM ping: %s (%s)", what,
		     err.msg, hatch_err_code_name(err.code));
}

void vm_release_ok(int vm_fd)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm_fd, &err), 0, "VM release: %s", err.msg);
}

void ping_ok(struct hatch_client *c, const char *what)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_ping(c, NULL, &err), 0, "%s: Ping: %s (%s)", what,
		     err.msg, hatch_err_code_name(err.code));
}

/* Receive one Reply on a raw connection; fails the test on anything else. */
Hatchery__V1__Reply *recv_reply(int fd, unsigned timeout_ms, int *fd_out,
				       const char *what)
{
	ProtobufCMessage *m = NULL;
	int r = h_recv_pb(fd, &hatchery__v1__reply__descriptor, timeout_ms, &m, fd_out);
	cr_assert_eq(r, 1, "%s: expected a Reply, got %s", what,
		     r == 0 ? "end of stream" : r == -EBADMSG ? "a packet that is no Reply"
							     : strerror(-r));
	return (Hatchery__V1__Reply *)m;
}

void expect_error_reply(int fd, uint64_t id, int code, const char *what)
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

void raw_ping_ok(int fd, uint64_t id, const char *what)
{
	cr_assert_eq(h_send_ping_req(fd, id, NULL, 0), 0, "%s: send Ping", what);
	Hatchery__V1__Reply *rep = recv_reply(fd, H_CLIENT_TIMEOUT_MS, NULL, what);
	cr_assert_null(rep->error, "%s: Ping failed: %s", what,
		       rep->error ? rep->error->message : "");
	cr_assert_eq(rep->body_case, HATCHERY__V1__REPLY__BODY_PING, "%s", what);
	cr_assert_eq(rep->id, id, "%s: reply id", what);
	hatch_free(rep);
}



/* Sample the pool; every sample checks the bound on live children. */
struct h_counts sample(struct pool_arg *a)
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

bool idle_at_least(void *arg)
{
	struct pool_arg *a = arg;
	return sample(a).idle >= a->want_idle;
}

bool waiting_one(void *arg)
{
	return sample(arg).waiting == 1;
}

/* Back at min_idle, all ready, and `exclude` not among the children. */
bool refilled_without(void *arg)
{
	struct pool_arg *a = arg;
	struct h_counts k = h_counts(a->h, a->pool);
	if (k.idle != k.min_idle || k.children != k.idle || k.not_ready)
		return false;
	pid_t pids[64];
	size_t n = h_child_pids(a->h, a->pool, NULL, pids, 64);
	return !h_pid_in(a->exclude, pids, n < 64 ? n : 64);
}

bool child_gone_from_status(void *arg)
{
	struct pool_arg *a = arg;
	pid_t pids[64];
	size_t n = h_child_pids(a->h, a->pool, NULL, pids, 64);
	return !h_pid_in(a->exclude, pids, n < 64 ? n : 64);
}
