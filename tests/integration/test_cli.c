/* hatchctl against a real hatcheryd: the exit codes and output that shell
 * scripts rely on (0 ok, 1 error reply, 2 usage, 3 unavailable, 4 pool
 * exhausted, 5 permission denied). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int ctl(uid_t uid, char *out, size_t cap, const char *const *args)
{
	return h_run(HATCHCTL_PATH, args, uid, out, cap, 10000);
}

#define CTL(h, out, ...) ctl(0, out, sizeof(out), (const char *[]){ "-s", (h)->sock, __VA_ARGS__, NULL })

Test(cli, exit_codes_and_output)
{
	struct harness *h = h_start("[pool \"p\"]\nmin_idle = 1\nmax = 1\nmemory_mib = 16\n"
				    "allow_uids = 0\n");
	char out[8192];

	cr_assert_eq(CTL(h, out, "ping"), 0, "%s", out);
	cr_assert_eq(CTL(h, out, "status", "--json"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\"name\":\"p\""), "status --json names the pool: %s", out);
	cr_assert_eq(CTL(h, out, "stats"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "spawn_to_ready"), "%s", out);

	cr_assert_eq(CTL(h, out, "acquire", "p", "--json"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "\"child_pid\":"), "%s", out);

	cr_assert_eq(CTL(h, out, "acquire", "nosuchpool"), 1, "error reply: %s", out);
	cr_assert_not_null(strstr(out, "NOT_FOUND"), "%s", out);

	cr_assert_eq(CTL(h, out, "frobnicate"), 2, "unknown command: %s", out);
	cr_assert_eq(ctl(0, out, sizeof(out), (const char *[]){ NULL }), 2, "no command");

	char sock[160];
	snprintf(sock, sizeof(sock), "%s/nothing-here.sock", h->dir);
	cr_assert_eq(ctl(0, out, sizeof(out), (const char *[]){ "-s", sock, "ping", NULL }), 3,
		     "no daemon: %s", out);
	cr_assert_not_null(strstr(out, "UNAVAILABLE"), "%s", out);

	/* max = 1: hold the only VM, then ask with no patience. */
	int vm = -1;
	struct hatch_err err = { 0 };
	h_wait_steady(h, H_WAIT_MS);
	cr_assert_eq(hatch_acquire(h->c, "p", 3000, &vm, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(CTL(h, out, "acquire", "p", "--deadline", "0"), 4, "exhausted: %s", out);
	cr_assert_not_null(strstr(out, "POOL_EXHAUSTED"), "%s", out);
	close(vm);

	/* Let another uid reach the socket (the harness dir is 0700), so that
	 * it is SO_PEERCRED that refuses it. */
	cr_assert_eq(chmod(h->dir, 0711), 0, "chmod %s: %s", h->dir, strerror(errno));
	cr_assert_eq(ctl(65534, out, sizeof(out),
			 (const char *[]){ "-s", h->sock, "acquire", "p", NULL }), 5,
		     "uid 65534 is not allowed: %s", out);
	cr_assert_not_null(strstr(out, "PERMISSION_DENIED"), "%s", out);
	h_finish(h);
}

/* run: the result on stdout (raw, or --hex), errors as exit 1 with the
 * server's message, and the rest of the contract. */
Test(cli, run_calls_a_guest_function)
{
	struct harness *h = h_start("[pool \"b\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST "\n"
				    "memory_mib = 32\nmin_idle = 1\nmax = 2\nallow_uids = 0\n\n"
				    "[pool \"e\"]\nmin_idle = 1\nmax = 1\nmemory_mib = 16\n"
				    "allow_uids = 0\n");
	char out[8192];

	cr_assert_eq(CTL(h, out, "run", "b", "echo", "hello"), 0, "%s", out);
	cr_assert_str_eq(out, "hello", "run echo: raw result, nothing else");
	cr_assert_eq(CTL(h, out, "run", "b", "echo", "hello", "--hex"), 0, "%s", out);
	cr_assert_str_eq(out, "68656c6c6f\n");
	cr_assert_eq(CTL(h, out, "run", "b", "sha256", "abc", "--hex"), 0, "%s", out);
	cr_assert_str_eq(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
	cr_assert_eq(CTL(h, out, "run", "b", "echo", "--hex"), 0, "empty payload: %s", out);
	cr_assert_str_eq(out, "\n", "an empty result in hex is an empty line");
	cr_assert_eq(CTL(h, out, "run", "b", "echo", "x", "--time"), 0, "%s", out);
	cr_assert(out[0] == 'x' && strstr(out, "acquire ") && strstr(out, "call ") &&
		  strstr(out, "release "), "--time: %s", out);

	/* A guest fault: exit 1, the fault in the message. */
	cr_assert_eq(CTL(h, out, "run", "b", "fault"), 1, "fault: %s", out);
	cr_assert_not_null(strstr(out, "GUEST_FAULT"), "%s", out);
	cr_assert_not_null(strstr(out, "#PF page fault at rip 0x"), "%s", out);
	cr_assert_not_null(strstr(out, "address 0"), "%s", out);
	cr_assert_eq(CTL(h, out, "run", "b", "spin", "--deadline", "100"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "DEADLINE_EXCEEDED"), "%s", out);
	cr_assert_eq(CTL(h, out, "run", "b", "alloc", "100"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "GUEST_ERROR"), "%s", out);
	cr_assert_not_null(strstr(out, "out of memory"), "%s", out);
	cr_assert_eq(CTL(h, out, "run", "b", "nosuchfunction"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "NOT_FOUND"), "%s", out);
	cr_assert_eq(CTL(h, out, "run", "e", "echo", "x"), 1, "empty pool: %s", out);
	cr_assert_not_null(strstr(out, "FAILED_PRECONDITION"), "%s", out);
	cr_assert_eq(CTL(h, out, "run", "nosuchpool", "echo"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "NOT_FOUND"), "%s", out);

	cr_assert_eq(CTL(h, out, "run", "b"), 2, "no FUNCTION: %s", out);
	cr_assert_eq(CTL(h, out, "run", "b", "echo", "a", "b"), 2, "two payloads: %s", out);
	cr_assert_eq(CTL(h, out, "run", "b", "echo", "--hexx"), 2, "unknown option: %s", out);
	cr_assert_eq(CTL(h, out, "run", "b", "spin", "--deadline", "soon"), 2, "%s", out);

	char sock[160];
	snprintf(sock, sizeof(sock), "%s/nothing-here.sock", h->dir);
	cr_assert_eq(ctl(0, out, sizeof(out),
			 (const char *[]){ "-s", sock, "run", "b", "echo", NULL }), 3,
		     "no daemon: %s", out);

	/* run waits up to 1 s for a VM: hold the only one of "e". */
	int vm = -1;
	struct hatch_err err = { 0 };
	h_wait_steady(h, H_WAIT_MS);
	cr_assert_eq(hatch_acquire(h->c, "e", 3000, &vm, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(CTL(h, out, "run", "e", "echo"), 4, "exhausted: %s", out);
	cr_assert_not_null(strstr(out, "POOL_EXHAUSTED"), "%s", out);
	close(vm);

	cr_assert_eq(chmod(h->dir, 0711), 0, "chmod %s: %s", h->dir, strerror(errno));
	cr_assert_eq(ctl(65534, out, sizeof(out),
			 (const char *[]){ "-s", h->sock, "run", "b", "echo", NULL }), 5,
		     "uid 65534 is not allowed: %s", out);
	h_finish(h);
}

/* stats --prometheus is what a textfile collector reads: promtool must
 * accept it without a lint remark, and the numbers must be the daemon's. */
Test(cli, stats_prometheus_passes_promtool)
{
	char out[32768], check[4096];
	const char *const which[] = { "-c", "command -v promtool", NULL };
	if (h_run("/bin/sh", which, 0, check, sizeof(check), 10000) != 0)
		t_skip("no promtool (Debian package prometheus; scripts/deps installs it)");
	struct harness *h = h_start("[pool \"m\"]\nmin_idle = 1\nmax = 2\nmemory_mib = 16\n"
				    "allow_uids = 0\n");

	for (int i = 0; i < 3; i++)
		cr_assert_eq(CTL(h, out, "acquire", "m"), 0, "%s", out);
	h_wait_steady(h, H_WAIT_MS); /* the releases seen, the pool refilled */
	cr_assert_eq(CTL(h, out, "stats", "--prometheus"), 0, "%s", out);

	char path[128];
	snprintf(path, sizeof(path), "%s/metrics.prom", h->dir);
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fputs(out, f) >= 0 && fclose(f) == 0, true);
	/* promtool exits 1 on a parse error, 3 on lint problems, and says
	 * nothing at all when both are clean. */
	const char *const promtool[] = { "-c", "exec promtool check metrics < \"$1\"", "sh",
					 path, NULL };
	int rc = h_run("/bin/sh", promtool, 0, check, sizeof(check), 20000);
	cr_assert_eq(rc, 0, "promtool check metrics: exit %d: %s\n--- input:\n%s", rc, check, out);
	cr_assert_str_eq(check, "", "promtool remarks on:\n%s", out);

	const char *want[] = {
		"\nhatchery_acquisitions_total{pool=\"m\"} 3\n",
		"\nhatchery_acquire_duration_seconds_count{pool=\"m\"} 3\n",
		"\nhatchery_acquire_duration_seconds_bucket{pool=\"m\",le=\"+Inf\"} 3\n",
		"\nhatchery_acquire_duration_seconds_bucket{pool=\"m\",le=\"30\"} 3\n",
		"\nhatchery_pool_min_idle_vms{pool=\"m\"} 1\n",
		"\nhatchery_pool_max_vms{pool=\"m\"} 2\n",
		"\nhatchery_pool_info{pool=\"m\",kind=\"empty\",reuse=\"never\"} 1\n",
		"\nhatchery_vms{pool=\"m\",state=\"idle\"} 1\n",
		"\nhatchery_vms{pool=\"m\",state=\"leased\"} 0\n",
		"\n# TYPE hatchery_acquire_duration_seconds histogram\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_not_null(strstr(out, want[i]), "no %s in:\n%s", want[i], out);

	cr_assert_eq(CTL(h, out, "stats", "--json", "--prometheus"), 2, "%s", out);
	h_finish(h);
}
