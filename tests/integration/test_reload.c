/* Reload (SIGHUP and `hatchctl reload`) and the idle refresh
 * (max_idle_age_ms) against a real hatcheryd: pools rebuilt, removed with a
 * lease out, a refused file, children replaced by age. Every test ends with
 * the harness's leak checks (fds back to the baseline, corrected for the
 * pools' new sizes; no zombie; exit 0 on SIGTERM).
 *
 * Fd arithmetic for the baseline: an idle child costs the daemon 3 fds
 * (control socket, pidfd, the client's end of its VM socket), a leased one
 * 2 (test_daemon.c, acquire_n_distinct). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_tests.h"
#include "harness.h"

#define FDS_PER_IDLE_CHILD 3

TestSuite(reload, .fini = h_teardown, .timeout = 90);

/* Rewrite the daemon's configuration file: its [supervisor] section as the
 * harness wrote it (jail_uid_base moved by `uid_base_delta`, to test a
 * refusal), then `fmt`'s pools. Written beside it and renamed over it, as
 * a deploy would. */
__attribute__((format(printf, 3, 4))) static void
rewrite_config(struct harness *h, unsigned uid_base_delta, const char *fmt, ...)
{
	FILE *f = fopen(h->cfg_path, "re");
	cr_assert_not_null(f, "open %s: %s", h->cfg_path, strerror(errno));
	char old[4096];
	size_t n = fread(old, 1, sizeof(old) - 1, f);
	fclose(f);
	old[n] = '\0';
	char *pool = strstr(old, "\n[pool");
	cr_assert_not_null(pool, "no [pool] in %s", h->cfg_path);
	pool[1] = '\0'; /* the [supervisor] section */
	char *base = strstr(old, "jail_uid_base = ");
	cr_assert_not_null(base);
	unsigned uid_base = (unsigned)strtoul(base + strlen("jail_uid_base = "), NULL, 10);
	*base = '\0';

	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.new", h->cfg_path);
	f = fopen(tmp, "we");
	cr_assert_not_null(f, "create %s: %s", tmp, strerror(errno));
	fprintf(f, "%sjail_uid_base = %u\n\n", old, uid_base + uid_base_delta);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, h->cfg_path), 0, "rename: %s", strerror(errno));
}

static int ctl(struct harness *h, char *out, size_t cap, const char *cmd)
{
	return h_run(HATCHCTL_PATH, (const char *[]){ "-s", h->sock, cmd, NULL }, 0, out,
		     cap, t_ms(20000));
}

static int vm_memory_mib(int vm)
{
	Hatchery__V1__VmInfoReply *vi = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0, "VM info: %s", err.msg);
	int mib = (int)vi->memory_mib;
	hatch_free(vi);
	return mib;
}

/* Every ready child of a.pool is new (none in old[]), there are want_idle
 * of them, and nothing else is going on; never fewer than a.want_idle - 0
 * ready is checked by the sampler. */
struct rebuilt_arg {
	struct pool_arg a;
	const pid_t *old;
	size_t n_old;
	unsigned min_ready; /* fail if a sample shows fewer ready children */
};

static bool all_new(void *arg)
{
	struct rebuilt_arg *r = arg;
	struct h_counts k = sample(&r->a);
	cr_assert_geq(k.idle, r->min_ready,
		      "pool \"%s\" dropped to %u ready children (at least %u expected)",
		      r->a.pool, k.idle, r->min_ready);
	if (k.idle != r->a.want_idle || k.spawning)
		return false;
	pid_t ready[16];
	size_t n = h_child_pids(r->a.h, r->a.pool, "ready", ready, 16);
	for (size_t i = 0; i < n && i < 16; i++)
		if (h_pid_in(ready[i], r->old, r->n_old))
			return false;
	/* and the retired ones are reaped, not "dying" */
	return h_child_pids(r->a.h, r->a.pool, "dying", ready, 16) == 0;
}

/* ---- min_idle and memory_mib, through hatchctl reload ------------------- */

Test(reload, min_idle_and_memory_with_a_lease_out)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 8"));
	Hatchery__V1__AcquireReply *info = NULL;
	int leased = acquire_ok(h->c, "p", 5000, &info);
	pid_t leased_pid = (pid_t)info->child_pid;
	hatch_free(info);
	cr_assert_eq(vm_memory_mib(leased), 16);
	struct pool_arg a = { .h = h, .pool = "p", .want_idle = 2 };
	cr_assert(h_wait_until(idle_at_least, &a, H_WAIT_MS), "refilled after the lease");
	pid_t old[8];
	size_t n_old = h_child_pids(h, "p", "ready", old, 8);
	cr_assert_eq(n_old, 2);

	rewrite_config(h, 0, "[pool \"p\"]\nmemory_mib = 24\nmin_idle = 3\nmax = 8\n");
	char out[4096];
	cr_assert_eq(ctl(h, out, sizeof(out), "reload"), 0, "hatchctl reload: %s", out);
	cr_assert_not_null(strstr(out, "1 rebuilt"), "summary: %s", out);

	/* Replaced one by one, new ones first: never fewer than the old
	 * min_idle ready on the way to the new one. */
	struct rebuilt_arg r = { .a = { .h = h, .pool = "p", .want_idle = 3, .max_total = 8 },
				 .old = old, .n_old = n_old, .min_ready = 2 };
	cr_assert(h_wait_until(all_new, &r, H_WAIT_MS),
		  "pool did not refill to 3 new children (old ones retired)");
	for (size_t i = 0; i < n_old; i++)
		cr_assert(h_wait_pid_gone(old[i], H_WAIT_MS), "old idle child %d still alive",
			  old[i]);
	struct h_stats st = h_stats(h, "p");
	cr_assert_eq(st.retired_reload, 2, "retired_reload %llu, expected 2",
		     (unsigned long long)st.retired_reload);
	cr_assert_eq(st.retired_max_age, 0);

	/* The new children are built from the new file. */
	int vm = acquire_ok(h->c, "p", 5000, NULL);
	cr_assert_eq(vm_memory_mib(vm), 24, "a VM leased after the reload");
	vm_release_ok(vm);
	close(vm);

	/* The lease from before was not touched: same child, old size. */
	cr_assert_eq(kill(leased_pid, 0), 0, "leased child %d was killed", leased_pid);
	vm_ping_ok(leased, "lease from before the reload");
	cr_assert_eq(vm_memory_mib(leased), 16, "the leased VM kept its memory");
	vm_release_ok(leased);
	close(leased);
	cr_assert(h_wait_pid_gone(leased_pid, H_WAIT_MS), "leased child did not exit");

	cr_assert_eq(h_stats(h, "p").retired_reload, 2, "a lease's end is no retirement");
	h->baseline_fds += FDS_PER_IDLE_CHILD; /* min_idle 2 -> 3 */
	h_finish(h);
}

/* ---- a pool removed with a lease out and a waiter, through SIGHUP ------- */

static bool pool_removed(void *arg)
{
	struct pool_arg *a = arg;
	Hatchery__V1__StatusReply *st = h_status(a->h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, a->pool);
	bool done = p && p->removed && p->idle == 0 && p->spawning == 0 && p->leased == 1 &&
		    p->n_children == 1;
	hatch_free(st);
	return done;
}

static bool pool_gone(void *arg)
{
	struct pool_arg *a = arg;
	Hatchery__V1__StatusReply *st = h_status(a->h);
	bool gone = h_pool_in(st, a->pool) == NULL;
	hatch_free(st);
	return gone;
}

Test(reload, remove_a_pool_with_a_lease_out_and_add_one)
{
	struct harness *h = h_start(POOL("a", "min_idle = 1\nmax = 2")
				    POOL("b", "min_idle = 1\nmax = 1"));
	Hatchery__V1__AcquireReply *info = NULL;
	int leased = acquire_ok(h->c, "b", 5000, &info);
	pid_t leased_pid = (pid_t)info->child_pid;
	hatch_free(info);

	/* b is at max: a second Acquire waits. */
	int waiter = h_raw_connect(h);
	cr_assert_eq(h_send_acquire_req(waiter, 7, "b", 20000), 0);
	struct pool_arg b = { .h = h, .pool = "b" };
	cr_assert(h_wait_until(waiting_one, &b, H_WAIT_MS), "the Acquire did not queue");

	pid_t a_before[4];
	size_t n_a = h_child_pids(h, "a", NULL, a_before, 4);
	/* b goes, c comes. */
	rewrite_config(h, 0, POOL("a", "min_idle = 1\nmax = 2") POOL("c", "min_idle = 1\nmax = 1"));
	cr_assert_eq(kill(h->pid, SIGHUP), 0);

	expect_error_reply(waiter, 7, E(NOT_FOUND), "Acquire waiting on a removed pool");
	close(waiter);
	cr_assert(h_wait_until(pool_removed, &b, H_WAIT_MS),
		  "b not shown as removed with its one lease");

	struct hatch_err err = { 0 };
	int fd = -1;
	cr_assert_eq(hatch_acquire(h->c, "b", 0, &fd, NULL, &err), -1);
	cr_assert_eq(err.code, E(NOT_FOUND), "Acquire from a removed pool: %s (%s)",
		     hatch_err_code_name(err.code), err.msg);

	/* The lease keeps working; pool a was not touched. */
	vm_ping_ok(leased, "lease on a removed pool");
	pid_t a_after[4];
	cr_assert_eq(h_child_pids(h, "a", NULL, a_after, 4), n_a);
	for (size_t i = 0; i < n_a; i++)
		cr_assert(h_pid_in(a_before[i], a_after, n_a), "pool a's child %d replaced",
			  a_before[i]);

	/* The added pool fills and serves. */
	struct pool_arg c = { .h = h, .pool = "c", .want_idle = 1 };
	cr_assert(h_wait_until(idle_at_least, &c, H_WAIT_MS), "added pool c did not fill");
	int vm = acquire_ok(h->c, "c", 5000, NULL);
	vm_ping_ok(vm, "a VM of the added pool");
	vm_release_ok(vm);
	close(vm);

	vm_release_ok(leased);
	close(leased);
	cr_assert(h_wait_pid_gone(leased_pid, H_WAIT_MS), "the leased child did not exit");
	cr_assert(h_wait_until(pool_gone, &b, H_WAIT_MS),
		  "b still in Status after its last lease ended");
	struct h_stats st = h_stats(h, "a");
	cr_assert_eq(st.retired_reload + st.retired_max_age, 0, "pool a was not touched");
	/* b's idle child went (at max, b had none when it was removed), c's
	 * came: one idle child either way. */
	h_finish(h);
}

/* ---- refused files --------------------------------------------------------- */

static void status_pids(struct harness *h, pid_t *out, size_t *n)
{
	*n = h_child_pids(h, "p", NULL, out, 8);
	cr_assert_leq(*n, 8);
}

Test(reload, bad_config_is_refused_and_nothing_changes)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 4\nallow_uids = 0 65534"));
	pid_t before[8], after[8];
	size_t n_before, n_after;
	status_pids(h, before, &n_before);

	/* A file that does not parse: the message start-up prints. */
	rewrite_config(h, 0, POOL("p", "min_idle = four\nmax = 4"));
	char startup[4096], out[4096];
	int st = h_run(HATCHERYD_PATH, (const char *[]){ "-c", h->cfg_path, NULL }, 0, startup,
		       sizeof(startup), t_ms(20000));
	cr_assert_eq(st, 1, "hatcheryd with the bad file: %s", startup);
	const char *msg = strstr(startup, "hatcheryd: ");
	cr_assert_not_null(msg, "%s", startup);
	msg += strlen("hatcheryd: ");
	char want[512];
	snprintf(want, sizeof(want), "%.*s", (int)strcspn(msg, "\n"), msg);
	cr_assert_not_null(strstr(want, "min_idle"), "%s", want);

	cr_assert_eq(ctl(h, out, sizeof(out), "reload"), 1, "hatchctl reload: %s", out);
	cr_assert_not_null(strstr(out, want), "reload says \"%s\", start-up \"%s\"", out, want);
	cr_assert_not_null(strstr(out, "INVALID_ARGUMENT"), "%s", out);

	/* A pool's client is not the daemon's operator: only uid 0 and
	 * hatcheryd's own uid may reload. (The harness dir is 0700: let
	 * another uid reach the socket, so that SO_PEERCRED decides.) */
	cr_assert_eq(chmod(h->dir, 0711), 0, "chmod %s: %s", h->dir, strerror(errno));
	cr_assert_eq(h_run(HATCHCTL_PATH, (const char *[]){ "-s", h->sock, "reload", NULL },
			   65534, out, sizeof(out), t_ms(20000)), 5,
		     "uid 65534 may acquire but not reload: %s", out);
	cr_assert_not_null(strstr(out, "PERMISSION_DENIED"), "%s", out);

	/* The same through SIGHUP: logged, nothing changes. */
	cr_assert_eq(kill(h->pid, SIGHUP), 0);
	ping_ok(h->c, "after a refused SIGHUP reload");

	/* What a reload cannot change: refused, and says so. */
	rewrite_config(h, 1000, POOL("p", "min_idle = 2\nmax = 4\nallow_uids = 0 65534"));
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_reload(h->c, NULL, &err), -1, "jail_uid_base changed, yet reloaded");
	cr_assert_eq(err.code, E(FAILED_PRECONDITION), "%s: %s",
		     hatch_err_code_name(err.code), err.msg);
	cr_assert_not_null(strstr(err.msg, "jail_uid_base cannot change without a restart"),
			   "%s", err.msg);

	/* Same children, same settings, still serving. */
	h_wait_steady(h, H_WAIT_MS);
	status_pids(h, after, &n_after);
	cr_assert_eq(n_after, n_before);
	for (size_t i = 0; i < n_before; i++)
		cr_assert(h_pid_in(before[i], after, n_after), "child %d gone", before[i]);
	struct h_counts k = h_counts(h, "p");
	cr_assert_eq(k.min_idle, 2);
	cr_assert_eq(k.max, 4);
	int vm = acquire_ok(h->c, "p", 5000, NULL);
	vm_ping_ok(vm, "after refused reloads");
	vm_release_ok(vm);
	close(vm);

	/* The log says why, each time. */
	FILE *f = fopen(h->log_path, "re");
	cr_assert_not_null(f);
	char line[1024];
	int refused = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "reload refused: "))
			refused++;
	fclose(f);
	cr_assert_eq(refused, 3, "%d \"reload refused\" lines in the log, expected 3", refused);
	h_finish(h);
}

/* ---- max_idle_age_ms --------------------------------------------------------- */

struct age_arg {
	struct pool_arg a;
	pid_t first[4];
	size_t n_first;
	unsigned samples;
};

/* Every original child replaced and two retirements counted; on every
 * sample, at least min_idle ready. */
static bool refreshed(void *arg)
{
	struct age_arg *g = arg;
	struct h_counts k = sample(&g->a);
	g->samples++;
	cr_assert_geq(k.idle, 2, "sample %u: %u ready children, min_idle is 2", g->samples,
		      k.idle);
	pid_t now[8];
	size_t n = h_child_pids(g->a.h, g->a.pool, "ready", now, 8);
	for (size_t i = 0; i < g->n_first; i++)
		if (h_pid_in(g->first[i], now, n < 8 ? n : 8))
			return false;
	return h_stats(g->a.h, g->a.pool).retired_max_age >= 2;
}

Test(reload, max_idle_age_replaces_idle_children)
{
	struct harness *h = h_start(POOL("p", "min_idle = 2\nmax = 4\nmax_idle_age_ms = 500"));
	struct age_arg g = { .a = { .h = h, .pool = "p", .max_total = 4 } };
	g.n_first = h_child_pids(h, "p", "ready", g.first, 4);
	cr_assert_eq(g.n_first, 2);
	cr_assert(h_wait_until(refreshed, &g, t_ms(15000)),
		  "the first children were not replaced after max_idle_age_ms");
	cr_assert_gt(g.samples, 3, "too few samples to say anything");
	struct h_stats st = h_stats(h, "p");
	cr_assert_eq(st.retired_reload, 0);
	cr_assert_eq(st.unexpected_exits, 0);

	char out[8192];
	cr_assert_eq(ctl(h, out, sizeof(out), "stats"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "RETIRED_AGE"), "hatchctl stats: %s", out);

	/* Switch the refresh off with a reload: bookkeeping only, so the
	 * children stay (no new generation). */
	rewrite_config(h, 0, POOL("p", "min_idle = 2\nmax = 4"));
	cr_assert_eq(ctl(h, out, sizeof(out), "reload"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "1 changed"), "summary: %s", out);
	h_wait_steady(h, H_WAIT_MS);
	pid_t kept[4];
	size_t n_kept = h_child_pids(h, "p", "ready", kept, 4);
	uint64_t retired = h_stats(h, "p").retired_max_age;
	usleep(t_ms(1200) * 1000);
	pid_t later[4];
	cr_assert_eq(h_child_pids(h, "p", "ready", later, 4), n_kept);
	for (size_t i = 0; i < n_kept; i++)
		cr_assert(h_pid_in(kept[i], later, n_kept), "child %d retired after the "
			  "refresh was switched off", kept[i]);
	cr_assert_eq(h_stats(h, "p").retired_max_age, retired);
	h_finish(h);
}

/* ---- reuse = snapshot: a lease of an old generation ends in a retirement -- */

#define BOOTED_FOR_SNAPSHOT                                                      \
	"[pool \"b\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST                 \
	"\nmemory_mib = 64\nmin_idle = 1\nmax = 2\n"
/* printf-style: the snapshot's path, then cpu_max_pct (a key a child is
 * built with: changing it starts a new generation). */
#define REUSING "[pool \"r\"]\nkind = restore\nsnapshot = %s\nreuse = snapshot\n"   \
		"memory_mib = 64\nmin_idle = 1\nmax = 3\ncpu_max_pct = %u\n"

Test(reload, reused_child_of_an_old_generation_is_retired_after_its_lease)
{
	char dir[64] = "/tmp/hatchery-rl.XXXXXX", snap[96];
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(snap, sizeof(snap), "%s/guest.snap", dir);
	{
		struct harness *h = h_start(BOOTED_FOR_SNAPSHOT);
		int vm = acquire_ok(h->c, "b", 5000, NULL);
		int fd = open(snap, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		cr_assert_geq(fd, 0, "%s: %s", snap, strerror(errno));
		Hatchery__V1__VmSaveReply *sr = NULL;
		struct hatch_err err = { 0 };
		cr_assert_eq(hatch_vm_save(vm, fd, &sr, &err), 0, "Save: %s", err.msg);
		hatch_free(sr);
		close(fd);
		vm_release_ok(vm);
		close(vm);
		h_finish(h);
	}
	struct harness *h = h_start(REUSING, snap, 100u);
	Hatchery__V1__AcquireReply *info = NULL;
	int vm = acquire_ok(h->c, "r", 5000, &info);
	pid_t pid = (pid_t)info->child_pid;
	hatch_free(info);
	vm_ping_ok(vm, "reused pool's VM");

	rewrite_config(h, 0, REUSING, snap, 50u);
	char out[4096];
	cr_assert_eq(ctl(h, out, sizeof(out), "reload"), 0, "%s", out);
	cr_assert_not_null(strstr(out, "1 rebuilt"), "%s", out);
	vm_ping_ok(vm, "the lease goes on across the reload");

	/* The clean end of the lease would reset it to idle; it was built
	 * for the old file, so it is retired instead. */
	vm_release_ok(vm);
	close(vm);
	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "old-generation child %d was reused", pid);
	struct pool_arg a = { .h = h, .pool = "r", .want_idle = 1 };
	cr_assert(h_wait_until(idle_at_least, &a, H_WAIT_MS), "pool did not refill");
	struct h_stats st = h_stats(h, "r");
	cr_assert_eq(st.resets, 0, "a child of the old generation was reset to idle");
	cr_assert_geq(st.retired_reload, 1);
	h_finish(h);
	unlink(snap);
	rmdir(dir);
}
