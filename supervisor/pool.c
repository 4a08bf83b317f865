/* pool.c - the child state machine and pool bookkeeping. No syscalls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* The whole life of a child, s6 style: next state for [state][event], or
 * CHILD__NSTATES where the move is not allowed. */
static const enum sup_child_state next_state[CHILD__NSTATES][EV__N] = {
	/*               EV_READY        EV_LEASE        EV_KILL        EV_EXIT     EV_CRASH    EV_RESET */
	[CHILD_SPAWNING] = { CHILD_READY, CHILD__NSTATES, CHILD_DYING, CHILD_DEAD, CHILD_DEAD, CHILD__NSTATES },
	[CHILD_READY]    = { CHILD__NSTATES, CHILD_LEASED, CHILD_DYING, CHILD_DEAD, CHILD_DEAD, CHILD__NSTATES },
	[CHILD_LEASED]   = { CHILD__NSTATES, CHILD__NSTATES, CHILD_DYING, CHILD_DEAD, CHILD_DEAD, CHILD_READY },
	[CHILD_DYING]    = { CHILD__NSTATES, CHILD__NSTATES, CHILD__NSTATES, CHILD_DEAD, CHILD_DEAD, CHILD__NSTATES },
	[CHILD_DEAD]     = { CHILD__NSTATES, CHILD__NSTATES, CHILD__NSTATES, CHILD__NSTATES, CHILD__NSTATES, CHILD__NSTATES },
};

static const char *const state_names[CHILD__NSTATES] = {
	[CHILD_SPAWNING] = "spawning", [CHILD_READY] = "ready",
	[CHILD_LEASED] = "leased",     [CHILD_DYING] = "dying",
	[CHILD_DEAD] = "dead",
};

const char *sup_child_state_name(enum sup_child_state s)
{
	return s < CHILD__NSTATES ? state_names[s] : "invalid";
}

void sup_pool_init(struct sup_pool *p, const struct sup_pool_config *cfg)
{
	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	lat_init(&p->stats.acquire);
	lat_init(&p->stats.spawn_to_ready);
}

static void list_append(struct sup_pool *p, struct sup_child *c)
{
	enum sup_child_state s = c->state;
	c->next = NULL;
	c->prev = p->tail[s];
	if (p->tail[s])
		p->tail[s]->next = c;
	else
		p->list[s] = c;
	p->tail[s] = c;
	p->count[s]++;
}

static void list_remove(struct sup_pool *p, struct sup_child *c)
{
	enum sup_child_state s = c->state;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->list[s] = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		p->tail[s] = c->prev;
	c->prev = c->next = NULL;
	p->count[s]--;
}

struct sup_child *sup_child_new(struct sup_pool *p, uint64_t id, uint64_t now)
{
	struct sup_child *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = id;
	c->pid = -1;
	c->pidfd = -1;
	c->ctrl_fd = -1;
	c->vm_fd = -1;
	c->slot = -1;
	c->pool = p;
	c->state = CHILD_SPAWNING;
	c->t_fork = c->t_state = now;
	list_append(p, c);
	p->stats.spawned++;
	return c;
}

void sup_child_free(struct sup_child *c)
{
	if (!c)
		return;
	list_remove(c->pool, c);
	free(c);
}

void sup_pool_set_error(struct sup_pool *p, const char *msg)
{
	snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
}

static void spawn_failed(struct sup_pool *p, uint64_t now)
{
	p->stats.spawn_failures++;
	p->consecutive_failures++;
	/* Exponential backoff, capped: a pool whose children cannot start
	 * (no /dev/kvm access, out of memory) must not fork in a tight loop. */
	uint64_t delay = SUP_BACKOFF_BASE_NS;
	for (unsigned i = 1; i < p->consecutive_failures && delay < SUP_BACKOFF_MAX_NS; i++)
		delay *= 2;
	if (delay > SUP_BACKOFF_MAX_NS)
		delay = SUP_BACKOFF_MAX_NS;
	p->next_spawn_at = now + delay;
}

enum sup_action sup_child_event(struct sup_child *c, enum sup_child_event ev,
				uint64_t now, enum sup_kill_reason reason)
{
	if (ev >= EV__N || c->state >= CHILD__NSTATES)
		return ACT_INVALID;
	enum sup_child_state from = c->state, to = next_state[from][ev];
	if (to == CHILD__NSTATES)
		return ACT_INVALID;
	struct sup_pool *p = c->pool;
	/* Only a pool that asked for reuse gets a used child back. */
	if (ev == EV_RESET && p->cfg->reuse != SUP_REUSE_SNAPSHOT)
		return ACT_INVALID;

	/* Bookkeeping for the move, in one place. */
	switch (from) {
	case CHILD_SPAWNING:
		if (to == CHILD_READY) {
			lat_record(&p->stats.spawn_to_ready, now - c->t_fork);
			p->consecutive_failures = 0;
			p->next_spawn_at = 0;
		} else if (!(ev == EV_KILL && reason == KILL_SHUTDOWN)) {
			spawn_failed(p, now);
		}
		break;
	case CHILD_READY:
		if (ev == EV_KILL && reason == KILL_HEALTH)
			p->stats.health_failures++;
		else if (ev == EV_EXIT || ev == EV_CRASH)
			p->stats.unexpected_exits++;
		break;
	case CHILD_LEASED:
		/* A clean exit is the end of a lease; a crash is not. */
		if (ev == EV_CRASH)
			p->stats.unexpected_exits++;
		else if (ev == EV_RESET)
			p->stats.resets++;
		break;
	default:
		break;
	}

	list_remove(p, c);
	c->state = to;
	c->t_state = now;
	list_append(p, c);
	if (to != CHILD_READY)
		c->ping_sent_at = 0;
	return ACT_NONE;
}

unsigned sup_pool_total(const struct sup_pool *p)
{
	return p->count[CHILD_SPAWNING] + p->count[CHILD_READY] +
	       p->count[CHILD_LEASED] + p->count[CHILD_DYING];
}

unsigned sup_pool_spawn_needed(const struct sup_pool *p, uint64_t now)
{
	if (now < p->next_spawn_at)
		return 0;
	const struct sup_pool_config *cfg = p->cfg;
	unsigned have = p->count[CHILD_READY] + p->count[CHILD_SPAWNING];
	unsigned want = cfg->min_idle + p->waiting;
	if (have >= want)
		return 0;
	unsigned n = want - have;
	unsigned total = sup_pool_total(p);
	n = total >= cfg->max ? 0 : (n < cfg->max - total ? n : cfg->max - total);
	unsigned spawning = p->count[CHILD_SPAWNING];
	unsigned room = spawning >= cfg->max_spawning ? 0 : cfg->max_spawning - spawning;
	if (n > room)
		n = room;
	/* While backing off, probe with one child at a time. */
	if (p->consecutive_failures && n > 1)
		n = 1;
	return n;
}

bool sup_pool_degraded(const struct sup_pool *p)
{
	return p->consecutive_failures >= SUP_DEGRADED_AFTER;
}

struct sup_child *sup_pool_first_ready(const struct sup_pool *p)
{
	return p->list[CHILD_READY];
}
