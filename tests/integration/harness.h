/* harness.h - run a real hatcheryd for the integration tests.
 *
 * Lifecycle, one daemon at a time per test:
 *   h = h_start(fmt, ...)   skip (loudly) without /dev/kvm; mkdtemp a
 *                           directory, write the config (a [supervisor]
 *                           section naming the socket there, plus the
 *                           caller's [pool] sections), start hatcheryd -v with
 *                           stderr in DIR/hatcheryd.log, wait until it answers
 *                           Ping and every pool is at steady state, and take
 *                           the fd baseline
 *   ... the test ...
 *   h_finish(h)             steady state again, then the leak checks (fd
 *                           count back to the baseline, no zombie children),
 *                           SIGTERM and exit status 0; marks the test passed
 *
 * A test that fails (or is aborted by a failed cr_assert) does not reach
 * h_finish; the suite's .fini (h_teardown) then prints the daemon's log to
 * stderr, SIGKILLs the daemon if still running and removes the directory.
 *
 * Every wait is bounded (H_WAIT_MS unless said otherwise) and fails the test
 * with a message rather than hanging. Functions that fail the test say so;
 * they must be called from the test's own thread (Criterion asserts are not
 * thread-safe).
 *
 * Ownership: h_start's harness belongs to the harness (freed by h_finish or
 * h_teardown). Status/stats replies handed out are the caller's (hatch_free).
 * fds returned by h_raw_connect / received by h_recv are the caller's.
 */
#ifndef HATCHERY_TEST_HARNESS_H
#define HATCHERY_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "hatchery/client.h"
#include "hatchery/v1/supervisor.pb-c.h"
#include "hatchery/v1/vm.pb-c.h"
#include "testing.h"

/* Generous bound for anything the daemon should do "soon" (sanitizer builds
 * are several times slower, the emulator more: both scaled by
 * HATCH_TEST_SLOWDOWN, see testing.h); passing tests never wait this long. */
#define H_WAIT_MS t_ms(10000u)
/* Reply timeout set on every client the harness makes. */
#define H_CLIENT_TIMEOUT_MS t_ms(10000u)

struct harness {
	char dir[64];
	char sock[108];
	char cfg_path[128];
	char log_path[128];
	pid_t pid;                /* hatcheryd; -1 once reaped */
	struct hatch_client *c;   /* the harness's own connection, kept open */
	int baseline_fds;         /* daemon's fd count at the first steady state */
	unsigned baseline_children;
	bool passed;
};

/* Skip the current test unless /dev/kvm opens O_RDWR, printing why to
 * stderr as well as in the skip message: never a silent pass. */
void h_require_kvm(void);

/* When non-zero, the next h_start() runs hatcheryd with this RLIMIT_AS (soft
 * and hard), which its children inherit. Reset it after h_start(). */
#include <sys/resource.h>
extern rlim_t h_daemon_as_limit;

/* When not NULL, the next h_start() writes these lines into [supervisor]
 * (e.g. "cgroup = required\ncgroup_root = /sys/fs/cgroup\n") instead of
 * its own "cgroup = optional". Reset it after h_start(). */
extern const char *h_cgroup_conf;

/* Start hatcheryd; `fmt` is printf-style INI text of [pool "..."] sections
 * (the [supervisor] section is written by the harness). Fails the test if
 * the daemon does not come up within H_WAIT_MS. */
struct harness *h_start(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Steady state, leak checks, SIGTERM with exit 0 in 5 s; marks passed. */
void h_finish(struct harness *h);

/* Steady state then the leak checks alone (fd count == baseline, no zombie
 * children). h_finish calls it; a test that stops the daemon itself calls it
 * first. */
void h_check_leaks(struct harness *h);

/* SIGTERM, then waitpid for up to timeout_ms; if the daemon is still there,
 * SIGKILL it and fail. Returns the wait status. */
int h_stop(struct harness *h, unsigned timeout_ms);

/* For TestSuite(.fini = h_teardown). */
void h_teardown(void);

/* A new connection to the daemon with a reply timeout set; fails the test
 * on error. */
struct hatch_client *h_connect(const struct harness *h);

/* --- status and stats (fail the test on a transport error) --------------- */

Hatchery__V1__StatusReply *h_status(struct harness *h);
/* The named pool in `st`, or NULL. */
const Hatchery__V1__PoolStatus *h_pool_in(const Hatchery__V1__StatusReply *st,
					  const char *pool);

struct h_counts {
	unsigned idle, leased, spawning, waiting, min_idle, max;
	unsigned children;   /* entries in the child list, any state */
	unsigned not_ready;  /* of those, not "ready" (spawning/leased/dying) */
};
/* Current counts of `pool` (fails the test if there is no such pool). */
struct h_counts h_counts(struct harness *h, const char *pool);

struct h_stats {
	uint64_t acquisitions, hits, misses, spawned, spawn_failures;
	uint64_t unexpected_exits, health_failures;
	uint64_t resets;
	uint64_t retired_max_age, retired_reload;
	uint32_t active_leases;
};
struct h_stats h_stats(struct harness *h, const char *pool);

/* pids of `pool`'s children in `state` ("ready", "leased", ...; NULL: any)
 * into out[max]; returns how many there are (may exceed max). */
size_t h_child_pids(struct harness *h, const char *pool, const char *state,
		    pid_t *out, size_t max);

/* Is pid in list? */
bool h_pid_in(pid_t pid, const pid_t *list, size_t n);

/* --- waiting --------------------------------------------------------------- */

/* Poll pred(arg) every few ms until it holds or timeout_ms passes. */
bool h_wait_until(bool (*pred)(void *arg), void *arg, unsigned timeout_ms);

/* Wait until every pool is at steady state: idle == min_idle, nothing
 * spawning, leased or waiting, and no child in another state (a killed
 * child shows as "dying" until reaped). Fails the test after timeout_ms. */
void h_wait_steady(struct harness *h, unsigned timeout_ms);

/* Wait until the process is gone (kill(pid, 0) fails with ESRCH). */
bool h_wait_pid_gone(pid_t pid, unsigned timeout_ms);

/* Wait until pid has `want` fds open (the daemon closes a hung-up client's
 * connection when it gets round to it). Returns the last count seen. */
int h_wait_fds(pid_t pid, int want, unsigned timeout_ms);

/* --- /proc ------------------------------------------------------------------ */

int h_fd_count(pid_t pid);              /* entries in /proc/PID/fd; -1 on error */
void h_print_fds(pid_t pid);            /* readlink of each, to stderr */
int h_zombie_children(pid_t ppid, pid_t *first); /* state 'Z' with that ppid */
char h_proc_state(pid_t pid);           /* /proc/PID/stat state, 0 if gone */
/* The jail as a /proc/.../status file shows it (fails the test if it
 * cannot be read). */
struct h_jail_status {
	int seccomp, no_new_privs;  /* -1 if the line is missing */
	unsigned long long cap_eff;
	unsigned uid;               /* the real uid */
};
struct h_jail_status h_jail_status(const char *status_path);

/* --- raw protocol (for tests that speak it by hand) ------------------------ */

/* A bare SOCK_SEQPACKET connection to the daemon; fails the test on error. */
int h_raw_connect(const struct harness *h);

/* One packet with nfds fds. Returns 0 or -errno. */
int h_send(int fd, const void *buf, size_t len, const int *fds, size_t nfds);
int h_send_pb(int fd, const ProtobufCMessage *msg, const int *fds, size_t nfds);

/* One packet within timeout_ms. Returns its length (> 0), 0 on end of stream,
 * -ETIMEDOUT, or -errno. Up to *nfds (in: room in fds[]; out: received) fds
 * are handed out, the rest closed; fds may be NULL to close them all. */
ssize_t h_recv(int fd, void *buf, size_t cap, int *fds, size_t *nfds,
	       unsigned timeout_ms);

/* Receive and decode one message of type `desc` within timeout_ms.
 * Returns 1 with *out set (and *fd_out the first fd, or -1, when fd_out is
 * not NULL; other fds closed), 0 on end of stream, -ETIMEDOUT, -EBADMSG if
 * it does not decode, or -errno. */
int h_recv_pb(int fd, const ProtobufCMessageDescriptor *desc, unsigned timeout_ms,
	      ProtobufCMessage **out, int *fd_out);

/* Request builders: send Request{id, ping} / Request{id, acquire}. */
int h_send_ping_req(int fd, uint64_t id, const int *fds, size_t nfds);
int h_send_acquire_req(int fd, uint64_t id, const char *pool, uint32_t deadline_ms);

/* --- time -------------------------------------------------------------------- */

uint64_t h_now_ms(void);

/* Run `path` with args (NULL-terminated, after argv[0]), as `uid` when it is
 * not 0, with stdout and stderr captured into out (NUL-terminated). Fails
 * the test if it has not exited within timeout_ms. Returns its exit status,
 * or -1 if a signal ended it. */
int h_run(const char *path, const char *const *args, uid_t uid, char *out,
	  size_t cap, unsigned timeout_ms);

#endif
