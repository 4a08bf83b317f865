/* A jailed child that makes a syscall outside its allowlist is killed, the
 * supervisor reports which syscall by number and name, counts it, and
 * replaces the child.
 *
 * No backdoor is needed to make a child misbehave: the kernel runs seccomp
 * after the ptrace syscall-entry stop ("to catch any tracer changes"), so a
 * tracer that rewrites the syscall number of a stopped child sees the
 * filter judge the new number. The test is root, so it may trace the
 * child across its uid change. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Not in the allowlist (docs/security.md): a jailed child has no business
 * asking who it is. */
#define FORBIDDEN_NR SYS_getpid

static bool read_log(const struct harness *h, char *buf, size_t cap)
{
	FILE *f = fopen(h->log_path, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
	return true;
}

struct kill_arg {
	struct harness *h;
};

static bool seccomp_kill_counted(void *arg)
{
	struct kill_arg *a = arg;
	Hatchery__V1__StatsReply *sr = NULL;
	struct hatch_err err = { 0 };
	if (hatch_stats(a->h->c, &sr, &err) < 0)
		return false;
	bool ok = sr->n_pools == 1 && sr->pools[0]->seccomp_kills == 1;
	hatch_free(sr);
	return ok;
}

Test(seccomp, forbidden_syscall_is_named_counted_and_replaced)
{
	struct harness *h = h_start("[pool \"p\"]\nmin_idle = 1\nmax = 2\nmemory_mib = 16\n"
				    "health_interval_ms = 50\nhealth_timeout_ms = 40\n");
	pid_t pid;
	cr_assert_eq(h_child_pids(h, "p", "ready", &pid, 1), 1, "one ready child");

	cr_assert_eq(ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD), 0,
		     "PTRACE_SEIZE %d: %s", pid, strerror(errno));
	cr_assert_eq(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, __WALL), pid);
	cr_assert(WIFSTOPPED(st));

	/* Run to the next syscall-entry stop: the health pings (every 50 ms)
	 * wake the child out of poll() into recvmsg/sendmsg. */
	bool rewritten = false;
	for (int i = 0; i < 64 && !rewritten; i++) {
		cr_assert_eq(ptrace(PTRACE_SYSCALL, pid, 0, 0), 0);
		cr_assert_eq(waitpid(pid, &st, __WALL), pid);
		cr_assert(WIFSTOPPED(st), "child ended while traced: status %#x", st);
		if (WSTOPSIG(st) != (SIGTRAP | 0x80))
			continue;
		struct __ptrace_syscall_info si;
		long n = ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof(si), &si);
		cr_assert_gt(n, 0, "PTRACE_GET_SYSCALL_INFO: %s", strerror(errno));
		if (si.op != PTRACE_SYSCALL_INFO_ENTRY)
			continue;
		cr_assert_eq(ptrace(PTRACE_POKEUSER, pid,
				    offsetof(struct user_regs_struct, orig_rax),
				    (long)FORBIDDEN_NR), 0);
		rewritten = true;
	}
	cr_assert(rewritten, "no syscall-entry stop in 64 stops");
	/* Let it run into the filter, untraced. */
	cr_assert_eq(ptrace(PTRACE_DETACH, pid, 0, 0), 0);

	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "child %d survived a forbidden syscall", pid);
	struct kill_arg a = { h };
	cr_assert(h_wait_until(seccomp_kill_counted, &a, H_WAIT_MS),
		  "stats.seccomp_kills did not become 1");

	char log[1 << 16];
	cr_assert(read_log(h, log, sizeof(log)));
	char want[128];
	snprintf(want, sizeof(want), "child %d killed by seccomp: syscall %d (getpid)", pid,
		 FORBIDDEN_NR);
	cr_assert_not_null(strstr(log, want), "the log names the syscall; wanted \"%s\" in:\n%s",
			   want, log);

	/* Replaced, and nothing else disturbed. */
	h_wait_steady(h, H_WAIT_MS);
	pid_t now;
	cr_assert_eq(h_child_pids(h, "p", "ready", &now, 1), 1);
	cr_assert_neq(now, pid);
	h_finish(h);
}
