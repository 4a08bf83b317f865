/* pool.h - pools of children and the child state machine (pure code).
 *
 * The supervisor's view of one child is an explicit state machine, s6 style:
 * every transition goes through sup_child_event(), which looks the move up
 * in one table, actions[state][event], keeps the per-state lists and
 * counts, does the bookkeeping (every pool counter, the spawn-failure
 * backoff) and returns the set of actions the move asks for (enum
 * sup_action). Nothing here makes a syscall: the server's
 * sup_child_apply() (children.c) carries the actions out, so the whole
 * life cycle is unit-tested without fork or KVM.
 *
 *   SPAWNING --ready--> READY --lease--> LEASED
 *      |                  ^                 |
 *      |                  +-----reset-------+  (reuse = snapshot only)
 *      |                  |                 |
 *      |   kill (any reason), hangup, retire | kill
 *      |                  v                 v
 *      +----- kill ---> DYING <-------------+
 *      |                  |
 *      +--- exit/crash ---+--- exit/crash (from any live state) --> DEAD
 *
 * DEAD is transient: its actions close the child's last fds, give back its
 * jail slot and free it.
 *
 * Ownership: a pool owns its children (sup_child_new/sup_child_free);
 * the fds inside a child are the server's to open and close.
 */
#ifndef HATCHERY_SUP_POOL_H
#define HATCHERY_SUP_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "latency.h"

enum sup_child_state {
	CHILD_SPAWNING, /* forked, building its VM                        */
	CHILD_READY,    /* idle, health-checked, can be leased            */
	CHILD_LEASED,   /* a client holds its VM socket                   */
	CHILD_DYING,    /* we sent SIGKILL (health, shutdown); awaiting reap */
	CHILD_DEAD,     /* reaped; about to be freed                      */
	CHILD__NSTATES
};

enum sup_child_event {
	EV_READY,       /* child reported Ready on its control channel    */
	EV_LEASE,       /* handed to a client                             */
	EV_RESET,       /* reuse = snapshot: the lease ended cleanly and the
	                 * child restored the snapshot over itself; it got a
	                 * new VM socket and is idle again. Refused (ACT_INVALID)
	                 * in a pool whose reuse is not snapshot. */
	EV_HANGUP,      /* its control channel or the VM socket we hold for
	                 * it closed before its pidfd was reaped: it is dying
	                 * (the reap follows). An idle child leaves the ready
	                 * list at once, so it is never handed out. */
	/* We kill it; the reason is part of the event (it decides the stats). */
	EV_KILL_HEALTH,        /* it missed a health check */
	EV_KILL_SPAWN_TIMEOUT, /* it never reported ready */
	EV_KILL_PROTOCOL,      /* it spoke garbage or made an odd claim */
	EV_KILL_SHUTDOWN,      /* hatcheryd is stopping */
	EV_RETIRE,             /* no longer wanted: an idle child past the
	                        * pool's max_idle_age_ms, or one of an older
	                        * generation than its pool (a reload changed
	                        * how children are built, or removed the
	                        * pool). Never fired at a leased child while
	                        * its lease runs (sup_pool_retire_candidate
	                        * only offers READY ones); a leased child of
	                        * an old generation whose lease ended with a
	                        * reset (ChildReset) is retired instead of
	                        * going back to idle. */
	/* Reaped (its pidfd fired). */
	EV_EXIT,        /* it exited with status 0                         */
	EV_CRASH,       /* it died by a signal or with a non-zero status   */
	EV_SECCOMP,     /* it died by SIGSYS: the seccomp filter killed it */
	EV__N
};

/* Why a child was killed (recorded in the child by the kill events). */
enum sup_kill_reason {
	KILL_NONE,      /* not killed by us */
	KILL_HEALTH,
	KILL_SHUTDOWN,
	KILL_PROTOCOL,  /* it spoke garbage on its control channel */
	KILL_SPAWN_TIMEOUT, /* it never reported ready */
	KILL_RETIRE,    /* retired (EV_RETIRE): not a failure */
};

/* What a transition asks the server to do, as a set of bits. One function
 * performs them, in this order: sup_child_apply() in children.c. */
enum sup_action {
	ACT_INVALID = 1u << 0,  /* the event makes no sense in this state:
	                         * nothing changed, nothing to do */
	ACT_KILL = 1u << 1,     /* SIGKILL through the pidfd */
	ACT_CLOSE = 1u << 2,    /* close its control channel and our end of
	                         * its VM socket (if not handed out) */
	ACT_WAKE = 1u << 3,     /* send SupLeased (a wake-up hint) */
	ACT_HEALTH = 1u << 4,   /* schedule its next health check */
	ACT_RELEASE = 1u << 5,  /* close its pidfd, give back its jail slot
	                         * and cgroup, free it */
	ACT_SERVE = 1u << 6,    /* a child became ready: serve queued Acquires */
	ACT_REFILL = 1u << 7,   /* counts changed: replenish the pool (now) */
	ACT_REFILL_LATER = 1u << 8, /* a lease: replenish after refill_delay */
};

struct sup_pool;

struct sup_child {
	uint64_t id;                 /* unique across the supervisor's life */
	pid_t pid;
	int pidfd;                   /* server-owned, -1 when closed */
	int ctrl_fd;                 /* server-owned, -1 when closed */
	int vm_fd;                   /* server-owned: the client's end of the VM
	                              * socket, made with the child and handed out
	                              * on lease (-1 after) */
	enum sup_child_state state;
	struct sup_pool *pool;
	unsigned gen;                /* the pool's generation it was built for */
	uint64_t t_fork;             /* CLOCK_MONOTONIC ns */
	uint64_t t_state;            /* when it entered its state */
	uint64_t ping_seq;           /* last health ping sent */
	uint64_t ping_sent_at;       /* 0: no ping outstanding */
	uint64_t next_health_at;
	enum sup_child_state prev_state; /* the state it left last */
	enum sup_kill_reason killed; /* set by the kill events */
	bool spawn_failed_msg;       /* child reported ChildFailed before exit */
	int slot;                    /* jail slot (uid = jail_uid_base + slot), -1: none */
	/* A pool with a disk: the child's vhost-user backend (supervisor/
	 * disk.c), its own process and jail slot; -1 when it has none or it
	 * was reaped. */
	pid_t disk_pid;
	int disk_pidfd;              /* server-owned */
	int disk_slot;
	bool in_cgroup;              /* has a cgroup of its own to remove when reaped */
	bool seccomp_reported;       /* its SIGSYS handler told us: */
	int seccomp_syscall;         /*   which syscall */
	uint32_t seccomp_arch;       /*   on which AUDIT_ARCH */
	struct sup_child *prev, *next; /* in pool->list[state] */
	void *server_data;           /* the server's watch records */
};

struct sup_pool_stats {
	uint64_t acquisitions, hits, misses;
	uint64_t spawned, spawn_failures, unexpected_exits, health_failures;
	uint64_t seccomp_kills;      /* died by SIGSYS (EV_SECCOMP) */
	uint64_t resets;             /* leased children reset to idle (EV_RESET) */
	uint64_t retired_max_age;    /* EV_RETIRE of a current-generation child */
	uint64_t retired_reload;     /* EV_RETIRE of an older generation's */
	uint64_t disk_backend_exits; /* a disk backend exited before its child */
	struct lat_hist acquire;
	struct lat_hist spawn_to_ready;
};

struct sup_pool {
	const struct sup_pool_config *cfg; /* not owned */
	struct sup_child *list[CHILD__NSTATES]; /* FIFO per state, head = oldest */
	struct sup_child *tail[CHILD__NSTATES];
	unsigned count[CHILD__NSTATES];
	unsigned waiting;            /* Acquire requests queued (server-owned count) */
	/* Bumped by a reload that changes how children are built (or that
	 * removes the pool): children of older generations are retired. */
	unsigned gen;
	bool removed;                /* a reload removed it: no spawns, and
	                              * every child not leased is retired */	/* spawn failure backoff */
	unsigned consecutive_failures;
	uint64_t next_spawn_at;      /* no forks before this time */
	char last_error[256];
	struct sup_pool_stats stats;
};

#define SUP_BACKOFF_BASE_NS (50ull * 1000 * 1000)    /* 50 ms */
#define SUP_BACKOFF_MAX_NS (10ull * 1000 * 1000 * 1000) /* 10 s */
/* A pool counts as degraded after this many spawn failures in a row. */
#define SUP_DEGRADED_AFTER 3

void sup_pool_init(struct sup_pool *p, const struct sup_pool_config *cfg);

/* Allocate a child in SPAWNING state and count it. Returns NULL on ENOMEM. */
struct sup_child *sup_child_new(struct sup_pool *p, uint64_t id, uint64_t now);

/* Remove a DEAD child from its pool and free it. */
void sup_child_free(struct sup_child *c);

/* Apply `ev` at time `now`: move the child, count, and return the set of
 * actions (enum sup_action) the server must perform. Returns ACT_INVALID
 * alone (and changes nothing) for a move the table does not allow. */
unsigned sup_child_event(struct sup_child *c, enum sup_child_event ev, uint64_t now);

/* The state a child lived in before it started dying: its state, or for a
 * DYING child the one it left. What the logs name. */
enum sup_child_state sup_child_life_state(const struct sup_child *c);

/* Acquire bookkeeping that no child transition carries. */
/* A request answered with a VM; `hit`: a ready child was there at once. */
void sup_pool_count_acquire(struct sup_pool *p, bool hit, uint64_t wait_ns);
/* A request refused for want of a VM (POOL_EXHAUSTED). */
void sup_pool_count_refusal(struct sup_pool *p);

/* Record why the latest spawn failed (shown in status). */
void sup_pool_set_error(struct sup_pool *p, const char *msg);

/* Children alive in any state but DEAD: what `max` bounds. */
unsigned sup_pool_total(const struct sup_pool *p);

/* How many children to fork now: enough to bring idle + spawning up to
 * min_idle plus the queued requests, plus one while a ready child is due
 * for retirement (its replacement is made first), bounded by max,
 * max_spawning and the failure backoff. None for a removed pool. */
unsigned sup_pool_spawn_needed(const struct sup_pool *p, uint64_t now);

bool sup_pool_degraded(const struct sup_pool *p);

/* The child to lease: the oldest READY one of the pool's current
 * generation, else the oldest READY one (an old-generation VM now beats a
 * wait), or NULL. */
struct sup_child *sup_pool_first_ready(const struct sup_pool *p);

/* The READY child due for retirement, or NULL: of an older generation
 * first (oldest first), else the oldest one ready for max_idle_age_ms or
 * longer (0: never). Only a candidate: see sup_pool_may_retire. */
struct sup_child *sup_pool_retire_candidate(const struct sup_pool *p, uint64_t now);

/* May a candidate be retired now? Without dropping the pool below
 * min_idle ready children: its replacement must be ready first (ready >
 * min_idle). A removed pool retires everything; a pool that cannot
 * over-provision (at max with nothing spawning or dying) retires one
 * anyway, or it would keep its old children for ever. */
bool sup_pool_may_retire(const struct sup_pool *p);

const char *sup_child_state_name(enum sup_child_state s);

#endif
