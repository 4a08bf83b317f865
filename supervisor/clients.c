/* clients.c - client connections: accepting them, reading requests,
 * replies, Acquire, leases and the queue of Acquires waiting for a child.
 *
 * A reply never carries a closed fd: a child is leased only while it is
 * READY with our end of its VM socket open and not hung up; one found dead
 * on the way is taken off the ready list (EV_HANGUP) and the next one is
 * tried, so the client gets another child, waits, or gets an error reply.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "loop.h"

#define HATCH_VERSION "0.1.0"
#define MAX_CONNS 1024
#define MAX_DEADLINE_MS 60000u

/* ---- replies ------------------------------------------------------------ */

int send_reply(struct server *s, struct conn *cn, Hatchery__V1__Reply *rep,
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

int send_error(struct server *s, struct conn *cn, uint64_t id, int code,
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

/* ---- the wait queue ----------------------------------------------------- */

void wait_remove(struct conn *cn)
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

/* Queue `cn` at the tail (a new request) or the head (one that keeps its
 * turn). While queued the connection is watched for hangups only. */
static void wait_insert(struct server *s, struct spool *sp, struct conn *cn, bool head)
{
	cn->wpool = sp;
	if (head) {
		cn->wprev = NULL;
		cn->wnext = sp->whead;
		if (sp->whead)
			sp->whead->wprev = cn;
		else
			sp->wtail = cn;
		sp->whead = cn;
	} else {
		cn->wnext = NULL;
		cn->wprev = sp->wtail;
		if (sp->wtail)
			sp->wtail->wnext = cn;
		else
			sp->whead = cn;
		sp->wtail = cn;
	}
	sp->p.waiting++;
	sp->dirty = true;
	ep_mod(s, cn->fd, EPOLLRDHUP, cn, TAG_CONN);
}

/* ---- leases ------------------------------------------------------------- */

/* Hand `c` to the client: forward the client's end of the VM socket made
 * with the child (the child has been polling its end since it became
 * ready, so the client's first request goes straight to it), then the
 * lease's actions (ACT_WAKE sends the child SupLeased, a wake-up hint).
 * Returns 0 when the request is answered (or the client is gone: then the
 * child was not handed out and stays ready), -1 when `c` turned out to be
 * dead: it is off the ready list then, and the caller tries another. */
static int lease(struct server *s, struct conn *cn, struct sup_child *c,
		 uint64_t req_id, uint64_t t_recv, bool hit)
{
	struct sup_pool *p = c->pool;
	/* A child that died since its pidfd was last looked at has closed its
	 * end: POLLHUP. poll() ignores a negative fd, hence the first test. */
	struct pollfd pf = { .fd = c->vm_fd, .events = 0 };
	if (c->vm_fd < 0 ||
	    (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLERR)))) {
		child_event(s, c, EV_HANGUP);
		return -1;
	}
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__AcquireReply ar = HATCHERY__V1__ACQUIRE_REPLY__INIT;
	ar.child_pid = (uint32_t)c->pid;
	ar.child_id = c->id;
	ar.hit = hit;
	ar.wait_ns = hatch_now_ns() - t_recv;
	rep.id = req_id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_ACQUIRE;
	rep.acquire = &ar;
	if (send_reply(s, cn, &rep, &c->vm_fd, 1) < 0)
		return 0; /* the fd never left: the child is still pristine */
	hatch_closep(&c->vm_fd);
	child_event(s, c, EV_LEASE);
	sup_pool_count_acquire(p, hit, hatch_now_ns() - t_recv);
	return 0;
}

/* Lease the oldest ready child of `sp` that is still alive. Returns 0 when
 * the request was answered, -1 when no ready child was left. Every failed
 * lease() takes its child off the ready list, so this ends. */
static int lease_first_ready(struct server *s, struct spool *sp, struct conn *cn,
			     uint64_t req_id, uint64_t t_recv, bool hit)
{
	struct sup_child *c;
	while ((c = sup_pool_first_ready(&sp->p)))
		if (lease(s, cn, c, req_id, t_recv, hit) == 0)
			return 0;
	return -1;
}

void serve_waiters(struct server *s, struct spool *sp)
{
	while (sp->whead && sup_pool_first_ready(&sp->p)) {
		struct conn *cn = sp->whead;
		uint64_t id = cn->wreq_id, t = cn->wt_recv;
		wait_remove(cn);
		ep_mod(s, cn->fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN);
		if (lease_first_ready(s, sp, cn, id, t, false) < 0) {
			/* Every ready child was dead: the waiter keeps its turn. */
			wait_insert(s, sp, cn, true);
			return;
		}
	}
}

uint64_t expire_waiters(struct server *s, struct spool *sp, uint64_t now, uint64_t next)
{
	struct sup_pool *p = &sp->p;
	const struct sup_pool_config *cfg = p->cfg;
	struct conn *cn, *cnx;
	for (cn = sp->whead; cn; cn = cnx) {
		cnx = cn->wnext;
		if (now < cn->wdeadline) {
			if (cn->wdeadline < next)
				next = cn->wdeadline;
			continue;
		}
		uint64_t id = cn->wreq_id;
		wait_remove(cn);
		ep_mod(s, cn->fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN);
		sup_pool_count_refusal(p);
		send_error(s, cn, id, E(POOL_EXHAUSTED),
			   "pool \"%s\": no VM became ready within the deadline "
			   "(%u leased, %u spawning, max %u)%s%s", cfg->name,
			   p->count[CHILD_LEASED], p->count[CHILD_SPAWNING], cfg->max,
			   p->last_error[0] ? "; last spawn error: " : "", p->last_error);
	}
	return next;
}

void fail_waiters(struct server *s, struct spool *sp, int code, const char *why)
{
	while (sp->whead) {
		struct conn *cn = sp->whead;
		uint64_t id = cn->wreq_id;
		wait_remove(cn);
		ep_mod(s, cn->fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN);
		send_error(s, cn, id, code, "%s", why); /* may close cn */
	}
}

static void handle_acquire(struct server *s, struct conn *cn, uint64_t id,
			   const Hatchery__V1__AcquireRequest *a, uint64_t t_recv)
{
	struct spool *sp = NULL;
	/* A removed pool (still draining its leases) is no pool any more. */
	for (size_t i = 0; i < s->n_pools; i++)
		if (!s->pools[i]->p.removed && strcmp(s->pools[i]->p.cfg->name, a->pool) == 0)
			sp = s->pools[i];
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
		sup_pool_count_refusal(&sp->p);
		send_error(s, cn, id, E(POOL_EXHAUSTED),
			   "pool \"%s\" has no ready VM (%u leased, %u spawning, max %u)",
			   a->pool, sp->p.count[CHILD_LEASED],
			   sp->p.count[CHILD_SPAWNING], sp->p.cfg->max);
		return;
	}
	unsigned ms = a->deadline_ms < MAX_DEADLINE_MS ? a->deadline_ms : MAX_DEADLINE_MS;
	cn->wreq_id = id;
	cn->wt_recv = t_recv;
	cn->wdeadline = t_recv + (uint64_t)ms * 1000000ull;
	wait_insert(s, sp, cn, false);
	arm_timer(s, cn->wdeadline);
}

/* ---- connections -------------------------------------------------------- */

void conn_close(struct server *s, struct conn *cn)
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
		if (!s->pools[i]->p.removed && sup_pool_allows(s->pools[i]->p.cfg, uid))
			return true;
	return false;
}

void conns_reauthorize(struct server *s)
{
	for (struct conn *cn = s->conns; cn; cn = cn->next)
		cn->authorized = uid_in_any_pool(s, cn->uid);
}

void accept_conns(struct server *s)
{
	for (;;) {
		_cleanup_close_ int fd = accept4(s->lfd, NULL, NULL,
						 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				sup_log("accept: %s", strerror(errno));
			return; /* EMFILE and friends: try again on the next event */
		}
		if (s->nconns >= MAX_CONNS) {
			sup_log("refusing connection: %u clients connected (limit %d)",
				s->nconns, MAX_CONNS);
			continue;
		}
		struct ucred cred;
		socklen_t len = sizeof(cred);
		_cleanup_free_ struct conn *cn = calloc(1, sizeof(*cn));
		if (!cn || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
			continue;
		cn->fd = fd;
		cn->uid = cred.uid;
		cn->pid = cred.pid;
		cn->authorized = uid_in_any_pool(s, cred.uid);
		if (ep_add(s, fd, EPOLLIN | EPOLLRDHUP, cn, TAG_CONN) < 0)
			continue;
		steal_fd(&fd);
		struct conn *n = steal_ptr(&cn);
		n->next = s->conns;
		if (s->conns)
			s->conns->prev = n;
		s->conns = n;
		s->nconns++;
		sup_debug("client pid %d uid %u connected%s", n->pid, n->uid,
			  n->authorized ? "" : " (not in any allow_uids)");
	}
}

static void handle_ping(struct server *s, struct conn *cn, uint64_t id)
{
	Hatchery__V1__Reply rep = HATCHERY__V1__REPLY__INIT;
	Hatchery__V1__PingReply pr = HATCHERY__V1__PING_REPLY__INIT;
	pr.version = (char *)HATCH_VERSION;
	pr.pid = (uint32_t)getpid();
	rep.id = id;
	rep.body_case = HATCHERY__V1__REPLY__BODY_PING;
	rep.ping = &pr;
	send_reply(s, cn, &rep, NULL, 0);
}

static void handle_request(struct server *s, struct conn *cn,
			   const Hatchery__V1__Request *req, uint64_t t_recv)
{
	uint64_t id = req->id;
	/* Not a pool's client's request: its own rule (uid 0 or ours),
	 * whatever allow_uids say. */
	if (req->body_case == HATCHERY__V1__REQUEST__BODY_RELOAD) {
		handle_reload(s, cn, id);
		return;
	}
	if (!cn->authorized) {
		send_error(s, cn, id, E(PERMISSION_DENIED), "uid %u is not allowed by any pool",
			   cn->uid);
		return;
	}
	if (s->stopping) {
		send_error(s, cn, id, E(UNAVAILABLE), "hatcheryd is shutting down");
		return;
	}
	switch (req->body_case) {
	case HATCHERY__V1__REQUEST__BODY_PING:
		handle_ping(s, cn, id);
		break;
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

static void request_freep(Hatchery__V1__Request **req)
{
	if (*req)
		hatchery__v1__request__free_unpacked(*req, NULL);
}

/* Error replies follow one rule (docs/protocol.md): an error carries the
 * id of the request it answers whenever the request could be decoded, id 0
 * only when it could not. After UNEXPECTED_FDS the connection stays open;
 * after MESSAGE_TOO_LARGE it is closed. */
void handle_conn(struct server *s, struct conn *cn, uint32_t events)
{
	if (cn->wpool) {
		/* Waiting: only hangups are watched. */
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			conn_close(s, cn);
		return;
	}
	uint64_t t_recv = hatch_now_ns();
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
	/* Too many fds for one packet (-ETOOMANYREFS): the packet was refused
	 * before its length was known, so it cannot be decoded. */
	size_t nfds = r == -ETOOMANYREFS ? IPC_MAX_FDS + 1 : m.nfds;
	ipc_msg_close_fds(&m);
	__attribute__((cleanup(request_freep))) Hatchery__V1__Request *req =
		r == -ETOOMANYREFS ? NULL : hatchery__v1__request__unpack(NULL, m.len, m.buf);
	if (nfds) {
		send_error(s, cn, req ? req->id : 0, E(UNEXPECTED_FDS),
			   "requests to hatcheryd carry no file descriptors");
		return;
	}
	if (!req) {
		send_error(s, cn, 0, E(MALFORMED),
			   "packet of %zu bytes did not decode as hatchery.v1.Request", m.len);
		return;
	}
	handle_request(s, cn, req, t_recv);
}
