/* pool.c - the child state machine and pool bookkeeping. No syscalls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* The whole life of a child, s6 style: for [state][event], the next state
 * and the actions the move asks for. An entry without actions (to == 0 and
 * actions == 0 would read as SPAWNING) is marked by `ok`. */
struct transition {
	bool ok;
	enum sup_child_state to;
	unsigned actions;
};

/* A kill: the signal, our channels closed at once (so nothing more is read
 * from or handed out for it), and a replacement. */
#define KILLED { true, CHILD_DYING, ACT_KILL | ACT_CLOSE | ACT_REFILL }
/* Reaped: its last fds closed, its jail slot back, freed; a replacement. */
#define REAPED { true, CHILD_DEAD, ACT_CLOSE | ACT_RELEASE | ACT_REFILL }
/* Ready (first time or again after a reset): health checks, waiters. */
#define BECOMES_READY { true, CHILD_READY, ACT_HEALTH | ACT_SERVE | ACT_REFILL }
/* A hangup where it changes nothing but the fds: a spawning child is not
 * leasable and its reap judges the failure; a leased one's VM is the
 * client's and its reap tells a clean end from a crash. */
#define HUNG_UP(s) { true, s, ACT_CLOSE }

static const struct transition table[CHILD__NSTATES][EV__N] = {
	[CHILD_SPAWNING] = {
		[EV_READY] = BECOMES_READY,
		[EV_HANGUP] = HUNG_UP(CHILD_SPAWNING),
		[EV_KILL_HEALTH] = KILLED, [EV_KILL_SPAWN_TIMEOUT] = KILLED,
		[EV_KILL_PROTOCOL] = KILLED, [EV_KILL_SHUTDOWN] = KILLED,
		/* A removed pool's children that are still building. */
		[EV_RETIRE] = KILLED,
		[EV_EXIT] = REAPED, [EV_CRASH] = REAPED, [EV_SECCOMP] = REAPED,
	},
	[CHILD_READY] = {
		[EV_LEASE] = { true, CHILD_LEASED, ACT_WAKE | ACT_REFILL_LATER },
		/* The bug this row ends: an idle child whose channel closed
		 * stayed on the ready list until its reap and was handed out
		 * with a closed VM socket. Now it leaves the list at once; the
		 * kill makes sure the reap comes. */
		[EV_HANGUP] = { true, CHILD_DYING, ACT_KILL | ACT_CLOSE | ACT_REFILL },
		[EV_KILL_HEALTH] = KILLED, [EV_KILL_SPAWN_TIMEOUT] = KILLED,
		[EV_KILL_PROTOCOL] = KILLED, [EV_KILL_SHUTDOWN] = KILLED,
		/* Too old, or of an old generation: its replacement is ready
		 * (sup_pool_may_retire); the refill makes the next one. */
		[EV_RETIRE] = KILLED,
		[EV_EXIT] = REAPED, [EV_CRASH] = REAPED, [EV_SECCOMP] = REAPED,
	},
	[CHILD_LEASED] = {
		[EV_RESET] = BECOMES_READY,
		[EV_HANGUP] = HUNG_UP(CHILD_LEASED),
		[EV_KILL_HEALTH] = KILLED, [EV_KILL_SPAWN_TIMEOUT] = KILLED,
		[EV_KILL_PROTOCOL] = KILLED, [EV_KILL_SHUTDOWN] = KILLED,
		/* Only once its lease has ended in a reset (ChildReset) and it
		 * is of an old generation: the server fires it instead of
		 * EV_RESET, never while the client holds the VM. */
		[EV_RETIRE] = KILLED,
		[EV_EXIT] = REAPED, [EV_CRASH] = REAPED, [EV_SECCOMP] = REAPED,
	},
	[CHILD_DYING] = {
		[EV_HANGUP] = HUNG_UP(CHILD_DYING),
		[EV_EXIT] = REAPED, [EV_CRASH] = REAPED, [EV_SECCOMP] = REAPED,
	},
	/* DEAD: nothing; the child is freed by its own actions. */
};

static enum sup_kill_reason kill_reason(enum sup_child_event ev)
{
	switch (ev) {
	case EV_KILL_HEALTH: return KILL_HEALTH;
	case EV_KILL_SPAWN_TIMEOUT: return KILL_SPAWN_TIMEOUT;
	case EV_KILL_PROTOCOL: return KILL_PROTOCOL;
	case EV_KILL_SHUTDOWN: return KILL_SHUTDOWN;
	case EV_RETIRE: return KILL_RETIRE;
	default: return KILL_NONE;
	}
}

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
	c->disk_pidfd = -1;
	c->disk_slot = -1;
	c->pool = p;
	c->gen = p->gen;
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

/* Every counter a transition moves, in one place. */
static void count(struct sup_child *c, enum sup_child_state to,
		  enum sup_child_event ev, uint64_t now)
{
	struct sup_pool *p = c->pool;
	bool reaped = ev == EV_EXIT || ev == EV_CRASH || ev == EV_SECCOMP;
	if (ev == EV_SECCOMP)
		p->stats.seccomp_kills++;
	if (ev == EV_RETIRE) {
		if (c->gen != p->gen || p->removed)
			p->stats.retired_reload++;
		else
			p->stats.retired_max_age++;
	}
	switch (c->state) {
	case CHILD_SPAWNING:
		if (to == CHILD_READY) {
			lat_record(&p->stats.spawn_to_ready, now - c->t_fork);
			p->consecutive_failures = 0;
			p->next_spawn_at = 0;
		} else if (to != CHILD_SPAWNING && ev != EV_KILL_SHUTDOWN &&
			   ev != EV_RETIRE) {
			spawn_failed(p, now);
		}
		break;
	case CHILD_READY:
		if (ev == EV_KILL_HEALTH)
			p->stats.health_failures++;
		else if (reaped || ev == EV_HANGUP)
			p->stats.unexpected_exits++;
		break;
	case CHILD_LEASED:
		/* A clean exit is the end of a lease; a crash is not. */
		if (ev == EV_CRASH || ev == EV_SECCOMP)
			p->stats.unexpected_exits++;
		else if (ev == EV_RESET)
			p->stats.resets++;
		break;
	default:
		break;
	}
}

unsigned sup_child_event(struct sup_child *c, enum sup_child_event ev, uint64_t now)
{
	if (ev >= EV__N || c->state >= CHILD__NSTATES)
		return ACT_INVALID;
	const struct transition *t = &table[c->state][ev];
	if (!t->ok)
		return ACT_INVALID;
	struct sup_pool *p = c->pool;
	/* Only a pool that asked for reuse gets a used child back. */
	if (ev == EV_RESET && p->cfg->reuse != SUP_REUSE_SNAPSHOT)
		return ACT_INVALID;

	count(c, t->to, ev, now);
	if (kill_reason(ev) != KILL_NONE)
		c->killed = kill_reason(ev);
	if (t->to != c->state) {
		list_remove(p, c);
		c->prev_state = c->state;
		c->state = t->to;
		c->t_state = now;
		list_append(p, c);
	}
	if (t->to != CHILD_READY)
		c->ping_sent_at = 0;
	return t->actions;
}

enum sup_child_state sup_child_life_state(const struct sup_child *c)
{
	return c->state == CHILD_DYING ? c->prev_state : c->state;
}

void sup_pool_count_acquire(struct sup_pool *p, bool hit, uint64_t wait_ns)
{
	p->stats.acquisitions++;
	if (hit)
		p->stats.hits++;
	else
		p->stats.misses++;
	lat_record(&p->stats.acquire, wait_ns);
}

void sup_pool_count_refusal(struct sup_pool *p)
{
	p->stats.misses++;
}

unsigned sup_pool_total(const struct sup_pool *p)
{
	return p->count[CHILD_SPAWNING] + p->count[CHILD_READY] +
	       p->count[CHILD_LEASED] + p->count[CHILD_DYING];
}

unsigned sup_pool_spawn_needed(const struct sup_pool *p, uint64_t now)
{
	if (now < p->next_spawn_at || p->removed)
		return 0;
	const struct sup_pool_config *cfg = p->cfg;
	unsigned have = p->count[CHILD_READY] + p->count[CHILD_SPAWNING];
	/* Over-provision by one while a ready child is due for retirement:
	 * its replacement comes first, so the pool never has fewer than
	 * min_idle ready children on account of a retirement. */
	unsigned want = cfg->min_idle + p->waiting +
			(sup_pool_retire_candidate(p, now) ? 1u : 0u);
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
	for (struct sup_child *c = p->list[CHILD_READY]; c; c = c->next)
		if (c->gen == p->gen)
			return c;
	return p->list[CHILD_READY];
}

struct sup_child *sup_pool_retire_candidate(const struct sup_pool *p, uint64_t now)
{
	for (struct sup_child *c = p->list[CHILD_READY]; c; c = c->next)
		if (c->gen != p->gen)
			return c;
	uint64_t age = (uint64_t)p->cfg->max_idle_age_ms * 1000000ull;
	/* The list is in the order they became ready: the head is oldest. */
	struct sup_child *c = p->list[CHILD_READY];
	if (age && c && now - c->t_state >= age)
		return c;
	return NULL;
}

bool sup_pool_may_retire(const struct sup_pool *p)
{
	if (p->removed || p->count[CHILD_READY] > p->cfg->min_idle)
		return true;
	/* Dying children free their room when reaped: wait for that. */
	return sup_pool_total(p) >= p->cfg->max && p->count[CHILD_SPAWNING] == 0 &&
	       p->count[CHILD_DYING] == 0;
}
