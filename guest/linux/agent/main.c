/* main.c - hatchery-agent: /init of a Linux guest, serving the host's
 * requests on /dev/hvc0 (docs/guest-linux.md); or, with --channel-fd N
 * and not PID 1, the same serve loop on fd N with no system set-up, so
 * tests drive it natively over a socketpair.
 *
 * This file owns the process: arguments, signals, the serve loop and its
 * dispatch, and reaping (the agent is every orphan's parent: PID 1 in the
 * guest, a child subreaper in test mode).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "hatchery/clock.h"

void agent_reap(struct agent *a)
{
	struct signalfd_siginfo si;
	while (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		; /* SIGCHLDs coalesce: the count means nothing, waitpid says all */
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p <= 0)
			break; /* 0: none exited yet; ECHILD: no children */
		if (a->exec_pid && p == a->exec_pid && !a->exec_reaped) {
			a->exec_reaped = true;
			a->exec_status = st;
			a->exec_end_ns = hatch_now_ns();
		}
	}
}

void agent_send_ready(struct agent *a, uint64_t id, bool clock_set)
{
	struct utsname u;
	if (uname(&u) < 0)
		strcpy(u.release, "?");
	struct timespec bt;
	clock_gettime(CLOCK_BOOTTIME, &bt);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	Hatchery__V1__VmAgentReady ready = HATCHERY__V1__VM_AGENT_READY__INIT;
	ready.kernel_release = u.release;
	ready.nproc = n > 0 ? (uint32_t)n : 1;
	ready.boot_ns = (uint64_t)bt.tv_sec * 1000000000ull + (uint64_t)bt.tv_nsec;
	ready.clock_set = clock_set;
	Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
	r.id = id;
	r.body_case = HATCHERY__V1__VM_REPLY__BODY_AGENT_READY;
	r.agent_ready = &ready;
	chan_send(a, &r);
}

static void dispatch(struct agent *a, const Hatchery__V1__VmRequest *req)
{
	struct hatch_err e = { 0 };
	int code = agent_request_check(req, e.msg, sizeof(e.msg));
	if (code) {
		e.code = code;
		/* A refused write_file whose size can be believed still has
		 * its chunks on the way: read them before answering, or each
		 * would draw an answer of its own. */
		const Hatchery__V1__VmWriteFileRequest *w = req->write_file;
		if (req->body_case == HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE && req->id &&
		    w->size <= AGENT_MAX_WRITE_SIZE && w->data.len <= w->size)
			agent_write_file(a, req->id, w, &e);
		else
			chan_send_error(a, req->id, &e);
		return;
	}
	switch (req->body_case) {
	case HATCHERY__V1__VM_REQUEST__BODY_PING: {
		Hatchery__V1__VmPingReply ping = HATCHERY__V1__VM_PING_REPLY__INIT;
		Hatchery__V1__VmReply r = HATCHERY__V1__VM_REPLY__INIT;
		r.id = req->id;
		r.body_case = HATCHERY__V1__VM_REPLY__BODY_PING;
		r.ping = &ping;
		chan_send(a, &r);
		return;
	}
	case HATCHERY__V1__VM_REQUEST__BODY_EXEC:
		agent_exec(a, req->id, req->exec);
		return;
	case HATCHERY__V1__VM_REQUEST__BODY_WRITE_FILE:
		agent_write_file(a, req->id, req->write_file, NULL);
		return;
	case HATCHERY__V1__VM_REQUEST__BODY_FILE_CHUNK:
		hatch_err_set(&e, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT, 0,
			      "file_chunk outside a write_file");
		chan_send_error(a, req->id, &e);
		return;
	case HATCHERY__V1__VM_REQUEST__BODY_READ_FILE:
		agent_read_file(a, req->id, req->read_file);
		return;
	case HATCHERY__V1__VM_REQUEST__BODY_LIST_DIR:
		agent_list_dir(a, req->id, req->list_dir);
		return;
	case HATCHERY__V1__VM_REQUEST__BODY_STAT:
		agent_stat(a, req->id, req->stat);
		return;
	case HATCHERY__V1__VM_REQUEST__BODY_AGENT_RESUME:
		agent_resume(a, req->id, req->agent_resume);
		return;
	default: /* agent_request_check refused the rest */
		return;
	}
}

static void serve(struct agent *a)
{
	agent_send_ready(a, 0, false);
	while (!a->lost) {
		Hatchery__V1__VmRequest *req = chan_recv(a);
		if (!req)
			break;
		dispatch(a, req);
		hatchery__v1__vm_request__free_unpacked(req, NULL);
	}
	if (a->pending) {
		hatchery__v1__vm_request__free_unpacked(a->pending, NULL);
		a->pending = NULL;
	}
}

static int parse_fd(const char *s)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > 1 << 20)
		return -1;
	return (int)v;
}

int main(int argc, char **argv)
{
	static struct agent agent; /* 128 KiB of buffers: not on the stack */
	struct agent *a = &agent;
	a->pid1 = getpid() == 1;
	a->chan_fd = -1;
	agent_rx_init(&a->rx);

	if (!a->pid1) {
		/* The kernel hands init its command line's leftovers as
		 * arguments: only test mode reads them. */
		if (argc != 3 || strcmp(argv[1], "--channel-fd") != 0 ||
		    (a->chan_fd = parse_fd(argv[2])) < 0) {
			fprintf(stderr, "usage: hatchery-agent --channel-fd N  "
					"(as PID 1 it serves /dev/hvc0)\n");
			return 2;
		}
		/* The fd came without FD_CLOEXEC; Exec's programs must not
		 * inherit the channel. */
		if (fcntl(a->chan_fd, F_SETFD, FD_CLOEXEC) < 0) {
			fprintf(stderr, "hatchery-agent: fd %d: %s\n", a->chan_fd,
				strerror(errno));
			return 2;
		}
		/* Exec's pipes must never land on 0-2 (exec.c moves them
		 * there): keep all three open. */
		for (int fd = 0; fd <= 2; fd++)
			if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
				return 2;
		/* Orphans come to us, as they would to PID 1 in the guest. */
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	}

	/* A program that closes its end must not kill the agent mid-write. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	a->sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sig_fd < 0)
		agent_fatal(a->pid1, "signalfd: %s", strerror(errno));

	if (a->pid1) {
		/* The host's control (ping, the timeout's kill, the next
		 * request) must get through while a workload saturates the
		 * CPUs: the agent runs at the highest nice level, its
		 * programs at 0 (exec.c). Not in test mode: that would need
		 * privilege the tests need not have. */
		setpriority(PRIO_PROCESS, 0, -20);
		a->chan_fd = agent_init_system();
	}

	serve(a);

	if (a->pid1)
		agent_fatal(true, "the channel ended (%s); rebooting",
			    a->eof ? "end of stream" : "error or protocol fault");
	return a->eof ? 0 : 3;
}
