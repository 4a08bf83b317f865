/* harness.c - start, watch and stop a real hatcheryd for integration tests.
 * See harness.h for the lifecycle. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#ifndef HATCHERYD_PATH
#error "HATCHERYD_PATH must name the hatcheryd binary under test"
#endif

#define RECV_CAP (64 * 1024) /* the protocol's packet limit */

/* The daemon of the running test, for h_teardown. One at a time. */
static struct harness *h_current;

uint64_t h_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void h_require_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return;
	}
	t_skip("this integration test needs /dev/kvm, which cannot be opened "
	       "O_RDWR (%s): not run", strerror(errno));
}

/* ---- files -------------------------------------------------------------- */

/* The tail of the daemon's log: enough to see what led up to a failure
 * without burying the assertion under a busy test's spawn lines. */
#define LOG_TAIL_LINES 200

static void dump_log(const struct harness *h)
{
	FILE *f = fopen(h->log_path, "re");
	fprintf(stderr, "---- hatcheryd log (%s) ----\n", h->log_path);
	if (!f) {
		fprintf(stderr, "(cannot open: %s)\n", strerror(errno));
	} else {
		char line[1024];
		size_t lines = 0, skip;
		while (fgets(line, sizeof(line), f))
			lines++;
		skip = lines > LOG_TAIL_LINES ? lines - LOG_TAIL_LINES : 0;
		if (skip)
			fprintf(stderr, "(%zu earlier lines not shown)\n", skip);
		rewind(f);
		for (size_t i = 0; fgets(line, sizeof(line), f); i++)
			if (i >= skip)
				fputs(line, stderr);
		fclose(f);
	}
	fprintf(stderr, "---- end of hatcheryd log ----\n");
}

static void remove_dir(const struct harness *h)
{
	unlink(h->cfg_path);
	unlink(h->log_path);
	unlink(h->sock);
	rmdir(h->dir);
}

static void release_harness(struct harness *h)
{
	hatch_close(h->c);
	h->c = NULL;
	remove_dir(h);
	if (h_current == h)
		h_current = NULL;
	free(h);
}

void h_teardown(void)
{
	struct harness *h = h_current;
	if (!h)
		return;
	if (!h->passed)
		dump_log(h);
	if (h->pid > 0) {
		/* Its children die with it (PR_SET_PDEATHSIG in vmproc). */
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		h->pid = -1;
	}
	release_harness(h);
}

/* ---- start / stop --------------------------------------------------------- */

struct hatch_client *h_connect(const struct harness *h)
{
	struct hatch_client *c = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_connect(h->sock, &c, &err), 0,
		     "connect to hatcheryd at %s: %s", h->sock, err.msg);
	hatch_set_timeout(c, H_CLIENT_TIMEOUT_MS);
	return c;
}

static const char *describe_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "wait status 0x%x", st);
	return buf;
}

rlim_t h_daemon_as_limit;
const char *h_cgroup_conf;

static pid_t spawn_daemon(const struct harness *h)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* The child: never return into Criterion. If the test process dies
	 * (a Criterion timeout kills it), take the daemon with it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	int null = open("/dev/null", O_RDONLY);
	int log = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 ||
	    dup2(log, 2) < 0)
		_exit(126);
	/* Only 0-2 go to the daemon: the fd baseline must not depend on what
	 * the test runner happens to have open. */
	if (syscall(SYS_close_range, 3, ~0u, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	if (h_daemon_as_limit) {
		struct rlimit rl = { h_daemon_as_limit, h_daemon_as_limit };
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			_exit(126);
	}
	execl(HATCHERYD_PATH, "hatcheryd", "-c", h->cfg_path, "--socket", h->sock,
	      "-v", (char *)NULL);
	dprintf(2, "harness: exec %s: %s\n", HATCHERYD_PATH, strerror(errno));
	_exit(127);
}

struct harness *h_start(const char *fmt, ...)
{
	h_require_kvm();
	cr_assert_null(h_current, "harness: one daemon at a time");
	struct harness *h = calloc(1, sizeof(*h));
	cr_assert_not_null(h);
	h->pid = -1;
	h->baseline_fds = -1;
	snprintf(h->dir, sizeof(h->dir), "/tmp/hatchery-it.XXXXXX");
	cr_assert_not_null(mkdtemp(h->dir), "mkdtemp: %s", strerror(errno));
	h_current = h;
	snprintf(h->sock, sizeof(h->sock), "%s/hatchery.sock", h->dir);
	snprintf(h->cfg_path, sizeof(h->cfg_path), "%s/hatchery.conf", h->dir);
	snprintf(h->log_path, sizeof(h->log_path), "%s/hatcheryd.log", h->dir);

	char pools[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(pools, sizeof(pools), fmt, ap);
	va_end(ap);
	cr_assert(n >= 0 && (size_t)n < sizeof(pools), "harness: config too long");
	FILE *f = fopen(h->cfg_path, "we");
	cr_assert_not_null(f, "create %s: %s", h->cfg_path, strerror(errno));
	/* cgroup = optional: the jail runs without limits where the machine
	 * has no usable cgroup v2 (this one has v1 plus a bare v2).
	 * jail_uid_base: hatcheryd refuses a uid range another daemon's
	 * children use, and Criterion runs tests in parallel, so each test
	 * process takes its own range. */
	fprintf(f, "[supervisor]\nsocket = %s\n%sjail_uid_base = %u\n\n%s", h->sock,
		h_cgroup_conf ? h_cgroup_conf : "cgroup = optional\n",
		300000u + (unsigned)(getpid() % 10000) * 1000u, pools);
	cr_assert_eq(fclose(f), 0, "write %s", h->cfg_path);

	h->pid = spawn_daemon(h);
	cr_assert_gt(h->pid, 0, "fork: %s", strerror(errno));

	/* Up when it answers Ping on the socket. */
	uint64_t until = h_now_ms() + H_WAIT_MS;
	struct hatch_err err = { 0 };
	for (;;) {
		int st;
		pid_t w = waitpid(h->pid, &st, WNOHANG);
		if (w == h->pid) {
			char why[64];
			h->pid = -1;
			cr_assert_fail("hatcheryd %s during start-up",
				       describe_status(st, why, sizeof(why)));
		}
		struct hatch_client *c = NULL;
		if (hatch_connect(h->sock, &c, &err) == 0) {
			hatch_set_timeout(c, H_CLIENT_TIMEOUT_MS);
			Hatchery__V1__PingReply *pr = NULL;
			if (hatch_ping(c, &pr, &err) == 0) {
				cr_assert_eq((pid_t)pr->pid, h->pid,
					     "Ping answered by pid %u, started %d",
					     pr->pid, h->pid);
				hatch_free(pr);
				h->c = c;
				break;
			}
			hatch_close(c);
		}
		cr_assert(h_now_ms() < until,
			  "hatcheryd did not answer Ping on %s within %u ms: %s",
			  h->sock, H_WAIT_MS, err.msg);
		sleep_ms(10);
	}

	h_wait_steady(h, H_WAIT_MS);
	Hatchery__V1__StatusReply *st = h_status(h);
	unsigned children = 0;
	for (size_t i = 0; i < st->n_pools; i++)
		children += (unsigned)st->pools[i]->n_children;
	hatch_free(st);
	h->baseline_children = children;
	h->baseline_fds = h_fd_count(h->pid);
	cr_assert_gt(h->baseline_fds, 0, "count fds of hatcheryd %d", h->pid);
	return h;
}

int h_stop(struct harness *h, unsigned timeout_ms)
{
	cr_assert_gt(h->pid, 0, "h_stop: hatcheryd is not running");
	pid_t pid = h->pid;
	cr_assert_eq(kill(pid, SIGTERM), 0, "SIGTERM hatcheryd: %s", strerror(errno));
	uint64_t until = h_now_ms() + timeout_ms;
	int st = 0;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		cr_assert_geq(w, 0, "waitpid hatcheryd: %s", strerror(errno));
		if (h_now_ms() >= until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			h->pid = -1;
			cr_assert_fail("hatcheryd did not exit within %u ms of SIGTERM "
				       "(SIGKILLed)", timeout_ms);
		}
		sleep_ms(5);
	}
	h->pid = -1;
	return st;
}

void h_check_leaks(struct harness *h)
{
	h_wait_steady(h, H_WAIT_MS);

	/* Connections the test closed are closed by the daemon when it gets
	 * round to their hangup: poll for the count to come back. */
	int n = h_wait_fds(h->pid, h->baseline_fds, 3000);
	if (n != h->baseline_fds) {
		fprintf(stderr, "hatcheryd %d fds at steady state (baseline %d, %u children):\n",
			h->pid, h->baseline_fds, h->baseline_children);
		h_print_fds(h->pid);
	}
	cr_assert_eq(n, h->baseline_fds,
		     "fd leak: hatcheryd holds %d fds at steady state, %d at start "
		     "(same %u children)", n, h->baseline_fds, h->baseline_children);

	/* A child between its exit and the daemon's reap is a zombie for a
	 * moment; one that stays is a missed reap. */
	pid_t z = -1;
	int nz = 0;
	uint64_t until = h_now_ms() + 2000;
	do {
		nz = h_zombie_children(h->pid, &z);
		if (nz == 0)
			break;
		sleep_ms(10);
	} while (h_now_ms() < until);
	cr_assert_eq(nz, 0, "%d zombie child(ren) of hatcheryd, e.g. pid %d", nz, z);
}

void h_finish(struct harness *h)
{
	h_check_leaks(h);
	int st = h_stop(h, 5000);
	char why[64];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "hatcheryd %s after SIGTERM, expected exit status 0",
		  describe_status(st, why, sizeof(why)));
	cr_assert(access(h->sock, F_OK) < 0 && errno == ENOENT,
		  "socket %s still exists after shutdown", h->sock);
	h->passed = true;
	release_harness(h);
}

/* ---- status and stats ----------------------------------------------------- */

Hatchery__V1__StatusReply *h_status(struct harness *h)
{
	Hatchery__V1__StatusReply *st = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_status(h->c, &st, &err), 0, "Status: %s (%s)", err.msg,
		     hatch_err_code_name(err.code));
	return st;
}

const Hatchery__V1__PoolStatus *h_pool_in(const Hatchery__V1__StatusReply *st,
					  const char *pool)
{
	for (size_t i = 0; i < st->n_pools; i++)
		if (strcmp(st->pools[i]->name, pool) == 0)
			return st->pools[i];
	return NULL;
}

struct h_counts h_counts(struct harness *h, const char *pool)
{
	Hatchery__V1__StatusReply *st = h_status(h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, pool);
	cr_assert_not_null(p, "no pool \"%s\" in Status", pool);
	struct h_counts k = {
		.idle = p->idle, .leased = p->leased, .spawning = p->spawning,
		.waiting = p->waiting, .min_idle = p->min_idle, .max = p->max,
		.children = (unsigned)p->n_children,
	};
	for (size_t i = 0; i < p->n_children; i++)
		if (strcmp(p->children[i]->state, "ready") != 0)
			k.not_ready++;
	hatch_free(st);
	return k;
}

struct h_stats h_stats(struct harness *h, const char *pool)
{
	Hatchery__V1__StatsReply *sr = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_stats(h->c, &sr, &err), 0, "Stats: %s", err.msg);
	struct h_stats s = { 0 };
	bool found = false;
	for (size_t i = 0; i < sr->n_pools; i++) {
		const Hatchery__V1__PoolStats *p = sr->pools[i];
		if (strcmp(p->name, pool) != 0)
			continue;
		found = true;
		s.acquisitions = p->acquisitions;
		s.hits = p->hits;
		s.retired_max_age = p->retired_max_age;
		s.retired_reload = p->retired_reload;
		s.misses = p->misses;
		s.spawned = p->spawned;
		s.spawn_failures = p->spawn_failures;
		s.unexpected_exits = p->unexpected_exits;
		s.health_failures = p->health_failures;
		s.resets = p->resets;
		s.active_leases = p->active_leases;
	}
	hatch_free(sr);
	cr_assert(found, "no pool \"%s\" in Stats", pool);
	return s;
}

size_t h_child_pids(struct harness *h, const char *pool, const char *state,
		    pid_t *out, size_t max)
{
	Hatchery__V1__StatusReply *st = h_status(h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, pool);
	cr_assert_not_null(p, "no pool \"%s\" in Status", pool);
	cr_assert(!p->children_truncated, "child list of \"%s\" truncated", pool);
	size_t n = 0;
	for (size_t i = 0; i < p->n_children; i++) {
		if (state && strcmp(p->children[i]->state, state) != 0)
			continue;
		if (n < max)
			out[n] = (pid_t)p->children[i]->pid;
		n++;
	}
	hatch_free(st);
	return n;
}

bool h_pid_in(pid_t pid, const pid_t *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == pid)
			return true;
	return false;
}

/* ---- waiting ------------------------------------------------------------------ */

bool h_wait_until(bool (*pred)(void *arg), void *arg, unsigned timeout_ms)
{
	uint64_t until = h_now_ms() + timeout_ms;
	for (;;) {
		if (pred(arg))
			return true;
		if (h_now_ms() >= until)
			return false;
		sleep_ms(5);
	}
}

struct steady_arg {
	struct harness *h;
	char why[256];
};

static bool all_pools_steady(void *arg)
{
	struct steady_arg *a = arg;
	Hatchery__V1__StatusReply *st = h_status(a->h);
	bool ok = true;
	for (size_t i = 0; i < st->n_pools && ok; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		size_t ready = 0;
		for (size_t k = 0; k < p->n_children; k++)
			ready += strcmp(p->children[k]->state, "ready") == 0;
		ok = p->idle == p->min_idle && p->spawning == 0 && p->leased == 0 &&
		     p->waiting == 0 && !p->children_truncated &&
		     p->n_children == p->idle && ready == p->n_children;
		if (!ok)
			snprintf(a->why, sizeof(a->why),
				 "pool \"%s\": idle %u (min_idle %u), spawning %u, "
				 "leased %u, waiting %u, %zu children of which %zu ready; "
				 "last_error \"%s\"", p->name, p->idle, p->min_idle,
				 p->spawning, p->leased, p->waiting, p->n_children, ready,
				 p->last_error);
	}
	hatch_free(st);
	return ok;
}

void h_wait_steady(struct harness *h, unsigned timeout_ms)
{
	struct steady_arg a = { .h = h };
	bool ok = h_wait_until(all_pools_steady, &a, timeout_ms);
	cr_assert(ok, "pools not at steady state within %u ms: %s", timeout_ms, a.why);
}

static bool pid_gone(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	return kill(pid, 0) < 0 && errno == ESRCH;
}

bool h_wait_pid_gone(pid_t pid, unsigned timeout_ms)
{
	return h_wait_until(pid_gone, &pid, timeout_ms);
}

int h_wait_fds(pid_t pid, int want, unsigned timeout_ms)
{
	uint64_t until = h_now_ms() + timeout_ms;
	int n;
	while ((n = h_fd_count(pid)) != want && h_now_ms() < until)
		sleep_ms(5);
	return n;
}

/* ---- /proc ------------------------------------------------------------------------ */

int h_fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

void h_print_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char link[320], target[256];
		snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
	}
	closedir(d);
}

/* Parse /proc/PID/stat: "pid (comm) S ppid ...". comm may hold anything,
 * ')' included, so the fields start after the last ')'. */
static int read_stat(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	int pp;
	if (!p || sscanf(p + 1, " %c %d", state, &pp) != 2)
		return -1;
	*ppid = pp;
	return 0;
}

char h_proc_state(pid_t pid)
{
	char s;
	pid_t pp;
	return read_stat(pid, &s, &pp) == 0 ? s : 0;
}

int h_zombie_children(pid_t ppid, pid_t *first)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char s;
		pid_t pp;
		if (read_stat((pid_t)pid, &s, &pp) == 0 && pp == ppid && s == 'Z') {
			if (n == 0 && first)
				*first = (pid_t)pid;
			n++;
		}
	}
	closedir(d);
	return n;
}

/* ---- raw protocol ---------------------------------------------------------------- */

int h_raw_connect(const struct harness *h)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->sock);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0,
		     "connect %s: %s", h->sock, strerror(errno));
	return fd;
}

int h_send(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	if (nfds > 16)
		return -EINVAL;
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int h_send_pb(int fd, const ProtobufCMessage *msg, const int *fds, size_t nfds)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	int r = h_send(fd, buf, len, fds, nfds);
	free(buf);
	return r;
}

ssize_t h_recv(int fd, void *buf, size_t cap, int *fds, size_t *nfds,
	       unsigned timeout_ms)
{
	size_t room = fds && nfds ? *nfds : 0;
	if (nfds)
		*nfds = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do
		r = poll(&p, 1, (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.b, .msg_controllen = sizeof(ctl.b),
	};
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	size_t got = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fds && got < room)
				fds[got] = f;
			else
				close(f);
			got++;
		}
	}
	if (nfds)
		*nfds = got < room ? got : room;
	if (mh.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	return n;
}

int h_recv_pb(int fd, const ProtobufCMessageDescriptor *desc, unsigned timeout_ms,
	      ProtobufCMessage **out, int *fd_out)
{
	uint8_t *buf = malloc(RECV_CAP);
	if (!buf)
		return -ENOMEM;
	int fds[4];
	size_t nfds = sizeof(fds) / sizeof(fds[0]);
	if (fd_out)
		*fd_out = -1;
	ssize_t n = h_recv(fd, buf, RECV_CAP, fds, &nfds, timeout_ms);
	if (n <= 0) {
		free(buf);
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		return (int)n;
	}
	*out = protobuf_c_message_unpack(desc, NULL, (size_t)n, buf);
	free(buf);
	for (size_t i = 0; i < nfds; i++) {
		if (i == 0 && fd_out && *out)
			*fd_out = fds[0];
		else
			close(fds[i]);
	}
	return *out ? 1 : -EBADMSG;
}

int h_send_ping_req(int fd, uint64_t id, const int *fds, size_t nfds)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__PingRequest ping = HATCHERY__V1__PING_REQUEST__INIT;
	req.id = id;
	req.body_case = HATCHERY__V1__REQUEST__BODY_PING;
	req.ping = &ping;
	return h_send_pb(fd, &req.base, fds, nfds);
}

int h_send_acquire_req(int fd, uint64_t id, const char *pool, uint32_t deadline_ms)
{
	Hatchery__V1__Request req = HATCHERY__V1__REQUEST__INIT;
	Hatchery__V1__AcquireRequest a = HATCHERY__V1__ACQUIRE_REQUEST__INIT;
	a.pool = (char *)pool;
	a.deadline_ms = deadline_ms;
	req.id = id;
	req.body_case = HATCHERY__V1__REQUEST__BODY_ACQUIRE;
	req.acquire = &a;
	return h_send_pb(fd, &req.base, NULL, 0);
}

/* ---- running other programs --------------------------------------------- */

int h_run(const char *path, const char *const *args, uid_t uid, char *out,
	  size_t cap, unsigned timeout_ms)
{
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		if (uid && (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
			_exit(126);
		const char *argv[16] = { path };
		for (int i = 0; args[i] && i < 14; i++)
			argv[i + 1] = args[i];
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t n = 0;
	uint64_t until = h_now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int left = (int)(until - h_now_ms());
		if (left <= 0 || poll(&p, 1, left) <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(pfd[0]);
			cr_assert_fail("%s did not exit within %u ms: %.*s", path, timeout_ms,
				       (int)n, out);
		}
		ssize_t r = read(pfd[0], out + n, cap - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = '\0';
	close(pfd[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct h_jail_status h_jail_status(const char *status_path)
{
	FILE *f = fopen(status_path, "re");
	cr_assert_not_null(f, "%s: %s", status_path, strerror(errno));
	struct h_jail_status j = { .seccomp = -1, .no_new_privs = -1, .cap_eff = ~0ull };
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "Seccomp: %d", &j.seccomp);
		sscanf(line, "NoNewPrivs: %d", &j.no_new_privs);
		sscanf(line, "CapEff: %llx", &j.cap_eff);
		sscanf(line, "Uid: %u", &j.uid);
	}
	fclose(f);
	return j;
}
