/* What hatcheryd refuses at start-up, and what a pool whose children cannot
 * start looks like from outside (degraded, with the child's own message). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define POOL_OK                                                                \
	"[pool \"ok\"]\nmin_idle = 1\nmax = 2\nmemory_mib = 16\n"

/* Run hatcheryd with `args`; it must exit within 5 s. Returns its exit
 * status; its output is in err. */
static int run_daemon(const char *const *args, char *err, size_t cap)
{
	return h_run(HATCHERYD_PATH, args, 0, err, cap, 5000);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

Test(startup, bad_config_names_file_line_and_key)
{
	char dir[] = "/tmp/hatchery-st.XXXXXX", cfg[64], err[4096];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cfg, sizeof(cfg), "%s/bad.conf", dir);
	write_file(cfg, "[supervisor]\nsocket = /tmp/x.sock\n[pool \"p\"]\nmin_idle = four\n");
	int st = run_daemon((const char *[]){ "-c", cfg, NULL }, err, sizeof(err));
	cr_assert_eq(st, 1, "exit status %d", st);
	cr_assert_not_null(strstr(err, "bad.conf:4:"), "names file and line: %s", err);
	cr_assert_not_null(strstr(err, "min_idle"), "names the key: %s", err);
	cr_assert_not_null(strstr(err, "four"), "quotes the value: %s", err);
	unlink(cfg);
	rmdir(dir);
}

Test(startup, unusable_kvm_fails_before_forking)
{
	char dir[] = "/tmp/hatchery-st.XXXXXX", cfg[64], sock[96], err[4096];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cfg, sizeof(cfg), "%s/h.conf", dir);
	snprintf(sock, sizeof(sock), "%s/h.sock", dir);
	write_file(cfg, POOL_OK);
	int st = run_daemon((const char *[]){ "-c", cfg, "--socket", sock, "--kvm",
					       "/nonexistent/kvm", NULL },
			    err, sizeof(err));
	cr_assert_eq(st, 1, "exit status %d", st);
	cr_assert_not_null(strstr(err, "/nonexistent/kvm: No such file or directory"),
			   "says which device and why: %s", err);
	cr_assert_eq(access(sock, F_OK), -1, "no socket was left behind");
	/* A non-KVM device opens fine but fails the probe. */
	st = run_daemon((const char *[]){ "-c", cfg, "--socket", sock, "--kvm",
					   "/dev/null", NULL },
			err, sizeof(err));
	cr_assert_eq(st, 1, "exit status %d", st);
	cr_assert_not_null(strstr(err, "/dev/null"), "%s", err);
	cr_assert_not_null(strstr(err, "KVM API version"), "%s", err);
	unlink(cfg);
	rmdir(dir);
}

Test(startup, second_daemon_on_the_same_socket_is_refused)
{
	struct harness *h = h_start(POOL_OK);
	char err[4096];
	int st = run_daemon((const char *[]){ "-c", h->cfg_path, "--socket", h->sock, NULL },
			    err, sizeof(err));
	cr_assert_eq(st, 1, "exit status %d", st);
	cr_assert_not_null(strstr(err, "already listening"), "%s", err);
	/* ... and the first one is untouched. */
	cr_assert_eq(hatch_ping(h->c, NULL, NULL), 0, "first daemon still answers");
	h_finish(h);
}

/* Not in the ASan build: ASan reserves more address space than the
 * RLIMIT_AS this test needs. The normal build runs it. */
#if !defined(__SANITIZE_ADDRESS__)
Test(startup, pool_whose_children_fail_is_degraded_with_their_message)
{
	/* Children inherit RLIMIT_AS. The jail raises it to fit the VM, but
	 * only within the hard limit (it has dropped its capabilities by
	 * then), so a pool whose guest RAM exceeds a hard limit of 2 GiB
	 * fails every spawn the same way. */
	h_daemon_as_limit = 2ull << 30;
	struct harness *h = h_start(POOL_OK "[pool \"huge\"]\nmin_idle = 0\nmax = 2\n"
					    "memory_mib = 4096\n");
	h_daemon_as_limit = 0;

	int vm = -1;
	struct hatch_err err = { 0 };
	cr_assert_lt(hatch_acquire(h->c, "huge", 3000, &vm, NULL, &err), 0);
	cr_assert_eq(err.code, HATCHERY__V1__ERROR_CODE__POOL_EXHAUSTED, "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "setrlimit AS"),
			   "the error carries the child's reason: %s", err.msg);

	Hatchery__V1__StatusReply *st = h_status(h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, "huge");
	cr_assert(p->degraded, "three failures in a row make the pool degraded");
	cr_assert_not_null(strstr(p->last_error, "Operation not permitted"), "%s",
			   p->last_error);
	hatch_free(st);
	struct h_stats s = h_stats(h, "huge");
	cr_assert_geq(s.spawn_failures, 3);
	cr_assert_eq(s.acquisitions, 0);
	/* Backoff: 50, 100, 200, 400, 800, 1600 ms... in 3 s at most ~6
	 * forks, never a tight loop. */
	cr_assert_leq(s.spawned, 7, "spawned %llu in 3 s", (unsigned long long)s.spawned);

	/* The other pool and the daemon carry on. */
	cr_assert_eq(hatch_acquire(h->c, "ok", t_ms(3000), &vm, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(hatch_vm_ping(vm, &err), 0, "%s", err.msg);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	h_finish(h);
}
#endif
