/* exec.c - Exec: run a program in its own session, feed it stdin, stream
 * its stdout and stderr back as VmReply{exec_output} frames, and answer
 * with VmReply{exec}.
 *
 * The parent's loop polls the pipes, the signalfd and the clock. Ways out:
 *  - the child was reaped and both pipes reached EOF;
 *  - the child was reaped and a pipe stays open past EXIT_GRACE_MS: a
 *    grandchild (`daemon &`) kept it; it runs on, we stop listening;
 *  - the timeout: SIGKILL to the whole process group (again on every turn,
 *    so a fork bomb's late forks die too), then at most KILL_GRACE_MS more
 *    for the reap and the pipes: a grandchild that left the group must not
 *    hold the agent.
 * Whatever the program does (close its stdout, write without end, fork
 * without end) the agent keeps serving.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "hatchery/cleanup.h"
#include "hatchery/clock.h"

#define EXIT_GRACE_MS 250
#define KILL_GRACE_MS 1000
#define KILL_REPEAT_MS 50

static const char *const default_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TERM=dumb",
	NULL,
};

/* What the child reports on its error pipe before it gives up. */
enum stage { STAGE_CHDIR = 1, STAGE_CREDS, STAGE_EXEC, STAGE_SETUP };
struct child_report {
	int stage;
	int err;
};

/* fd `from` onto `to`, close-on-exec cleared. dup2 alone does nothing when
 * they are equal, and would leave the flag set. */
static int move_fd(int from, int to)
{
	if (from == to)
		return fcntl(to, F_SETFD, 0);
	return dup2(from, to) < 0 ? -1 : 0;
}

static void report_and_exit(int errpipe, enum stage stage)
{
	struct child_report r = { stage, errno };
	ssize_t w = write(errpipe, &r, sizeof(r));
	(void)w;
	_exit(127);
}

/* In the forked child: never returns. Only async-signal-safe calls: the
 * agent is single-threaded, but this is the habit that stays right. */
static void child(const Hatchery__V1__VmExecRequest *x, char **argv, char **envp,
		  int in, int out, int err, int errpipe)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL); /* ignored in the agent; not in the program */
	/* PID 1 runs at nice -20 (main.c); programs at the default, so the
	 * agent stays ahead of whatever they do. */
	setpriority(PRIO_PROCESS, 0, 0);
	/* Own session and process group: the timeout kills the group, and
	 * the program has no controlling terminal of ours. */
	if (setsid() < 0)
		report_and_exit(errpipe, STAGE_SETUP);
	/* The pipes are all >= 3 (the agent keeps 0-2 open: init.c std_fds,
	 * main.c in test mode), so no move closes one not yet moved. */
	if (move_fd(in, 0) < 0 || move_fd(out, 1) < 0 || move_fd(err, 2) < 0)
		report_and_exit(errpipe, STAGE_SETUP);
	if (x->uid || x->gid) {
		if (setgroups(0, NULL) < 0 || setgid(x->gid) < 0 || setuid(x->uid) < 0)
			report_and_exit(errpipe, STAGE_CREDS);
	}
	if (chdir(x->cwd && x->cwd[0] ? x->cwd : "/") < 0)
		report_and_exit(errpipe, STAGE_CHDIR);
	/* execvp looks PATH up in environ, not in an envp argument: the
	 * program's own PATH must decide where argv[0] is found. */
	environ = envp;
	execvp(argv[0], argv);
	report_and_exit(errpipe, STAGE_EXEC);
}

struct stream {
	int fd;              /* read end, -1 once closed */
	uint64_t bytes;      /* all the program wrote */
	bool truncated;
	Hatchery__V1__VmExecOutput__Stream which;
};

/* Read what is there; forward what is under the limit. false when the
 * channel is lost. */
static bool pump(struct agent *a, uint64_t id, struct stream *s, uint64_t limit,
		 uint8_t *buf)
{
	for (int turns = 0; turns < 16 && s->fd >= 0; turns++) {
		ssize_t n = read(s->fd, buf, AGENT_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0) {
			close(s->fd);
			s->fd = -1;
			return true;
		}
		uint64_t fwd = 0;
		if (s->bytes < limit)
			fwd = limit - s->bytes < (uint64_t)n ? limit - s->bytes : (uint64_t)n;
		if (fwd < (uint64_t)n)
			s->truncated = true;
		s->bytes += (uint64_t)n;
		if (fwd) {
			Hatchery__V1__VmExecOutput o = HATCHERY__V1__VM_EXEC_OUTPUT__INIT;
			o.stream = s->which;
			o.data.data = buf;
			o.data.len = (size_t)fwd;
			Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
			r.id = id;
			r.body_case = HATCHERY__V1__VM_REPLY__BODY_EXEC_OUTPUT;
			r.exec_output = &o;
			if (chan_send(a, &r) < 0)
				return false;
		}
	}
	return true;
}

static void send_reply(struct agent *a, uint64_t id, Hatchery__V1__VmExecReply *x)
{
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_EXEC;
	r.exec = x;
	chan_send(a, &r);
}

static void fail(struct agent *a, uint64_t id, int code, int err, const char *what,
		 const char *arg)
{
	struct hatch_err e;
	hatch_err_set(&e, code, err, "%s %s", what, arg);
	chan_send_error(a, id, &e);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The pipes of one Exec: [0] read end, [1] write end. */
struct pipes {
	int in[2], out[2], err[2], rep[2];
};

static void close_pipes(struct pipes *p)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&p->in[i]);
		close_fd(&p->out[i]);
		close_fd(&p->err[i]);
		close_fd(&p->rep[i]);
	}
}

static int open_pipes(struct pipes *p)
{
	/* O_CLOEXEC: nothing of one Exec leaks into the next one's program;
	 * the child's ends are moved onto 0-2, which clears the flag there. */
	if (pipe2(p->in, O_CLOEXEC) < 0 || pipe2(p->out, O_CLOEXEC) < 0 ||
	    pipe2(p->err, O_CLOEXEC) < 0 || pipe2(p->rep, O_CLOEXEC) < 0)
		return -errno;
	/* The parent's ends never block the loop. */
	if (fcntl(p->in[1], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(p->out[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(p->err[0], F_SETFL, O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* The child's report: 0 when it reached exec (EOF on the CLOEXEC pipe),
 * else fills *r. */
static int read_report(int fd, struct child_report *r)
{
	size_t got = 0;
	while (got < sizeof(*r)) {
		ssize_t n = read(fd, (char *)r + got, sizeof(*r) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got == sizeof(*r);
}

static void kill_group(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL); /* if setsid never ran, the group is not its own */
}

static int ms_until(uint64_t now, uint64_t when)
{
	if (when <= now)
		return 0;
	uint64_t ms = (when - now + 999999) / 1000000;
	return ms > 1000000 ? 1000000 : (int)ms;
}

void agent_exec(struct agent *a, uint64_t id, const Hatchery__V1__VmExecRequest *x)
{
	_cleanup_free_ char **argv = calloc(x->n_argv + 1, sizeof(char *));
	_cleanup_free_ char **envp = calloc(x->n_env + 1, sizeof(char *));
	_cleanup_free_ uint8_t *buf = malloc(AGENT_CHUNK);
	if (!argv || !envp || !buf) {
		fail(a, id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR, ENOMEM, "allocate", "");
		return;
	}
	for (size_t i = 0; i < x->n_argv; i++)
		argv[i] = x->argv[i];
	for (size_t i = 0; i < x->n_env; i++)
		envp[i] = x->env[i];
	char **env = x->n_env ? envp : (char **)default_env;

	struct pipes p = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } };
	int r = open_pipes(&p);
	if (r < 0) {
		close_pipes(&p);
		fail(a, id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR, -r, "pipe for", argv[0]);
		return;
	}
	uint64_t start = hatch_now_ns();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close_pipes(&p);
		fail(a, id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR, e, "fork for", argv[0]);
		return;
	}
	if (pid == 0)
		child(x, argv, env, p.in[0], p.out[1], p.err[1], p.rep[1]);
	a->exec_pid = pid;
	a->exec_reaped = false;
	close_fd(&p.in[0]);
	close_fd(&p.out[1]);
	close_fd(&p.err[1]);
	close_fd(&p.rep[1]);

	/* Blocks only until the child's exec or its report: nothing before
	 * exec waits on anything but the kernel. */
	struct child_report rep;
	if (read_report(p.rep[0], &rep)) {
		close_pipes(&p);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		a->exec_pid = 0;
		static const char *const what[] = {
			[STAGE_CHDIR] = "chdir", [STAGE_CREDS] = "setuid/setgid for",
			[STAGE_EXEC] = "exec", [STAGE_SETUP] = "set-up for",
		};
		const char *arg = rep.stage == STAGE_CHDIR ? (x->cwd[0] ? x->cwd : "/") : argv[0];
		int st = rep.stage >= STAGE_CHDIR && rep.stage <= STAGE_SETUP ? rep.stage
									   : STAGE_SETUP;
		fail(a, id, HATCHERY__V1__ERROR_CODE__AGENT_ERROR, rep.err, what[st], arg);
		return;
	}
	close_fd(&p.rep[0]);

	uint64_t limit = x->output_limit ? x->output_limit : AGENT_DEFAULT_OUTPUT_LIMIT;
	uint32_t tmo = x->timeout_ms ? x->timeout_ms : AGENT_DEFAULT_TIMEOUT_MS;
	uint64_t deadline = start + (uint64_t)tmo * 1000000ull;
	uint64_t give_up = UINT64_MAX;
	bool timed_out = false;
	size_t in_off = 0;
	if (x->stdin.len == 0)
		close_fd(&p.in[1]);
	struct stream s[2] = {
		{ p.out[0], 0, false, HATCHERY__V1__VM_EXEC_OUTPUT__STREAM__STDOUT },
		{ p.err[0], 0, false, HATCHERY__V1__VM_EXEC_OUTPUT__STREAM__STDERR },
	};
	p.out[0] = p.err[0] = -1; /* owned by s[] now */

	agent_reap(a); /* a child that died before the signalfd was polled */
	while (!a->lost) {
		if (a->exec_reaped && s[0].fd < 0 && s[1].fd < 0)
			break;
		uint64_t now = hatch_now_ns();
		if (!a->exec_reaped && !timed_out && now >= deadline) {
			timed_out = true;
			kill_group(pid);
			give_up = now + KILL_GRACE_MS * 1000000ull;
		}
		if (a->exec_reaped && give_up == UINT64_MAX)
			give_up = a->exec_end_ns + EXIT_GRACE_MS * 1000000ull;
		if (now >= give_up)
			break;
		int wait_ms = ms_until(now, timed_out ? give_up : deadline);
		if (give_up != UINT64_MAX && ms_until(now, give_up) < wait_ms)
			wait_ms = ms_until(now, give_up);
		if (timed_out) {
			kill(-pid, SIGKILL); /* forks that raced the first kill */
			if (wait_ms > KILL_REPEAT_MS)
				wait_ms = KILL_REPEAT_MS;
		}

		struct pollfd pf[4] = {
			{ .fd = a->sig_fd, .events = POLLIN },
			{ .fd = s[0].fd, .events = POLLIN },
			{ .fd = s[1].fd, .events = POLLIN },
			{ .fd = p.in[1], .events = POLLOUT }, /* -1: poll skips it */
		};
		if (poll(pf, 4, wait_ms) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			agent_reap(a);
		for (int i = 0; i < 2; i++)
			if (pf[1 + i].revents && !pump(a, id, &s[i], limit, buf))
				break;
		if (pf[3].revents) {
			ssize_t n = write(p.in[1], x->stdin.data + in_off, x->stdin.len - in_off);
			if (n > 0)
				in_off += (size_t)n;
			/* EPIPE: the program closed its stdin; it gets no more. */
			if ((n < 0 && errno != EAGAIN && errno != EINTR) ||
			    in_off == x->stdin.len)
				close_fd(&p.in[1]);
		}
	}
	uint64_t end = a->exec_reaped ? a->exec_end_ns : hatch_now_ns();
	/* Left before the reap: timed out and stuck, the channel lost (nobody
	 * waits for the answer), or poll failed. None may run on unbounded. */
	if (!a->exec_reaped)
		kill_group(pid);

	Hatchery__V1__VmExecReply rx = HATCHERY__V1__VM_EXEC_REPLY__INIT;
	if (a->exec_reaped && WIFEXITED(a->exec_status) && !timed_out)
		rx.exit_code = WEXITSTATUS(a->exec_status);
	else if (a->exec_reaped && WIFSIGNALED(a->exec_status))
		rx.signal = WTERMSIG(a->exec_status);
	else
		rx.signal = SIGKILL; /* killed, not reaped within the grace */
	if (timed_out)
		rx.signal = SIGKILL;
	rx.timed_out = timed_out;
	rx.stdout_truncated = s[0].truncated;
	rx.stderr_truncated = s[1].truncated;
	rx.stdout_bytes = s[0].bytes;
	rx.stderr_bytes = s[1].bytes;
	rx.duration_ns = end - start;
	/* Not reaped (stuck in the kernel after SIGKILL): from now on an
	 * orphan like any other, reaped whenever it goes. */
	a->exec_pid = 0;
	close_fd(&s[0].fd);
	close_fd(&s[1].fd);
	close_pipes(&p);
	send_reply(a, id, &rx);
}
