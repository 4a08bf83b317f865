/* loop.h - the server's shared state, internal to the files of hatcheryd's
 * event loop (server.h is what main.c sees):
 *
 *   loop.c      the epoll loop, timers (health checks, deadlines), setup,
 *               shutdown and teardown
 *   children.c  a child's life: sup_child_apply() performs the actions of
 *               every transition (pool.c decides them); spawning, reaping,
 *               replacing, the control channel
 *   clients.c   client connections, Acquire, leases and the wait queue
 *   status.c    Status and Stats replies
 *   notify.c    what systemd is told (READY=1, STATUS=, WATCHDOG=1)
 *   reload.c    SIGHUP and Reload: a new configuration replaces the
 *               running one; pools added, removed, rebuilt
 *   log.c       sup_log/sup_debug
 *
 * Single-threaded: everything runs on the loop's thread.
 */
#ifndef HATCHERY_SUP_LOOP_H
#define HATCHERY_SUP_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hatchery/ipc.h"
#include "hatchery/v1/supervisor.pb-c.h"
#include "pool.h"
#include "server.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* What each epoll entry's pointer is, in its low bits. */
enum tag {
	TAG_LISTEN = 1,
	TAG_SIGNAL,
	TAG_TIMER,
	TAG_CONN,
	TAG_CTRL,  /* a child's control socket */
	TAG_PIDFD, /* a child's pidfd */
	TAG_DISK,  /* a child's disk backend's pidfd (disk.h) */
};
#define TAG_MASK 7ull

struct spool;

struct conn {
	int fd;
	uid_t uid;
	pid_t pid;
	bool authorized;          /* uid appears in some pool's allow_uids */
	struct conn *prev, *next; /* all connections */
	/* An Acquire waiting for a child. While waiting, the connection is
	 * not read (EPOLLRDHUP only), so requests stay ordered. */
	struct spool *wpool;
	uint64_t wreq_id, wdeadline, wt_recv;
	struct conn *wprev, *wnext;
};

/* A pool plus the server-side wait queue of Acquire requests. */
struct spool {
	struct sup_pool p;
	struct conn *whead, *wtail;
	bool dirty; /* counts changed: replenish at the end of this loop turn */
	uint64_t refill_at; /* replenish no earlier (0: now); see ACT_REFILL_LATER */
	/* A pool a reload removed keeps its own copy of its settings (the
	 * configuration they came from is freed) until its last child is
	 * gone; NULL for the others, whose p.cfg points into s->cfg. */
	struct sup_pool_config *own_cfg;
};

struct server {
	const struct sup_server_opts *o;
	int epfd, lfd, sfd, tfd;
	/* The running configuration: o->cfg until the first reload, then the
	 * one the last reload loaded (cfg_owned, ours to free). */
	const struct sup_config *cfg;
	struct sup_config *cfg_owned;
	/* Pointers, not an array of pools: children and waiters point at
	 * their pool, and a reload adds and removes pools. The running
	 * configuration's pools in file order, then removed ones draining. */
	struct spool **pools;
	size_t n_pools;
	struct conn *conns;
	unsigned nconns;
	uint64_t next_child_id;
	uint64_t t_start;
	uint64_t tick_ns;     /* health/deadline granularity */
	bool stopping;
	uint64_t stop_deadline;
	bool freed; /* a conn or child was freed during this epoll batch */
	uint64_t timer_at; /* when the timerfd is armed to fire (0: unknown) */
	/* Jail slots: uid jail_uid_base + N for the child holding slot N.
	 * Unique among live children of all pools, so no two children ever
	 * share a uid (they could signal or ptrace each other). */
	uint8_t *slot_used;
	unsigned n_slots;
	bool reaping; /* draining a dead child's control socket: lease nothing */
	/* notify.c (under systemd with NOTIFY_SOCKET only) */
	bool sd_ready;           /* READY=1 sent */
	uint64_t sd_ready_by;    /* send it by then, pools filled or not */
	uint64_t sd_next_watchdog;
	char sd_status[512];     /* the last STATUS= sent */
	uint8_t rx[IPC_MAX_MSG];
};

static inline struct spool *spool_of(struct sup_pool *p)
{
	return (struct spool *)((char *)p - offsetof(struct spool, p));
}

/* loop.c */
int ep_add(struct server *s, int fd, uint32_t events, void *p, enum tag t);
void ep_mod(struct server *s, int fd, uint32_t events, void *p, enum tag t);
/* Make sure the timer fires no later than `at` (CLOCK_MONOTONIC ns). */
void arm_timer(struct server *s, uint64_t at);
/* The tick from the pools' health timeouts (at start-up and each reload). */
void update_tick(struct server *s);

/* children.c */
/* Feed `ev` to the state machine and perform the actions it returns. After
 * a move to DEAD the child is freed: do not touch it again. */
void child_event(struct server *s, struct sup_child *c, enum sup_child_event ev);
/* Kill a live child (a no-op for one already dying). */
void kill_child(struct server *s, struct sup_child *c, enum sup_child_event why);
void handle_ctrl(struct server *s, struct sup_child *c);
void reap_child(struct server *s, struct sup_child *c);
/* A child's disk backend exited (disk.h): reaped; its VM ends with it. */
void reap_disk(struct server *s, struct sup_child *c);
/* Replenish every dirty pool whose refill is due. */
void refill_pools(struct server *s);
/* Health checks of its ready children, the spawn timeout of the others,
 * and retirement: at most one idle child per pool per tick (a removed
 * pool's: every one not leased). */
void check_children(struct server *s, struct spool *sp, uint64_t now);
/* Teardown: kill, wait for and free every child still there. */
void children_free_all(struct server *s);

/* clients.c */
void accept_conns(struct server *s);
void handle_conn(struct server *s, struct conn *cn, uint32_t events);
void conn_close(struct server *s, struct conn *cn);
/* Send a reply; a client that does not read its replies (full socket) or
 * is gone loses its connection. Returns 0, or -1 if it was closed. */
int send_reply(struct server *s, struct conn *cn, Hatchery__V1__Reply *rep,
	       const int *fds, size_t nfds);
int send_error(struct server *s, struct conn *cn, uint64_t id, int code,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void wait_remove(struct conn *cn);
/* Answer every Acquire waiting on `sp` with `code` and `why`. */
void fail_waiters(struct server *s, struct spool *sp, int code, const char *why);
/* After a reload: which connections may make requests (allow_uids). */
void conns_reauthorize(struct server *s);
/* Try to serve the oldest waiters of sp with ready children. */
void serve_waiters(struct server *s, struct spool *sp);
/* Refuse the waiters whose deadline passed; returns the earliest deadline
 * still pending, or `next` if none is earlier. */
uint64_t expire_waiters(struct server *s, struct spool *sp, uint64_t now, uint64_t next);

/* status.c */
void handle_stats(struct server *s, struct conn *cn, uint64_t id);
void handle_status(struct server *s, struct conn *cn, uint64_t id);

/* notify.c: each a no-op without NOTIFY_SOCKET. */
void notify_start(struct server *s);           /* after setup */
void notify_turn(struct server *s);            /* every loop turn: READY=1? */
void notify_tick(struct server *s, uint64_t now); /* the timer: STATUS=, WATCHDOG=1 */
void notify_stopping(struct server *s);        /* SIGTERM: STOPPING=1 */

/* reload.c */
/* Re-read the configuration file and, if it loads and changes nothing
 * that needs a restart, make it the running one. Returns 0 with a one-line
 * summary, or -1 with err (the running configuration unchanged). Logs
 * either way. */
int sup_reload(struct server *s, char *summary, size_t cap, struct hatch_err *err);
/* The Reload request (uid 0 and our own uid only). */
void handle_reload(struct server *s, struct conn *cn, uint64_t id);
/* Free removed pools whose last child is gone (each loop turn). */
void collect_removed_pools(struct server *s);
/* Teardown: every pool, and the configuration a reload loaded. */
void pools_free_all(struct server *s);

/* log.c */
void sup_log_set_verbose(bool on);

#endif
