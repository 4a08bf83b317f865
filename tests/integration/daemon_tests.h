/* daemon_tests.h - helpers shared by the daemon suite's files
 * (test_daemon.c: pools, children, refill; test_daemon_clients.c: bad and
 * unauthorized clients, fds, pipelining). Every function fails the test on
 * what it does not expect, from the test's own thread. */
#ifndef HATCHERY_DAEMON_TESTS_H
#define HATCHERY_DAEMON_TESTS_H

#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* A [pool] section: every pool's VMs are small. */
#define POOL(name, body) "[pool \"" name "\"]\nmemory_mib = 16\n" body "\n"

/* Acquire from `pool` through the client library; returns the VM fd. */
int acquire_ok(struct hatch_client *c, const char *pool, uint32_t deadline_ms,
	       Hatchery__V1__AcquireReply **info);
void vm_ping_ok(int vm_fd, const char *what);
void vm_release_ok(int vm_fd);
void ping_ok(struct hatch_client *c, const char *what);
/* Receive one Reply on a raw connection (the caller frees it). */
Hatchery__V1__Reply *recv_reply(int fd, unsigned timeout_ms, int *fd_out,
				const char *what);
void expect_error_reply(int fd, uint64_t id, int code, const char *what);
void raw_ping_ok(int fd, uint64_t id, const char *what);

struct pool_arg {
	struct harness *h;
	const char *pool;
	pid_t exclude;       /* a pid that must not be among the children */
	unsigned want_idle;
	unsigned max_total;  /* for sampling: fail if ever above (0: no check) */
	unsigned max_seen;
};

/* Predicates for h_wait_until; each samples the pool (and checks max). */
struct h_counts sample(struct pool_arg *a);
bool idle_at_least(void *arg);
bool waiting_one(void *arg);
bool refilled_without(void *arg);
bool child_gone_from_status(void *arg);

#endif
