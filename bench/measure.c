/* measure.c - the phases that run against hatcheryd.
 *
 * Every phase talks to the daemon only through the client library, the
 * way a user would, and reads the daemon's own view (Status, Stats) through
 * the same calls. Waits that prepare a measurement are untimed; only the
 * step a figure names sits between its two clock readings.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Untimed iterations before the timed ones: page in the client library and
 * the daemon's reply paths, let the CPU frequency settle. */
#define WARMUP 20u

#define US 1000.0 /* row_dist scale: ns -> µs */

/* The daemon's jail and cgroup state, as its Status reply words them
 * ("on" or "off (--no-jail)"; "v2 at ..." or "unavailable (...)"). */
static int daemon_jail(struct hatch_client *c, char *jail, size_t jlen, char *cgroup,
		       size_t clen, struct hatch_err *err)
{
	Hatchery__V1__StatusReply *st = NULL;
	if (hatch_status(c, &st, err) < 0)
		return hatch_err_wrap(err, "status");
	snprintf(jail, jlen, "%s", st->jail && *st->jail ? st->jail : "unknown");
	snprintf(cgroup, clen, "%s", st->cgroup && *st->cgroup ? st->cgroup : "unknown");
	hatch_free(st);
	return 0;
}

/* With --jail on|off: is the daemon the one scripts/bench meant to start?
 * A figure labelled "jailed" from an unjailed daemon (or the reverse)
 * would be worse than none. */
int bench_check_jail(struct hatch_client *c, const struct bench_opts *o,
		     struct hatch_err *err)
{
	if (!o->jail)
		return 0;
	char jail[64], cgroup[160];
	if (daemon_jail(c, jail, sizeof(jail), cgroup, sizeof(cgroup), err) < 0)
		return -1;
	bool on = strcmp(jail, "on") == 0;
	if (on != (strcmp(o->jail, "on") == 0))
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "expected the daemon's jail %s, its Status says \"%s\"",
				     o->jail, jail);
	return 0;
}

/* The daemon's own histograms and counters for the pool, as rows. */
int bench_emit_daemon_stats(struct hatch_client *c, const struct bench_opts *o,
			    FILE *rows, const char *what, struct hatch_err *err)
{
	char jail[64], cgroup[160];
	if (daemon_jail(c, jail, sizeof(jail), cgroup, sizeof(cgroup), err) < 0)
		return -1;
	Hatchery__V1__StatsReply *st = NULL;
	const Hatchery__V1__PoolStats *ps = NULL;
	if (bench_pool_stats(c, o->pool, &st, &ps, err) < 0)
		return -1;
	char name[96], label[160];
	const struct {
		const char *name, *label;
		const Hatchery__V1__Latency *l;
	} h[] = {
		{ "spawn_to_ready.daemon", "spawn -> ready, daemon histogram", ps->spawn_to_ready },
		{ "acquire.daemon", "acquire in hatcheryd, daemon histogram", ps->acquire },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(h); i++) {
		const Hatchery__V1__Latency *l = h[i].l;
		snprintf(name, sizeof(name), "%s.%s", h[i].name, o->label);
		snprintf(label, sizeof(label), "%s, %s", h[i].label, what);
		row_begin(rows, name, "us", label);
		row_num(rows, "n", l ? (double)l->count : 0);
		if (l && l->count) {
			row_num(rows, "p50", (double)l->p50 / US);
			row_num(rows, "p90", (double)l->p90 / US);
			row_num(rows, "p99", (double)l->p99 / US);
			row_num(rows, "max", (double)l->max / US);
		}
		/* Bucketed: a percentile is its bucket's upper edge, at most
		 * 1/16 of a power of two above the true value. */
		row_str(rows, "source", "daemon histogram (log-linear, 16 steps per octave)");
		if (i == 0) {
			row_num(rows, "spawned", (double)ps->spawned);
			row_num(rows, "spawn_failures", (double)ps->spawn_failures);
			row_num(rows, "unexpected_exits", (double)ps->unexpected_exits);
			row_num(rows, "health_failures", (double)ps->health_failures);
			row_str(rows, "jail", jail);
			row_str(rows, "cgroup", cgroup);
		} else {
			row_num(rows, "acquisitions", (double)ps->acquisitions);
			row_num(rows, "hits", (double)ps->hits);
			row_num(rows, "misses", (double)ps->misses);
		}
		row_end(rows);
	}
	hatch_free(st);
	return 0;
}

/* ---- the lease loop of acquire, echo and cold ---------------------------------- */

void lease_samples_free(struct lease_samples *ls)
{
	samples_free(&ls->total);
	samples_free(&ls->acquire);
	samples_free(&ls->in_daemon);
	for (size_t k = 0; k < HATCH_ARRAY_SIZE(ls->call); k++) {
		samples_free(&ls->call[k]);
		samples_free(&ls->run[k]);
	}
	samples_free(&ls->release);
}

int bench_lease_loop(struct hatch_client *c, const struct bench_opts *o,
		     const struct lease_loop *l, struct lease_samples *ls,
		     struct hatch_err *err)
{
	uint64_t t_start = hatch_now_ns();
	for (unsigned i = 0; i < o->count + l->warmup;) {
		/* Untimed: every timed acquisition is the path the phase
		 * names, on a pool in the state it asks for (see the
		 * callers). */
		struct pool_counts pc;
		if (bench_wait_idle(c, o->pool, l->idle, l->settled, i ? NS_PER_MS : 0,
				    200 * NS_PER_US, l->wait_timeout_ns, &pc, err) < 0)
			return hatch_err_wrap(err, "after %u %s", i, l->cycles);
		if (l->cold && pc.idle != 0)
			return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
					     "pool \"%s\" keeps %u idle: the cold path needs "
					     "min_idle = 0", o->pool, pc.idle);

		Hatchery__V1__AcquireReply *info = NULL;
		int fd = -1;
		uint64_t run[2] = { 0, 0 };
		uint64_t t0 = hatch_now_ns();
		int r = hatch_acquire(c, o->pool, l->acquire_ms, &fd, &info, err);
		uint64_t t1 = hatch_now_ns();
		if (r == 0)
			r = l->call(fd, l->ctx, &run[0], err);
		uint64_t t2 = hatch_now_ns(), t3 = t2;
		if (r == 0 && l->calls > 1) {
			r = l->call(fd, l->ctx, &run[1], err);
			t3 = hatch_now_ns();
		}
		if (r < 0) {
			fprintf(stderr, "hatch-bench: %s %u: %s\n", l->what, i, err->msg);
			if (fd >= 0)
				close(fd);
			hatch_free(info);
			if (++ls->failures > l->max_failures)
				return hatch_err_wrap(err, "%u failures (last)", ls->failures);
			continue;
		}
		struct hatch_err rerr = { 0 };
		int rr = hatch_vm_release(fd, &rerr);
		uint64_t t4 = hatch_now_ns();
		if (rr < 0)
			fprintf(stderr, "hatch-bench: release %u: %s\n", i, rerr.msg);
		if (i >= l->warmup) {
			int e = samples_add(&ls->total, t2 - t0);
			e = e ?: samples_add(&ls->acquire, t1 - t0);
			e = e ?: samples_add(&ls->in_daemon, info->wait_ns);
			e = e ?: samples_add(&ls->call[0], t2 - t1);
			e = e ?: samples_add(&ls->run[0], run[0]);
			if (!e && l->calls > 1) {
				e = samples_add(&ls->call[1], t3 - t2);
				e = e ?: samples_add(&ls->run[1], run[1]);
			}
			if (!e && rr == 0)
				e = samples_add(&ls->release, t4 - t3);
			if (e) {
				hatch_free(info);
				return hatch_err_set(err, E(INTERNAL), -e, "samples");
			}
			ls->hits += info->hit;
		}
		hatch_free(info);
		i++;
	}
	ls->wall_s = (double)(hatch_now_ns() - t_start) / (double)NS_PER_S;
	return 0;
}

static void emit_hit_rate(FILE *rows, const struct bench_opts *o, const char *desc,
			  unsigned hits, size_t n)
{
	char name[96], label[200];
	snprintf(name, sizeof(name), "hit_rate.%s", o->label);
	snprintf(label, sizeof(label), "hit rate of the timed acquisitions, %s", desc);
	row_begin(rows, name, "%", label);
	row_num(rows, "value", n ? 100.0 * hits / (double)n : 0);
	row_num(rows, "hits", hits);
	row_num(rows, "n", (double)n);
	row_end(rows);
}

int bench_emit_lease_rows(struct hatch_client *c, const struct bench_opts *o, FILE *rows,
			  const struct lease_loop *l, const struct lease_samples *ls,
			  const struct series *series, size_t n, const char *desc,
			  struct hatch_err *err)
{
	const struct series_set set = { o->label, desc, "us", US };
	row_series_begin(rows, &set, &series[0]);
	if (!l->cold)
		row_num(rows, "min_idle", o->idle);
	if (l->payload)
		row_num(rows, "payload_bytes", l->payload);
	row_num(rows, "failures", ls->failures);
	row_num(rows, "warmup", l->warmup);
	if (l->cold)
		row_num(rows, "hits", ls->hits); /* 0: every acquisition waited */
	else
		row_num(rows, "wall_s", ls->wall_s);
	row_str(rows, "untimed_wait", l->untimed_wait);
	row_end(rows);
	row_series(rows, &set, series + 1, n - 1);
	if (!l->cold)
		emit_hit_rate(rows, o, desc, ls->hits, ls->total.n);
	return bench_emit_daemon_stats(c, o, rows, desc, err);
}

/* ---- 1, 5: acquire -> fd -> first VM ping ------------------------------------ */

/* Round trips that do no work in the daemon: what the transport and the
 * wake-ups cost on this machine, to set the acquire figures against. */
static int ping_baselines(struct hatch_client *c, unsigned n, struct samples *idle,
			  struct samples *hot, struct hatch_err *err)
{
	for (unsigned i = 0; i < n + WARMUP; i++) {
		/* As in the acquire loop: the client has slept, the daemon
		 * sits in epoll_wait, both CPUs may be idle. */
		bench_sleep_ns(NS_PER_MS);
		uint64_t t0 = hatch_now_ns();
		if (hatch_ping(c, NULL, err) < 0)
			return hatch_err_wrap(err, "ping");
		uint64_t t1 = hatch_now_ns();
		if (hatch_ping(c, NULL, err) < 0)
			return hatch_err_wrap(err, "ping");
		uint64_t t2 = hatch_now_ns();
		if (i < WARMUP)
			continue;
		int e = samples_add(idle, t1 - t0);
		e = e ?: samples_add(hot, t2 - t1);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	return 0;
}

static int vm_ping(int vm_fd, const void *ctx, uint64_t *run_ns, struct hatch_err *err)
{
	*run_ns = 0; /* a ping does not enter the guest */
	return hatch_vm_ping(vm_fd, err);
}

int bench_acquire(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	/* A fresh daemon is still filling its pool: 500 children take a few
	 * seconds. */
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 2 * NS_PER_MS,
			    120 * NS_PER_S, NULL, err) < 0)
		return -1;

	/* Every timed acquisition is the hit path of a full pool. The
	 * previous lease's replacement was forked when that lease went out
	 * and needs a millisecond or two. With o->wait_reaped the released
	 * child must also have been reaped (leased == 0), so that no exit --
	 * the VM teardown takes milliseconds -- runs alongside the next timed
	 * acquisition. */
	const struct lease_loop l = {
		.what = "acquire",
		.cycles = "acquisitions",
		.idle = o->idle,
		.settled = o->wait_reaped,
		.wait_timeout_ns = 10 * NS_PER_S,
		.untimed_wait = o->wait_reaped
			? "until idle >= min_idle, nothing spawning, released child reaped"
			: "until idle >= min_idle",
		.acquire_ms = 1000,
		.call = vm_ping,
		.calls = 2,
		.warmup = WARMUP,
		.max_failures = o->count / 100 + 10,
	};
	_cleanup_lease_samples_ struct lease_samples ls = { 0 };
	if (bench_lease_loop(c, o, &l, &ls, err) < 0)
		return -1;

	_cleanup_samples_ struct samples base_idle = { 0 }, base_hot = { 0 };
	unsigned nbase = o->count / 5 < 2000 ? o->count / 5 : 2000;
	if (ping_baselines(c, nbase ? nbase : 1, &base_idle, &base_hot, err) < 0)
		return -1;

	char desc[128];
	if (o->desc)
		snprintf(desc, sizeof(desc), "%s", o->desc);
	else
		snprintf(desc, sizeof(desc), "%s idle", o->label);
	const struct series series[] = {
		{ "acquire_ping", "acquire -> fd -> first VM ping", &ls.total },
		{ "acquire", "  acquire alone", &ls.acquire },
		{ "acquire_in_daemon", "    in hatcheryd (AcquireReply.wait_ns)", &ls.in_daemon },
		{ "first_ping", "  first VM ping alone", &ls.call[0] },
		{ "second_ping", "  second VM ping (untargeted)", &ls.call[1] },
		{ "release", "  hatch_vm_release (untargeted)", &ls.release },
		{ "baseline_ping_idle", "  baseline: daemon Ping after 1 ms asleep", &base_idle },
		{ "baseline_ping_hot", "  baseline: daemon Ping back to back", &base_hot },
	};
	return bench_emit_lease_rows(c, o, rows, &l, &ls, series, HATCH_ARRAY_SIZE(series),
				     desc, err);
}

/* ---- 2: release -> idle again, one child at a time ----------------------------- */

/* Also the source of the spawn -> ready figures that set the jail against
 * --no-jail: with max = 1 every spawn has the machine to itself (the old
 * child is reaped, its VM torn down, before the fork; nothing is leased),
 * so the daemon's histogram holds one kind of spawn only: 1 at start, the
 * warm-up cycles and one per timed cycle. scripts/bench runs this phase
 * against a jailed daemon and against one started with --no-jail. */
int bench_respawn(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	_cleanup_samples_ struct samples cycle = { 0 }, seen_to_ready = { 0 },
					 to_seen = { 0 };
	const unsigned warm = 5;
	for (unsigned i = 0; i < o->count + warm; i++) {
		if (bench_wait_idle(c, o->pool, 1, true, 0, 50 * NS_PER_US,
				    30 * NS_PER_S, NULL, err) < 0)
			return hatch_err_wrap(err, "after %u cycles", i);
		int fd = -1;
		if (hatch_acquire(c, o->pool, 1000, &fd, NULL, err) < 0 ||
		    hatch_vm_ping(fd, err) < 0) {
			if (fd >= 0)
				close(fd);
			return hatch_err_wrap(err, "cycle %u", i);
		}
		if (hatch_vm_release(fd, err) < 0)
			return hatch_err_wrap(err, "release, cycle %u", i);
		uint64_t t0 = hatch_now_ns(), seen = 0, t2;
		/* With max = 1 the replacement is forked only once the old
		 * child is reaped, so the cycle is: old child exits (its VM torn
		 * down) -> reaped -> fork -> new VM built -> Ready. */
		for (;;) {
			struct pool_counts pc;
			if (bench_pool_counts(c, o->pool, &pc, err) < 0)
				return -1;
			uint64_t t = hatch_now_ns();
			if (pc.idle >= 1) {
				t2 = t;
				break;
			}
			if (pc.spawning && !seen)
				seen = t;
			if (t - t0 > 10 * NS_PER_S)
				return hatch_err_set(err, E(UNAVAILABLE), 0,
						     "no idle child 10 s after a release");
			bench_sleep_ns(50 * NS_PER_US);
		}
		if (i < warm)
			continue;
		int e = samples_add(&cycle, t2 - t0);
		if (!e && seen) {
			e = samples_add(&seen_to_ready, t2 - seen);
			e = e ?: samples_add(&to_seen, seen - t0);
		}
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	const char *L = o->label;
	const char *desc = o->desc ? o->desc : "max=1";
	char name[96], label[200];
	snprintf(name, sizeof(name), "respawn.%s", L);
	snprintf(label, sizeof(label),
		 "release -> idle again, client, %s (old child exits first)", desc);
	row_begin(rows, name, "us", label);
	row_dist(rows, &cycle, US);
	row_str(rows, "poll", "Status every 50 us");
	row_str(rows, "includes",
		"the old child's exit and its VM's kernel teardown, the reap, the fork "
		"and the new child's spawn -> ready");
	row_end(rows);
	const struct series_set set = { L, desc, "us", US };
	const struct series split[] = {
		{ "respawn.exit", "  release -> replacement seen spawning (old child's exit)",
		  &to_seen },
		{ "respawn.spawn", "  seen spawning -> idle (lower bound of spawn -> ready)",
		  &seen_to_ready },
	};
	row_series(rows, &set, split, HATCH_ARRAY_SIZE(split));
	return bench_emit_daemon_stats(c, o, rows, desc, err);
}

/* ---- 3: refill rate ---------------------------------------------------------------- */

int bench_refill(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0)
		return -1;
	const char *L = o->label;
	char name[96], label[160];
	/* scripts/bench labels these "ms<max_spawning>". */
	const char *setting = strncmp(L, "ms", 2) == 0 ? L + 2 : L;

	/* Cold: scripts/bench started the daemon just before us; the
	 * daemon's uptime in the first reply that shows a full pool is the
	 * fill time (to within the 2 ms poll). */
	struct pool_counts pc;
	bool first = true, late = false;
	uint64_t until = hatch_now_ns() + 120 * NS_PER_S;
	for (;;) {
		if (bench_pool_counts(c, o->pool, &pc, err) < 0)
			return -1;
		if (pc.idle >= o->idle)
			break;
		first = false;
		if (hatch_now_ns() > until)
			return hatch_err_set(err, E(UNAVAILABLE), 0,
					     "cold fill: %u idle of %u after 120 s", pc.idle,
					     o->idle);
		bench_sleep_ns(2 * NS_PER_MS);
	}
	late = first; /* full before we first looked: an upper bound only */
	double cold_s = (double)pc.uptime_ms / 1000.0;
	snprintf(name, sizeof(name), "refill.cold.%s", L);
	snprintf(label, sizeof(label), "cold fill of %u from daemon start, max_spawning=%s",
		 o->idle, setting);
	row_begin(rows, name, "children/s", label);
	row_num(rows, "value", cold_s > 0 ? o->idle / cold_s : 0);
	row_num(rows, "children", o->idle);
	row_num(rows, "ms", (double)pc.uptime_ms);
	if (late)
		row_str(rows, "note", "pool was full at the first look: rate is a lower bound");
	row_end(rows);

	/* Drain and refill: lease the whole pool, hand it all back, time
	 * until it is full again. Children spawned in the window (Stats
	 * `spawned`, so those forked while the leases were going out count
	 * too) over the window's length. */
	_cleanup_samples_ struct samples rate = { 0 }, dur = { 0 }, lease = { 0 };
	_cleanup_free_ int *fds = calloc(o->idle, sizeof(*fds));
	if (!fds)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "fds");
	for (unsigned r = 0; r < o->rounds; r++) {
		if (bench_wait_idle(c, o->pool, o->idle, true, 0, 2 * NS_PER_MS,
				    60 * NS_PER_S, NULL, err) < 0)
			return hatch_err_wrap(err, "round %u", r);
		Hatchery__V1__StatsReply *st = NULL;
		const Hatchery__V1__PoolStats *ps = NULL;
		if (bench_pool_stats(c, o->pool, &st, &ps, err) < 0)
			return -1;
		uint64_t spawned0 = ps->spawned;
		hatch_free(st);

		uint64_t t0 = hatch_now_ns();
		unsigned n = 0;
		for (; n < o->idle; n++) {
			if (hatch_acquire(c, o->pool, 0, &fds[n], NULL, err) < 0)
				break;
		}
		uint64_t t_leased = hatch_now_ns();
		for (unsigned k = 0; k < n; k++)
			close(fds[k]);
		if (n < o->idle)
			return hatch_err_wrap(err, "round %u: lease %u of %u", r, n + 1, o->idle);
		if (bench_wait_idle(c, o->pool, o->idle, false, NS_PER_MS, NS_PER_MS,
				    60 * NS_PER_S, NULL, err) < 0)
			return hatch_err_wrap(err, "round %u: refill", r);
		uint64_t t1 = hatch_now_ns();
		if (bench_pool_stats(c, o->pool, &st, &ps, err) < 0)
			return -1;
		uint64_t spawned = ps->spawned - spawned0;
		hatch_free(st);
		double secs = (double)(t1 - t0) / (double)NS_PER_S;
		/* children/s, kept in thousandths to fit the integer samples */
		int e = samples_add(&rate, (uint64_t)((double)spawned / secs * 1000.0));
		e = e ?: samples_add(&dur, t1 - t0);
		e = e ?: samples_add(&lease, t_leased - t0);
		if (e)
			return hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	snprintf(name, sizeof(name), "refill.drain.%s", L);
	snprintf(label, sizeof(label), "drain %u and refill, max_spawning=%s", o->idle, setting);
	row_begin(rows, name, "children/s", label);
	row_num(rows, "max_spawning", strtod(setting, NULL));
	row_dist(rows, &rate, 1000.0);
	row_num(rows, "children", o->idle);
	row_num(rows, "ms_p50", (double)samples_pct(&dur, 50) / (double)NS_PER_MS);
	row_num(rows, "lease_all_ms_p50", (double)samples_pct(&lease, 50) / (double)NS_PER_MS);
	row_end(rows);
	return 0;
}

/* ---- 4: memory of an idle child ----------------------------------------------------- */

struct child_mem {
	uint64_t private_dirty, private_clean; /* KiB, guest mapping excluded */
	uint64_t guest_private_dirty, guest_rss;
	uint64_t rss, pss;                     /* KiB, all mappings */
	unsigned guest_maps;
};

/* Sum /proc/PID/smaps. The guest mapping is the anonymous one (no inode,
 * no name) exactly guest_bytes long. */
static int read_smaps(pid_t pid, uint64_t guest_bytes, struct child_mem *m)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	*m = (struct child_mem){ 0 };
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	bool guest = false;
	while (getline(&line, &cap, f) >= 0) {
		unsigned long long lo, hi, off, ino;
		unsigned maj, mnr;
		char perms[8];
		int pos = 0;
		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu%n", &lo, &hi, perms, &off,
			   &maj, &mnr, &ino, &pos) == 7) {
			const char *rest = line + pos;
			while (*rest == ' ')
				rest++;
			guest = ino == 0 && (*rest == '\n' || *rest == '\0') &&
				hi - lo == guest_bytes;
			m->guest_maps += guest;
			continue;
		}
		char key[64];
		unsigned long long kb;
		if (sscanf(line, "%63[^:]: %llu kB", key, &kb) != 2)
			continue;
		if (strcmp(key, "Rss") == 0) {
			m->rss += kb;
			if (guest)
				m->guest_rss += kb;
		} else if (strcmp(key, "Pss") == 0) {
			m->pss += kb;
		} else if (strcmp(key, "Private_Dirty") == 0) {
			if (guest)
				m->guest_private_dirty += kb;
			else
				m->private_dirty += kb;
		} else if (strcmp(key, "Private_Clean") == 0 && !guest) {
			m->private_clean += kb;
		}
	}
	fclose(f);
	return 0;
}

int bench_mem_available(uint64_t *kib)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return -errno;
	char line[256];
	int r = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
			*kib = v;
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}

int bench_memory(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0)
		return -1;
	struct pool_counts pc;
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 2 * NS_PER_MS,
			    120 * NS_PER_S, &pc, err) < 0)
		return -1;
	Hatchery__V1__StatusReply *st = NULL;
	if (hatch_status(c, &st, err) < 0)
		return hatch_err_wrap(err, "status");
	_cleanup_samples_ struct samples pd = { 0 }, pcl = { 0 }, gpd = { 0 }, grss = { 0 },
					 rss = { 0 }, pss = { 0 };
	unsigned no_guest = 0, gone = 0;
	uint64_t guest_bytes = (uint64_t)o->memory_mib << 20;
	int e = 0;
	for (size_t i = 0; i < st->n_pools && !e; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		if (strcmp(p->name, o->pool) != 0)
			continue;
		for (size_t k = 0; k < p->n_children && !e; k++) {
			const Hatchery__V1__ChildStatus *ch = p->children[k];
			if (strcmp(ch->state, "ready") != 0)
				continue;
			struct child_mem m = { 0 };
			if (read_smaps((pid_t)ch->pid, guest_bytes, &m) < 0) {
				gone++; /* exited between Status and now */
				continue;
			}
			if (m.guest_maps != 1)
				no_guest++;
			e = samples_add(&pd, m.private_dirty);
			e = e ?: samples_add(&pcl, m.private_clean);
			e = e ?: samples_add(&gpd, m.guest_private_dirty);
			e = e ?: samples_add(&grss, m.guest_rss);
			e = e ?: samples_add(&rss, m.rss);
			e = e ?: samples_add(&pss, m.pss);
		}
	}
	hatch_free(st);
	if (e)
		return hatch_err_set(err, E(INTERNAL), -e, "samples");
	if (pd.n == 0)
		return hatch_err_set(err, E(INTERNAL), 0, "no idle child's smaps could be read");

	const char *L = o->label;
	char name[96], label[160], desc[64];
	snprintf(desc, sizeof(desc), "%s idle", L);
	const struct series_set set = { L, desc, "KiB", 1.0 };
	const struct series series[] = {
		{ "mem.private_dirty", "Private_Dirty, guest mapping excluded", &pd },
		{ "mem.guest_private_dirty", "  Private_Dirty of the guest mapping", &gpd },
		{ "mem.guest_rss", "  Rss of the guest mapping", &grss },
		{ "mem.private_clean", "  Private_Clean, guest mapping excluded", &pcl },
		{ "mem.rss", "  Rss, all mappings", &rss },
		{ "mem.pss", "  Pss, all mappings", &pss },
	};
	row_series_begin(rows, &set, &series[0]);
	row_num(rows, "memory_mib", o->memory_mib);
	row_num(rows, "children_without_one_guest_mapping", no_guest);
	row_num(rows, "children_gone", gone);
	row_end(rows);
	row_series(rows, &set, series + 1, HATCH_ARRAY_SIZE(series) - 1);

	/* What the host gave up per child, kernel side included (KVM's own
	 * structures, page tables, the child's kernel stack): MemAvailable
	 * before the daemon started against now, over all its children.
	 * Approximate: anything else on the machine moves it too. */
	uint64_t now_kib = 0;
	if (o->meminfo_before && bench_mem_available(&now_kib) == 0) {
		unsigned children = pc.idle + pc.leased + pc.spawning;
		double per = children ? ((double)o->meminfo_before - (double)now_kib) / children : 0;
		snprintf(name, sizeof(name), "mem.host_per_child.%s", L);
		snprintf(label, sizeof(label),
			 "host MemAvailable drop per child, kernel included, %s", desc);
		row_begin(rows, name, "KiB", label);
		row_num(rows, "value", per);
		row_num(rows, "children", children);
		row_num(rows, "mem_available_before_kib", (double)o->meminfo_before);
		row_num(rows, "mem_available_after_kib", (double)now_kib);
		row_end(rows);
	}
	return 0;
}
