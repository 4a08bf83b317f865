/* Unit tests for the child state machine and pool bookkeeping (pool.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "hatchery/cleanup.h"
#include "pool.h"

#define MS (1000ull * 1000)

/* The action sets of pool.c's table, spelled out: what the server must do. */
#define ACTS_READY (ACT_HEALTH | ACT_SERVE | ACT_REFILL)
#define ACTS_LEASE (ACT_WAKE | ACT_REFILL_LATER)
#define ACTS_KILLED (ACT_KILL | ACT_CLOSE | ACT_REFILL)
#define ACTS_REAPED (ACT_CLOSE | ACT_RELEASE | ACT_REFILL)

static struct sup_pool_config cfg;
static struct sup_pool pool;

static void setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.name, "t");
	cfg.min_idle = 2;
	cfg.max = 4;
	cfg.max_spawning = 3;
	cfg.memory_mib = 16;
	cfg.vcpus = 1;
	cfg.health_interval_ms = 1000;
	cfg.health_timeout_ms = 200;
	sup_pool_init(&pool, &cfg);
}

static void free_all(void)
{
	for (int s = 0; s < CHILD__NSTATES; s++)
		while (pool.list[s])
			sup_child_free(pool.list[s]);
}

TestSuite(pool, .init = setup, .fini = free_all);

Test(pool, legal_life_cycle)
{
	struct sup_child *c = sup_child_new(&pool, 1, 0);
	cr_assert_eq(c->state, CHILD_SPAWNING);
	cr_assert_eq(pool.count[CHILD_SPAWNING], 1);
	cr_assert_eq(sup_child_event(c, EV_READY, 2 * MS), ACTS_READY);
	cr_assert_eq(c->state, CHILD_READY);
	cr_assert_eq(pool.count[CHILD_SPAWNING], 0);
	cr_assert_eq(pool.count[CHILD_READY], 1);
	cr_assert_eq(sup_pool_first_ready(&pool), c);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 3 * MS), ACTS_LEASE);
	cr_assert_eq(c->state, CHILD_LEASED);
	cr_assert_null(sup_pool_first_ready(&pool));
	cr_assert_eq(sup_child_event(c, EV_EXIT, 4 * MS), ACTS_REAPED);
	cr_assert_eq(c->state, CHILD_DEAD);
	cr_assert_eq(sup_pool_total(&pool), 0, "DEAD children do not count toward max");
	/* The end of a lease is not an unexpected exit. */
	cr_assert_eq(pool.stats.unexpected_exits, 0);
	cr_assert_eq(pool.stats.spawn_to_ready.count, 1);
	cr_assert_eq(pool.stats.spawn_to_ready.max, 2 * MS);
}

Test(pool, illegal_moves_change_nothing)
{
	struct sup_child *c = sup_child_new(&pool, 1, 0);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 1), ACT_INVALID,
		     "a spawning child cannot be leased");
	cr_assert_eq(c->state, CHILD_SPAWNING);
	sup_child_event(c, EV_READY, 1);
	cr_assert_eq(sup_child_event(c, EV_READY, 2), ACT_INVALID);
	sup_child_event(c, EV_LEASE, 3);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 4), ACT_INVALID,
		     "a leased child cannot be leased twice");
	cr_assert_eq(sup_child_event(c, EV_READY, 4), ACT_INVALID,
		     "a leased VM never goes back to idle");
	sup_child_event(c, EV_KILL_SHUTDOWN, 5);
	cr_assert_eq(c->state, CHILD_DYING);
	cr_assert_eq(sup_child_event(c, EV_KILL_SHUTDOWN, 6), ACT_INVALID);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 6), ACT_INVALID);
	sup_child_event(c, EV_CRASH, 7);
	cr_assert_eq(c->state, CHILD_DEAD);
	for (int ev = 0; ev < EV__N; ev++)
		cr_assert_eq(sup_child_event(c, ev, 8), ACT_INVALID,
			     "DEAD is final (event %d)", ev);
	cr_assert_eq(sup_child_event(c, EV__N, 8), ACT_INVALID);
	cr_assert_eq(pool.count[CHILD_DEAD], 1);
}

Test(pool, counts_match_lists)
{
	struct sup_child *c[4];
	for (int i = 0; i < 4; i++)
		c[i] = sup_child_new(&pool, (uint64_t)i + 1, 0);
	sup_child_event(c[0], EV_READY, 1);
	sup_child_event(c[1], EV_READY, 1);
	sup_child_event(c[1], EV_LEASE, 2);
	sup_child_event(c[2], EV_KILL_SHUTDOWN, 2);
	for (int s = 0; s < CHILD__NSTATES; s++) {
		unsigned n = 0;
		for (struct sup_child *x = pool.list[s]; x; x = x->next) {
			cr_assert_eq(x->state, s);
			n++;
		}
		cr_assert_eq(n, pool.count[s], "state %s", sup_child_state_name(s));
	}
	cr_assert_eq(sup_pool_total(&pool), 4);
}

Test(pool, ready_children_are_fifo)
{
	struct sup_child *a = sup_child_new(&pool, 1, 0);
	struct sup_child *b = sup_child_new(&pool, 2, 0);
	sup_child_event(b, EV_READY, 1);
	sup_child_event(a, EV_READY, 2);
	cr_assert_eq(sup_pool_first_ready(&pool), b, "oldest ready first");
	sup_child_event(b, EV_LEASE, 3);
	cr_assert_eq(sup_pool_first_ready(&pool), a);
}

Test(pool, stats_by_cause)
{
	struct sup_child *a = sup_child_new(&pool, 1, 0);
	struct sup_child *b = sup_child_new(&pool, 2, 0);
	struct sup_child *c = sup_child_new(&pool, 3, 0);
	struct sup_child *d = sup_child_new(&pool, 4, 0);
	cr_assert_eq(pool.stats.spawned, 4);
	sup_child_event(a, EV_READY, 1);
	sup_child_event(a, EV_KILL_HEALTH, 2);
	cr_assert_eq(pool.stats.health_failures, 1);
	sup_child_event(a, EV_CRASH, 3);
	cr_assert_eq(pool.stats.unexpected_exits, 0, "we killed it: expected");
	sup_child_event(b, EV_READY, 1);
	sup_child_event(b, EV_CRASH, 2);
	cr_assert_eq(pool.stats.unexpected_exits, 1, "idle child died unasked");
	sup_child_event(c, EV_READY, 1);
	sup_child_event(c, EV_LEASE, 2);
	sup_child_event(c, EV_CRASH, 3);
	cr_assert_eq(pool.stats.unexpected_exits, 2, "leased child crashed");
	sup_child_event(d, EV_EXIT, 1);
	cr_assert_eq(pool.stats.spawn_failures, 1, "exit before ready");
	cr_assert_eq(pool.stats.unexpected_exits, 2);
}

Test(pool, spawn_needed_respects_min_idle_max_and_concurrency)
{
	/* min_idle 2, max 4, max_spawning 3 */
	cr_assert_eq(sup_pool_spawn_needed(&pool, 0), 2);
	pool.waiting = 5;
	cr_assert_eq(sup_pool_spawn_needed(&pool, 0), 3, "bounded by max_spawning");
	struct sup_child *c[4];
	for (int i = 0; i < 3; i++)
		c[i] = sup_child_new(&pool, (uint64_t)i, 0);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 0), 0, "3 already spawning");
	for (int i = 0; i < 3; i++) {
		sup_child_event(c[i], EV_READY, 1);
		sup_child_event(c[i], EV_LEASE, 1);
	}
	cr_assert_eq(sup_pool_spawn_needed(&pool, 1), 1, "max 4 total, 3 leased");
	c[3] = sup_child_new(&pool, 3, 1);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 1), 0, "at max");
	pool.waiting = 0;
	sup_child_event(c[3], EV_READY, 2);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 2), 0, "at max even below min_idle");
	sup_child_event(c[0], EV_EXIT, 3);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 3), 1, "one idle, min_idle 2");
}

Test(pool, spawn_failures_back_off_exponentially_and_degrade)
{
	uint64_t now = 1000 * MS;
	uint64_t last_delay = 0;
	for (unsigned i = 1; i <= 12; i++) {
		cr_assert_gt(sup_pool_spawn_needed(&pool, now), 0);
		struct sup_child *c = sup_child_new(&pool, i, now);
		sup_child_event(c, EV_CRASH, now);
		sup_child_free(c);
		uint64_t delay = pool.next_spawn_at - now;
		cr_assert_eq(sup_pool_spawn_needed(&pool, now + delay - 1), 0,
			     "no fork during backoff (failure %u)", i);
		if (i > 1 && last_delay < SUP_BACKOFF_MAX_NS)
			cr_assert(delay == 2 * last_delay || delay == SUP_BACKOFF_MAX_NS,
				  "delay doubles: %llu after %llu",
				  (unsigned long long)delay, (unsigned long long)last_delay);
		cr_assert_leq(delay, SUP_BACKOFF_MAX_NS, "capped");
		cr_assert_eq(sup_pool_degraded(&pool), i >= SUP_DEGRADED_AFTER);
		last_delay = delay;
		now += delay;
	}
	cr_assert_eq(last_delay, SUP_BACKOFF_MAX_NS);
	cr_assert_eq(sup_pool_spawn_needed(&pool, now), 1, "probe one at a time");
	struct sup_child *ok = sup_child_new(&pool, 99, now);
	sup_child_event(ok, EV_READY, now + 1);
	cr_assert_not(sup_pool_degraded(&pool), "a success ends the degraded state");
	cr_assert_eq(pool.next_spawn_at, 0);
	cr_assert_eq(sup_pool_spawn_needed(&pool, now + 1), 1);
}

Test(pool, shutdown_kill_of_spawning_child_is_not_a_failure)
{
	struct sup_child *c = sup_child_new(&pool, 1, 0);
	sup_child_event(c, EV_KILL_SHUTDOWN, 1);
	sup_child_event(c, EV_CRASH, 2);
	cr_assert_eq(pool.stats.spawn_failures, 0);
	struct sup_child *d = sup_child_new(&pool, 2, 0);
	sup_child_event(d, EV_KILL_SPAWN_TIMEOUT, 1);
	cr_assert_eq(pool.stats.spawn_failures, 1);
}

Test(pool, reset_returns_a_leased_child_to_ready_only_with_reuse)
{
	struct sup_child *c = sup_child_new(&pool, 1, 0);
	cr_assert_eq(sup_child_event(c, EV_RESET, 1), ACT_INVALID,
		     "a spawning child has no lease to reset");
	sup_child_event(c, EV_READY, 1);
	sup_child_event(c, EV_LEASE, 2);
	cr_assert_eq(sup_child_event(c, EV_RESET, 3), ACT_INVALID,
		     "reuse = never: a leased child never goes back to idle");
	cr_assert_eq(c->state, CHILD_LEASED);
	cr_assert_eq(pool.stats.resets, 0);

	cfg.reuse = SUP_REUSE_SNAPSHOT;
	cr_assert_eq(sup_child_event(c, EV_RESET, 4), ACTS_READY);
	cr_assert_eq(c->state, CHILD_READY);
	cr_assert_eq(c->t_state, 4);
	cr_assert_eq(pool.count[CHILD_LEASED], 0);
	cr_assert_eq(pool.count[CHILD_READY], 1);
	cr_assert_eq(pool.stats.resets, 1);
	cr_assert_eq(pool.stats.unexpected_exits, 0);
	cr_assert_eq(sup_child_event(c, EV_RESET, 5), ACT_INVALID,
		     "an idle child has no lease to reset");
	/* Reset children are leased again like any other. */
	cr_assert_eq(sup_pool_first_ready(&pool), c);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 6), ACTS_LEASE);
	cr_assert_eq(sup_child_event(c, EV_RESET, 7), ACTS_READY);
	cr_assert_eq(pool.stats.resets, 2);
	sup_child_event(c, EV_KILL_SHUTDOWN, 8);
	cr_assert_eq(sup_child_event(c, EV_RESET, 9), ACT_INVALID,
		     "a dying child is not reset");
	sup_child_event(c, EV_EXIT, 10);
	cr_assert_eq(sup_child_event(c, EV_RESET, 11), ACT_INVALID);
}

/* Every allowed move, with the actions it asks of the server. */
Test(pool, actions_per_transition)
{
	cfg.reuse = SUP_REUSE_SNAPSHOT;
	static const enum sup_child_event kills[] = {
		EV_KILL_HEALTH, EV_KILL_SPAWN_TIMEOUT, EV_KILL_PROTOCOL, EV_KILL_SHUTDOWN,
	};
	static const enum sup_child_event deaths[] = { EV_EXIT, EV_CRASH, EV_SECCOMP };
	uint64_t id = 1;
	for (size_t k = 0; k < HATCH_ARRAY_SIZE(kills); k++) {
		/* A kill in any live state: SIGKILL, channels closed, refill. */
		for (int st = CHILD_SPAWNING; st <= CHILD_LEASED; st++) {
			struct sup_child *c = sup_child_new(&pool, id++, 0);
			if (st >= CHILD_READY)
				sup_child_event(c, EV_READY, 1);
			if (st == CHILD_LEASED)
				sup_child_event(c, EV_LEASE, 2);
			cr_assert_eq(sup_child_event(c, kills[k], 3), ACTS_KILLED,
				     "kill %zu in state %d", k, st);
			cr_assert_eq(c->state, CHILD_DYING);
			cr_assert_neq(c->killed, KILL_NONE, "the kill's reason is kept");
			cr_assert_eq(sup_child_event(c, EV_HANGUP, 4), ACT_CLOSE,
				     "a dying child's hangup closes what is left");
			cr_assert_eq(sup_child_event(c, EV_CRASH, 5), ACTS_REAPED);
			sup_child_free(c);
		}
	}
	for (size_t d = 0; d < HATCH_ARRAY_SIZE(deaths); d++) {
		/* Reaped in any live state: everything released, refill. */
		for (int st = CHILD_SPAWNING; st <= CHILD_LEASED; st++) {
			struct sup_child *c = sup_child_new(&pool, id++, 0);
			if (st >= CHILD_READY)
				sup_child_event(c, EV_READY, 1);
			if (st == CHILD_LEASED)
				sup_child_event(c, EV_LEASE, 2);
			cr_assert_eq(sup_child_event(c, deaths[d], 3), ACTS_REAPED,
				     "death %zu in state %d", d, st);
			cr_assert_eq(c->state, CHILD_DEAD);
			cr_assert_eq(c->killed, KILL_NONE);
			sup_child_free(c);
		}
	}
	struct sup_child *c = sup_child_new(&pool, id++, 0);
	cr_assert_eq(sup_child_event(c, EV_HANGUP, 1), ACT_CLOSE,
		     "a spawning child's hangup: its reap judges the spawn");
	cr_assert_eq(c->state, CHILD_SPAWNING);
	struct sup_child *l = sup_child_new(&pool, id++, 0);
	sup_child_event(l, EV_READY, 1);
	cr_assert_eq(sup_child_event(l, EV_LEASE, 2), ACTS_LEASE);
	cr_assert_eq(sup_child_event(l, EV_HANGUP, 3), ACT_CLOSE,
		     "a leased child's hangup: its reap tells a clean end from a crash");
	cr_assert_eq(l->state, CHILD_LEASED);
	cr_assert_eq(sup_child_event(l, EV_RESET, 4), ACTS_READY);
}

/* The bug of issue 9: an idle child whose control channel closed stayed on
 * the ready list and was handed out with a closed VM socket. */
Test(pool, hangup_takes_an_idle_child_off_the_ready_list)
{
	struct sup_child *a = sup_child_new(&pool, 1, 0);
	struct sup_child *b = sup_child_new(&pool, 2, 0);
	sup_child_event(a, EV_READY, 1);
	sup_child_event(b, EV_READY, 2);
	cr_assert_eq(sup_pool_first_ready(&pool), a);
	cr_assert_eq(sup_child_event(a, EV_HANGUP, 3), ACT_KILL | ACT_CLOSE | ACT_REFILL);
	cr_assert_eq(a->state, CHILD_DYING);
	cr_assert_eq(sup_pool_first_ready(&pool), b, "the next ready child is chosen");
	cr_assert_eq(pool.count[CHILD_READY], 1);
	cr_assert_eq(a->killed, KILL_NONE, "it died unasked: not our kill");
	cr_assert_eq(sup_child_life_state(a), CHILD_READY, "logged as an idle child");
	cr_assert_eq(pool.stats.unexpected_exits, 1);
	cr_assert_eq(sup_child_event(a, EV_LEASE, 4), ACT_INVALID);
	cr_assert_eq(sup_child_event(a, EV_CRASH, 5), ACTS_REAPED);
	cr_assert_eq(pool.stats.unexpected_exits, 1, "counted once");
}

Test(pool, every_counter_is_kept_here)
{
	struct sup_child *a = sup_child_new(&pool, 1, 0);
	sup_child_event(a, EV_READY, 1);
	sup_child_event(a, EV_SECCOMP, 2);
	cr_assert_eq(pool.stats.seccomp_kills, 1);
	cr_assert_eq(pool.stats.unexpected_exits, 1);
	struct sup_child *b = sup_child_new(&pool, 2, 0);
	sup_child_event(b, EV_KILL_PROTOCOL, 1);
	sup_child_event(b, EV_SECCOMP, 2);
	cr_assert_eq(pool.stats.seccomp_kills, 2, "counted in any state");
	sup_pool_count_acquire(&pool, true, 5 * MS);
	sup_pool_count_acquire(&pool, false, 7 * MS);
	sup_pool_count_refusal(&pool);
	cr_assert_eq(pool.stats.acquisitions, 2);
	cr_assert_eq(pool.stats.hits, 1);
	cr_assert_eq(pool.stats.misses, 2, "a waited-for lease and a refusal");
	cr_assert_eq(pool.stats.acquire.count, 2);
	cr_assert_eq(pool.stats.acquire.max, 7 * MS);
}

/* ---- retirement: max_idle_age_ms and generations ---------------------------- */

static struct sup_child *ready_child(uint64_t id, uint64_t at)
{
	struct sup_child *c = sup_child_new(&pool, id, at);
	cr_assert_eq(sup_child_event(c, EV_READY, at), ACTS_READY);
	return c;
}

Test(pool, max_idle_age_picks_the_oldest_and_replaces_it_first)
{
	cfg.max_idle_age_ms = 100;
	struct sup_child *a = ready_child(1, 0), *b = ready_child(2, 50 * MS);
	cr_assert_null(sup_pool_retire_candidate(&pool, 99 * MS), "not old enough yet");
	cr_assert_eq(sup_pool_spawn_needed(&pool, 99 * MS), 0, "min_idle 2, 2 ready");
	cr_assert_eq(sup_pool_retire_candidate(&pool, 100 * MS), a);
	/* Its replacement first: one more than min_idle, and no retirement
	 * while only min_idle are ready. */
	cr_assert_eq(sup_pool_spawn_needed(&pool, 100 * MS), 1);
	cr_assert_not(sup_pool_may_retire(&pool), "would drop below min_idle");
	struct sup_child *c = ready_child(3, 110 * MS);
	cr_assert(sup_pool_may_retire(&pool));
	cr_assert_eq(sup_child_event(a, EV_RETIRE, 110 * MS), ACTS_KILLED);
	cr_assert_eq(a->state, CHILD_DYING);
	cr_assert_eq(a->killed, KILL_RETIRE);
	cr_assert_eq(pool.stats.retired_max_age, 1);
	cr_assert_eq(pool.stats.retired_reload, 0);
	cr_assert_eq(pool.stats.unexpected_exits, 0, "a retirement is no failure");
	cr_assert_eq(pool.stats.spawn_failures, 0);
	cr_assert_eq(sup_pool_retire_candidate(&pool, 160 * MS), b, "then the next oldest");
	cr_assert_eq(sup_child_event(a, EV_CRASH, 120 * MS), ACTS_REAPED, "SIGKILLed, reaped");
	(void)c;
	cfg.max_idle_age_ms = 0;
	cr_assert_null(sup_pool_retire_candidate(&pool, 1000 * 1000 * MS), "0 is off");
}

Test(pool, old_generations_are_retired_and_leased_last)
{
	struct sup_child *old1 = ready_child(1, 0), *old2 = ready_child(2, 0);
	struct sup_child *leased = ready_child(3, 0);
	sup_child_event(leased, EV_LEASE, 1);
	pool.gen++; /* a reload changed how children are built */
	cr_assert_eq(sup_pool_retire_candidate(&pool, 2), old1);
	cr_assert_eq(sup_pool_first_ready(&pool), old1, "an old VM beats a wait");
	struct sup_child *fresh = ready_child(4, 3);
	cr_assert_eq(fresh->gen, pool.gen);
	cr_assert_eq(sup_pool_first_ready(&pool), fresh, "the current generation first");
	cr_assert_eq(sup_pool_retire_candidate(&pool, 4), old1, "never a leased one");
	cr_assert_eq(sup_child_event(old1, EV_RETIRE, 5), ACTS_KILLED);
	cr_assert_eq(pool.stats.retired_reload, 1);
	cr_assert_eq(pool.stats.retired_max_age, 0);
	cr_assert_eq(sup_pool_retire_candidate(&pool, 6), old2);
	/* A leased child of an old generation whose lease ended in a reset. */
	cr_assert_eq(sup_child_event(leased, EV_RETIRE, 7), ACTS_KILLED);
	cr_assert_eq(pool.stats.retired_reload, 2);
	cr_assert_eq(sup_child_event(leased, EV_RETIRE, 8), ACT_INVALID, "dying already");
}

Test(pool, removed_pool_spawns_nothing_and_retires_anything)
{
	cfg.min_idle = 1;
	struct sup_child *a = ready_child(1, 0);
	struct sup_child *s = sup_child_new(&pool, 2, 1);
	cr_assert_not(sup_pool_may_retire(&pool), "min_idle 1, 1 ready");
	pool.removed = true;
	pool.gen++;
	pool.waiting = 3;
	cr_assert_eq(sup_pool_spawn_needed(&pool, 1), 0);
	cr_assert(sup_pool_may_retire(&pool));
	cr_assert_eq(sup_child_event(s, EV_RETIRE, 2), ACTS_KILLED, "a building child too");
	cr_assert_eq(pool.stats.spawn_failures, 0, "and that is no spawn failure");
	cr_assert_eq(pool.consecutive_failures, 0);
	cr_assert_eq(sup_child_event(a, EV_RETIRE, 2), ACTS_KILLED);
	cr_assert_eq(pool.stats.retired_reload, 2);
	pool.waiting = 0;
}

Test(pool, a_pool_at_max_retires_without_a_replacement)
{
	cfg.min_idle = 2;
	cfg.max = 2;
	cfg.max_idle_age_ms = 100;
	struct sup_child *a = ready_child(1, 0);
	ready_child(2, 0);
	cr_assert_eq(sup_pool_retire_candidate(&pool, 200 * MS), a);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 200 * MS), 0, "no room");
	cr_assert(sup_pool_may_retire(&pool), "else it keeps its old children for ever");
	sup_child_event(a, EV_RETIRE, 200 * MS);
	cr_assert_not(sup_pool_may_retire(&pool), "not while one is dying");
}
