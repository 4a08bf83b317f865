/* hatcheryd under systemd, without systemd: the test plays the service
 * manager. It binds the listening socket itself (as hatcheryd.socket
 * does), starts hatcheryd with it as fd 3 and LISTEN_FDS=1/LISTEN_PID set
 * between fork and exec (LISTEN_PID must be hatcheryd's own pid), reads
 * what hatcheryd sends to NOTIFY_SOCKET, and runs it with no_new_privs and
 * the bounding set of config/systemd/hatcheryd.service
 * (CapabilityBoundingSet=), so that the unit's claim that these are all the
 * capabilities hatcheryd needs is tested too. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
#include <linux/capability.h>
#include <unistd.h>

#include "harness.h"

/* CapabilityBoundingSet= of config/systemd/hatcheryd.service. */
static const int unit_caps[] = { CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP,
				 CAP_KILL };

struct act {
	char dir[64], sock[108], notify[108], cfg[128], log[128];
	int lfd;      /* the listening socket "systemd" holds */
	int nfd;      /* NOTIFY_SOCKET, our end */
	pid_t pid;
	char msgs[256][1024]; /* every notification received, in order */
	size_t nmsgs;
	bool passed;  /* else act_fini shows the log and the notifications */
};

static struct act *cur;

static void act_fini(void)
{
	struct act *a = cur;
	if (!a)
		return;
	if (a->pid > 0) {
		kill(a->pid, SIGKILL);
		waitpid(a->pid, NULL, 0);
	}
	if (!a->passed || getenv("HATCH_TEST_VERBOSE")) {
		FILE *f = fopen(a->log, "re");
		char line[1024];
		fprintf(stderr, "---- hatcheryd log ----\n");
		while (f && fgets(line, sizeof(line), f))
			fputs(line, stderr);
		if (f)
			fclose(f);
		fprintf(stderr, "---- notifications ----\n");
		for (size_t i = 0; i < a->nmsgs; i++)
			fprintf(stderr, "[%zu] %s\n", i, a->msgs[i]);
	}
	if (a->lfd >= 0)
		close(a->lfd);
	if (a->nfd >= 0)
		close(a->nfd);
	unlink(a->sock);
	unlink(a->notify);
	unlink(a->cfg);
	unlink(a->log);
	rmdir(a->dir);
	free(a);
	cur = NULL;
}

TestSuite(systemd, .fini = act_fini);

static int listen_on(const char *path, int type)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", path,
		     strerror(errno));
	if (type != SOCK_DGRAM)
		cr_assert_eq(listen(fd, 64), 0, "listen: %s", strerror(errno));
	return fd;
}

static struct act *act_new(int type, const char *pools)
{
	h_require_kvm();
	struct act *a = calloc(1, sizeof(*a));
	cr_assert_not_null(a);
	a->lfd = a->nfd = -1;
	cur = a;
	snprintf(a->dir, sizeof(a->dir), "/tmp/hatchery-sd.XXXXXX");
	cr_assert_not_null(mkdtemp(a->dir));
	snprintf(a->sock, sizeof(a->sock), "%s/hatchery.sock", a->dir);
	snprintf(a->notify, sizeof(a->notify), "%s/notify", a->dir);
	snprintf(a->cfg, sizeof(a->cfg), "%s/hatchery.conf", a->dir);
	snprintf(a->log, sizeof(a->log), "%s/hatcheryd.log", a->dir);
	a->lfd = listen_on(a->sock, type);
	a->nfd = listen_on(a->notify, SOCK_DGRAM);
	FILE *f = fopen(a->cfg, "we");
	cr_assert_not_null(f);
	/* The harness's reasons for cgroup = optional and a per-process uid
	 * range hold here too. */
	fprintf(f, "[supervisor]\nsocket = %s\ncgroup = optional\njail_uid_base = %u\n\n%s",
		a->sock, 300000u + (unsigned)(getpid() % 10000) * 1000u, pools);
	fclose(f);
	return a;
}

/* Fork and exec hatcheryd as systemd would: fd 3 the socket, LISTEN_PID
 * our (the child's) pid, NOTIFY_SOCKET and WATCHDOG_USEC, no_new_privs
 * and the unit's bounding set. */
static rlim_t as_limit; /* when set, hatcheryd's RLIMIT_AS */

static void act_spawn(struct act *a, const char *listen_fds)
{
	pid_t parent = getpid();
	a->pid = fork();
	cr_assert_geq(a->pid, 0);
	if (a->pid > 0)
		return;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	int null = open("/dev/null", O_RDONLY);
	int log = open(a->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
		_exit(126);
	/* dup2 clears close-on-exec on fd 3; if lfd is 3 already, clear it. */
	if (a->lfd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(a->lfd, 3) < 0)
		_exit(126);
	syscall(SYS_close_range, 4, ~0u, 0);
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (setenv("LISTEN_PID", pid, 1) < 0 || setenv("LISTEN_FDS", listen_fds, 1) < 0 ||
	    setenv("LISTEN_FDNAMES", "hatcheryd.socket", 1) < 0 ||
	    setenv("NOTIFY_SOCKET", a->notify, 1) < 0 ||
	    setenv("WATCHDOG_USEC", "200000", 1) < 0)
		_exit(126);
	for (int c = 0; c <= 63; c++) {
		bool keep = false;
		for (size_t i = 0; i < sizeof(unit_caps) / sizeof(unit_caps[0]); i++)
			keep |= unit_caps[i] == c;
		if (!keep && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			_exit(126);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		_exit(126);
	struct rlimit rl = { as_limit, as_limit };
	if (as_limit && setrlimit(RLIMIT_AS, &rl) < 0)
		_exit(126);
	execl(HATCHERYD_PATH, "hatcheryd", "-c", a->cfg, "-v", (char *)NULL);
	_exit(127);
}

/* The next notification within timeout_ms (kept in a->msgs), or NULL. */
static const char *next_msg(struct act *a, unsigned timeout_ms)
{
	struct pollfd p = { .fd = a->nfd, .events = POLLIN };
	if (poll(&p, 1, (int)timeout_ms) <= 0)
		return NULL;
	cr_assert_lt(a->nmsgs, sizeof(a->msgs) / sizeof(a->msgs[0]) - 1,
		     "too many notifications kept");
	char *m = a->msgs[a->nmsgs];
	ssize_t n = recv(a->nfd, m, sizeof(a->msgs[0]) - 1, 0);
	cr_assert_gt(n, 0, "recv notify: %s", strerror(errno));
	m[n] = '\0';
	/* WATCHDOG=1 comes every 100 ms: keep the last few only. */
	if (strcmp(m, "WATCHDOG=1") != 0 || a->nmsgs < 8)
		a->nmsgs++;
	return m;
}

static size_t n_watchdog;

/* Wait for a notification containing `what`; fails the test after
 * timeout_ms. Counts WATCHDOG=1 on the way. */
static const char *wait_msg(struct act *a, const char *what, unsigned timeout_ms)
{
	uint64_t until = h_now_ms() + timeout_ms;
	for (;;) {
		uint64_t now = h_now_ms();
		cr_assert_lt(now, until, "no notification with \"%s\" within %u ms", what,
			     timeout_ms);
		const char *m = next_msg(a, (unsigned)(until - now));
		if (!m)
			continue;
		if (strcmp(m, "WATCHDOG=1") == 0)
			n_watchdog++;
		if (strstr(m, what))
			return m;
	}
}

static int connect_to(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s",
		     path, strerror(errno));
	return fd;
}

static int wait_exit(struct act *a, unsigned timeout_ms)
{
	uint64_t until = h_now_ms() + timeout_ms;
	int st;
	for (;;) {
		pid_t w = waitpid(a->pid, &st, WNOHANG);
		if (w == a->pid)
			break;
		cr_assert_lt(h_now_ms(), until, "hatcheryd still running after %u ms",
			     timeout_ms);
		usleep(5000);
	}
	a->pid = -1;
	return st;
}

static bool log_has(const struct act *a, const char *what)
{
	char buf[16384];
	int fd = open(a->log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return strstr(buf, what) != NULL;
}

#define POOLS                                                                   \
	"[pool \"a\"]\nmin_idle = 3\nmax = 4\nmemory_mib = 16\n"                \
	"[pool \"b\"]\nmin_idle = 1\nmax = 2\nmemory_mib = 16\n"

Test(systemd, activation_ready_status_watchdog_stopping)
{
	struct act *a = act_new(SOCK_SEQPACKET, POOLS);
	/* A client that connects before hatcheryd even runs: it waits in the
	 * socket's backlog, its request in the connection's buffer. */
	int early = connect_to(a->sock);
	cr_assert_eq(h_send_ping_req(early, 7, NULL, 0), 0);

	act_spawn(a, "1");
	const char *m = wait_msg(a, "STATUS=", H_WAIT_MS);
	cr_assert_not_null(strstr(m, "EXTEND_TIMEOUT_USEC="), "first message: %s", m);
	cr_assert_not_null(strstr(m, "STATUS=starting: "), "first message: %s", m);
	cr_assert_null(strstr(m, "READY=1"), "ready before any child: %s", m);

	m = wait_msg(a, "READY=1", H_WAIT_MS);
	cr_assert_not_null(strstr(m, "STATUS=2 pool(s), 4 idle, 0 leased"),
			   "READY=1 once both pools hold min_idle: %s", m);
	/* The pools were full when it was sent (nothing leases here). */
	struct harness h = { .pid = a->pid };
	snprintf(h.sock, sizeof(h.sock), "%s", a->sock);
	h.c = h_connect(&h);
	struct h_counts ka = h_counts(&h, "a"), kb = h_counts(&h, "b");
	cr_assert(ka.idle >= 3 && kb.idle >= 1, "idle a %u b %u at READY=1", ka.idle, kb.idle);

	/* The early client is served, through the passed socket. */
	Hatchery__V1__Reply *rep = NULL;
	int r = h_recv_pb(early, &hatchery__v1__reply__descriptor, H_WAIT_MS,
			  (ProtobufCMessage **)&rep, NULL);
	cr_assert_eq(r, 1, "early client's reply: %d", r);
	cr_assert_eq(rep->id, 7);
	cr_assert_eq(rep->body_case, HATCHERY__V1__REPLY__BODY_PING, "%d", rep->body_case);
	cr_assert_eq((pid_t)rep->ping->pid, a->pid, "answered by hatcheryd");
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	close(early);
	cr_assert(log_has(a, "(socket passed by systemd)"), "the log says so");

	/* STATUS= follows the pools: a lease shows up within a few ticks. */
	int vm = -1;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_acquire(h.c, "a", t_ms(3000), &vm, NULL, &err), 0, "%s", err.msg);
	wait_msg(a, "1 leased", H_WAIT_MS);
	cr_assert_eq(hatch_vm_ping(vm, &err), 0, "%s", err.msg);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	wait_msg(a, "STATUS=2 pool(s), 4 idle, 0 leased", H_WAIT_MS);
	hatch_close(h.c);

	/* WATCHDOG_USEC=200000: one every 100 ms (the window scaled for slow
	 * builds and the emulator). */
	n_watchdog = 0;
	uint64_t t0 = h_now_ms();
	while (h_now_ms() - t0 < t_ms(600)) {
		const char *w = next_msg(a, 100);
		if (w && strcmp(w, "WATCHDOG=1") == 0)
			n_watchdog++;
	}
	cr_assert_geq(n_watchdog, 3, "WATCHDOG=1 %zu times in %u ms", n_watchdog, t_ms(600));

	cr_assert_eq(kill(a->pid, SIGTERM), 0);
	m = wait_msg(a, "STOPPING=1", H_WAIT_MS);
	cr_assert_not_null(strstr(m, "STATUS=stopping"), "%s", m);
	int st = wait_exit(a, 5000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
	/* systemd's socket outlives the service: still there, still listening
	 * (the next start serves what queues meanwhile). */
	cr_assert_eq(access(a->sock, F_OK), 0, "%s was unlinked", a->sock);
	close(connect_to(a->sock));
	a->passed = true;
}

Test(systemd, wrong_socket_type_is_a_clear_error)
{
	struct act *a = act_new(SOCK_STREAM, POOLS);
	act_spawn(a, "1");
	int st = wait_exit(a, 5000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit status 0x%x", st);
	cr_assert(log_has(a, "must be a listening AF_UNIX SOCK_SEQPACKET socket"),
		  "names what it wants");
	cr_assert(log_has(a, "but it is SOCK_STREAM (ListenStream=)"), "and what it got");
	cr_assert_eq(a->nmsgs, 0);
	cr_assert_null(next_msg(a, 0), "no READY=1 from a daemon that failed");
	cr_assert_eq(access(a->sock, F_OK), 0, "the socket is systemd's: left alone");
	a->passed = true;
}

Test(systemd, more_than_one_socket_is_refused)
{
	struct act *a = act_new(SOCK_SEQPACKET, POOLS);
	act_spawn(a, "2");
	int st = wait_exit(a, 5000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit status 0x%x", st);
	cr_assert(log_has(a, "systemd passed 2 sockets"), "says how many");
	a->passed = true;
}

/* Not in the ASan build, for test_startup's reason: ASan reserves more
 * address space than this RLIMIT_AS. */
#if !defined(__SANITIZE_ADDRESS__)
Test(systemd, degraded_pool_does_not_hold_ready_back)
{
	/* Every spawn of "huge" fails (its guest RAM exceeds the hard
	 * RLIMIT_AS the children inherit: test_startup.c): after three in a
	 * row it is degraded and backs off, so READY=1 comes without it, and
	 * STATUS= says which pool is short and why. */
	struct act *a = act_new(SOCK_SEQPACKET, "[pool \"ok\"]\nmin_idle = 1\nmax = 2\n"
					     "memory_mib = 16\n[pool \"huge\"]\nmin_idle = 1\n"
					     "max = 2\nmemory_mib = 4096\n");
	as_limit = 2ull << 30;
	act_spawn(a, "1");
	as_limit = 0;
	const char *m = wait_msg(a, "READY=1", H_WAIT_MS);
	cr_assert_not_null(strstr(m, "1 degraded; short: huge 0/1 idle (degraded: "), "%s", m);
	cr_assert_not_null(strstr(m, "setrlimit AS"), "the children's reason: %s", m);
	cr_assert(log_has(a, "with 1 pool(s) below min_idle: degraded"), "logged");
	cr_assert_eq(kill(a->pid, SIGTERM), 0);
	int st = wait_exit(a, 5000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
	a->passed = true;
}
#endif
