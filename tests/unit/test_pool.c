/* Unit tests for the child state machine and pool bookkeeping (pool.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "pool.h"

#define MS (1000ull * 1000)

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
	cr_assert_eq(sup_child_event(c, EV_READY, 2 * MS, 0), ACT_NONE);
	cr_assert_eq(c->state, CHILD_READY);
	cr_assert_eq(pool.count[CHILD_SPAWNING], 0);
	cr_assert_eq(pool.count[CHILD_READY], 1);
	cr_assert_eq(sup_pool_first_ready(&pool), c);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 3 * MS, 0), ACT_NONE);
	cr_assert_eq(c->state, CHILD_LEASED);
	cr_assert_null(sup_pool_first_ready(&pool));
	cr_assert_eq(sup_child_event(c, EV_EXIT, 4 * MS, 0), ACT_NONE);
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
	cr_assert_eq(sup_child_event(c, EV_LEASE, 1, 0), ACT_INVALID,
		     "a spawning child cannot be leased");
	cr_assert_eq(c->state, CHILD_SPAWNING);
	sup_child_event(c, EV_READY, 1, 0);
	cr_assert_eq(sup_child_event(c, EV_READY, 2, 0), ACT_INVALID);
	sup_child_event(c, EV_LEASE, 3, 0);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 4, 0), ACT_INVALID,
		     "a leased child cannot be leased twice");
	cr_assert_eq(sup_child_event(c, EV_READY, 4, 0), ACT_INVALID,
		     "a leased VM never goes back to idle");
	sup_child_event(c, EV_KILL, 5, KILL_SHUTDOWN);
	cr_assert_eq(c->state, CHILD_DYING);
	cr_assert_eq(sup_child_event(c, EV_KILL, 6, KILL_SHUTDOWN), ACT_INVALID);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 6, 0), ACT_INVALID);
	sup_child_event(c, EV_CRASH, 7, 0);
	cr_assert_eq(c->state, CHILD_DEAD);
	for (int ev = 0; ev < EV__N; ev++)
		cr_assert_eq(sup_child_event(c, ev, 8, 0), ACT_INVALID,
			     "DEAD is final (event %d)", ev);
	cr_assert_eq(sup_child_event(c, EV__N, 8, 0), ACT_INVALID);
	cr_assert_eq(pool.count[CHILD_DEAD], 1);
}

Test(pool, counts_match_lists)
{
	struct sup_child *c[4];
	for (int i = 0; i < 4; i++)
		c[i] = sup_child_new(&pool, (uint64_t)i + 1, 0);
	sup_child_event(c[0], EV_READY, 1, 0);
	sup_child_event(c[1], EV_READY, 1, 0);
	sup_child_event(c[1], EV_LEASE, 2, 0);
	sup_child_event(c[2], EV_KILL, 2, KILL_SHUTDOWN);
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
	sup_child_event(b, EV_READY, 1, 0);
	sup_child_event(a, EV_READY, 2, 0);
	cr_assert_eq(sup_pool_first_ready(&pool), b, "oldest ready first");
	sup_child_event(b, EV_LEASE, 3, 0);
	cr_assert_eq(sup_pool_first_ready(&pool), a);
}

Test(pool, stats_by_cause)
{
	struct sup_child *a = sup_child_new(&pool, 1, 0);
	struct sup_child *b = sup_child_new(&pool, 2, 0);
	struct sup_child *c = sup_child_new(&pool, 3, 0);
	struct sup_child *d = sup_child_new(&pool, 4, 0);
	cr_assert_eq(pool.stats.spawned, 4);
	sup_child_event(a, EV_READY, 1, 0);
	sup_child_event(a, EV_KILL, 2, KILL_HEALTH);
	cr_assert_eq(pool.stats.health_failures, 1);
	sup_child_event(a, EV_CRASH, 3, 0);
	cr_assert_eq(pool.stats.unexpected_exits, 0, "we killed it: expected");
	sup_child_event(b, EV_READY, 1, 0);
	sup_child_event(b, EV_CRASH, 2, 0);
	cr_assert_eq(pool.stats.unexpected_exits, 1, "idle child died unasked");
	sup_child_event(c, EV_READY, 1, 0);
	sup_child_event(c, EV_LEASE, 2, 0);
	sup_child_event(c, EV_CRASH, 3, 0);
	cr_assert_eq(pool.stats.unexpected_exits, 2, "leased child crashed");
	sup_child_event(d, EV_EXIT, 1, 0);
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
		sup_child_event(c[i], EV_READY, 1, 0);
		sup_child_event(c[i], EV_LEASE, 1, 0);
	}
	cr_assert_eq(sup_pool_spawn_needed(&pool, 1), 1, "max 4 total, 3 leased");
	c[3] = sup_child_new(&pool, 3, 1);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 1), 0, "at max");
	pool.waiting = 0;
	sup_child_event(c[3], EV_READY, 2, 0);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 2), 0, "at max even below min_idle");
	sup_child_event(c[0], EV_EXIT, 3, 0);
	cr_assert_eq(sup_pool_spawn_needed(&pool, 3), 1, "one idle, min_idle 2");
}

Test(pool, spawn_failures_back_off_exponentially_and_degrade)
{
	uint64_t now = 1000 * MS;
	uint64_t last_delay = 0;
	for (unsigned i = 1; i <= 12; i++) {
		cr_assert_gt(sup_pool_spawn_needed(&pool, now), 0);
		struct sup_child *c = sup_child_new(&pool, i, now);
		sup_child_event(c, EV_CRASH, now, 0);
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
	sup_child_event(ok, EV_READY, now + 1, 0);
	cr_assert_not(sup_pool_degraded(&pool), "a success ends the degraded state");
	cr_assert_eq(pool.next_spawn_at, 0);
	cr_assert_eq(sup_pool_spawn_needed(&pool, now + 1), 1);
}

Test(pool, shutdown_kill_of_spawning_child_is_not_a_failure)
{
	struct sup_child *c = sup_child_new(&pool, 1, 0);
	sup_child_event(c, EV_KILL, 1, KILL_SHUTDOWN);
	sup_child_event(c, EV_CRASH, 2, 0);
	cr_assert_eq(pool.stats.spawn_failures, 0);
	struct sup_child *d = sup_child_new(&pool, 2, 0);
	sup_child_event(d, EV_KILL, 1, KILL_SPAWN_TIMEOUT);
	cr_assert_eq(pool.stats.spawn_failures, 1);
}

Test(pool, reset_returns_a_leased_child_to_ready_only_with_reuse)
{
	struct sup_child *c = sup_child_new(&pool, 1, 0);
	cr_assert_eq(sup_child_event(c, EV_RESET, 1, 0), ACT_INVALID,
		     "a spawning child has no lease to reset");
	sup_child_event(c, EV_READY, 1, 0);
	sup_child_event(c, EV_LEASE, 2, 0);
	cr_assert_eq(sup_child_event(c, EV_RESET, 3, 0), ACT_INVALID,
		     "reuse = never: a leased child never goes back to idle");
	cr_assert_eq(c->state, CHILD_LEASED);
	cr_assert_eq(pool.stats.resets, 0);

	cfg.reuse = SUP_REUSE_SNAPSHOT;
	cr_assert_eq(sup_child_event(c, EV_RESET, 4, 0), ACT_NONE);
	cr_assert_eq(c->state, CHILD_READY);
	cr_assert_eq(c->t_state, 4);
	cr_assert_eq(pool.count[CHILD_LEASED], 0);
	cr_assert_eq(pool.count[CHILD_READY], 1);
	cr_assert_eq(pool.stats.resets, 1);
	cr_assert_eq(pool.stats.unexpected_exits, 0);
	cr_assert_eq(sup_child_event(c, EV_RESET, 5, 0), ACT_INVALID,
		     "an idle child has no lease to reset");
	/* Reset children are leased again like any other. */
	cr_assert_eq(sup_pool_first_ready(&pool), c);
	cr_assert_eq(sup_child_event(c, EV_LEASE, 6, 0), ACT_NONE);
	cr_assert_eq(sup_child_event(c, EV_RESET, 7, 0), ACT_NONE);
	cr_assert_eq(pool.stats.resets, 2);
	sup_child_event(c, EV_KILL, 8, KILL_SHUTDOWN);
	cr_assert_eq(sup_child_event(c, EV_RESET, 9, 0), ACT_INVALID,
		     "a dying child is not reset");
	sup_child_event(c, EV_EXIT, 10, 0);
	cr_assert_eq(sup_child_event(c, EV_RESET, 11, 0), ACT_INVALID);
}
