/* server.c - hatcheryd's event loop: clients, children, timers, signals.
 *
 * One epoll instance watches: the listening socket, a signalfd (SIGTERM,
 * SIGINT), one timerfd (health checks, acquire deadlines, spawn backoff),
 * every client connection, and for every child its control socket and its
 * pidfd. Each epoll entry carries a pointer with a tag in its low bits
 * saying which of those it is.
 *
 * Everything the supervisor decides about a child goes through
 * sup_child_event() (pool.c); this file carries out the syscalls around it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/ipc.h"
#include "hatchery/v1/control.pb-c.h"
#include "hatchery/v1/supervisor.pb-c.h"
#include "server.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define HATCH_VERSION "0.1.0"

#define MAX_CONNS 1024
#define MAX_DEADLINE_MS 60000u
/* A child that has not reported ready in this long is killed. */
#define SPAWN_TIMEOUT_NS (10ull * 1000 * 1000 * 1000)
/* After SIGTERM, children get this long to be reaped before we give up. */
#define SHUTDOWN_REAP_NS (5ull * 1000 * 1000 * 1000)

static bool verbose;

uint64_t sup_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void vlog(const char *fmt, va_list ap)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char line[1024];
	int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld hatcheryd: ",
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	fprintf(stderr, "%s\n", line);
}

void sup_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void sup_debug(const char *fmt, ...)
{
	if (!verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

/* ---- epoll tags ---------------------------------------------------------- */

enum tag {
	TAG_LISTEN = 1,
	TAG_SIGNAL,
	TAG_TIMER,
	TAG_CONN,
	TAG_CTRL,  /* a child's control socket */
	TAG_PIDFD, /* a child's pidfd */
};
#define TAG_MASK 7ull
_Static_assert(_Alignof(max_align_t) >= 8, "pointer tags need 8-byte alignment");

static uint64_t tagged(void *p, enum tag t)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)t;
}

/* ---- state ----------------------------------------------------------------- */

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
	uint64_t refill_at; /* replenish no earlier (0: now); see lease() */
};

struct server {
	const struct sup_server_opts *o;
	int epfd, lfd, sfd, tfd;
	struct spool *pools;
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
	uint8_t rx[IPC_MAX_MSG];
};

static struct spool *spool_of(struct sup_pool *p)
{
	return (struct spool *)((char *)p - offsetof(struct spool, p));
}

static int ep_add(struct server *s, int fd, uint32_t events, void *p, enum tag t)
{
	struct epoll_event ev = { .events = events, .data.u64 = tagged(p, t) };
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void ep_mod(struct server *s, int fd, uint32_t events, void *p, enum tag t)
{
	struct epoll_event ev = { .events = events, .data.u64 = tagged(p, t) };
	epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
}

static int pidfd_kill(int pidfd)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
}

/* ---- children -------------------------------------------------------------- */

static void child_event(struct server *s, struct sup_child *c,
			enum sup_child_event ev, enum sup_kill_reason why)
{
	if (sup_child_event(c, ev, sup_now_ns(), why) == ACT_INVALID)
		sup_debug("child %llu: event %d ignored in state %s",
			  (unsigned long long)c->id, ev, sup_child_state_name(c->state));
	spool_of(c->pool)->dirty = true;
}

/* Close the supervisor's channels to a child that is exiting, killed or
 * reaped: its control socket and, if it was never leased, the client's end
 * of its VM socket. */
static void close_channels(struct server *s, struct sup_child *c)
{
	if (c->vm_fd >= 0) {
		close(c->vm_fd);
		c->vm_fd = -1;
	}
	if (c->ctrl_fd < 0)
		return;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->ctrl_fd, NULL);
	close(c->ctrl_fd);
	c->ctrl_fd = -1;
}

static void kill_child(struct server *s, struct sup_child *c,
		       enum sup_kill_reason why)
{
	if (c->state == CHILD_DYING || c->state == CHILD_DEAD)
		return;
	pidfd_kill(c->pidfd);
	close_channels(s, c);
	child_event(s, c, EV_KILL, why);
}

static int slot_alloc(struct server *s, struct sup_child *c)
{
	for (unsigned i = 0; i < s->n_slots; i++) {
		if (!s->slot_used[i]) {
			s->slot_used[i] = 1;
			c->slot = (int)i;
			return 0;
		}
	}
	return -EAGAIN;
}

/* Give back what the jail held for a child that is gone (reaped, or never
 * started): its uid slot and its cgroup. */
static void child_release_jail(struct server *s, struct sup_child *c)
{
	if (c->slot >= 0 && (unsigned)c->slot < s->n_slots)
		s->slot_used[c->slot] = 0;
	c->slot = -1;
	if (c->in_cgroup)
		sup_cgroup_child_remove(s->o->cgroup, c->pool->cfg, c->id);
	c->in_cgroup = false;
}

static void handle_ctrl(struct server *s, struct sup_child *c);

static int spawn_one(struct server *s, struct spool *sp)
{
	uint64_t now = sup_now_ns();
	struct sup_child *c = sup_child_new(&sp->p, ++s->next_child_id, now);
	if (!c)
		return -ENOMEM;
	struct hatch_err err = { 0 };
	int r = slot_alloc(s, c);
	if (r < 0)
		hatch_err_set(&err, E(INTERNAL), 0, "no free jail slot");
	else if (sup_spawn(c, s->o, &err) < 0)
		r = err.sys_errno ? -err.sys_errno : -EIO;
	if (r == 0)
		r = ep_add(s, c->ctrl_fd, EPOLLIN, c, TAG_CTRL);
	if (r == 0)
		r = ep_add(s, c->pidfd, EPOLLIN, c, TAG_PIDFD);
	if (r < 0) {
		char msg[HATCH_ERR_MSG_MAX + 16];
		if (err.msg[0])
			snprintf(msg, sizeof(msg), "spawn: %s", err.msg);
		else
			snprintf(msg, sizeof(msg), "spawn: %s", strerror(-r));
		sup_log("pool %s: %s", sp->p.cfg->name, msg);
		sup_pool_set_error(&sp->p, msg);
		if (c->pidfd >= 0) {
			pidfd_kill(c->pidfd);
			waitid(P_PIDFD, (id_t)c->pidfd, &(siginfo_t){ 0 }, WEXITED);
			epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
			close(c->pidfd);
		}
		close_channels(s, c);
		child_release_jail(s, c);
		sup_child_event(c, EV_CRASH, sup_now_ns(), KILL_PROTOCOL);
		sup_child_free(c);
		return r;
	}
	sup_debug("pool %s: spawned child %llu pid %d", sp->p.cfg->name,
		  (unsigned long long)c->id, c->pid);
	return 0;
}

static void replenish(struct server *s, struct spool *sp)
{
	if (s->stopping)
		return;
	unsigned n = sup_pool_spawn_needed(&sp->p, sup_now_ns());
	for (unsigned i = 0; i < n; i++)
		if (spawn_one(s, sp) < 0)
			break;
}

/* Is it time to replenish `sp`? Yes unless a refill delay is running and
 * the pool can still serve without it (idle children left, nobody
 * waiting); then the timer is armed for the end of the delay. */
static void arm_timer(struct server *s, uint64_t at);
static bool replenish_due(struct server *s, struct spool *sp)
{
	if (!sp->refill_at || sp->p.count[CHILD_READY] == 0 || sp->p.waiting)
		return true;
	if (sup_now_ns() >= sp->refill_at)
		return true;
	arm_timer(s, sp->refill_at);
	return false;
}

/* The pidfd fired: reap, account, free. */
static void reap_child(struct server *s, struct sup_child *c)
{
	siginfo_t si = { 0 };
	if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return; /* not yet (spurious wakeup) */
	bool clean = si.si_code == CLD_EXITED && si.si_status == 0;
	struct sup_pool *p = c->pool;
	/* Its last words may still be queued behind the pidfd event: a
	 * seccomp report, a ChildFailed. Read them before judging. */
	s->reaping = true;
	for (int i = 0; i < 8 && !clean && c->ctrl_fd >= 0; i++)
		handle_ctrl(s, c);
	s->reaping = false;
	bool sigsys = si.si_code != CLD_EXITED && si.si_status == SIGSYS;
	if (sigsys)
		p->stats.seccomp_kills++;
	if (!clean && c->state != CHILD_DYING) {
		char msg[256];
		if (sigsys) {
			char name[64];
			if (c->seccomp_reported)
				snprintf(msg, sizeof(msg),
					 "child %d killed by seccomp: syscall %d (%s) "
					 "is not allowed, in state %s", c->pid,
					 c->seccomp_syscall,
					 vmp_jail_syscall_name(c->seccomp_syscall,
							       c->seccomp_arch, name,
							       sizeof(name)),
					 sup_child_state_name(c->state));
			else
				snprintf(msg, sizeof(msg),
					 "child %d killed by SIGSYS (seccomp; it did not "
					 "report the syscall) in state %s", c->pid,
					 sup_child_state_name(c->state));
		} else if (si.si_code == CLD_EXITED)
			snprintf(msg, sizeof(msg), "child %d exited with status %d in state %s",
				 c->pid, si.si_status, sup_child_state_name(c->state));
		else
			snprintf(msg, sizeof(msg), "child %d killed by signal %d (%s) in state %s",
				 c->pid, si.si_status, strsignal(si.si_status),
				 sup_child_state_name(c->state));
		sup_log("pool %s: %s", p->cfg->name, msg);
		if (c->state == CHILD_SPAWNING && !c->spawn_failed_msg)
			sup_pool_set_error(p, msg);
	} else if (c->state == CHILD_READY) {
		sup_log("pool %s: idle child %d exited unasked", p->cfg->name, c->pid);
	}
	child_event(s, c, clean ? EV_EXIT : EV_CRASH, KILL_PROTOCOL);
	close_channels(s, c);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
	close(c->pidfd);
	c->pidfd = -1;
	child_release_jail(s, c);
	sup_child_free(c);
	s->freed = true;
}

/* ---- replies to clients ------------------------------------------------------ */

static void conn_close(struct server *s, struct conn *cn);

/* Send a reply; a client that does not read its replies (full socket) or is
 * gone loses its connection. Returns 0 or -1 if the connection was closed. */
static int send_reply(struct server *s, struct conn *cn, Hatchery__V1__Reply *rep,
		      const int *fds, size_t nfds)
{
	int r = ipc_send_pb(cn->fd, &rep->base, fds, nfds, true);
	if (r < 0) {
		sup_debug("client pid %d: send reply: %s; closing", cn->pid, strerror(-r));
		conn_close(s, cn);
		return -1;
	}
	return 0;
}

static int send_error(struct server *s, struct conn *cn, uint64_t id, int code,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int send_error(struct server *s, struct conn *cn, uint64_t id, int code,
		      const char *fmt, ...)
{
	char msg[HATCH_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__Error e = HATCHERY__V1__ERROR__INIT;
	e.code = code;
	e.message = msg;
	rep.id = id;
	rep.error = &e;
	return send_reply(s, cn, &rep, NULL, 0);
}

/* ---- acquire ------------------------------------------------------------------- */

static void wait_remove(struct conn *cn)
{
	struct spool *sp = cn->wpool;
	if (!sp)
		return;
	if (cn->wprev)
		cn->wprev->wnext = cn->wnext;
	else
		sp->whead = cn->wnext;
	if (cn->wnext)
		cn->wnext->wprev = cn->wprev;
	else
		sp->wtail = cn->wprev;
	cn->wprev = cn->wnext = NULL;
	cn->wpool = NULL;
	sp->p.waiting--;
	sp->dirty = true;
}

/* Hand `c` to the client: forward the client's end of the VM socket made
 * with the child. Nothing is sent to the child: it has been polling its end
 * since it became ready, so the client's first request goes straight to it.
 * Returns 0 when the request is answered (or the client is gone: then the
 * child was not handed out and stays ready), -1 when `c` turned out to be
 * dead and the caller should try another. */
static int lease(struct server *s, struct conn *cn, struct sup_child *c,
		 uint64_t req_id, uint64_t t_recv, bool hit)
{
	struct sup_pool *p = c->pool;
	/* A child that died since its pidfd was last looked at has closed its
	 * end: POLLHUP. Do not hand out a dead VM; the reap will account. */
	struct pollfd pf = { .fd = c->vm_fd, .events = 0 };
	if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLERR)))
		return -1;

	uint64_t now = sup_now_ns();
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__AcquireReply ar = HATCHERY__V1__ACQUIRE_REPLY__INIT;
	ar.child_pid = (uint32_t)c->pid;
	ar.child_id = c->id;
	ar.hit = hit;
	ar.wait_ns = now - t_recv;
	rep.id = req_id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_ACQUIRE;
	rep.acquire = &ar;
	if (send_reply(s, cn, &rep, &c->vm_fd, 1) < 0)
		return 0; /* the fd never left: the child is still pristine */
	close(c->vm_fd);
	c->vm_fd = -1;
	child_event(s, c, EV_LEASE, 0);
	/* Waking an idle CPU costs ~15-20 us here (nested virtualisation).
	 * Wake the child now, while the client is still receiving its reply,
	 * so that it is running when the first request arrives (measured:
	 * first ping p50 ~45 us instead of ~65). Sent after the reply, never
	 * before: the wake-up IPI is itself a VM exit and must not delay the
	 * client. Only a hint: the child changes no state on it. */
	Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
	Hatchery__V1__SupLeased leased = HATCHERY__V1__SUP_LEASED__INIT;
	m.body_case = HATCHERY__V1__SUP_MSG__BODY_LEASED;
	m.leased = &leased;
	ipc_send_pb(c->ctrl_fd, &m.base, NULL, 0, true);
	/* On two cores, a fork and a jailed VM build right now would compete
	 * with the client's first calls to the VM it just got. While other
	 * children are idle nobody needs the replacement yet: fork it a
	 * little later (the clock starts at the first lease, so a stream of
	 * leases cannot postpone it further). replenish_due() decides. */
	struct spool *sp = spool_of(p);
	if (!sp->refill_at)
		sp->refill_at = sup_now_ns() + (uint64_t)p->cfg->refill_delay_us * 1000u;

	p->stats.acquisitions++;
	if (hit)
		p->stats.hits++;
	else
		p->stats.misses++;
	lat_record(&p->stats.acquire, sup_now_ns() - t_recv);
	return 0;
}

/* Lease the oldest ready child of `sp` that is still alive. Returns 0 when
 * the request was answered, -1 when no ready child was left. */
static int lease_first_ready(struct server *s, struct spool *sp, struct conn *cn,
			     uint64_t req_id, uint64_t t_recv, bool hit)
{
	for (struct sup_child *c = sup_pool_first_ready(&sp->p); c; c = c->next)
		if (lease(s, cn, c, req_id, t_recv, hit) == 0)
			return 0;
	return -1;
}

/* Try to serve the oldest waiters of sp with ready children. */
static void serve_waiters(struct server *s, struct spool *sp)
{
	while (sp->whead && sup_pool_first_ready(&sp->p)) {
		struct conn *cn = sp->whead;
		uint64_t id = cn->wreq_id, t = cn->wt_recv;
		wait_remove(cn);
		ep_mod(s, cn->fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN);
		if (lease_first_ready(s, sp, cn, id, t, false) < 0) {
			/* Every ready child was dead: put the waiter back at the
			 * head, it keeps its turn. */
			cn->wpool = sp;
			cn->wnext = sp->whead;
			if (sp->whead)
				sp->whead->wprev = cn;
			else
				sp->wtail = cn;
			sp->whead = cn;
			sp->p.waiting++;
			ep_mod(s, cn->fd, EPOLLRDHUP, cn, TAG_CONN);
			return;
		}
	}
}


static void handle_acquire(struct server *s, struct conn *cn, uint64_t id,
			   const Hatchery__V1__AcquireRequest *a, uint64_t t_recv)
{
	struct spool *sp = NULL;
	for (size_t i = 0; i < s->n_pools; i++)
		if (strcmp(s->pools[i].p.cfg->name, a->pool) == 0)
			sp = &s->pools[i];
	if (!sp) {
		send_error(s, cn, id, E(NOT_FOUND), "no pool named \"%s\"", a->pool);
		return;
	}
	if (!sup_pool_allows(sp->p.cfg, cn->uid)) {
		send_error(s, cn, id, E(PERMISSION_DENIED),
			   "uid %u may not acquire from pool \"%s\"", cn->uid, a->pool);
		return;
	}
	if (lease_first_ready(s, sp, cn, id, t_recv, true) == 0)
		return;
	if (a->deadline_ms == 0) {
		sp->p.stats.misses++;
		send_error(s, cn, id, E(POOL_EXHAUSTED),
			   "pool \"%s\" has no ready VM (%u leased, %u spawning, max %u)",
			   a->pool, sp->p.count[CHILD_LEASED],
			   sp->p.count[CHILD_SPAWNING], sp->p.cfg->max);
		return;
	}
	unsigned ms = a->deadline_ms < MAX_DEADLINE_MS ? a->deadline_ms : MAX_DEADLINE_MS;
	cn->wpool = sp;
	cn->wreq_id = id;
	cn->wt_recv = t_recv;
	cn->wdeadline = t_recv + (uint64_t)ms * 1000000ull;
	cn->wprev = sp->wtail;
	cn->wnext = NULL;
	if (sp->wtail)
		sp->wtail->wnext = cn;
	else
		sp->whead = cn;
	sp->wtail = cn;
	sp->p.waiting++;
	sp->dirty = true;
	ep_mod(s, cn->fd, EPOLLRDHUP, cn, TAG_CONN);
	arm_timer(s, cn->wdeadline);
}

/* ---- status / stats ------------------------------------------------------------ */

static void fill_latency(Hatchery__V1__Latency *l, const struct lat_hist *h)
{
	l->count = h->count;
	l->p50 = lat_percentile(h, 50);
	l->p90 = lat_percentile(h, 90);
	l->p99 = lat_percentile(h, 99);
	l->max = h->max;
}

static void handle_stats(struct server *s, struct conn *cn, uint64_t id)
{
	size_t n = s->n_pools;
	Hatchery__V1__PoolStats *ps = calloc(n, sizeof(*ps));
	Hatchery__V1__PoolStats **pp = calloc(n, sizeof(*pp));
	Hatchery__V1__Latency *lat = calloc(2 * n, sizeof(*lat));
	if (!ps || !pp || !lat) {
		send_error(s, cn, id, E(INTERNAL), "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct sup_pool *p = &s->pools[i].p;
		hatchery__v1__pool_stats__init(&ps[i]);
		hatchery__v1__latency__init(&lat[2 * i]);
		hatchery__v1__latency__init(&lat[2 * i + 1]);
		ps[i].name = (char *)p->cfg->name;
		ps[i].acquisitions = p->stats.acquisitions;
		ps[i].hits = p->stats.hits;
		ps[i].misses = p->stats.misses;
		ps[i].spawned = p->stats.spawned;
		ps[i].spawn_failures = p->stats.spawn_failures;
		ps[i].unexpected_exits = p->stats.unexpected_exits;
		ps[i].health_failures = p->stats.health_failures;
		ps[i].seccomp_kills = p->stats.seccomp_kills;
		ps[i].resets = p->stats.resets;
		ps[i].active_leases = p->count[CHILD_LEASED];
		fill_latency(&lat[2 * i], &p->stats.acquire);
		fill_latency(&lat[2 * i + 1], &p->stats.spawn_to_ready);
		ps[i].acquire = &lat[2 * i];
		ps[i].spawn_to_ready = &lat[2 * i + 1];
		pp[i] = &ps[i];
	}
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__StatsReply sr = HATCHERY__V1__STATS_REPLY__INIT;
	sr.n_pools = n;
	sr.pools = pp;
	rep.id = id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_STATS;
	rep.stats = &sr;
	send_reply(s, cn, &rep, NULL, 0);
out:
	free(ps);
	free(pp);
	free(lat);
}

static void handle_status(struct server *s, struct conn *cn, uint64_t id)
{
	size_t n = s->n_pools, nchildren = 0;
	for (size_t i = 0; i < n; i++)
		nchildren += sup_pool_total(&s->pools[i].p);
	Hatchery__V1__PoolStatus *ps = calloc(n, sizeof(*ps));
	Hatchery__V1__PoolStatus **pp = calloc(n, sizeof(*pp));
	Hatchery__V1__ChildStatus *cs = calloc(nchildren + 1, sizeof(*cs));
	Hatchery__V1__ChildStatus **cp = calloc(nchildren + 1, sizeof(*cp));
	if (!ps || !pp || !cs || !cp) {
		send_error(s, cn, id, E(INTERNAL), "out of memory");
		goto out;
	}
	uint64_t now = sup_now_ns();
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sup_pool *p = &s->pools[i].p;
		hatchery__v1__pool_status__init(&ps[i]);
		ps[i].name = (char *)p->cfg->name;
		ps[i].kind = (char *)sup_pool_kind_name(p->cfg->kind);
		ps[i].reuse = (char *)sup_reuse_mode_name(p->cfg->reuse);
		ps[i].idle = p->count[CHILD_READY];
		ps[i].leased = p->count[CHILD_LEASED];
		ps[i].spawning = p->count[CHILD_SPAWNING];
		ps[i].min_idle = p->cfg->min_idle;
		ps[i].max = p->cfg->max;
		ps[i].degraded = sup_pool_degraded(p);
		ps[i].last_error = (char *)p->last_error;
		ps[i].waiting = p->waiting;
		ps[i].children = &cp[k];
		for (int st = 0; st < CHILD__NSTATES; st++) {
			for (struct sup_child *c = p->list[st]; c && k < nchildren; c = c->next) {
				hatchery__v1__child_status__init(&cs[k]);
				cs[k].id = c->id;
				cs[k].pid = (uint32_t)c->pid;
				cs[k].state = (char *)sup_child_state_name(c->state);
				cs[k].age_ms = (now - c->t_fork) / 1000000;
				cp[k] = &cs[k];
				k++;
				ps[i].n_children++;
			}
		}
		pp[i] = &ps[i];
	}
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__StatusReply sr = HATCHERY__V1__STATUS_REPLY__INIT;
	sr.pid = (uint32_t)getpid();
	sr.uptime_ms = (now - s->t_start) / 1000000;
	char cgroup[sizeof(s->o->cgroup->reason) + 32];
	if (s->o->no_jail)
		snprintf(cgroup, sizeof(cgroup), "off (--no-jail)");
	else if (s->o->cgroup->usable)
		snprintf(cgroup, sizeof(cgroup), "v2 at %s", s->o->cgroup->base);
	else
		snprintf(cgroup, sizeof(cgroup), "unavailable (%s)", s->o->cgroup->reason);
	sr.jail = (char *)(s->o->no_jail ? "off (--no-jail)"
			   : s->o->rootless ? "on (rootless: one uid for all children)"
					    : "on");
	sr.cgroup = cgroup;
	sr.n_pools = n;
	sr.pools = pp;
	rep.id = id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_STATUS;
	rep.status = &sr;
	/* Thousands of children do not fit in one packet: halve the child
	 * lists until the reply does; the counts stay exact. */
	while (protobuf_c_message_get_packed_size(&rep.base) > IPC_MAX_MSG) {
		for (size_t i = 0; i < n; i++) {
			ps[i].n_children /= 2;
			ps[i].children_truncated = true;
		}
	}
	send_reply(s, cn, &rep, NULL, 0);
out:
	free(ps);
	free(pp);
	free(cs);
	free(cp);
}

/* ---- client connections ---------------------------------------------------------- */

static void conn_close(struct server *s, struct conn *cn)
{
	wait_remove(cn);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, cn->fd, NULL);
	close(cn->fd);
	if (cn->prev)
		cn->prev->next = cn->next;
	else
		s->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	s->nconns--;
	free(cn);
	s->freed = true;
}

static bool uid_in_any_pool(const struct server *s, uid_t uid)
{
	for (size_t i = 0; i < s->n_pools; i++)
		if (sup_pool_allows(s->pools[i].p.cfg, uid))
			return true;
	return false;
}

static void accept_conns(struct server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			sup_log("accept: %s", strerror(errno));
			return; /* EMFILE and friends: try again on the next event */
		}
		if (s->nconns >= MAX_CONNS) {
			sup_log("refusing connection: %u clients connected (limit %d)",
				s->nconns, MAX_CONNS);
			close(fd);
			continue;
		}
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct conn *cn = calloc(1, sizeof(*cn));
		if (!cn || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			free(cn);
			close(fd);
			continue;
		}
		cn->fd = fd;
		cn->uid = cred.uid;
		cn->pid = cred.pid;
		cn->authorized = uid_in_any_pool(s, cred.uid);
		if (ep_add(s, fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN) < 0) {
			free(cn);
			close(fd);
			continue;
		}
		cn->next = s->conns;
		if (s->conns)
			s->conns->prev = cn;
		s->conns = cn;
		s->nconns++;
		sup_debug("client pid %d uid %u connected%s", cn->pid, cn->uid,
			  cn->authorized ? "" : " (not in any allow_uids)");
	}
}

static void handle_conn(struct server *s, struct conn *cn, uint32_t events)
{
	if (cn->wpool) {
		/* Waiting: only hangups are watched. */
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			conn_close(s, cn);
		return;
	}
	uint64_t t_recv = sup_now_ns();
	struct ipc_msg m = { .buf = s->rx };
	int r = ipc_recv(cn->fd, &m, true);
	if (r == -EAGAIN)
		return;
	if (r == 0 || (r < 0 && r != -EMSGSIZE && r != -ETOOMANYREFS)) {
		conn_close(s, cn);
		return;
	}
	if (r == -EMSGSIZE) {
		/* A peer that sends oversized packets is not speaking our
		 * protocol: tell it why, then hang up. */
		send_error(s, cn, 0, E(MESSAGE_TOO_LARGE), "%s", ipc_strerror(r));
		conn_close(s, cn);
		return;
	}
	if (r == -ETOOMANYREFS || m.nfds) {
		ipc_msg_close_fds(&m);
		send_error(s, cn, 0, E(UNEXPECTED_FDS),
			   "requests to hatcheryd carry no file descriptors");
		return;
	}
	Hatchery__V1__Request *req = hatchery__v1__request__unpack(NULL, m.len, m.buf);
	if (!req) {
		send_error(s, cn, 0, E(MALFORMED),
			   "packet of %zu bytes did not decode as hatchery.v1.Request", m.len);
		return;
	}
	uint64_t id = req->id;
	if (!cn->authorized) {
		send_error(s, cn, id, E(PERMISSION_DENIED),
			   "uid %u is not allowed by any pool", cn->uid);
	} else if (s->stopping) {
		send_error(s, cn, id, E(UNAVAILABLE), "hatcheryd is shutting down");
	} else {
		switch (req->body_case) {
		case HATCHERY__V1__REQUEST__BODY_PING: {
			Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
			Hatchery__V1__PingReply pr = HATCHERY__V1__PING_REPLY__INIT;
			pr.version = (char *)HATCH_VERSION;
			pr.pid = (uint32_t)getpid();
			rep.id = id;
			rep.body_case = HATCHERY__V1__REPLY__BODY_PING;
			rep.ping = &pr;
			send_reply(s, cn, &rep, NULL, 0);
			break;
		}
		case HATCHERY__V1__REQUEST__BODY_ACQUIRE:
			handle_acquire(s, cn, id, req->acquire, t_recv);
			break;
		case HATCHERY__V1__REQUEST__BODY_STATUS:
			handle_status(s, cn, id);
			break;
		case HATCHERY__V1__REQUEST__BODY_STATS:
			handle_stats(s, cn, id);
			break;
		default:
			send_error(s, cn, id, E(INVALID_ARGUMENT),
				   "request has no body (or one this hatcheryd does not know)");
			break;
		}
	}
	hatchery__v1__request__free_unpacked(req, NULL);
}

/* ---- child control channel ---------------------------------------------------------- */

/* ChildReset: a reuse = snapshot child restored its snapshot after a clean
 * lease. Give it the child's end of a fresh VM socket (the last client
 * may still hold the old one's other end: never reuse it), keep ours for
 * the next lease, and count it idle. Anything odd about the claim kills
 * it: a replacement is cheaper than trusting it. */
static void child_reset(struct server *s, struct sup_child *c, uint64_t reset_ns)
{
	struct sup_pool *p = c->pool;
	if (s->reaping)
		return; /* it is dead already: the reap accounts */
	if (c->state != CHILD_LEASED || p->cfg->reuse != SUP_REUSE_SNAPSHOT ||
	    c->vm_fd >= 0) {
		sup_log("pool %s: child %d reported a reset in state %s (reuse = %s); "
			"killing it", p->cfg->name, c->pid, sup_child_state_name(c->state),
			sup_reuse_mode_name(p->cfg->reuse));
		kill_child(s, c, KILL_PROTOCOL);
		return;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		sup_log("pool %s: child %d: socketpair for its next lease: %s; killing it",
			p->cfg->name, c->pid, strerror(errno));
		kill_child(s, c, KILL_PROTOCOL);
		return;
	}
	Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
	Hatchery__V1__SupVmSocket vs = HATCHERY__V1__SUP_VM_SOCKET__INIT;
	m.body_case = HATCHERY__V1__SUP_MSG__BODY_VM_SOCKET;
	m.vm_socket = &vs;
	int r = ipc_send_pb(c->ctrl_fd, &m.base, &sv[1], 1, true);
	close(sv[1]);
	if (r < 0) {
		close(sv[0]);
		sup_log("pool %s: child %d: send its new VM socket: %s; killing it",
			p->cfg->name, c->pid, ipc_strerror(r));
		kill_child(s, c, KILL_PROTOCOL);
		return;
	}
	c->vm_fd = sv[0];
	child_event(s, c, EV_RESET, 0);
	c->next_health_at = sup_now_ns() + (uint64_t)p->cfg->health_interval_ms * 1000000ull;
	sup_debug("pool %s: child %d reset to its snapshot in %.3f ms", p->cfg->name,
		  c->pid, (double)reset_ns / 1e6);
	serve_waiters(s, spool_of(p));
}

static void handle_ctrl(struct server *s, struct sup_child *c)
{
	struct ipc_msg m = { .buf = s->rx };
	int r = ipc_recv(c->ctrl_fd, &m, true);
	if (r == -EAGAIN)
		return;
	if (r <= 0) {
		/* EOF: the child is exiting; its pidfd will tell us when. */
		close_channels(s, c);
		return;
	}
	ipc_msg_close_fds(&m); /* children never send fds */
	Hatchery__V1__ChildMsg *msg = hatchery__v1__child_msg__unpack(NULL, m.len, m.buf);
	if (!msg) {
		sup_log("pool %s: child %d sent garbage on its control channel; killing it",
			c->pool->cfg->name, c->pid);
		kill_child(s, c, KILL_PROTOCOL);
		return;
	}
	struct sup_pool *p = c->pool;
	switch (msg->body_case) {
	case HATCHERY__V1__CHILD_MSG__BODY_READY:
		child_event(s, c, EV_READY, 0);
		c->next_health_at = sup_now_ns() + (uint64_t)p->cfg->health_interval_ms * 1000000ull;
		sup_debug("pool %s: child %d ready in %.3f ms", p->cfg->name, c->pid,
			  (double)(sup_now_ns() - c->t_fork) / 1e6);
		if (!s->reaping)
			serve_waiters(s, spool_of(p));
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_PONG:
		if (c->ping_sent_at && msg->pong->seq == c->ping_seq) {
			c->ping_sent_at = 0;
			c->next_health_at = sup_now_ns() +
					    (uint64_t)p->cfg->health_interval_ms * 1000000ull;
		}
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_FAILED:
		/* A leased child says so when its restore on lease failed. */
		sup_log("pool %s: child %d failed %s: %s", p->cfg->name, c->pid,
			c->state == CHILD_LEASED ? "on lease" : "to start",
			msg->failed->message);
		sup_pool_set_error(p, msg->failed->message);
		c->spawn_failed_msg = true;
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_RESET:
		child_reset(s, c, msg->reset->reset_ns);
		break;
	case HATCHERY__V1__CHILD_MSG__BODY_SECCOMP_VIOLATION:
		/* Its SIGSYS handler speaking; the SIGSYS death follows and
		 * is logged, with this syscall, when the pidfd fires. */
		c->seccomp_reported = true;
		c->seccomp_syscall = msg->seccomp_violation->syscall;
		c->seccomp_arch = msg->seccomp_violation->arch;
		break;
	default:
		break;
	}
	hatchery__v1__child_msg__free_unpacked(msg, NULL);
}

/* ---- timers ------------------------------------------------------------------------- */

/* Arm the timerfd to fire at `at` (CLOCK_MONOTONIC ns). */
static void set_timer(struct server *s, uint64_t at)
{
	uint64_t now = sup_now_ns();
	uint64_t d = at > now ? at - now : 1;
	struct itimerspec its = { 0 };
	its.it_value.tv_sec = (time_t)(d / 1000000000ull);
	its.it_value.tv_nsec = (long)(d % 1000000000ull);
	timerfd_settime(s->tfd, 0, &its, NULL);
	s->timer_at = at;
}

/* Make sure the timer fires no later than `at`. Only ever moves the next
 * wake-up earlier (the tick re-arms it), and costs no syscall when it is
 * already early enough: it is called on every loop turn while a refill
 * delay is pending. */
static void arm_timer(struct server *s, uint64_t at)
{
	if (s->timer_at && s->timer_at <= at)
		return;
	set_timer(s, at);
}

static void health_and_deadlines(struct server *s)
{
	uint64_t now = sup_now_ns();
	uint64_t next = now + s->tick_ns;
	for (size_t i = 0; i < s->n_pools; i++) {
		struct spool *sp = &s->pools[i];
		struct sup_pool *p = &sp->p;
		const struct sup_pool_config *cfg = p->cfg;
		uint64_t timeout = (uint64_t)cfg->health_timeout_ms * 1000000ull;
		struct sup_child *c, *nx;
		for (c = p->list[CHILD_READY]; c; c = nx) {
			nx = c->next;
			if (c->ping_sent_at) {
				if (now - c->ping_sent_at > timeout) {
					sup_log("pool %s: child %d missed its health check "
						"(%u ms); killing it", cfg->name, c->pid,
						cfg->health_timeout_ms);
					kill_child(s, c, KILL_HEALTH);
				}
				continue;
			}
			if (now < c->next_health_at)
				continue;
			Hatchery__V1__SupMsg m = HATCHERY__V1__SUP_MSG__INIT;
			Hatchery__V1__SupPing ping = HATCHERY__V1__SUP_PING__INIT;
			ping.seq = ++c->ping_seq;
			m.body_case = HATCHERY__V1__SUP_MSG__BODY_PING;
			m.ping = &ping;
			/* A full control socket means the child is not reading:
			 * that is a missed health check in the making, so just
			 * count the ping as sent. */
			ipc_send_pb(c->ctrl_fd, &m.base, NULL, 0, true);
			c->ping_sent_at = now;
		}
		for (c = p->list[CHILD_SPAWNING]; c; c = nx) {
			nx = c->next;
			if (now - c->t_fork > SPAWN_TIMEOUT_NS) {
				sup_log("pool %s: child %d not ready after %llu s; killing it",
					cfg->name, c->pid,
					(unsigned long long)(SPAWN_TIMEOUT_NS / 1000000000ull));
				sup_pool_set_error(p, "child did not report ready in time");
				kill_child(s, c, KILL_SPAWN_TIMEOUT);
			}
		}
		struct conn *cn, *cnx;
		for (cn = sp->whead; cn; cn = cnx) {
			cnx = cn->wnext;
			if (now >= cn->wdeadline) {
				uint64_t id = cn->wreq_id;
				wait_remove(cn);
				ep_mod(s, cn->fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN);
				p->stats.misses++;
				send_error(s, cn, id, E(POOL_EXHAUSTED),
					   "pool \"%s\": no VM became ready within the deadline "
					   "(%u leased, %u spawning, max %u)%s%s", cfg->name,
					   p->count[CHILD_LEASED], p->count[CHILD_SPAWNING],
					   cfg->max, p->last_error[0] ? "; last spawn error: " : "",
					   p->last_error);
			} else if (cn->wdeadline < next) {
				next = cn->wdeadline;
			}
		}
		if (p->next_spawn_at > now && p->next_spawn_at < next)
			next = p->next_spawn_at;
		if (sp->refill_at > now && sp->refill_at < next)
			next = sp->refill_at;
		sp->dirty = true; /* backoff may have expired */
	}
	set_timer(s, next);
}

/* ---- setup and teardown ----------------------------------------------------------------- */

int sup_socket_check_free(const char *path, struct hatch_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	_cleanup_close_ int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return hatch_err_set(err, E(INTERNAL), 0,
				     "%s: another hatcheryd is already listening", path);
	return 0;
}

static int bind_socket(struct server *s, struct hatch_err *err)
{
	const char *path = s->o->cfg->socket_path;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);

	/* mkdir -p of the socket's directory. */
	char dir[sizeof(sa.sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *q = dir + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return hatch_err_set(err, E(INTERNAL), errno, "mkdir %s", dir);
		*q = '/';
	}

	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EADDRINUSE)
			return hatch_err_set(err, E(INTERNAL), errno, "bind %s", path);
		/* Someone listening there, or a stale socket from a crash? */
		if (sup_socket_check_free(path, err) < 0)
			return -1;
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return hatch_err_set(err, E(INTERNAL), errno, "bind %s", path);
	}
	/* Access control is SO_PEERCRED against allow_uids; the mode only
	 * decides who may reach that check. */
	if (chmod(path, s->o->cfg->socket_mode) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "chmod %s", path);
	if (listen(fd, 256) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "listen %s", path);
	s->lfd = steal_fd(&fd);
	return 0;
}

static int setup(struct server *s, struct hatch_err *err)
{
	const struct sup_config *cfg = s->o->cfg;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "epoll_create1");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "sigprocmask");
	s->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->sfd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "signalfd");
	s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (s->tfd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "timerfd_create");

	if (bind_socket(s, err) < 0)
		return -1;

	s->n_pools = cfg->n_pools;
	s->pools = calloc(cfg->n_pools, sizeof(*s->pools));
	s->n_slots = sup_config_jail_slots(cfg);
	s->slot_used = calloc(s->n_slots, 1);
	if (!s->pools || !s->slot_used)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "pools");
	/* The tick: fine enough to notice a missed health check within a
	 * quarter of its timeout, never busier than every 5 ms. */
	s->tick_ns = 50ull * 1000000;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		sup_pool_init(&s->pools[i].p, &cfg->pools[i]);
		uint64_t q = (uint64_t)cfg->pools[i].health_timeout_ms * 1000000ull / 4;
		if (q < s->tick_ns)
			s->tick_ns = q < 5000000 ? 5000000 : q;
	}
	if (ep_add(s, s->lfd, EPOLLIN, s, TAG_LISTEN) < 0 ||
	    ep_add(s, s->sfd, EPOLLIN, s, TAG_SIGNAL) < 0 ||
	    ep_add(s, s->tfd, EPOLLIN, s, TAG_TIMER) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "epoll_ctl");
	arm_timer(s, sup_now_ns() + s->tick_ns);
	return 0;
}

static void begin_shutdown(struct server *s, int sig)
{
	sup_log("%s: shutting down", strsignal(sig));
	s->stopping = true;
	s->stop_deadline = sup_now_ns() + SHUTDOWN_REAP_NS;
	/* Stop accepting first, so no new client races the teardown. */
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
	close(s->lfd);
	s->lfd = -1;
	unlink(s->o->cfg->socket_path);
	while (s->conns) {
		struct conn *cn = s->conns;
		if (cn->wpool) {
			uint64_t id = cn->wreq_id;
			wait_remove(cn);
			if (send_error(s, cn, id, E(UNAVAILABLE), "hatcheryd is shutting down") < 0)
				continue; /* send_error closed it */
		}
		conn_close(s, cn);
	}
	for (size_t i = 0; i < s->n_pools; i++)
		for (int st = CHILD_SPAWNING; st <= CHILD_LEASED; st++)
			while (s->pools[i].p.list[st])
				kill_child(s, s->pools[i].p.list[st], KILL_SHUTDOWN);
}

static unsigned live_children(const struct server *s)
{
	unsigned n = 0;
	for (size_t i = 0; i < s->n_pools; i++)
		n += sup_pool_total(&s->pools[i].p);
	return n;
}

static void teardown(struct server *s)
{
	/* Anything still here after the reap deadline (it should not
	 * happen: SIGKILL cannot be ignored) is waited for synchronously. */
	for (size_t i = 0; i < s->n_pools; i++) {
		struct sup_pool *p = &s->pools[i].p;
		for (int st = 0; st < CHILD__NSTATES; st++) {
			while (p->list[st]) {
				struct sup_child *c = p->list[st];
				if (c->pidfd >= 0) {
					pidfd_kill(c->pidfd);
					waitid(P_PIDFD, (id_t)c->pidfd, &(siginfo_t){ 0 }, WEXITED);
					close(c->pidfd);
				}
				if (c->ctrl_fd >= 0)
					close(c->ctrl_fd);
				if (c->vm_fd >= 0)
					close(c->vm_fd);
				child_release_jail(s, c);
				sup_child_free(c);
			}
		}
	}
	while (s->conns)
		conn_close(s, s->conns);
	free(s->pools);
	free(s->slot_used);
	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->o->cfg->socket_path);
	}
	if (s->tfd >= 0)
		close(s->tfd);
	if (s->sfd >= 0)
		close(s->sfd);
	if (s->epfd >= 0)
		close(s->epfd);
}

int sup_server_run(const struct sup_server_opts *o, struct hatch_err *err)
{
	verbose = o->verbose;
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "server");
	s->o = o;
	s->epfd = s->lfd = s->sfd = s->tfd = -1;
	s->t_start = sup_now_ns();
	if (setup(s, err) < 0) {
		teardown(s);
		free(s);
		return -1;
	}
	sup_log("listening on %s with %zu pool(s)", o->cfg->socket_path, s->n_pools);
	for (size_t i = 0; i < s->n_pools; i++)
		s->pools[i].dirty = true;

	struct epoll_event evs[64];
	for (;;) {
		for (size_t i = 0; i < s->n_pools; i++)
			if (s->pools[i].dirty && replenish_due(s, &s->pools[i])) {
				s->pools[i].dirty = false;
				s->pools[i].refill_at = 0;
				replenish(s, &s->pools[i]);
			}
		if (s->stopping && (live_children(s) == 0 || sup_now_ns() > s->stop_deadline))
			break;
		int n = epoll_wait(s->epfd, evs, HATCH_ARRAY_SIZE(evs), s->stopping ? 100 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sup_log("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			void *p = (void *)(uintptr_t)(d & ~TAG_MASK);
			switch ((enum tag)(d & TAG_MASK)) {
			case TAG_LISTEN:
				accept_conns(s);
				break;
			case TAG_SIGNAL: {
				struct signalfd_siginfo si;
				if (read(s->sfd, &si, sizeof(si)) == sizeof(si) && !s->stopping)
					begin_shutdown(s, (int)si.ssi_signo);
				break;
			}
			case TAG_TIMER: {
				uint64_t ticks;
				if (read(s->tfd, &ticks, sizeof(ticks)) > 0)
					health_and_deadlines(s);
				break;
			}
			case TAG_CONN:
				handle_conn(s, p, evs[i].events);
				break;
			case TAG_CTRL: {
				struct sup_child *c = p;
				/* A child killed earlier in this batch has had its
				 * control fd closed; its event is stale. */
				if (c->ctrl_fd >= 0)
					handle_ctrl(s, c);
				break;
			}
			case TAG_PIDFD:
				reap_child(s, p);
				break;
			}
			/* A TAG_CONN/TAG_CTRL/TAG_PIDFD entry later in this batch may
			 * point at an object freed above: epoll_ctl(DEL) does not
			 * remove events already returned. Restart the batch after any
			 * free instead of dereferencing stale pointers. */
			if (s->freed) {
				s->freed = false;
				break;
			}
		}
	}
	unsigned left = live_children(s);
	if (left)
		sup_log("%u child(ren) not reaped in time; waiting for them", left);
	teardown(s);
	free(s);
	sup_log("stopped");
	return 0;
}
