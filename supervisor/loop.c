/* loop.c - hatcheryd's event loop: one epoll, no threads.
 *
 * One epoll instance watches: the listening socket, a signalfd (SIGTERM,
 * SIGINT; SIGHUP: reload.c), one timerfd (health checks, acquire deadlines,
 * spawn backoff, retirements), every client connection (clients.c), and for every child its control
 * socket and its pidfd (children.c). Each epoll entry carries a pointer
 * with a tag in its low bits saying which of those it is.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "loop.h"

/* After SIGTERM, children get this long to be reaped before we give up. */
#define SHUTDOWN_REAP_NS (5ull * 1000 * 1000 * 1000)

_Static_assert(_Alignof(max_align_t) >= 8, "pointer tags need 8-byte alignment");

static uint64_t tagged(void *p, enum tag t)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)t;
}

int ep_add(struct server *s, int fd, uint32_t events, void *p, enum tag t)
{
	struct epoll_event ev = { .events = events, .data.u64 = tagged(p, t) };
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void ep_mod(struct server *s, int fd, uint32_t events, void *p, enum tag t)
{
	struct epoll_event ev = { .events = events, .data.u64 = tagged(p, t) };
	epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* ---- timers --------------------------------------------------------------- */


/* Arm the timerfd to fire at `at` (CLOCK_MONOTONIC ns). */
static void set_timer(struct server *s, uint64_t at)
{
	uint64_t now = hatch_now_ns();
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
void arm_timer(struct server *s, uint64_t at)
{
	if (s->timer_at && s->timer_at <= at)
		return;
	set_timer(s, at);
}


static void health_and_deadlines(struct server *s)
{
	uint64_t now = hatch_now_ns();
	uint64_t next = now + s->tick_ns;
	for (size_t i = 0; i < s->n_pools; i++) {
		struct spool *sp = s->pools[i];
		check_children(s, sp, now);
		next = expire_waiters(s, sp, now, next);
		if (sp->p.next_spawn_at > now && sp->p.next_spawn_at < next)
			next = sp->p.next_spawn_at;
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

void update_tick(struct server *s)
{
	/* The tick: fine enough to notice a missed health check within a
	 * quarter of its timeout, never busier than every 5 ms. */
	s->tick_ns = 50ull * 1000000;
	for (size_t i = 0; i < s->n_pools; i++) {
		uint64_t q = (uint64_t)s->pools[i]->p.cfg->health_timeout_ms * 1000000ull / 4;
		if (q < s->tick_ns)
			s->tick_ns = q < 5000000 ? 5000000 : q;
	}
}

static int setup(struct server *s, struct hatch_err *err)
{
	const struct sup_config *cfg = s->cfg;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "epoll_create1");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "sigprocmask");
	s->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->sfd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "signalfd");
	s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (s->tfd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "timerfd_create");

	/* s->lfd is already the socket systemd bound, if it passed one. */
	if (s->lfd < 0 && bind_socket(s, err) < 0)
		return -1;

	s->pools = calloc(cfg->n_pools, sizeof(*s->pools));
	s->n_slots = sup_config_jail_slots(cfg);
	s->slot_used = calloc(s->n_slots, 1);
	if (!s->pools || !s->slot_used)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "pools");
	for (size_t i = 0; i < cfg->n_pools; i++) {
		s->pools[i] = calloc(1, sizeof(*s->pools[i]));
		if (!s->pools[i])
			return hatch_err_set(err, E(INTERNAL), ENOMEM, "pools");
		s->n_pools++;
		sup_pool_init(&s->pools[i]->p, &cfg->pools[i]);
	}
	update_tick(s);
	if (ep_add(s, s->lfd, EPOLLIN, s, TAG_LISTEN) < 0 ||
	    ep_add(s, s->sfd, EPOLLIN, s, TAG_SIGNAL) < 0 ||
	    ep_add(s, s->tfd, EPOLLIN, s, TAG_TIMER) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "epoll_ctl");
	arm_timer(s, hatch_now_ns() + s->tick_ns);
	return 0;
}

static void begin_shutdown(struct server *s, int sig)
{
	sup_log("%s: shutting down", strsignal(sig));
	s->stopping = true;
	s->stop_deadline = hatch_now_ns() + SHUTDOWN_REAP_NS;
	/* Stop accepting first, so no new client races the teardown. */
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
	close(s->lfd);
	s->lfd = -1;
	if (s->o->listen_fd < 0)
		unlink(s->o->cfg->socket_path);
	notify_stopping(s);
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
			while (s->pools[i]->p.list[st])
				kill_child(s, s->pools[i]->p.list[st], EV_KILL_SHUTDOWN);
}

static unsigned live_children(const struct server *s)
{
	unsigned n = 0;
	for (size_t i = 0; i < s->n_pools; i++)
		n += sup_pool_total(&s->pools[i]->p);
	return n;
}

static void teardown(struct server *s)
{
	children_free_all(s);
	while (s->conns)
		conn_close(s, s->conns);
	free(s->slot_used);
	if (s->lfd >= 0) {
		close(s->lfd);
		if (s->o->listen_fd < 0)
			unlink(s->o->cfg->socket_path);
	}
	if (s->tfd >= 0)
		close(s->tfd);
	if (s->sfd >= 0)
		close(s->sfd);
	if (s->epfd >= 0)
		close(s->epfd);
	pools_free_all(s);
}

int sup_server_run(const struct sup_server_opts *o, struct hatch_err *err)
{
	sup_log_set_verbose(o->verbose);
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "server");
	s->o = o;
	s->cfg = o->cfg;
	s->epfd = s->sfd = s->tfd = -1;
	s->lfd = o->listen_fd; /* a socket systemd passed is ours now, whatever happens */
	s->t_start = hatch_now_ns();
	if (setup(s, err) < 0) {
		teardown(s);
		free(s);
		return -1;
	}
	sup_log("listening on %s with %zu pool(s)%s", o->cfg->socket_path, s->n_pools,
		o->listen_fd >= 0 ? " (socket passed by systemd)" : "");
	for (size_t i = 0; i < s->n_pools; i++)
		s->pools[i]->dirty = true;
	notify_start(s);

	struct epoll_event evs[64];
	for (;;) {
		collect_removed_pools(s);
		refill_pools(s);
		notify_turn(s);
		if (s->stopping && (live_children(s) == 0 || hatch_now_ns() > s->stop_deadline))
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
				if (read(s->sfd, &si, sizeof(si)) != sizeof(si) || s->stopping)
					break;
				if (si.ssi_signo == SIGHUP) {
					char summary[256];
					struct hatch_err rerr = { 0 };
					sup_reload(s, summary, sizeof(summary), &rerr); /* logs */
				} else {
					begin_shutdown(s, (int)si.ssi_signo);
				}
				break;
			}
			case TAG_TIMER: {
				uint64_t ticks;
				if (read(s->tfd, &ticks, sizeof(ticks)) > 0) {
					health_and_deadlines(s);
					notify_tick(s, hatch_now_ns());
				}
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
			case TAG_DISK: {
				struct sup_child *c = p;
				if (c->disk_pidfd >= 0)
					reap_disk(s, c);
				break;
			}
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
